"""SageMaker Serverless Inference: the four hooks of the SageMaker inference toolkit, on the same Predictor, or
on the same generator.

For models too large for Lambda. `model_fn` tells the two artifacts apart by their files:

- a classifier (model.onnx, labels.json, model_card.json): the endpoint speaks the predict API's JSON
  (cnai.serving.schema.PredictRequest in, PredictResponse out) plus {"describe": true} for the model card
  summary, so the predict Lambda can route a model to the endpoint by configuration (CNAI_SAGEMAKER_ENDPOINTS)
  and answer exactly as for a local one;
- a generator (genai_config.json + model_card.json, cnai.generate.artifact), loaded and verified against its
  card by cnai.generate.load_generator: the endpoint speaks the generate route's JSON (cnai.generate.wire:
  GenerateRequest in, GenerateResponse out, bounded by cnai.serving.generation as the route is) plus
  {"describe": true} (a GeneratorDetail), so the predict Lambda serves POST /v1/models/{model}/generate through
  it with CNAI_GENERATOR_URI=sagemaker:<endpoint> (cnai.generate.sagemaker). A request refused as the API would
  refuse it (a GenerationError) is answered {"refused": {"field", "problem"}}, which the Lambda turns back into
  the same 400.

The Lambda writes the audit record for routed calls; the endpoint itself is reachable only with IAM.

`package_model` / `package_generator` build the model.tar.gz the SageMaker Model points at: the artifact files
at the root (verified on load) and code/ with inference.py, the whole cnai package and requirements.txt
(onnxruntime, tokenizers, numpy, pydantic; onnxruntime-genai for a generator; no torch, no Powertools).
"""

from __future__ import annotations

import json
import os
import shutil
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnai.errors import CnaiError
from cnai.generate import Generation, GenerationError, GenerationParams, Generator, Messages, load_generator
from cnai.generate.artifact import read_generator_card
from cnai.generate.onnx import GENAI_CONFIG
from cnai.generate.params import MAX_NEW_TOKENS
from cnai.generate.wire import GenerateRequest, GenerateResponse, GeneratorDetail
from cnai.model.artifact import CARD_FILE, PAYLOAD_FILES, load_artifact
from cnai.model.identity import ModelId
from cnai.model.predictor import Predictor
from cnai.serving.backends import LocalBackend
from cnai.serving.generation import GenerateLimits, GenerateService
from cnai.serving.schema import PredictRequest
from cnai.serving.service import ModelService, PayloadTooLargeError
from cnai.settings import ModelSource, variable

JSON = "application/json"
# code/inference.py: the inference toolkit imports the four hooks from here (the library, shipped whole).
ENTRY = (
    '"""SageMaker inference toolkit entry point."""\n\n'
    "from cnai.serving.sagemaker import input_fn, model_fn, output_fn, predict_fn\n\n"
    '__all__ = ["input_fn", "model_fn", "output_fn", "predict_fn"]\n'
)
REQUIREMENTS = "onnxruntime>=1.20,<2\ntokenizers>=0.21,<1\nnumpy>=2.0,<3\npydantic>=2.7,<3\n"
# The generator's runtime, pinned as pyproject's `generate` extra pins it (a test keeps the two equal).
GENERATOR_REQUIREMENTS = REQUIREMENTS + "onnxruntime-genai>=0.18,<0.19\n"
# The endpoint's own bounds. The Lambda in front applies the deployment's tighter ones first; these only keep
# a call inside SageMaker Serverless's 60 s invocation limit and the generator's own token cap.
ENDPOINT_LIMITS = GenerateLimits(
    max_prompt_chars=100_000, max_messages=256, max_new_tokens=MAX_NEW_TOKENS, deadline_s=55.0
)
REFUSED = "refused"  # cnai.generate.sagemaker reads this key back


class InferenceError(CnaiError):
    """A request the endpoint cannot serve; the message names the problem (never internals)."""


@dataclass(frozen=True)
class ServedGenerator:
    """The container's generator under the identity the deployment gave it (route name, registry version)."""

    generator: Generator
    identity: ModelId

    def generate(self, messages: Messages | str, params: GenerationParams | None = None) -> Generation:
        return self.generator.generate(messages, params)


@dataclass(frozen=True)
class GeneratorEndpoint:
    """What model_fn returns for a generator artifact: the bounded service and the card's summary."""

    service: GenerateService
    detail: GeneratorDetail


def model_fn(model_dir: str) -> ModelService | GeneratorEndpoint:
    """Load and verify the artifact once per container (sha256 of every file against the model card).

    A folder with genai_config.json is a generator, anything else a classifier. The route name and the registry
    version come from the Model's environment when the deploy workflow pinned them there (CNAI_MODEL_NAME,
    CNAI_MODEL_PACKAGE_VERSION; else the card's name, no registry version): they are every answer's identity,
    which is how the workflow's health check knows the new model answers (cnai.deploy.endpoint.probe)."""
    name = os.environ.get(variable(ModelSource, "model_name")) or None
    package_version = os.environ.get(variable(ModelSource, "model_package_version")) or None
    if (Path(model_dir) / GENAI_CONFIG).is_file():
        return _generator_endpoint(Path(model_dir), name, package_version)
    predictor = Predictor.from_dir(model_dir)
    name = name or predictor.name
    return ModelService({name: LocalBackend(predictor, name, package_version)})


