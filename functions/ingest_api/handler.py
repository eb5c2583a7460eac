"""POST /v1/ingest behind API Gateway (REST proxy): settings, the Kinesis producer, decorators, hand-off.

The route, validation and error answers are cnai.ingest.api (200 with one result per record; 400/405/413 in
the predict API's error shape `{"error": {"code", "message", "fields"}, "request_id"}`).
"""

from __future__ import annotations

from typing import Any

import boto3
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from cnai.ingest.api import build_ingest_api
from cnai.ingest.producer import Producer
from cnai.observability import logger, metrics, tracer
from functions.ingest_api.settings import IngestApiSettings

settings = IngestApiSettings.from_env()
producer = Producer(boto3.client("kinesis"), settings.stream, max_attempts=settings.max_attempts, max_delay=1.0)
app = build_ingest_api(producer, max_records=settings.max_records, spread=settings.spread)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
