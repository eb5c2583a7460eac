"""The predict Lambda's HTTP contract, through real API Gateway REST proxy events (toy model, file audit)."""

from __future__ import annotations

import base64
import copy
import io
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cnai.audit.trail import Auditor, FileSink, read_records
from cnai.local.context import LocalContext
from cnai.serving.asgi import proxy_event
from tests.serving_toy import build_toy_artifact, import_handler

EVENT = json.loads((Path(__file__).parents[2] / "events" / "apigw_rest_predict.json").read_text())
PREDICT = "/v1/models/toy/predict"


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Any:
    root = tmp_path_factory.mktemp("api")
    model = build_toy_artifact(root / "model", abstain_threshold=0.6)
    env = {"CNAI_MODEL_URI": str(model), "CNAI_AUDIT_SINK": f"file:{root / 'audit.jsonl'}", "CNAI_MAX_INPUTS": "8"}
    module = import_handler(env)
    module.audit_path = root / "audit.jsonl"
    return module


def call(api: Any, body: Any = None, *, path: str = PREDICT, method: str = "POST", content_type: str | None = None):
    """One invocation with the real event shape; returns (status, parsed body, audit records it added)."""
    event = copy.deepcopy(EVENT)
    event["path"], event["httpMethod"] = path, method
    event["body"] = body if body is None or isinstance(body, str) else json.dumps(body)
    if content_type is not None:
        event["headers"]["Content-Type"] = content_type
        event["multiValueHeaders"]["Content-Type"] = [content_type]
    before = audit_count(api)
    response = api.handler(event, LocalContext())
    added = list(read_records(api.audit_path))[before:]
    return response["statusCode"], json.loads(response["body"]), added


def audit_count(api: Any) -> int:
    path: Path = api.audit_path
    return path.read_text().count("\n") if path.exists() else 0


# ---- the happy paths ----


def test_predict_one_text(api: Any) -> None:
    # Given the real event of an IAM-signed call
    # When it asks for the top 2 labels of one text
    status, body, audit = call(api, {"inputs": "I lost my card", "top_k": 2})
    # Then it gets the label, calibrated scores, the model name and version
    assert status == 200
    assert body["model"] == "toy" and body["version"] == "toy0001" and body["backend"] == "local"
    (prediction,) = body["predictions"]
    assert prediction["label"] == "card_lost"
    assert prediction["top_k"][0]["label"] == "card_lost" and len(prediction["top_k"]) == 2
    assert body["request_id"] == EVENT["requestContext"]["requestId"]
    # And exactly one audit record names the caller, the model version, the input hash and the answer
    (record,) = audit
    assert record.caller.kind == "iam"
    assert record.caller.id == "arn:aws:sts::123456789012:assumed-role/cnai-client/session"
    assert record.source_ip == "203.0.113.7"
    assert record.model == "toy" and record.model_version == "toy0001" and record.status == 200
    assert record.inputs[0].sha256 == "32e8c8f54ea0a9f8e387438174cb697b6b9c513110fbae85fedfe381b0758420"
    assert record.outputs and record.outputs[0].label == "card_lost"
    assert record.texts is None  # raw text is not stored by default
    assert record.request_id == body["request_id"]


def test_predict_a_batch_with_explanations(api: Any) -> None:
    status, body, _ = call(api, {"inputs": ["please refund my money", "stolen card"], "explain": True, "top_k": 3})
    assert status == 200
    first, second = body["predictions"]
    assert first["label"] == "refund" and second["label"] == "card_lost"
    tokens = first["explanation"]["tokens"]
    assert max(tokens, key=lambda t: t["attribution"])["token"] == "refund"
    assert first["explanation"]["method"] == "occlusion"


def test_low_confidence_returns_a_null_label_with_the_reason(api: Any) -> None:
    status, body, audit = call(api, {"inputs": "hello there"})
    assert status == 200
    (prediction,) = body["predictions"]
    assert prediction["label"] is None and "abstention threshold" in prediction["reason"]
    assert audit[0].outputs and audit[0].outputs[0].label is None


def test_curl_default_content_type_is_read_as_json(api: Any) -> None:
    status, body, _ = call(api, {"inputs": "refund"}, content_type="application/x-www-form-urlencoded")
    assert status == 200 and body["predictions"][0]["label"] == "refund"


