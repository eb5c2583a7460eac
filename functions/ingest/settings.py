"""The ingest consumer's environment (the lake it writes, the idempotency table), validated at cold start.

infra/stacks/ingestion.py builds the function's environment from this model (cnai.settings.environment_for)."""

from __future__ import annotations

from pydantic import Field

from cnai.settings import EnvSettings, Lake
from cnai.settings import SettingsError as SettingsError  # re-exported: callers catch it from here


class IngestSettings(Lake, EnvSettings):
    WHAT = "ingest function environment"

    idempotency_table: str = Field(alias="CNAI_IDEMPOTENCY_TABLE", pattern=r"^[A-Za-z0-9_.\-]{3,255}$")
    quarantine_prefix: str = Field("quarantine", alias="CNAI_QUARANTINE_PREFIX", pattern=r"^[A-Za-z0-9_\-/]+$")
    # How long a record id is remembered: redeliveries and producer retries happen within hours, but a
    # replay of the stream (24 h to 365 days retention) must not re-curate: default 7 days.
    dedup_seconds: int = Field(7 * 24 * 3600, alias="CNAI_DEDUP_SECONDS", ge=60, le=366 * 24 * 3600)
    # Idempotency calls in flight per batch: each is a DynamoDB round trip of a few milliseconds.
    claim_concurrency: int = Field(16, alias="CNAI_CLAIM_CONCURRENCY", ge=1, le=64)
