"""The ingestion record: one schema for the API, the CLI producer and the stream consumer.

Why one model: a record the API accepts must never be quarantined by the consumer for a rule the API did
not know, and the other way round. Every rule lives here, and every rejection names the field.

Normalization (Unicode NFC, control characters, whitespace) happens in validation, before the length
check and before the content-hash id, so "a  b" and "a b" are the same record and dedup sees that.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, JsonValue, ValidationError, field_validator, model_validator

from cnai.errors import CnaiError, describe
from cnai.text import normalize_text

MAX_TEXT_CHARS = 10_000
MAX_METADATA_BYTES = 4_096

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

    @field_validator("metadata")
    @classmethod
    def _bounded(cls, value: dict[str, Any]) -> dict[str, Any]:
        size = len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))
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


def now_utc() -> datetime:
    return datetime.now(UTC)
