"""What a caller asks of a generator and what it gets back: the types every backend shares.

They live apart from the backends so the serving route, the CLI, the training factory's synthetic-data
stage and the benchmark can import them without pulling in onnxruntime-genai, torch or boto3.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

from cnai.errors import CnaiError
from cnai.model.identity import ModelId

FinishReason = Literal["stop", "length", "deadline"]
Messages = Sequence[Mapping[str, str]]
ROLES = ("system", "user", "assistant")

# Bounds checked here, once, so every entry point (API, CLI, factory) refuses the same bad input the same way.
MAX_NEW_TOKENS = 1024
MAX_STOP_SEQUENCES = 8
MAX_STOP_CHARS = 64


class GeneratorUnavailableError(CnaiError):
    """A hosted generator (Bedrock, a SageMaker endpoint) failed or answered garbage: not the caller's fault,
    so the API answers 502 (as for a failed SageMaker classifier endpoint). The message names the service."""


class GenerationError(CnaiError):
    """A generation request cannot be served as asked; the message names the field and the problem."""

    def __init__(self, field_name: str, problem: str) -> None:
        self.field = field_name
        self.problem = problem
        super().__init__(f"{field_name}: {problem}")


@dataclass(frozen=True, slots=True)
class GenerationParams:
    """Decoding settings. temperature 0 means greedy (deterministic, what the parity check compares);
    a seed makes sampling repeatable; deadline_s bounds wall time (the answer so far comes back with
    finish_reason "deadline" instead of an error, because a partial draft is still useful)."""

    max_new_tokens: int = 64
    temperature: float = 0.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None
    deadline_s: float | None = None

    def __post_init__(self) -> None:
        if isinstance(self.max_new_tokens, bool) or not 1 <= self.max_new_tokens <= MAX_NEW_TOKENS:
            raise GenerationError("max_new_tokens", f"must be an integer in 1..{MAX_NEW_TOKENS}")
        if not 0.0 <= self.temperature <= 2.0:
            raise GenerationError("temperature", "must be in 0..2 (0 = greedy)")
        if not 0.0 < self.top_p <= 1.0:
            raise GenerationError("top_p", "must be in (0, 1]")
        if isinstance(self.stop, str):
            raise GenerationError("stop", "must be a list of strings, not one string")
        if len(self.stop) > MAX_STOP_SEQUENCES:
            raise GenerationError("stop", f"at most {MAX_STOP_SEQUENCES} sequences")
        for i, item in enumerate(self.stop):
            if not isinstance(item, str) or not 1 <= len(item) <= MAX_STOP_CHARS:
                raise GenerationError(f"stop.{i}", f"must be a string of 1..{MAX_STOP_CHARS} characters")
        if self.deadline_s is not None and not 0.0 < self.deadline_s <= 300.0:
            raise GenerationError("deadline_s", "must be in (0, 300] seconds")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


@dataclass(frozen=True, slots=True)
class Generation:
    """One answer. tokens_in/out are the generator's own token counts (what the audit record and the
    benchmark count); ttft_ms is the time to the first new token, total_ms the whole call."""

    text: str
    tokens_in: int
    tokens_out: int
    finish_reason: FinishReason
    ttft_ms: float
    total_ms: float
    token_ids: tuple[int, ...] = field(default=(), repr=False)


@runtime_checkable
class Generator(Protocol):
    """What every backend offers: the bundled model through ONNX Runtime GenAI or transformers, Bedrock."""

    @property
    def identity(self) -> ModelId: ...

    def generate(self, messages: Messages | str, params: GenerationParams | None = None) -> Generation: ...


def check_messages(messages: Messages | str) -> list[dict[str, str]]:
    """A plain string is one user turn. Raises GenerationError naming the bad message and field."""
    if isinstance(messages, str):
        messages = [{"role": "user", "content": messages}]
    if not messages:
        raise GenerationError("messages", "must hold at least one message")
    checked = []
    for i, message in enumerate(messages):
        role, content = message.get("role"), message.get("content")
        if role not in ROLES:
            raise GenerationError(f"messages.{i}.role", f"must be one of {', '.join(ROLES)}")
        if not isinstance(content, str) or not content.strip():
            raise GenerationError(f"messages.{i}.content", "must be a non-empty string")
        checked.append({"role": role, "content": content})
    if checked[-1]["role"] == "assistant":
        raise GenerationError(f"messages.{len(checked) - 1}.role", "the last message must not be the assistant's")
    return checked
