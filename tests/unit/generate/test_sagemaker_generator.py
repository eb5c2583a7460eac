"""`load_generator("sagemaker:<endpoint>")`: the predict Lambda's generator on a SageMaker Serverless endpoint,
against botocore's Stubber on a real sagemaker-runtime client: the request it sends (the API's own
GenerateRequest), the Generation it makes of the answer, the identity it asks for once and then follows, and
its failures: a refusing endpoint is a 400 naming the field, a failing one a 502 at the API with the call's
audit record still written by the Lambda."""

from __future__ import annotations

import copy
import io
import json
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.response import StreamingBody
from botocore.stub import ANY, Stubber
from moto import mock_aws

from cnai.audit.trail import Auditor, FileSink, read_records
from cnai.generate import GenerationError, GenerationParams, Generator, load_generator
from cnai.generate.sagemaker import SageMakerGenerator, SageMakerGeneratorError
from cnai.local.context import LocalContext
from cnai.serving.api import PredictApi
from cnai.serving.generate_api import GenerateLimits, GenerateRoute
from cnai.serving.service import ModelService

pytestmark = pytest.mark.unit
ENDPOINT = "cnai-dev-generator"
EVENT = json.loads((Path(__file__).parents[2] / "events" / "apigw_rest_predict.json").read_text())
DESCRIBE = {"name": "smollm2", "version": "abc123", "package_version": "4", "task": "text-generation"}


def streaming(document: dict[str, Any]) -> StreamingBody:
    raw = json.dumps(document).encode()
    return StreamingBody(io.BytesIO(raw), len(raw))


def answer(text: str = "We froze your card.", version: str = "abc123", package: str | None = "4") -> dict[str, Any]:
    return {
        "model": "smollm2",
        "version": version,
        "package_version": package,
        "text": text,
        "finish_reason": "stop",
        "usage": {"tokens_in": 21, "tokens_out": 6},
        "timing": {"ttft_ms": 40.5, "total_ms": 120.25},
    }


def expect(stub: Stubber, document: dict[str, Any], body: Any = ANY) -> None:
    stub.add_response(
        "invoke_endpoint",
        {"Body": streaming(document), "ContentType": "application/json"},
        {"EndpointName": ENDPOINT, "ContentType": "application/json", "Accept": "application/json", "Body": body},
    )


@pytest.fixture
def client() -> Any:
    with mock_aws():  # dummy credentials and no real endpoint anywhere: only the Stubber answers
        yield boto3.client("sagemaker-runtime", region_name="eu-west-1")


def test_the_uri_names_the_endpoint_and_nothing_is_called_until_used() -> None:
    # When the predict Lambda builds its generator from CNAI_GENERATOR_URI
    generator = load_generator(f"sagemaker:{ENDPOINT}")
    # Then it is a Generator for that endpoint, and no client exists yet (no AWS call at cold start)
    # (isinstance against the Generator protocol would read `identity`, which asks the endpoint: checked below)
    assert isinstance(generator, SageMakerGenerator)
    assert generator.endpoint == ENDPOINT and generator._client is None
    with pytest.raises(SageMakerGeneratorError, match="endpoint name is required"):
        load_generator("sagemaker:")


def test_a_chat_is_sent_as_the_apis_own_request_and_the_answer_becomes_a_generation(client: Any) -> None:
    # Given a chat and sampling settings with a deadline
    chat = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "I lost my card"}]
    params = GenerationParams(max_new_tokens=40, temperature=0.7, top_p=0.9, stop=("\n\n",), seed=7, deadline_s=2.5)
    sent = {
        "messages": chat,
        "max_new_tokens": 40,
        "temperature": 0.7,
        "top_p": 0.9,
        "stop": ["\n\n"],
        "seed": 7,
        "deadline_ms": 2500,
    }
    generator = SageMakerGenerator(ENDPOINT, client=client)
    with Stubber(client) as stub:
        expect(stub, answer(), json.dumps(sent).encode())
        # When it generates
        result = generator.generate(chat, params)
        stub.assert_no_pending_responses()
    # Then the endpoint's text, token counts and timings come back, and its identity is the one that answered
    assert (result.text, result.tokens_in, result.tokens_out, result.finish_reason) == (
        "We froze your card.",
        21,
        6,
        "stop",
    )
    assert (result.ttft_ms, result.total_ms) == (40.5, 120.25)
    assert str(generator.identity) == "smollm2:abc123@4"
    assert isinstance(generator, Generator)  # the protocol's members, identity included (known by now)


def test_the_identity_is_described_once_then_follows_the_model_that_answered(client: Any) -> None:
    generator = SageMakerGenerator(ENDPOINT, client=client)
    with Stubber(client) as stub:
        # Given an endpoint that describes version abc123, asked once however often the identity is read
        expect(stub, DESCRIBE, json.dumps({"describe": True}).encode())
        assert generator.identity.version == "abc123" and generator.identity.version == "abc123"
        # When the deploy workflow updates it and the next answer comes from version def456
        expect(stub, answer(version="def456", package="5"))
        generator.generate("hello", GenerationParams(max_new_tokens=8))
        stub.assert_no_pending_responses()
    # Then the identity names the new model without another describe call
    assert (generator.identity.version, generator.identity.package_version) == ("def456", "5")


def test_a_request_the_endpoint_refuses_is_the_same_generation_error(client: Any) -> None:
    # Given an endpoint that refuses a prompt beyond its model's context, as the API would
    generator = SageMakerGenerator(ENDPOINT, client=client)
    refusal = {"refused": {"field": "messages", "problem": "40 prompt tokens + 64 new exceed the context"}}
    with Stubber(client) as stub:
        expect(stub, refusal)
        # When it generates, Then the refusal is a GenerationError naming the field (400 at the API)
        with pytest.raises(GenerationError) as caught:
            generator.generate("hello", GenerationParams())
    assert caught.value.field == "messages" and "exceed the context" in caught.value.problem


