"""Typed deployment settings. Read from CDK context (cdk.json / -c key=value) with the defaults below,
so `python app.py` synthesizes with no AWS account, no credentials and no git."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

CONTEXT_PREFIX = "cnai:"


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    stage: str = Field("dev", pattern=r"^[a-z][a-z0-9-]{1,15}$")
    project: str = Field("cnai", pattern=r"^[a-z][a-z0-9-]{1,15}$")

    # Serving (infra/stacks/serving.py). The artifact is model.tar.gz in S3, pinned by object version.
    serving_model_name: str = Field("banking77", pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")
    serving_model_bucket: str | None = Field(None, description="existing artifact bucket; None: the stack creates one")
    serving_model_key: str = Field("models/banking77/model.tar.gz", min_length=1)
    serving_model_version_id: str | None = Field(None, description="S3 object version of the tar (pin it in prod)")
    serving_memory_mb: int = Field(2048, ge=128, le=10240, description="Lambda memory; vCPUs follow it")
    serving_reserved_concurrency: int = Field(20, ge=1, le=1000)
    serving_provisioned_concurrency: int = Field(0, ge=0, le=1000, description="0: none (on-demand cold starts)")
    serving_max_inputs: int = Field(64, ge=1, le=1024)
    serving_max_input_chars: int = Field(2000, ge=1, le=100_000)
    api_iam_auth: bool = Field(True, description="SigV4 (IAM) on every route; the default")
    api_keys: bool = Field(False, description="require an API key (usage plan with quota) on every route")
    api_throttle_rate: float = Field(100.0, gt=0, description="stage steady-state requests/s")
    api_throttle_burst: int = Field(200, ge=1)
    api_quota_per_day: int = Field(100_000, ge=1, description="usage-plan quota per API key, when api_keys")
    audit_retention_days: int = Field(365, ge=1, le=36_500, description="Object Lock retention and log expiry")
    audit_lock_mode: Literal["GOVERNANCE", "COMPLIANCE"] = "GOVERNANCE"
    audit_store_text: bool = Field(False, description="store PII-redacted input text in the audit records")
    sagemaker_endpoint: bool = Field(True, description="deploy the SageMaker Serverless endpoint for the artifact")
    sagemaker_route: bool = Field(False, description="route the model's predict calls to the endpoint")
    sagemaker_memory_mb: int = Field(2048, ge=1024, le=6144, multiple_of=1024, description="serverless memory")
    sagemaker_max_concurrency: int = Field(5, ge=1, le=200)
    sagemaker_image_uri: str | None = Field(None, description="inference image; None: regional PyTorch inference DLC")
    # Ingestion (infra/stacks/ingestion.py): stream, consumer event source mapping, data lake.
    ingest_stream_mode: Literal["on_demand", "provisioned"] = "on_demand"
    ingest_shards: int = Field(2, ge=1, le=500, description="shard count in provisioned mode")
    ingest_retention_hours: int = Field(24, ge=24, le=8760)
    ingest_batch_size: int = Field(500, ge=1, le=10_000)
    ingest_batching_window_s: int = Field(5, ge=0, le=300)
    ingest_max_retries: int = Field(5, ge=0, le=10_000, description="then the batch goes to the DLQ")
    ingest_max_record_age_s: int = Field(6 * 3600, ge=60, le=604_800, description="older: straight to the DLQ")
    ingest_parallelization: int = Field(2, ge=1, le=10, description="concurrent batches per shard")
    ingest_memory_mb: int = Field(1024, ge=128, le=10240)
    ingest_dedup_days: int = Field(7, ge=1, le=366, description="how long record ids are remembered")
    ingest_iterator_age_alarm_s: int = Field(300, ge=60, description="alarm when the consumer falls behind")
    lake_quarantine_days: int = Field(90, ge=1, description="quarantined payloads (may hold PII) expire")
    lake_ia_days: int = Field(30, ge=30, description="curated objects move to Standard-IA")

    @model_validator(mode="after")
    def _ingest_limits(self) -> Settings:
        if self.ingest_max_record_age_s > self.ingest_retention_hours * 3600:
            raise ValueError("ingest_max_record_age_s exceeds the stream retention: records expire first")
        if self.ingest_dedup_days * 24 < self.ingest_retention_hours:
            raise ValueError(
                f"ingest_dedup_days ({self.ingest_dedup_days} days) is shorter than the stream retention "
                f"({self.ingest_retention_hours} hours): a replay from the oldest record would curate "
                "records whose ids were already forgotten a second time; raise ingest_dedup_days to at least "
                f"{-(-self.ingest_retention_hours // 24)}"
            )
        return self

    @model_validator(mode="after")
    def _api_is_never_open(self) -> Settings:
        if not (self.api_iam_auth or self.api_keys):
            raise ValueError("api_iam_auth and api_keys are both false: the predict API would be open to anyone")
        if self.sagemaker_route and not self.sagemaker_endpoint:
            raise ValueError("sagemaker_route needs sagemaker_endpoint: there is no endpoint to route to")
        return self

    @property
    def prefix(self) -> str:
        return f"{self.project}-{self.stage}"


def settings_from_context(get: Any) -> Settings:
    """Collect `cnai:<field>` context values (get = app.node.try_get_context)."""
    values = {name: get(CONTEXT_PREFIX + name) for name in Settings.model_fields}
    return Settings.model_validate({k: v for k, v in values.items() if v is not None})
