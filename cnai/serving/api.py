"""The predict REST API, one implementation for the predict Lambda (behind API Gateway) and `cnai serve`
(behind uvicorn, cnai.serving.asgi): routes, the one exception-to-HTTP map, 415 admission, 405 for a known
route asked with another method, and the audited dispatch.

Routes: POST /v1/models/{model}/predict, GET /v1/models, GET /v1/models/{model}, GET /v1/health,
GET /v1/openapi.json (HEAD too on the GETs). Input is an API Gateway REST proxy event; output a proxy response.

Every predict call leaves exactly one audit record, whatever its outcome (400, 404, 408, 413, 415, 500 ...):
`handle` writes it after routing, with the final status, from the call's own `Call` object. If the audit sink
fails, the call fails closed with 503 and the prediction is withheld (cnai.audit.trail explains where the
record goes instead). `refuse` answers (and audits) a call the HTTP server stopped before it reached routing
(a body over the size limit, a client too slow to send its body).
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import TYPE_CHECKING, Annotated, Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.event_handler.openapi.params import Body
from aws_lambda_powertools.metrics import MetricUnit

from cnai.audit.trail import (
    Auditor,
    AuditRecord,
    AuditUnavailableError,
    OutputRecord,
    digest_inputs,
    record_from_event,
    sink_from_uri,
)
from cnai.errors import error_body
from cnai.generate import GenerationError
from cnai.generate.artifact import GeneratorCard
from cnai.generate.wire import GeneratorDetail
from cnai.identity import FORBIDDEN, group_refusal, refusal_fields, route_group
from cnai.model.identity import ModelId
from cnai.model.predictor import Predictor
from cnai.observability import logger, metric
from cnai.serving.backends import Backend, BackendError, LocalBackend, SageMakerBackend
from cnai.serving.generate_api import (
    GENERATE_PATH,
    GENERATE_ROUTE,
    GenerateLimits,
    GenerateRoute,
    exact_drafts,
    generation_error,
)
from cnai.serving.http import (
    BodyError,
    body_is_json,
    body_text,
    error_response,
    header,
    proxy_response,
    request_id,
)
from cnai.serving.schema import (
    GENERATION,
    AliasRouting,
    ErrorResponse,
    HealthResponse,
    ModelDetail,
    ModelsResponse,
    ModelSummary,
    PredictRequest,
    PredictResponse,
    generator_detail,
)
from cnai.serving.service import (
    MAX_EXPLAIN_INPUTS,
    MAX_EXPLAIN_WORDS,
    Limits,
    ModelService,
    Outcome,
    PayloadTooLargeError,
    UnknownModelError,
)

if TYPE_CHECKING:  # a type only: the OpenAPI modules stay out of the cold start (see openapi_document)
    from aws_lambda_powertools.event_handler.openapi.types import OpenAPIResponse

    from cnai.serving.live import LiveStatus

# Trailing slashes as Powertools' route patterns take them (`/*$`): a path the resolver routes is audited.
# Under `cnai:api.auth=cognito` the handler refuses a token without the route's group (cnai.identity).
COGNITO_GROUP_MISSING = "the caller's Cognito groups lack the route's group (`cnai:api.auth=cognito` only)"
PREDICT_PATH = re.compile(r"^/v1/models/(?P<model>[^/]+)/predict/*$")
# Every route and the methods it answers, for 405's Allow header (Powertools answers 404 for a known path
# asked with another method). HEAD is answered wherever GET is, without a body.
ROUTES: dict[str, tuple[str, ...]] = {
    "/v1/models/<model>/predict": ("POST",),
    GENERATE_ROUTE: ("POST",),
    "/v1/models": ("GET", "HEAD"),
    "/v1/models/<model>": ("GET", "HEAD"),
    "/v1/health": ("GET", "HEAD"),
    "/v1/openapi.json": ("GET", "HEAD"),
}
_ROUTE_RES = [(re.compile("^" + re.sub(r"<\w+>", "[^/]+", p) + "/?$"), m) for p, m in ROUTES.items()]
INTERNAL = "internal error; quote the request id"


def allowed_methods(path: str) -> tuple[str, ...]:
    """The methods a path answers (empty for an unknown path)."""
    for pattern, methods in _ROUTE_RES:
        if pattern.match(path):
            return methods
    return ()


@dataclass
class Call:
    """One request's state, typed, created by `handle` and filled as the call goes; the audit step reads it
    from `handle`'s own reference. Routes and error handlers reach it through the resolver's per-request
    context (Powertools clears that after every event), never through module state."""

    event: dict[str, Any]
    request_id: str
    started: float = field(default_factory=time.perf_counter)
    model: str | None = None
    texts: list[str] | None = None
    outcome: Outcome | None = None
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # another route's state (generate: its Generation)


@dataclass(frozen=True)
class ApiError:
    status: HTTPStatus
    code: str
    message: str
    fields: list[dict[str, str]] | None = None


# ---- the one exception-to-HTTP map ----


def _validation(exc: Exception) -> ApiError:
    """400 with one entry per bad field; the offending values are never echoed back."""
    assert isinstance(exc, RequestValidationError)
    fields = []
    for err in exc.errors():
        loc = [p for p in err.get("loc", ()) if p != "body"]
        if err.get("type") == "json_invalid":
            detail = (err.get("ctx") or {}).get("error", "invalid JSON")
            fields.append({"field": "body", "message": f"not valid JSON: {detail} at character {loc[0] if loc else 0}"})
            continue
        name = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".") or "body"
        fields.append({"field": name, "message": str(err.get("msg", err.get("type", "invalid")))})
    return ApiError(HTTPStatus.BAD_REQUEST, "invalid_request", "the request body does not match the schema", fields)


def _too_large(exc: Exception) -> ApiError:
    assert isinstance(exc, PayloadTooLargeError)
    return ApiError(
        HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "too_large", str(exc), [{"field": exc.field, "message": str(exc)}]
    )


def _backend(exc: Exception) -> ApiError:
    logger.error("backend failed", extra={"problem": str(exc)})
    return ApiError(HTTPStatus.BAD_GATEWAY, "backend_unavailable", "the model backend did not answer; retry later")


ERRORS: dict[type[Exception], Callable[[Exception], ApiError]] = {
    RequestValidationError: _validation,
    # json.loads recurses per nesting level: a body of 20,000 '[' is bad input, not a server error.
    RecursionError: lambda exc: ApiError(
        HTTPStatus.BAD_REQUEST,
        "invalid_request",
        "the request body is not usable JSON",
        [{"field": "body", "message": "JSON nested too deeply"}],
    ),
    BodyError: lambda exc: ApiError(
        HTTPStatus.BAD_REQUEST,
        "invalid_request",
        "the request body is not usable text",
        [{"field": "body", "message": str(exc)}],
    ),
    UnknownModelError: lambda exc: ApiError(HTTPStatus.NOT_FOUND, "unknown_model", str(exc)),
    PayloadTooLargeError: _too_large,
    BackendError: _backend,
    GenerationError: lambda exc: ApiError(*generation_error(exc)),
}


def api_error(exc: Exception) -> ApiError:
    """The HTTP answer to an exception: the nearest mapped class, else a 500 that leaks nothing (the log has
    the stack trace, the caller the request id to quote)."""
    for cls in type(exc).__mro__:
        mapped = ERRORS.get(cls)
        if mapped is not None:
            return mapped(exc)
    logger.exception("unhandled error")
    return ApiError(HTTPStatus.INTERNAL_SERVER_ERROR, "internal", INTERNAL)


# ---- the API ----


class PredictApi:
    """The served models and the audit trail behind the REST routes. One per process (Lambda container or
    `cnai serve` worker); `handle` serves one event at a time, as Lambda does (Powertools' resolver keeps the
    current event on the class)."""

    def __init__(
        self,
        service: ModelService,
        auditor: Auditor,
        init_ms: float | None = None,
        routing: Callable[[str], AliasRouting | None] | None = None,
        generate: GenerateRoute | None = None,
        live: LiveStatus | None = None,
    ) -> None:
        self.service = service
        self.auditor = auditor
        self.init_ms = init_ms  # reported once, as InitDuration, with the first request
        # `cnai serve --follow` (cnai.local.alias): the alias routing of a served name, shown by GET /v1/models/{model}
        self.routing = routing
        self.generate = generate  # POST /v1/models/{model}/generate when a generator is served
        # the predict Lambda (cnai.serving.live): its own alias's routing and the registry's approval, GET only
        self.live = live
        self._openapi: dict[str, Any] | None = None
        self.app = self._routes()
        self._predict_rule = _route_rule(self.app, "/v1/models/<model>/predict", "POST")

    # -- routes --

    def _routes(self) -> APIGatewayRestResolver:
        # No Swagger UI route: enable_swagger imports the OpenAPI models at init (~45 ms of every cold start);
        # the document at /v1/openapi.json (built on its first request) works with any Swagger UI.
        app = APIGatewayRestResolver(enable_validation=True)

        @app.exception_handler(Exception)
        def _error(exc: Exception) -> Response[Any]:
            return self._error_response(api_error(exc))

        @app.not_found
        def _no_route(exc: Exception) -> Response[Any]:
            return self._no_route()

        @app.post(
            "/v1/models/<model>/predict",
            summary="Classify one text or a batch of texts",
            responses={
                200: {
                    "description": "predictions, best label first",
                    "content": {content_types.APPLICATION_JSON: {"model": PredictResponse}},
                },
                **_errors(
                    {
                        400: "bad JSON, a body that is not UTF-8, or a field that does not match the schema",
                        403: COGNITO_GROUP_MISSING,
                        404: "unknown model, or a model name no route takes",
                        408: "the body did not arrive in time (`cnai serve` only)",
                        413: "too many inputs, an input too long, too much to explain, or a body over the size limit",
                        415: "the body is declared as something other than JSON",
                        502: "the SageMaker endpoint serving this model failed",
                        503: "the audit trail is unavailable; nothing was served",
                    }
                ),
            },
        )
        def predict(model: str, body: Annotated[PredictRequest, Body()]) -> Response[str]:
            """The answer is serialized once, by pydantic's JSON encoder; the schema above documents it."""
            return self._predict(self._call(), model, body)

        @app.get(
            "/v1/models",
            summary="Served models (classifiers and the generator, each with its task) and their identity",
            responses={
                200: {
                    "description": "the served models",
                    "content": {content_types.APPLICATION_JSON: {"model": ModelsResponse}},
                },
                **_errors({403: COGNITO_GROUP_MISSING, 502: "a SageMaker endpoint did not describe its model"}),
            },
        )
        def list_models() -> ModelsResponse:
            models = self.service.summaries()
            if self.generate is not None:  # the generator too, task text-generation: its route is /generate
                models.append(ModelSummary.of(self.generate.identity, self.generate.backend, GENERATION))
            return ModelsResponse(models=models)

        @app.get(
            "/v1/models/<model>",
            summary="A model's identity, labels, metrics and lineage (its model card)",
            responses={
                200: {
                    "description": "the model card's summary",
                    "content": {content_types.APPLICATION_JSON: {"model": ModelDetail}},
                },
                **_errors(
                    {
                        403: COGNITO_GROUP_MISSING,
                        404: "unknown model, or a model name no route takes",
                        502: "the SageMaker endpoint serving this model did not describe it",
                    }
                ),
            },
        )
        def describe_model(model: str) -> ModelDetail:
            generate = self.generate  # the served generator's name (a classifier of the same name answers first)
            if generate is not None and model not in self.service.backends and model == generate.identity.name:
                return generator_detail(generator_summary(generate), generate.backend)
            detail = self.service.get(model).detail()
            routing = self.routing(model) if self.routing is not None else None
            detail = detail if routing is None else detail.model_copy(update={"routing": routing})
            return detail if self.live is None else self.live.describe(detail)

        @app.get("/v1/health", summary="Liveness, the models loaded and the cache")
        def health() -> HealthResponse:
            cache: dict[str, float] = {}
            versions: dict[str, str] = {}
            for name, backend in self.service.backends.items():
                if isinstance(backend, LocalBackend):
                    cache = backend.predictor.cache.info()
                    versions[name] = backend.identity.version
                else:
                    versions[name] = backend.kind
            return HealthResponse(status="ok", models=versions, cache=cache)

        if self.generate is not None:
            self.generate.register(app, self._call)

        @app.get("/v1/openapi.json", include_in_schema=False)
        def openapi() -> dict[str, Any]:
            return self.openapi_document()

        return app

    def openapi_document(self) -> dict[str, Any]:
        """Built on first request, not at init: the cold start serves predictions first."""
        if self._openapi is None:
            document = self.app.get_openapi_json_schema(
                title="cnai predict API",
                version="1",
                description="Calibrated intent labels from a distilled int8 ONNX model; every call is audited."
                " A known path asked with a method it does not answer gets 405 with `Allow`; OPTIONS gets 204.",
            )
            self._openapi = exact_drafts(exact(json.loads(document), self.service.limits), self.generate is not None)
        return self._openapi

    def _predict(self, call: Call, model: str, body: PredictRequest) -> Response[str]:
        """The predict route's work, reached through the resolver or directly (`_predict_directly`)."""
        call.model, call.texts = model, body.texts
        if body.draft_reply:  # refused before anything runs (cnai.serving.generate_api)
            if self.generate is None:
                raise GenerationError("draft_reply", "no generator is served beside this model")
            self.generate.check_drafts(body.texts)
        outcome = self.service.predict(model, body, call.request_id)
        if body.draft_reply and self.generate is not None:
            labels = [p.label for p in outcome.response.predictions]
            drafts = call.extra["drafts"] = self.generate.draft(body.texts, labels)
            outcome.response = outcome.response.model_copy(update={"drafts": [d.text for d in drafts]})
        call.outcome = outcome
        _record_metrics(outcome)
        return Response(HTTPStatus.OK.value, content_types.APPLICATION_JSON, outcome.response.model_dump_json())

    def _predict_directly(self, call: Call, event: dict[str, Any]) -> dict[str, Any] | None:
        """A predict call whose body validates, answered without the resolver: the same route code, errors
        and response, but one JSON parse + validation in pydantic-core instead of the resolver's route
        matching, event wrappers and validation middleware (together more than the model's own time on one
        short text). None for anything else (another route, a body that does not validate): the resolver
        answers those, with the 400 that names each bad field. Powertools' own route pattern decides the match,
        so both paths take the same paths."""
        body = event.get("body")
        match = self._predict_rule.match(str(event.get("path") or "")) if self._predict_rule is not None else None
        if match is None or not isinstance(body, str):
            return None
        try:
            request = PredictRequest.model_validate_json(body)
        except ValueError:  # pydantic's ValidationError is one: the resolver will say what is wrong
            return None
        self.app.append_context(call=call)
        try:
            try:
                answer: Response[Any] = self._predict(call, match.group("model"), request)
            except Exception as exc:  # the resolver's exception handler, the same map
                answer = self._error_response(api_error(exc))
        finally:
            self.app.clear_context()
        return _as_proxy(answer)

    def _call(self) -> Call:
        call = self.app.context.get("call")
        if not isinstance(call, Call):  # pragma: no cover - handle() always sets it
            raise RuntimeError("route called outside PredictApi.handle")
        return call

    def _error_response(self, error: ApiError, headers: dict[str, str] | None = None) -> Response[Any]:
        call = self._call()
        call.error = error.code
        body = error_body(error.code, error.message, call.request_id, error.fields)
        return Response(error.status.value, content_types.APPLICATION_JSON, body, headers=headers)

    def _no_route(self) -> Response[Any]:
        """404 for an unknown path; 405 with Allow for a known path asked with another method (204 for OPTIONS)."""
        call = self._call()
        path, method = str(call.event.get("path", "")), str(call.event.get("httpMethod", ""))
        methods = allowed_methods(path)
        if not methods or method in methods:  # the method is right but a path parameter has characters no route takes
            return self._error_response(
                ApiError(HTTPStatus.NOT_FOUND, "not_found", "no such route; see /v1/openapi.json")
            )
        allow = ", ".join((*methods, "OPTIONS"))
        if method == "OPTIONS":
            return Response(HTTPStatus.NO_CONTENT.value, None, "", headers={"Allow": allow})
        message = f"{method[:16]} is not allowed on {path[:200]}; use {' or '.join(methods)}"
        return self._error_response(
            ApiError(HTTPStatus.METHOD_NOT_ALLOWED, "method_not_allowed", message), {"Allow": allow}
        )

    # -- dispatch --

    def handle(self, event: Any, context: Any) -> dict[str, Any]:
        """Route one API Gateway event; never raises (anything unexpected becomes a 500 without internals)."""
        if not isinstance(event, dict):
            return error_response(HTTPStatus.BAD_REQUEST, "invalid_event", "not an API Gateway proxy event", None)
        call = Call(event, request_id(event))
        method = event.get("httpMethod")
        if self.live is not None and method != "POST":  # which function and alias: read on GET only
            self.live.bind(context)
        try:
            routed, early = self._admit(call)
            if early is None and method == "POST":
                early = self._predict_directly(call, routed)
            if early is None:
                if method == "HEAD":  # answered as GET, without the body
                    routed = {**routed, "httpMethod": "GET"}
                self.app.append_context(call=call)
                response = self.app.resolve(routed, context)
                if method == "HEAD":
                    response = {**response, "body": ""}
            else:
                response = early
        except Exception:
            logger.exception("unhandled error outside the routes")
            call.error = "internal"
            response = error_response(HTTPStatus.INTERNAL_SERVER_ERROR, "internal", INTERNAL, call.request_id)
        response = self._audit_if_audited(call, response)
        self._count()
        return response

    def _audit_if_audited(self, call: Call, response: dict[str, Any]) -> dict[str, Any]:
        """Predict and generate calls are audited, whatever their outcome; other routes are not."""
        method, path = call.event.get("httpMethod"), str(call.event.get("path", ""))
        if method == "POST" and PREDICT_PATH.match(path):
            return self._audit(call, response)
        if method == "POST" and self.generate is not None and GENERATE_PATH.match(path):
            generate = self.generate
            return self._audit(call, response, lambda c, s, ms: generate.record(c, s, ms, self.auditor))
        return response

    def refuse(
        self,
        event: dict[str, Any],
        status: HTTPStatus,
        code: str,
        message: str,
        fields: list[dict[str, str]] | None = None,
    ) -> dict[str, Any]:
        """Answer a call the HTTP server stopped before routing (body over the size limit, body too slow): the
        same error body, and for a predict call its audit record (the body, not read, has no inputs to hash)."""
        call = Call(event, request_id(event), error=code)
        response = self._audit_if_audited(call, error_response(status, code, message, call.request_id, fields))
        self._count()
        return response

    def _admit(self, call: Call) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """(event to route, early answer or None) for a POST: 415 for a body that is not JSON, 400 for a body
        that is not UTF-8 text; the body handed on decoded (Powertools would decode base64 again, and fail on
        non-UTF-8 bytes as a 500), with the JSON media type Powertools expects. Before that, for any method, 403
        for a Cognito caller outside the route's group (cnai.identity; a refused predict call is audited too)."""
        event = call.event
        refusal = group_refusal(event.get("requestContext"), route_group(str(event.get("path", ""))))
        if refusal is not None:
            call.error = FORBIDDEN
            fields = refusal_fields(refusal)
            return event, error_response(HTTPStatus.FORBIDDEN, FORBIDDEN, refusal, call.request_id, fields)
        if event.get("httpMethod") != "POST":
            return event, None
        content_type = header(event, "content-type")
        if not body_is_json(content_type):
            call.error = "unsupported_media_type"
            shown = (content_type or "")[:100]
            body = error_body(
                "unsupported_media_type",
                f"content type {shown!r} is not supported; send application/json",
                call.request_id,
            )
            return event, proxy_response(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, body)
        try:
            text = body_text(event)
        except BodyError as exc:
            error = api_error(exc)
            call.error = error.code
            return event, error_response(error.status, error.code, error.message, call.request_id, error.fields)
        return _as_json(event, text, content_type), None

    def _audit(
        self,
        call: Call,
        response: dict[str, Any],
        recorder: Callable[[Call, int, float], AuditRecord] | None = None,
    ) -> dict[str, Any]:
        """Write the call's one audit record; on a sink failure replace the answer with a 503 (fail closed)."""
        status = int(response.get("statusCode", 500))
        latency_ms = (time.perf_counter() - call.started) * 1000
        try:
            record = (recorder or self.call_record)(call, status, latency_ms)
            metric("Latency", MetricUnit.Milliseconds, latency_ms)
            self.auditor.write(record)
        except Exception as exc:  # a record not written is a call not served, whatever the cause
            if isinstance(exc, AuditUnavailableError):
                logger.error("audit sink failed: the call is refused (fail closed)", extra={"problem": str(exc)})
            else:
                logger.exception("audit record not built: the call is refused (fail closed)")
            metric("AuditFailures", MetricUnit.Count, 1)
            return error_response(
                HTTPStatus.SERVICE_UNAVAILABLE,
                "audit_unavailable",
                "the audit trail is unavailable, so nothing was served; retry later",
                call.request_id,
            )
        return response

    def call_record(self, call: Call, status: int, latency_ms: float) -> AuditRecord:
        """The one audit record of a predict call, answered or refused: identity from the event, input hashes
        (text only where the deployment opted in, redacted), outputs of a 200, and the model that answered or,
        for a refused call, the model that would have answered."""
        texts = call.texts or texts_from_event(call.event)
        match = PREDICT_PATH.match(str(call.event.get("path", "")))
        model = call.model or (match.group("model") if match else None)
        outcome = call.outcome if status == HTTPStatus.OK else None
        identity: ModelId | None
        backend: str | None
        if outcome is not None:
            identity, backend = outcome.identity, outcome.backend.kind
        else:
            identity = self.service.identity_of(model)
            backend = self.service.backends[model].kind if identity is not None and model else None
        outputs = (
            None
            if outcome is None
            else [OutputRecord(label=p.label, score=p.score, reason=p.reason) for p in outcome.response.predictions]
        )
        return record_from_event(
            call.event,
            request_id=call.request_id,
            status=status,
            latency_ms=latency_ms,
            model=model,
            model_version=identity.version if identity else None,
            package_version=identity.package_version if identity else None,
            backend=backend,
            inputs=digest_inputs(texts),
            texts=self.auditor.texts_for_record(texts) if texts else None,
            outputs=outputs,
            error=call.error,
            generation=GenerateRoute.drafts_audit(call.extra.get("drafts")) if outcome is not None else None,
        )

    def _count(self) -> None:
        metric("Requests", MetricUnit.Count, 1)
        if self.init_ms is not None:
            metric("InitDuration", MetricUnit.Milliseconds, self.init_ms)
            self.init_ms = None


