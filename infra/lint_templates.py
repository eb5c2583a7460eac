"""cfn-lint and checkov over the synthesized templates, with the reviewed skips of one file.

    python -m infra.lint_templates [--cdk-out cdk.out] [--skips infra/template-lint-skips.toml] [--checkov PATH]

Both tools read what CloudFormation will deploy (cdk.out/*.template.json), so they also see what the CDK constructs
add on their own. A finding fails the run unless a skip in the skips file names its tool, its rule and a pattern
matching its resource (`<stack template name>/<logical id>`, shell-style `*` and `?`), with a reason. A skip that
matches no finding fails the run too: a fixed finding must take its skip with it, or the file stops being a
review and becomes a list of things nobody checks. Exit status: 0 clean, 1 findings or stale skips, 2 bad usage
(missing templates, a malformed skips file, a tool that does not run).
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import subprocess
import sys
import tomllib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TOOLS = ("cfn-lint", "checkov")
MIN_REASON_CHARS = 30
DEFAULT_SKIPS = Path(__file__).with_name("template-lint-skips.toml")
DEFAULT_CHECKOV = Path(".tools/checkov/bin/checkov")


class LintSetupError(Exception):
    """The run cannot judge the templates (no templates, bad skips file, a tool failed to run)."""


@dataclass(frozen=True)
class Finding:
    """One rule one tool reports on one resource (`<template>/<logical id>`; `<template>` alone for the file)."""

    tool: str
    rule: str
    resource: str
    message: str

    def __str__(self) -> str:
        return f"{self.tool} {self.rule} {self.resource}: {self.message}"


@dataclass(frozen=True)
class Skip:
    """A reviewed exception: `tool`'s `rule` on resources matching any of `resources`, because `reason`."""

    tool: str
    rule: str
    resources: tuple[str, ...]
    reason: str
    where: str = field(default="", compare=False)  # "<file>: skip #n" for messages

    def matches(self, finding: Finding) -> bool:
        return (
            finding.tool == self.tool
            and finding.rule == self.rule
            and any(fnmatch.fnmatchcase(finding.resource, pattern) for pattern in self.resources)
        )


def load_skips(path: Path) -> list[Skip]:
    """The `[[skip]]` tables of `path`. Raises LintSetupError naming the file and the entry for a missing or
    unknown field, an unknown tool, an empty resource list or a reason shorter than MIN_REASON_CHARS."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise LintSetupError(f"{path}: the skips file does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise LintSetupError(f"{path}: not valid TOML ({exc})") from None
    unknown_top = sorted(set(data) - {"skip"})
    if unknown_top:
        raise LintSetupError(f"{path}: unknown top-level key(s) {', '.join(unknown_top)}; expected [[skip]] tables")
    entries = data.get("skip", [])
    if not isinstance(entries, list):
        raise LintSetupError(f"{path}: 'skip' must be an array of tables ([[skip]])")
    return [_skip(entry, f"{path}: skip #{number}") for number, entry in enumerate(entries, start=1)]


def _skip(entry: Any, where: str) -> Skip:
    if not isinstance(entry, dict):
        raise LintSetupError(f"{where}: expected a table with tool, rule, resources, reason")
    fields = {"tool", "rule", "resources", "reason"}
    missing, unknown = sorted(fields - set(entry)), sorted(set(entry) - fields)
    if missing or unknown:
        problems = [f"missing {', '.join(missing)}"] * bool(missing) + [f"unknown {', '.join(unknown)}"] * bool(unknown)
        raise LintSetupError(f"{where}: {'; '.join(problems)}")
    tool, rule, resources, reason = entry["tool"], entry["rule"], entry["resources"], entry["reason"]
    if tool not in TOOLS:
        raise LintSetupError(f"{where}: tool {tool!r} is not one of {', '.join(TOOLS)}")
    if not isinstance(rule, str) or not rule.strip():
        raise LintSetupError(f"{where}: rule must be a non-empty string")
    if not isinstance(resources, list) or not resources or not all(isinstance(r, str) and r for r in resources):
        raise LintSetupError(f"{where} ({tool} {rule}): resources must be a non-empty list of patterns")
    if not isinstance(reason, str) or len(reason.strip()) < MIN_REASON_CHARS:
        raise LintSetupError(f"{where} ({tool} {rule}): reason must say why, in >= {MIN_REASON_CHARS} characters")
    return Skip(tool, rule.strip(), tuple(resources), " ".join(reason.split()), where)


@dataclass(frozen=True)
class Verdict:
    """What is left once the skips are applied: unskipped `findings`, `stale` skips and the `skipped` count."""

    findings: list[Finding]
    stale: list[Skip]
    skipped: int

    @property
    def clean(self) -> bool:
        return not self.findings and not self.stale


def judge(findings: Iterable[Finding], skips: Sequence[Skip]) -> Verdict:
    """Apply `skips` to `findings`: a finding any skip matches is skipped; a skip that matched nothing is stale."""
    left: list[Finding] = []
    used: set[int] = set()
    skipped = 0
    for finding in findings:
        hits = [i for i, skip in enumerate(skips) if skip.matches(finding)]
        if hits:
            used.update(hits)
            skipped += 1
        else:
            left.append(finding)
    return Verdict(left, [skip for i, skip in enumerate(skips) if i not in used], skipped)


def cfn_lint_findings(report: list[dict[str, Any]]) -> list[Finding]:
    """cfn-lint's `--format json` report as findings (errors and warnings; informational ones are not failures)."""
    out = []
    for item in report:
        if item.get("Level") == "Informational":
            continue
        path = item.get("Location", {}).get("Path") or []
        template = Path(item["Filename"]).name.removesuffix(".template.json")
        logical = path[1] if len(path) > 1 and path[0] == "Resources" else None
        resource = f"{template}/{logical}" if logical else template
        out.append(Finding("cfn-lint", item["Rule"]["Id"], resource, item.get("Message", "")))
    return out


