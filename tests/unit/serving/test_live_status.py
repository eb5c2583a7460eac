"""GET /v1/models/{model} on the predict Lambda: the registry's approval of the version served and the function's
own alias routing (cnai.serving.live), read from moto on the GET route only and cached for a TTL."""

from __future__ import annotations

import importlib
import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from cnai.local.context import LocalContext
from cnai.registry.packages import Registry
from cnai.serving.api import PredictApi, ServingOptions, build_api
from cnai.serving.asgi import proxy_event
from cnai.serving.live import LiveStatus, TtlCache
from cnai.settings import environment_for
from functions.predict.settings import PredictSettings
from tests.serving_toy import build_toy_artifact
from tests.unit.local.alias_world import FUNCTION, MODEL, AliasWorld, make_world

ACCOUNT, REGION = "123456789012", "us-east-1"  # moto's account; fake_aws_env's region
PREFIX = "cnai-test"
GROUP = f"{PREFIX}-{MODEL}"
DETAIL = f"/v1/models/{MODEL}"


@dataclass
class AliasContext(LocalContext):
    """A Lambda context invoked through `qualifier` (the alias API Gateway calls), as Lambda passes it."""

    qualifier: str | None = "live"

    @property
    def invoked_function_arn(self) -> str:
        arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{FUNCTION}"
        return f"{arn}:{self.qualifier}" if self.qualifier else arn


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def aws(fake_aws_env: None, tmp_path: Path) -> Iterator[AliasWorld]:
    with mock_aws():
        yield make_world(tmp_path / "artifacts")


@pytest.fixture(scope="module")
def toy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_toy_artifact(tmp_path_factory.mktemp("live") / "model", name=MODEL)


def register(approved: bool) -> str:
    """A registry version in GROUP; its package version number."""
    registry = Registry(boto3.client("sagemaker"), PREFIX)
    registry.ensure_group(MODEL)
    version = registry.create_version(
        MODEL, image="img", model_data="s3://b/model.tar.gz", report_uri="s3://b/report.json", metrics={},
        lineage={}, approved=approved,
    )  # fmt: skip
    return str(version.version)


def api_for(toy: Path, tmp_path: Path, live: LiveStatus, package_version: str | None = "1") -> PredictApi:
    options = ServingOptions(
        model_uri=str(toy), model_name=MODEL, model_package_version=package_version,
        audit_sink=f"file:{tmp_path / 'audit.jsonl'}",
    )  # fmt: skip
    return build_api(options, live=live)


def call(api: Any, method: str, path: str, context: Any, body: Any = None) -> tuple[int, Any]:
    raw = None if body is None else json.dumps(body).encode()
    event = proxy_event(method, path, {"Content-Type": "application/json"}, raw, "127.0.0.1", "local:test")
    response = api.handle(event, context)
    return response["statusCode"], json.loads(response["body"])


def test_the_approval_shows_and_a_rejection_shows_after_the_ttl(aws: AliasWorld, toy: Path, tmp_path: Path) -> None:
    # Given registry version 1, approved, served by this function, and a 60 s cache
    version = register(approved=True)
    clock = Clock()
    api = api_for(toy, tmp_path, LiveStatus(package_group=GROUP, ttl_s=60, clock=clock), version)
    # When the detail is asked
    status, body = call(api, "GET", DETAIL, AliasContext())
    # Then it carries the registry's record of that version
    assert status == 200, body
    registry = body["registry"]
    assert (registry["group"], registry["version"], registry["approval"]) == (GROUP, version, "Approved")
    assert registry["registered_at"].endswith("Z") and body["registry_error"] is None
    # When the version is rejected with a reason
    Registry(boto3.client("sagemaker"), PREFIX).reject(MODEL, int(version), "p99 over budget")
    # Then within the TTL the cached answer stands, and once it has passed the rejection shows with its reason
    clock.now += 59
    assert call(api, "GET", DETAIL, AliasContext())[1]["registry"]["approval"] == "Approved"
    clock.now += 2
    registry = call(api, "GET", DETAIL, AliasContext())[1]["registry"]
    assert (registry["approval"], registry["approval_description"]) == ("Rejected", "p99 over budget")


def test_a_registry_failure_answers_the_detail_with_the_reason(aws: AliasWorld, toy: Path, tmp_path: Path) -> None:
    # Given a package group that does not exist (a wrong setting, or no DescribeModelPackage permission)
    api = api_for(toy, tmp_path, LiveStatus(package_group="cnai-test-missing"), "7")
    # When the detail is asked
    status, body = call(api, "GET", DETAIL, AliasContext(qualifier=None))
    # Then the model is described all the same, registry null and the error naming the package it could not read
    assert status == 200, body
    assert body["name"] == MODEL and body["labels"]
    assert body["registry"] is None
    assert "model-package/cnai-test-missing/7" in body["registry_error"]


def test_a_model_without_package_version_has_no_registry_entry(aws: AliasWorld, toy: Path, tmp_path: Path) -> None:
    # Given a model served without a registry version (a bootstrap model), in an existing group
    register(approved=True)
    api = api_for(toy, tmp_path, LiveStatus(package_group=GROUP), None)
    # When the detail is asked
    body = call(api, "GET", DETAIL, AliasContext())[1]
    # Then there is no registry entry and no error: there was nothing to look up
    assert body["registry"] is None and body["registry_error"] is None