def generator_summary(route: GenerateRoute) -> GeneratorDetail:
    """The served generator's summary: what a remote one described (a `detail` GeneratorDetail), else built from
    the card of the artifact it was loaded from (OnnxGenerator's `card`), else its identity alone."""
    generator = route.generator
    described = getattr(generator, "detail", None)
    if isinstance(described, GeneratorDetail):
        return described
    card = getattr(generator, "card", None)
    return GeneratorDetail.of(route.identity, card if isinstance(card, GeneratorCard) else None)


def _route_rule(app: APIGatewayRestResolver, path: str, method: str) -> re.Pattern[str] | None:
    """The compiled pattern the resolver matches `path` with; None where this Powertools version keeps its
    routes elsewhere (every call then goes through the resolver: slower, never wrong)."""
    routes = [*getattr(app, "_dynamic_routes", []), *getattr(app, "_static_routes", [])]
    for route in routes:
        if getattr(route, "path", None) == path and getattr(route, "method", None) == method:
            rule = getattr(route, "rule", None)
            return rule if isinstance(rule, re.Pattern) else None
    return None


def _as_proxy(response: Response[Any]) -> dict[str, Any]:
    """A route's Response as the resolver returns it for a REST proxy event (JSON bodies compact)."""
    body = response.body
    text = body if isinstance(body, str) else json.dumps(body, separators=(",", ":"))
    headers: dict[str, list[str]] = {key: [value] if isinstance(value, str) else list(value)
                                     for key, value in (response.headers or {}).items()}  # fmt: skip
    if response.content_type is not None:
        headers.setdefault("Content-Type", [response.content_type])
    return {"statusCode": response.status_code, "body": text, "isBase64Encoded": False, "multiValueHeaders": headers}


