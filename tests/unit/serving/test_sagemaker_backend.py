"""The predict Lambda's SageMaker Serverless backend follows an endpoint update made under a warm container."""

from __future__ import annotations

import io
import json
from typing import Any

import boto3
import pytest
from botocore.response import StreamingBody
from botocore.stub import ANY, Stubber

from cnai.serving.backends import SageMakerBackend
from cnai.serving.schema import PredictRequest
from cnai.serving.service import ModelService

pytestmark = pytest.mark.unit
ENDPOINT = "cnai-dev-banking77"


def body(document: dict[str, Any]) -> StreamingBody:
    raw = json.dumps(document).encode()
    return StreamingBody(io.BytesIO(raw), len(raw))


def describe(version: str, package: str) -> dict[str, Any]:
    """What cnai/serving/sagemaker.py answers to {"describe": true} (a ModelDetail)."""
    return {"name": "banking77", "version": version, "package_version": package, "backend": "local", "labels": ["a"]}


def answer(version: str, package: str) -> dict[str, Any]:
    prediction = {"label": "a", "score": 0.9, "top_k": [{"label": "a", "score": 0.9}]}
    return {"model": "banking77", "version": version, "package_version": package, "backend": "local",
            "predictions": [prediction]}  # fmt: skip


def invoked(stubber: Stubber, document: dict[str, Any]) -> None:
    stubber.add_response(
        "invoke_endpoint",
        {"Body": body(document), "ContentType": "application/json"},
        {"EndpointName": ENDPOINT, "ContentType": "application/json", "Accept": "application/json", "Body": ANY},
    )


def test_an_endpoint_updated_under_a_warm_container_is_described_again() -> None:
    # Given a warm backend that described version v1 (registry 1) and predicted with it
    client = boto3.client(
        "sagemaker-runtime", region_name="eu-west-1", aws_access_key_id="k", aws_secret_access_key="s"
    )
    service = ModelService({"banking77": SageMakerBackend("banking77", ENDPOINT, client)})
    request = PredictRequest.model_validate({"inputs": ["lost card"]})
    with Stubber(client) as stubber:
        invoked(stubber, answer("v1", "1"))
        invoked(stubber, describe("v1", "1"))  # asked once, after the first answer
        # When the deploy workflow updates the endpoint to v2 (registry 2) and the next call is answered by it
        invoked(stubber, answer("v2", "2"))
        invoked(stubber, describe("v2", "2"))
        first = service.predict("banking77", request)
        second = service.predict("banking77", request)
        stubber.assert_no_pending_responses()
    # Then the first response names v1, and the second (and its audit identity) names v2, not the cached v1
    assert (first.identity.version, first.identity.package_version) == ("v1", "1")
    assert (second.identity.version, second.identity.package_version) == ("v2", "2")
    assert service.summaries()[0].package_version == "2"


def test_the_same_model_answering_costs_no_second_describe() -> None:
    client = boto3.client(
        "sagemaker-runtime", region_name="eu-west-1", aws_access_key_id="k", aws_secret_access_key="s"
    )
    backend = SageMakerBackend("banking77", ENDPOINT, client)
    with Stubber(client) as stubber:
        invoked(stubber, answer("v1", "1"))
        invoked(stubber, describe("v1", "1"))
        for _ in range(2):
            invoked(stubber, answer("v1", "1"))
        for _ in range(3):
            backend.predict(["lost card"], 1, False)
        stubber.assert_no_pending_responses()
