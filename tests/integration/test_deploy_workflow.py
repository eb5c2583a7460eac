"""The deploy workflow as synthesized, run locally end to end: a registry approval becomes SageMaker's event
(cnai.local.events), matched with the rule's pattern from the synthesized template, which starts the
synthesized state machine on moto's interpreter; its Lambda tasks are the real deploy handler in process
(cnai.local.stepfunctions), acting on moto's Lambda (versions, alias routing), CloudWatch alarms, S3 and the
SageMaker registry.

Scenarios: approval -> canary (10% seen on the alias) -> 100%; an alarm during the canary -> rollback with the
package marked; pending / rejected / other group -> no execution; the alias moved by a person -> Superseded."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import aws_cdk as cdk
import boto3
import pytest
from moto import mock_aws

from cnai.deploy import canary
from cnai.local.events import ApprovalBridge, rules_from_template
from cnai.local.stepfunctions import LocalStepFunctions
from cnai.registry.packages import ModelVersion, Registry
from cnai.settings import environment_for
from functions.deploy_model.settings import DeployFunctionSettings
from infra.local.functions import InProcessFunctions
from infra.local.template import ACCOUNT, REGION, Function, LocalDeployment
from tests.integration.workflow_env import deploy_workflow_template
from tests.unit.deploy.world import BOOT_ENV, TRUST, dummy_zip

STACK = "cnai-it-deploy"
PREFIX, MODEL = "cnai-it", "banking77"
GROUP = f"{PREFIX}-{MODEL}"
PREDICT, DEPLOY = "cnai-it-predict", "cnai-it-deploy-fn"
BUCKET = "cnai-it-artifacts"


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return deploy_workflow_template(STACK, [GROUP], DEPLOY)


@dataclass
class Local:
    registry: Registry
    bridge: ApprovalBridge
    lambda_: Any
    cloudwatch: Any
    sfn: Any
    machine: str

    def register(self, job: str, model: str = MODEL) -> ModelVersion:
        key = f"training/{job}/output/model.tar.gz"
        boto3.client("s3").put_object(Bucket=BUCKET, Key=key, Body=job.encode())
        return self.registry.create_version(
            model, image="img", model_data=f"s3://{BUCKET}/{key}", report_uri=f"s3://{BUCKET}/e.json",
            metrics={"accuracy": 0.9}, lineage={}, approved=False,
        )  # fmt: skip

    def alias(self) -> dict[str, Any]:
        return dict(self.lambda_.get_alias(FunctionName=PREDICT, Name="live"))

    def finish(self, execution_arn: str, timeout_s: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            described = self.sfn.describe_execution(executionArn=execution_arn)
            if described["status"] != "RUNNING":
                return dict(described)
            time.sleep(0.2)
        raise AssertionError(f"{execution_arn} still running after {timeout_s}s")

    def states(self, execution_arn: str) -> list[str]:
        events = self.sfn.get_execution_history(executionArn=execution_arn, maxResults=1000)["events"]
        return [e["stateEnteredEventDetails"]["name"] for e in events if "stateEnteredEventDetails" in e]


@pytest.fixture
def local(template: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Iterator[Local]:
    for name, value in {"AWS_ACCESS_KEY_ID": "t", "AWS_SECRET_ACCESS_KEY": "t", "AWS_DEFAULT_REGION": REGION,
                        "POWERTOOLS_METRICS_DISABLED": "true"}.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        deployment = LocalDeployment({STACK: template})
        deployment.create(boto3.Session())
        # The predict function as `cdk deploy` leaves it: bootstrap version 1, `live` on it.
        role = boto3.client("iam").create_role(RoleName="p", AssumeRolePolicyDocument=TRUST)["Role"]["Arn"]
        lam = boto3.client("lambda")
        lam.create_function(FunctionName=PREDICT, Runtime="python3.12", Role=role, Handler="h.h",
                            Code={"ZipFile": dummy_zip()}, Environment={"Variables": dict(BOOT_ENV)})  # fmt: skip
        lam.create_alias(
            FunctionName=PREDICT, Name="live", FunctionVersion=lam.publish_version(FunctionName=PREDICT)["Version"]
        )
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket=BUCKET)
        s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        registry = Registry(boto3.client("sagemaker"), PREFIX)
        registry.ensure_group(MODEL)
        registry.ensure_group("other")
        env = environment_for(
            DeployFunctionSettings, function_name=PREDICT, model_name=MODEL, group_prefix=PREFIX, canary_percent=10,
            canary_s=2, check_interval_s=1, alarm_topic_arn=f"arn:aws:sns:{REGION}:{ACCOUNT}:alarms",
        )  # fmt: skip
        deploy = Function(STACK, "Deploy", DEPLOY, "functions.deploy_model.handler.handler", env, 300, 256)
        functions = InProcessFunctions({DEPLOY: deploy})
        sfn = boto3.client("stepfunctions")
        rules = rules_from_template(template, lambda value: deployment.resolve(STACK, value))
        bridge = ApprovalBridge(rules, boto3.client("sagemaker"), sfn, account=ACCOUNT, region=REGION)
        with LocalStepFunctions(functions.callables()):
            yield Local(registry, bridge, lam, boto3.client("cloudwatch"), sfn, rules[0].state_machines[0])


class Watcher:
    """Samples the alias while a deploy runs (the canary share is visible only during it)."""

    def __init__(self, local: Local) -> None:
        self.local, self.stop = local, threading.Event()
        self.seen: list[tuple[str, dict[str, float]]] = []
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        while not self.stop.wait(0.1):
            alias = self.local.alias()
            self.seen.append(
                (
                    alias["FunctionVersion"],
                    dict((alias.get("RoutingConfig") or {}).get("AdditionalVersionWeights") or {}),
                )
            )

    def close(self) -> list[tuple[str, dict[str, float]]]:
        self.stop.set()
        self.thread.join()
        return self.seen


def test_an_approval_runs_the_canary_then_moves_all_traffic(local: Local) -> None:
    # Given a pending version  When it is approved in the registry
    version = local.register("job-1")
    local.registry.approve(MODEL, version.version, "ok")
    watcher = Watcher(local)
    [delivery] = local.bridge.poll()
    # Then the rule's state machine ran the canary and promoted it
    done = local.finish(delivery.execution_arn)
    seen = watcher.close()
    assert done["status"] == "SUCCEEDED", done
    assert ("1", {"2": 0.1}) in seen  # 10% on the new version while it was watched
    assert local.alias()["FunctionVersion"] == "2"
    assert not (local.alias().get("RoutingConfig") or {}).get("AdditionalVersionWeights")
    states = local.states(delivery.execution_arn)
    assert states[0] == "Release" and "Check" in states and states[-2:] == ["Promote", "Deployed"]
    env = local.lambda_.get_function_configuration(FunctionName=PREDICT, Qualifier="2")["Environment"]["Variables"]
    assert env["CNAI_MODEL_PACKAGE_VERSION"] == str(version.version) and env["CNAI_MODEL_URI"] == version.model_data


def test_an_alarm_during_the_canary_rolls_back_and_marks_the_package(local: Local) -> None:
    # Given an approved version whose canary raises its error alarm
    version = local.register("job-1")
    local.registry.approve(MODEL, version.version)
    errors = canary.alarm_names(canary.Target(PREDICT, MODEL), "2")["errors"]

    def fire() -> None:
        for _ in range(100):
            if local.cloudwatch.describe_alarms(AlarmNames=[errors])["MetricAlarms"]:
                local.cloudwatch.set_alarm_state(AlarmName=errors, StateValue="ALARM", StateReason="5 errors")
                return
            time.sleep(0.05)

    firing = threading.Thread(target=fire, daemon=True)
    firing.start()
    [delivery] = local.bridge.poll()
    done = local.finish(delivery.execution_arn)
    firing.join()
    # Then the execution fails as rolled back, version 1 serves everything, the package is Rejected with why
    assert (done["status"], done.get("error")) == ("FAILED", "CanaryRolledBack"), done
    assert local.alias()["FunctionVersion"] == "1"
    assert not (local.alias().get("RoutingConfig") or {}).get("AdditionalVersionWeights")
    marked = local.registry.sm.describe_model_package(ModelPackageName=version.arn)
    assert marked["ModelApprovalStatus"] == "Rejected" and errors in marked["ApprovalDescription"]
    # ... and that rejection starts nothing
    assert local.bridge.poll() == []


def test_pending_rejected_and_other_groups_start_nothing(local: Local) -> None:
    # Given a new pending version, a rejected one and an approved version of another group
    local.register("job-1")
    local.registry.reject(MODEL, local.register("job-2").version, "no")
    local.registry.approve("other", local.register("job-3", model="other").version)
    # When the bridge delivers the changes
    delivered = local.bridge.poll()
    # Then no rule matched and no execution started
    assert delivered == []
    assert local.sfn.list_executions(stateMachineArn=local.machine)["executions"] == []
    assert local.alias()["FunctionVersion"] == "1"


def test_a_person_moving_the_alias_during_the_canary_is_left_alone(local: Local) -> None:
    # Given package A promoted, then package B in its canary
    first = local.register("job-1")
    local.registry.approve(MODEL, first.version)
    [one] = local.bridge.poll()
    assert local.finish(one.execution_arn)["status"] == "SUCCEEDED"
    second = local.register("job-2")
    local.registry.approve(MODEL, second.version)
    [two] = local.bridge.poll()
    for _ in range(100):  # until the canary is on
        if (local.alias().get("RoutingConfig") or {}).get("AdditionalVersionWeights"):
            break
        time.sleep(0.05)
    # When a person rolls back to A (cnai models rollback)
    clients = canary.Clients(local.lambda_, local.cloudwatch, boto3.client("s3"), local.registry)
    canary.rollback_to(clients, canary.Target(PREDICT, MODEL), first.version)
    # Then the workflow ends as Superseded and does not promote B over the person's choice
    done = local.finish(two.execution_arn)
    assert done["status"] == "SUCCEEDED" and local.states(two.execution_arn)[-1] == "Superseded"
    assert local.alias()["FunctionVersion"] == "2"
    assert json.loads(done["output"])["check"]["result"]["superseded"] is True


# ---- the real app: the deploy stack as `infra.application.build` synthesizes it, deployed into moto

APP_STAGE = "dx"


@pytest.fixture(scope="module")
def app_templates() -> dict[str, dict[str, Any]]:
    """Every stack of the app (cdk-nag included), a canary of 0 minutes checked every second."""
    from infra.application import build

    app = cdk.App(
        context={
            "aws:cdk:bundling-stacks": [],
            "cnai:stage": APP_STAGE,
            "cnai:deploy.canary_minutes": 0,
            "cnai:deploy.check_interval_s": 1,
        }
    )
    build(app)
    return {stack.stack_name: dict(stack.template) for stack in app.synth().stacks}


def test_the_synthesized_app_deploys_an_approval_on_the_local_platform(
    app_templates: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in {"AWS_ACCESS_KEY_ID": "t", "AWS_SECRET_ACCESS_KEY": "t", "AWS_DEFAULT_REGION": REGION,
                        "POWERTOOLS_METRICS_DISABLED": "true"}.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    prefix = f"cnai-{APP_STAGE}"
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        # Given the app deployed into moto: functions, the bootstrap version and `live` in moto's Lambda too
        deployment = LocalDeployment(app_templates)
        deployment.create(boto3.Session())
        predict = deployment.output(f"{prefix}-serving", "PredictFunctionName")
        lam = boto3.client("lambda")
        assert lam.get_alias(FunctionName=predict, Name="live")["FunctionVersion"] == "1"
        stack = f"{prefix}-deploy"
        rules = rules_from_template(app_templates[stack], lambda value: deployment.resolve(stack, value))
        sm, sfn = boto3.client("sagemaker"), boto3.client("stepfunctions")
        bridge = ApprovalBridge(rules, sm, sfn, account=ACCOUNT, region=REGION)
        # ... and a registered version whose tar SageMaker wrote to the training stack's artifacts bucket
        artifacts = deployment.output(f"{prefix}-training", "ArtifactsBucket")
        key = "training/job-1/output/model.tar.gz"
        boto3.client("s3").put_object(Bucket=artifacts, Key=key, Body=b"tar")
        registry = Registry(sm, prefix)
        version = registry.create_version(MODEL, image="img", model_data=f"s3://{artifacts}/{key}",
                                          report_uri=f"s3://{artifacts}/e.json", metrics={}, lineage={},
                                          approved=False)  # fmt: skip
        with LocalStepFunctions(InProcessFunctions(deployment.functions).callables()):
            # When it is approved
            registry.approve(MODEL, version.version, "ok")
            [delivery] = bridge.poll()
            deadline = time.monotonic() + 60
            while (done := sfn.describe_execution(executionArn=delivery.execution_arn))["status"] == "RUNNING":
                assert time.monotonic() < deadline, "deploy still running"
                time.sleep(0.2)
        # Then the synthesized deploy workflow released it: version 2 pinned to the package serves everything
        assert done["status"] == "SUCCEEDED", done
        assert delivery.execution_arn.split(":")[6] == stack
        assert lam.get_alias(FunctionName=predict, Name="live")["FunctionVersion"] == "2"
        env = lam.get_function_configuration(FunctionName=predict, Qualifier="2")["Environment"]["Variables"]
        assert env["CNAI_MODEL_URI"] == f"s3://{artifacts}/{key}"
        assert env["CNAI_MODEL_PACKAGE_VERSION"] == str(version.version)
