"""PythonFunction on a bare stack: arm64 / 3.12, own role, KMS logs and env, X-Ray, nag-clean; the copy bundler."""

from __future__ import annotations

from pathlib import Path

import aws_cdk as cdk
import pytest
from aws_cdk import assertions
from aws_cdk import aws_lambda as lambda_

from infra.constructs.nag import nag_packs
from infra.constructs.python_function import PythonFunction, copy_sources

CONTEXT = {"aws:cdk:bundling-stacks": []}


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> assertions.Template:
    # Given a bare stack with one function from a prebuilt code folder, checked by cdk-nag
    code = tmp_path_factory.mktemp("code")
    (code / "handler.py").write_text("def handler(event, context):\n    return {}\n")
    app = cdk.App(context=CONTEXT)
    stack = cdk.Stack(app, "Bare", env=cdk.Environment(account="111111111111", region="eu-west-1"))
    PythonFunction(
        stack,
        "Predict",
        function="predict",
        description="test function",
        environment={"CNAI_MODEL_NAME": "banking"},
        memory_size=2048,
        reserved_concurrency=7,
        code=lambda_.Code.from_asset(str(code)),
    )
    cdk.Validations.of(app).add_plugins(*nag_packs(app))
    # When it synthesizes (an unacknowledged nag error fails synthesis)
    app.synth()
    return assertions.Template.from_stack(stack)


def test_function_runs_arm64_python312_with_xray_and_an_encrypted_environment(template: assertions.Template) -> None:
    # Then the function has the platform, tracing, env and concurrency the construct promises
    template.has_resource_properties(
        "AWS::Lambda::Function",
        {
            "Runtime": "python3.12",
            "Architectures": ["arm64"],
            "Handler": "functions.predict.handler.handler",
            "MemorySize": 2048,
            "ReservedConcurrentExecutions": 7,
            "TracingConfig": {"Mode": "Active"},
            "KmsKeyArn": assertions.Match.any_value(),
            "Environment": {"Variables": {"CNAI_MODEL_NAME": "banking"}},
            "LoggingConfig": {"LogGroup": assertions.Match.any_value()},
        },
    )


def test_log_group_is_kms_encrypted_with_retention_and_the_key_rotates(template: assertions.Template) -> None:
    template.has_resource_properties(
        "AWS::Logs::LogGroup", {"KmsKeyId": assertions.Match.any_value(), "RetentionInDays": 90}
    )
    template.has_resource_properties("AWS::KMS::Key", {"EnableKeyRotation": True})
    # And CloudWatch Logs may use the key only for this account's log groups
    key = next(iter(template.find_resources("AWS::KMS::Key").values()))
    statements = key["Properties"]["KeyPolicy"]["Statement"]
    logs = [s for s in statements if s["Principal"].get("Service") == "logs.eu-west-1.amazonaws.com"]
    assert len(logs) == 1
    assert "kms:EncryptionContext:aws:logs:arn" in logs[0]["Condition"]["ArnLike"]


def test_role_has_no_managed_policy_and_writes_only_its_own_log_group(template: assertions.Template) -> None:
    roles = template.find_resources("AWS::IAM::Role")
    assert len(roles) == 1
    role = next(iter(roles.values()))
    assert "ManagedPolicyArns" not in role["Properties"]
    policies = template.find_resources("AWS::IAM::Policy")
    statements = [s for p in policies.values() for s in p["Properties"]["PolicyDocument"]["Statement"]]
    log_writes = [s for s in statements if "logs:PutLogEvents" in s["Action"]]
    assert len(log_writes) == 1
    assert log_writes[0]["Resource"] != "*"
    assert "Fn::GetAtt" in log_writes[0]["Resource"]


def test_copy_sources_mirrors_the_repository_layout_without_caches(tmp_path: Path) -> None:
    # Given a repository with a function folder, a package and caches
    root = tmp_path / "repo"
    (root / "functions" / "predict" / "__pycache__").mkdir(parents=True)
    (root / "functions" / "predict" / "handler.py").write_text("x = 1\n")
    (root / "functions" / "predict" / "__pycache__" / "handler.cpython-311.pyc").write_bytes(b"\0")
    (root / "cnai").mkdir()
    (root / "cnai" / "predictor.py").write_text("y = 2\n")
    (root / "models").mkdir()
    (root / "models" / "train.py").write_text("import torch\n")
    # When the sources are copied
    out = copy_sources(tmp_path / "out", "predict", root=root)
    # Then the handler and the package are there, importable from the zip root, and nothing else
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert files == ["cnai/predictor.py", "functions/__init__.py", "functions/predict/handler.py"]


def test_copy_sources_refuses_a_missing_function_folder(tmp_path: Path) -> None:
    (tmp_path / "cnai").mkdir()
    with pytest.raises(FileNotFoundError, match="functions/nope"):
        copy_sources(tmp_path / "out", "nope", root=tmp_path)


def test_memory_outside_lambda_limits_is_refused() -> None:
    stack = cdk.Stack(cdk.App(context=CONTEXT), "S")
    with pytest.raises(ValueError, match="memory_size 64"):
        PythonFunction(
            stack, "F", function="predict", description="d", memory_size=64, code=lambda_.Code.from_inline("x")
        )


def test_powertools_names_the_function_by_its_service(template: assertions.Template) -> None:
    # cnai/observability.py reads these: the service is the `service` dimension that custom-metric alarms select
    fn = next(iter(template.find_resources("AWS::Lambda::Function").values()))
    variables = fn["Properties"]["Environment"]["Variables"]
    assert variables["POWERTOOLS_SERVICE_NAME"] == "predict"
    assert variables["POWERTOOLS_METRICS_NAMESPACE"] == "cnai"
    assert variables["POWERTOOLS_LOG_LEVEL"] == "INFO"


def test_powertools_variables_cannot_be_overridden_through_environment() -> None:
    stack = cdk.Stack(cdk.App(context=CONTEXT), "S")
    with pytest.raises(ValueError, match="POWERTOOLS_SERVICE_NAME are set by PythonFunction"):
        PythonFunction(
            stack,
            "F",
            function="ingest_api",
            description="d",
            environment={"POWERTOOLS_SERVICE_NAME": "other"},
            code=lambda_.Code.from_inline("x"),
        )
