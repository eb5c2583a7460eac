"""The stream consumer: a Kinesis batch in, curated and quarantine objects out, nothing lost, nothing twice.

Flow of one invocation (powertools `BatchProcessor` for Kinesis, `process_partial_response`):

1. each record is curated in memory (cnai/ingest/curate.py) and claimed in the idempotency table by its id
   (powertools Idempotency persistence layer on DynamoDB): a claimed-and-completed id is a duplicate and
   is skipped; an id another invocation holds in progress fails and is retried later;
2. after the whole batch, the staged records are written as JSONL.gz objects (one per date partition,
   plus one quarantine object); only then are their claims completed. If a write fails, its records'
   claims are released and exactly those records are reported in `batchItemFailures`, so Lambda retries
   them (Kinesis: from the lowest failed sequence number) and, when retries run out, sends the batch
   description to the on-failure destination (the SQS DLQ).

So for every invocation: records in = curated + quarantined + duplicates + failed, and failed records are
retried until they are curated, quarantined or dead-lettered.

Why not the `@idempotent_function` decorator: it completes the claim when the function returns, which
would be before the S3 write; a failed write would then turn a retry into a "duplicate" and lose the
record. The same persistence layer, driven explicitly, completes the claim after the write.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType
from aws_lambda_powertools.utilities.data_classes.kinesis_stream_event import KinesisStreamRecord
from aws_lambda_powertools.utilities.idempotency import IdempotencyConfig
from aws_lambda_powertools.utilities.idempotency.exceptions import IdempotencyItemAlreadyExistsError
from aws_lambda_powertools.utilities.idempotency.persistence.base import STATUS_CONSTANTS, BasePersistenceLayer

from cnai.ingest.curate import Curated, Quarantined, arrival_time, curate, jsonl_gz
from cnai.observability import logger, metrics

Claim = Literal["new", "duplicate", "busy"]

log = logging.getLogger(__name__)


class RecordBusyError(RuntimeError):
    """Another invocation holds this record's claim: fail it now, Lambda retries it later."""


class Ledger:
    """Record-level idempotency on the powertools persistence layer (DynamoDB in Lambda, moto in tests)."""

    def __init__(self, persistence: BasePersistenceLayer, *, expires_after_seconds: int = 7 * 24 * 3600) -> None:
        # Keys look like `cnai-ingest#<md5 of id>`: the table can be shared with other idempotent functions.
        persistence.configure(
            IdempotencyConfig(event_key_jmespath="id", expires_after_seconds=expires_after_seconds),
            key_prefix="cnai-ingest",
        )
        self.persistence = persistence

    def claim(self, key: str, remaining_ms: int) -> Claim:
        data = {"id": key}
        try:
            self.persistence.save_inprogress(data, remaining_time_in_millis=remaining_ms)
        except IdempotencyItemAlreadyExistsError as exc:
            old = exc.old_data_record or self.persistence.get_record(data)
            return "duplicate" if old is not None and old.status == STATUS_CONSTANTS["COMPLETED"] else "busy"
        return "new"

    def complete(self, key: str, where: str) -> None:
        self.persistence.save_success({"id": key}, {"key": where})

    def release(self, key: str, error: Exception) -> None:
        self.persistence.delete_record({"id": key}, error)


class LakeWriter:
    """Writes JSONL.gz objects to the data-lake bucket: `curated/dt=YYYY-MM-DD/...`, `quarantine/dt=...`."""

    def __init__(self, s3: Any, bucket: str, *, curated_prefix: str = "curated", quarantine_prefix: str = "quarantine"):
        self.s3 = s3
        self.bucket = bucket
        self.prefixes = {"curated": curated_prefix, "quarantine": quarantine_prefix}

    def key(self, kind: str, dt: str, name: str) -> str:
        return f"{self.prefixes[kind]}/dt={dt}/{name}.jsonl.gz"

    def put(self, key: str, lines: list[dict[str, Any]]) -> None:
        self.s3.put_object(
            Bucket=self.bucket,
            Key=key,
            Body=jsonl_gz(lines),
            ContentType="application/x-ndjson",
            Metadata={"records": str(len(lines))},
        )


@dataclass
class BatchReport:
    """What one invocation did. `records_in == curated + quarantined + duplicates + failed` always.

    `claim_errors` counts idempotency calls after the write (release, complete) that failed: they change no
    record's outcome (an in-progress claim expires at the Lambda timeout) but show an unhealthy table.
    """

    records_in: int = 0
    curated: int = 0
    quarantined: int = 0
    duplicates: int = 0
    failed: int = 0
    claim_errors: int = 0
    redactions: Counter[str] = field(default_factory=Counter)
    objects: list[str] = field(default_factory=list)
    failed_sequence_numbers: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def balanced(self) -> bool:
        return self.records_in == self.curated + self.quarantined + self.duplicates + self.failed


