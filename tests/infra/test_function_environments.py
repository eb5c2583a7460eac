"""Every environment variable name is written once, in the function's settings model (functions/<name>/
settings.py): infra builds each environment from those models, so no CNAI_* literal may appear under infra/,
and each synthesized function environment must validate against its function's model."""

from __future__ import annotations

import ast
import importlib
import inspect
import re
from pathlib import Path
from typing import Any

from aws_cdk import assertions

from cnai.settings import EnvSettings

ROOT = Path(__file__).resolve().parents[2]
VARIABLE = re.compile(r"\bCNAI_[A-Z0-9_]+")
# Stand-ins for values CloudFormation resolves at deploy time (bucket, table, stream names), by field name:
# each must be a value the real resource could have.
DEPLOY_TIME = {
    "lake_bucket": "cnai-dev-ingestion-lake1a2b3c",
    "idempotency_table": "cnai-dev-ingestion-Idempotency-1A2B3C",
    "stream": "cnai-dev-ingestion-Stream-1A2B3C",
    "model_uri": "s3://cnai-dev-serving-models1a2b3c/models/banking77/model.tar.gz",
    # the training stack's
    "artifact_bucket": "cnai-dev-training-artifactsbucket1a2b3c",
    "topic_arn": "arn:aws:sns:us-east-1:123456789012:cnai-dev-training-MonitoringTopic1A2B3C",
    # the monitoring stack's (drift monitor)
    "audit_source": "s3://cnai-dev-serving-auditstore1a2b3c/audit/year={yyyy}/month={MM}/day={dd}/",
    "reports_bucket": "cnai-dev-monitoring-driftreports1a2b3c",
    "cooldown_table": "cnai-dev-monitoring-DriftCoolDown-1A2B3C",
    "state_machine_arn": "arn:aws:states:us-east-1:123456789012:stateMachine:cnai-dev-train",
    # the deploy stack's (imported from the serving stack)
    "function_name": "cnai-dev-serving-PredictFunction1A2B3C",
    "alarm_topic_arn": "arn:aws:sns:us-east-1:123456789012:cnai-dev-serving-MonitoringTopic1A2B3C",
    "endpoint_role_arn": "arn:aws:iam::123456789012:role/cnai-dev-serving-ServerlessRole1A2B3C",
    "endpoint_kms_key_arn": "arn:aws:kms:us-east-1:123456789012:key/0f0e0d0c-1111-2222-3333-444455556666",
}


def literals(path: Path) -> list[tuple[int, str]]:
    """String constants of a module that name a CNAI_ variable, docstrings excepted (prose may name them)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in docstrings
        and VARIABLE.search(node.value)
    ]


def test_no_cnai_variable_name_is_written_in_infra() -> None:
    # Given every Python module under infra/ / When its string literals are read
    found = [f"{p.relative_to(ROOT)}:{line}: {text!r}" for p in sorted((ROOT / "infra").rglob("*.py"))
             for line, text in literals(p)]  # fmt: skip
    # Then none names a CNAI_ variable: the names come from the functions' settings models
    assert not found, "CNAI_* names written in infra/ (use cnai.settings.environment_for):\n" + "\n".join(found)


def test_the_literal_check_finds_a_name_and_skips_docstrings(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text('"""Reads CNAI_STREAM."""\nENV = {"CNAI_STREAM": "s"}\nx = f"CNAI_{1}"\n')
    assert literals(module) == [(2, "CNAI_STREAM")]


def settings_model(handler: str) -> type[EnvSettings]:
    """The EnvSettings subclass of functions/<name>/settings.py for handler `functions.<name>.handler.handler`."""
    package = handler.rsplit(".", 2)[0]
    module = importlib.import_module(f"{package}.settings")
    [model] = [
        obj
        for obj in vars(module).values()
        if inspect.isclass(obj) and issubclass(obj, EnvSettings) and obj.__module__ == module.__name__
    ]
    return model


def deployed_environment(model: type[EnvSettings], variables: dict[str, Any]) -> dict[str, str]:
    by_variable = {alias: name for name, alias in model.variables().items()}
    env = {}
    for variable, value in variables.items():
        if isinstance(value, str):
            env[variable] = value
        else:  # an intrinsic ({"Ref": ...}, {"Fn::Join": ...}): resolved by CloudFormation at deploy time
            assert variable in by_variable, f"{variable} is unresolved and not a setting"
            env[variable] = DEPLOY_TIME[by_variable[variable]]
    return env


def test_each_synthesized_function_environment_validates_against_its_settings_model(
    app_templates: dict[str, dict[str, assertions.Template]],
) -> None:
    checked = set()
    for config, stacks in app_templates.items():
        for concern, template in stacks.items():
            for fn_id, fn in template.find_resources("AWS::Lambda::Function").items():
                props = fn["Properties"]
                handler = props["Handler"]
                if not handler.startswith("functions."):
                    continue  # CDK's own custom-resource functions
                where = f"{config}/{concern}/{fn_id}"
                variables = props["Environment"]["Variables"]
                model = settings_model(handler)
                # Every CNAI_ variable is one the function reads
                names = set(model.variables().values())
                ours = {v for v in variables if v.startswith("CNAI_")}
                assert ours <= names, f"{where}: {sorted(ours - names)} not in {model.__name__}"
                # The function's own loader accepts the environment as deployed
                model.from_env(deployed_environment(model, variables))
                # Powertools names the function in logs, traces and metric dimensions
                assert variables["POWERTOOLS_SERVICE_NAME"] == handler.split(".")[1].replace("_", "-"), where
                assert variables["POWERTOOLS_METRICS_NAMESPACE"] == "cnai", where
                checked.add(handler)
    assert checked >= {
        "functions.ingest.handler.handler",
        "functions.ingest_api.handler.handler",
        "functions.predict.handler.handler",
    }
