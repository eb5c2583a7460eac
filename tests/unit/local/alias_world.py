"""A predict function in moto's Lambda whose published versions pin toy artifacts, and an alias on it: what
`cnai serve --follow` reads (shared by tests/unit/local/test_alias.py and tests/integration/test_serve_follow.py)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3

from cnai.settings import ModelSource, environment_for
from tests.serving_toy import build_toy_artifact
from tests.unit.deploy.world import TRUST, dummy_zip

FUNCTION = "cnai-test-predict"
MODEL = "toy"


@dataclass
class AliasWorld:
    lambda_: Any
    artifacts: Path

    def publish(self, package_version: str, model_uri: str | None = None) -> str:
        """A new function version pinning a toy artifact (its own folder) as registry version `package_version`."""
        if model_uri is None:
            model_uri = str(build_toy_artifact(self.artifacts / f"v{package_version}", name=MODEL))
        env = environment_for(ModelSource, model_name=MODEL, model_uri=model_uri, model_package_version=package_version)
        self.lambda_.update_function_configuration(FunctionName=FUNCTION, Environment={"Variables": env})
        return str(self.lambda_.publish_version(FunctionName=FUNCTION)["Version"])

    def route(self, stable: str, canary: str | None = None, weight: float = 0.0) -> None:
        """Move the alias as the deploy workflow does (UpdateAlias with AdditionalVersionWeights)."""
        weights = {canary: weight} if canary else {}
        self.lambda_.update_alias(
            FunctionName=FUNCTION, Name="live", FunctionVersion=stable,
            RoutingConfig={"AdditionalVersionWeights": weights},
        )  # fmt: skip


def make_world(artifacts: Path) -> AliasWorld:
    """Inside an active mock_aws: the function ($LATEST pins nothing) and its role."""
    role = boto3.client("iam").create_role(RoleName="predict", AssumeRolePolicyDocument=TRUST)["Role"]["Arn"]
    lambda_ = boto3.client("lambda")
    lambda_.create_function(
        FunctionName=FUNCTION, Runtime="python3.12", Role=role, Handler="handler.handler",
        Code={"ZipFile": dummy_zip()},
    )  # fmt: skip
    return AliasWorld(lambda_, artifacts)
