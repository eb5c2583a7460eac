"""`cnai serve --follow`: the alias's routing read from moto's Lambda, requests split by its weights, a moved
alias swapped in only once its models are loaded, and the routing shown by GET /v1/models/{model}."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from moto import mock_aws

from cnai.local.alias import URI_VARIABLE, AliasFollower, AliasRef, FollowError, read_routing
from cnai.local.context import LocalContext
from cnai.serving.api import ServingOptions
from cnai.serving.asgi import proxy_event
from tests.unit.local.alias_world import FUNCTION, MODEL, AliasWorld, make_world


@pytest.fixture
def world(fake_aws_env: None, tmp_path: Path) -> Iterator[AliasWorld]:
    with mock_aws():
        yield make_world(tmp_path / "artifacts")


def follower(world: AliasWorld, tmp_path: Path, **kwargs: Any) -> AliasFollower:
    options = ServingOptions(audit_sink=f"file:{tmp_path / 'audit.jsonl'}")
    return AliasFollower(AliasRef(FUNCTION), options, lambda_client=world.lambda_, report=lambda line: None, **kwargs)


def call(handler: AliasFollower, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    raw = None if body is None else json.dumps(body).encode()
    event = proxy_event(method, path, {"Content-Type": "application/json"}, raw, "127.0.0.1", "local:test")
    response = handler.handle(event, LocalContext())
    return response["statusCode"], json.loads(response["body"]) if response["body"] else None


def answered_by(handler: AliasFollower, n: int) -> Counter[str]:
    seen: Counter[str] = Counter()
    for _ in range(n):
        status, body = call(handler, "POST", f"/v1/models/{MODEL}/predict", {"inputs": "i lost my card"})
        assert status == 200, body
        seen[body["package_version"]] += 1
    return seen


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("cnai-dev-predict", AliasRef("cnai-dev-predict", "live")),
        ("cnai-dev-predict:blue", AliasRef("cnai-dev-predict", "blue")),
        ("arn:aws:lambda:us-east-1:1:function:f", AliasRef("arn:aws:lambda:us-east-1:1:function:f", "live")),
        ("arn:aws:lambda:us-east-1:1:function:f:live", AliasRef("arn:aws:lambda:us-east-1:1:function:f", "live")),
    ],
)
def test_an_alias_is_named_function_colon_alias(text: str, expected: AliasRef) -> None:
    assert AliasRef.parse(text) == expected


@pytest.mark.parametrize(("text", "problem"), [("", "name the predict function"), ("f:3", "not an alias name"),
                                               ("arn:aws:s3:::bucket", "not a Lambda function ARN")])  # fmt: skip
def test_a_bad_follow_target_is_refused_naming_the_problem(text: str, problem: str) -> None:
    with pytest.raises(FollowError, match=problem):
        AliasRef.parse(text)


def test_the_routing_names_each_versions_pinned_model_and_share(world: AliasWorld) -> None:
    # Given version 1 pinning registry version 1 and a canary version 2 at 20%
    one, two = world.publish("1"), world.publish("2")
    world.lambda_.create_alias(FunctionName=FUNCTION, Name="live", FunctionVersion=one)
    world.route(one, two, 0.2)
    # When the routing is read
    routing = read_routing(world.lambda_, AliasRef(FUNCTION))
    # Then the stable version comes first with the rest of the traffic, each with the model its environment pins
    shares = [(r.function_version, round(r.weight, 6), r.source.model_package_version) for r in routing.routes]
    assert shares == [(one, 0.8, "1"), (two, 0.2, "2")]
    assert routing.routes[1].source.model_uri.endswith("/v2")


def test_a_version_that_pins_no_model_or_a_missing_alias_is_a_clear_error(world: AliasWorld) -> None:
    # Given the alias on a version whose environment names no artifact
    empty = str(world.lambda_.publish_version(FunctionName=FUNCTION)["Version"])
    world.lambda_.create_alias(FunctionName=FUNCTION, Name="live", FunctionVersion=empty)
    # Then reading it names the variable; and an alias that does not exist is named too
    with pytest.raises(FollowError, match=f"version {empty}, whose {URI_VARIABLE} is empty"):
        read_routing(world.lambda_, AliasRef(FUNCTION))
    with pytest.raises(FollowError, match=f"{FUNCTION}:blue: cannot read the alias's routing"):
        read_routing(world.lambda_, AliasRef(FUNCTION, "blue"))


def test_requests_split_exactly_by_the_canary_weight(world: AliasWorld, tmp_path: Path) -> None:
    # Given the alias at 90% on registry version 1 and 10% on version 2
    one, two = world.publish("1"), world.publish("2")
    world.lambda_.create_alias(FunctionName=FUNCTION, Name="live", FunctionVersion=one)
    world.route(one, two, 0.1)
    served = follower(world, tmp_path)
    # When 100 predictions are asked
    seen = answered_by(served, 100)
    # Then exactly every tenth went to the canary, and each audit record names the version that answered
    assert seen == {"1": 90, "2": 10}
    audited = Counter(
        json.loads(line)["package_version"] for line in (tmp_path / "audit.jsonl").read_text().splitlines()
    )
    assert audited == seen


def test_a_moved_alias_is_served_after_the_poll_and_shown_by_the_model_detail(
    world: AliasWorld, tmp_path: Path
) -> None:
    # Given a server following the alias on version 1
    one, two = world.publish("1"), world.publish("2")
    world.lambda_.create_alias(FunctionName=FUNCTION, Name="live", FunctionVersion=one)
    served = follower(world, tmp_path)
    _, detail = call(served, "GET", f"/v1/models/{MODEL}")
    assert detail["routing"]["stable"] == {"function_version": one, "version": "toy0001", "package_version": "1",
                                           "weight": 1.0}  # fmt: skip
    assert detail["routing"]["canary"] is None
    # When nothing moved, a poll changes nothing
    assert served.poll() is False
    # When the deploy workflow starts a canary of version 2 at 50%
    world.route(one, two, 0.5)
    assert answered_by(served, 4) == {"1": 4}  # not before the poll
    assert served.poll() is True
    # Then both versions answer, and the detail shows the canary, its registry version and weight, and since when
    assert answered_by(served, 4) == {"1": 2, "2": 2}
    _, detail = call(served, "GET", f"/v1/models/{MODEL}")
    assert detail["package_version"] == "1"
    assert detail["routing"]["canary"] == {"function_version": two, "version": "toy0001", "package_version": "2",
                                           "weight": 0.5}  # fmt: skip
    assert detail["routing"]["since"].endswith("Z") and detail["routing"]["alias"] == "live"
    # And once promoted, only version 2 answers
    world.route(two)
    assert served.poll() is True and served.switches == 2
    assert answered_by(served, 3) == {"2": 3}


def test_a_routing_that_does_not_load_leaves_the_old_one_serving(world: AliasWorld, tmp_path: Path) -> None:
    # Given a server on version 1
    one = world.publish("1")
    world.lambda_.create_alias(FunctionName=FUNCTION, Name="live", FunctionVersion=one)
    served = follower(world, tmp_path)
    # When the alias moves to a version whose artifact is missing
    broken = world.publish("2", model_uri=str(tmp_path / "nowhere"))
    world.route(broken)
    # Then the poll fails naming the artifact, and version 1 still answers
    with pytest.raises(FollowError, match="nowhere"):
        served.poll()
    assert answered_by(served, 2) == {"1": 2}


def test_the_openapi_document_describes_the_routing_as_served(world: AliasWorld, tmp_path: Path) -> None:
    # Given a follower serving a canary, and the document it serves
    from jsonschema import Draft202012Validator

    one, two = world.publish("1"), world.publish("2")
    world.lambda_.create_alias(FunctionName=FUNCTION, Name="live", FunctionVersion=one)
    world.route(one, two, 0.25)
    served = follower(world, tmp_path)
    _, document = call(served, "GET", "/v1/openapi.json")
    operation = document["paths"]["/v1/models/{model}"]["get"]
    schema = operation["responses"]["200"]["content"]["application/json"]["schema"]
    validator = Draft202012Validator({**schema, "components": document["components"]})
    # When the detail is asked / Then it matches the document, with the routing and without it (null)
    _, detail = call(served, "GET", f"/v1/models/{MODEL}")
    assert list(validator.iter_errors(detail)) == []
    assert list(validator.iter_errors({**detail, "routing": None})) == []
    assert list(validator.iter_errors({**detail, "routing": {"alias": "live"}})) != []  # the document is strict
