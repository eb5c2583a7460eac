"""The monitoring stack under cdk-nag (an unacknowledged finding fails synthesis): the schedule per model, the
monitor's least-privilege role (StartExecution on the train machine only), the cool-down table, the report
bucket, the alarms. The audit bucket and the lake come from a producer stack, as in the app, so cross-stack
imports go through the same nag path. Synthesized once per module."""

from __future__ import annotations

import json
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import assertions

from functions.drift_monitor.settings import DriftMonitorSettings
from infra.config import DriftSettings, Settings, TrainingSettings
from infra.constructs.nag import nag_packs
from infra.constructs.nag_findings import flatten
from infra.constructs.secure_bucket import SecureBucket
from infra.stacks.monitoring import MonitoringStack

ENV = cdk.Environment(account="111111111111", region="eu-west-1")
MACHINE = "arn:aws:states:eu-west-1:111111111111:stateMachine:cnai-dev-train"
SETTINGS = Settings(
    training=TrainingSettings(models=("banking77", "support")),
    drift=DriftSettings(schedule="rate(30 minutes)", cooldown_hours=48, label_psi=0.3),
)


class Synth:
    def __init__(self, settings: Settings) -> None:
        app = cdk.App(context={"aws:cdk:bundling-stacks": []})
        producer = cdk.Stack(app, "Producer", env=ENV)
        audit, lake = SecureBucket(producer, "Audit"), SecureBucket(producer, "Lake")
        self.stack = MonitoringStack(
            app, "Monitoring", settings=settings, audit_bucket=audit.bucket, audit_key=audit.key,
            lake=lake.bucket, lake_key=lake.key, state_machine_arn=MACHINE, env=ENV,
        )  # fmt: skip
        cdk.Validations.of(app).add_plugins(*nag_packs(app))
        app.synth()  # raises on any unacknowledged cdk-nag finding
        self.template = assertions.Template.from_stack(self.stack)
        self.json: dict[str, Any] = self.template.to_json()

    def resources(self, kind: str) -> dict[str, Any]:
        return {k: v["Properties"] for k, v in self.json["Resources"].items() if v["Type"] == kind}

    def statements(self, role: Any) -> list[dict[str, Any]]:
        role_id = self.stack.get_logical_id(role.node.default_child)
        found = []
        for policy in self.resources("AWS::IAM::Policy").values():
            if {"Ref": role_id} in policy["Roles"]:
                found += policy["PolicyDocument"]["Statement"]
        return [json.loads(json.dumps(s, default=str)) for s in found]


@pytest.fixture(scope="module")
def synth() -> Synth:
    return Synth(SETTINGS)


def resources_of(statement: dict[str, Any]) -> list[str]:
    value = statement["Resource"]
    return [flatten(r) for r in (value if isinstance(value, list) else [value])]


def test_one_schedule_per_model_invokes_the_monitor_with_the_scheduled_time(synth: Synth) -> None:
    schedules = synth.resources("AWS::Scheduler::Schedule")
    inputs = sorted(json.loads(s["Target"]["Input"])["model"] for s in schedules.values())
    assert inputs == ["banking77", "support"]
    for schedule in schedules.values():
        assert schedule["ScheduleExpression"] == "rate(30 minutes)"
        assert json.loads(schedule["Target"]["Input"])["time"] == "<aws.scheduler.scheduled-time>"
        assert schedule["Target"]["Arn"] == {"Fn::GetAtt": [synth.stack.get_logical_id(
            synth.stack.drift.function.node.default_child), "Arn"]}  # fmt: skip
    # The scheduler's role may invoke this function and nothing else
    [statement] = synth.statements(synth.stack.drift.schedule_role)
    assert statement["Action"] == "lambda:InvokeFunction" and len(resources_of(statement)) == 1


def test_the_monitor_may_start_the_train_machine_only(synth: Synth) -> None:
    statements = synth.statements(synth.stack.drift.monitor.role)
    states = [s for s in statements if any(str(a).startswith("states:") for a in _actions(s))]
    assert len(states) == 1
    assert sorted(_actions(states[0])) == ["states:ListExecutions", "states:StartExecution"]
    assert resources_of(states[0]) == [MACHINE]
    # No action is a wildcard, and every other service it touches is named
    actions = {a for s in statements for a in _actions(s)}
    assert not [a for a in actions if "*" in a]
    assert {a.split(":")[0] for a in actions} == {"logs", "xray", "s3", "kms", "dynamodb", "states", "sagemaker"}
    # The lake: manifests only, never the rows
    reads = next(s for s in statements if s.get("Sid") == "ReadDatasetManifests")
    assert resources_of(reads)[0].endswith("/datasets/*/manifest.json")
    # The registry: the watched models' groups only
    registry = next(s for s in statements if s.get("Sid") == "ReadRegistry")
    assert sorted(r.rsplit(":", 1)[-1] for r in resources_of(registry)) == [
        "model-package-group/cnai-dev-banking77", "model-package-group/cnai-dev-support",
        "model-package/cnai-dev-banking77/*", "model-package/cnai-dev-support/*",
    ]  # fmt: skip


