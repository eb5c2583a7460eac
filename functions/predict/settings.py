"""The predict function's environment, described and validated once at cold start.

A bad value stops the container at init with a message naming the variable, instead of answering
requests with a half-configured model.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from cnai.settings import SettingsError as SettingsError  # re-exported: callers catch it from here
from cnai.settings import load_env


class PredictSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    model_name: str = Field("", alias="CNAI_MODEL_NAME", pattern=r"^$|^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
    model_uri: str = Field("", alias="CNAI_MODEL_URI")
    model_version_id: str | None = Field(None, alias="CNAI_MODEL_VERSION_ID")
    model_package_version: str | None = Field(None, alias="CNAI_MODEL_PACKAGE_VERSION")
    sagemaker_endpoints: dict[str, str] = Field(default_factory=dict, alias="CNAI_SAGEMAKER_ENDPOINTS")
    audit_sink: str = Field("stdout", alias="CNAI_AUDIT_SINK", pattern=r"^(stdout|file:.+|s3://[^/]+.*)$")
    audit_store_text: bool = Field(False, alias="CNAI_AUDIT_STORE_TEXT")
    max_inputs: int = Field(64, alias="CNAI_MAX_INPUTS", ge=1, le=1024)
    max_input_chars: int = Field(2000, alias="CNAI_MAX_INPUT_CHARS", ge=1, le=100_000)
    cache_size: int = Field(1024, alias="CNAI_CACHE_SIZE", ge=0, le=1_000_000)
    threads: int | None = Field(None, alias="CNAI_THREADS", ge=1, le=64)

    @field_validator("sagemaker_endpoints", mode="before")
    @classmethod
    def _json_object(cls, value: Any) -> Any:
        if isinstance(value, str):
            if not value.strip():
                return {}
            try:
                return json.loads(value)
            except json.JSONDecodeError as exc:
                raise ValueError(f'not JSON ({exc.msg}); expected {{"model name": "endpoint name"}}') from None
        return value

    @field_validator("model_version_id", "model_package_version", mode="before")
    @classmethod
    def _blank_is_none(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @model_validator(mode="after")
    def _serves_something(self) -> PredictSettings:
        if not self.model_uri and not self.sagemaker_endpoints:
            raise ValueError("set CNAI_MODEL_URI (a model in this function) or CNAI_SAGEMAKER_ENDPOINTS, or both")
        return self


def load_settings(env: Mapping[str, str] | None = None) -> PredictSettings:
    return load_env(PredictSettings, "predict function settings", env)
