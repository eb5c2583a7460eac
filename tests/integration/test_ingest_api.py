"""POST /v1/ingest: the thin Lambda on moto Kinesis with API Gateway REST proxy events."""

from __future__ import annotations

import base64
import importlib
import json
from typing import Any

import pytest

from cnai.local.context import LocalContext
from tests.integration import ingest_env
from tests.integration.ingest_env import STREAM, Lake

aws_env = ingest_env.aws_env
lake = ingest_env.lake
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture
def api(lake: Lake, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("CNAI_STREAM", STREAM)
    return importlib.reload(importlib.import_module("functions.ingest_api.handler"))


def request(body: str | None, *, b64: bool = False, path: str = "/v1/ingest") -> dict[str, Any]:
    return {
        "resource": path,
        "path": path,
        "httpMethod": "POST",
        "headers": {"Content-Type": "application/json", "X-Amzn-Trace-Id": "Root=1-abc"},
        "multiValueHeaders": {},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": None,
        "stageVariables": None,
        "requestContext": {
            "requestId": "req-1",
            "stage": "v1",
            "httpMethod": "POST",
            "path": path,
            "identity": {"sourceIp": "203.0.113.9"},
            "resourcePath": path,
        },
        "body": base64.b64encode(body.encode()).decode() if (b64 and body) else body,
        "isBase64Encoded": b64,
    }


def call(api: Any, body: str | None, **kw: Any) -> tuple[int, dict[str, Any]]:
    response = api.handler(request(body, **kw), LocalContext())
    return response["statusCode"], json.loads(response["body"])


def test_batch_answers_per_record_and_puts_only_valid_ones(api: Any, lake: Lake) -> None:
    # Given a batch with two valid records and two invalid ones
    body = json.dumps({"records": [
        {"text": "I lost my card", "label": "lost_card", "source": "app", "tenant": "acme"},
        {"text": "", "source": "app", "tenant": "acme"},
        {"text": "top up failed", "source": "app", "tenant": "acme", "id": "ext-7"},
        {"text": "x", "source": "app"},
    ]})  # fmt: skip
    # When posted
    status, result = call(api, body, b64=True)
    # Then each record has its own answer, rejections name the field, valid ones are on the stream
    assert status == 200
    assert (result["accepted"], result["rejected"], result["failed"]) == (2, 2, 0)
    assert [r["status"] for r in result["results"]] == ["accepted", "rejected", "accepted", "rejected"]
    assert result["results"][1]["reason"] == "text: is empty after normalization"
    assert result["results"][3]["reason"] == "tenant: is required"
    assert result["results"][2]["id"] == "ext-7" and result["results"][0]["id"].startswith("h-")
    shards = lake.kinesis.describe_stream(StreamName=STREAM)["StreamDescription"]["Shards"]
    on_stream = []
    for shard in shards:
        it = lake.kinesis.get_shard_iterator(
            StreamName=STREAM, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )
        on_stream += [
            json.loads(r["Data"]) for r in lake.kinesis.get_records(ShardIterator=it["ShardIterator"])["Records"]
        ]
    assert sorted(r["text"] for r in on_stream) == ["I lost my card", "top up failed"]


@pytest.mark.parametrize(
    ("body", "status", "field", "message"),
    [
        (None, 400, "body", "expected JSON"),
        ("{nope", 400, "body", "not valid JSON"),
        ("[" * 20000, 400, "body", "JSON nested too deeply"),
        ('{"records": ' + "[" * 20000, 400, "body", "JSON nested too deeply"),
        ('{"items": []}', 400, "records", "expected"),
        ('{"records": []}', 400, "records", "the list is empty"),
        (json.dumps({"records": [{"text": "x"}] * 501}), 413, "records", "501 in one request, more than 500"),
    ],
)
def test_unusable_requests_get_4xx_naming_the_problem(
    api: Any, body: str | None, status: int, field: str, message: str
) -> None:
    got_status, result = call(api, body)
    # The predict API's error shape: code, message, the field to fix, and the request id to quote
    assert got_status == status and result["request_id"] == "req-1"
    error = result["error"]
    assert error["code"] == ("too_large" if status == 413 else "invalid_request")
    assert error["message"].startswith(f"{field}: {message}")
    assert error["fields"] == [{"field": field, "message": error["message"].removeprefix(f"{field}: ")}]


def test_a_body_that_is_not_utf8_is_a_400_naming_the_body(api: Any) -> None:
    event = request(None) | {"body": base64.b64encode(b'{"records": ["caf\xe9"]}').decode(), "isBase64Encoded": True}
    response = api.handler(event, LocalContext())
    error = json.loads(response["body"])["error"]
    assert response["statusCode"] == 400 and error["fields"][0]["field"] == "body" and "UTF-8" in error["message"]


@pytest.mark.parametrize(("method", "path", "status"), [("GET", "/v1/ingest", 405), ("POST", "/v1/nothing", 404)])
def test_wrong_method_and_unknown_route_answer_in_the_same_shape(api: Any, method: str, path: str, status: int) -> None:
    event = request("{}", path=path) | {"httpMethod": method}
    response = api.handler(event, LocalContext())
    answer = json.loads(response["body"])
    assert response["statusCode"] == status and set(answer) == {"error", "request_id"}
    if status == 405:
        assert (response.get("multiValueHeaders") or {}).get("Allow") == ["POST"]
