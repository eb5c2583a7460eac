"""The serving domain: the wire schema, the models a deployment serves, limits, and SageMaker routing.

Shared by the predict Lambda (functions/predict), `cnai serve` (which calls that same handler) and the
SageMaker Serverless container (cnai/serving/sagemaker.py), so every place answers with the same JSON.
HTTP concerns (status codes, content types, audit of the call) live in the handler; this module raises
domain errors that the handler maps to codes in one place.
"""

from __future__ import annotations

import base64
import json
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr, field_validator

from cnai.audit.trail import Auditor, AuditRecord, OutputRecord, digest_inputs, record_from_event
from cnai.errors import CnaiError
from cnai.model.predictor import Attribution, Prediction, Predictor

MAX_EXPLAIN_INPUTS = 16  # occlusion costs one forward pass per word: bound the work of one request


class UnknownModelError(CnaiError):
    """No served model has this name (HTTP 404)."""


class PayloadTooLargeError(CnaiError):
    """Too many inputs, or an input too long (HTTP 413). `field` names what to shrink."""

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        super().__init__(f"{field}: {problem}")


class BackendError(CnaiError):
    """A remote backend (SageMaker endpoint) failed or answered garbage (HTTP 502)."""


# ---- wire schema -----------------------------------------------------------------------------------


class PredictRequest(BaseModel):
    """Body of POST /v1/models/{model}/predict (and of a SageMaker invocation)."""

    model_config = ConfigDict(extra="forbid")

    inputs: StrictStr | list[StrictStr] = Field(description="one text, or a list of texts (limits: see 413)")
    top_k: int = Field(1, ge=1, le=100, strict=True, description="labels to return per input, best first")
    explain: StrictBool = Field(False, description="add per-word attributions (occlusion on the ONNX model)")

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
    model: str
    version: str
    package_version: str | None = None
    backend: str
    predictions: list[PredictionOut]
    request_id: str | None = None


class ModelSummary(BaseModel):
    name: str
    version: str
    package_version: str | None = None
    backend: str


class ModelsResponse(BaseModel):
    models: list[ModelSummary]


class ModelDetail(ModelSummary):
    labels: list[str]
    max_length: int | None = None
    abstain_threshold: float | None = None
    temperature: float | None = None
    created_at: str | None = None
    metrics: dict[str, Any] = Field(default_factory=dict)
    lineage: dict[str, Any] = Field(default_factory=dict)


class HealthResponse(BaseModel):
    status: str
    models: dict[str, str]
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


# ---- backends --------------------------------------------------------------------------------------


class Backend(Protocol):
    name: str
    kind: str

    def detail(self) -> ModelDetail: ...

    def predict(self, texts: list[str], top_k: int, explain: bool) -> tuple[list[PredictionOut], int]:
        """(predictions, cache hits)."""
        ...


@dataclass
class LocalBackend:
    """The model in this process: the Predictor with its cache."""

    predictor: Predictor
    name: str
    package_version: str | None = None
    kind: str = "local"
    _detail: ModelDetail | None = field(default=None, repr=False)

    def detail(self) -> ModelDetail:
        """Built once: the card of a loaded model does not change (and every predict asks for its version)."""
        if self._detail is None:
            self._detail = self._describe()
        return self._detail

    def _describe(self) -> ModelDetail:
        card = self.predictor.card
        return ModelDetail(
            name=self.name,
            version=card.version,
            package_version=self.package_version,
            backend=self.kind,
            labels=list(self.predictor.labels),
            max_length=card.max_length,
            abstain_threshold=card.abstain_threshold,
            temperature=card.temperature,
            created_at=card.created_at,
            metrics=card.metrics.get("test", card.metrics),
            lineage=card.lineage.model_dump(),
        )

    def predict(self, texts: list[str], top_k: int, explain: bool) -> tuple[list[PredictionOut], int]:
        predictions, hits = self.predictor.predict_with_stats(texts, top_k=top_k, explain=explain)
        return [prediction_out(p) for p in predictions], hits


@dataclass
class SageMakerBackend:
    """A model too large for Lambda, served by a SageMaker Serverless endpoint running cnai/serving/sagemaker.py.

    The endpoint speaks the same JSON; its model card comes from a {"describe": true} invocation, once.
    """

    name: str
    endpoint: str
    client: Any = None
    kind: str = "sagemaker"
    _detail: ModelDetail | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def _invoke(self, payload: dict[str, Any]) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        if self.client is None:
            import boto3

            self.client = boto3.client("sagemaker-runtime")
        try:
            response = self.client.invoke_endpoint(
                EndpointName=self.endpoint,
                ContentType="application/json",
                Accept="application/json",
                Body=json.dumps(payload).encode("utf-8"),
            )
            return json.loads(response["Body"].read())
        except (ClientError, BotoCoreError, ValueError, KeyError) as exc:
            raise BackendError(f"SageMaker endpoint {self.endpoint}: {type(exc).__name__}") from exc

    def detail(self) -> ModelDetail:
        with self._lock:
            if self._detail is None:
                data = self._invoke({"describe": True})
                try:
                    self._detail = ModelDetail.model_validate({**data, "name": self.name, "backend": self.kind})
                except ValueError as exc:
                    raise BackendError(f"SageMaker endpoint {self.endpoint}: bad describe answer") from exc
            return self._detail

    def predict(self, texts: list[str], top_k: int, explain: bool) -> tuple[list[PredictionOut], int]:
        data = self._invoke({"inputs": texts, "top_k": top_k, "explain": explain})
        try:
            answer = PredictResponse.model_validate(data)
        except ValueError as exc:
            raise BackendError(f"SageMaker endpoint {self.endpoint}: answer is not a PredictResponse") from exc
        if len(answer.predictions) != len(texts):
            raise BackendError(
                f"SageMaker endpoint {self.endpoint}: {len(answer.predictions)} answers for {len(texts)}"
            )
        return answer.predictions, 0


