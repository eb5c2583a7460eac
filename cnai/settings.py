"""Every Lambda function's environment: one pydantic model per function, built from the shared pieces below,
validated once at cold start, and the only place a variable's name is written.

A function's model lists its variables as field aliases (`CNAI_<NAME>`). The function reads them with
`Model.from_env()`; infra writes them with `environment_for(Model, field=value, ...)`, which maps the field
names to the same aliases. So a variable renamed here is renamed in the deployment too, and infra can neither
set a variable the function does not read nor forget one it requires.

A bad value stops the container at init with one line naming each variable and its problem, instead of
answering requests half-configured.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any, ClassVar, Self, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from cnai.errors import CnaiError, describe

PREFIX = "CNAI_"
M = TypeVar("M", bound=BaseModel)


class SettingsError(CnaiError):
    """The function's environment is wrong; the message names each variable and its problem."""


def load_env(model: type[M], what: str, env: Mapping[str, str] | None = None) -> M:
    """Validate the CNAI_* variables of `env` (default: os.environ) against `model`, whose fields carry the
    variable names as aliases (only CNAI_* are passed, so an unrelated variable named like a field never
    leaks in through populate_by_name)."""
    source = os.environ if env is None else env
    try:
        return model.model_validate({k: v for k, v in source.items() if k.startswith(PREFIX)})
    except ValidationError as exc:
        raise SettingsError(f"{what}: {describe(exc, whole='environment')}") from None


def _env_text(value: Any) -> str:
    """How a value is written into a Lambda environment: what the model's validation reads back."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Mapping | list | tuple):
        return json.dumps(value, sort_keys=True, separators=(",", ":"))
    return str(value)


def environment_for(model: type[BaseModel], /, **values: Any) -> dict[str, str]:
    """The environment variables that give `model` these field values: {alias: text}.

    `None` leaves a variable out (its default applies). Raises ValueError naming an unknown field (infra
    would set a variable the function never reads) or a required field left out (the function would not
    start). Values may be CDK tokens (strings): the function validates them at cold start, and tests validate
    the synthesized environment against the model.
    """
    fields = model.model_fields
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ValueError(f"{model.__name__} has no setting {', '.join(unknown)} (fields: {', '.join(fields)})")
    missing = sorted(n for n, f in fields.items() if f.is_required() and values.get(n) is None)
    if missing:
        raise ValueError(f"{model.__name__} requires {', '.join(missing)}")
    env: dict[str, str] = {}
    for name, value in values.items():
        alias = fields[name].alias
        if not alias or not alias.startswith(PREFIX):
            raise ValueError(f"{model.__name__}.{name} has no {PREFIX}* alias: it is not an environment setting")
        if value is not None:
            env[alias] = _env_text(value)
    return env


class EnvSettings(BaseModel):
    """Base of every function's settings: frozen, reads only its own variables, `from_env` at cold start."""

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)
    WHAT: ClassVar[str] = "function environment"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Self:
        return load_env(cls, cls.WHAT, env)

    @classmethod
    def variables(cls) -> dict[str, str]:
        """Field name -> variable name."""
        return {name: field.alias or name for name, field in cls.model_fields.items()}


def _blank_is_none(value: Any) -> Any:
    return None if isinstance(value, str) and not value.strip() else value


class ModelSource(BaseModel):
    """Which model a function serves: its route name, where the artifact is, and its identity."""

    model_name: str = Field("", alias="CNAI_MODEL_NAME", pattern=r"^$|^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
    model_uri: str = Field("", alias="CNAI_MODEL_URI", description="s3://bucket/key.tar.gz, a folder or a tar")
    model_version_id: str | None = Field(None, alias="CNAI_MODEL_VERSION_ID", description="S3 object version")
    model_package_version: str | None = Field(None, alias="CNAI_MODEL_PACKAGE_VERSION", description="registry")

    @field_validator("model_version_id", "model_package_version", mode="before")
    @classmethod
    def _blank_version_is_none(cls, value: Any) -> Any:
        return _blank_is_none(value)


class AuditSink(BaseModel):
    """Where a function's audit records go and what they may hold (cnai/audit/trail.py)."""

    audit_sink: str = Field("stdout", alias="CNAI_AUDIT_SINK", pattern=r"^(stdout|file:.+|s3://[^/]+.*)$")
    audit_store_text: bool = Field(False, alias="CNAI_AUDIT_STORE_TEXT")


def variable(model: type[BaseModel], field: str) -> str:
    """The environment variable of one field of a settings model or piece: for a command line that takes the
    same setting as a function does (an option's envvar, a message naming it) without writing the name again."""
    alias = model.model_fields[field].alias
    if not alias:
        raise ValueError(f"{model.__name__}.{field} has no environment variable")
    return alias


BUCKET_NAME = r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$"


class Lake(BaseModel):
    """The data lake bucket and its curated prefix (the ingest consumer writes it; dataset snapshots read it)."""

    lake_bucket: str = Field(alias="CNAI_LAKE_BUCKET", pattern=BUCKET_NAME)
    curated_prefix: str = Field("curated", alias="CNAI_CURATED_PREFIX", pattern=r"^[A-Za-z0-9_\-/]+$")


class ArtifactStore(BaseModel):
    """The bucket of training artifacts and evaluation reports (QualityGate; `cnai generate register` uploads a
    generator's tar there)."""

    artifact_bucket: str = Field(alias="CNAI_ARTIFACT_BUCKET", pattern=BUCKET_NAME)


class ServingImage(BaseModel):
    """The SageMaker serving container a registered package names (Register; `cnai generate register`)."""

    serving_image: str = Field(alias="CNAI_SERVING_IMAGE", min_length=1, max_length=255)


class PredictFunction(BaseModel):
    """The predict function a release moves (the deploy function; `cnai models promote|rollback`)."""

    function_name: str = Field(alias="CNAI_PREDICT_FUNCTION", min_length=1, description="name or ARN")


class ServingLimits(BaseModel):
    """How a predict API answers: texts per call, characters per text, cached predictions, onnxruntime threads
    (the predict function's settings; `cnai serve` takes the same variables)."""

    max_inputs: int = Field(64, alias="CNAI_MAX_INPUTS", ge=1, le=1024)
    max_input_chars: int = Field(2000, alias="CNAI_MAX_INPUT_CHARS", ge=1, le=100_000)
    cache_size: int = Field(1024, alias="CNAI_CACHE_SIZE", ge=0, le=1_000_000)
    threads: int | None = Field(None, alias="CNAI_THREADS", ge=1, le=64)


class TrainingWorkflow(BaseModel):
    """The training state machine (the drift monitor starts it; `cnai train` commands default to it)."""

    state_machine_arn: str = Field(
        alias="CNAI_STATE_MACHINE_ARN",
        pattern=r"^arn:aws[a-z-]*:states:[a-z0-9-]+:\d{12}:stateMachine:[A-Za-z0-9_-]{1,80}$",
    )