def test_the_function_environment_carries_the_drift_settings(synth: Synth) -> None:
    [function] = [f for f in synth.resources("AWS::Lambda::Function").values()
                  if f["Handler"] == "functions.drift_monitor.handler.handler"]  # fmt: skip
    variables = function["Environment"]["Variables"]
    aliases = DriftMonitorSettings.variables()
    assert json.loads(variables[aliases["thresholds"]])["label_psi"] == 0.3
    assert variables[aliases["cooldown_hours"]] == "48" and variables[aliases["state_machine_arn"]] == MACHINE
    assert variables[aliases["group_prefix"]] == "cnai-dev"
    assert "/audit/year={yyyy}/month={MM}/day={dd}/" in json.dumps(variables[aliases["audit_source"]])
    assert function["ReservedConcurrentExecutions"] == 1


def test_the_cool_down_table_and_the_reports_are_encrypted_and_recoverable(synth: Synth) -> None:
    [table] = synth.resources("AWS::DynamoDB::Table").values()
    assert table["KeySchema"] == [{"AttributeName": "model", "KeyType": "HASH"}]
    assert table["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    assert table["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
    assert table["SSESpecification"]["SSEEnabled"] is True
    reports = synth.stack.drift.reports.node.default_child
    bucket = synth.resources("AWS::S3::Bucket")[synth.stack.get_logical_id(reports)]
    [rule] = bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms"


def test_drift_alarms_per_model_notify_the_stack_topic(synth: Synth) -> None:
    alarms = synth.resources("AWS::CloudWatch::Alarm")
    topic = {"Ref": synth.stack.get_logical_id(synth.stack.monitoring.topic.node.default_child)}
    by_metric: dict[str, set[str]] = {}
    for alarm in alarms.values():
        assert alarm["AlarmActions"] == [topic] and alarm["OKActions"] == [topic]
        dimensions = {d["Name"]: d["Value"] for d in alarm.get("Dimensions", [])}
        if "model" in dimensions:
            assert dimensions["service"] == "drift-monitor"
            by_metric.setdefault(alarm["MetricName"], set()).add(dimensions["model"])
    assert by_metric == {name: {"banking77", "support"}
                         for name in ("DriftDetected", "DriftRetrainStarted", "DriftBaselineMissing")}  # fmt: skip
    assert any(a["MetricName"] == "Errors" for a in alarms.values())


def test_a_cool_down_shorter_than_the_window_is_refused() -> None:
    with pytest.raises(ValueError, match=r"cooldown_hours .* shorter than drift\.window_hours"):
        DriftSettings(window_hours=48, cooldown_hours=24)


def _actions(statement: dict[str, Any]) -> list[str]:
    value = statement["Action"]
    return value if isinstance(value, list) else [value]


def test_the_app_wires_the_monitor_to_the_training_stacks_state_machine(
    app_templates: dict[str, dict[str, assertions.Template]],
) -> None:
    # Given the whole app as app.py builds it
    for config, stacks in app_templates.items():
        template = stacks["monitoring"].to_json()
        policies = [r["Properties"]["PolicyDocument"]["Statement"] for r in template["Resources"].values()
                    if r["Type"] == "AWS::IAM::Policy"]  # fmt: skip
        [start] = [s for statements in policies for s in statements if s.get("Sid") == "StartTraining"]
        # Then StartExecution names the training stack's state machine, imported by its export
        [resource] = start["Resource"] if isinstance(start["Resource"], list) else [start["Resource"]]
        assert "Fn::ImportValue" in resource, (config, resource)
        assert "training" in json.dumps(resource).lower()
        exports = {o["Export"]["Name"] for o in stacks["training"].to_json().get("Outputs", {}).values()
                   if "Export" in o}  # fmt: skip
        assert resource["Fn::ImportValue"] in exports
