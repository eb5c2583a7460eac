"""The serverless endpoint path's steps (cnai.deploy.endpoint) on moto's SageMaker, extended by cnai.local.sagemaker
with UpdateEndpoint and an InvokeEndpoint that reaches a container stand-in (world.container)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from cnai.deploy import endpoint
from cnai.deploy.canary import Clients, DeployError
from cnai.deploy.endpoint import EndpointModel, EndpointTarget, EndpointUnhealthyError
from cnai.local.sagemaker import LocalEndpoints
from tests.unit.deploy.world import MODEL, World, container

ENDPOINT = "cnai-dev-banking77"
ROLE = "arn:aws:iam::123456789012:role/cnai-dev-serverless"
BOOT_MODEL, BOOT_CONFIG = "ServerlessModelA1B2-xyz", "ServerlessConfigC3D4-xyz"
SERVERLESS = {"MemorySizeInMB": 2048, "MaxConcurrency": 5}
CONTAINER_ENV = {"SAGEMAKER_PROGRAM": "inference.py", "SAGEMAKER_SUBMIT_DIRECTORY": "/opt/ml/model/code"}


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        self.now += 1.5  # every release gets its own stamp
        return self.now


@dataclass
class Endpoint:
    world: World
    clients: Clients
    target: EndpointTarget
    shim: LocalEndpoints
    clock: Clock
    failures: dict[str, str]  # Model name -> the FailureReason its update ends with

    @property
    def sm(self) -> Any:
        return self.clients.registry.sm

    def described(self) -> dict[str, Any]:
        return dict(self.sm.describe_endpoint(EndpointName=ENDPOINT))

    def until_settled(self, watch: dict[str, Any]) -> dict[str, Any]:
        for _ in range(5):
            result = endpoint.check(self.clients, watch, clock=self.clock)
            if result["status"] != "updating":
                return result
        raise AssertionError(f"{watch['config']} still updating")

    def approved(self, job: str) -> Any:
        return self.world.register(job, approved=True)


@pytest.fixture
def ep(world: World) -> Iterator[Endpoint]:
    """The endpoint as `cdk deploy` leaves it: a bootstrap Model (CloudFormation's name) and configuration."""
    sm = world.registry.sm
    sm.create_model(ModelName=BOOT_MODEL, ExecutionRoleArn=ROLE,
                    PrimaryContainer={"Image": "img:boot", "ModelDataUrl": "s3://boot/model.tar.gz",
                                      "Environment": dict(CONTAINER_ENV)})  # fmt: skip
    sm.create_endpoint_config(EndpointConfigName=BOOT_CONFIG, ProductionVariants=[
        {"VariantName": "AllTraffic", "ModelName": BOOT_MODEL, "ServerlessConfig": SERVERLESS}])  # fmt: skip
    sm.create_endpoint(EndpointName=ENDPOINT, EndpointConfigName=BOOT_CONFIG)
    failures: dict[str, str] = {}
    clients = Clients(world.clients.lambda_, world.clients.cloudwatch, world.clients.s3, world.registry,
                      boto3.client("sagemaker-runtime"))  # fmt: skip
    spec = EndpointModel(image="img:serve", role_arn=ROLE, environment=dict(CONTAINER_ENV))
    target = EndpointTarget(endpoint=ENDPOINT, model=MODEL, spec=spec, timeout_s=60, interval_s=1, keep=1)
    with LocalEndpoints(container, outcome=lambda _, model: failures.get(model["ModelName"])) as shim:
        yield Endpoint(world, clients, target, shim, Clock(), failures)


def test_a_release_pins_the_package_and_moves_the_endpoint_once_healthy(ep: Endpoint) -> None:
    # Given an approved package
    version = ep.approved("job-1")
    # When it is released to the endpoint
    state = endpoint.release(ep.clients, ep.target, version.arn, clock=ep.clock)
    # Then a Model pinned to its tar, object version and registry version, the spec's image/role/capacity ...
    assert state["action"] == "endpoint" and state["previous_config"] == BOOT_CONFIG
    name = state["config"]
    assert name.startswith(f"{ENDPOINT}-p{version.version}-") and len(name) <= 63
    model = ep.sm.describe_model(ModelName=name)
    env = model["PrimaryContainer"]["Environment"]
    assert model["PrimaryContainer"]["ModelDataUrl"] == version.model_data and model["ExecutionRoleArn"] == ROLE
    assert env["CNAI_MODEL_PACKAGE_VERSION"] == str(version.version) and env["CNAI_MODEL_VERSION_ID"]
    assert env["SAGEMAKER_PROGRAM"] == "inference.py" and model["PrimaryContainer"]["Image"] == "img:serve"
    [variant] = ep.sm.describe_endpoint_config(EndpointConfigName=name)["ProductionVariants"]
    assert variant["ServerlessConfig"] == SERVERLESS and variant["ModelName"] == name
    # ... the endpoint updating to it, then in service, and the probe answered by the new identity
    assert ep.shim.updates == [(ENDPOINT, name)]
    assert endpoint.check(ep.clients, state, clock=ep.clock)["status"] == "in_service"
    probed = endpoint.probe(ep.clients, ep.target, state)
    assert probed["identity"] == f"{MODEL}:abc123@{version.version}"
    # ... and the bootstrap configuration, CloudFormation's, is kept
    finished = endpoint.finish(ep.clients, ep.target, state)
    assert finished["serving"] == name and finished["deleted"] == []
    assert ep.sm.describe_endpoint_config(EndpointConfigName=BOOT_CONFIG)


def test_a_refused_update_leaves_no_model_or_configuration_behind(
    ep: Endpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given SageMaker refusing the UpdateEndpoint (another update won the race since DescribeEndpoint)
    version = ep.approved("job-1")
    error = {"Error": {"Code": "ValidationException", "Message": "Cannot update in-progress endpoint"}}
    monkeypatch.setattr(ep.sm, "update_endpoint", lambda **_: (_ for _ in ()).throw(ClientError(error, "Update")))
    # When the package is released  Then the refusal is raised naming the endpoint
    with pytest.raises(DeployError, match=f"endpoint {ENDPOINT}: the update to .* was refused"):
        endpoint.release(ep.clients, ep.target, version.arn, clock=ep.clock)
    # and the Model and configuration made for it are gone, the endpoint unchanged
    names = [c["EndpointConfigName"] for c in ep.sm.list_endpoint_configs()["EndpointConfigs"]]
    assert names == [BOOT_CONFIG]
    assert [m["ModelName"] for m in ep.sm.list_models()["Models"]] == [BOOT_MODEL]
    assert ep.described()["EndpointConfigName"] == BOOT_CONFIG


def test_a_repeated_event_for_the_serving_package_changes_nothing(ep: Endpoint) -> None:
    # Given a package released and in service
    version = ep.approved("job-1")
    first = endpoint.release(ep.clients, ep.target, version.arn, clock=ep.clock)
    ep.until_settled(first)
    # When the same approval event arrives again (EventBridge delivers at least once)
    again = endpoint.release(ep.clients, ep.target, version.arn, clock=ep.clock)
    # Then nothing is created or updated
    assert again["action"] == "none" and again["config"] == first["config"]
    assert len(ep.shim.updates) == 1


def test_a_failed_update_returns_to_the_previous_configuration_and_rejects_the_package(ep: Endpoint) -> None:
    # Given an approved package whose update ends Failed (the container cannot start)
    version = ep.approved("job-1")
    state = endpoint.release(ep.clients, ep.target, version.arn, clock=ep.clock)
    ep.failures[state["config"]] = "The primary container for production variant AllTraffic did not pass the ping"
    # When the workflow checks it
    checked = ep.until_settled(state)
    assert checked["status"] == "failed" and "did not pass the ping" in checked["reason"]
    whole = {"release": {"result": state}, "endpoint_check": {"result": checked}}
    restore = endpoint.rollback_from_state(ep.clients, whole, clock=ep.clock)
    # Then the endpoint goes back to the bootstrap configuration and is in service on it
    assert ep.shim.updates[-1] == (ENDPOINT, BOOT_CONFIG)
    assert ep.until_settled(restore)["status"] == "in_service"
    assert ep.described()["EndpointConfigName"] == BOOT_CONFIG
    # ... and the package is Rejected with the reason
    marked = ep.sm.describe_model_package(ModelPackageName=version.arn)
    assert marked["ModelApprovalStatus"] == "Rejected"
    assert "endpoint update failed" in marked["ApprovalDescription"] and "ping" in marked["ApprovalDescription"]


def test_a_health_check_answered_by_another_identity_rolls_back(ep: Endpoint) -> None:
    # Given package A serving, then package B whose container answers without its registry version
    first = ep.approved("job-1")
    serving = endpoint.release(ep.clients, ep.target, first.arn, clock=ep.clock)
    ep.until_settled(serving)
    endpoint.finish(ep.clients, ep.target, serving)
    second = ep.approved("job-2")
    state = endpoint.release(ep.clients, ep.target, second.arn, clock=ep.clock)
    assert state["previous_config"] == serving["config"]
    assert ep.until_settled(state)["status"] == "in_service"
    ep.sm.delete_model(ModelName=state["config"])  # the stand-in now reads no pinned identity
    ep.sm.create_model(ModelName=state["config"], ExecutionRoleArn=ROLE,
                       PrimaryContainer={"Image": "img", "ModelDataUrl": second.model_data})  # fmt: skip
    # When the probe runs  Then it fails naming who answered
    with pytest.raises(EndpointUnhealthyError, match=f"answered by model:abc123, not {MODEL} registry version"):
        endpoint.probe(ep.clients, ep.target, state)
    # ... and the rollback (the caught error as the reason) puts A's configuration back
    error = {"Error": "EndpointUnhealthyError", "Cause": "answered by model:abc123"}
    restore = endpoint.rollback_from_state(ep.clients, {"release": {"result": state}, "error": error}, clock=ep.clock)
    assert ep.until_settled(restore)["status"] == "in_service"
    assert ep.described()["EndpointConfigName"] == serving["config"]
    described = ep.sm.describe_model_package(ModelPackageName=second.arn)
    assert described["ModelApprovalStatus"] == "Rejected"
    assert "EndpointUnhealthyError" in described["ApprovalDescription"]
    assert ep.sm.describe_model_package(ModelPackageName=first.arn)["ModelApprovalStatus"] == "Approved"


def test_an_update_that_never_ends_times_out(ep: Endpoint) -> None:
    # Given a release whose endpoint stays Updating (nothing describes it into its next state)
    version = ep.approved("job-1")
    ep.shim.settle_after = 1000
    state = endpoint.release(ep.clients, ep.target, version.arn, clock=ep.clock)
    # When checked past the timeout  Then it is a failed update naming the wait
    ep.clock.now += ep.target.timeout_s
    checked = endpoint.check(ep.clients, state, clock=ep.clock)
    assert checked["status"] == "failed" and "still Updating" in checked["reason"]
    # ... and a rollback while SageMaker still updates is refused as busy (the state machine retries it)
    with pytest.raises(endpoint.EndpointBusyError, match="is Updating"):
        endpoint.rollback(ep.clients, state, "timeout", clock=ep.clock)


def test_finish_keeps_the_newest_replaced_configurations_and_a_person_can_roll_back_to_one(ep: Endpoint) -> None:
    # Given three packages released one after another (keep=1)
    released = []
    for job in ("job-1", "job-2", "job-3"):
        version = ep.approved(job)
        state = endpoint.release(ep.clients, ep.target, version.arn, clock=ep.clock)
        ep.until_settled(state)
        finished = endpoint.finish(ep.clients, ep.target, state)
        released.append((version, state["config"]))
    # Then the serving one and the newest replaced one are kept; the oldest (and its Model) are deleted
    assert finished["kept"] == [released[1][1]] and finished["deleted"] == [released[0][1]]
    assert endpoint.our_configs(ep.clients, ENDPOINT) == [released[2][1], released[1][1]]
    with pytest.raises(ep.sm.exceptions.ClientError):
        ep.sm.describe_model(ModelName=released[0][1])
    # When a person rolls back naming another model  Then nothing moves and the model it serves is named
    with pytest.raises(DeployError, match=rf"configuration {released[1][1]} serves model {MODEL}, not other-model"):
        endpoint.rollback_to(ep.clients, ENDPOINT, released[1][0].version, model="other-model")
    assert ep.described()["EndpointConfigName"] == released[2][1]
    # When a person rolls back to the second package  Then the endpoint moves to its kept configuration
    config = endpoint.rollback_to(ep.clients, ENDPOINT, released[1][0].version, model=MODEL)
    assert config == released[1][1] and ep.shim.updates[-1] == (ENDPOINT, config)
    # ... and a package whose configuration is gone is refused, naming what is kept
    with pytest.raises(DeployError, match=r"no kept configuration serves package version 1 \(kept: 2, 3\)"):
        endpoint.rollback_to(ep.clients, ENDPOINT, released[0][0].version)


def test_a_tar_overwritten_since_registration_is_refused(ep: Endpoint) -> None:
    # Given a package whose lineage recorded its tar's object version, then the tar overwritten
    key = "training/job-9/output/model.tar.gz"
    first = ep.world.clients.s3.put_object(Bucket="cnai-dev-artifacts", Key=key, Body=b"one")["VersionId"]
    version = ep.world.registry.create_version(
        MODEL, image="img", model_data=f"s3://cnai-dev-artifacts/{key}", report_uri="s3://cnai-dev-artifacts/e.json",
        metrics={}, lineage={"artifact_object_version": first}, approved=True,
    )  # fmt: skip
    ep.world.clients.s3.put_object(Bucket="cnai-dev-artifacts", Key=key, Body=b"two")
    # When it is released  Then SageMaker is never asked to load the other bytes
    with pytest.raises(DeployError, match="overwritten since registration"):
        endpoint.release(ep.clients, ep.target, version.arn, clock=ep.clock)
    assert ep.shim.updates == []


def test_names_fit_sagemaker_and_carry_the_package_version() -> None:
    name = endpoint.resource_name("x" * 63, 12345, 1_800_000_000.123)
    assert len(name) <= 63 and endpoint.package_of(name, "x" * 63) == 12345
    assert endpoint.package_of(BOOT_CONFIG, ENDPOINT) is None


def test_a_release_is_encrypted_and_isolated_as_the_bootstrap_is(ep: Endpoint) -> None:
    # Given the bootstrap's key and network isolation carried to the deploy function (infra/stacks/deploy.py)
    key = "arn:aws:kms:us-east-1:123456789012:key/0f0e0d0c-1111-2222-3333-444455556666"
    spec = EndpointModel(image="img:serve", role_arn=ROLE, environment=dict(CONTAINER_ENV), kms_key_id=key,
                         network_isolation=True)  # fmt: skip
    target = EndpointTarget(endpoint=ENDPOINT, model=MODEL, spec=spec, timeout_s=60, interval_s=1, keep=1)
    asked: list[dict[str, Any]] = []  # moto 5.2 drops EnableNetworkIsolation: read the request SageMaker gets
    ep.clients.registry.sm.meta.events.register(
        "provide-client-params.sagemaker.CreateModel", lambda params, **_: asked.append(dict(params))
    )
    # When a package is released
    state = endpoint.release(ep.clients, target, ep.approved("job-1").arn, clock=ep.clock)
    # Then the new Model runs isolated and the new configuration is encrypted with that key, as the bootstrap's
    assert [a["EnableNetworkIsolation"] for a in asked] == [True]
    assert ep.sm.describe_endpoint_config(EndpointConfigName=state["config"])["KmsKeyId"] == key
