"""A local stand-in for Lambda's Kinesis event source mapping, for the local platform and end-to-end tests.

It reads a stream (moto or real) shard by shard with GetRecords, builds the exact event Lambda delivers,
calls the handler, and applies the mapping's rules as AWS documents them: with ReportBatchItemFailures it
resumes from the lowest failed sequence number; on a function error it bisects the batch (when enabled);
after `max_retries` retries it sends Lambda's on-failure record (the batch's shard and sequence range,
not the data) to the SQS destination and moves on. In AWS, the event source mapping does all of this.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cnai.local.context import LocalContext

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


def kinesis_event_record(
    data: bytes, *, sequence: str, partition_key: str, shard_id: str, stream_arn: str, arrival: float
) -> dict[str, Any]:
    """One record exactly as Lambda's Kinesis event carries it (data base64-encoded)."""
    return {
        "kinesis": {
            "kinesisSchemaVersion": "1.0",
            "partitionKey": partition_key,
            "sequenceNumber": sequence,
            "data": base64.b64encode(data).decode("ascii"),
            "approximateArrivalTimestamp": arrival,
        },
        "eventSource": "aws:kinesis",
        "eventVersion": "1.0",
        "eventID": f"{shard_id}:{sequence}",
        "eventName": "aws:kinesis:record",
        "invokeIdentityArn": "arn:aws:iam::123456789012:role/cnai-ingest",
        "awsRegion": stream_arn.split(":")[3] if stream_arn.count(":") >= 5 else "us-east-1",
        "eventSourceARN": stream_arn,
    }


@dataclass
class DrainReport:
    """What the local mapping did: invocations, records delivered, and batches sent to the DLQ."""

    invocations: int = 0
    delivered: int = 0
    dead_lettered: int = 0
    dlq_messages: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class LocalEventSourceMapping:
    """Lambda's Kinesis event source mapping, played locally (see module docstring)."""

    kinesis: Any
    stream: str
    handler: Handler
    batch_size: int = 100
    max_retries: int = 2
    bisect_on_error: bool = True
    sqs: Any = None
    dlq_url: str | None = None
    report: DrainReport = field(default_factory=DrainReport)

    def drain(self) -> DrainReport:
        """Deliver every record now in the stream once (plus retries), shard by shard."""
        description = self.kinesis.describe_stream(StreamName=self.stream)["StreamDescription"]
        arn = description["StreamARN"]
        for shard in description["Shards"]:
            shard_id = shard["ShardId"]
            iterator = self.kinesis.get_shard_iterator(
                StreamName=self.stream, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON"
            )["ShardIterator"]
            while iterator:
                page = self.kinesis.get_records(ShardIterator=iterator, Limit=self.batch_size)
                records = [
                    kinesis_event_record(
                        r["Data"],
                        sequence=r["SequenceNumber"],
                        partition_key=r["PartitionKey"],
                        shard_id=shard_id,
                        stream_arn=arn,
                        arrival=_epoch(r.get("ApproximateArrivalTimestamp")),
                    )
                    for r in page["Records"]
                ]
                if not records:  # caught up with this shard (a live mapping would keep polling)
                    break
                self._deliver(records, shard_id, arn, attempt=0)
                iterator = page.get("NextShardIterator")
        return self.report

    def _deliver(self, records: Sequence[dict[str, Any]], shard_id: str, arn: str, attempt: int) -> None:
        self.report.invocations += 1
        self.report.delivered += len(records)
        try:
            response = self.handler({"Records": list(records)}, LocalContext("cnai-ingest-local", timeout_s=60))
        except Exception:
            if self.bisect_on_error and len(records) > 1:
                half = len(records) // 2
                self._deliver(records[:half], shard_id, arn, attempt)
                self._deliver(records[half:], shard_id, arn, attempt)
                return
            failed_from, failed_count = 0, len(records)
        else:
            failures = [f["itemIdentifier"] for f in (response or {}).get("batchItemFailures", [])]
            if not failures:
                return
            sequences = [r["kinesis"]["sequenceNumber"] for r in records]
            lowest = min(failures, key=int)
            failed_from = sequences.index(lowest) if lowest in sequences else 0
            failed_count = len(failures)
        remaining = records[failed_from:]
        if attempt < self.max_retries:
            self._deliver(remaining, shard_id, arn, attempt + 1)
        else:
            # The DLQ message names the whole remaining range (as Lambda's does); only the records that
            # failed in the last attempt were never written, so only they count as dead-lettered.
            self._dead_letter(remaining, shard_id, arn, attempt, failed_count)

    def _dead_letter(
        self, records: Sequence[dict[str, Any]], shard_id: str, arn: str, attempt: int, failed: int
    ) -> None:
        # Lambda's on-failure record for stream sources: where the batch is, not what it holds.
        message = {
            "requestContext": {
                "condition": "RetryAttemptsExhausted",
                "approximateInvokeCount": attempt + 1,
                "functionArn": LocalContext("cnai-ingest-local").invoked_function_arn,
            },
            "timestamp": datetime.now(UTC).isoformat(),
            "KinesisBatchInfo": {
                "shardId": shard_id,
                "startSequenceNumber": records[0]["kinesis"]["sequenceNumber"],
                "endSequenceNumber": records[-1]["kinesis"]["sequenceNumber"],
                "batchSize": len(records),
                "streamArn": arn,
            },
        }
        self.report.dead_lettered += failed
        self.report.dlq_messages.append(message)
        if self.sqs is not None and self.dlq_url:
            self.sqs.send_message(QueueUrl=self.dlq_url, MessageBody=json.dumps(message))


def _epoch(value: Any) -> float:
    if isinstance(value, datetime):
        return value.timestamp()
    return float(value) if value is not None else datetime.now(UTC).timestamp()
