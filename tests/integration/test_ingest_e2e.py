"""End to end on moto: `cnai ingest` -> Kinesis -> (local event source mapping) -> consumer -> S3 -> snapshot.

Invariant: records in = curated + quarantined + dead-lettered, with and without S3 failures.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cnai.cli import app
from cnai.local.kinesis import LocalEventSourceMapping
from cnai.redact import find_pii
from tests.integration import ingest_env
from tests.integration.ingest_env import BUCKET, STREAM, Lake
from tests.integration.test_ingest_consumer import FlakyS3

aws_env = ingest_env.aws_env
lake = ingest_env.lake
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

LABELS = ["card_lost", "top_up", "refund"]


def write_records(path: Path, n: int, *, day: str = "2026-03-0{d}") -> list[dict]:
    rows = []
    for i in range(n):
        text = f"message {i} about my {LABELS[i % 3].replace('_', ' ')}"
        if i % 5 == 0:
            text += f" - reach me at user{i}@example.com or 4111 1111 1111 1111"
        rows.append({"text": text, "label": LABELS[i % 3], "timestamp": f"{day.format(d=1 + i % 3)}T12:00:00Z"})
    rows.append({"text": "   ", "label": "x"})  # rejected by the producer: empty after normalization
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return rows


def ingest(path: Path, *extra: str) -> dict:
    result = CliRunner().invoke(app, ["ingest", str(path), "--stream", STREAM, "--tenant", "acme", "--json", *extra])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout[result.stdout.index("{") :])


def put_malformed(lake: Lake, *payloads: bytes) -> None:
    for i, data in enumerate(payloads):
        lake.kinesis.put_record(StreamName=STREAM, Data=data, PartitionKey=f"raw#{i}")


def test_cli_to_curated_objects_to_dataset(lake: Lake, tmp_path: Path) -> None:
    # Given a JSONL file of 60 records (12 with PII) and one blank row, plus 3 malformed records put raw
    write_records(tmp_path / "records.jsonl", 60)
    # When `cnai ingest` sends the file
    summary = ingest(tmp_path / "records.jsonl")
    put_malformed(lake, b"{oops", b"\xff\xfe", json.dumps({"text": "no tenant", "source": "s"}).encode())
    # Then 60 are sent, the blank row is rejected with its field and line
    assert summary["sent"] == 60 and summary["failed"] == 0
    assert summary["rejected_reasons"] == [
        {"reason": "text: is empty after normalization", "count": 1, "first": "records.jsonl:61"}
    ]
    assert len(summary["shards"]) == 2  # one tenant, spread over both shards
    # When the local event source mapping delivers the stream to the consumer
    mapping = LocalEventSourceMapping(lake.kinesis, STREAM, lake.module.handler, batch_size=16)
    report = mapping.drain()
    # Then records in = curated + quarantined + dead-lettered, and no PII reached the curated data
    curated, quarantined = lake.lines("curated/"), lake.lines("quarantine/")
    assert (len(curated), len(quarantined), report.dead_lettered) == (60, 3, 0)
    assert report.delivered == 63
    assert all(find_pii(c["text"]) == [] for c in curated)
    assert sum("[EMAIL]" in c["text"] for c in curated) == 12
    assert {k.split("/")[1] for k in lake.objects("curated/")} == {"dt=2026-03-01", "dt=2026-03-02", "dt=2026-03-03"}
    # When the same file is sent again (a producer retry) and delivered
    ingest(tmp_path / "records.jsonl")
    LocalEventSourceMapping(lake.kinesis, STREAM, lake.module.handler, batch_size=16).drain()
    # Then nothing is curated twice
    assert len(lake.lines("curated/")) == 60
    # When a dataset is built twice from the same range
    runner = CliRunner()
    args = ["dataset", "build", "--start", "2026-03-01", "--end", "2026-03-03", "--lake", f"s3://{BUCKET}"]
    first = json.loads(runner.invoke(app, [*args, "--name", "banking"]).stdout)
    again = json.loads(runner.invoke(app, [*args, "--name", "banking"]).stdout)
    # Then it is written once, versioned by its manifest hash, split train/test by id
    assert first["created"] and not again["created"] and first["version"] == again["version"]
    assert first["train_rows"] + first["test_rows"] == 60 and first["test_rows"] > 0
    manifest = json.loads(
        lake.s3.get_object(Bucket=BUCKET, Key=f"datasets/banking/{first['version']}/manifest.json")["Body"].read()
    )
    assert manifest["profile"]["labels"]["count"] == 3
    assert manifest["profile"]["redactions"] == {"card": 12, "email": 12}
    assert len(manifest["sources"]) == len(lake.objects("curated/"))


def test_s3_outage_dead_letters_only_what_was_never_written(lake: Lake, tmp_path: Path) -> None:
    # Given S3 refusing writes to one day's partition, and a mapping with 2 retries and a DLQ
    write_records(tmp_path / "records.jsonl", 30)
    ingest(tmp_path / "records.jsonl")
    lake.module.writer.s3 = FlakyS3(lake.s3, fail_on="dt=2026-03-02")
    mapping = LocalEventSourceMapping(
        lake.kinesis, STREAM, lake.module.handler, batch_size=10, max_retries=2, sqs=lake.sqs, dlq_url=lake.dlq_url
    )
    # When the stream is drained
    report = mapping.drain()
    # Then that day's records are dead-lettered, the others curated, and the books balance
    curated = lake.lines("curated/")
    assert report.dead_lettered == 10 and len(curated) == 20
    assert all(not c["timestamp"].startswith("2026-03-02") for c in curated)
    assert len(curated) + len(lake.lines("quarantine/")) + report.dead_lettered == 30
    messages = lake.sqs.receive_message(QueueUrl=lake.dlq_url, MaxNumberOfMessages=10)["Messages"]
    infos = [json.loads(m["Body"])["KinesisBatchInfo"] for m in messages]
    assert infos and all(i["streamArn"].endswith(STREAM) and i["batchSize"] >= 1 for i in infos)


def test_parquet_file_and_bisect_isolate_a_poison_batch(lake: Lake, tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    # Given a Parquet file (BANKING77-style columns) sent with `cnai ingest`
    texts = [f"how do I top up {i}" for i in range(12)]
    pq.write_table(pa.table({"text": texts, "category": ["top_up"] * 12}), tmp_path / "b77.parquet")
    summary = ingest(tmp_path / "b77.parquet", "--label-column", "category")
    assert summary["sent"] == 12 and summary["rejected"] == 0
    # And a consumer that crashes (function error, not a partial response) on batches holding one record
    handler = lake.module.handler

    def crashing(event: dict, context: object) -> dict:
        texts = [json.loads(base64.b64decode(r["kinesis"]["data"]))["text"] for r in event["Records"]]
        if any(t.endswith(" 7") for t in texts):
            raise RuntimeError("poison")
        return handler(event, context)

    # When the mapping delivers with bisect on error and 1 retry
    mapping = LocalEventSourceMapping(
        lake.kinesis, STREAM, crashing, batch_size=12, max_retries=1, sqs=lake.sqs, dlq_url=lake.dlq_url
    )
    report = mapping.drain()
    # Then bisecting narrows the crash to the one record, which is dead-lettered; the rest are curated
    curated = lake.lines("curated/")
    assert report.dead_lettered == 1 and len(curated) == 11
    assert all(c["label"] == "top_up" and c["source"] == "b77" for c in curated)
    assert len(curated) + report.dead_lettered == 12