def _generator_endpoint(model_dir: Path, name: str | None, package_version: str | None) -> GeneratorEndpoint:
    generator = load_generator(f"onnx:{model_dir}")  # verifies every file against the card before loading
    card = read_generator_card(model_dir, verify=False)  # verified just now
    identity = ModelId(name or card.name, card.version, package_version)
    detail = GeneratorDetail.of(identity, card)  # the one card summary (GET /v1/models/{generator} gives the same)
    return GeneratorEndpoint(GenerateService(ServedGenerator(generator, identity), ENDPOINT_LIMITS), detail)


def input_fn(request_body: bytes | str, request_content_type: str) -> dict[str, Any]:
    content_type = (request_content_type or JSON).split(";")[0].strip().lower()
    if content_type != JSON:
        raise InferenceError(f"content type {content_type!r} is not supported; send {JSON}")
    try:
        data = json.loads(request_body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InferenceError(f"body is not valid JSON ({exc})") from None
    except RecursionError:
        raise InferenceError("body is JSON nested too deeply") from None
    if not isinstance(data, dict):
        raise InferenceError("body must be a JSON object")
    return data


def predict_fn(data: dict[str, Any], service: ModelService | GeneratorEndpoint) -> dict[str, Any]:
    if isinstance(service, GeneratorEndpoint):
        return _generate(data, service)
    (name,) = service.backends
    if data.get("describe") is True:
        return service.get(name).detail().model_dump(mode="json")
    try:
        request = PredictRequest.model_validate(data)
    except ValueError as exc:
        raise InferenceError(f"invalid request: {exc}") from None
    return service.predict(name, request).response.model_dump(mode="json")


def _generate(data: dict[str, Any], endpoint: GeneratorEndpoint) -> dict[str, Any]:
    """The generate route's request, validated and bounded the route's way, answered in its response shape."""
    if data.get("describe") is True:
        return endpoint.detail.model_dump(mode="json")
    try:
        request = GenerateRequest.model_validate(data)
    except ValueError as exc:
        raise InferenceError(f"invalid request: {exc}") from None
    service = endpoint.service
    try:
        result = service.generate(service.identity.name, request)
    except GenerationError as exc:
        return {REFUSED: {"field": exc.field, "problem": exc.problem}}
    except PayloadTooLargeError as exc:
        return {REFUSED: {"field": exc.field, "problem": str(exc)}}
    return GenerateResponse.of(service.identity, result).model_dump(mode="json")


def output_fn(prediction: dict[str, Any], accept: str) -> tuple[str, str]:
    wanted = (accept or JSON).split(";")[0].strip().lower()
    if wanted not in (JSON, "*/*"):
        raise InferenceError(f"accept {wanted!r} is not supported; ask for {JSON}")
    return json.dumps(prediction), JSON


def package_model(artifact_dir: str | Path, tar_path: str | Path) -> Path:
    """model.tar.gz for a SageMaker Model: artifact at the root, inference code under code/."""
    artifact = load_artifact(artifact_dir)  # refuse to package a corrupt artifact
    files = [artifact.directory / name for name in (*PAYLOAD_FILES, CARD_FILE)]
    return _package(files, REQUIREMENTS, Path(tar_path))


def package_generator(artifact_dir: str | Path, tar_path: str | Path) -> Path:
    """model.tar.gz for a SageMaker Model serving a generator: every file of the generator artifact at the root
    (the card last, as it was written), the same code/ as a classifier's with onnxruntime-genai added to its
    requirements. cnai.generate.artifact.unpack_generator (an `s3://` generator URI) skips code/, so the same
    object serves the endpoint and any process that loads the generator from S3."""
    root = Path(artifact_dir)
    card = read_generator_card(root)  # refuse to package a corrupt or unfinished artifact
    files = [root / name for name in sorted(card.files)] + [root / CARD_FILE]
    return _package(files, GENERATOR_REQUIREMENTS, Path(tar_path))


def _package(files: list[Path], requirements: str, tar_path: Path) -> Path:
    package = Path(__file__).resolve().parents[1]  # the whole cnai package ships: folders, never file lists
    tar_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        code = Path(tmp) / "code"
        shutil.copytree(package, code / "cnai", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        (code / "inference.py").write_text(ENTRY, encoding="utf-8")
        (code / "requirements.txt").write_text(requirements, encoding="utf-8")
        with tarfile.open(tar_path, "w:gz") as tar:
            for path in files:
                tar.add(path, arcname=path.name)
            tar.add(code, arcname="code")
    return tar_path
