"""The ingest API function's environment (the stream it puts to), validated at cold start.

infra/stacks/ingestion.py builds the function's environment from this model (cnai.settings.environment_for)."""

from __future__ import annotations

from pydantic import Field

from cnai.settings import EnvSettings
from cnai.settings import SettingsError as SettingsError  # re-exported: callers catch it from here


class IngestApiSettings(EnvSettings):
    WHAT = "ingest API function environment"

    stream: str = Field(alias="CNAI_STREAM", min_length=1, description="Kinesis stream name or ARN")
    max_records: int = Field(500, alias="CNAI_MAX_RECORDS", ge=1, le=500)
    spread: int = Field(16, alias="CNAI_PARTITION_SPREAD", ge=1, le=1024)
    max_attempts: int = Field(3, alias="CNAI_PUT_ATTEMPTS", ge=1, le=10)
