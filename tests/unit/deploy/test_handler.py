"""The deploy function refuses a malformed step event naming the field or setting, before any AWS call."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from types import ModuleType

import pytest

from cnai.deploy.canary import DeployError


@pytest.fixture
def handler(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    env = {"AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x",
           "CNAI_PREDICT_FUNCTION": "cnai-predict", "CNAI_MODEL_NAME": "banking77",
           "CNAI_MODEL_PACKAGE_GROUP_PREFIX": "cnai"}  # fmt: skip
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    name = "functions.deploy_model.handler"
    monkeypatch.delitem(sys.modules, name, raising=False)
    yield importlib.import_module(name)
    sys.modules.pop(name, None)  # the next importer reads its own environment


@pytest.mark.parametrize(
    "event", [{"step": "release"}, {"step": "release", "package_arn": ""}, {"step": "release", "package_arn": 3}]
)
def test_a_release_without_a_package_arn_names_the_field(handler: ModuleType, event: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="package_arn: the release step needs"):
        handler.steps.run(event)


def test_an_unknown_step_is_named(handler: ModuleType) -> None:
    with pytest.raises(ValueError, match="'ship' is not one of release, check, promote, rollback, endpoint_check"):
        handler.steps.run({"step": "ship"})


def test_an_endpoint_step_without_an_endpoint_names_the_setting(handler: ModuleType) -> None:
    # Given a deploy function configured for the predict alias only  When an endpoint step arrives
    # Then it names the missing setting instead of calling SageMaker
    with pytest.raises(ValueError, match="CNAI_DEPLOY_ENDPOINT"):
        handler.steps.run({"step": "endpoint_probe", "release": {}})


def test_a_step_without_its_state_names_the_field(handler: ModuleType) -> None:
    with pytest.raises(ValueError, match="release: step check needs it as an object, got NoneType"):
        handler.steps.run({"step": "check"})


PROMOTE_WITHOUT_PACKAGE_VERSION = {"function": "f", "model": "m", "alias": "live", "version": "3", "package_arn": "a"}


@pytest.mark.parametrize(
    ("event", "missing"),
    [
        ({"step": "check", "release": {"function": "f"}}, "model, alias, version, package_arn, package_version"),
        ({"step": "promote", "release": PROMOTE_WITHOUT_PACKAGE_VERSION}, "package_version"),
        ({"step": "rollback", "state": {"error": {"Error": "States.Timeout"}}}, "function, model, alias"),
    ],
)
def test_a_hand_built_state_without_the_release_result_names_what_is_missing(
    handler: ModuleType, event: dict[str, object], missing: str
) -> None:
    # Given a step event whose release result lacks fields (written by hand, or by another definition)
    # When the step runs  Then it is refused naming the step and the missing fields, before any AWS call
    with pytest.raises(DeployError, match=rf"step {event['step']}: release.result has no {missing}"):
        handler.steps.run(event)


def test_an_endpoint_rollback_without_the_release_result_names_what_is_missing() -> None:
    from cnai.deploy import endpoint

    whole = {"release": {"result": {"endpoint": "ep", "package_version": 3}}, "error": {"Error": "x", "Cause": "y"}}
    with pytest.raises(DeployError, match=r"step endpoint_rollback: release.result has no config, previous_config, "
                                          r"package_arn \(.*got keys: endpoint, package_version\)"):  # fmt: skip
        endpoint.rollback_from_state(None, whole)  # type: ignore[arg-type]  # refused before any client is used


def test_a_probe_answer_over_sagemakers_bound_is_unhealthy_without_being_parsed() -> None:
    import io
    from types import SimpleNamespace

    from botocore.exceptions import ClientError
    from botocore.response import StreamingBody

    from cnai.deploy import endpoint
    from cnai.deploy.canary import Clients
    from cnai.model.endpoint import MAX_ANSWER_BYTES

    raw = b"[" + b"0," * MAX_ANSWER_BYTES + b"0]"
    runtime = SimpleNamespace(
        exceptions=SimpleNamespace(ClientError=ClientError),
        invoke_endpoint=lambda **kw: {"Body": StreamingBody(io.BytesIO(raw), len(raw))},
    )
    clients = Clients(None, None, None, None, runtime)  # type: ignore[arg-type]  # the probe uses the runtime only
    target = endpoint.EndpointTarget("ep", "banking77", endpoint.EndpointModel(image="img", role_arn="arn:role"))
    with pytest.raises(endpoint.EndpointUnhealthyError, match=f"ep: the probe's answer is over {MAX_ANSWER_BYTES}"):
        endpoint.probe(clients, target, {"endpoint": "ep", "package_version": 3})