@pytest.mark.parametrize(
    "failure",
    [
        {"service_error_code": "ModelError", "service_message": "Received server error (500) from model"},
        {"service_error_code": "ValidationError", "service_message": "Endpoint cnai-dev-generator not found."},
        {"service_error_code": "ThrottlingException", "http_status_code": 429},
    ],
)
def test_an_endpoint_failure_is_a_generator_unavailable_error(client: Any, failure: dict[str, Any]) -> None:
    generator = SageMakerGenerator(ENDPOINT, client=client)
    with Stubber(client) as stub:
        stub.add_client_error("invoke_endpoint", **failure)
        with pytest.raises(
            SageMakerGeneratorError, match=f"SageMaker endpoint {ENDPOINT}: {failure['service_error_code']}"
        ):
            generator.generate("hello")


def test_an_answer_that_is_not_a_generation_is_a_generator_unavailable_error(client: Any) -> None:
    generator = SageMakerGenerator(ENDPOINT, client=client)
    with Stubber(client) as stub:
        expect(stub, {"predictions": []})  # a classifier endpoint named by mistake
        with pytest.raises(SageMakerGeneratorError, match="not a GenerateResponse"):
            generator.generate("hello")
        expect(stub, {"model": "banking77", "labels": ["a"]})
        with pytest.raises(SageMakerGeneratorError, match="describe answer is not a generator's"):
            _ = generator.identity


# ---- through the predict API, as the Lambda with CNAI_GENERATOR_URI=sagemaker:<endpoint> serves it ----


@pytest.fixture
def api(tmp_path: Path, client: Any) -> Any:
    generator = SageMakerGenerator(ENDPOINT, client=client)
    route = GenerateRoute(generator, GenerateLimits(max_new_tokens=32, deadline_s=20.0))
    app = PredictApi(ModelService({}), Auditor(FileSink(tmp_path / "audit.jsonl"), store_text=False), generate=route)
    app.audit_path = tmp_path / "audit.jsonl"  # type: ignore[attr-defined]
    return app


def post(api: Any, body: dict[str, Any], model: str = "smollm2") -> tuple[int, dict[str, Any], list[Any]]:
    event = copy.deepcopy(EVENT)
    event["path"], event["httpMethod"] = f"/v1/models/{model}/generate", "POST"
    event["body"] = json.dumps(body)
    response = api.handle(event, LocalContext())
    records = list(read_records(api.audit_path)) if api.audit_path.exists() else []
    return response["statusCode"], json.loads(response["body"]), records


def test_the_route_answers_through_the_endpoint_and_the_lambda_audits_it(api: Any, client: Any) -> None:
    with Stubber(client) as stub:
        # Given an endpoint that describes its generator and answers
        expect(stub, DESCRIBE)
        expect(stub, answer())
        # When a caller posts a prompt to the Lambda
        status, body, (record,) = post(api, {"prompt": "I lost my card", "max_new_tokens": 16, "deadline_ms": 3000})
        stub.assert_no_pending_responses()
    # Then the endpoint's text comes back under its identity, and the Lambda wrote the one audit record
    assert status == 200 and body["text"] == "We froze your card." and body["package_version"] == "4"
    assert (record.status, record.model, record.model_version, record.package_version) == (
        200,
        "smollm2",
        "abc123",
        "4",
    )
    assert record.backend == "generate:SageMakerGenerator"
    assert record.generation is not None and record.generation.tokens_out == 6


def test_a_failing_endpoint_is_a_502_and_the_call_is_still_audited(api: Any, client: Any) -> None:
    with Stubber(client) as stub:
        # Given an endpoint that described itself and then fails the generation
        expect(stub, DESCRIBE)
        stub.add_client_error("invoke_endpoint", "ModelError", "Received server error (500) from model")
        # When a caller posts a prompt
        status, body, (record,) = post(api, {"prompt": "I lost my card"})
    # Then the caller gets the predict route's 502, which leaks nothing of the endpoint's error
    assert status == 502 and body["error"]["code"] == "backend_unavailable"
    assert "ModelError" not in json.dumps(body)
    # And the Lambda's audit record says so, with the generator's identity and no generation block
    assert (record.status, record.error, record.model_version) == (502, "backend_unavailable", "abc123")
    assert record.generation is None and record.inputs


def test_an_endpoint_that_cannot_even_describe_itself_is_a_502_with_its_audit_record(api: Any, client: Any) -> None:
    with Stubber(client) as stub:
        # Given an endpoint that is down from the first call
        stub.add_client_error("invoke_endpoint", "ValidationError", "Endpoint cnai-dev-generator not found.")
        stub.add_client_error("invoke_endpoint", "ValidationError", "Endpoint cnai-dev-generator not found.")
        # When a caller posts a prompt
        status, body, (record,) = post(api, {"prompt": "I lost my card"})
    # Then it is a 502 (not a 503 from an audit record that could not be built), audited without a version
    assert status == 502 and body["error"]["code"] == "backend_unavailable"
    assert (record.status, record.model, record.model_version) == (502, "smollm2", None)
    assert record.backend == "generate:SageMakerGenerator"


def test_an_endpoint_refusal_is_a_400_naming_the_field(api: Any, client: Any) -> None:
    with Stubber(client) as stub:
        expect(stub, DESCRIBE)
        expect(stub, {"refused": {"field": "messages", "problem": "beyond the model's context"}})
        status, body, (record,) = post(api, {"prompt": "I lost my card"})
    assert status == 400 and body["error"]["fields"] == [{"field": "messages", "message": "beyond the model's context"}]
    assert record.status == 400
