"""What serving a generator means, apart from HTTP: the server-side bounds of a generate call and the drafts of
predict's draft_reply, over any Generator. The REST route (cnai.serving.generate_api) and the SageMaker
Serverless container (cnai.serving.sagemaker) both serve through GenerateService, so a request is bounded and
generated one way wherever it lands. Nothing here imports Powertools (the container does not ship it).

Bounds (GenerateLimits, from the function's settings or `cnai serve`): the prompt's total characters and
message count (413 beyond, naming the field), max_new_tokens (400 beyond the server's cap: the caller asked
for something this deployment never does), and a deadline: the server's own (the function timeout minus a
margin) always applies, a caller may ask for a shorter one; when it passes, the text so far comes back with
finish_reason "deadline".
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

from cnai.audit.trail import GenerationAudit
from cnai.generate import Generation, GenerationError, GenerationParams, Generator, GeneratorUnavailableError, Messages
from cnai.generate.params import check_messages
from cnai.generate.wire import DEFAULT_NEW_TOKENS, GenerateRequest
from cnai.model.identity import ModelId
from cnai.serving.backends import BackendError
from cnai.serving.service import PayloadTooLargeError, UnknownModelError

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


class GenerateService:
    """The served generator and its bounds. A hosted generator that fails (Bedrock, a SageMaker endpoint) is a
    BackendError here, the API's 502, as a failed classifier endpoint is."""

    def __init__(self, generator: Generator, limits: GenerateLimits | None = None) -> None:
        self.generator = generator
        self.limits = limits or GenerateLimits()

    @property
    def identity(self) -> ModelId:
        """The generator's identity; a remote one asks its endpoint once (BackendError when it cannot)."""
        try:
            return self.generator.identity
        except GeneratorUnavailableError as exc:
            raise BackendError(str(exc)) from exc

    def known_identity(self) -> ModelId | None:
        """The identity when it can be had without failing (the audit record of a call whose endpoint is down)."""
        try:
            return self.generator.identity
        except GeneratorUnavailableError:
            return None

    def generate(self, model: str, body: GenerateRequest) -> Generation:
        """Check the bounds (413 / 400 naming the field), then generate under the tighter deadline."""
        name = self.identity.name
        if model != name:
            raise UnknownModelError(f"model {model[:200]!r} does not generate here; try {name}")
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
        try:
            return self.generator.generate(chat, params)
        except GeneratorUnavailableError as exc:
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
