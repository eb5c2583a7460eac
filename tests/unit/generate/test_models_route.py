"""GET /v1/models lists the served generator beside the classifiers, each with its task (so a client finds the
generate route), and GET /v1/models/{generator} answers the generator card's summary (identity, perplexity,
parity, lineage) instead of 404; every answer matches the schema the served OpenAPI document gives it. Real
API Gateway REST proxy events; the toy classifier is real, the generator is scripted with a real card
(tests/integration/test_generate_export.py serves a real exported one)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from cnai.audit.trail import Auditor, FileSink
from cnai.generate import Generation, GenerationParams, Messages
from cnai.generate.artifact import GeneratorCard, read_generator_card
from cnai.local.context import LocalContext
from cnai.model.identity import ModelId
from cnai.serving.api import PredictApi, ServingOptions, build_api
from cnai.serving.generate_api import GenerateRoute
from tests.generate_tiny import write_carded_artifact
from tests.serving_toy import build_toy_artifact

EVENT = json.loads((Path(__file__).parents[2] / "events" / "apigw_rest_predict.json").read_text())


class CardedGenerator:
    """A generator loaded from an artifact, as OnnxGenerator is: its identity is the card's, `card` the card."""

    def __init__(self, card: GeneratorCard | None, identity: ModelId) -> None:
        self.card = card
        self.identity = identity

    def generate(self, messages: Messages | str, params: GenerationParams | None = None) -> Generation:
        return Generation("hello", 1, 1, "stop", 1.0, 1.0)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> tuple[PredictApi, PredictApi, GeneratorCard]:
    """(the API with the toy classifier and a carded generator, the same API without a generator, the card)."""
    root = tmp_path_factory.mktemp("models-route")
    plain = build_api(
        ServingOptions(model_uri=str(build_toy_artifact(root / "model")), audit_sink=f"file:{root / 'audit.jsonl'}")
    )
    card = read_generator_card(write_carded_artifact(root / "drafter", name="drafter"))
    generator = CardedGenerator(card, ModelId(card.name, card.version, "3"))
    auditor = Auditor(FileSink(root / "audit.jsonl"))
    return PredictApi(plain.service, auditor, generate=GenerateRoute(generator)), plain, card


def get(api: PredictApi, path: str) -> tuple[int, Any]:
    event = copy.deepcopy(EVENT)
    event["path"], event["httpMethod"], event["body"] = path, "GET", None
    response = api.handle(event, LocalContext())
    return response["statusCode"], json.loads(response["body"])


def documented(api: PredictApi, path: str, body: Any) -> None:
    """The body validates against the 200 schema the API's own OpenAPI document gives the route."""
    document = api.openapi_document()
    schema = document["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    Draft202012Validator({**schema, "components": document["components"]}).validate(body)


def test_the_generator_is_listed_with_its_task(served: tuple[PredictApi, PredictApi, GeneratorCard]) -> None:
    api, _, card = served
    # When a client lists the models
    status, body = get(api, "/v1/models")
    # Then the classifier and the generator are both there, each with its task and identity
    assert status == 200
    assert body["models"] == [
        {"name": "toy", "version": "toy0001", "package_version": None, "backend": "local",
         "task": "text-classification"},
        {"name": "drafter", "version": card.version, "package_version": "3", "backend": "generate:CardedGenerator",
         "task": "text-generation"},
    ]  # fmt: skip
    documented(api, "/v1/models", body)


def test_without_a_generator_only_classifiers_are_listed(served: tuple[PredictApi, PredictApi, GeneratorCard]) -> None:
    _, plain, _ = served
    status, body = get(plain, "/v1/models")
    assert status == 200 and [(m["name"], m["task"]) for m in body["models"]] == [("toy", "text-classification")]
    # And the generator's name is an unknown model there, as before
    assert get(plain, "/v1/models/drafter")[0] == 404


def test_the_generator_is_described_by_its_card(served: tuple[PredictApi, PredictApi, GeneratorCard]) -> None:
    api, _, card = served
    # When a client asks for the generator by name
    status, body = get(api, "/v1/models/drafter")
    # Then the card's summary comes back: identity and task, perplexity and its ratio, parity, lineage
    assert status == 200, body
    assert (body["name"], body["version"], body["package_version"]) == ("drafter", card.version, "3")
    assert body["task"] == "text-generation" and body["labels"] == []
    assert body["metrics"]["perplexity_ratio"] == {"int8": 1.05} and body["metrics"]["perplexity"]["fp32"] == 10.0
    assert body["parity"] == {"greedy_identical": True, "prompts": 5, "max_new_tokens": 16}
    assert body["lineage"]["hyperparameters"]["recipe_fingerprint"] == "0123456789abcdef"
    assert (body["precision"], body["context_length"], body["created_at"]) == ("int8", 256, card.created_at)
    documented(api, "/v1/models/{model}", body)
    # And the classifier's detail is unchanged but for its task; an unknown name is still 404
    status, toy = get(api, "/v1/models/toy")
    assert status == 200 and toy["task"] == "text-classification" and toy["labels"] == ["card_lost", "refund", "top_up"]
    assert toy["parity"] == {} and toy["precision"] is None
    documented(api, "/v1/models/{model}", toy)
    assert get(api, "/v1/models/nobody")[0] == 404


def test_a_generator_without_a_card_has_its_identity_only(tmp_path: Path) -> None:
    # Given a generator with no artifact behind it (Bedrock, transformers)
    plain = build_api(
        ServingOptions(model_uri=str(build_toy_artifact(tmp_path / "model")), audit_sink=f"file:{tmp_path / 'a.jsonl'}")
    )
    generator = CardedGenerator(None, ModelId("bedrock-haiku", "unversioned"))
    api = PredictApi(plain.service, plain.auditor, generate=GenerateRoute(generator))
    # When it is described / Then its identity and task, and nothing invented
    status, body = get(api, "/v1/models/bedrock-haiku")
    assert status == 200 and (body["version"], body["task"]) == ("unversioned", "text-generation")
    assert body["metrics"] == {} and body["parity"] == {} and body["precision"] is None
    documented(api, "/v1/models/{model}", body)


def test_a_remote_generator_is_described_by_what_its_endpoint_said(tmp_path: Path) -> None:
    # Given a generator served elsewhere that described itself (a SageMaker endpoint's {"describe": true} answer)
    from cnai.generate.wire import GeneratorDetail

    card = read_generator_card(write_carded_artifact(tmp_path / "remote", name="remote-gen"))
    generator = CardedGenerator(None, ModelId("remote-gen", card.version, "4"))
    generator.detail = GeneratorDetail.of(generator.identity, card)  # type: ignore[attr-defined]
    plain = build_api(
        ServingOptions(model_uri=str(build_toy_artifact(tmp_path / "model")), audit_sink=f"file:{tmp_path / 'a.jsonl'}")
    )
    api = PredictApi(plain.service, plain.auditor, generate=GenerateRoute(generator))
    # When it is described / Then the endpoint's summary is answered: the card's figures, parity included
    status, body = get(api, "/v1/models/remote-gen")
    assert status == 200 and (body["package_version"], body["precision"]) == ("4", "int8")
    assert body["parity"]["greedy_identical"] is True and body["metrics"]["perplexity_ratio"] == {"int8": 1.05}
    documented(api, "/v1/models/{model}", body)
