"""The predict API's wire schema: request and response bodies, shared by the REST API (Lambda and `cnai serve`),
the SageMaker Serverless endpoint and the backend that calls it, so every place answers with the same JSON.

The model's identity is one `ModelId` (cnai.model.identity); on the wire it stays the flat `model` / `name`,
`version`, `package_version` fields clients already read, and `.identity` gives it back as one object.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr, field_validator

from cnai.model.identity import ModelId
from cnai.model.predictor import Attribution, Prediction

if TYPE_CHECKING:
    from cnai.generate.wire import GeneratorDetail


class PredictRequest(BaseModel):
    """Body of POST /v1/models/{model}/predict (and of a SageMaker invocation)."""

    model_config = ConfigDict(extra="forbid")

    inputs: StrictStr | Annotated[list[StrictStr], Field(min_length=1)] = Field(
        description="one text, or a non-empty list of texts (limits: see 413)"
    )
    top_k: int = Field(1, ge=1, le=100, strict=True, description="labels to return per input, best first")
    explain: StrictBool = Field(
        False,
        description="add per-word attributions (occlusion on the ONNX model). Costs one forward pass per word,"
        " so it is bounded per request (413 beyond): at most CNAI_MAX_EXPLAIN_INPUTS texts (4) and"
        " CNAI_MAX_EXPLAIN_WORDS words per text (64)",
    )

    draft_reply: StrictBool = Field(
        False,
        description="also draft a first reply to each input, conditioned on its predicted intent (needs a generator"
        " served beside the model, 400 otherwise; at most 4 inputs, 413 beyond)",
    )

    @field_validator("inputs", mode="before")
    @classmethod
    def _strings(cls, value: Any) -> Any:
        """One clear message instead of pydantic's per-union-member errors."""
        if isinstance(value, str):
            _check_unicode(value, "the text")
            return value
        if not isinstance(value, list):
            raise ValueError("must be a string or a list of strings")
        if not value:
            raise ValueError("the list is empty; send at least one text")
        for i, item in enumerate(value):
            if not isinstance(item, str):
                raise ValueError(f"item {i} is {type(item).__name__}, not a string")
            _check_unicode(item, f"item {i}")
        return value

    @field_validator("top_k", mode="before")
    @classmethod
    def _integral(cls, value: Any) -> Any:
        """JSON has one number type: 38.0 is the integer 38 (JSON Schema's `integer` says so too, and clients
        that serialize every number as a float send it). Other floats, strings and booleans stay refused."""
        if isinstance(value, float) and value.is_integer():
            return int(value)
        return value

    @property
    def texts(self) -> list[str]:
        return [self.inputs] if isinstance(self.inputs, str) else list(self.inputs)


def _check_unicode(text: str, what: str) -> None:
    """JSON escapes can carry unpaired surrogates (\\ud800), which are not text: refuse them as a 400 here
    rather than let the tokenizer fail on them as a 500."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"{what} has an unpaired surrogate at character {exc.start} (not valid Unicode)") from None


class ErrorField(BaseModel):
    field: str = Field(description="the part of the request to fix: `body`, `inputs`, `inputs[2]`, `top_k` ...")
    message: str


class ErrorDetail(BaseModel):
    code: str = Field(
        description="invalid_request, unknown_model, not_found, method_not_allowed, request_timeout, too_large,"
        " unsupported_media_type, internal, backend_unavailable, audit_unavailable"
    )
    message: str
    fields: list[ErrorField] = Field(default_factory=list, description="absent when no single field is at fault")


class ErrorResponse(BaseModel):
    """Every error of the API (cnai.errors.error_body builds it); documented so clients can rely on it."""

    error: ErrorDetail
    request_id: str | None = Field(description="quote it when asking about a call (API Gateway's request id)")


class LabelScore(BaseModel):
    label: str
    score: float


class TokenAttribution(BaseModel):
    token: str
    start: int
    end: int
    attribution: float


class Explanation(BaseModel):
    label: str
    method: str = "occlusion"
    tokens: list[TokenAttribution]


class PredictionOut(BaseModel):
    label: str | None = Field(description="null when the model abstains (route to a human); see reason")
    score: float = Field(description="calibrated probability of the top label")
    top_k: list[LabelScore]
    reason: str | None = None
    explanation: Explanation | None = None


class PredictResponse(BaseModel):
    model: str = Field(description="the model's name (the route's {model})")
    version: str = Field(description="the artifact's version (its model card's)")
    package_version: str | None = Field(None, description="the model registry's package version, once registered")
    backend: str
    predictions: list[PredictionOut]
    request_id: str | None = None
    drafts: list[str] | None = Field(None, description="with draft_reply: one drafted reply per input, in order")

    @property
    def identity(self) -> ModelId:
        return ModelId(self.model, self.version, self.package_version)


ModelTask = Literal["text-classification", "text-generation"]
CLASSIFICATION: ModelTask = "text-classification"
GENERATION: ModelTask = "text-generation"


class ModelSummary(BaseModel):
    name: str
    version: str
    package_version: str | None = None
    backend: str
    task: ModelTask = Field(
        CLASSIFICATION,
        description="what the model does, so a client knows its route: text-classification answers"
        " POST /v1/models/{name}/predict, text-generation (the served generator) POST /v1/models/{name}/generate",
    )

    @property
    def identity(self) -> ModelId:
        return ModelId(self.name, self.version, self.package_version)

    @classmethod
    def of(cls, identity: ModelId, backend: str, task: ModelTask = CLASSIFICATION) -> ModelSummary:
        return cls(
            name=identity.name,
            version=identity.version,
            package_version=identity.package_version,
            backend=backend,
            task=task,
        )


class ModelsResponse(BaseModel):
    models: list[ModelSummary]


class RoutedVersion(BaseModel):
    """One function version an alias routes to, and the model it pins."""

    function_version: str = Field(description="the Lambda function version (immutable: it pins one artifact)")
    version: str | None = Field(
        None,
        description="the artifact's version (its model card's); null when this server did not load that version"
        " (the predict Lambda loads only its own)",
    )
    package_version: str | None = Field(None, description="the model registry's package version it pins")
    weight: float = Field(description="its share of the alias's requests, 0 to 1")


class AliasRouting(BaseModel):
    """Where a served name's traffic goes: the Lambda alias `cnai serve --follow` follows, or the predict
    Lambda's own alias (a canary shows as a second version with its weight)."""

    function: str
    alias: str
    stable: RoutedVersion
    canary: RoutedVersion | None = Field(None, description="the version under canary, absent at 100%")
    since: str = Field(
        description="when this server first saw the alias route this way (UTC, ISO 8601): GetAlias carries no"
        " timestamp, so this is the switch as served here, at most one poll interval late"
    )


