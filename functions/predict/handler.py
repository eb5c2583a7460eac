"""The predict Lambda behind API Gateway (REST proxy). Thin: parse, call cnai.serving.service, shape, audit.

Routes: POST /v1/models/{model}/predict, GET /v1/models, GET /v1/models/{model}, GET /v1/health,
GET /v1/openapi.json. The model is loaded once per container, at init (module import).

Every predict call leaves exactly one audit record, whatever its outcome (400, 404, 413, 415, 500 ...):
`dispatch` writes it after routing, with the final status. If the audit sink fails, the call fails
closed with 503 and the prediction is withheld (cnai.audit.trail explains where the record goes instead).
"""

from __future__ import annotations

import time

_INIT_STARTED = time.perf_counter()

import contextvars  # noqa: E402 - the init timer must start before the imports it measures
import json  # noqa: E402
import uuid  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from http import HTTPStatus  # noqa: E402
from typing import Annotated, Any  # noqa: E402

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types  # noqa: E402
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError  # noqa: E402
from aws_lambda_powertools.event_handler.openapi.params import Body  # noqa: E402
from aws_lambda_powertools.logging import correlation_paths  # noqa: E402
from aws_lambda_powertools.metrics import MetricUnit  # noqa: E402
from aws_lambda_powertools.utilities.typing import LambdaContext  # noqa: E402

from cnai.audit.trail import (  # noqa: E402
    Auditor,
    AuditUnavailableError,
    sink_from_uri,
)
from cnai.errors import CnaiError  # noqa: E402
from cnai.model.predictor import Predictor  # noqa: E402
from cnai.observability import METRICS_ON, logger, metric, metrics, tracer  # noqa: E402
from cnai.serving.service import (  # noqa: E402
    PREDICT_PATH,
    Backend,
    BackendError,
    HealthResponse,
    Limits,
    LocalBackend,
    ModelDetail,
    ModelService,
    ModelsResponse,
    Outcome,
    PayloadTooLargeError,
    PredictRequest,
    PredictResponse,
    SageMakerBackend,
    UnknownModelError,
    body_is_json,
    call_record,
)
from functions.predict.settings import PredictSettings, load_settings  # noqa: E402


@dataclass
class State:
    """What a container holds between invocations: the models, the auditor, how long init took."""

    settings: PredictSettings
    service: ModelService
    auditor: Auditor
    init_ms: float
    cold: bool = True


def configure(settings: PredictSettings) -> State:
    """Load the served models and open the audit sink. Raises CnaiError (artifact, sink) on a bad setup."""
    started = time.perf_counter()
    backends: dict[str, Backend] = {}
    routed = settings.model_name in settings.sagemaker_endpoints
    if settings.model_uri and not routed:  # a model routed to SageMaker is not loaded here (it may not fit)
        predictor = Predictor.from_uri(
            settings.model_uri, settings.model_version_id, threads=settings.threads, cache_size=settings.cache_size
        )
        name = settings.model_name or predictor.name
        backends[name] = LocalBackend(predictor, name, settings.model_package_version)
    for name, endpoint in settings.sagemaker_endpoints.items():
        backends[name] = SageMakerBackend(name, endpoint)
    limits = Limits(max_inputs=settings.max_inputs, max_input_chars=settings.max_input_chars)
    auditor = Auditor(sink_from_uri(settings.audit_sink), store_text=settings.audit_store_text)
    return State(settings, ModelService(backends, limits), auditor, (time.perf_counter() - started) * 1000)


# The call being handled: the predict route fills it, dispatch() reads it for the audit record.
CALL: contextvars.ContextVar[dict[str, Any]] = contextvars.ContextVar("cnai_call")

app = APIGatewayRestResolver(enable_validation=True)
# No Swagger UI route: enable_swagger imports the OpenAPI models at init (~45 ms of every cold start); the
# document at /v1/openapi.json (built on its first request) works with any Swagger UI.


def error_body(code: str, message: str, fields: list[dict[str, str]] | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if fields:
        error["fields"] = fields
    return {"error": error, "request_id": _request_id()}


def _error(status: HTTPStatus, code: str, message: str, fields: list[dict[str, str]] | None = None) -> Response:
    CALL.get({})["error"] = code
    return Response(status.value, content_types.APPLICATION_JSON, error_body(code, message, fields))


@app.exception_handler(RequestValidationError)
def _invalid(exc: RequestValidationError) -> Response:
    """400 with one entry per bad field; the offending values are never echoed back."""
    fields = []
    for err in exc.errors():
        loc = [p for p in err.get("loc", ()) if p != "body"]
        if err.get("type") == "json_invalid":
            detail = (err.get("ctx") or {}).get("error", "invalid JSON")
            fields.append({"field": "body", "message": f"not valid JSON: {detail} at character {loc[0] if loc else 0}"})
            continue
        name = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".") or "body"
        fields.append({"field": name, "message": str(err.get("msg", err.get("type", "invalid")))})
    return _error(HTTPStatus.BAD_REQUEST, "invalid_request", "the request body does not match the schema", fields)


