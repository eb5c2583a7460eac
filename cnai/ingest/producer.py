"""Putting records on a Kinesis stream: validated, batched within the service limits, retried precisely.

Limits (Kinesis PutRecords): 500 records and 5 MiB per call, 1 MiB per record (data plus partition key).
A call can succeed while some entries fail (throttled shard, internal error): only those entries are
retried, with exponential backoff and full jitter, so a hot shard is not hammered and nothing is sent
twice by the producer.

Partition key: `<tenant>#<n>` with n = hash(record id) mod `spread`. Kinesis maps the key's MD5 to a
shard, so one tenant's records spread over up to `spread` shards (a hot tenant cannot pin one shard), while
a given record id always lands on the same shard: its redeliveries stay ordered and dedup sees them in turn.
"""

from __future__ import annotations

import hashlib
import random
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from cnai.ingest.curate import MAX_PAYLOAD_BYTES, encode_record
from cnai.ingest.records import Record, RecordError, parse_record

MAX_BATCH_RECORDS = 500
MAX_BATCH_BYTES = 5 * 1024 * 1024
MAX_RECORD_BYTES = 1024 * 1024
DEFAULT_SPREAD = 16
RETRYABLE_CALL_ERRORS = {
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
    "LimitExceededException",
    "InternalFailure",
    "ServiceUnavailable",
    "KMSThrottlingException",
}


def partition_key(tenant: str, record_id: str, spread: int = DEFAULT_SPREAD) -> str:
    """`tenant#n`: spreads a tenant over `spread` hash buckets, stable per record id."""
    bucket = int.from_bytes(hashlib.sha256(record_id.encode("utf-8")).digest()[:4], "big") % spread
    return f"{tenant}#{bucket}"


@dataclass(frozen=True)
class Entry:
    """One PutRecords entry and where it came from (row number or request index) for the summary."""

    origin: str
    record_id: str
    data: bytes
    key: str

    @property
    def size(self) -> int:
        return len(self.data) + len(self.key.encode("utf-8"))


def entry_for(record: Record, origin: str, spread: int = DEFAULT_SPREAD) -> Entry:
    """The stream entry for a validated record. Raises ValueError when the payload is too large."""
    data = encode_record(record)
    if len(data) > MAX_PAYLOAD_BYTES:
        raise ValueError(f"payload: {len(data)} bytes as JSON, more than {MAX_PAYLOAD_BYTES}")
    assert record.id is not None  # Record fills it in validation
    return Entry(origin, record.id, data, partition_key(record.tenant, record.id, spread))


def batches(entries: Iterable[Entry]) -> Iterator[list[Entry]]:
    """Group entries into PutRecords calls: <= 500 entries and <= 5 MiB each, in order."""
    batch: list[Entry] = []
    size = 0
    for entry in entries:
        if entry.size > MAX_RECORD_BYTES:
            raise ValueError(f"{entry.origin}: {entry.size} bytes, over the 1 MiB Kinesis record limit")
        if batch and (len(batch) == MAX_BATCH_RECORDS or size + entry.size > MAX_BATCH_BYTES):
            yield batch
            batch, size = [], 0
        batch.append(entry)
        size += entry.size
    if batch:
        yield batch


@dataclass
class Outcome:
    """Per-entry result: accepted with its sequence number, or failed with the last error."""

    entry: Entry
    sequence: str | None = None
    shard: str | None = None
    error: str | None = None


@dataclass
class SendSummary:
    """What a send did. `sent + failed == entries`; `retried` counts entry retries (not calls)."""

    sent: int = 0
    retried: int = 0
    failed: int = 0
    calls: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    shards: Counter[str] = field(default_factory=Counter)
    first_rejected: dict[str, str] = field(default_factory=dict)  # reason -> first row (file:line) with it

    def as_dict(self) -> dict[str, Any]:
        return {
            "sent": self.sent,
            "retried": self.retried,
            "failed": self.failed,
            "calls": self.calls,
            "rejected": sum(self.rejected.values()),
            "rejected_reasons": [
                {"reason": r, "count": n, "first": self.first_rejected.get(r)} for r, n in self.rejected.most_common()
            ],
            "errors": dict(self.errors),
            "shards": dict(self.shards),
        }


class Producer:
    """Sends entries with PutRecords, retrying only failed entries (backoff with full jitter)."""

    def __init__(
        self,
        kinesis: Any,
        stream: str,
        *,
        max_attempts: int = 6,
        base_delay: float = 0.1,
        max_delay: float = 5.0,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.kinesis = kinesis
        self.stream = stream
        self.max_attempts = max_attempts
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.sleep = sleep
        self.rng = rng or random.Random()

    def _stream_arg(self) -> dict[str, str]:
        return {"StreamARN": self.stream} if self.stream.startswith("arn:") else {"StreamName": self.stream}

    def put(self, batch: list[Entry], summary: SendSummary) -> list[Outcome]:
        """One batch to the stream, retrying failed entries; returns one Outcome per entry, in order."""
        outcomes = [Outcome(entry) for entry in batch]
        pending = list(range(len(batch)))
        for attempt in range(self.max_attempts):
            if attempt:
                summary.retried += len(pending)
                self.sleep(self.rng.uniform(0, min(self.max_delay, self.base_delay * 2**attempt)))
            summary.calls += 1
            try:
                response = self.kinesis.put_records(
                    Records=[{"Data": batch[i].data, "PartitionKey": batch[i].key} for i in pending],
                    **self._stream_arg(),
                )
            except Exception as exc:  # a whole call failed: retry it when the error is transient
                code = getattr(exc, "response", {}).get("Error", {}).get("Code", type(exc).__name__)
                for i in pending:
                    outcomes[i].error = code
                if code not in RETRYABLE_CALL_ERRORS:
                    break
                continue
            still = []
            for i, result in zip(pending, response["Records"], strict=True):
                if "ErrorCode" in result:
                    outcomes[i].error = result["ErrorCode"]
                    still.append(i)
                else:
                    outcomes[i].sequence = result["SequenceNumber"]
                    outcomes[i].shard = result.get("ShardId")
                    outcomes[i].error = None
            pending = still
            if not pending:
                break
        for outcome in outcomes:
            if outcome.error is None and outcome.sequence is not None:
                summary.sent += 1
                summary.shards[outcome.shard or "?"] += 1
            else:
                summary.failed += 1
                summary.errors[outcome.error or "unknown"] += 1
        return outcomes

    def send(
        self,
        entries: Iterable[Entry],
        summary: SendSummary | None = None,
        on_batch: Callable[[int], None] | None = None,
    ) -> SendSummary:
        """Every entry, in PutRecords-sized batches. `on_batch(n)` after each batch (progress bars)."""
        summary = summary or SendSummary()
        for batch in batches(entries):
            self.put(batch, summary)
            if on_batch is not None:
                on_batch(len(batch))
        return summary


def entries_from_rows(
    rows: Iterable[tuple[str, Any]], summary: SendSummary, spread: int = DEFAULT_SPREAD
) -> Iterator[Entry]:
    """Validate rows with the record contract; rejected rows are counted in `summary.rejected` by reason."""
    for origin, row in rows:
        try:
            if isinstance(row, RecordError):
                raise row
            yield entry_for(parse_record(row), origin, spread)
        except (RecordError, ValueError) as exc:
            reason = exc.reason if isinstance(exc, RecordError) else str(exc)
            summary.rejected[reason] += 1
            summary.first_rejected.setdefault(reason, origin)
