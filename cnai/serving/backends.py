"""Where a served model runs: in this process (LocalBackend, the Predictor with its cache) or on a SageMaker
Serverless endpoint (SageMakerBackend, for models too large for Lambda). Both answer in the wire schema and
name what they serve with one ModelId."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Protocol

from cnai.errors import CnaiError
from cnai.model.endpoint import EndpointError, invoke_json, runtime_client
from cnai.model.identity import ModelId
from cnai.model.predictor import Predictor
from cnai.serving.schema import ModelDetail, PredictionOut, PredictResponse, prediction_out


class BackendError(CnaiError):
    """A remote backend (SageMaker endpoint) failed or answered garbage (HTTP 502)."""


class Backend(Protocol):
    name: str
    kind: str

    @property
    def identity(self) -> ModelId:
        """Who answers: for a local model known at load; for a remote one asked once (detail())."""
        ...

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

    @property
    def identity(self) -> ModelId:
        return ModelId(self.name, self.predictor.version, self.package_version)

    def detail(self) -> ModelDetail:
        """Built once: the card of a loaded model does not change (and every predict asks for its version)."""
        if self._detail is None:
            self._detail = self._describe()
        return self._detail

    def _describe(self) -> ModelDetail:
        card, identity = self.predictor.card, self.identity
        return ModelDetail(
            name=identity.name,
            version=identity.version,
            package_version=identity.package_version,
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

    @property
    def identity(self) -> ModelId:
        """The endpoint's model under this deployment's route name (its describe answer, asked once)."""
        return self.detail().identity

    def _invoke(self, payload: dict[str, Any]) -> Any:
        if self.client is None:
            self.client = runtime_client()
        try:
            return invoke_json(self.client, self.endpoint, payload)
        except EndpointError as exc:
            raise BackendError(str(exc)) from exc

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
        self._follow(answer)
        return answer.predictions, 0

    def _follow(self, answer: PredictResponse) -> None:
        """The deploy workflow updates the endpoint under a warm container: when the model that answered is not
        the one described, describe again, so this response, its audit record and GET /v1/models name the model
        that actually answered (one extra call per switch, not per request)."""
        known = self.detail().identity
        if (answer.version, answer.package_version) != (known.version, known.package_version):
            with self._lock:
                self._detail = None
            self.detail()