@dataclass
class _Staged:
    raw: dict[str, Any]
    key: str
    line: dict[str, Any]
    dt: str
    redactions: dict[str, int]


class CuratingProcessor(BatchProcessor):
    """powertools BatchProcessor (Kinesis) that stages records and writes them once, after the batch.

    Idempotency calls (claim, complete, release) run on `concurrency` threads: one DynamoDB round trip
    takes milliseconds, so a 500-record batch done one call at a time would spend seconds waiting.
    """

    def __init__(
        self,
        ledger: Ledger,
        writer: LakeWriter,
        *,
        remaining_ms: Callable[[], int] = lambda: 60_000,
        on_report: Callable[[BatchReport], None] | None = None,
        concurrency: int = 16,
    ) -> None:
        # A batch that fails whole is reported as a partial response naming every record, not raised:
        # Lambda retries both the same way, and the report (metrics) still gets emitted.
        super().__init__(EventType.KinesisDataStreams, raise_on_entire_batch_failure=False)
        self.ledger = ledger
        self.writer = writer
        self.remaining_ms = remaining_ms
        self.on_report = on_report
        self.concurrency = max(1, concurrency)
        self.report = BatchReport()
        self._pending: list[tuple[_Staged, str | None]] = []  # (staged, date partition; None = quarantine)
        self._seen: set[str] = set()
        self._failed: list[tuple[dict[str, Any], Exception]] = []
        self._shard = "shard"

    def record_handler(self, record: KinesisStreamRecord) -> str:
        """Curate one record and stage it; claims and writes happen in `process`, for the whole batch."""
        arrival = arrival_time(record.kinesis.approximate_arrival_timestamp)
        outcome = curate(record.kinesis.data, arrival)
        self._shard = record.event_id.split(":", 1)[0] or self._shard
        if isinstance(outcome, Quarantined):
            staged = _Staged(record.raw_event, f"q:{record.event_id}", outcome.line(record.event_id, arrival),
                             _dt(arrival), {})  # fmt: skip
            partition = None
        else:
            staged = _Staged(record.raw_event, str(outcome.record.id), outcome.line(), _dt(_when(outcome)),
                             outcome.redactions)  # fmt: skip
            partition = staged.dt
        if staged.key in self._seen:  # the same id twice in one batch
            self.report.duplicates += 1
            return "duplicate"
        self._seen.add(staged.key)
        self._pending.append((staged, partition))
        return "staged"

    def process(self) -> list[tuple]:
        started = time.perf_counter()
        self.report = BatchReport(records_in=len(self.records))
        self._pending.clear()
        self._seen.clear()
        self._failed.clear()
        results = super().process()
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            self._pool = pool
            curated, quarantined = self._claim_all()
            first_seq = _sequence(self.records[0]) if self.records else "0"
            for dt, group in sorted(curated.items()):
                self._flush("curated", dt, group, first_seq)
            for dt, group in sorted(quarantined.items()):
                self._flush("quarantine", dt, group, first_seq)
        if self._failed:
            # The base class counted every staged record as a success (`success_messages` holds the raw
            # event records); those that failed since are failures only. Matched by sequence number.
            gone = {_sequence(raw) for raw, _ in self._failed}
            self.success_messages[:] = [m for m in self.success_messages if _sequence(m) not in gone]  # type: ignore[arg-type]
            for raw, error in self._failed:
                self.failure_handler(KinesisStreamRecord(raw), (type(error), error, error.__traceback__))
        self.report.failed = len(self.fail_messages)
        self.report.failed_sequence_numbers = [str(m.kinesis.sequence_number) for m in self.fail_messages]  # type: ignore[union-attr]
        self.report.seconds = time.perf_counter() - started
        if self.on_report is not None:
            self.on_report(self.report)
        return results

    def _each(self, fn: Callable[[_Staged], Any], items: list[_Staged]) -> list[Any]:
        """fn over items on the pool; an exception is returned in place of its result, never raised."""

        def safe(item: _Staged) -> Any:
            try:
                return fn(item)
            except Exception as exc:
                return exc

        return list(self._pool.map(safe, items))

    def _claim_all(self) -> tuple[dict[str, list[_Staged]], dict[str, list[_Staged]]]:
        remaining = self.remaining_ms()
        staged = [s for s, _ in self._pending]
        claims = self._each(lambda s: self.ledger.claim(s.key, remaining), staged)
        curated: dict[str, list[_Staged]] = defaultdict(list)
        quarantined: dict[str, list[_Staged]] = defaultdict(list)
        for (item, partition), claim in zip(self._pending, claims, strict=True):
            if isinstance(claim, Exception):  # the idempotency table is unreachable: retry later
                self._failed.append((item.raw, claim))
            elif claim == "busy":
                self._failed.append((item.raw, RecordBusyError(f"record {item.key} is held by another invocation")))
            elif claim == "duplicate":
                self.report.duplicates += 1
            elif partition is None:
                quarantined[item.dt].append(item)
            else:
                curated[partition].append(item)
        return curated, quarantined

    def _flush(self, kind: str, dt: str, group: list[_Staged], first_seq: str) -> None:
        # Deterministic name (shard, first sequence of the batch, first sequence of the group, size): a
        # redelivered identical batch overwrites the same key instead of adding an object.
        name = f"{self._shard}-{first_seq}-{_sequence(group[0].raw)}-{len(group)}"
        key = self.writer.key(kind, dt, name)
        try:
            self.writer.put(key, [s.line for s in group])
        except Exception as exc:
            error = exc
            # Release the claims so the retry curates these records instead of skipping them as
            # duplicates. A release that fails leaves an in-progress claim that expires at the Lambda
            # timeout; the retry then takes it over.
            self._claim_errors("release", group, self._each(lambda s: self.ledger.release(s.key, error), group))
            self._failed.extend((s.raw, error) for s in group)
            return
        # Written: a completion that fails leaves an in-progress claim; the record is in S3 regardless.
        self._claim_errors("complete", group, self._each(lambda s: self.ledger.complete(s.key, key), group))
        self.report.objects.append(key)
        if kind == "curated":
            self.report.curated += len(group)
            for staged in group:
                self.report.redactions.update(staged.redactions)
        else:
            self.report.quarantined += len(group)

    def _claim_errors(self, call: str, group: list[_Staged], results: list[Any]) -> None:
        """Count and log the claim calls that returned an exception (no record's outcome changes)."""
        errors = [(s.key, r) for s, r in zip(group, results, strict=True) if isinstance(r, Exception)]
        if not errors:
            return
        self.report.claim_errors += len(errors)
        log.warning(
            "idempotency %s failed for %d record(s): %s (first error: %r)",
            call,
            len(errors),
            ", ".join(key for key, _ in errors),
            errors[0][1],
        )