def checkov_findings(report: dict[str, Any] | list[dict[str, Any]]) -> list[Finding]:
    """checkov's `-o json` report (one object, or a list of one per framework) as findings."""
    out = []
    for part in report if isinstance(report, list) else [report]:
        for check in part.get("results", {}).get("failed_checks", []):
            template = Path(check["file_path"]).name.removesuffix(".template.json")
            logical = str(check["resource"]).rpartition(".")[2]
            out.append(Finding("checkov", check["check_id"], f"{template}/{logical}", check.get("check_name", "")))
    return out


def _run(command: list[str], ok: tuple[int, ...]) -> str:
    try:
        done = subprocess.run(command, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise LintSetupError(f"{command[0]}: not found (make tools-checkov installs checkov)") from None
    if done.returncode not in ok:
        raise LintSetupError(f"{' '.join(command[:2])} ... exited {done.returncode}: {done.stderr.strip()[-2000:]}")
    return done.stdout


def _parse(tool: str, stdout: str, parse: Callable[[Any], list[Finding]]) -> list[Finding]:
    """`parse` over the tool's JSON report; a report that is not JSON or not of the expected shape (another
    version of the tool) is a LintSetupError, not a stack trace."""
    try:
        return parse(json.loads(stdout))
    except (ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
        raise LintSetupError(f"{tool}: unexpected report ({type(exc).__name__}: {exc}): {stdout[:200]!r}") from None


def run_cfn_lint(templates: Sequence[Path]) -> list[Finding]:
    # cfn-lint exits with a bit mask of the levels found (2 error, 4 warning, 8 informational); 1 is a crash.
    stdout = _run(
        [str(Path(sys.executable).with_name("cfn-lint")), "--format", "json", *map(str, templates)],
        ok=(0, 2, 4, 6, 8, 10, 12, 14),
    )
    return _parse("cfn-lint", stdout or "[]", cfn_lint_findings)


def run_checkov(checkov: Path, templates: Sequence[Path]) -> list[Finding]:
    files = [arg for t in templates for arg in ("-f", str(t))]
    command = [str(checkov), *files, "--framework", "cloudformation", "-o", "json", "--quiet", "--compact"]
    stdout = _run(command, ok=(0, 1))  # 1: failed checks
    return _parse("checkov", stdout, checkov_findings) if stdout.strip() else []


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cdk-out", type=Path, default=Path("cdk.out"))
    parser.add_argument("--skips", type=Path, default=DEFAULT_SKIPS)
    parser.add_argument("--checkov", type=Path, default=DEFAULT_CHECKOV, help="the checkov of its own tool venv")
    args = parser.parse_args(argv)
    try:
        templates = sorted(args.cdk_out.glob("*.template.json"))
        if not templates:
            raise LintSetupError(f"{args.cdk_out}: no *.template.json; synthesize first (make synth)")
        skips = load_skips(args.skips)
        findings = run_cfn_lint(templates) + run_checkov(args.checkov, templates)
    except LintSetupError as exc:
        print(f"lint-templates: {exc}", file=sys.stderr)
        return 2
    verdict = judge(findings, skips)
    for finding in verdict.findings:
        print(f"FINDING {finding}")
    for skip in verdict.stale:
        print(f"STALE   {skip.where}: {skip.tool} {skip.rule} {list(skip.resources)} matches no finding; remove it")
    print(
        f"lint-templates: {len(templates)} templates, {len(findings)} findings, {verdict.skipped} skipped, "
        f"{len(verdict.findings)} unskipped, {len(verdict.stale)} stale skips"
    )
    return 0 if verdict.clean else 1


if __name__ == "__main__":
    raise SystemExit(main())
