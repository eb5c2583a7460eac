"""The Kinesis consumer Lambda. Thin: wire settings, clients and observability to cnai.ingest.consumer.

Clients and the idempotency persistence layer are built once per container, at import (cold start).
Reports partial batch failures (`ReportBatchItemFailures` on the event source mapping).
"""

from __future__ import annotations

from typing import Any

import boto3
from aws_lambda_powertools.utilities.batch import process_partial_response
from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer
from aws_lambda_powertools.utilities.typing import LambdaContext

from cnai.ingest.consumer import CuratingProcessor, LakeWriter, Ledger, emit_report
from cnai.observability import logger, metrics, tracer
from functions.ingest.settings import IngestSettings

settings = IngestSettings.from_env()
s3 = boto3.client("s3")
ledger = Ledger(
    DynamoDBPersistenceLayer(table_name=settings.idempotency_table), expires_after_seconds=settings.dedup_seconds
)
writer = LakeWriter(
    s3, settings.lake_bucket, curated_prefix=settings.curated_prefix, quarantine_prefix=settings.quarantine_prefix
)


@logger.inject_lambda_context
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    processor = CuratingProcessor(
        ledger,
        writer,
        remaining_ms=context.get_remaining_time_in_millis,
        on_report=emit_report,
        concurrency=settings.claim_concurrency,
    )
    return dict(
        process_partial_response(
            event=event, record_handler=processor.record_handler, processor=processor, context=context
        )
    )
