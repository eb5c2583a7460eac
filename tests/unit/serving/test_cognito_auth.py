"""Cognito groups enforced by the handlers, through real API Gateway REST proxy events carrying a
COGNITO_USER_POOLS authorizer's claims: predict and model routes need `predict`, POST /v1/ingest needs `ingest`."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from cnai.audit.trail import read_records
from cnai.ingest.api import build_ingest_api
from cnai.ingest.producer import Producer
from cnai.local.context import LocalContext
from tests.serving_toy import build_toy_artifact, import_handler

EVENT = json.loads((Path(__file__).parents[2] / "events" / "apigw_rest_predict.json").read_text())
PREDICT = "/v1/models/toy/predict"
SUB = "7d8e9f00-1111-2222-3333-444455556666"


def cognito(event: dict[str, Any], groups: str | None) -> dict[str, Any]:
    """`event` as API Gateway sends it behind the user-pool authorizer: no IAM identity, the ID token's claims
    under requestContext.authorizer.claims, every value a string (`cognito:groups` printed as `[a b]`)."""
    event = copy.deepcopy(event)
    identity = event["requestContext"].setdefault("identity", {})
    for key in ("userArn", "caller", "user", "accessKey", "accountId"):
        identity[key] = None
    claims = {
        "sub": SUB,
        "cognito:username": "ana",
        "token_use": "id",
        "aud": "4n5o6p7q8r9s0t1u2v3w4x5y6z",
        "iss": "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_AbCdEf123",
        "auth_time": "1795946400",
        "exp": "Sun Nov 29 11:00:00 UTC 2026",
        "iat": "Sun Nov 29 10:00:00 UTC 2026",
    }
    if groups is not None:
        claims["cognito:groups"] = groups
    event["requestContext"]["authorizer"] = {"claims": claims}
    event["headers"]["Authorization"] = "eyJraWQiOi.example.token"
    return event


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Any:
    root = tmp_path_factory.mktemp("cognito")
    model = build_toy_artifact(root / "model", abstain_threshold=0.6)
    module = import_handler({"CNAI_MODEL_URI": str(model), "CNAI_AUDIT_SINK": f"file:{root / 'audit.jsonl'}"})
    module.audit_path = root / "audit.jsonl"
    return module


def call(api: Any, groups: str | None, *, path: str = PREDICT, method: str = "POST") -> tuple[int, Any, list[Any]]:
    event = cognito(EVENT, groups)
    event["path"], event["httpMethod"] = path, method
    event["body"] = json.dumps({"inputs": "I lost my card"}) if method == "POST" else None
    path_ = api.audit_path
    before = path_.read_text().count("\n") if path_.exists() else 0
    response = api.handler(event, LocalContext())
    # (no file yet: nothing audited so far, as when a read-only test is the first of this module on its worker)
    added = list(read_records(path_))[before:] if path_.exists() else []
    return response["statusCode"], json.loads(response["body"]), added


def test_a_member_of_predict_is_answered_and_audited_with_its_groups(api: Any) -> None:
    # Given a token of a user in `predict` and `ingest`
    # When it calls predict
    status, body, audit = call(api, "[ingest predict]")
    # Then it is answered, and the audit record names the subject and the groups the call was authorized by
    assert status == 200 and body["predictions"][0]["label"] == "card_lost"
    (record,) = audit
    assert record.caller.kind == "cognito" and record.caller.id == SUB
    assert record.caller.groups == ["ingest", "predict"]
    assert record.source_ip == "203.0.113.7"


def test_predict_refuses_a_token_without_the_group_and_audits_the_refusal(api: Any) -> None:
    # Given a token of a user in `ingest` only
    # When it calls predict
    status, body, audit = call(api, "[ingest]")
    # Then 403 in the one error shape, naming the group required
    assert status == 403
    assert body["error"]["code"] == "forbidden"
    assert "needs Cognito group 'predict'" in body["error"]["message"]
    assert body["error"]["fields"][0]["field"] == "cognito:groups"
    assert body["request_id"] == EVENT["requestContext"]["requestId"]
    # And the refused call has its one audit record: who, which groups, the status, no outputs
    (record,) = audit
    assert record.status == 403 and record.error == "forbidden" and record.outputs is None
    assert record.caller.kind == "cognito" and record.caller.groups == ["ingest"]
    assert record.model == "toy" and len(record.inputs) == 1


def test_model_routes_need_predict_and_health_needs_only_a_token(api: Any) -> None:
    # Given a token with no groups at all
    # When it reads the model routes and health
    listed, _, _ = call(api, None, path="/v1/models", method="GET")
    described, body, _ = call(api, None, path="/v1/models/toy", method="GET")
    health, _, audit = call(api, None, path="/v1/health", method="GET")
    # Then the model routes refuse it, health answers, and reads are not audited
    assert (listed, described, health) == (403, 403, 200)
    assert "'predict'" in body["error"]["message"] and "groups: none" in body["error"]["message"]
    assert audit == []
    # And a member of predict reads the models
    assert call(api, "[predict]", path="/v1/models", method="GET")[0] == 200


def test_an_iam_call_is_not_judged_by_groups(api: Any) -> None:
    # Given the IAM-signed event (no authorizer claims)
    event = copy.deepcopy(EVENT)
    event["path"], event["body"] = PREDICT, json.dumps({"inputs": "I lost my card"})
    # When it calls predict, Then it is answered as before
    assert api.handler(event, LocalContext())["statusCode"] == 200


def ingest_event(groups: str | None) -> dict[str, Any]:
    body = json.dumps({"records": [{"text": "I lost my card", "source": "app", "tenant": "acme"}]})
    event = {
        "resource": "/v1/ingest",
        "path": "/v1/ingest",
        "httpMethod": "POST",
        "headers": {"Content-Type": "application/json"},
        "multiValueHeaders": {"Content-Type": ["application/json"]},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": None,
        "stageVariables": None,
        "requestContext": {
            "requestId": "req-ingest-1",
            "stage": "v1",
            "httpMethod": "POST",
            "path": "/v1/v1/ingest",
            "resourcePath": "/v1/ingest",
            "identity": {"sourceIp": "203.0.113.9"},
        },
        "body": body,
        "isBase64Encoded": False,
    }
    return cognito(event, groups)


def test_ingest_needs_the_ingest_group(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": "us-east-1"}.items():  # fmt: skip
        monkeypatch.setenv(key, value)
    with mock_aws():
        # Given the ingest API on a (moto) stream
        kinesis = boto3.client("kinesis")
        kinesis.create_stream(StreamName="cnai-records", ShardCount=1)
        app = build_ingest_api(Producer(kinesis, "cnai-records"), max_records=10, spread=1)
        # When a member of `predict` only posts records
        refused = app.resolve(ingest_event("[predict]"), LocalContext())
        # Then 403 names the group and nothing reaches the stream
        assert refused["statusCode"] == 403
        error = json.loads(refused["body"])["error"]
        assert error["code"] == "forbidden" and "needs Cognito group 'ingest'" in error["message"]
        shard = kinesis.list_shards(StreamName="cnai-records")["Shards"][0]["ShardId"]
        iterator = kinesis.get_shard_iterator(
            StreamName="cnai-records", ShardId=shard, ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        assert kinesis.get_records(ShardIterator=iterator)["Records"] == []
        # And a member of `ingest` gets the record accepted
        accepted = app.resolve(ingest_event("[ingest]"), LocalContext())
        assert accepted["statusCode"] == 200 and json.loads(accepted["body"])["accepted"] == 1
