"""`explain: true` costs one forward pass per word: its cost per request is bounded (texts explained, words per
explained text), configurable through the predict settings, and refused with 413 naming the field beyond it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cnai.local.context import LocalContext
from cnai.model.predictor import MAX_EXPLAIN_WORDS, Predictor, explain_words
from cnai.serving.api import PredictApi, ServingOptions, build_api
from cnai.serving.asgi import proxy_event
from cnai.serving.service import MAX_EXPLAIN_INPUTS
from cnai.text import normalize_text
from functions.predict.settings import load_settings
from tests.serving_toy import build_toy_artifact

PREDICT = "/v1/models/toy/predict"


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_toy_artifact(tmp_path_factory.mktemp("explain") / "model")


def api_for(model: Path, tmp_path: Path, **env: str) -> PredictApi:
    settings = load_settings({"CNAI_MODEL_URI": str(model), "CNAI_AUDIT_SINK": f"file:{tmp_path / 'a.jsonl'}", **env})
    return build_api(ServingOptions.of(settings))


def predict(api: PredictApi, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    event = proxy_event("POST", PREDICT, {"Content-Type": "application/json"}, json.dumps(body).encode(), "::1", "t")
    response = api.handle(event, LocalContext())
    return response["statusCode"], json.loads(response["body"])


def test_default_bound_is_4_texts_and_64_words(model: Path, tmp_path: Path) -> None:
    # Given the predict API with the default settings
    api = api_for(model, tmp_path)
    assert (MAX_EXPLAIN_INPUTS, api.service.limits.max_explain_words) == (4, 64)
    # When 4 texts of 64 words ask for explanations / Then they are explained
    text = " ".join(["card"] * 64)
    status, body = predict(api, {"inputs": [text] * 4, "explain": True})
    assert status == 200 and all(p["explanation"] for p in body["predictions"])
    # When 5 texts ask / Then 413 names `explain`
    status, body = predict(api, {"inputs": ["I lost my card"] * 5, "explain": True})
    assert status == 413 and body["error"]["fields"] == [
        {"field": "explain", "message": "explain: explanations for 5 texts, at most 4 per request"}
    ]
    # When the second text has 65 words / Then 413 names that text and its word count
    status, body = predict(api, {"inputs": ["refund", text + " money"], "explain": True})
    assert status == 413 and body["error"]["fields"][0]["field"] == "inputs[1]"
    assert "65 words to explain, at most 64 per text" in body["error"]["message"]
    # And the same requests without explain are answered
    assert predict(api, {"inputs": ["I lost my card"] * 5})[0] == 200
    assert predict(api, {"inputs": ["refund", text + " money"]})[0] == 200


def test_bound_is_set_by_the_predict_settings(model: Path, tmp_path: Path) -> None:
    # Given CNAI_MAX_EXPLAIN_INPUTS=1 and CNAI_MAX_EXPLAIN_WORDS=3
    api = api_for(model, tmp_path, CNAI_MAX_EXPLAIN_INPUTS="1", CNAI_MAX_EXPLAIN_WORDS="3")
    # Then one text of 3 words is explained, two texts or 4 words are refused
    assert predict(api, {"inputs": "my card lost", "explain": True})[0] == 200
    assert predict(api, {"inputs": ["card", "refund"], "explain": True})[0] == 413
    status, body = predict(api, {"inputs": "my card is lost", "explain": True})
    assert status == 413 and "4 words to explain, at most 3" in body["error"]["message"]
    # And 0 texts switches explanations off entirely
    off = api_for(model, tmp_path, CNAI_MAX_EXPLAIN_INPUTS="0")
    assert predict(off, {"inputs": "card", "explain": True})[0] == 413
    assert predict(off, {"inputs": "card"})[0] == 200


def test_settings_refuse_a_bound_above_the_predictor_ceiling(model: Path) -> None:
    from functions.predict.settings import SettingsError

    with pytest.raises(SettingsError, match="CNAI_MAX_EXPLAIN_WORDS"):
        load_settings({"CNAI_MODEL_URI": str(model), "CNAI_MAX_EXPLAIN_WORDS": str(MAX_EXPLAIN_WORDS + 1)})


def test_predictor_explains_at_most_max_words_and_only_what_the_model_sees(model: Path) -> None:
    predictor = Predictor.from_dir(model, threads=1)
    # Given a text of 40 words (the toy model reads 32 tokens: [CLS], 30 words, [SEP])
    text = " ".join(["card", "lost", "my", "money"] * 10)
    # When explained / Then only the 30 words the model sees are attributed (removing the others changes nothing)
    assert len(predictor.explain(text)) == 30
    # When explained with a ceiling of 5 words / Then 5 are
    tokens = predictor.explain(text, max_words=5)
    assert [t.token for t in tokens] == ["card", "lost", "my", "money", "card"]


@settings(max_examples=40, deadline=None)
@given(st.text(st.characters(blacklist_categories=("Cs",)), max_size=80))
def test_property_the_api_count_bounds_the_work(model: Path, text: str) -> None:
    # Given any text / When the predictor explains it
    predictor = _predictor(model)
    tokens = predictor.explain(text) if normalize_text(text) else []
    # Then it never removes more words than the API counted when it admitted the text, and each is a real span
    normalized = normalize_text(text)
    assert len(tokens) <= len(explain_words(normalized))
    assert all(normalized[t.start : t.end] == t.token for t in tokens)


_predictors: dict[Path, Predictor] = {}


def _predictor(model: Path) -> Predictor:
    if model not in _predictors:
        _predictors[model] = Predictor.from_dir(model, threads=1, cache_size=0)
    return _predictors[model]
