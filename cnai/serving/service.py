"""The serving domain: the models a deployment serves (by the name routes use), the limits of one request,
and what one predict call did.

Shared by the REST API (cnai.serving.api: the predict Lambda and `cnai serve`) and the SageMaker Serverless
container (cnai.serving.sagemaker). HTTP concerns (status codes, content types, the audit of a call) live in
the API; this module raises domain errors that the API maps to codes in one place.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from cnai.errors import CnaiError
from cnai.model.identity import ModelId
from cnai.model.predictor import explain_words
from cnai.serving.backends import Backend, LocalBackend
from cnai.serving.schema import ModelSummary, PredictRequest, PredictResponse
from cnai.text import normalize_text

# Occlusion costs one forward pass per word (16 texts of 2,000 characters took 134x the plain request): with these
# bounds one request runs at most 4 x (64 + 1) texts, about 2x a full plain request of 64 (docs/serving.md).
MAX_EXPLAIN_INPUTS = 4
MAX_EXPLAIN_WORDS = 64


class UnknownModelError(CnaiError):
    """No served model has this name (HTTP 404)."""


class PayloadTooLargeError(CnaiError):
    """Too many inputs, or an input too long (HTTP 413). `field` names what to shrink."""

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        super().__init__(f"{field}: {problem}")


@dataclass(frozen=True)
class Limits:
    max_inputs: int = 64
    max_input_chars: int = 2000
    max_explain_inputs: int = MAX_EXPLAIN_INPUTS
    max_explain_words: int = MAX_EXPLAIN_WORDS  # per explained text, counted by cnai.model.predictor.explain_words


@dataclass
class Outcome:
    """What one predict call did, for the response, the metrics and the audit record."""

    response: PredictResponse
    backend: Backend
    cache_hits: int

    @property
    def identity(self) -> ModelId:
        return self.response.identity


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
        if explain:
            for i, text in enumerate(texts):
                words = len(explain_words(normalize_text(text)))
                if words > limits.max_explain_words:
                    raise PayloadTooLargeError(
                        f"inputs[{i}]",
                        f"{words} words to explain, at most {limits.max_explain_words} per text with explain=true"
                        " (shorten it, or ask without explain)",
                    )

    def predict(self, name: str, request: PredictRequest, request_id: str | None = None) -> Outcome:
        backend = self.get(name)
        texts = request.texts
        self.check(texts, request.explain)
        predictions, hits = backend.predict(texts, request.top_k, request.explain)
        identity = backend.identity
        response = PredictResponse(
            model=name,
            version=identity.version,
            package_version=identity.package_version,
            backend=backend.kind,
            predictions=predictions,
            request_id=request_id,
        )
        return Outcome(response, backend, hits)

    def summaries(self) -> list[ModelSummary]:
        return [ModelSummary.of(self.backends[name].identity.renamed(name), self.backends[name].kind)
                for name in sorted(self.backends)]  # fmt: skip

    def identity_of(self, name: str | None) -> ModelId | None:
        """The model that answers (or would have answered) `name`, without a remote call: for the audit
        record of a refused call. None for an unknown name or a remote model not yet described."""
        backend = self.backends.get(name or "")
        if backend is None:
            return None
        return backend.identity if isinstance(backend, LocalBackend) else None
