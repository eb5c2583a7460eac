"""POST /v1/models/{model}/generate: a drafted reply from the served generator, bounded and audited.

The route lives on the predict API's resolver (cnai.serving.api), so it shares its admission (415, non-UTF-8
400), its one exception-to-HTTP map, 404/405 and the fail-closed audit step; this module supplies the
handler and the audit record of a generate call. The request/response schema is cnai.generate.wire (which the
SageMaker endpoint speaks too), the bounds and the drafts cnai.serving.generation (which that endpoint serves
through too): one implementation of each.

The audit record carries the sha256 of each message and of the rendered prompt, the sha256 of the output, the
token counts, the finish reason and the generator's identity; text only where the deployment opted in, and
then redacted (as for predict).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping
from http import HTTPStatus
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.event_handler.openapi.params import Body

from cnai.audit.trail import Auditor, AuditRecord, GenerationAudit, digest_inputs, record_from_event
from cnai.generate import Generation, GenerationError
from cnai.generate.decode import render_chat
from cnai.generate.wire import GenerateRequest, GenerateResponse, Message, Timing, Usage
from cnai.serving.generation import MAX_DRAFTS, GenerateLimits, GenerateService
from cnai.serving.http import body_text

__all__ = [
    "GENERATE_PATH",
    "GENERATE_ROUTE",
    "GenerateLimits",
    "GenerateRequest",
    "GenerateResponse",
    "GenerateRoute",
    "Message",
    "Timing",
    "Usage",
    "exact_drafts",
    "generation_error",
    "messages_from_event",
]

GENERATE_PATH = re.compile(r"^/v1/models/(?P<model>[^/]+)/generate/*$")
GENERATE_ROUTE = "/v1/models/<model>/generate"


def exact_drafts(document: dict[str, Any], generating: bool) -> dict[str, Any]:
    """The OpenAPI document made exact about draft_reply (as api.exact does for the other bounds): without a
    generator served it can only be false (true is a 400); with one, at most MAX_DRAFTS inputs (413 beyond)."""
    request = document.get("components", {}).get("schemas", {}).get("PredictRequest")
    if not isinstance(request, dict) or "draft_reply" not in request.get("properties", {}):
        return document
    if not generating:
        request["properties"]["draft_reply"]["const"] = False
        return document
    bounded = {"anyOf": [{"type": "string"}, {"type": "array", "maxItems": MAX_DRAFTS}]}
    rule = {"if": {"properties": {"draft_reply": {"const": True}}, "required": ["draft_reply"]}}
    request.setdefault("allOf", []).append({**rule, "then": {"properties": {"inputs": bounded}}})
    return document


def generation_error(exc: Exception) -> tuple[HTTPStatus, str, str, list[dict[str, str]]]:
    """GenerationError -> 400 naming the field (api.py turns this into its ApiError)."""
    assert isinstance(exc, GenerationError)
    return HTTPStatus.BAD_REQUEST, "invalid_request", str(exc), [{"field": exc.field, "message": exc.problem}]


class GenerateRoute(GenerateService):
    """The generate route on the predict API. `register` adds it to the predict API's resolver; `record` builds
    a generate call's audit record from the API's per-call state (`call`: event, request_id, error, and
    `extra`, where the route leaves its Generation)."""

    @property
    def backend(self) -> str:
        return f"generate:{type(self.generator).__name__}"

    def register(self, app: APIGatewayRestResolver, call_of: Callable[[], Any]) -> None:
        @app.post(
            GENERATE_ROUTE,
            summary="Generate a reply (a drafted answer) from the served generator",
            responses={200: {"description": "the generated text, its token counts and timings"}},
        )
        def generate(model: str, body: Annotated[GenerateRequest, Body()]) -> Response[str]:
            call = call_of()
            result = self.generate(model, body)
            call.extra["generation"] = result
            call.extra["prompt"] = body.chat()
            response = GenerateResponse.of(self.identity, result)
            return Response(HTTPStatus.OK.value, content_types.APPLICATION_JSON, response.model_dump_json())

    def record(self, call: Any, status: int, latency_ms: float, auditor: Auditor) -> AuditRecord:
        """One audit record per generate call, answered or refused."""
        match = GENERATE_PATH.match(str(call.event.get("path", "")))
        model = match.group("model") if match else None
        chat = call.extra.get("prompt") or messages_from_event(call.event)
        contents = [m["content"] for m in chat]
        result: Generation | None = call.extra.get("generation") if status == HTTPStatus.OK else None
        identity = self.known_identity()  # None: a remote generator that could not even describe itself
        known = identity is not None and model == identity.name
        generation = None
        if result is not None:
            prompt = render_chat(chat)
            generation = GenerationAudit(
                prompt_sha256=hashlib.sha256(prompt.encode("utf-8", "surrogatepass")).hexdigest(),
                output_sha256=hashlib.sha256(result.text.encode("utf-8", "surrogatepass")).hexdigest(),
                tokens_in=result.tokens_in,
                tokens_out=result.tokens_out,
                finish_reason=result.finish_reason,
            )
        return record_from_event(
            call.event,
            request_id=call.request_id,
            status=status,
            latency_ms=latency_ms,
            model=model,
            model_version=identity.version if identity is not None and known else None,
            package_version=identity.package_version if identity is not None and known else None,
            backend=self.backend if known or identity is None else None,
            inputs=digest_inputs(contents),
            texts=auditor.texts_for_record(contents) if contents else None,
            error=call.error,
            generation=generation,
        )


def messages_from_event(event: Mapping[str, Any], limit: int = 64) -> list[dict[str, str]]:
    """Best effort, for the audit record of a refused call: the prompt or the messages' contents sent."""
    try:
        body = body_text(event)
        data = json.loads(body) if body is not None else None
    except (ValueError, TypeError, RecursionError):
        return []
    if not isinstance(data, dict):
        return []
    if isinstance(data.get("prompt"), str):
        return [{"role": "user", "content": data["prompt"]}]
    messages = data.get("messages")
    if not isinstance(messages, list):
        return []
    found = []
    for m in messages[:limit]:
        if isinstance(m, dict) and isinstance(m.get("content"), str):
            found.append({"role": str(m.get("role", "user")), "content": m["content"]})
    return found
