"""POST /v1/models/{model}/generate on the predict API, through real API Gateway REST proxy events: the bounds
(413 naming the field, 400 for a token budget over the cap or a bad body), the deadline handed down, 404 for
another model, and exactly one audit record per call, answered or refused.

The generator here is scripted (a fixed reply, the params it was given recorded): the route's logic is under
test, not a model's; tests/integration/test_generate_export.py runs the route on a real exported model."""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from cnai.audit.trail import Auditor, AuditRecord, FileSink, read_records
from cnai.generate import Generation, GenerationParams, Messages
from cnai.generate.bedrock import BedrockError
from cnai.generate.decode import render_chat
from cnai.generate.params import check_messages
from cnai.local.context import LocalContext
from cnai.model.identity import ModelId
from cnai.serving.api import PredictApi
from cnai.serving.generate_api import GenerateLimits, GenerateRoute
from cnai.serving.service import ModelService

EVENT = json.loads((Path(__file__).parents[2] / "events" / "apigw_rest_predict.json").read_text())
PATH = "/v1/models/drafter/generate"
REPLY = "We have frozen your card and a new one is on its way"


class ScriptedGenerator:
    """Answers a fixed reply, cut to max_new_tokens words, and remembers what it was asked."""

    identity = ModelId("drafter", "abc123", "7")

    def __init__(self) -> None:
        self.asked: list[tuple[list[dict[str, str]], GenerationParams]] = []

    def generate(self, messages: Messages | str, params: GenerationParams | None = None) -> Generation:
        params = params or GenerationParams()
        chat = check_messages(messages)
        self.asked.append((chat, params))
        words = REPLY.split(" ")[: params.max_new_tokens]
        return Generation(" ".join(words), 30, len(words), "length", 5.0, 9.0)


@pytest.fixture
def api(tmp_path: Path) -> Any:
    generator = ScriptedGenerator()
    route = GenerateRoute(generator, GenerateLimits(max_prompt_chars=200, max_messages=4, max_new_tokens=32))
    auditor = Auditor(FileSink(tmp_path / "audit.jsonl"), store_text=False)
    app = PredictApi(ModelService({}), auditor, generate=route)
    app.audit_path = tmp_path / "audit.jsonl"  # type: ignore[attr-defined]
    app.generator = generator  # type: ignore[attr-defined]
    return app


def call(api: Any, body: Any, path: str = PATH) -> tuple[int, dict[str, Any], list[AuditRecord]]:
    event = copy.deepcopy(EVENT)
    event["path"], event["httpMethod"] = path, "POST"
    event["body"] = body if isinstance(body, str) else json.dumps(body)
    path_ = api.audit_path
    before = path_.read_text().count("\n") if path_.exists() else 0
    response = api.handle(event, LocalContext())
    return response["statusCode"], json.loads(response["body"]), list(read_records(path_))[before:]


def test_a_prompt_gets_a_reply_and_one_audit_record(api: Any) -> None:
    # Given a prompt with sampling settings and a stop sequence
    body = {"prompt": "I lost my card", "max_new_tokens": 5, "temperature": 0.5, "top_p": 0.9, "stop": ["\n"]}
    # When it is posted
    status, answer, (record,) = call(api, body)
    # Then the reply, its identity, usage and timing come back
    assert status == 200
    assert answer["text"] == "We have frozen your card"
    assert (answer["model"], answer["version"], answer["package_version"]) == ("drafter", "abc123", "7")
    assert answer["usage"] == {"tokens_in": 30, "tokens_out": 5} and answer["finish_reason"] == "length"
    # And the generator got the settings, under the server's deadline
    ((chat, params),) = api.generator.asked
    assert chat == [{"role": "user", "content": "I lost my card"}]
    assert (params.max_new_tokens, params.temperature, params.top_p, params.stop) == (5, 0.5, 0.9, ("\n",))
    assert params.deadline_s == GenerateLimits.deadline_s
    # And the audit record holds hashes and counts, never the text
    assert record.status == 200 and record.model == "drafter" and record.model_version == "abc123"
    assert record.package_version == "7" and record.backend == "generate:ScriptedGenerator"
    assert record.inputs[0].sha256 == hashlib.sha256(b"I lost my card").hexdigest() and record.texts is None
    assert record.generation is not None
    assert record.generation.prompt_sha256 == hashlib.sha256(render_chat(chat).encode()).hexdigest()
    assert record.generation.output_sha256 == hashlib.sha256(b"We have frozen your card").hexdigest()
    assert (record.generation.tokens_in, record.generation.tokens_out) == (30, 5)
    assert "We have" not in api.audit_path.read_text()


def test_a_caller_deadline_shorter_than_the_servers_wins(api: Any) -> None:
    status, _, _ = call(api, {"messages": [{"role": "user", "content": "hi"}], "deadline_ms": 250})
    assert status == 200 and api.generator.asked[0][1].deadline_s == 0.25


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"prompt": "x" * 201}, 413, "prompt"),
        ({"messages": [{"role": "user", "content": "a"}] * 5}, 413, "messages"),
        ({"prompt": "hi", "max_new_tokens": 33}, 400, "max_new_tokens"),
        ({"prompt": "hi", "messages": [{"role": "user", "content": "a"}]}, 400, "body"),
        ({"prompt": "hi", "temperature": 3}, 400, "temperature"),
        ({"prompt": "hi", "stop": ["x"] * 9}, 400, "stop"),
        (
            {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]},
            400,
            "messages.1.role",
        ),
        ({"prompt": "hi", "extra": 1}, 400, "extra"),
    ],
)
def test_bounds_are_refused_naming_the_field_and_audited(
    api: Any, body: dict[str, Any], status: int, field: str
) -> None:
    # Given a request over a bound or malformed / When posted
    got, answer, audit = call(api, body)
    # Then the status and the field to fix, nothing generated
    assert got == status, answer
    assert any(f["field"] == field for f in answer["error"].get("fields", [])), answer
    assert api.generator.asked == []
    # And one audit record of the refusal, without a generation block
    (record,) = audit
    assert record.status == status and record.generation is None and record.error == answer["error"]["code"]


