"""The ingest consumer's environment, validated once at cold start (a bad value names the variable)."""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field

from cnai.settings import SettingsError as SettingsError  # re-exported: callers catch it from here
from cnai.settings import load_env


class IngestSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    lake_bucket: str = Field(alias="CNAI_LAKE_BUCKET", pattern=r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")
    idempotency_table: str = Field(alias="CNAI_IDEMPOTENCY_TABLE", pattern=r"^[A-Za-z0-9_.\-]{3,255}$")
    curated_prefix: str = Field("curated", alias="CNAI_CURATED_PREFIX", pattern=r"^[A-Za-z0-9_\-/]+$")
    quarantine_prefix: str = Field("quarantine", alias="CNAI_QUARANTINE_PREFIX", pattern=r"^[A-Za-z0-9_\-/]+$")
    # How long a record id is remembered: redeliveries and producer retries happen within hours, but a
    # replay of the stream (24 h to 365 days retention) must not re-curate: default 7 days.
    dedup_seconds: int = Field(7 * 24 * 3600, alias="CNAI_DEDUP_SECONDS", ge=60, le=366 * 24 * 3600)
    # Idempotency calls in flight per batch: each is a DynamoDB round trip of a few milliseconds.
    claim_concurrency: int = Field(16, alias="CNAI_CLAIM_CONCURRENCY", ge=1, le=64)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> IngestSettings:
        return load_env(cls, "ingest function environment", env)
