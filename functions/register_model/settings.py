"""Register's environment, validated once at cold start (a bad value names the variable)."""

from __future__ import annotations

from pydantic import Field

from cnai.registry.packages import PackageGroupPrefix
from cnai.settings import EnvSettings, ServingImage


class RegisterSettings(PackageGroupPrefix, ServingImage, EnvSettings):
    WHAT = "register_model function environment"

    # serving_image (ServingImage): the container the package names (SageMaker Serverless path); the artifact
    # is the same one the predict Lambda loads.
    # The group is CDK's in AWS; the local platform lets Register create it on first use.
    create_group: bool = Field(False, alias="CNAI_REGISTRY_CREATE_GROUP")