@app.exception_handler(RecursionError)
def _too_deep(exc: RecursionError) -> Response:
    """json.loads recurses per nesting level: a body of 20,000 '[' is bad input, not a server error."""
    fields = [{"field": "body", "message": "JSON nested too deeply"}]
    return _error(HTTPStatus.BAD_REQUEST, "invalid_request", "the request body is not usable JSON", fields)


@app.exception_handler(UnknownModelError)
def _unknown(exc: UnknownModelError) -> Response:
    return _error(HTTPStatus.NOT_FOUND, "unknown_model", str(exc))


@app.exception_handler(PayloadTooLargeError)
def _too_large(exc: PayloadTooLargeError) -> Response:
    return _error(
        HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "too_large", str(exc), [{"field": exc.field, "message": str(exc)}]
    )


@app.exception_handler(BackendError)
def _backend(exc: BackendError) -> Response:
    logger.error("backend failed", extra={"problem": str(exc)})
    return _error(HTTPStatus.BAD_GATEWAY, "backend_unavailable", "the model backend did not answer; retry later")


@app.not_found
def _no_route(exc: Exception) -> Response:
    return _error(HTTPStatus.NOT_FOUND, "not_found", "no such route; see /v1/openapi.json")


@app.exception_handler(Exception)
def _internal(exc: Exception) -> Response:
    """500s never leak internals: the log has the stack trace, the caller gets the request id to quote."""
    logger.exception("unhandled error")
    return _error(HTTPStatus.INTERNAL_SERVER_ERROR, "internal", "internal error; quote the request id")


@app.post(
    "/v1/models/<model>/predict",
    summary="Classify one text or a batch of texts",
    responses={
        200: {
            "description": "predictions, best label first",
            "content": {content_types.APPLICATION_JSON: {"model": PredictResponse}},
        },
        400: {"description": "bad JSON or a field that does not match the schema"},
        404: {"description": "unknown model"},
        413: {"description": "too many inputs, or an input too long"},
        415: {"description": "the body is not JSON"},
        503: {"description": "the audit trail is unavailable; nothing was served"},
    },
)
def predict(model: str, body: Annotated[PredictRequest, Body()]) -> Response[str]:
    """The answer is serialized once, by pydantic's JSON encoder; the schema above documents it."""
    call = CALL.get({})
    call["model"], call["texts"] = model, body.texts
    outcome = STATE.service.predict(model, body, _request_id())
    call["outcome"] = outcome
    _record_metrics(outcome)
    return Response(HTTPStatus.OK.value, content_types.APPLICATION_JSON, outcome.response.model_dump_json())


@app.get("/v1/models", summary="Served models and their versions")
def list_models() -> ModelsResponse:
    return ModelsResponse(models=STATE.service.summaries())


@app.get("/v1/models/<model>", summary="A model's version, labels, metrics and lineage (from its model card)")
def describe_model(model: str) -> ModelDetail:
    return STATE.service.get(model).detail()


@app.get("/v1/health", summary="Liveness, the models loaded and the cache")
def health() -> HealthResponse:
    cache: dict[str, float] = {}
    for backend in STATE.service.backends.values():
        if isinstance(backend, LocalBackend):
            cache = backend.predictor.cache.info()
    versions = {
        name: (b.predictor.version if isinstance(b, LocalBackend) else b.kind)
        for name, b in STATE.service.backends.items()
    }
    return HealthResponse(status="ok", models=versions, cache=cache)


@app.get("/v1/openapi.json", include_in_schema=False)
def openapi() -> dict[str, Any]:
    return _openapi_document()


_OPENAPI: list[dict[str, Any]] = []


def _openapi_document() -> dict[str, Any]:
    """Built on first request, not at init: the cold start serves predictions first."""
    if not _OPENAPI:
        document = app.get_openapi_json_schema(
            title="cnai predict API",
            version="1",
            description="Calibrated intent labels from a distilled int8 ONNX model; every call is audited.",
        )
        _OPENAPI.append(json.loads(document))
    return _OPENAPI[0]


def _record_metrics(outcome: Outcome) -> None:
    predictions = outcome.response.predictions
    metric("Inputs", MetricUnit.Count, len(predictions))
    metric("CacheHits", MetricUnit.Count, outcome.cache_hits)
    if isinstance(outcome.backend, LocalBackend):
        metric("CacheHitRate", MetricUnit.Percent, 100 * outcome.backend.predictor.cache.info()["hit_rate"])
    abstained = sum(p.label is None for p in predictions)
    metric("Abstentions", MetricUnit.Count, abstained)
    for p in predictions:
        if p.label is not None:
            metric(f"Label.{p.label}"[:255], MetricUnit.Count, 1)


def _request_id() -> str:
    call = CALL.get({})
    if "request_id" not in call:
        event = call.get("event") or {}
        context = event.get("requestContext") if isinstance(event.get("requestContext"), dict) else {}
        rid = context.get("requestId") if isinstance(context, dict) else None
        call["request_id"] = rid if isinstance(rid, str) and rid else uuid.uuid4().hex
    return str(call["request_id"])


