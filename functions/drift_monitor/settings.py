"""The drift monitor's environment, validated once at cold start (a bad value names the variable).

infra builds the function's environment from this model (cnai.settings.environment_for); the thresholds
travel as one JSON object (cnai.monitoring.drift.Thresholds, the same fields as the `drift` settings group).
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import Field, field_validator

from cnai.monitoring.drift import Thresholds
from cnai.monitoring.monitor import MonitorConfig
from cnai.registry.packages import PackageGroupPrefix
from cnai.settings import BUCKET_NAME, EnvSettings, TrainingWorkflow


class DriftMonitorSettings(PackageGroupPrefix, TrainingWorkflow, EnvSettings):
    WHAT = "drift_monitor function environment"

    # Where the predict audit trail lands: s3://bucket/prefix with {yyyy} {MM} {dd} for the day partitions.
    audit_source: str = Field(alias="CNAI_DRIFT_AUDIT_SOURCE", pattern=r"^(file:.+|s3://[a-z0-9][a-z0-9.\-]+.*)$")
    reports_bucket: str = Field(alias="CNAI_DRIFT_REPORTS_BUCKET", pattern=BUCKET_NAME)
    reports_prefix: str = Field("drift", alias="CNAI_DRIFT_REPORTS_PREFIX", pattern=r"^[A-Za-z0-9_\-/]+$")
    cooldown_table: str = Field(alias="CNAI_DRIFT_COOLDOWN_TABLE", pattern=r"^[A-Za-z0-9_.\-]{3,255}$")
    window_hours: int = Field(24, alias="CNAI_DRIFT_WINDOW_HOURS", ge=1, le=24 * 31)
    min_predictions: int = Field(200, alias="CNAI_DRIFT_MIN_PREDICTIONS", ge=1)
    thresholds: Thresholds = Field(default_factory=Thresholds, alias="CNAI_DRIFT_THRESHOLDS")
    cooldown_hours: int = Field(72, alias="CNAI_DRIFT_COOLDOWN_HOURS", ge=1, le=24 * 366)
    lookback_days: int = Field(30, alias="CNAI_DRIFT_LOOKBACK_DAYS", ge=1, le=3660)
    retrain: bool = Field(True, alias="CNAI_DRIFT_RETRAIN")

    @field_validator("thresholds", mode="before")
    @classmethod
    def _json_object(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                return json.loads(value)
            except json.JSONDecodeError as exc:
                raise ValueError(f'not JSON ({exc.msg}); expected {{"label_psi": 0.25, ...}}') from None
        return value

    def config(self, model: str) -> MonitorConfig:
        """The monitor's configuration for one model (the schedule's event names it)."""
        return MonitorConfig(
            model=model,
            audit_source=self.audit_source,
            reports=f"s3://{self.reports_bucket}/{self.reports_prefix}",
            state_machine_arn=self.state_machine_arn,
            cooldown_table=self.cooldown_table,
            group_prefix=self.group_prefix,
            window_hours=self.window_hours,
            min_predictions=self.min_predictions,
            thresholds=self.thresholds,
            cooldown_hours=self.cooldown_hours,
            lookback_days=self.lookback_days,
            retrain=self.retrain,
        )
