"""The skip logic of `make lint-templates` on crafted findings and skips files (no cfn-lint or checkov run here):
a finding fails unless a skip names its tool, rule and resource; a skip that matches nothing is stale; a malformed
skips file is refused naming the file and the entry. Also: the reviewed skips file of the repository parses."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra import lint_templates
from infra.lint_templates import (
    DEFAULT_SKIPS,
    Finding,
    LintSetupError,
    cfn_lint_findings,
    checkov_findings,
    judge,
    load_skips,
)

REASON = "a reason long enough to say why this is acceptable"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "skips.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_finding_is_skipped_only_by_its_tool_rule_and_resource(tmp_path: Path) -> None:
    # Given one skip for checkov CKV_AWS_116 on the functions of any ingestion stack
    skips = load_skips(
        write(
            tmp_path,
            f'[[skip]]\ntool = "checkov"\nrule = "CKV_AWS_116"\nresources = ["*-ingestion/*Function*"]\n'
            f'reason = "{REASON}"\n',
        )
    )
    findings = [
        Finding("checkov", "CKV_AWS_116", "cnai-dev-ingestion/ApiFunction6BF808ED", "DLQ"),  # skipped
        Finding("checkov", "CKV_AWS_116", "cnai-dev-serving/PredictFunction51F85491", "DLQ"),  # other stack
        Finding("checkov", "CKV_AWS_117", "cnai-dev-ingestion/ApiFunction6BF808ED", "VPC"),  # other rule
        Finding("cfn-lint", "CKV_AWS_116", "cnai-dev-ingestion/ApiFunction6BF808ED", "?"),  # other tool
    ]
    # When the skips are applied
    verdict = judge(findings, skips)
    # Then only the first is skipped, the other three fail the run, and the skip is not stale
    assert verdict.skipped == 1
    assert verdict.findings == findings[1:]
    assert verdict.stale == []
    assert not verdict.clean


def test_a_skip_that_matches_nothing_is_stale_and_fails_the_run(tmp_path: Path) -> None:
    # Given two skips, one of which matches no finding
    skips = load_skips(
        write(
            tmp_path,
            f'[[skip]]\ntool = "cfn-lint"\nrule = "W3005"\nresources = ["*/*Function*"]\nreason = "{REASON}"\n\n'
            f'[[skip]]\ntool = "checkov"\nrule = "CKV_AWS_18"\nresources = ["*/*AccessLogs*"]\nreason = "{REASON}"\n',
        )
    )
    # When only the first one's finding is reported
    verdict = judge([Finding("cfn-lint", "W3005", "cnai-dev-training/NotifyFunction3392CA4F", "DependsOn")], skips)
    # Then nothing is left but the second skip is stale, so the run is not clean
    assert verdict.findings == []
    assert [s.rule for s in verdict.stale] == ["CKV_AWS_18"]
    assert "skip #2" in verdict.stale[0].where
    assert not verdict.clean


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[[skip]]\ntool = "checkov"\nrule = "CKV_AWS_18"\nresources = ["*"]\n', "skip #1: missing reason"),
        (f'[[skip]]\ntool = "tfsec"\nrule = "X"\nresources = ["*"]\nreason = "{REASON}"\n', "tool 'tfsec'"),
        ('[[skip]]\ntool = "checkov"\nrule = "CKV_AWS_18"\nresources = ["*"]\nreason = "because"\n', "reason must"),
        (f'[[skip]]\ntool = "checkov"\nrule = "CKV_AWS_18"\nresources = []\nreason = "{REASON}"\n', "resources"),
        (f'[[skip]]\ntool = "checkov"\nrule = "R"\nresources = ["*"]\nreason = "{REASON}"\nwhy = 1\n', "unknown why"),
        ("[[skip]\n", "not valid TOML"),
    ],
)
def test_a_malformed_skips_file_is_refused_naming_the_entry(tmp_path: Path, text: str, message: str) -> None:
    # Given a skips file with one defect / When it is loaded / Then the error names the file and the defect
    path = write(tmp_path, text)
    with pytest.raises(LintSetupError, match=message) as caught:
        load_skips(path)
    assert str(path) in str(caught.value)


def test_tool_reports_become_findings_named_by_stack_and_logical_id() -> None:
    # Given a cfn-lint and a checkov report in the tools' JSON shapes
    cfn = [
        {
            "Filename": "cdk.out/cnai-dev-deploy.template.json",
            "Level": "Warning",
            "Location": {"Path": ["Resources", "DeployFunctionF5CD5801", "DependsOn", 1]},
            "Message": "dependency already enforced",
            "Rule": {"Id": "W3005"},
        },
        {"Filename": "cdk.out/x.template.json", "Level": "Informational", "Location": {}, "Rule": {"Id": "I1"}},
    ]
    checkov = {
        "results": {
            "failed_checks": [
                {
                    "check_id": "CKV_AWS_18",
                    "file_path": "/cdk.out/cnai-dev-ingestion.template.json",
                    "resource": "AWS::S3::Bucket.LakeAccessLogs4431AB8D",
                    "check_name": "access logging",
                }
            ]
        }
    }
    # When they are read / Then informational items are dropped and resources are <stack>/<logical id>
    assert [(f.tool, f.rule, f.resource) for f in cfn_lint_findings(cfn) + checkov_findings([checkov])] == [
        ("cfn-lint", "W3005", "cnai-dev-deploy/DeployFunctionF5CD5801"),
        ("checkov", "CKV_AWS_18", "cnai-dev-ingestion/LakeAccessLogs4431AB8D"),
    ]


def test_the_reviewed_skips_file_of_the_repository_parses() -> None:
    # Given infra/template-lint-skips.toml / Then every entry is well formed, with a reason
    skips = load_skips(DEFAULT_SKIPS)
    assert skips
    assert {s.tool for s in skips} <= {"cfn-lint", "checkov"}


@pytest.mark.parametrize(
    ("tool", "stdout"),
    [("cfn-lint", "Traceback (most recent call last): ..."), ("checkov", '{"results": {"failed_checks": [{}]}}')],
)
def test_a_report_the_tool_did_not_write_as_expected_is_a_setup_error(
    monkeypatch: pytest.MonkeyPatch, tool: str, stdout: str
) -> None:
    # Given a tool whose stdout is not JSON, or JSON missing the fields read
    monkeypatch.setattr(lint_templates, "_run", lambda command, ok: stdout)
    run = lint_templates.run_cfn_lint if tool == "cfn-lint" else lambda t: lint_templates.run_checkov(Path("c"), t)
    # When its report is read / Then the run stops with a setup error naming the tool (exit 2), not a traceback
    with pytest.raises(LintSetupError, match=f"^{tool}: unexpected report"):
        run([Path("cdk.out/x.template.json")])
