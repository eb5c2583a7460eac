"""The training workflow's input: what a person types into the console's "Start execution" box.

    {"model": "banking77", "dataset": {"from": "2026-11-01", "to": "2026-11-30"}}
    {"model": "banking77", "dataset": {"manifest": "s3://lake/datasets/banking77/0123abcd/manifest.json"},
     "spot": false, "auto_approve": true, "thresholds": {"accuracy": 0.9}}

`TrainingRunInput` fills every default, so the states after PrepareDataset read one normalized `run`
object and never guess. A bad field fails the first state with a cause naming the field.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from cnai.errors import CnaiError, describe

MODEL_NAME = r"^[a-z0-9](?:[a-z0-9-]{0,38}[a-z0-9])?$"
# SageMaker: TrainingJobName matches ^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$
JOB_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
# The workflow names each attempt `<job_name>-<retry count>` (a retried CreateTrainingJob needs a new name):
# three characters are kept free for that suffix.
JOB_NAME_MAX = 60
PROFILES = ("default", "quick", "tiny")  # models/config.py PROFILES (the training side is not imported here)


class RunInputError(CnaiError):
    """The execution input is wrong; the message names each field and its problem."""


class DatasetSpec(BaseModel):
    """A date range of the curated lake (frozen into a new snapshot) or an existing snapshot's manifest."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    from_: date | None = Field(None, alias="from")
    to: date | None = None
    manifest: str | None = Field(None, pattern=r"^s3://[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]/.+manifest\.json$")
    name: str | None = Field(None, pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$")  # default: the model's name
    test_fraction: float = Field(0.2, gt=0.0, lt=1.0)
    tenant: str | None = None
    # Refusals: a label with fewer training rows than this cannot be learned, nor fairly tested.
    min_per_label: int = Field(5, ge=1, le=100_000)
    # Share of test rows whose text also occurs in train (different ids, same text): above this the test
    # score measures memory, not generalization.
    max_overlap: float = Field(0.01, ge=0.0, le=1.0)

    @model_validator(mode="before")
    @classmethod
    def _relative_range(cls, data: Any) -> Any:
        """{"last_days": N, "until": <instant>} (what the scheduled run sends: EventBridge Scheduler fills
        `until` with the scheduled time) becomes the inclusive UTC range of the N days ending on `until`'s date
        (today when absent)."""
        if not isinstance(data, dict) or "last_days" not in data:
            return data
        data = dict(data)
        days, until = data.pop("last_days"), data.pop("until", None)
        if not isinstance(days, int) or isinstance(days, bool) or not 1 <= days <= 3660:
            raise ValueError(f"last_days: {days!r} is not a whole number of days from 1 to 3660")
        try:
            end = (
                datetime.fromisoformat(str(until).replace("Z", "+00:00")).astimezone(UTC).date()
                if until not in (None, "")
                else datetime.now(UTC).date()
            )
        except ValueError:
            raise ValueError(f"until: {str(until)[:40]!r} is not an ISO 8601 date or time") from None
        if "from" in data or "to" in data:
            raise ValueError("give last_days (with until) or from/to, not both")
        data["from"], data["to"] = (end - timedelta(days=days - 1)).isoformat(), end.isoformat()
        return data

    @model_validator(mode="after")
    def _one_source(self) -> DatasetSpec:
        has_range = self.from_ is not None or self.to is not None
        if self.manifest is not None and has_range:
            raise ValueError("give either from/to (a date range of the lake) or manifest, not both")
        if self.manifest is None:
            if self.from_ is None or self.to is None:
                raise ValueError("give from and to (YYYY-MM-DD, UTC, inclusive) or manifest (s3://.../manifest.json)")
            if self.to < self.from_:
                raise ValueError(f"to {self.to} is before from {self.from_}")
        return self


class Thresholds(BaseModel):
    """The quality gate's bars: absolute minimums and the allowed drop against the approved version."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    accuracy: float = Field(0.80, ge=0.0, le=1.0)
    macro_f1: float = Field(0.75, ge=0.0, le=1.0)
    tolerance: float = Field(0.01, ge=0.0, le=1.0)


class TrainingRunInput(BaseModel):
    """The normalized execution input (every default filled). Later states read it as `$.run`."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    model: str = Field(pattern=MODEL_NAME)
    dataset: DatasetSpec
    profile: Literal["default", "quick", "tiny"] = "default"
    # Recipe overrides only (models/config.py HyperParameters names); SageMaker takes strings.
    hyperparameters: dict[str, str] = Field(default_factory=dict)
    instance_type: str = Field("ml.g5.xlarge", pattern=r"^ml\.[a-z0-9]+\.[a-z0-9]+$")
    instance_count: int = Field(1, ge=1, le=16)
    spot: bool = True
    max_runtime_s: int = Field(2 * 3600, ge=60, le=28 * 24 * 3600)
    max_wait_s: int | None = Field(None, ge=60, le=28 * 24 * 3600)  # default: 2 x max_runtime_s (spot only)
    auto_approve: bool = False
    thresholds: Thresholds = Field(default_factory=Thresholds)
    job_name: str | None = None  # filled by PrepareDataset (deterministic per execution)

    @field_validator("hyperparameters", mode="before")
    @classmethod
    def _as_strings(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        out = {}
        for key, item in value.items():
            if key in ("profile", "sagemaker_program", "sagemaker_submit_directory", "model_name"):
                raise ValueError(f"{key!r} is set by the workflow, not an override")
            if not re.fullmatch(r"[a-z][a-z0-9_]{0,63}", str(key)):
                raise ValueError(f"{key!r} is not a hyperparameter name")
            if isinstance(item, dict | list) or item is None:
                raise ValueError(f"{key}: give a number, a string or a boolean")
            out[key] = str(item).lower() if isinstance(item, bool) else str(item)
        per_label = out.get("augment_per_label", "0")
        if not per_label.isdigit():  # the workflow's Choice reads it as a number (augment_per_label below)
            raise ValueError(f"augment_per_label: {per_label!r} is not a whole number >= 0")
        return out

    @field_validator("job_name")
    @classmethod
    def _job_name(cls, value: str | None) -> str | None:
        if value is not None and (not JOB_NAME.fullmatch(value) or len(value) > JOB_NAME_MAX):
            raise ValueError(f"{value!r}: letters, digits and '-', at most {JOB_NAME_MAX} characters")
        return value

    @model_validator(mode="after")
    def _waits(self) -> TrainingRunInput:
        if not self.spot:
            if self.max_wait_s is not None:
                raise ValueError("max_wait_s only applies with spot: true")
            return self
        wait = self.max_wait_s if self.max_wait_s is not None else min(2 * self.max_runtime_s, 28 * 24 * 3600)
        if wait < self.max_runtime_s:
            raise ValueError(f"max_wait_s {wait} must be >= max_runtime_s {self.max_runtime_s} with spot")
        object.__setattr__(self, "max_wait_s", wait)  # a default that depends on two fields (frozen model)
        return self

    @property
    def stopping_condition(self) -> dict[str, int]:
        """SageMaker's StoppingCondition: MaxWaitTimeInSeconds only with spot (SageMaker refuses it
        otherwise, and a JSONPath state cannot drop a key, so the workflow passes this object whole)."""
        condition = {"MaxRuntimeInSeconds": self.max_runtime_s}
        if self.spot and self.max_wait_s:
            condition["MaxWaitTimeInSeconds"] = self.max_wait_s
        return condition

    @property
    def augment_per_label(self) -> int:
        """Generated utterances asked per label (models/config.py augment_per_label; no profile sets it): > 0
        routes the run through the workflow's GenerateSyntheticData state before TrainAndDistill."""
        return int(self.hyperparameters.get("augment_per_label", "0"))

    @property
    def dataset_name(self) -> str:
        return self.dataset.name or self.model

    def with_job_name(self, prefix: str, execution: str | None = None) -> TrainingRunInput:
        """Name the training job (kept when the input already names one under the deployment's prefix)."""
        if self.job_name is not None:
            if not self.job_name.startswith(f"{prefix}-"):
                raise RunInputError(f"input: job_name: {self.job_name!r} must start with {prefix}- (IAM scope)")
            return self
        return self.model_copy(update={"job_name": job_name(prefix, self.model, execution)})

    def payload(self) -> dict[str, Any]:
        """The JSON the later states read (`$.run`): aliases ("from"), every default filled."""
        return {
            **self.model_dump(mode="json", by_alias=True),
            "stopping_condition": self.stopping_condition,
            "augment_per_label": self.augment_per_label,
        }


def parse_run(data: Any) -> TrainingRunInput:
    """Validate the execution input; RunInputError names each bad field (`dataset.from: ...`)."""
    if not isinstance(data, dict):
        raise RunInputError(f"input: expected a JSON object, got {type(data).__name__}")
    derived = {"stopping_condition", "augment_per_label"}  # payload() adds them; a `run` read back validates too
    try:
        return TrainingRunInput.model_validate({k: v for k, v in data.items() if k not in derived})
    except ValidationError as exc:
        raise RunInputError(f"input: {describe(exc, whole='input')}") from None


def job_name(prefix: str, model: str, execution: str | None = None) -> str:
    """`<prefix>-<model>-<10 hex>`, at most JOB_NAME_MAX (60) characters.

    The suffix is a hash of the execution ARN when there is one, so a retried PrepareDataset (Lambda retry)
    names the same job instead of starting a second one; otherwise random. The model part is cut first,
    never the prefix (IAM scopes the workflow's CreateTrainingJob to `<prefix>-*`).
    """
    if not JOB_NAME.fullmatch(prefix) or len(prefix) > 40:
        raise RunInputError(f"job name prefix {prefix!r}: letters, digits and '-', at most 40 characters")
    suffix = hashlib.sha256(execution.encode()).hexdigest()[:10] if execution else secrets.token_hex(5)
    room = JOB_NAME_MAX - len(prefix) - len(suffix) - 2
    middle = model[:room].strip("-")
    name = f"{prefix}-{middle}-{suffix}" if middle else f"{prefix}-{suffix}"
    assert JOB_NAME.fullmatch(name) and len(name) <= JOB_NAME_MAX, name
    return name
