"""The ingestion record: one schema for the API, the CLI producer and the stream consumer.

Why one model: a record the API accepts must never be quarantined by the consumer for a rule the API did
not know, and the other way round. Every rule lives here, and every rejection names the field.

Normalization (Unicode NFC, control characters, whitespace) happens in validation, before the length
check and before the content-hash id, so "a  b" and "a b" are the same record and dedup sees that.
"""

from __future__ import annotations

import hashlib
import json
import math
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, JsonValue, ValidationError, field_validator, model_validator

from cnai.errors import CnaiError, describe
from cnai.text import normalize_text

MAX_TEXT_CHARS = 10_000
MAX_METADATA_BYTES = 4_096
MAX_METADATA_DEPTH = 16  # levels of objects/arrays; pydantic's own limit (~250) would answer a 500-step path

# C0/C1 controls become spaces (a tab or a newline separates words); format characters that are invisible
# and used to smuggle or split tokens (zero-width, bidi overrides, BOM, soft hyphen) are removed.
_ID = r"^[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}$"
_NAME = r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,63}$"


def content_id(tenant: str, text: str, label: str | None) -> str:
    """Stable id of a record without one: the same tenant, normalized text and label give the same id."""
    digest = hashlib.sha256(json.dumps([tenant, text, label], ensure_ascii=False).encode("utf-8")).hexdigest()
    return f"h-{digest[:32]}"


class Record(BaseModel):
    """A text record as it travels through the stream and lands in the curated data lake."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: Annotated[str | None, Field(pattern=_ID, description="stable id; content hash when absent")] = None
    text: Annotated[str, Field(description=f"UTF-8, 1..{MAX_TEXT_CHARS} characters after normalization")]
    label: Annotated[str | None, Field(min_length=1, max_length=128)] = None
    source: Annotated[str, Field(pattern=_NAME, description="producing system or file")]
    tenant: Annotated[str, Field(pattern=_NAME, description="owner of the data; spreads partition keys")]
    timestamp: Annotated[datetime | None, Field(description="ISO 8601; defaulted at arrival (UTC)")] = None
    metadata: dict[str, JsonValue] = Field(default_factory=dict)

    @field_validator("text")
    @classmethod
    def _clean_text(cls, value: str) -> str:
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("is not valid UTF-8 (lone surrogate)") from None
        value = normalize_text(value)
        if not value:
            raise ValueError("is empty after normalization")
        if len(value) > MAX_TEXT_CHARS:
            raise ValueError(f"has {len(value)} characters, more than {MAX_TEXT_CHARS}")
        return value

    @field_validator("label")
    @classmethod
    def _clean_label(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = normalize_text(value)
        if not value:
            raise ValueError("is empty after normalization (omit it instead)")
        return value

    @field_validator("timestamp")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        # A naive timestamp is read as UTC: producers that omit the offset almost always mean UTC.
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC) if value is not None else None

    @field_validator("metadata", mode="before")
    @classmethod
    def _shallow(cls, value: Any) -> Any:
        depth = _depth(value)
        if depth > MAX_METADATA_DEPTH:
            raise ValueError(f"is nested {depth} levels deep, more than {MAX_METADATA_DEPTH}")
        return value

    @field_validator("metadata")
    @classmethod
    def _bounded(cls, value: dict[str, Any]) -> dict[str, Any]:
        # Python's json reads `1e999` as inf and `NaN` / `Infinity` as floats, but no JSON document can hold
        # them: refused here, by path, so the stream, the lake and Athena only ever see standard JSON.
        where = _non_finite(value)
        if where is not None:
            raise ValueError(f"{where} is not a finite number (JSON has no NaN or Infinity; 1e999 overflows)")
        size = len(json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8"))
        if size > MAX_METADATA_BYTES:
            raise ValueError(f"is {size} bytes as JSON, more than {MAX_METADATA_BYTES}")
        return value

    @model_validator(mode="after")
    def _defaults(self) -> Record:
        # Frozen model: fill the derived fields once, here, so every consumer sees the same values.
        if self.id is None:
            object.__setattr__(self, "id", content_id(self.tenant, self.text, self.label))
        return self

    def stamped(self, arrival: datetime) -> Record:
        """The record with its timestamp defaulted to `arrival` when the producer gave none."""
        if self.timestamp is not None:
            return self
        return self.model_copy(update={"timestamp": arrival.astimezone(UTC)})

    def to_json(self) -> dict[str, Any]:
        """The curated JSON shape (one JSONL line): ISO 8601 UTC timestamp, no nulls dropped."""
        return {
            "id": self.id,
            "text": self.text,
            "label": self.label,
            "source": self.source,
            "tenant": self.tenant,
            "timestamp": self.timestamp.isoformat().replace("+00:00", "Z") if self.timestamp else None,
            "metadata": self.metadata,
        }


def _depth(value: Any) -> int:
    """Levels of nested objects and arrays (a scalar is 0), counted without recursion."""
    deepest = 0
    stack: list[tuple[int, Any]] = [(0, value)]
    while stack:
        level, item = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, level + 1)
            stack.extend((level + 1, v) for v in (item.values() if isinstance(item, dict) else item))
    return deepest


def _non_finite(value: Any) -> str | None:
    """The path (`a.b[2]`) of the first NaN or infinite float in a JSON value, else None. Iterative: the
    value may be nested as deep as the size limit allows, deeper than Python's recursion limit."""
    stack: list[tuple[str, Any]] = [("", value)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            return path or "value"
        if isinstance(item, dict):
            stack.extend((f"{path}.{k}" if path else str(k), v) for k, v in reversed(item.items()))
        elif isinstance(item, list):
            stack.extend((f"{path}[{i}]", v) for i, v in reversed(list(enumerate(item))))
    return None


class RecordError(CnaiError, ValueError):
    """A record that cannot be used: `reason` names the field and the problem."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


def parse_record(data: Any) -> Record:
    """Validate one record (a dict from JSON, CSV or Parquet). Raises RecordError with the field named."""
    if not isinstance(data, dict):
        raise RecordError(f"record: expected a JSON object, got {type(data).__name__}")
    try:
        return Record.model_validate(data)
    except ValidationError as exc:
        raise RecordError(describe(exc)) from None
    except RecursionError:  # metadata nested deeper than the interpreter's stack (the size limit allows ~2,000)
        raise RecordError("metadata: nested too deeply") from None


def now_utc() -> datetime:
    return datetime.now(UTC)
