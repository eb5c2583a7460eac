"""The generate call on the wire: the JSON body of POST /v1/models/{model}/generate and its answer, which the
SageMaker Serverless container (cnai.serving.sagemaker) speaks too, so the predict Lambda can hand a generate
call to that endpoint (cnai.generate.sagemaker) in the very shape it received it.

One definition for both sides: the API validates a caller's body with GenerateRequest, the endpoint validates
the Lambda's with the same model, and the Lambda reads the endpoint's answer back with GenerateResponse.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictStr, model_validator

from cnai.generate.params import Generation, GenerationParams, Messages
from cnai.model.identity import ModelId

if TYPE_CHECKING:
    from cnai.generate.artifact import GeneratorCard

DEFAULT_NEW_TOKENS = 64
MAX_SEED = 2**31 - 1


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
    seed: int | None = Field(None, ge=0, le=MAX_SEED, strict=True)
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

    @classmethod
    def of(cls, messages: Messages, params: GenerationParams) -> GenerateRequest:
        """The request that asks a remote generator for exactly `params` on these (checked) messages."""
        deadline_ms = None if params.deadline_s is None else max(1, int(params.deadline_s * 1000))
        return cls.model_validate(
            {
                "messages": [{"role": m["role"], "content": m["content"]} for m in messages],
                "max_new_tokens": params.max_new_tokens,
                "temperature": params.temperature,
                "top_p": params.top_p,
                "stop": list(params.stop),
                "seed": params.seed,
                "deadline_ms": deadline_ms,
            }
        )


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

    @classmethod
    def of(cls, identity: ModelId, result: Generation) -> GenerateResponse:
        return cls(
            model=identity.name,
            version=identity.version,
            package_version=identity.package_version,
            text=result.text,
            finish_reason=result.finish_reason,
            usage=Usage(tokens_in=result.tokens_in, tokens_out=result.tokens_out),
            timing=Timing(ttft_ms=round(result.ttft_ms, 2), total_ms=round(result.total_ms, 2)),
        )

    @property
    def identity(self) -> ModelId:
        return ModelId(self.model, self.version, self.package_version)

    def generation(self) -> Generation:
        return Generation(
            self.text,
            self.usage.tokens_in,
            self.usage.tokens_out,
            self.finish_reason,
            self.timing.ttft_ms,
            self.timing.total_ms,
        )


class GeneratorDetail(BaseModel):
    """A generator's identity and card summary: the SageMaker container's answer to {"describe": true}."""

    name: str
    version: str
    package_version: str | None = None
    task: str = "text-generation"
    precision: str | None = None
    context_length: int | None = None
    created_at: str | None = None
    metrics: dict[str, Any] = Field(default_factory=dict)
    lineage: dict[str, Any] = Field(default_factory=dict)
    parity: dict[str, Any] = Field(default_factory=dict)  # the export's check: greedy fp32 ONNX vs PyTorch

    @property
    def identity(self) -> ModelId:
        return ModelId(self.name, self.version, self.package_version)

    @classmethod
    def of(cls, identity: ModelId, card: GeneratorCard | None = None) -> GeneratorDetail:
        """The summary of a generator served as `identity`: its card's figures when it was loaded from an
        artifact, its identity alone otherwise (Bedrock, transformers)."""
        detail = cls(name=identity.name, version=identity.version, package_version=identity.package_version)
        if card is None:
            return detail
        return detail.model_copy(
            update={
                "task": card.task,
                "precision": card.precision,
                "context_length": card.context_length,
                "created_at": card.created_at,
                "metrics": dict(card.metrics),
                "lineage": card.lineage.model_dump(),
                "parity": dict(card.parity),
            }
        )


class GenerateRefusal(BaseModel):
    """The endpoint's answer to a request it refuses as the API would (a GenerationError): the field and the
    problem, so the Lambda answers the caller 400 naming them instead of a 502."""

    field: str
    problem: str
