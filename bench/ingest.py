"""Ingest consumer throughput, in process, on one core.

A generated set (default 50,000 records; 10% malformed, 20% PII-bearing, the rest clean banking-style
questions) is turned into Kinesis event records (base64 data, as Lambda delivers them), then:

- no_s3:   decode + validate + normalize + redact every record (cnai.ingest.curate), S3 excluded;
- with_s3: the same plus JSONL.gz serialization and one PutObject per 500-record batch to S3 (moto, in
           process), through the consumer's LakeWriter;
- consumer_moto: the whole Lambda path (powertools BatchProcessor, record-level idempotency on DynamoDB,
           S3), on a smaller slice: moto's DynamoDB costs far more per call than the real service, so this
           figure is a floor, not a forecast.

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
    from cnai.ingest import Curated, curate

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


def bench_with_s3(payloads: list[str], batch: int = 500) -> tuple[float, dict[str, int]]:
    import boto3
    from moto import mock_aws

    from cnai.ingest import Curated, curate
    from cnai.ingest_consumer import LakeWriter

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
            counts["curated"] += len(curated)
            counts["quarantined"] += len(quarantined)
        rate = len(payloads) / (time.perf_counter() - started)
    return rate, counts


def bench_consumer_moto(payloads: list[str], batch: int = 500) -> tuple[float, dict[str, int]]:
    import importlib

    import boto3
    from moto import mock_aws

    from cnai.ingest_local import LocalContext, kinesis_event_record

    env = {"AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x", "AWS_DEFAULT_REGION": "us-east-1",
           "CNAI_LAKE_BUCKET": "bench-lake", "CNAI_IDEMPOTENCY_TABLE": "bench-idem",
           "POWERTOOLS_METRICS_DISABLED": "true", "POWERTOOLS_LOG_LEVEL": "WARNING"}  # fmt: skip
    os.environ.update(env)
    counts = {"curated": 0, "quarantined": 0, "duplicates": 0, "failed": 0}
    with mock_aws():
        boto3.client("s3").create_bucket(Bucket="bench-lake")
        boto3.client("dynamodb").create_table(
            TableName="bench-idem",
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        handler = importlib.reload(importlib.import_module("functions.ingest.handler"))
        reports = []
        handler.emit = reports.append
        now = time.time()
        events = []
        for start in range(0, len(payloads), batch):
            records = []
            for i, data in enumerate(payloads[start : start + batch], start=start):
                record = kinesis_event_record(
                    b"", sequence=str(10**20 + i), partition_key="p", shard_id="shardId-0", stream_arn=ARN, arrival=now
                )
                record["kinesis"]["data"] = data
                records.append(record)
            events.append({"Records": records})
        started = time.perf_counter()
        for event in events:
            handler.handler(event, LocalContext())
        rate = len(payloads) / (time.perf_counter() - started)
    for report in reports:
        for key in counts:
            counts[key] += getattr(report, key)
    return rate, counts


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
        "dead_lettered": 0,  # S3 (moto) did not fail; see the tests for the failure paths
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
    assert result["records_in"] == result["curated"] + result["quarantined"] + result["dead_lettered"]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench-ingest.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"ingest consumer, one core ({pinned}), {args.records:,} records "
          f"({kinds['malformed']:,} malformed, {kinds['pii']:,} with PII)")  # fmt: skip
    print(f"  decode+validate+normalize+redact, no S3 : {rate_no_s3:>10,.0f} records/s (target >= 20,000)")
    print(f"  ... + JSONL.gz + S3 PutObject (moto)     : {rate_s3:>10,.0f} records/s")
    print(f"  whole Lambda path, DynamoDB+S3 on moto   : {rate_full:>10,.0f} records/s", end="")
    print(f" ({args.consumer_records:,} records)")
    print(f"  records in {result['records_in']:,} = curated {result['curated']:,} + quarantined "
          f"{result['quarantined']:,} + dead-lettered {result['dead_lettered']}")  # fmt: skip
    print(f"  written to {args.out / 'bench-ingest.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