def test_base64_body(api: Any) -> None:
    event = copy.deepcopy(EVENT)
    event["body"] = base64.b64encode(json.dumps({"inputs": "top up"}).encode()).decode()
    event["isBase64Encoded"] = True
    response = api.handler(event, LocalContext())
    assert response["statusCode"] == 200
    assert json.loads(response["body"])["predictions"][0]["label"] == "top_up"


def test_list_models(api: Any) -> None:
    status, body, audit = call(api, path="/v1/models", method="GET")
    assert status == 200 and audit == []  # only predict calls are audited
    assert body == {"models": [{"name": "toy", "version": "toy0001", "package_version": None, "backend": "local",
                                "task": "text-classification"}]}  # fmt: skip


def test_describe_model(api: Any) -> None:
    status, body, _ = call(api, path="/v1/models/toy", method="GET")
    assert status == 200
    assert body["labels"] == ["card_lost", "refund", "top_up"]
    assert body["abstain_threshold"] == 0.6 and body["max_length"] == 32
    assert body["metrics"] == {"student_int8": {"accuracy": 1.0}}
    assert "dataset" in body["lineage"]


def test_health(api: Any) -> None:
    status, body, _ = call(api, path="/v1/health", method="GET")
    assert status == 200 and body["status"] == "ok" and body["models"] == {"toy": "toy0001"}
    assert set(body["cache"]) >= {"hits", "misses", "hit_rate"}


def test_openapi_document(api: Any) -> None:
    status, body, _ = call(api, path="/v1/openapi.json", method="GET")
    assert status == 200 and body["openapi"].startswith("3.")
    assert {"/v1/models/{model}/predict", "/v1/models", "/v1/models/{model}", "/v1/health"} <= set(body["paths"])
    ok = body["paths"]["/v1/models/{model}/predict"]["post"]["responses"]["200"]
    assert ok["content"]["application/json"]["schema"]["$ref"].endswith("/PredictResponse")
    request = body["components"]["schemas"]["PredictRequest"]
    assert set(request["properties"]) == {"inputs", "top_k", "explain", "draft_reply"}


# ---- errors: each with its code, each predict call audited once ----


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"inputs": 5}, "inputs"),
        ({"inputs": ["ok", 3]}, "inputs"),
        ({"inputs": []}, "inputs"),
        ({"inputs": "x", "top_k": 0}, "top_k"),
        ({"inputs": "x", "top_k": "3"}, "top_k"),
        ({"inputs": "x", "explain": "yes"}, "explain"),
        ({"inputs": "x", "colour": "red"}, "colour"),
        ({"top_k": 2}, "inputs"),
        ([1, 2], "body"),
    ],
)
def test_schema_errors_are_400_with_the_field(api: Any, body: Any, field: str) -> None:
    status, answer, audit = call(api, body)
    assert status == 400
    assert answer["error"]["code"] == "invalid_request"
    assert field in [f["field"] for f in answer["error"]["fields"]]
    assert len(audit) == 1 and audit[0].status == 400 and audit[0].error == "invalid_request"


@pytest.mark.parametrize("raw", ["{bad json", "", None, "null", '"just a string"'])
def test_bad_json_is_400(api: Any, raw: str | None) -> None:
    status, answer, audit = call(api, raw)
    assert status == 400 and answer["error"]["fields"][0]["field"] == "body"
    assert len(audit) == 1


def test_unknown_model_is_404_and_audited(api: Any) -> None:
    status, answer, audit = call(api, {"inputs": "x"}, path="/v1/models/nope/predict")
    assert status == 404 and answer["error"]["code"] == "unknown_model"
    assert audit[0].model == "nope" and audit[0].status == 404 and audit[0].inputs


def test_unknown_route_is_404(api: Any) -> None:
    status, answer, _ = call(api, path="/v1/nothing", method="GET")
    assert status == 404 and answer["error"]["code"] == "not_found"


def test_too_many_inputs_is_413(api: Any) -> None:
    status, answer, audit = call(api, {"inputs": ["refund"] * 9})
    assert status == 413 and answer["error"]["fields"][0]["field"] == "inputs"
    assert len(audit) == 1 and audit[0].status == 413 and len(audit[0].inputs) == 9


