"""The deploy workflow's SageMaker Serverless branch as synthesized, run locally: an approval (cnai.local.events)
starts the synthesized state machine on moto's interpreter; its Lambda tasks are the real deploy handler in
process (configured for the endpoint), acting on moto's SageMaker with cnai.local.sagemaker's UpdateEndpoint and
an InvokeEndpoint that reaches a container stand-in (tests/unit/deploy/world.container).

Scenarios: approval -> new configuration in service -> health check -> Deployed; an update that ends Failed ->
the previous configuration back and in service, the package Rejected, the execution failed as rolled back; and
the health check answered by the real container hooks (cnai.local.sagemaker.ModelContainer running
cnai.serving.sagemaker on a tiny model's SageMaker tar)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from cnai.local.events import ApprovalBridge, rules_from_template
from cnai.local.sagemaker import LocalEndpoints, ModelContainer
from cnai.local.stepfunctions import LocalStepFunctions
from cnai.registry.packages import ModelVersion, Registry
from cnai.serving.sagemaker import package_model
from cnai.settings import environment_for
from functions.deploy_model.settings import DeployFunctionSettings
from infra.local.functions import InProcessFunctions
from infra.local.template import ACCOUNT, REGION, Function, LocalDeployment
from tests.integration.workflow_env import deploy_workflow_template
from tests.unit.deploy.world import container

STACK = "cnai-ep-deploy"
PREFIX, MODEL = "cnai-ep", "banking77"
ENDPOINT, DEPLOY, BUCKET = "cnai-ep-banking77", "cnai-ep-deploy-fn", "cnai-ep-artifacts"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/cnai-ep-serverless"
BOOT = "ServerlessConfigA1B2-boot"


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return deploy_workflow_template(STACK, [f"{PREFIX}-{MODEL}"], DEPLOY)


@dataclass
class Local:
    registry: Registry
    bridge: ApprovalBridge
    sm: Any
    sfn: Any
    failures: dict[str, str]  # Model name prefix -> the FailureReason its update ends with
    shim: LocalEndpoints

    def approve(self, job: str, tar: bytes | None = None) -> ModelVersion:
        key = f"training/{job}/output/model.tar.gz"
        boto3.client("s3").put_object(Bucket=BUCKET, Key=key, Body=tar or job.encode())
        version = self.registry.create_version(
            MODEL, image="img", model_data=f"s3://{BUCKET}/{key}", report_uri=f"s3://{BUCKET}/e.json",
            metrics={"accuracy": 0.9}, lineage={}, approved=False,
        )  # fmt: skip
        self.registry.approve(MODEL, version.version, "ok")
        return version

    def run(self) -> tuple[dict[str, Any], list[str]]:
        [delivery] = self.bridge.poll()
        deadline = time.monotonic() + 60
        while (done := self.sfn.describe_execution(executionArn=delivery.execution_arn))["status"] == "RUNNING":
            assert time.monotonic() < deadline, "deploy still running"
            time.sleep(0.2)
        events = self.sfn.get_execution_history(executionArn=delivery.execution_arn, maxResults=1000)["events"]
        return dict(done), [e["stateEnteredEventDetails"]["name"] for e in events if "stateEnteredEventDetails" in e]

    def serving(self) -> str:
        return str(self.sm.describe_endpoint(EndpointName=ENDPOINT)["EndpointConfigName"])


@pytest.fixture
def local(template: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Iterator[Local]:
    for name, value in {"AWS_ACCESS_KEY_ID": "t", "AWS_SECRET_ACCESS_KEY": "t", "AWS_DEFAULT_REGION": REGION,
                        "POWERTOOLS_METRICS_DISABLED": "true"}.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        deployment = LocalDeployment({STACK: template})
        deployment.create(boto3.Session())
        sm = boto3.client("sagemaker")
        # The endpoint as `cdk deploy` leaves it: a bootstrap Model and configuration
        sm.create_model(ModelName="ServerlessModelA1B2-boot", ExecutionRoleArn=ROLE,
                        PrimaryContainer={"Image": "img", "ModelDataUrl": "s3://boot/model.tar.gz"})  # fmt: skip
        sm.create_endpoint_config(EndpointConfigName=BOOT, ProductionVariants=[
            {"VariantName": "AllTraffic", "ModelName": "ServerlessModelA1B2-boot",
             "ServerlessConfig": {"MemorySizeInMB": 2048, "MaxConcurrency": 5}}])  # fmt: skip
        sm.create_endpoint(EndpointName=ENDPOINT, EndpointConfigName=BOOT)
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket=BUCKET)
        s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        registry = Registry(sm, PREFIX)
        registry.ensure_group(MODEL)
        env = environment_for(
            DeployFunctionSettings, function_name="cnai-ep-predict", model_name=MODEL, group_prefix=PREFIX,
            endpoint_name=ENDPOINT, endpoint_image="img:serve", endpoint_role_arn=ROLE,
            endpoint_environment={"SAGEMAKER_PROGRAM": "inference.py"}, endpoint_check_s=1, endpoint_timeout_s=60,
        )  # fmt: skip
        deploy = Function(STACK, "Deploy", DEPLOY, "functions.deploy_model.handler.handler", env, 300, 256)
        sfn = boto3.client("stepfunctions")
        rules = rules_from_template(template, lambda value: deployment.resolve(STACK, value))
        bridge = ApprovalBridge(rules, sm, sfn, account=ACCOUNT, region=REGION)
        failures: dict[str, str] = {}

        def outcome(_: str, model: dict[str, Any]) -> str | None:
            return next((why for head, why in failures.items() if model["ModelName"].startswith(head)), None)

        with (
            LocalEndpoints(container, outcome=outcome) as shim,
            LocalStepFunctions(InProcessFunctions({DEPLOY: deploy}).callables()),
        ):
            yield Local(registry, bridge, sm, sfn, failures, shim)


def test_an_approval_moves_the_endpoint_to_a_healthy_new_configuration(local: Local) -> None:
    # Given the endpoint on its bootstrap configuration  When a version is approved
    version = local.approve("job-1")
    done, states = local.run()
    # Then the workflow waited for the update, probed the new model and ended Deployed
    assert done["status"] == "SUCCEEDED", done
    assert states[:2] == ["Release", "Canary?"] and states[-3:] == ["HealthCheck", "Finish", "Deployed"]
    assert "WaitInService" in states and "CheckEndpoint" in states
    serving = local.serving()
    assert serving.startswith(f"{ENDPOINT}-p{version.version}-")
    env = local.sm.describe_model(ModelName=serving)["PrimaryContainer"]["Environment"]
    assert env["CNAI_MODEL_PACKAGE_VERSION"] == str(version.version)


def test_an_update_that_fails_puts_the_previous_configuration_back_and_rejects_the_package(local: Local) -> None:
    # Given an approved version whose new configuration ends Failed on SageMaker
    local.failures[f"{ENDPOINT}-p1-"] = "container exited with code 1"
    version = local.approve("job-1")
    # When the deploy runs
    done, states = local.run()
    # Then the endpoint is back, in service, on the bootstrap configuration ...
    assert (done["status"], done.get("error")) == ("FAILED", "EndpointRolledBack"), done
    assert "EndpointRollback" in states and states[-3:] == ["CheckRestored", "Restored?", "EndpointRolledBack"]
    assert local.serving() == BOOT
    assert local.sm.describe_endpoint(EndpointName=ENDPOINT)["EndpointStatus"] == "InService"
    # ... the package is Rejected with SageMaker's reason, and that rejection starts nothing
    marked = local.sm.describe_model_package(ModelPackageName=version.arn)
    assert marked["ModelApprovalStatus"] == "Rejected" and "container exited" in marked["ApprovalDescription"]
    assert local.bridge.poll() == []


def test_the_real_container_hooks_pass_the_health_check(local: Local, tiny_artifact: Path, tmp_path: Path) -> None:
    # Given a version whose tar is cnai's SageMaker package of a real (tiny) model, served as SageMaker's
    # container would: the tar unpacked, cnai.serving.sagemaker's hooks under the Model's environment
    tar = package_model(tiny_artifact, tmp_path / "model.tar.gz")
    local.shim.serve = ModelContainer(root=tmp_path / "endpoints")
    version = local.approve("job-1", tar.read_bytes())
    # When the deploy runs
    done, states = local.run()
    # Then the probe was answered by the new identity (route name and registry version pinned by the workflow)
    assert done["status"] == "SUCCEEDED", done
    assert states[-3:] == ["HealthCheck", "Finish", "Deployed"]
    probe = json.loads(done["output"])["probe"]["result"]
    assert probe["identity"].startswith(f"{MODEL}:") and probe["identity"].endswith(f"@{version.version}")
    assert probe["label"]
