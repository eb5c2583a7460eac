"""The deploy function's environment: which function and alias it releases to, which model's packages it
takes, and the canary policy (share, duration, alarm thresholds, alarm topic); validated at cold start.

infra/stacks/deploy.py builds the environment from this model (cnai.settings.environment_for).
"""

from __future__ import annotations

from pydantic import Field

from cnai.deploy.canary import Policy, Target
from cnai.registry.packages import GROUP_PREFIX
from cnai.settings import EnvSettings


class DeployFunctionSettings(EnvSettings):
    WHAT = "deploy_model function environment"

    function_name: str = Field(alias="CNAI_PREDICT_FUNCTION", min_length=1, description="name or ARN")
    alias: str = Field("live", alias="CNAI_PREDICT_ALIAS", pattern=r"^[a-zA-Z][a-zA-Z0-9_-]{0,127}$")
    model_name: str = Field(alias="CNAI_MODEL_NAME", pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")
    group_prefix: str = Field(alias="CNAI_MODEL_PACKAGE_GROUP_PREFIX", pattern=GROUP_PREFIX)
    canary_percent: int = Field(10, alias="CNAI_CANARY_PERCENT", ge=1, le=99)
    canary_s: int = Field(600, alias="CNAI_CANARY_SECONDS", ge=0, le=24 * 3600)
    check_interval_s: int = Field(60, alias="CNAI_CANARY_CHECK_SECONDS", ge=1, le=3600)
    p99_ms: float = Field(3000, alias="CNAI_CANARY_P99_MS", gt=0)
    max_errors: float = Field(0, alias="CNAI_CANARY_MAX_ERRORS", ge=0)
    max_abstention_pct: float = Field(20, alias="CNAI_CANARY_MAX_ABSTENTION_PCT", ge=0, le=100)
    metrics_namespace: str = Field("cnai", alias="CNAI_PREDICT_METRICS_NAMESPACE", min_length=1)
    metrics_service: str = Field("predict", alias="CNAI_PREDICT_SERVICE", min_length=1)
    alarm_topic_arn: str | None = Field(None, alias="CNAI_ALARM_TOPIC_ARN", pattern=r"^arn:[^:]+:sns:")

    def target(self) -> Target:
        return Target(function=self.function_name, model=self.model_name, alias=self.alias)

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