def _errors(descriptions: Mapping[int, str]) -> dict[int, OpenAPIResponse]:
    """OpenAPI responses for error statuses, each with the one error body (ErrorResponse)."""
    return {
        status: {"description": text, "content": {content_types.APPLICATION_JSON: {"model": ErrorResponse}}}
        for status, text in descriptions.items()
    }


# What Powertools adds to every operation when validation is on, for FastAPI's convention of answering a body
# that fails validation with 422. This API answers 400 (ERRORS above) and never 422, so the document must not
# promise it: a client generated from it would handle an answer that never comes and miss the real one.
_UNUSED_SCHEMAS = ("HTTPValidationError", "ValidationError", "ResponseValidationError")


def exact(document: dict[str, Any], limits: Limits | None = None) -> dict[str, Any]:
    """The generated OpenAPI document made exact: without the 422 responses (and their schemas) this API never
    returns, and, given the deployment's `limits`, with the bounds it refuses with 413 written into the
    request schema (maxItems, maxLength, and the number of texts `explain` may ask for), so that a client or a
    fuzzer reading the document knows them. The words-per-explained-text bound is not expressible in JSON
    Schema: `explain`'s description states it."""
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            if isinstance(operation, dict):
                operation.get("responses", {}).pop("422", None)
    schemas = document.get("components", {}).get("schemas", {})
    text = json.dumps(document.get("paths", {}))
    for name in _UNUSED_SCHEMAS:
        if f'/{name}"' not in text:
            schemas.pop(name, None)
    request = schemas.get("PredictRequest")
    if limits is not None and isinstance(request, dict):
        one = {"type": "string", "maxLength": limits.max_input_chars}
        many = {"type": "array", "items": one, "minItems": 1, "maxItems": limits.max_inputs}
        request["properties"]["inputs"]["anyOf"] = [one, many]
        request["if"] = {"properties": {"explain": {"const": True}}, "required": ["explain"]}
        if limits.max_explain_inputs:
            bounded = {"type": "array", "maxItems": limits.max_explain_inputs}
            request["then"] = {"properties": {"inputs": {"anyOf": [{"type": "string"}, bounded]}}}
        else:  # explanations switched off
            request["then"] = {"properties": {"explain": {"const": False}}}
    return document


