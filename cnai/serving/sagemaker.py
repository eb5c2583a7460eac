"""SageMaker Serverless Inference: the four hooks of the SageMaker inference toolkit, on the same Predictor.

For models too large for Lambda. The endpoint speaks the predict API's JSON (cnai.serving.service.PredictRequest in,
PredictResponse out) plus {"describe": true} for the model card summary, so the predict Lambda can route
a model to the endpoint by configuration (CNAI_SAGEMAKER_ENDPOINTS) and answer exactly as for a local one.
The Lambda writes the audit record for routed calls; the endpoint itself is reachable only with IAM.

`package_model` builds the model.tar.gz the SageMaker Model points at: the artifact files at the root
(verified by the predictor on load) and code/ with inference.py, the cnai modules it needs and
requirements.txt (onnxruntime, tokenizers, numpy, pydantic; no torch).
"""

from __future__ import annotations

import json
import os
import shutil
import tarfile
import tempfile
from pathlib import Path
from typing import Any

from cnai.errors import CnaiError
from cnai.model.artifact import CARD_FILE, PAYLOAD_FILES, load_artifact
from cnai.model.predictor import Predictor
from cnai.serving.backends import LocalBackend
from cnai.serving.schema import PredictRequest
from cnai.serving.service import ModelService
from cnai.settings import ModelSource

JSON = "application/json"
# code/inference.py: the inference toolkit imports the four hooks from here (the library, shipped whole).
ENTRY = (
    '"""SageMaker inference toolkit entry point."""\n\n'
    "from cnai.serving.sagemaker import input_fn, model_fn, output_fn, predict_fn\n\n"
    '__all__ = ["input_fn", "model_fn", "output_fn", "predict_fn"]\n'
)
REQUIREMENTS = "onnxruntime>=1.20,<2\ntokenizers>=0.21,<1\nnumpy>=2.0,<3\npydantic>=2.7,<3\n"


class InferenceError(CnaiError):
    """A request the endpoint cannot serve; the message names the problem (never internals)."""


def model_fn(model_dir: str) -> ModelService:
    """Load and verify the artifact once per container (sha256 of every file against the model card).

    The route name and the registry version come from the Model's environment when the deploy workflow pinned
    them there (CNAI_MODEL_NAME, CNAI_MODEL_PACKAGE_VERSION; else the card's name, no registry version): they are
    every answer's identity, which is how the workflow's health check knows the new model answers
    (cnai.deploy.endpoint.probe)."""
    predictor = Predictor.from_dir(model_dir)
    fields = ModelSource.model_fields
    name = os.environ.get(fields["model_name"].alias or "") or predictor.name
    package_version = os.environ.get(fields["model_package_version"].alias or "") or None
    return ModelService({name: LocalBackend(predictor, name, package_version)})


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


def predict_fn(data: dict[str, Any], service: ModelService) -> dict[str, Any]:
    (name,) = service.backends
    if data.get("describe") is True:
        return service.get(name).detail().model_dump(mode="json")
    try:
        request = PredictRequest.model_validate(data)
    except ValueError as exc:
        raise InferenceError(f"invalid request: {exc}") from None
    return service.predict(name, request).response.model_dump(mode="json")


def output_fn(prediction: dict[str, Any], accept: str) -> tuple[str, str]:
    wanted = (accept or JSON).split(";")[0].strip().lower()
    if wanted not in (JSON, "*/*"):
        raise InferenceError(f"accept {wanted!r} is not supported; ask for {JSON}")
    return json.dumps(prediction), JSON


def package_model(artifact_dir: str | Path, tar_path: str | Path) -> Path:
    """model.tar.gz for a SageMaker Model: artifact at the root, inference code under code/."""
    artifact = load_artifact(artifact_dir)  # refuse to package a corrupt artifact
    package = Path(__file__).resolve().parents[1]  # the whole cnai package ships: folders, never file lists
    tar_path = Path(tar_path)
    tar_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        code = Path(tmp) / "code"
        shutil.copytree(package, code / "cnai", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        (code / "inference.py").write_text(ENTRY, encoding="utf-8")
        (code / "requirements.txt").write_text(REQUIREMENTS, encoding="utf-8")
        with tarfile.open(tar_path, "w:gz") as tar:
            for name in (*PAYLOAD_FILES, CARD_FILE):
                tar.add(artifact.directory / name, arcname=name)
            tar.add(code, arcname="code")
    return tar_path