def _dt(when: datetime) -> str:
    return when.strftime("%Y-%m-%d")


def _when(outcome: Curated) -> datetime:
    assert outcome.record.timestamp is not None  # stamped at arrival by curate()
    return outcome.record.timestamp


def _sequence(raw: dict[str, Any]) -> str:
    return str(raw.get("kinesis", {}).get("sequenceNumber", "0"))


def emit_report(report: BatchReport) -> None:
    """One batch's figures as EMF metrics plus one structured log line (the invariant included)."""
    metrics.add_metric(name="RecordsIn", unit=MetricUnit.Count, value=report.records_in)
    metrics.add_metric(name="RecordsCurated", unit=MetricUnit.Count, value=report.curated)
    metrics.add_metric(name="RecordsQuarantined", unit=MetricUnit.Count, value=report.quarantined)
    metrics.add_metric(name="DuplicatesSkipped", unit=MetricUnit.Count, value=report.duplicates)
    metrics.add_metric(name="RecordsFailed", unit=MetricUnit.Count, value=report.failed)
    metrics.add_metric(name="ClaimErrors", unit=MetricUnit.Count, value=report.claim_errors)
    metrics.add_metric(name="BatchLatency", unit=MetricUnit.Milliseconds, value=report.seconds * 1000)
    for kind, count in sorted(report.redactions.items()):
        metrics.add_metric(name=f"Redacted_{kind}", unit=MetricUnit.Count, value=count)
    logger.info(
        "batch processed",
        extra={
            "records_in": report.records_in,
            "curated": report.curated,
            "quarantined": report.quarantined,
            "duplicates": report.duplicates,
            "failed": report.failed,
            "claim_errors": report.claim_errors,
            "balanced": report.balanced,
            "objects": report.objects,
            "failed_sequence_numbers": report.failed_sequence_numbers,
        },
    )