def _as_json(event: dict[str, Any], text: str | None, content_type: str | None) -> dict[str, Any]:
    """The event with its body as plain text and, for the JSON spellings we accept beyond application/json,
    Content-Type application/json (Powertools parses only that media type as JSON)."""
    media = (content_type or "").split(";")[0].strip().lower()
    keep_type = content_type is None or media == "application/json"  # e.g. ";" parses as no media type
    if keep_type and not event.get("isBase64Encoded"):
        return event
    routed = {**event, "body": text, "isBase64Encoded": False}
    if keep_type:
        return routed
    headers = {k: v for k, v in (event.get("headers") or {}).items() if str(k).lower() != "content-type"}
    headers["Content-Type"] = "application/json"
    multi = event.get("multiValueHeaders")
    if isinstance(multi, dict):
        multi = {k: v for k, v in multi.items() if str(k).lower() != "content-type"}
        multi["Content-Type"] = ["application/json"]
    return {**routed, "headers": headers, "multiValueHeaders": multi}


def texts_from_event(event: Mapping[str, Any], limit: int = 1024) -> list[str]:
    """Best effort, for the audit record of a refused call: the strings the caller sent as `inputs`."""
    try:
        body = body_text(event)
        data = json.loads(body) if body is not None else None
    except (ValueError, TypeError, RecursionError):
        return []
    inputs = data.get("inputs") if isinstance(data, dict) else None
    if isinstance(inputs, str):
        return [inputs]
    if isinstance(inputs, list):
        return [x for x in inputs if isinstance(x, str)][:limit]
    return []


