"""The predict function's environment: the model it serves (or the SageMaker endpoints it routes to), its
audit sink, and its request limits; validated once at cold start.

infra/stacks/serving.py builds the function's environment from this model (cnai.settings.environment_for).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from pydantic import Field, field_validator, model_validator

from cnai.settings import AuditSink, EnvSettings, ModelSource, ServingLimits
from cnai.settings import SettingsError as SettingsError  # re-exported: callers catch it from here


class PredictSettings(ModelSource, AuditSink, ServingLimits, EnvSettings):
    WHAT = "predict function settings"

    sagemaker_endpoints: dict[str, str] = Field(default_factory=dict, alias="CNAI_SAGEMAKER_ENDPOINTS")
    # explain=true costs one forward pass per word: texts explained per request, words per explained text
    max_explain_inputs: int = Field(4, alias="CNAI_MAX_EXPLAIN_INPUTS", ge=0, le=64)
    max_explain_words: int = Field(64, alias="CNAI_MAX_EXPLAIN_WORDS", ge=1, le=256)
    # POST /v1/models/{model}/generate (and predict's draft_reply) with this generator (cnai.generate.load_generator's
    # URI); in AWS `sagemaker:<endpoint>`: the generator package runs on SageMaker Serverless, not in this function
    generator_uri: str = Field("", alias="CNAI_GENERATOR_URI", max_length=1024)
    max_new_tokens: int = Field(256, alias="CNAI_MAX_NEW_TOKENS", ge=1, le=1024)
    # the server's own deadline per generate call; keep it under the function's timeout (29 s, API Gateway's)
    generate_deadline_s: float = Field(20.0, alias="CNAI_GENERATE_DEADLINE_S", gt=0, le=25)
    # GET /v1/models/{model} shows the registry's approval of the package version served: the group it is in
    model_package_group: str = Field(
        "", alias="CNAI_MODEL_PACKAGE_GROUP", pattern=r"^$|^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$"
    )

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

    @model_validator(mode="after")
    def _serves_something(self) -> PredictSettings:
        if not self.model_uri and not self.sagemaker_endpoints:
            names = self.variables()
            raise ValueError(
                f"set {names['model_uri']} (a model in this function) or {names['sagemaker_endpoints']}, or both"
            )
        return self


def load_settings(env: Mapping[str, str] | None = None) -> PredictSettings:
    return PredictSettings.from_env(env)
