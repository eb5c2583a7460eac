"""Ingest consumer throughput, in process, on one core.

A generated set (default 50,000 records; 10% malformed, 20% PII-bearing, the rest clean banking-style
questions) is turned into Kinesis event records (base64 data, as Lambda delivers them), then:

- no_s3:   decode + validate + normalize + redact every record (cnai.ingest.curate.curate), S3 excluded;
- with_s3: the same plus JSONL.gz serialization and one PutObject per 500-record batch to S3 (moto, in
           process), through the consumer's LakeWriter;
- consumer_moto: the whole Lambda path (powertools BatchProcessor, record-level idempotency on DynamoDB,
           S3), on a smaller slice put on a moto Kinesis stream and delivered by the local event source
           mapping (cnai/local/kinesis.py: retries, bisect, DLQ). moto's DynamoDB costs far more per call than
           the real service, so this figure is a floor, not a forecast. Kinesis only carries bytes, so the
           slice's bad-base64 payloads arrive as (valid base64 of) their text and are quarantined as bad JSON.

The books are checked against what landed, not against what was counted on the way: curated and quarantined
are the record counts of the objects read back from S3, dead-lettered is the mapping's DLQ count, and
`records in = curated + quarantined + dead-lettered` is asserted for both runs that write to S3.

Prints a table and writes reports/bench-ingest.json. Prints figures, asserts nothing about time.
Usage: python -m bench.ingest [--records 50000] [--out reports]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import platform
import random
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

INTENTS = [
    "I lost my card, can you block it?",
    "how do I top up by bank transfer?",
    "my card payment was declined at the shop",
    "why was I charged a fee for a cash withdrawal?",
    "the exchange rate on my transfer looks wrong",
    "can I get a refund for a duplicated payment?",
    "my top-up is still pending after two days",
    "how long does a transfer to another country take?",
]
PII = [
    " my email is {name}{n}@example.com",
    " call me on +44 20 7946 {n:04d}",
    " card number 4111 1111 1111 1111",
    " my IBAN is GB82 WEST 1234 5698 7654 32",
    " ssn 123-45-{n:04d}",
    " from IP 192.168.{a}.{b}",
]
ARN = "arn:aws:kinesis:us-east-1:123456789012:stream/bench"
NAMES = ["anna", "li", "omar", "sofia", "john", "priya"]


def generate(n: int, seed: int = 7) -> tuple[list[str], dict[str, int]]:
    """Base64 payloads: 10% malformed (bad base64, bad JSON, invalid record), 20% with PII, 70% clean."""
    rng = random.Random(seed)
    payloads = []
    kinds = {"malformed": 0, "pii": 0, "clean": 0}
    for i in range(n):
        roll = rng.random()
        if roll < 0.10:
            kinds["malformed"] += 1
            choice = i % 3
            if choice == 0:
                payloads.append("not base64 at all %%%")
                continue
            raw = b'{"text": "unterminated' if choice == 1 else json.dumps({"text": "  ", "tenant": "t"}).encode()
            payloads.append(base64.b64encode(raw).decode())
            continue
        base = rng.choice(INTENTS)
        text = base
        if roll < 0.30:
            kinds["pii"] += 1
            text += rng.choice(PII).format(name=rng.choice(NAMES), n=i % 10_000, a=i % 256, b=(i * 7) % 256)
        else:
            kinds["clean"] += 1
        record = {
            "text": f"{text} (ref {i})",
            "label": f"intent_{INTENTS.index(base)}",
            "source": "bench",
            "tenant": f"tenant-{i % 5}",
        }
        payloads.append(base64.b64encode(json.dumps(record).encode()).decode())
    return payloads, kinds


def pin_one_core() -> str:
    if hasattr(os, "sched_setaffinity"):
        core = sorted(os.sched_getaffinity(0))[-1]
        os.sched_setaffinity(0, {core})
        return f"pinned to CPU {core}"
    return "not pinned (no sched_setaffinity)"


def bench_no_s3(payloads: list[str]) -> tuple[float, dict[str, int]]:
    from cnai.ingest.curate import Curated, curate

    arrival = datetime.now(UTC)
    counts = {"curated": 0, "quarantined": 0, "redacted_records": 0}
    started = time.perf_counter()
    for data in payloads:
        outcome = curate(data, arrival)
        if isinstance(outcome, Curated):
            counts["curated"] += 1
            counts["redacted_records"] += bool(outcome.redactions)
        else:
            counts["quarantined"] += 1
    return len(payloads) / (time.perf_counter() - started), counts


def landed(s3: Any, bucket: str, prefix: str) -> int:
    """Records in the objects under `prefix`, read back from S3 (each object's `records` metadata)."""
    total = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            total += int(s3.head_object(Bucket=bucket, Key=item["Key"])["Metadata"]["records"])
    return total


def bench_with_s3(payloads: list[str], batch: int = 500) -> tuple[float, dict[str, int]]:
    import boto3
    from moto import mock_aws

    from cnai.ingest.consumer import LakeWriter
    from cnai.ingest.curate import Curated, curate

    arrival = datetime.now(UTC)
    counts = {"curated": 0, "quarantined": 0, "objects": 0}
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="bench-lake")
        writer = LakeWriter(s3, "bench-lake")
        started = time.perf_counter()
        for start in range(0, len(payloads), batch):
            curated: list[dict[str, Any]] = []
            quarantined: list[dict[str, Any]] = []
            for i, data in enumerate(payloads[start : start + batch], start=start):
                outcome = curate(data, arrival)
                if isinstance(outcome, Curated):
                    curated.append(outcome.line())
                else:
                    quarantined.append(outcome.line(f"shard-0:{i}", arrival))
            for kind, lines in (("curated", curated), ("quarantine", quarantined)):
                if lines:
                    writer.put(writer.key(kind, arrival.strftime("%Y-%m-%d"), f"bench-{start}"), lines)
                    counts["objects"] += 1
        rate = len(payloads) / (time.perf_counter() - started)
        counts["curated"] = landed(s3, "bench-lake", "curated/")
        counts["quarantined"] = landed(s3, "bench-lake", "quarantine/")
    return rate, counts


