"""The ingest API function's environment, validated once at cold start (a bad value names the variable)."""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field

from cnai.settings import SettingsError as SettingsError  # re-exported: callers catch it from here
from cnai.settings import load_env


class IngestApiSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    stream: str = Field(alias="CNAI_STREAM", min_length=1, description="Kinesis stream name or ARN")
    max_records: int = Field(500, alias="CNAI_MAX_RECORDS", ge=1, le=500)
    spread: int = Field(16, alias="CNAI_PARTITION_SPREAD", ge=1, le=1024)
    max_attempts: int = Field(3, alias="CNAI_PUT_ATTEMPTS", ge=1, le=10)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> IngestApiSettings:
        return load_env(cls, "ingest API function environment", env)
