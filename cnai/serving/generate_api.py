"""POST /v1/models/{model}/generate: a drafted reply from the served generator, bounded and audited.

The route lives on the predict API's resolver (cnai.serving.api), so it shares its admission (415, non-UTF-8
400), its one exception-to-HTTP map, 404/405 and the fail-closed audit step; this module supplies the
request/response schema, the server-side bounds, the handler and the audit record of a generate call.

Bounds (GenerateLimits, from the function's settings or `cnai serve`): the prompt's total characters and
message count (413 beyond, naming the field), max_new_tokens (400 beyond the server's cap: the caller asked
for something this deployment never does), and a deadline: the server's own (the function timeout minus a
margin) always applies, a caller may ask for a shorter one; when it passes, the text so far comes back with
finish_reason "deadline".

The audit record carries the sha256 of each message and of the rendered prompt, the sha256 of the output, the
token counts, the finish reason and the generator's identity; text only where the deployment opted in, and
then redacted (as for predict).
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Annotated, Any, Literal

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.event_handler.openapi.params import Body
from pydantic import BaseModel, ConfigDict, Field, StrictStr, model_validator

from cnai.audit.trail import Auditor, AuditRecord, GenerationAudit, digest_inputs, record_from_event
from cnai.generate import Generation, GenerationError, GenerationParams, Generator, Messages
from cnai.generate.bedrock import BedrockError
from cnai.generate.decode import render_chat
from cnai.generate.params import check_messages
from cnai.serving.backends import BackendError
from cnai.serving.http import body_text
from cnai.serving.service import PayloadTooLargeError, UnknownModelError

GENERATE_PATH = re.compile(r"^/v1/models/(?P<model>[^/]+)/generate/*$")
GENERATE_ROUTE = "/v1/models/<model>/generate"
DEFAULT_NEW_TOKENS = 64
MAX_DRAFTS = 4  # draft_reply on predict: one generation per input, so few inputs per call
DRAFT_SYSTEM = (
    "You are a customer support agent at a bank. The customer's message below is about: {intent}. "
    "Write a short, polite first reply that addresses it. Do not ask for card numbers or passwords."
)
UNCLEAR_INTENT = "something the classifier could not tell; ask one short clarifying question"


@dataclass(frozen=True)
class GenerateLimits:
    max_prompt_chars: int = 8000
    max_messages: int = 32
    max_new_tokens: int = 256
    deadline_s: float = 20.0  # the server's own bound; keep it under the function's timeout


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Literal["system", "user", "assistant"]
    content: StrictStr = Field(min_length=1)


class GenerateRequest(BaseModel):
    """Body of POST /v1/models/{model}/generate: `prompt` (one user turn) or `messages` (a chat)."""

    model_config = ConfigDict(extra="forbid")

    prompt: StrictStr | None = Field(None, min_length=1, description="one user turn")
    messages: list[Message] | None = Field(None, min_length=1, description="chat turns, the last not the assistant's")
    max_new_tokens: int | None = Field(
        None,
        ge=1,
        strict=True,
        description="tokens to generate at most (default 64, or the deployment's cap if lower); 400 beyond the cap",
    )
    temperature: float = Field(0.0, ge=0.0, le=2.0, description="0 = greedy (deterministic)")
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    stop: list[Annotated[StrictStr, Field(min_length=1, max_length=64)]] = Field(default_factory=list, max_length=8)
    seed: int | None = Field(None, ge=0, le=2**31 - 1, strict=True)
    deadline_ms: int | None = Field(None, ge=1, strict=True, description="answer with what is ready by then")

    @model_validator(mode="after")
    def _one_of(self) -> GenerateRequest:
        if (self.prompt is None) == (self.messages is None):
            raise ValueError("send exactly one of prompt or messages")
        return self

    def chat(self) -> list[dict[str, str]]:
        if self.messages is not None:
            return [m.model_dump() for m in self.messages]
        return [{"role": "user", "content": self.prompt or ""}]


class Usage(BaseModel):
    tokens_in: int
    tokens_out: int


class Timing(BaseModel):
    ttft_ms: float
    total_ms: float


class GenerateResponse(BaseModel):
    model: str
    version: str
    package_version: str | None
    text: str
    finish_reason: Literal["stop", "length", "deadline"]
    usage: Usage
    timing: Timing


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


class GenerateRoute:
    """The served generator and its bounds. `register` adds the route to the predict API's resolver;
    `record` builds a generate call's audit record from the API's per-call state (`call`: event, request_id,
    error, and `extra`, where the route leaves its Generation)."""

    def __init__(self, generator: Generator, limits: GenerateLimits | None = None) -> None:
        self.generator = generator
        self.limits = limits or GenerateLimits()

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
            identity = self.generator.identity
            response = GenerateResponse(
                model=identity.name,
                version=identity.version,
                package_version=identity.package_version,
                text=result.text,
                finish_reason=result.finish_reason,
                usage=Usage(tokens_in=result.tokens_in, tokens_out=result.tokens_out),
                timing=Timing(ttft_ms=round(result.ttft_ms, 2), total_ms=round(result.total_ms, 2)),
            )
            return Response(HTTPStatus.OK.value, content_types.APPLICATION_JSON, response.model_dump_json())

    def generate(self, model: str, body: GenerateRequest) -> Generation:
        """Check the bounds (413 / 400 naming the field), then generate under the tighter deadline."""
        if model != self.generator.identity.name:
            raise UnknownModelError(f"model {model[:200]!r} does not generate here; try {self.generator.identity.name}")
        chat = check_messages(body.chat())
        if len(chat) > self.limits.max_messages:
            raise PayloadTooLargeError("messages", f"{len(chat)} messages; at most {self.limits.max_messages}")
        chars = sum(len(m["content"]) for m in chat)
        if chars > self.limits.max_prompt_chars:
            field = "messages" if body.messages is not None else "prompt"
            raise PayloadTooLargeError(field, f"{chars} characters; at most {self.limits.max_prompt_chars}")
        max_new_tokens = body.max_new_tokens or min(DEFAULT_NEW_TOKENS, self.limits.max_new_tokens)
        if max_new_tokens > self.limits.max_new_tokens:
            raise GenerationError("max_new_tokens", f"at most {self.limits.max_new_tokens} on this deployment")
        deadline = self.limits.deadline_s
        if body.deadline_ms is not None:
            deadline = min(deadline, body.deadline_ms / 1000.0)
        params = GenerationParams(
            max_new_tokens=max_new_tokens,
            temperature=body.temperature,
            top_p=body.top_p,
            stop=tuple(body.stop),
            seed=body.seed,
            deadline_s=deadline,
        )
        return self._run(chat, params)

    def _run(self, chat: Messages, params: GenerationParams) -> Generation:
        """The generator's answer; a hosted generator that fails (Bedrock) is a 502, like a failed endpoint."""
        try:
            return self.generator.generate(chat, params)
        except BedrockError as exc:
            raise BackendError(str(exc)) from exc

    def check_drafts(self, texts: list[str]) -> None:
        """413 before anything runs: drafts cost one generation per input."""
        if len(texts) > MAX_DRAFTS:
            raise PayloadTooLargeError(
                "draft_reply", f"drafts for {len(texts)} inputs, at most {MAX_DRAFTS} per request"
            )

    def draft(self, texts: list[str], labels: list[str | None]) -> list[Generation]:
        """A first reply to each text, conditioned on its predicted intent (the label, made readable), under
        one deadline for the whole call."""
        started = time.perf_counter()
        drafts = []
        for text, label in zip(texts, labels, strict=True):
            intent = label.replace("_", " ") if label else UNCLEAR_INTENT
            left = max(self.limits.deadline_s - (time.perf_counter() - started), 0.001)
            params = GenerationParams(
                max_new_tokens=min(DEFAULT_NEW_TOKENS, self.limits.max_new_tokens), deadline_s=left
            )
            chat = [
                {"role": "system", "content": DRAFT_SYSTEM.format(intent=intent)},
                {"role": "user", "content": text},
            ]
            drafts.append(self._run(chat, params))
        return drafts

    @staticmethod
    def drafts_audit(drafts: list[Generation] | None) -> GenerationAudit | None:
        """The audit block of a predict call's drafts: sha256 of the drafts joined by NUL, tokens summed, the
        first finish reason that is not "stop" (else "stop"). The prompts are the inputs, hashed already."""
        if not drafts:
            return None
        joined = "\0".join(d.text for d in drafts).encode("utf-8", "surrogatepass")
        reasons = [d.finish_reason for d in drafts if d.finish_reason != "stop"]
        return GenerationAudit(
            prompt_sha256="",
            output_sha256=hashlib.sha256(joined).hexdigest(),
            tokens_in=sum(d.tokens_in for d in drafts),
            tokens_out=sum(d.tokens_out for d in drafts),
            finish_reason=reasons[0] if reasons else "stop",
        )

    def record(self, call: Any, status: int, latency_ms: float, auditor: Auditor) -> AuditRecord:
        """One audit record per generate call, answered or refused."""
        match = GENERATE_PATH.match(str(call.event.get("path", "")))
        model = match.group("model") if match else None
        chat = call.extra.get("prompt") or messages_from_event(call.event)
        contents = [m["content"] for m in chat]
        result: Generation | None = call.extra.get("generation") if status == HTTPStatus.OK else None
        identity = self.generator.identity
        known = model == identity.name
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
            model_version=identity.version if known else None,
            package_version=identity.package_version if known else None,
            backend=self.backend if known else None,
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
