"""The deploy function refuses a malformed step event naming the field or setting, before any AWS call."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from types import ModuleType

import pytest


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