def test_the_alias_canary_shows_in_the_lambdas_answer(aws: AliasWorld, toy: Path, tmp_path: Path) -> None:
    # Given the function's alias `live` on version 1 (registry 1) with version 2 (registry 2) at 10%
    one, two = aws.publish("1", str(toy)), aws.publish("2", str(toy))
    aws.lambda_.create_alias(FunctionName=FUNCTION, Name="live", FunctionVersion=one)
    aws.route(one, two, 0.1)
    clock = Clock()
    live = LiveStatus(lambda_client=aws.lambda_, ttl_s=60, clock=clock)
    api = api_for(toy, tmp_path, live, "1")
    # When this container (version 1) is asked through the alias
    status, body = call(api, "GET", DETAIL, AliasContext())
    # Then the routing names both versions and their weights; only its own artifact's version is known
    assert status == 200, body
    routing = body["routing"]
    assert (routing["function"], routing["alias"]) == (f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{FUNCTION}", "live")
    assert (routing["stable"]["function_version"], routing["stable"]["weight"]) == (one, 0.9)
    assert routing["stable"]["version"] == body["version"] and routing["stable"]["package_version"] == "1"
    assert (routing["canary"]["function_version"], routing["canary"]["weight"]) == (two, 0.1)
    assert routing["canary"]["version"] is None and body["routing_error"] is None
    # When the canary is promoted to 100%, Then the answer shows it once the TTL has passed
    aws.route(two)
    assert call(api, "GET", DETAIL, AliasContext())[1]["routing"]["canary"] is not None
    clock.now += 61
    routing = call(api, "GET", DETAIL, AliasContext())[1]["routing"]
    assert routing["stable"]["function_version"] == two and routing["canary"] is None


def test_invoked_without_alias_or_on_predict_nothing_is_read(aws: AliasWorld, toy: Path, tmp_path: Path) -> None:
    # Given a function with no alias in moto at all (any GetAlias would fail and show as routing_error)
    live = LiveStatus(lambda_client=aws.lambda_, package_group=GROUP)
    api = api_for(toy, tmp_path, live, None)
    # When a prediction is asked through the alias
    status, _ = call(api, "POST", f"{DETAIL}/predict", AliasContext(), {"inputs": "i lost my card"})
    # Then the Lambda context was not even read: predict pays nothing for the detail route
    assert status == 200 and live.function_arn == ""
    # When the detail is asked by version (not through an alias), Then there is no routing and no error
    body = call(api, "GET", DETAIL, AliasContext(qualifier="3"))[1]
    assert body["routing"] is None and body["routing_error"] is None
    # When it is asked through an alias that does not exist, Then the error says so and the detail is still 200
    status, body = call(api, "GET", DETAIL, AliasContext(qualifier="blue"))
    assert status == 200 and body["routing"] is None and "cannot read the alias's routing" in body["routing_error"]


def test_the_ttl_cache_reloads_only_after_its_ttl() -> None:
    # Given a 5 s cache
    clock, loads = Clock(), []
    cache: TtlCache[int] = TtlCache(5, clock)
    # When the same key is read at 0, 4.9 and 5 s
    values = []
    for step in (0.0, 4.9, 0.1):
        clock.now += step
        values.append(cache.get("k", lambda: loads.append(1) or len(loads)))
    # Then it is loaded twice: once at first, once when the TTL is over
    assert values == [1, 1, 2]
    with pytest.raises(ValueError, match="ttl_s -1"):
        TtlCache(-1)


def test_a_long_lived_container_keeps_only_what_is_current(aws: AliasWorld, toy: Path, tmp_path: Path) -> None:
    # Given a container that lives through many deploys: versions 1..6 promoted one after the other on `live`
    versions = [aws.publish(str(n), str(toy)) for n in range(1, 7)]
    aws.lambda_.create_alias(FunctionName=FUNCTION, Name="live", FunctionVersion=versions[0])
    clock = Clock()
    live = LiveStatus(lambda_client=aws.lambda_, ttl_s=60, clock=clock)
    api = api_for(toy, tmp_path, live, "1")
    sinces = []
    for older, newer in itertools.pairwise(versions):
        aws.route(older, newer, 0.1)
        clock.now += 61
        sinces.append(call(api, "GET", DETAIL, AliasContext())[1]["routing"]["since"])
        aws.route(newer)
        clock.now += 61
        sinces.append(call(api, "GET", DETAIL, AliasContext())[1]["routing"]["since"])
    # Then it remembers the published versions the alias routes to now and one routing, not every one it saw
    assert set(live._sources) == {versions[-1]}
    assert live._since is not None and live._since[1] == sinces[-1]
    # and the TTL cache holds the live entries only (the expired ones went on the next write)
    assert len(live._routing) == 1
    # When the routing goes back to a version seen before, Then that routing is the one remembered now
    aws.route(versions[-2])
    clock.now += 61
    assert call(api, "GET", DETAIL, AliasContext())[1]["routing"]["stable"]["function_version"] == versions[-2]
    assert live._since is not None and live._since[0] == ((versions[-2], 1.0),)
    assert set(live._sources) == {versions[-2]}


def test_the_handler_gives_its_api_the_functions_live_status(
    toy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the predict function's environment as infra builds it, with the package group
    env = environment_for(
        PredictSettings, model_name=MODEL, model_uri=str(toy), model_package_group=GROUP,
        audit_sink=f"file:{tmp_path / 'audit.jsonl'}",
    )  # fmt: skip
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    # When the function starts (its module is imported: a cold start)
    handler = importlib.reload(importlib.import_module("functions.predict.handler"))
    # Then its API describes models with the function's LiveStatus, on the group of its settings
    assert handler.API.live is handler.LIVE and handler.LIVE.package_group == GROUP
