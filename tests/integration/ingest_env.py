"""moto fixtures for the ingestion tests: bucket, idempotency table, stream, DLQ, and the consumer handler.

The handler module builds its clients at import (cold start), so it is (re)imported inside the mock.
"""

from __future__ import annotations

import base64
import importlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import boto3
import pytest
from moto import mock_aws

from cnai.ingest.curate import read_jsonl_gz
from cnai.local.kinesis import kinesis_event_record

BUCKET = "cnai-lake-test"
TABLE = "cnai-idempotency-test"
STREAM = "cnai-ingest-test"
ARN = f"arn:aws:kinesis:us-east-1:123456789012:stream/{STREAM}"


@dataclass
class Lake:
    s3: Any
    dynamodb: Any
    kinesis: Any
    sqs: Any
    dlq_url: str
    module: ModuleType

    def objects(self, prefix: str) -> list[str]:
        pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
        return sorted(o["Key"] for page in pages for o in page.get("Contents", []))

    def lines(self, prefix: str) -> list[dict[str, Any]]:
        return [
            line
            for key in self.objects(prefix)
            for line in read_jsonl_gz(self.s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())
        ]


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "CNAI_LAKE_BUCKET": BUCKET,
        "CNAI_IDEMPOTENCY_TABLE": TABLE,
        "POWERTOOLS_METRICS_NAMESPACE": "cnai-test",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)


@pytest.fixture
def lake(aws_env: None) -> Iterator[Lake]:
    with mock_aws():
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket=BUCKET)
        dynamodb = boto3.client("dynamodb")
        dynamodb.create_table(
            TableName=TABLE,
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        kinesis = boto3.client("kinesis")
        kinesis.create_stream(StreamName=STREAM, ShardCount=2)
        sqs = boto3.client("sqs")
        dlq_url = sqs.create_queue(QueueName="cnai-ingest-dlq")["QueueUrl"]
        module = importlib.import_module("functions.ingest.handler")
        module = importlib.reload(module)  # new clients and persistence layer inside this mock
        yield Lake(s3, dynamodb, kinesis, sqs, dlq_url, module)


def event(*payloads: bytes | str, start: int = 1, shard: str = "shardId-000000000000") -> dict[str, Any]:
    """A Kinesis event as Lambda delivers it; str payloads are taken as already-base64 data (malformed)."""
    records = []
    for i, payload in enumerate(payloads):
        record = kinesis_event_record(
            payload if isinstance(payload, bytes) else b"",
            sequence=str(49_000_000_000 + start + i),
            partition_key="acme#1",
            shard_id=shard,
            stream_arn=ARN,
            arrival=1_767_323_045.0,  # 2026-01-02T03:04:05Z
        )
        if isinstance(payload, str):
            record["kinesis"]["data"] = payload
        records.append(record)
    return {"Records": records}


def payload(text: str, **fields: Any) -> bytes:
    return json.dumps({"text": text, "source": "test", "tenant": "acme", **fields}).encode()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
