"""POST /v1/ingest: a batch of records in, per-record accepted / rejected (with reasons) out.

Why a thin Lambda rather than API Gateway's direct Kinesis integration: the direct integration can only
template a request into PutRecords; it cannot run the record contract, so invalid records would reach the
stream and a client would learn of its mistakes only from the quarantine bucket. The Lambda validates with
the same pydantic `Record` as the CLI and the consumer, answers per record with the field named, derives
ids and partition keys the same way as the CLI, and retries only the entries Kinesis throttled.
"""

from __future__ import annotations

import base64
import binascii
import json
from http import HTTPStatus
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.metrics import MetricUnit

from cnai.errors import error_body
from cnai.identity import FORBIDDEN, INGEST, group_refusal, refusal_fields
from cnai.ingest.producer import DEFAULT_SPREAD, Entry, Producer, SendSummary, entry_for
from cnai.ingest.records import RecordError, parse_record
from cnai.observability import logger, metric

MAX_REQUEST_RECORDS = 500  # one PutRecords call; larger batches belong to `cnai ingest`


class RequestError(ValueError):
    """The request as a whole is unusable: `status` is the HTTP status to answer, `field` the part of the
    request to fix, `problem` what is wrong with it (str(): `field: problem`)."""

    def __init__(self, status: int, field: str, problem: str) -> None:
        self.status = status
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}")

    @property
    def code(self) -> str:
        """The error code, as the predict API names the same failures."""
        return "too_large" if self.status == 413 else "invalid_request"


def error_answer(exc: RequestError, request_id: str | None) -> dict[str, Any]:
    """The body of a refused request, in the one error shape of every cnai API (cnai.errors.error_body)."""
    return error_body(exc.code, str(exc), request_id, [{"field": exc.field, "message": exc.problem}])


def parse_request(body: str | bytes | None, max_records: int = MAX_REQUEST_RECORDS) -> list[Any]:
    """`{"records": [...]}` -> the raw records. Raises RequestError (400 / 413) naming the problem."""
    if not body:
        raise RequestError(400, "body", 'expected JSON {"records": [...]}')
    try:
        data = json.loads(body)
    except UnicodeDecodeError as exc:
        raise RequestError(400, "body", f"not valid UTF-8 (byte {exc.start}); send UTF-8 JSON") from None
    except json.JSONDecodeError as exc:
        raise RequestError(400, "body", f"not valid JSON ({exc})") from None
    except RecursionError:  # e.g. "[" * 20000: a client mistake (400), not a server error (502)
        raise RequestError(400, "body", "JSON nested too deeply") from None
    if not isinstance(data, dict) or not isinstance(data.get("records"), list):
        raise RequestError(400, "records", 'expected {"records": [ ... ]} with a list of records')
    if set(data) - {"records"}:
        raise RequestError(400, sorted(set(data) - {"records"})[0], "is not a known field")
    records = data["records"]
    if not records:
        raise RequestError(400, "records", "the list is empty")
    if len(records) > max_records:
        raise RequestError(413, "records", f"{len(records)} in one request, more than {max_records}")
    return records


def ingest_request(
    body: str | bytes | None,
    producer: Producer,
    *,
    max_records: int = MAX_REQUEST_RECORDS,
    spread: int = DEFAULT_SPREAD,
) -> dict[str, Any]:
    """Validate every record, put the valid ones, answer one result per record in request order."""
    raw_records = parse_request(body, max_records)
    results: list[dict[str, Any]] = [{} for _ in raw_records]
    entries: list[Entry] = []
    positions: list[int] = []
    for i, raw in enumerate(raw_records):
        try:
            entries.append(entry_for(parse_record(raw), f"records[{i}]", spread))
            positions.append(i)
        except RecordError as exc:
            results[i] = {"index": i, "status": "rejected", "reason": exc.reason}
        except ValueError as exc:  # payload over the size limit
            results[i] = {"index": i, "status": "rejected", "reason": str(exc)}
    summary = SendSummary()
    if entries:
        for i, outcome in zip(positions, producer.put(entries, summary), strict=True):
            if outcome.error is None:
                results[i] = {
                    "index": i,
                    "status": "accepted",
                    "id": outcome.entry.record_id,
                    "sequence_number": outcome.sequence,
                }
            else:  # throttled through every retry: the client may send it again, ids make that safe
                results[i] = {"index": i, "status": "failed", "reason": f"stream: {outcome.error}", "retryable": True}
    counts = {s: sum(r["status"] == s for r in results) for s in ("accepted", "rejected", "failed")}
    return {**counts, "results": results}


def build_ingest_api(producer: Producer, *, max_records: int, spread: int) -> APIGatewayRestResolver:
    """The REST resolver for POST /v1/ingest (the Lambda handler resolves events with it): one error shape
    with the predict API, 405 with Allow for other methods, 500s that leak nothing."""
    app = APIGatewayRestResolver()

    def answer(status: int, body: dict[str, Any]) -> Response[str]:
        return Response(status_code=status, content_type=content_types.APPLICATION_JSON, body=json.dumps(body))

    def request_id() -> str | None:
        return app.current_event.request_context.request_id

    @app.post("/v1/ingest")
    def post_ingest() -> Response[str]:
        event = app.current_event
        # The gateway's Cognito authorizer proved the token, not the group (cnai.identity).
        refusal = group_refusal(event.raw_event.get("requestContext"), INGEST)
        if refusal is not None:
            metric("IngestRequestsRejected", MetricUnit.Count, 1)
            return answer(HTTPStatus.FORBIDDEN, error_body(FORBIDDEN, refusal, request_id(), refusal_fields(refusal)))
        body: str | bytes | None = event.body
        try:
            if body and event.is_base64_encoded:
                try:
                    body = base64.b64decode(body, validate=True)
                except (binascii.Error, ValueError):
                    raise RequestError(400, "body", "not valid base64 (isBase64Encoded is true)") from None
            result = ingest_request(body, producer, max_records=max_records, spread=spread)
        except RequestError as exc:
            metric("IngestRequestsRejected", MetricUnit.Count, 1)
            return answer(exc.status, error_answer(exc, request_id()))
        for status in ("accepted", "rejected", "failed"):
            metric(f"IngestRecords_{status}", MetricUnit.Count, result[status])
        return answer(HTTPStatus.OK, result)

    @app.not_found
    def no_route(exc: Exception) -> Response[str]:
        if app.current_event.path.rstrip("/") == "/v1/ingest":
            response = answer(
                HTTPStatus.METHOD_NOT_ALLOWED, error_body("method_not_allowed", "use POST on /v1/ingest", request_id())
            )
            response.headers["Allow"] = "POST"
            return response
        return answer(HTTPStatus.NOT_FOUND, error_body("not_found", "no such route", request_id()))

    @app.exception_handler(Exception)
    def internal(exc: Exception) -> Response[str]:
        """500s never leak internals: the log has the stack trace, the caller the request id to quote."""
        logger.exception("unhandled error")
        body = error_body("internal", "internal error; quote the request id", request_id())
        return answer(HTTPStatus.INTERNAL_SERVER_ERROR, body)

    return app
