"""A predict call whose body validates skips the resolver; its answer and audit record must not change."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from cnai.audit.trail import read_records
from cnai.local.context import LocalContext
from tests.serving_toy import build_toy_artifact, import_handler

EVENT = json.loads((Path(__file__).parents[2] / "events" / "apigw_rest_predict.json").read_text())


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Any:
    root = tmp_path_factory.mktemp("direct")
    model = build_toy_artifact(root / "model", abstain_threshold=0.6)
    env = {"CNAI_MODEL_URI": str(model), "CNAI_AUDIT_SINK": f"file:{root / 'audit.jsonl'}", "CNAI_MAX_INPUTS": "4"}
    module = import_handler(env)
    module.audit_path = root / "audit.jsonl"
    return module


def event(body: str | None, path: str = "/v1/models/toy/predict") -> dict[str, Any]:
    built = copy.deepcopy(EVENT)
    built["path"], built["httpMethod"], built["body"] = path, "POST", body
    return built


def answer(api: Any, built: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(response, the audit record it added, without its time, latency and chain fields)."""
    response = api.API.handle(copy.deepcopy(built), LocalContext())
    record = list(read_records(api.audit_path))[-1].model_dump()
    for key in ("time", "latency_ms", "chain"):
        record.pop(key, None)
    return {**response, "multiValueHeaders": dict(response["multiValueHeaders"])}, record


BODIES = [
    '{"inputs": "I lost my card"}',  # one text
    '{"inputs": ["refund please", "top up", "stolen card"], "top_k": 2}',  # a batch
    '{"inputs": "my card was stolen", "explain": true}',  # explanations
    '{"inputs": "the"}',  # abstains
    '{"inputs": ["a", "b", "c", "d", "e"]}',  # 413: over CNAI_MAX_INPUTS (validates, refused by the service)
]


@pytest.mark.parametrize("body", BODIES)
@pytest.mark.parametrize("path", ["/v1/models/toy/predict", "/v1/models/toy/predict/", "/v1/models/nope/predict"])
def test_the_direct_answer_equals_the_resolvers(
    api: Any, body: str, path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a call whose body validates
    built = event(body, path)
    # When it is answered directly (the resolver would fail the test if reached) ...
    with monkeypatch.context() as patched:
        patched.setattr(api.API.app, "resolve", lambda *a: pytest.fail("the resolver was reached"))
        direct, direct_record = answer(api, built)
    # ... and through the resolver (as when the route pattern is unknown)
    monkeypatch.setattr(api.API, "_predict_rule", None)
    routed, routed_record = answer(api, built)
    # Then the response and the audit record are the same
    assert direct == routed
    assert direct_record == routed_record
    assert direct["statusCode"] in (200, 404, 413)


@pytest.mark.parametrize(
    "body",
    ['{"inputs": 5}', '{"inputs": "x"', '[{"inputs": "refund"}]', '{"inputs": "x", "extra": 1}', "", "null"],
)
def test_a_body_that_does_not_validate_goes_through_the_resolver(api: Any, body: str) -> None:
    # Given a body pydantic refuses (or one Powertools reads its own way: a list's first item)
    reached: list[bool] = []
    resolve = api.API.app.resolve

    def counting(*args: Any) -> Any:
        reached.append(True)
        return resolve(*args)

    api.API.app.resolve = counting
    try:
        # When it is handled
        response, record = answer(api, event(body))
    finally:
        del api.API.app.resolve
    # Then the resolver answered it, and the call is audited with its status
    assert reached == [True]
    assert record["status"] == response["statusCode"]


def test_log_lines_carry_the_api_gateway_request_id(api: Any) -> None:
    # Given a call through the decorated Lambda handler
    from cnai.observability import logger

    built = event('{"inputs": "refund"}')
    built["requestContext"]["requestId"] = "req-correlated-1"
    # When it is handled
    api.handler(built, LocalContext())
    # Then the logger's correlation id is that call's API Gateway request id
    assert logger.get_correlation_id() == "req-correlated-1"


@pytest.mark.parametrize("path", ["/v1/models/toy/predict", "/v1/models/toy/predict/", "/v1/models/toy/predict//"])
def test_every_path_the_resolver_routes_is_audited(api: Any, path: str) -> None:
    # Given a predict call on a path Powertools' route pattern takes (any number of trailing slashes)
    before = len(list(read_records(api.audit_path)))
    # When it is answered
    response = api.API.handle(event('{"inputs": "refund"}', path), LocalContext())
    # Then it is served and leaves exactly one audit record (`//` was served unaudited)
    assert response["statusCode"] == 200
    assert len(list(read_records(api.audit_path))) == before + 1
