"""A generator served by a SageMaker Serverless endpoint (`load_generator("sagemaker:<endpoint>")`): the predict
Lambda's way to the exported generator when the model and onnxruntime-genai stay out of its package
(docs/generate.md, "Which route serves generation in AWS").

The endpoint runs cnai.serving.sagemaker on a generator package and speaks cnai.generate.wire: the request is
the API's own GenerateRequest (the checked messages, the params, the deadline in ms), the answer a
GenerateResponse. Its identity comes from a {"describe": true} invocation, asked once, and follows the model
that actually answered (an endpoint updated under a warm container names its new version from the next
answer on). Failures (the endpoint refuses, times out, answers garbage) raise SageMakerGeneratorError, a
GeneratorUnavailableError: 502 at the API, like a failed classifier endpoint. A request the endpoint refuses
as the API would (a prompt beyond the model's context) comes back as the same GenerationError: 400.

The client is created on first use (no AWS call at import or construction) and can be passed in (tests use
botocore's Stubber).
"""

from __future__ import annotations

import threading
from typing import Any

from pydantic import ValidationError

from cnai.generate.params import (
    Generation,
    GenerationError,
    GenerationParams,
    GeneratorUnavailableError,
    Messages,
    check_messages,
)
from cnai.generate.wire import GenerateRefusal, GenerateRequest, GenerateResponse, GeneratorDetail
from cnai.model.endpoint import EndpointError, invoke_json, runtime_client
from cnai.model.identity import ModelId

PREFIX = "sagemaker:"
REFUSED = "refused"  # the key of the endpoint's GenerateRefusal answer


class SageMakerGeneratorError(GeneratorUnavailableError):
    """The endpoint failed or answered something that is not a generation."""


class SageMakerGenerator:
    def __init__(self, endpoint: str, client: Any = None) -> None:
        if not endpoint:
            raise SageMakerGeneratorError(f"{PREFIX} an endpoint name is required ({PREFIX}<endpoint name>)")
        self.endpoint = endpoint
        self._client = client
        self._identity: ModelId | None = None
        self._lock = threading.Lock()

    @property
    def identity(self) -> ModelId:
        """The endpoint's generator (its describe answer, asked once). Raises SageMakerGeneratorError."""
        with self._lock:
            if self._identity is None:
                data = self._invoke({"describe": True})
                try:
                    self._identity = GeneratorDetail.model_validate(data).identity
                except ValidationError:
                    raise SageMakerGeneratorError(
                        f"SageMaker endpoint {self.endpoint}: the describe answer is not a generator's"
                    ) from None
            return self._identity

    def generate(self, messages: Messages | str, params: GenerationParams | None = None) -> Generation:
        params = params or GenerationParams()
        request = GenerateRequest.of(check_messages(messages), params)
        data = self._invoke(request.model_dump(mode="json", exclude_none=True))
        if isinstance(data, dict) and REFUSED in data:
            try:
                refusal = GenerateRefusal.model_validate(data[REFUSED])
            except ValidationError:
                raise SageMakerGeneratorError(f"SageMaker endpoint {self.endpoint}: a malformed refusal") from None
            raise GenerationError(refusal.field, refusal.problem)
        try:
            answer = GenerateResponse.model_validate(data)
        except ValidationError:
            raise SageMakerGeneratorError(
                f"SageMaker endpoint {self.endpoint}: the answer is not a GenerateResponse"
            ) from None
        with self._lock:
            self._identity = answer.identity  # the model that answered, even when the endpoint was just updated
        return answer.generation()

    def _invoke(self, payload: dict[str, Any]) -> Any:
        if self._client is None:
            self._client = runtime_client()
        try:
            return invoke_json(self._client, self.endpoint, payload)
        except EndpointError as exc:
            raise SageMakerGeneratorError(str(exc)) from None