class RegistryEntry(BaseModel):
    """The model package version that serves, as the registry records it (read on GET, cached a minute)."""

    group: str = Field(description="the model package group")
    version: str = Field(description="the package version")
    approval: Literal["Approved", "Rejected", "PendingManualApproval"]
    approval_description: str | None = Field(None, description="the reason given with the last approval change")
    registered_at: str | None = Field(None, description="when the version was registered (UTC, ISO 8601)")


class ModelDetail(ModelSummary):
    labels: list[str] = Field(description="the classifier's labels; empty for a generator")
    max_length: int | None = None
    abstain_threshold: float | None = None
    temperature: float | None = None
    created_at: str | None = None
    metrics: dict[str, Any] = Field(default_factory=dict)
    lineage: dict[str, Any] = Field(default_factory=dict)
    routing: AliasRouting | None = Field(
        None, description="the alias's versions and weights when served through a Lambda alias; else null"
    )
    routing_error: str | None = Field(None, description="why the alias's routing could not be read, if so")
    registry: RegistryEntry | None = Field(
        None, description="the model registry's record of the package version served; null when it has none"
    )
    registry_error: str | None = Field(None, description="why the registry could not be read, if so")
    precision: str | None = Field(None, description="a generator's weights (int4, int8, fp32); null otherwise")
    context_length: int | None = Field(None, description="a generator's context window in tokens; null otherwise")
    parity: dict[str, Any] = Field(
        default_factory=dict,
        description="what a generator's export was checked against (greedy fp32 ONNX vs PyTorch, token for token)",
    )


def generator_detail(summary: GeneratorDetail, backend: str) -> ModelDetail:
    """GET /v1/models/{generator}: the served generator's summary (cnai.generate.wire.GeneratorDetail: identity
    and, when it was loaded from an artifact, its card's perplexity, parity and lineage) as a ModelDetail."""
    fields = summary.model_dump(exclude={"task"})
    return ModelDetail.model_validate({**fields, "backend": backend, "task": GENERATION, "labels": []})


class HealthResponse(BaseModel):
    status: str
    models: dict[str, str] = Field(description="served name -> version (or the remote backend's kind)")
    cache: dict[str, float] = Field(default_factory=dict)


def prediction_out(prediction: Prediction) -> PredictionOut:
    explanation = None
    raw = prediction.extra.get("explanation")
    if isinstance(raw, dict):
        tokens = [
            TokenAttribution(token=t.token, start=t.start, end=t.end, attribution=t.attribution)
            for t in raw.get("tokens", [])
            if isinstance(t, Attribution)
        ]
        explanation = Explanation(label=str(raw.get("label")), tokens=tokens)
    return PredictionOut(
        label=prediction.label,
        score=round(prediction.score, 6),
        top_k=[LabelScore(label=label, score=round(p, 6)) for label, p in prediction.top_k],
        reason=prediction.reason,
        explanation=explanation,
    )
