"""Curating one stream record: decode, validate, normalize, redact. Pure Python, no AWS.

Each Kinesis record ends as exactly one of: `Curated` (a clean, redacted record for the data lake) or
`Quarantined` (the original payload and the reason, field named). The consumer adds the third outcome,
a failure that Lambda retries and finally dead-letters; see cnai/ingest/consumer.py.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import io
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cnai.ingest.records import Record, RecordError, parse_record
from cnai.redact import redact

# One record's JSON payload. The text limit (10,000 characters, up to 4 bytes each) plus 4 KiB of metadata
# fits; anything larger is not a record but a mistake (or an attack) and is quarantined unparsed.
MAX_PAYLOAD_BYTES = 64 * 1024


@dataclass(frozen=True)
class Curated:
    """A valid record, text normalized and redacted; `redactions` counts the replaced PII by type."""

    record: Record
    redactions: dict[str, int] = field(default_factory=dict)

    def line(self) -> dict[str, Any]:
        return {**self.record.to_json(), "redactions": self.redactions}


@dataclass(frozen=True)
class Quarantined:
    """A record that cannot be curated: the original base64 payload, kept as it came, and why."""

    payload: str
    reason: str

    def line(self, event_id: str, arrival: datetime) -> dict[str, Any]:
        return {
            "event_id": event_id,
            "arrival": arrival.isoformat().replace("+00:00", "Z"),
            "reason": self.reason,
            "payload": self.payload,
        }


def encode_record(record: Record | dict[str, Any]) -> bytes:
    """The bytes a producer puts on the stream for one record: compact UTF-8 JSON."""
    data = record.to_json() if isinstance(record, Record) else record
    # allow_nan=False: standard JSON only (the record contract refuses NaN/Infinity; this is the backstop)
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")


def decode_payload(data: str) -> dict[str, Any]:
    """Base64 (as in Kinesis events) -> JSON object. Raises RecordError naming what is wrong."""
    if len(data) > (MAX_PAYLOAD_BYTES + 2) // 3 * 4:  # cheap guard before decoding a huge string
        raise RecordError(f"payload: about {len(data) * 3 // 4} bytes, more than {MAX_PAYLOAD_BYTES}")
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise RecordError("payload: not valid base64") from None
    if len(raw) > MAX_PAYLOAD_BYTES:
        raise RecordError(f"payload: {len(raw)} bytes, more than {MAX_PAYLOAD_BYTES}")
    try:
        text = raw.decode("utf-8")  # explicitly: json.loads(bytes) would also accept UTF-16/32
    except UnicodeDecodeError as exc:
        raise RecordError(f"payload: not valid UTF-8 (byte {exc.start})") from None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RecordError(f"payload: not valid JSON ({exc.msg} at byte {exc.pos})") from None
    except RecursionError:  # e.g. "[" * 20000 fits the size limit but exhausts the decoder's stack
        raise RecordError("payload: JSON nested too deeply") from None
    if not isinstance(obj, dict):
        raise RecordError(f"payload: expected a JSON object, got {type(obj).__name__}")
    return obj


def _redact_metadata(value: Any, counts: dict[str, int]) -> Any:
    # Free-form metadata can carry PII as easily as text: string leaves are redacted the same way.
    if isinstance(value, str):
        result = redact(value)
        for kind, n in result.counts.items():
            counts[kind] = counts.get(kind, 0) + n
        return result.text
    if isinstance(value, dict):
        return {k: _redact_metadata(v, counts) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact_metadata(v, counts) for v in value]
    return value


def curate(data: str, arrival: datetime) -> Curated | Quarantined:
    """One base64 Kinesis payload -> Curated or Quarantined. Never raises for bad input."""
    try:
        record = parse_record(decode_payload(data))
    except RecordError as exc:
        return Quarantined(payload=data, reason=exc.reason)
    result = redact(record.text)
    counts = dict(result.counts)
    update: dict[str, Any] = {"text": result.text}
    if record.timestamp is None:  # defaulted at arrival; one copy of the frozen model for both changes
        update["timestamp"] = arrival.astimezone(UTC)
    if record.metadata:
        update["metadata"] = _redact_metadata(record.metadata, counts)
    return Curated(record=record.model_copy(update=update), redactions=counts)


def arrival_time(approximate_arrival_timestamp: float | None) -> datetime:
    """Kinesis' approximate arrival (epoch seconds) as an aware UTC datetime; now when absent."""
    if approximate_arrival_timestamp is None:
        return datetime.now(UTC)
    return datetime.fromtimestamp(approximate_arrival_timestamp, UTC)


def jsonl_gz(lines: Iterable[dict[str, Any]]) -> bytes:
    """Lines as gzipped JSON Lines. mtime=0 so the same lines give the same bytes (and sha256)."""
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0, compresslevel=6) as handle:
        for line in lines:
            handle.write(json.dumps(line, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8"))
            handle.write(b"\n")
    return buffer.getvalue()


def read_jsonl_gz(data: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in gzip.decompress(data).splitlines() if line.strip()]
