"""Register's environment, validated once at cold start (a bad value names the variable)."""

from __future__ import annotations

from pydantic import Field

from cnai.registry.packages import GROUP_PREFIX
from cnai.settings import EnvSettings, ServingImage


class RegisterSettings(ServingImage, EnvSettings):
    WHAT = "register_model function environment"

    group_prefix: str = Field(alias="CNAI_MODEL_PACKAGE_GROUP_PREFIX", pattern=GROUP_PREFIX)
    # serving_image (ServingImage): the container the package names (SageMaker Serverless path); the artifact
    # is the same one the predict Lambda loads.
    # The group is CDK's in AWS; the local platform lets Register create it on first use.
    create_group: bool = Field(False, alias="CNAI_REGISTRY_CREATE_GROUP")
