"""The producer: PutRecords limits, partition keys that spread a tenant, retries of failed entries only."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from cnai.ingest.files import Mapping, count_rows, read_rows
from cnai.ingest.producer import (
    MAX_BATCH_BYTES,
    MAX_BATCH_RECORDS,
    Entry,
    Producer,
    SendSummary,
    batches,
    entries_from_rows,
    partition_key,
)


class FakeKinesis:
    """Kinesis PutRecords as a test double: fails the entries whose data is in `fail`, `times` times each."""

    def __init__(self, fail: set[bytes] = frozenset(), times: int = 1, call_error: str | None = None) -> None:
        self.fail = dict.fromkeys(fail, times)
        self.calls: list[list[dict[str, Any]]] = []
        self.call_error = call_error
        self.seq = 0

    def put_records(self, Records: list[dict[str, Any]], **kwargs: Any) -> dict[str, Any]:  # noqa: N803
        from botocore.exceptions import ClientError

        self.calls.append(Records)
        if self.call_error:
            raise ClientError({"Error": {"Code": self.call_error, "Message": "x"}}, "PutRecords")
        out = []
        for record in Records:
            if self.fail.get(record["Data"], 0) > 0:
                self.fail[record["Data"]] -= 1
                out.append({"ErrorCode": "ProvisionedThroughputExceededException", "ErrorMessage": "slow down"})
            else:
                self.seq += 1
                out.append({"SequenceNumber": str(self.seq), "ShardId": f"shardId-{hash(record['PartitionKey']) % 4}"})
        return {"FailedRecordCount": sum("ErrorCode" in r for r in out), "Records": out}


def entry(i: int, size: int = 10) -> Entry:
    return Entry(f"row {i}", f"id-{i}", f"{i:08d}".encode().ljust(size, b"x"), f"t#{i % 16}")


def test_batches_respect_500_records_and_5_mib() -> None:
    # Given 1,201 small entries / Then calls of 500, 500, 201
    assert [len(b) for b in batches(entry(i) for i in range(1201))] == [500, 500, 201]
    # Given entries of ~900 KiB / Then at most 5 fit in 5 MiB
    big = [entry(i, 900 * 1024) for i in range(12)]
    sizes = [len(b) for b in batches(big)]
    assert sizes == [5, 5, 2]
    assert all(sum(e.size for e in b) <= MAX_BATCH_BYTES for b in batches(big))
    assert MAX_BATCH_RECORDS == 500
    with pytest.raises(ValueError, match="1 MiB"):
        list(batches([entry(0, 1024 * 1024 + 1)]))


def test_partition_key_spreads_a_hot_tenant_and_is_stable_per_id() -> None:
    keys = Counter(partition_key("hot", f"id-{i}") for i in range(5000))
    assert len(keys) == 16 and min(keys.values()) > 5000 / 16 * 0.8  # roughly even over 16 buckets
    assert partition_key("hot", "id-1") == partition_key("hot", "id-1")
    assert partition_key("hot", "id-1", spread=1) == "hot#0"


def test_only_failed_entries_are_retried_with_backoff() -> None:
    # Given 3 entries, one throttled twice
    entries = [entry(i) for i in range(3)]
    kinesis = FakeKinesis(fail={entries[1].data}, times=2)
    delays: list[float] = []
    producer = Producer(kinesis, "s", sleep=delays.append, base_delay=0.1)
    # When sent
    summary = producer.send(entries)
    # Then the retries carry only the failed entry, with growing backoff caps, and all are sent once
    assert [len(c) for c in kinesis.calls] == [3, 1, 1]
    assert kinesis.calls[1][0]["Data"] == entries[1].data
    assert (summary.sent, summary.retried, summary.failed, summary.calls) == (3, 2, 0, 3)
    assert len(delays) == 2 and delays[0] <= 0.2 and delays[1] <= 0.4


def test_entries_failing_every_attempt_are_reported_not_lost() -> None:
    entries = [entry(i) for i in range(2)]
    producer = Producer(FakeKinesis(fail={entries[0].data}, times=99), "s", sleep=lambda _s: None, max_attempts=3)
    summary = producer.send(entries)
    assert (summary.sent, summary.failed) == (1, 1)
    assert summary.errors == {"ProvisionedThroughputExceededException": 1}


def test_non_retryable_call_error_stops_at_once() -> None:
    kinesis = FakeKinesis(call_error="ResourceNotFoundException")
    summary = Producer(kinesis, "missing", sleep=lambda _s: None).send([entry(0)])
    assert len(kinesis.calls) == 1 and summary.errors == {"ResourceNotFoundException": 1}


def test_rows_from_csv_jsonl_parquet_map_onto_the_contract(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "a.csv").write_text("text,category,channel\nI lost my card,lost_card,chat\n,empty,x\n")
    (tmp_path / "b.jsonl").write_text('{"text": "hi", "label": "greet"}\n{bad\n\n{"text": "x", "colour": 1}\n')
    pq.write_table(pa.table({"text": ["p1", "p2"], "label": ["a", None]}), tmp_path / "c.parquet")
    mapping = Mapping(label_column="category", tenant="acme")
    summary = SendSummary()
    csv_entries = list(entries_from_rows(read_rows(tmp_path / "a.csv", mapping), summary))
    assert len(csv_entries) == 1 and b'"metadata":{"channel":"chat"}' in csv_entries[0].data
    assert csv_entries[0].key.startswith("acme#") and b'"source":"a"' in csv_entries[0].data
    assert summary.rejected == {"text: is required": 1}
    assert summary.first_rejected["text: is required"] == "a.csv:3"
    summary = SendSummary()
    assert len(list(entries_from_rows(read_rows(tmp_path / "b.jsonl"), summary))) == 1
    assert set(summary.rejected) == {"line: not valid JSON (Expecting property name enclosed in double quotes)",
                                     "colour: is not a known field"}  # fmt: skip
    assert len(list(entries_from_rows(read_rows(tmp_path / "c.parquet"), SendSummary()))) == 2
    assert [count_rows(tmp_path / n) for n in ("a.csv", "b.jsonl", "c.parquet")] == [2, 3, 2]