def _record_metrics(outcome: Outcome) -> None:
    predictions = outcome.response.predictions
    metric("Inputs", MetricUnit.Count, len(predictions))
    metric("CacheHits", MetricUnit.Count, outcome.cache_hits)
    if isinstance(outcome.backend, LocalBackend):
        metric("CacheHitRate", MetricUnit.Percent, 100 * outcome.backend.predictor.cache.info()["hit_rate"])
    abstained = sum(p.label is None for p in predictions)
    metric("Abstentions", MetricUnit.Count, abstained)
    # one value per label the call answered, its count (Sum as before; a batch of 32 was 32 add_metric calls)
    for label, count in Counter(p.label for p in predictions if p.label is not None).items():
        metric(f"Label.{label}"[:255], MetricUnit.Count, count)


# ---- building one ----


@dataclass(frozen=True)
class ServingOptions:
    """What a predict API serves and how: the predict function's settings (functions/predict/settings.py, same
    field names) or `cnai serve`'s options. Plain values: the library reads no environment itself."""

    model_uri: str = ""
    model_name: str = ""
    model_version_id: str | None = None  # pins the S3 object version of a tarball: where the bytes come from
    model_package_version: str | None = None  # the registry's version: part of the model's identity
    sagemaker_endpoints: Mapping[str, str] = field(default_factory=dict)
    audit_sink: str = "stdout"
    audit_store_text: bool = False
    max_inputs: int = 64
    max_input_chars: int = 2000
    max_explain_inputs: int = MAX_EXPLAIN_INPUTS
    max_explain_words: int = MAX_EXPLAIN_WORDS
    cache_size: int = 1024
    threads: int | None = None
    generator_uri: str = ""  # serve POST /v1/models/{model}/generate (cnai.generate.load_generator's URI)
    max_new_tokens: int = GenerateLimits.max_new_tokens
    generate_deadline_s: float = GenerateLimits.deadline_s

    @classmethod
    def of(cls, settings: Any) -> ServingOptions:
        """From any object with these attributes (the function's pydantic settings)."""
        names = cls.__dataclass_fields__
        return cls(**{name: getattr(settings, name) for name in names if hasattr(settings, name)})