def _header(event: dict[str, Any], name: str) -> str | None:
    headers = event.get("headers")
    if not isinstance(headers, dict):
        return None
    for key, value in headers.items():
        if isinstance(key, str) and key.lower() == name and isinstance(value, str):
            return value
    return None


def _admit(event: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """(event to route, early response or None): 415 for a POST body that is not JSON."""
    if event.get("httpMethod") != "POST":
        return event, None
    content_type = _header(event, "content-type")
    if body_is_json(content_type):
        # Powertools parses only application/json as JSON: say so for the other JSON spellings we accept.
        media = (content_type or "").split(";")[0].strip().lower()
        keep = content_type is None or media == "application/json"  # e.g. ";" parses as no media type
        return (event if keep else _with_json_type(event)), None
    CALL.get({})["error"] = "unsupported_media_type"
    shown = (content_type or "")[:100]
    body = error_body("unsupported_media_type", f"content type {shown!r} is not supported; send application/json")
    return event, _response(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, body)


def _with_json_type(event: dict[str, Any]) -> dict[str, Any]:
    headers = {k: v for k, v in (event.get("headers") or {}).items() if str(k).lower() != "content-type"}
    headers["Content-Type"] = "application/json"
    multi = event.get("multiValueHeaders")
    if isinstance(multi, dict):
        multi = {k: v for k, v in multi.items() if str(k).lower() != "content-type"}
        multi["Content-Type"] = ["application/json"]
    return {**event, "headers": headers, "multiValueHeaders": multi}


def _response(status: HTTPStatus, body: dict[str, Any]) -> dict[str, Any]:
    return {
        "statusCode": status.value,
        "headers": {"Content-Type": content_types.APPLICATION_JSON},
        "multiValueHeaders": {},
        "body": json.dumps(body),
        "isBase64Encoded": False,
    }


def _audit(event: dict[str, Any], call: dict[str, Any], response: dict[str, Any], started: float) -> dict[str, Any]:
    """Write the call's one audit record; on a sink failure replace the answer with a 503 (fail closed)."""
    status = int(response.get("statusCode", 500))
    latency_ms = (time.perf_counter() - started) * 1000
    record = call_record(
        event,
        service=STATE.service,
        auditor=STATE.auditor,
        outcome=call.get("outcome") if status == HTTPStatus.OK else None,
        model=call.get("model"),
        texts=call.get("texts"),
        status=status,
        error=call.get("error"),
        request_id=_request_id(),
        latency_ms=latency_ms,
    )
    metric("Latency", MetricUnit.Milliseconds, latency_ms)
    try:
        STATE.auditor.write(record)
    except AuditUnavailableError as exc:
        logger.error("audit sink failed: the call is refused (fail closed)", extra={"problem": str(exc)})
        metric("AuditFailures", MetricUnit.Count, 1)
        body = error_body("audit_unavailable", "the audit trail is unavailable, so nothing was served; retry later")
        return _response(HTTPStatus.SERVICE_UNAVAILABLE, body)
    return response


def dispatch(event: Any, context: LambdaContext | None) -> dict[str, Any]:
    """Route one API Gateway event; never raises (anything unexpected becomes a 500 without internals)."""
    started = time.perf_counter()
    if not isinstance(event, dict):
        return _response(HTTPStatus.BAD_REQUEST, error_body("invalid_event", "not an API Gateway proxy event"))
    call: dict[str, Any] = {"event": event}
    token = CALL.set(call)
    try:
        routed, early = _admit(event)
        try:
            response = early or app.resolve(routed, context)  # type: ignore[arg-type]
        except Exception:
            logger.exception("unhandled error outside the routes")
            call["error"] = "internal"
            response = _response(
                HTTPStatus.INTERNAL_SERVER_ERROR, error_body("internal", "internal error; quote the request id")
            )
        if event.get("httpMethod") == "POST" and PREDICT_PATH.match(str(event.get("path", ""))):
            response = _audit(event, call, response, started)
        metric("Requests", MetricUnit.Count, 1)
        if STATE.cold:
            STATE.cold = False
            metric("InitDuration", MetricUnit.Milliseconds, INIT_MS)
        return response
    finally:
        CALL.reset(token)


def _handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return dispatch(event, context)


# The cookbook's decorator order: context + correlation id, metrics flush, tracing. With metrics disabled
# (POWERTOOLS_METRICS_DISABLED, e.g. `cnai serve`) there is nothing to flush, so log_metrics is left out.
_traced = tracer.capture_lambda_handler(_handler, capture_response=False)
_measured = metrics.log_metrics(_traced, capture_cold_start_metric=True) if METRICS_ON else _traced
handler = logger.inject_lambda_context(
    _measured, correlation_id_path=correlation_paths.API_GATEWAY_REST, log_event=False
)


try:
    STATE = configure(load_settings())
except CnaiError as exc:  # stop the container at init, with the reason in the log
    logger.error("predict function cannot start", extra={"problem": str(exc)})
    raise
INIT_MS = (time.perf_counter() - _INIT_STARTED) * 1000
logger.info(
    "predict function ready",
    extra={
        "init_ms": round(INIT_MS, 1),
        "model_load_ms": round(STATE.init_ms, 1),
        "models": sorted(STATE.service.backends),
    },
)
