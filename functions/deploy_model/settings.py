"""The deploy function's environment: which function and alias it releases to, which model's packages it
takes, and the canary policy (share, duration, alarm thresholds, alarm topic); validated at cold start.
When the served model is routed to SageMaker Serverless (CNAI_DEPLOY_ENDPOINT set), releases go to that
endpoint instead (cnai.deploy.endpoint): its update timeout, check interval and kept configurations.

infra/stacks/deploy.py builds the environment from this model (cnai.settings.environment_for).
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import Field, field_validator, model_validator

from cnai.deploy.canary import Policy, Target
from cnai.deploy.endpoint import EndpointModel, EndpointTarget
from cnai.registry.packages import PackageGroupPrefix
from cnai.settings import EnvSettings, ModelSource, PredictFunction, variable


class DeployFunctionSettings(PackageGroupPrefix, PredictFunction, EnvSettings):
    WHAT = "deploy_model function environment"

    # function_name (PredictFunction): the predict function whose alias a release moves
    alias: str = Field("live", alias="CNAI_PREDICT_ALIAS", pattern=r"^[a-zA-Z][a-zA-Z0-9_-]{0,127}$")
    model_name: str = Field(alias=variable(ModelSource, "model_name"), pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")
    canary_percent: int = Field(10, alias="CNAI_CANARY_PERCENT", ge=1, le=99)
    canary_s: int = Field(600, alias="CNAI_CANARY_SECONDS", ge=0, le=24 * 3600)
    check_interval_s: int = Field(60, alias="CNAI_CANARY_CHECK_SECONDS", ge=1, le=3600)
    p99_ms: float = Field(3000, alias="CNAI_CANARY_P99_MS", gt=0)
    max_errors: float = Field(0, alias="CNAI_CANARY_MAX_ERRORS", ge=0)
    max_abstention_pct: float = Field(20, alias="CNAI_CANARY_MAX_ABSTENTION_PCT", ge=0, le=100)
    metrics_namespace: str = Field("cnai", alias="CNAI_PREDICT_METRICS_NAMESPACE", min_length=1)
    metrics_service: str = Field("predict", alias="CNAI_PREDICT_SERVICE", min_length=1)
    alarm_topic_arn: str | None = Field(None, alias="CNAI_ALARM_TOPIC_ARN", pattern=r"^arn:[^:]+:sns:")
    endpoint_name: str | None = Field(
        None, alias="CNAI_DEPLOY_ENDPOINT", pattern=r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$",
        description="the SageMaker Serverless endpoint the model is routed to; unset: the predict alias",
    )  # fmt: skip
    endpoint_image: str | None = Field(None, alias="CNAI_ENDPOINT_IMAGE", description="the serving image URI")
    endpoint_role_arn: str | None = Field(None, alias="CNAI_ENDPOINT_ROLE_ARN", pattern=r"^arn:[^:]+:iam::\d{12}:role/")
    endpoint_memory_mb: int = Field(2048, alias="CNAI_ENDPOINT_MEMORY_MB", ge=1024, le=6144, multiple_of=1024)
    endpoint_max_concurrency: int = Field(5, alias="CNAI_ENDPOINT_MAX_CONCURRENCY", ge=1, le=200)
    endpoint_environment: dict[str, str] = Field(default_factory=dict, alias="CNAI_ENDPOINT_CONTAINER_ENV")
    endpoint_kms_key_arn: str | None = Field(
        None, alias="CNAI_ENDPOINT_KMS_KEY_ARN", pattern=r"^arn:[^:]+:kms:", description="the bootstrap config's key"
    )
    endpoint_network_isolation: bool = Field(False, alias="CNAI_ENDPOINT_NETWORK_ISOLATION")
    endpoint_timeout_s: int = Field(1800, alias="CNAI_ENDPOINT_UPDATE_TIMEOUT_SECONDS", ge=1, le=6 * 3600)
    endpoint_check_s: int = Field(30, alias="CNAI_ENDPOINT_CHECK_SECONDS", ge=1, le=3600)
    endpoint_keep: int = Field(2, alias="CNAI_ENDPOINT_KEEP_CONFIGS", ge=0, le=20)

    def target(self) -> Target:
        return Target(function=self.function_name, model=self.model_name, alias=self.alias)

    @field_validator("endpoint_environment", mode="before")
    @classmethod
    def _json_object(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                return json.loads(value) if value.strip() else {}
            except json.JSONDecodeError as exc:
                raise ValueError(f'not JSON ({exc.msg}); expected {{"NAME": "value"}}') from None
        return value

    @model_validator(mode="after")
    def _endpoint_is_complete(self) -> DeployFunctionSettings:
        if self.endpoint_name and not (self.endpoint_image and self.endpoint_role_arn):
            names = self.variables()
            raise ValueError(
                f"{names['endpoint_name']} is set: {names['endpoint_image']} and {names['endpoint_role_arn']} are "
                "needed too (what a released SageMaker Model runs and assumes)"
            )
        return self

    def endpoint(self) -> EndpointTarget | None:
        """The endpoint route, or None when releases go to the predict alias."""
        if self.endpoint_name is None or self.endpoint_image is None or self.endpoint_role_arn is None:
            return None
        spec = EndpointModel(
            image=self.endpoint_image,
            role_arn=self.endpoint_role_arn,
            memory_mb=self.endpoint_memory_mb,
            max_concurrency=self.endpoint_max_concurrency,
            environment=dict(self.endpoint_environment),
            kms_key_id=self.endpoint_kms_key_arn,
            network_isolation=self.endpoint_network_isolation,
        )
        return EndpointTarget(
            endpoint=self.endpoint_name,
            model=self.model_name,
            spec=spec,
            timeout_s=self.endpoint_timeout_s,
            interval_s=self.endpoint_check_s,
            keep=self.endpoint_keep,
        )

    def policy(self) -> Policy:
        return Policy(
            percent=self.canary_percent,
            canary_s=self.canary_s,
            interval_s=self.check_interval_s,
            p99_ms=self.p99_ms,
            max_errors=self.max_errors,
            max_abstention_pct=self.max_abstention_pct,
            namespace=self.metrics_namespace,
            service=self.metrics_service,
            topic_arn=self.alarm_topic_arn,
        )