def build_api(options: ServingOptions, init_started: float | None = None, live: LiveStatus | None = None) -> PredictApi:
    """Load the served models and open the audit sink. Raises CnaiError (artifact, sink) on a bad setup.

    `init_started` (a perf_counter reading at process start) makes the first request report InitDuration;
    `live` (the predict Lambda's) adds its alias's routing and the registry's record to the model detail."""
    backends: dict[str, Backend] = {}
    routed = options.model_name in options.sagemaker_endpoints
    if options.model_uri and not routed:  # a model routed to SageMaker is not loaded here (it may not fit)
        predictor = Predictor.from_uri(
            options.model_uri, options.model_version_id, threads=options.threads, cache_size=options.cache_size
        )
        name = options.model_name or predictor.name
        backends[name] = LocalBackend(predictor, name, options.model_package_version)
    for name, endpoint in options.sagemaker_endpoints.items():
        backends[name] = SageMakerBackend(name, endpoint)
    limits = Limits(
        max_inputs=options.max_inputs,
        max_input_chars=options.max_input_chars,
        max_explain_inputs=options.max_explain_inputs,
        max_explain_words=options.max_explain_words,
    )
    auditor = Auditor(sink_from_uri(options.audit_sink), store_text=options.audit_store_text)
    generate = None
    if options.generator_uri:
        from cnai.generate import load_generator

        limits_g = GenerateLimits(max_new_tokens=options.max_new_tokens, deadline_s=options.generate_deadline_s)
        generate = GenerateRoute(load_generator(options.generator_uri, threads=options.threads), limits_g)
    init_ms = (time.perf_counter() - init_started) * 1000 if init_started is not None else None
    return PredictApi(ModelService(backends, limits), auditor, init_ms, generate=generate, live=live)
