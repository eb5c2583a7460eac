"""The predict function, its alias, the registry and the artifacts in moto: what the deploy steps act on
(shared by the unit tests here and tests/integration/test_deploy_workflow.py)."""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass
from typing import Any

from cnai.deploy.canary import Clients, Target
from cnai.registry.packages import ModelVersion, Registry

PREFIX = "cnai-dev"
MODEL = "banking77"
FUNCTION = "cnai-dev-predict"
BUCKET = "cnai-dev-artifacts"
TRUST = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                   "Principal": {"Service": "lambda.amazonaws.com"}}]})  # fmt: skip
BOOT_ENV = {"CNAI_MODEL_NAME": MODEL, "CNAI_MODEL_URI": "s3://boot/models/banking77/model.tar.gz",
            "CNAI_AUDIT_SINK": "stdout", "CNAI_MAX_INPUTS": "64"}  # fmt: skip


@dataclass
class World:
    clients: Clients
    target: Target
    registry: Registry

    def register(self, job: str, approved: bool = False) -> ModelVersion:
        """A version whose tar exists in the (versioned) artifacts bucket."""
        key = f"training/{job}/output/model.tar.gz"
        self.clients.s3.put_object(Bucket=BUCKET, Key=key, Body=job.encode())
        return self.registry.create_version(
            MODEL, image="img", model_data=f"s3://{BUCKET}/{key}", report_uri=f"s3://{BUCKET}/e/{job}.json",
            metrics={"accuracy": 0.9}, lineage={"training_job_arn": f"arn:job/{job}"}, approved=approved,
        )  # fmt: skip

    def alias(self) -> dict[str, Any]:
        return dict(self.clients.lambda_.get_alias(FunctionName=FUNCTION, Name="live"))

    def env(self, version: str) -> dict[str, str]:
        config = self.clients.lambda_.get_function_configuration(FunctionName=FUNCTION, Qualifier=version)
        return dict(config["Environment"]["Variables"])


def dummy_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("handler.py", "def handler(e, c):\n    return e\n")
    return buffer.getvalue()


def container(model: dict[str, Any], body: bytes) -> bytes:
    """SageMaker's container running cnai.serving.sagemaker, as cnai.local.sagemaker calls it: one prediction per
    input, answered with the identity the Model's environment pins (CNAI_MODEL_NAME, CNAI_MODEL_PACKAGE_VERSION)."""
    env = model["PrimaryContainer"].get("Environment") or {}
    texts = json.loads(body)["inputs"]
    predictions = [{"label": "card_arrival", "score": 0.9, "top_k": [{"label": "card_arrival", "score": 0.9}]}
                   for _ in texts]  # fmt: skip
    return json.dumps({"model": env.get("CNAI_MODEL_NAME", "model"), "version": "abc123", "backend": "local",
                       "package_version": env.get("CNAI_MODEL_PACKAGE_VERSION"),
                       "predictions": predictions}).encode()  # fmt: skip