def test_another_model_name_is_404_and_audited(api: Any) -> None:
    status, answer, (record,) = call(api, {"prompt": "hi"}, path="/v1/models/other/generate")
    assert status == 404 and answer["error"]["code"] == "unknown_model"
    assert record.model == "other" and record.model_version is None and record.status == 404


def test_without_a_generator_the_route_is_not_served(tmp_path: Path) -> None:
    # Given a predict API built without a generator / When generate is posted / Then 404, and no audit record
    api = PredictApi(ModelService({}), Auditor(FileSink(tmp_path / "audit.jsonl")))
    event = copy.deepcopy(EVENT)
    event["path"], event["body"] = PATH, json.dumps({"prompt": "hi"})
    assert api.handle(event, LocalContext())["statusCode"] == 404
    assert not (tmp_path / "audit.jsonl").exists() or (tmp_path / "audit.jsonl").read_text() == ""


@pytest.fixture
def classifier_api(tmp_path: Path) -> Any:
    """The toy intent classifier (tests/serving_toy.py) served beside the scripted generator."""
    from cnai.model.predictor import Predictor
    from cnai.serving.backends import LocalBackend
    from tests.serving_toy import build_toy_artifact

    predictor = Predictor.from_uri(str(build_toy_artifact(tmp_path / "model")))
    generator = ScriptedGenerator()
    app = PredictApi(
        ModelService({"toy": LocalBackend(predictor, "toy", None)}),
        Auditor(FileSink(tmp_path / "audit.jsonl")),
        generate=GenerateRoute(generator, GenerateLimits(max_new_tokens=32)),
    )
    app.audit_path = tmp_path / "audit.jsonl"  # type: ignore[attr-defined]
    app.generator = generator  # type: ignore[attr-defined]
    return app


def test_draft_reply_classifies_then_drafts_conditioned_on_the_intent(classifier_api: Any) -> None:
    # Given a predict call asking for a drafted reply
    status, body, (record,) = call(
        classifier_api, {"inputs": ["I lost my card"], "draft_reply": True}, path="/v1/models/toy/predict"
    )
    # Then the label and one draft come back
    assert status == 200, body
    assert body["predictions"][0]["label"] == "card_lost" and body["drafts"] == [REPLY]
    # And the generator was told the intent, in the system turn, with the customer's text as the user turn
    ((chat, params),) = classifier_api.generator.asked
    assert "card lost" in chat[0]["content"] and chat[1] == {"role": "user", "content": "I lost my card"}
    assert params.max_new_tokens == 32 and params.deadline_s is not None
    # And the predict audit record carries the drafts' hashes and token counts
    assert record.outputs and record.outputs[0].label == "card_lost"
    assert record.generation is not None and record.generation.tokens_out == len(REPLY.split(" "))
    assert record.generation.output_sha256 == hashlib.sha256(REPLY.encode()).hexdigest()


def test_draft_reply_is_bounded_and_needs_a_generator(classifier_api: Any, tmp_path: Path) -> None:
    # Given five inputs with draft_reply / Then 413 naming draft_reply, and nothing generated
    status, body, _ = call(
        classifier_api, {"inputs": ["I lost my card"] * 5, "draft_reply": True}, path="/v1/models/toy/predict"
    )
    assert status == 413 and body["error"]["fields"][0]["field"] == "draft_reply"
    assert classifier_api.generator.asked == []
    # And a plain predict answers without drafts
    status, body, _ = call(classifier_api, {"inputs": "I lost my card"}, path="/v1/models/toy/predict")
    assert status == 200 and body["drafts"] is None
    # And without a generator served, draft_reply is a 400 naming it
    classifier_api.generate = None
    status, body, _ = call(
        classifier_api, {"inputs": "I lost my card", "draft_reply": True}, path="/v1/models/toy/predict"
    )
    assert status == 400 and body["error"]["fields"][0]["field"] == "draft_reply"


@pytest.mark.parametrize("path", [PATH + "/", PATH + "//"])
def test_trailing_slashes_are_served_and_audited_like_the_plain_path(api: Any, path: str) -> None:
    # Given the route pattern Powertools matches (any number of trailing slashes), When one is posted
    status, _, records = call(api, {"prompt": "I lost my card", "max_new_tokens": 3}, path=path)
    # Then it is answered and audited once, with its generation block, as the plain path is
    assert status == 200
    assert len(records) == 1 and records[0].generation is not None and records[0].model == "drafter"


def test_a_failing_hosted_generator_is_a_502_and_audited(api: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a hosted generator (Bedrock) that refuses the call
    def refuse(messages: Messages | str, params: GenerationParams | None = None) -> Generation:
        raise BedrockError("bedrock drafter: ThrottlingException: slow down")

    monkeypatch.setattr(api.generator, "generate", refuse)
    # When a prompt is posted / Then a 502 the caller may retry, not a 500, and the refusal is audited
    status, answer, (record,) = call(api, {"prompt": "I lost my card"})
    assert status == 502 and answer["error"]["code"] == "backend_unavailable"
    assert record.status == 502 and record.generation is None
