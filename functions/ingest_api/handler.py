"""POST /v1/ingest behind API Gateway (REST proxy). Thin: route, call cnai.ingest.api, answer.

Answers 200 with one result per record (accepted with id and sequence number, rejected with the field
named, or failed-retryable), 400/413 when the request itself is unusable, in the predict API's error shape:
`{"error": {"code", "message", "fields"}, "request_id"}`.
"""

from __future__ import annotations

import base64
import binascii
import json
from http import HTTPStatus
from typing import Any

import boto3
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from cnai.errors import error_body
from cnai.ingest.api import RequestError, error_answer, ingest_request
from cnai.ingest.producer import Producer
from cnai.observability import logger, metrics, tracer
from functions.ingest_api.settings import IngestApiSettings

settings = IngestApiSettings.from_env()
producer = Producer(boto3.client("kinesis"), settings.stream, max_attempts=settings.max_attempts, max_delay=1.0)
app = APIGatewayRestResolver()


def _json(status: int, body: dict[str, Any]) -> Response[str]:
    return Response(status_code=status, content_type=content_types.APPLICATION_JSON, body=json.dumps(body))


def _request_id() -> str | None:
    return app.current_event.request_context.request_id


@app.post("/v1/ingest")
def post_ingest() -> Response[str]:
    event = app.current_event
    body: str | bytes | None = event.body
    try:
        if body and event.is_base64_encoded:
            try:
                body = base64.b64decode(body, validate=True)
            except (binascii.Error, ValueError):
                raise RequestError(400, "body", "not valid base64 (isBase64Encoded is true)") from None
        result = ingest_request(body, producer, max_records=settings.max_records, spread=settings.spread)
    except RequestError as exc:
        metrics.add_metric(name="IngestRequestsRejected", unit=MetricUnit.Count, value=1)
        return _json(exc.status, error_answer(exc, _request_id()))
    for status in ("accepted", "rejected", "failed"):
        metrics.add_metric(name=f"IngestRecords_{status}", unit=MetricUnit.Count, value=result[status])
    return _json(200, result)


@app.not_found
def _no_route(exc: Exception) -> Response[str]:
    if app.current_event.path.rstrip("/") == "/v1/ingest":
        body = error_body("method_not_allowed", "use POST on /v1/ingest", _request_id())
        response = _json(HTTPStatus.METHOD_NOT_ALLOWED, body)
        response.headers["Allow"] = "POST"
        return response
    return _json(HTTPStatus.NOT_FOUND, error_body("not_found", "no such route", _request_id()))


@app.exception_handler(Exception)
def _internal(exc: Exception) -> Response[str]:
    """500s never leak internals: the log has the stack trace, the caller the request id to quote."""
    logger.exception("unhandled error")
    return _json(
        HTTPStatus.INTERNAL_SERVER_ERROR, error_body("internal", "internal error; quote the request id", _request_id())
    )


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