# ---- the service -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Limits:
    max_inputs: int = 64
    max_input_chars: int = 2000
    max_explain_inputs: int = MAX_EXPLAIN_INPUTS


@dataclass
class Outcome:
    """What one predict call did, for the response, the metrics and the audit record."""

    response: PredictResponse
    backend: Backend
    cache_hits: int


class ModelService:
    """The models one deployment serves, by the name routes use."""

    def __init__(self, backends: Mapping[str, Backend], limits: Limits | None = None) -> None:
        self.backends = dict(backends)
        self.limits = limits or Limits()

    def get(self, name: str) -> Backend:
        backend = self.backends.get(name)
        if backend is None:
            known = ", ".join(sorted(self.backends)) or "none"
            raise UnknownModelError(f"model {name[:100]!r} is not served here (served: {known})")
        return backend

    def check(self, texts: Sequence[str], explain: bool) -> None:
        """413s: the caller must split the request or shorten the text."""
        limits = self.limits
        if len(texts) > limits.max_inputs:
            raise PayloadTooLargeError("inputs", f"{len(texts)} texts, at most {limits.max_inputs} per request")
        if explain and len(texts) > limits.max_explain_inputs:
            raise PayloadTooLargeError(
                "explain", f"explanations for {len(texts)} texts, at most {limits.max_explain_inputs} per request"
            )
        for i, text in enumerate(texts):
            if len(text) > limits.max_input_chars:
                raise PayloadTooLargeError(f"inputs[{i}]", f"{len(text)} characters, at most {limits.max_input_chars}")

    def predict(self, name: str, request: PredictRequest, request_id: str | None = None) -> Outcome:
        backend = self.get(name)
        texts = request.texts
        self.check(texts, request.explain)
        predictions, hits = backend.predict(texts, request.top_k, request.explain)
        detail = backend.detail()
        response = PredictResponse(
            model=name,
            version=detail.version,
            package_version=detail.package_version,
            backend=backend.kind,
            predictions=predictions,
            request_id=request_id,
        )
        return Outcome(response, backend, hits)

    def summaries(self) -> list[ModelSummary]:
        result = []
        for name in sorted(self.backends):
            detail = self.backends[name].detail()
            result.append(
                ModelSummary(
                    name=name, version=detail.version, package_version=detail.package_version, backend=detail.backend
                )
            )
        return result


# `curl -d` sends application/x-www-form-urlencoded unless told otherwise; this API only speaks JSON, so such
# a body is read as JSON (a real form body then fails as invalid JSON, with a 400 that says so).
CURL_DEFAULT = "application/x-www-form-urlencoded"


def body_is_json(content_type: str | None) -> bool:
    """Whether a request body declared with this Content-Type is read as JSON (else: 415)."""
    media = (content_type or "").split(";")[0].strip().lower()
    return (
        not media
        or media in ("application/json", CURL_DEFAULT)
        or (media.startswith("application/") and media.endswith("+json"))
    )


def texts_from_event(event: Mapping[str, Any], limit: int = 1024) -> list[str]:
    """Best effort, for the audit record of a refused call: the strings the caller sent as `inputs`."""
    body = event.get("body")
    try:
        if event.get("isBase64Encoded") and isinstance(body, str):
            body = base64.b64decode(body).decode("utf-8")
        data = json.loads(body) if isinstance(body, str) else None
    except (ValueError, TypeError, RecursionError):
        return []
    inputs = data.get("inputs") if isinstance(data, dict) else None
    if isinstance(inputs, str):
        return [inputs]
    if isinstance(inputs, list):
        return [x for x in inputs if isinstance(x, str)][:limit]
    return []


PREDICT_PATH = re.compile(r"^/v1/models/(?P<model>[^/]+)/predict/?$")


def call_record(
    event: Mapping[str, Any],
    *,
    service: ModelService,
    auditor: Auditor,
    outcome: Outcome | None,
    model: str | None,
    texts: list[str] | None,
    status: int,
    error: str | None,
    request_id: str,
    latency_ms: float,
) -> AuditRecord:
    """The one audit record of a predict call, answered or refused: identity from the event, input hashes
    (text only where the deployment opted in, redacted), outputs of a 200, and the model version that
    answered or, for a refused call, the version that would have answered."""
    texts = texts or texts_from_event(event)
    match = PREDICT_PATH.match(str(event.get("path", "")))
    model = model or (match.group("model") if match else None)
    version = package = backend = None
    if outcome is not None:
        version, package, backend = outcome.response.version, outcome.response.package_version, outcome.backend.kind
    else:
        local = service.backends.get(model or "")
        if isinstance(local, LocalBackend):
            version, package, backend = local.predictor.version, local.package_version, local.kind
    outputs = (
        None
        if outcome is None
        else [OutputRecord(label=p.label, score=p.score, reason=p.reason) for p in outcome.response.predictions]
    )
    return record_from_event(
        dict(event),
        request_id=request_id,
        status=status,
        latency_ms=latency_ms,
        model=model,
        model_version=version,
        package_version=package,
        backend=backend,
        inputs=digest_inputs(texts),
        texts=auditor.texts_for_record(texts) if texts else None,
        outputs=outputs,
        error=error,
    )