def bench_consumer_moto(payloads: list[str], batch: int = 500) -> tuple[float, dict[str, int]]:
    import binascii
    import importlib

    import boto3
    from moto import mock_aws

    from cnai.ingest.consumer import BatchReport
    from cnai.local.kinesis import LocalEventSourceMapping

    env = {"AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x", "AWS_DEFAULT_REGION": "us-east-1",
           "CNAI_LAKE_BUCKET": "bench-lake", "CNAI_IDEMPOTENCY_TABLE": "bench-idem",
           "POWERTOOLS_METRICS_DISABLED": "true", "POWERTOOLS_LOG_LEVEL": "WARNING"}  # fmt: skip
    os.environ.update(env)
    with mock_aws():
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket="bench-lake")
        boto3.client("dynamodb").create_table(
            TableName="bench-idem",
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        kinesis = boto3.client("kinesis")
        kinesis.create_stream(StreamName="bench", ShardCount=1)
        sqs = boto3.client("sqs")
        dlq_url = sqs.create_queue(QueueName="bench-dlq")["QueueUrl"]
        for start in range(0, len(payloads), 500):
            entries = []
            for data in payloads[start : start + 500]:
                try:
                    raw = base64.b64decode(data, validate=True)
                except (binascii.Error, ValueError):
                    raw = data.encode()  # a stream carries bytes: bad base64 cannot travel as such
                entries.append({"Data": raw, "PartitionKey": "p"})
            assert kinesis.put_records(StreamName="bench", Records=entries)["FailedRecordCount"] == 0
        module = importlib.reload(importlib.import_module("functions.ingest.handler"))
        reports: list[BatchReport] = []
        module.emit_report = reports.append
        seconds = 0.0

        def timed(event: dict[str, Any], context: Any) -> dict[str, Any]:  # the handler's time, not moto Kinesis'
            nonlocal seconds
            started = time.perf_counter()
            try:
                return module.handler(event, context)
            finally:
                seconds += time.perf_counter() - started

        mapping = LocalEventSourceMapping(kinesis, "bench", timed, batch_size=batch, sqs=sqs, dlq_url=dlq_url)
        drained = mapping.drain()
        counts = {
            "curated": landed(s3, "bench-lake", "curated/"),
            "quarantined": landed(s3, "bench-lake", "quarantine/"),
            "dead_lettered": drained.dead_lettered,
            "duplicates": sum(r.duplicates for r in reports),
            "failed": sum(r.failed for r in reports),
            "claim_errors": sum(r.claim_errors for r in reports),
            "invocations": drained.invocations,
        }
    assert all(r.balanced for r in reports), "a batch report does not balance"
    return len(payloads) / seconds, counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--records", type=int, default=50_000)
    parser.add_argument("--consumer-records", type=int, default=5_000, help="slice for the full consumer path")
    parser.add_argument("--out", type=Path, default=Path("reports"))
    args = parser.parse_args(argv)

    pinned = pin_one_core()
    payloads, kinds = generate(args.records)
    bench_no_s3(payloads[:2000])  # warm up regex and pydantic caches
    rate_no_s3, counts = bench_no_s3(payloads)
    rate_s3, counts_s3 = bench_with_s3(payloads)
    rate_full, counts_full = bench_consumer_moto(payloads[: args.consumer_records])
    result = {
        "records_per_s_no_s3": round(rate_no_s3),
        "records_per_s_with_s3": round(rate_s3),
        "records_per_s_consumer_moto": round(rate_full),
        "records_in": args.records,
        "curated": counts_s3["curated"],
        "quarantined": counts_s3["quarantined"],
        # Only the whole Lambda path has retries and a DLQ: its dead-letter count, from the mapping's run.
        "dead_lettered": counts_full["dead_lettered"],
        "generated": kinds,
        "records_with_redactions": counts["redacted_records"],
        "consumer_moto": {"records_in": args.consumer_records, **counts_full},
        "machine": {
            "python": platform.python_version(),
            "cpu": platform.processor() or platform.machine(),
            "affinity": pinned,
        },
        "target_records_per_s_no_s3": 20_000,
    }
    # The curate + S3 run cannot dead-letter (a failed write stops the bench): everything must have landed.
    assert result["records_in"] == result["curated"] + result["quarantined"], "records missing from S3"
    whole = result["consumer_moto"]
    assert whole["records_in"] == whole["curated"] + whole["quarantined"] + whole["dead_lettered"], whole
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench-ingest.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"ingest consumer, one core ({pinned}), {args.records:,} records "
          f"({kinds['malformed']:,} malformed, {kinds['pii']:,} with PII)")  # fmt: skip
    print(f"  decode+validate+normalize+redact, no S3 : {rate_no_s3:>10,.0f} records/s (target >= 20,000)")
    print(f"  ... + JSONL.gz + S3 PutObject (moto)     : {rate_s3:>10,.0f} records/s")
    print(f"  whole Lambda path, DynamoDB+S3 on moto   : {rate_full:>10,.0f} records/s", end="")
    print(f" ({args.consumer_records:,} records)")
    print(f"  records in {result['records_in']:,} = curated {result['curated']:,} + quarantined "
          f"{result['quarantined']:,} (read back from S3)")  # fmt: skip
    print(f"  whole path: {whole['records_in']:,} in = curated {whole['curated']:,} + quarantined "
          f"{whole['quarantined']:,} + dead-lettered {whole['dead_lettered']:,} "
          f"({whole['invocations']} invocations, {whole['duplicates']} duplicates skipped)")  # fmt: skip
    print(f"  written to {args.out / 'bench-ingest.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
