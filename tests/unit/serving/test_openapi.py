"""The predict API's OpenAPI document is exact: every status an operation answers is documented with the body it
really has, and nothing is documented that is never answered (Powertools' default 422)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from cnai.local.context import LocalContext
from cnai.serving.api import PredictApi, ServingOptions, build_api
from cnai.serving.asgi import proxy_event
from tests.serving_toy import build_toy_artifact

PREDICT = "/v1/models/toy/predict"


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> PredictApi:
    root = tmp_path_factory.mktemp("openapi")
    model = build_toy_artifact(root / "model")
    return build_api(ServingOptions(model_uri=str(model), audit_sink=f"file:{root / 'audit.jsonl'}", max_inputs=8))


@pytest.fixture(scope="module")
def document(api: PredictApi) -> dict[str, Any]:
    status, body = call(api, "GET", "/v1/openapi.json")
    assert status == 200
    return body  # type: ignore[no-any-return]


def call(
    api: PredictApi, method: str, path: str, body: Any = None, content_type: str = "application/json"
) -> tuple[int, Any]:
    raw = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    event = proxy_event(method, path, {"Content-Type": content_type}, raw, "127.0.0.1", "local:test")
    response = api.handle(event, LocalContext())
    return response["statusCode"], json.loads(response["body"]) if response["body"] else None


def validator(document: dict[str, Any], operation: dict[str, Any], status: int) -> Draft202012Validator:
    schema = operation["responses"][str(status)]["content"]["application/json"]["schema"]
    return Draft202012Validator({**schema, "components": document["components"]})


def test_no_422_is_promised_and_its_schemas_are_gone(document: dict[str, Any]) -> None:
    # Given the document the API serves / Then no operation documents 422 (the API answers 400 instead)
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            assert "422" not in operation["responses"], (path, method)
    assert not {"HTTPValidationError", "ValidationError"} & set(document["components"]["schemas"])


def test_statuses_documented_per_operation(document: dict[str, Any]) -> None:
    paths = document["paths"]
    assert set(paths[PREDICT.replace("toy", "{model}")]["post"]["responses"]) == {
        "200", "400", "403", "404", "408", "413", "415", "502", "503"
    }  # fmt: skip
    # 403: a Cognito token without the route's group (api.auth=cognito; tests/unit/serving/test_cognito_auth.py)
    assert set(paths["/v1/models/{model}"]["get"]["responses"]) == {"200", "403", "404", "502"}
    assert set(paths["/v1/models"]["get"]["responses"]) == {"200", "403", "502"}
    assert set(paths["/v1/health"]["get"]["responses"]) == {"200"}
    # And every error is documented with the one error body, never as a bare string
    for operations in paths.values():
        for operation in operations.values():
            for status, response in operation["responses"].items():
                if status != "200":
                    assert response["content"]["application/json"]["schema"] == {
                        "$ref": "#/components/schemas/ErrorResponse"
                    }


def test_request_schema_carries_the_deployments_limits(document: dict[str, Any]) -> None:
    # Given an API serving with CNAI_MAX_INPUTS=8 and the default text and explain bounds
    request = document["components"]["schemas"]["PredictRequest"]
    # Then `inputs` says what is refused: an empty list (400), more than 8 texts or 2000 characters (413)
    text = {"type": "string", "maxLength": 2000}
    assert request["properties"]["inputs"]["anyOf"] == [
        text, {"type": "array", "items": text, "minItems": 1, "maxItems": 8}
    ]  # fmt: skip
    # And with explain=true at most 4 texts; the words bound is stated in prose (JSON Schema cannot count words)
    assert request["if"] == {"properties": {"explain": {"const": True}}, "required": ["explain"]}
    assert request["then"]["properties"]["inputs"]["anyOf"][1] == {"type": "array", "maxItems": 4}
    assert "CNAI_MAX_EXPLAIN_WORDS words per text (64)" in request["properties"]["explain"]["description"]
    validate = Draft202012Validator(request).is_valid
    assert validate({"inputs": ["x"] * 4, "explain": True}) and not validate({"inputs": ["x"] * 5, "explain": True})
    assert validate({"inputs": ["x"] * 5}) and not validate({"inputs": []})


@pytest.mark.parametrize(
    ("method", "path", "body", "content_type", "status"),
    [
        ("POST", PREDICT, {"inputs": "I lost my card"}, "application/json", 200),
        ("POST", PREDICT, {"inputs": []}, "application/json", 400),
        ("POST", PREDICT, b"{oops", "application/json", 400),
        ("POST", PREDICT, {"inputs": "x", "top_k": 0}, "application/json", 400),
        ("POST", "/v1/models/nope/predict", {"inputs": "x"}, "application/json", 404),
        ("POST", PREDICT, {"inputs": ["x"] * 9}, "application/json", 413),
        ("POST", PREDICT, {"inputs": ["x"] * 5, "explain": True}, "application/json", 413),
        ("POST", PREDICT, {"inputs": "x"}, "text/plain", 415),
        ("GET", "/v1/models", None, "application/json", 200),
        ("GET", "/v1/models/toy", None, "application/json", 200),
        ("GET", "/v1/models/nope", None, "application/json", 404),
        ("GET", "/v1/health", None, "application/json", 200),
    ],
)
def test_each_answer_is_documented_and_matches_its_schema(
    api: PredictApi, document: dict[str, Any], method: str, path: str, body: Any, content_type: str, status: int
) -> None:
    # Given a call of each kind / When the API answers it
    got, answer = call(api, method, path, body, content_type)
    assert got == status, answer
    # Then the status is documented for that operation and the body validates against the documented schema
    template = path.replace("/toy", "/{model}").replace("/nope", "/{model}")
    operation = document["paths"][template][method.lower()]
    assert str(status) in operation["responses"]
    errors = [e.message for e in validator(document, operation, status).iter_errors(answer)]
    assert errors == []


# ---- what the contract fuzz test (tests/integration/test_contract_fuzz.py) found, fixed ----


def test_an_integral_float_top_k_is_the_integer_json_schema_says_it_is(api: PredictApi) -> None:
    # Given `top_k: 38.0`, valid for the document's `"type": "integer"` (JSON has one number type)
    # When predicted / Then it is accepted as 38; 2.5, "3" and true stay refused
    status, body = call(api, "POST", PREDICT, {"inputs": "I lost my card", "top_k": 38.0})
    assert status == 200 and len(body["predictions"][0]["top_k"]) == 3  # the toy model has 3 labels
    for bad in (2.5, "3", True):
        assert call(api, "POST", PREDICT, {"inputs": "x", "top_k": bad})[0] == 400


def test_a_question_mark_decoded_from_a_model_name_does_not_cut_the_path(api: PredictApi) -> None:
    # Given `cnai serve` decoded `/v1/models/%3Fx/predict` into a path holding `?` (its query is separate)
    for method, path in (("POST", "/v1/models/?x/predict"), ("GET", "/v1/models/?x")):
        body = json.dumps({"inputs": "x"}).encode() if method == "POST" else None
        event = proxy_event(method, path, {"Content-Type": "application/json"}, body, "127.0.0.1", "t", query="")
        # When routed / Then the whole path is the route: an unknown model (404), not /v1/models (200 or 405)
        response = api.handle(event, LocalContext())
        assert event["path"] == path and response["statusCode"] == 404, response