def test_too_long_input_is_413(api: Any) -> None:
    status, answer, _ = call(api, {"inputs": ["ok", "x" * 2001]})
    assert status == 413 and answer["error"]["fields"][0]["field"] == "inputs[1]"


@pytest.mark.parametrize("content_type", ["text/xml", "multipart/form-data; boundary=x", "text/plain"])
def test_wrong_content_type_is_415(api: Any, content_type: str) -> None:
    status, answer, audit = call(api, {"inputs": "x"}, content_type=content_type)
    assert status == 415 and answer["error"]["code"] == "unsupported_media_type"
    assert len(audit) == 1 and audit[0].status == 415


def test_internal_errors_do_not_leak(api: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    backend = api.API.service.backends["toy"]

    def explode(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("secret at /opt/internal/path.py line 42")

    monkeypatch.setattr(backend, "predict", explode)
    status, answer, audit = call(api, {"inputs": "x"})
    assert status == 500
    assert "secret" not in json.dumps(answer) and "Traceback" not in json.dumps(answer)
    assert answer["error"] == {"code": "internal", "message": "internal error; quote the request id"}
    assert audit[0].status == 500


def test_failing_audit_sink_withholds_the_prediction(api: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given an audit sink that fails, and a log standing in for stderr
    class Broken:
        def write(self, line: str, record: Any) -> None:
            raise ConnectionError("S3 unreachable")

    log = io.StringIO()
    monkeypatch.setattr(api.API, "auditor", Auditor(Broken(), fallback=log))
    # When a prediction is asked for
    event = copy.deepcopy(EVENT)
    response = api.handler(event, LocalContext())
    # Then the call fails closed: 503, no prediction in the answer
    assert response["statusCode"] == 503
    body = json.loads(response["body"])
    assert body["error"]["code"] == "audit_unavailable" and "predictions" not in body
    # And the record is not lost: it is in the log, with the sink's error
    logged = json.loads(log.getvalue().splitlines()[-1])
    assert logged["cnai_audit"] is True and logged["status"] == 200
    assert logged["audit_sink_error"] == "ConnectionError: S3 unreachable"


def test_an_audit_record_that_cannot_be_built_withholds_the_prediction(
    api: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a record that fails to build (not the sink: anything else on the way to it)
    def explode(*args: Any, **kwargs: Any) -> Any:
        raise ValueError("secret at /opt/internal/path.py line 42")

    monkeypatch.setattr(api.API, "call_record", explode)
    # When a prediction is asked for, the handler does not raise: it fails closed, without internals
    response = api.handler(copy.deepcopy(EVENT), LocalContext())
    assert response["statusCode"] == 503
    body = json.loads(response["body"])
    assert body["error"]["code"] == "audit_unavailable" and "predictions" not in body
    assert "secret" not in response["body"]


def test_opted_in_text_is_redacted_in_the_record(api: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    monkeypatch.setattr(api.API, "auditor", Auditor(FileSink(path), store_text=True))
    api.handler(copy.deepcopy(EVENT) | {"body": json.dumps({"inputs": "refund to jane@example.com"})}, LocalContext())
    (record,) = read_records(path)
    assert record.texts and "jane@example.com" not in record.texts[0] and record.texts[0].startswith("refund to ")


def test_metrics_are_emitted(api: Any, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    call(api, {"inputs": ["I lost my card", "I lost my card"]})
    emf = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith('{"_aws"')]
    names = {m["Name"] for blob in emf for d in blob["_aws"]["CloudWatchMetrics"] for m in d["Metrics"]}
    assert {"Latency", "Inputs", "CacheHits", "CacheHitRate", "Abstentions", "Label.card_lost"} <= names
    values = {k: v for blob in emf for k, v in blob.items() if k != "_aws"}
    # And a label is counted once per call, with how many of its texts got it
    assert values["Inputs"] == [2.0] and values["Label.card_lost"] == [2.0]


def test_not_a_proxy_event(api: Any) -> None:
    assert api.API.handle("nonsense", None)["statusCode"] == 400
    response = api.handler({"path": PREDICT}, LocalContext())
    assert response["statusCode"] in (400, 404, 500)
    assert "Traceback" not in response["body"]


def test_local_server_events_route_too(api: Any) -> None:
    event = proxy_event(
        "POST", PREDICT, {"Content-Type": "application/json"}, b'{"inputs":"refund"}', "127.0.0.1", "local:me@box"
    )
    response = api.handler(event, LocalContext())
    assert response["statusCode"] == 200


# ---- property-based: arbitrary bodies never escape as an unhandled error ----

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=20,
)
bodies = st.one_of(
    st.none(),
    st.text(max_size=200),
    json_values.map(json.dumps),
    st.fixed_dictionaries(
        {"inputs": st.one_of(st.text(max_size=50), st.lists(st.text(max_size=30), max_size=12), json_values)},
        optional={"top_k": json_values | st.integers(-5, 200), "explain": json_values, "extra": json_values},
    ).map(json.dumps),
)
content_types = st.one_of(
    st.none(),
    st.sampled_from(["application/json", "application/json; charset=utf-8", "application/x-www-form-urlencoded",
                     "text/plain", "multipart/form-data", "application/vnd.api+json", ""]),
    st.text(max_size=30),
)  # fmt: skip
models = st.one_of(st.just("toy"), st.text(alphabet=st.characters(blacklist_characters="/?#"), min_size=1, max_size=20))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=bodies, content_type=content_types, model=models, base64_encoded=st.booleans())
def test_arbitrary_bodies_never_crash_the_handler(
    api: Any, body: str | None, content_type: str | None, model: str, base64_encoded: bool
) -> None:
    event = copy.deepcopy(EVENT)
    event["path"] = f"/v1/models/{model}/predict"
    event["body"] = body
    if base64_encoded and body is not None:
        event["body"], event["isBase64Encoded"] = base64.b64encode(body.encode("utf-8", "surrogatepass")).decode(), True
    if content_type is None:
        event["headers"].pop("Content-Type")
    else:
        event["headers"]["Content-Type"] = content_type
    before = audit_count(api)
    response = api.handler(event, LocalContext())
    assert response["statusCode"] in (200, 400, 404, 413, 415), response["body"]
    answer = json.loads(response["body"])
    assert ("predictions" in answer) if response["statusCode"] == 200 else ("error" in answer)
    assert audit_count(api) == before + 1  # exactly one audit record per predict call


def test_unpaired_surrogate_is_a_400_not_a_crash(api: Any) -> None:
    status, answer, audit = call(api, '{"inputs": ["fine", "bad \\ud800 text"]}')
    assert status == 400 and answer["error"]["fields"][0]["field"] == "inputs"
    assert "unpaired surrogate" in answer["error"]["fields"][0]["message"]
    assert len(audit) == 1 and len(audit[0].inputs) == 2


def test_line_separators_in_a_model_name_keep_one_record_per_line(api: Any) -> None:
    before = audit_count(api)
    status, _, audit = call(api, {"inputs": "x"}, path="/v1/models/a\u2028b\x85c/predict")
    assert status == 404 and audit_count(api) == before + 1
    assert audit[0].model == "a\u2028b\x85c"


def test_a_model_routed_to_sagemaker_is_not_loaded_in_the_function(api: Any, tmp_path: Path) -> None:
    from cnai.serving.api import ServingOptions, build_api
    from functions.predict.settings import load_settings

    settings = load_settings(
        {
            "CNAI_MODEL_NAME": "toy",
            "CNAI_MODEL_URI": str(tmp_path / "does-not-exist"),  # would fail if it were loaded
            "CNAI_SAGEMAKER_ENDPOINTS": '{"toy": "cnai-toy-serverless"}',
            "CNAI_AUDIT_SINK": f"file:{tmp_path / 'a.jsonl'}",
        }
    )
    built = build_api(ServingOptions.of(settings))
    assert built.service.backends["toy"].kind == "sagemaker"


@pytest.mark.parametrize(
    ("content_type", "json_body"),
    [(None, True), ("", True), ("application/json", True), ("Application/JSON; charset=utf-8", True),
     ("application/problem+json", True), ("application/x-www-form-urlencoded", True), ("text/plain", False),
     ("multipart/form-data; boundary=x", False), ("application/xml", False), ("json", False)],
)  # fmt: skip
def test_which_content_types_are_json(content_type: str | None, json_body: bool) -> None:
    from cnai.serving.http import body_is_json

    assert body_is_json(content_type) is json_body


def test_vendor_json_type_is_served(api: Any) -> None:
    status, body, _ = call(api, {"inputs": "refund"}, content_type="application/vnd.cnai+json")
    assert status == 200 and body["predictions"][0]["label"] == "refund"


@pytest.mark.parametrize("raw", ["[" * 20000, '{"inputs": ' + "[" * 20000 + "]" * 20000 + "}"])
def test_json_nested_too_deeply_is_a_400_naming_the_body(api: Any, raw: str) -> None:
    status, answer, audit = call(api, raw)
    assert status == 400 and answer["error"]["fields"][0]["field"] == "body"
    assert "nested too deeply" in answer["error"]["fields"][0]["message"]
    assert len(audit) == 1 and audit[0].status == 400


@pytest.mark.parametrize("content_type", [";", "", " ; charset=utf-8"])
def test_content_type_without_a_media_type_is_read_as_json(api: Any, content_type: str) -> None:
    # Found by hypothesis on a clean CI clone: ";" was accepted as JSON by us but refused by Powertools (a 500)
    status, answer, audit = call(api, {"inputs": "I lost my card"}, content_type=content_type)
    assert status == 200 and "predictions" in answer and len(audit) == 1


# ---- methods and bodies, in the library API (so behind API Gateway too, not only under `cnai serve`) ----


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [("GET", PREDICT, "POST, OPTIONS"), ("PUT", PREDICT, "POST, OPTIONS"),
     ("DELETE", "/v1/models/toy", "GET, HEAD, OPTIONS"), ("POST", "/v1/health", "GET, HEAD, OPTIONS"),
     ("PATCH", "/v1/openapi.json", "GET, HEAD, OPTIONS")],
)  # fmt: skip
def test_a_known_route_with_another_method_is_405_with_allow(api: Any, method: str, path: str, allow: str) -> None:
    event = copy.deepcopy(EVENT) | {"httpMethod": method, "path": path}
    response = api.handler(event, LocalContext())
    assert response["statusCode"] == 405
    assert json.loads(response["body"])["error"]["code"] == "method_not_allowed"
    headers = response.get("multiValueHeaders") or {}
    assert headers.get("Allow") == [allow] or response["headers"].get("Allow") == allow


def test_options_lists_the_methods_of_a_route(api: Any) -> None:
    response = api.handler(copy.deepcopy(EVENT) | {"httpMethod": "OPTIONS", "body": None}, LocalContext())
    assert response["statusCode"] == 204
    assert (response.get("multiValueHeaders") or {}).get("Allow") == ["POST, OPTIONS"]


def test_head_is_answered_as_get_without_a_body(api: Any) -> None:
    head = api.handler(
        copy.deepcopy(EVENT) | {"httpMethod": "HEAD", "path": "/v1/health", "body": None}, LocalContext()
    )
    assert head["statusCode"] == 200 and head["body"] == ""


@pytest.mark.parametrize(
    ("raw", "message"),
    [(b'{"inputs": "caf\xe9"}', "not valid UTF-8 (byte 15"), (b"\xff\xfe{}", "not valid UTF-8 (byte 0")],
)
def test_a_body_that_is_not_utf8_is_a_400_naming_the_body(api: Any, raw: bytes, message: str) -> None:
    # Given API Gateway's event for a binary body: base64, isBase64Encoded
    event = copy.deepcopy(EVENT) | {"body": base64.b64encode(raw).decode(), "isBase64Encoded": True}
    before = audit_count(api)
    response = api.handler(event, LocalContext())
    # Then 400 naming the body (it was a 500 inside Powertools' decoding), and the call is audited
    assert response["statusCode"] == 400
    error = json.loads(response["body"])["error"]
    assert error["fields"][0]["field"] == "body" and error["fields"][0]["message"].startswith(message)
    assert audit_count(api) == before + 1


def test_a_body_flagged_base64_that_is_not_base64_is_a_400(api: Any) -> None:
    event = copy.deepcopy(EVENT) | {"body": "not base64 at all!", "isBase64Encoded": True}
    response = api.handler(event, LocalContext())
    assert response["statusCode"] == 400
    assert "not valid base64" in json.loads(response["body"])["error"]["fields"][0]["message"]
