"""POST /v1/ingest behind API Gateway (REST proxy). Thin: route, call cnai.ingest.api, map errors to HTTP.

Answers 200 with one result per record (accepted with id and sequence number, rejected with the field
named, or failed-retryable), 400/413 when the request itself is unusable.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import boto3
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from cnai.ingest.api import RequestError, ingest_request
from cnai.ingest.producer import Producer
from cnai.observability import logger, metrics, tracer
from functions.ingest_api.settings import IngestApiSettings

settings = IngestApiSettings.from_env()
producer = Producer(boto3.client("kinesis"), settings.stream, max_attempts=settings.max_attempts, max_delay=1.0)
app = APIGatewayRestResolver()


def _json(status: int, body: dict[str, Any]) -> Response:
    return Response(status_code=status, content_type=content_types.APPLICATION_JSON, body=json.dumps(body))


@app.post("/v1/ingest")
def post_ingest() -> Response:
    event = app.current_event
    body: str | bytes | None = event.body
    if body and event.is_base64_encoded:
        body = base64.b64decode(body)
    try:
        result = ingest_request(body, producer, max_records=settings.max_records, spread=settings.spread)
    except RequestError as exc:
        metrics.add_metric(name="IngestRequestsRejected", unit=MetricUnit.Count, value=1)
        return _json(exc.status, {"error": str(exc)})
    for status in ("accepted", "rejected", "failed"):
        metrics.add_metric(name=f"IngestRecords_{status}", unit=MetricUnit.Count, value=result[status])
    return _json(200, result)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
