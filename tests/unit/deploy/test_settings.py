"""The deploy function's environment: the endpoint route is complete or refused at cold start, naming variables."""

from __future__ import annotations

import pytest

from cnai.errors import CnaiError
from functions.deploy_model.settings import DeployFunctionSettings

BASE = {"CNAI_PREDICT_FUNCTION": "cnai-dev-predict", "CNAI_MODEL_NAME": "banking77",
        "CNAI_MODEL_PACKAGE_GROUP_PREFIX": "cnai-dev"}  # fmt: skip
ROUTED = {**BASE, "CNAI_DEPLOY_ENDPOINT": "cnai-dev-banking77", "CNAI_ENDPOINT_IMAGE": "img:1",
          "CNAI_ENDPOINT_ROLE_ARN": "arn:aws:iam::123456789012:role/serverless",
          "CNAI_ENDPOINT_CONTAINER_ENV": '{"SAGEMAKER_PROGRAM": "inference.py"}',
          "CNAI_ENDPOINT_KEEP_CONFIGS": "3"}  # fmt: skip


def test_without_an_endpoint_releases_go_to_the_alias() -> None:
    assert DeployFunctionSettings.from_env(BASE).endpoint() is None


def test_a_routed_model_gets_its_endpoint_target() -> None:
    target = DeployFunctionSettings.from_env(ROUTED).endpoint()
    assert target is not None and (target.endpoint, target.model, target.keep) == ("cnai-dev-banking77", "banking77", 3)
    assert target.spec.environment == {"SAGEMAKER_PROGRAM": "inference.py"} and target.spec.image == "img:1"


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"CNAI_ENDPOINT_IMAGE": ""}, "CNAI_ENDPOINT_IMAGE"),
        ({"CNAI_ENDPOINT_CONTAINER_ENV": "{not json"}, "CNAI_ENDPOINT_CONTAINER_ENV"),
        ({"CNAI_ENDPOINT_MEMORY_MB": "1500"}, "CNAI_ENDPOINT_MEMORY_MB"),
        ({"CNAI_DEPLOY_ENDPOINT": "bad_name!"}, "CNAI_DEPLOY_ENDPOINT"),
    ],
)
def test_an_incomplete_or_malformed_route_is_refused_naming_the_variable(change: dict[str, str], named: str) -> None:
    env = {k: v for k, v in {**ROUTED, **change}.items() if v}
    with pytest.raises((CnaiError, ValueError), match=named):
        DeployFunctionSettings.from_env(env)
