"""The predictor's serving features: LRU cache, occlusion explanations, abstention, artifact sources."""

from __future__ import annotations

import json
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest

from cnai.errors import ArtifactError
from cnai.model.artifact import pack
from cnai.model.fetch import fetch_artifact
from cnai.model.predictor import LRUCache, Predictor
from cnai.text import normalize_text
from tests.serving_toy import build_toy_artifact


@pytest.fixture(scope="module")
def toy_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_toy_artifact(tmp_path_factory.mktemp("toy") / "model")


@pytest.fixture
def predictor(toy_dir: Path) -> Predictor:
    return Predictor.from_dir(toy_dir, threads=1, cache_size=8)


def test_the_word_that_names_the_intent_wins(predictor: Predictor) -> None:
    # Given texts whose intent one word decides
    # When they are predicted as one batch
    results = predictor.predict(["I lost my card", "please refund my money", "top up please"], top_k=2)
    # Then each gets its label, calibrated probabilities summing under 1 for top-2, best first
    assert [r.label for r in results] == ["card_lost", "refund", "top_up"]
    for r in results:
        assert r.top_k[0][1] >= r.top_k[1][1]
        assert 0.0 < r.score <= 1.0


def test_repeated_text_is_answered_from_the_cache(predictor: Predictor) -> None:
    # Given a text predicted once
    first, hits = predictor.predict_with_stats(["I lost my card"])
    assert hits == 0
    # When the same text arrives with different spacing
    second, hits = predictor.predict_with_stats(["  I lost   my card "])
    # Then the cache answers it, with the same result
    assert hits == 1
    assert second[0].top_k == first[0].top_k
    info = predictor.cache.info()
    assert info["hits"] == 1 and info["misses"] == 1 and info["hit_rate"] == 0.5


def test_cached_answers_equal_fresh_ones(predictor: Predictor) -> None:
    texts = ["stolen card", "refund", "where is my money", "stolen card"]
    cached = predictor.predict(texts, top_k=3)
    fresh = predictor.probabilities([normalize_text(t) for t in texts])
    for result, row in zip(cached, fresh, strict=True):
        assert result.score == pytest.approx(float(row.max()), abs=1e-6)


def test_cache_is_keyed_by_model_version(predictor: Predictor) -> None:
    predictor.predict(["refund please"])
    key = (predictor.version, "refund please")
    assert predictor.cache.get(key) is not None
    assert predictor.cache.get(("another-version", "refund please")) is None


def test_lru_evicts_the_least_recently_used() -> None:
    cache = LRUCache(2)
    a, b, c = (np.asarray([float(i)]) for i in range(3))
    cache.put(("v", "a"), a)
    cache.put(("v", "b"), b)
    cache.get(("v", "a"))  # a is now the most recent
    cache.put(("v", "c"), c)
    assert cache.get(("v", "b")) is None
    assert cache.get(("v", "a")) is not None and cache.get(("v", "c")) is not None


def test_cached_rows_cannot_be_mutated_by_a_caller() -> None:
    cache = LRUCache(4)
    row = np.asarray([0.1, 0.9], dtype=np.float32)
    cache.put(("v", "t"), row)
    row[0] = 5.0  # the caller's array, not the cache's
    stored = cache.get(("v", "t"))
    assert stored is not None and stored[0] == pytest.approx(0.1)
    with pytest.raises(ValueError, match="read-only"):
        stored[0] = 1.0


def test_zero_size_cache_never_stores(toy_dir: Path) -> None:
    predictor = Predictor.from_dir(toy_dir, threads=1, cache_size=0)
    predictor.predict(["refund"])
    _, hits = predictor.predict_with_stats(["refund"])
    assert hits == 0


def test_explanation_points_at_the_deciding_word(predictor: Predictor) -> None:
    # Given a text where "refund" decides the intent and "please"/"my" are filler
    (result,) = predictor.predict(["please refund my money"], explain=True)
    explanation = result.extra["explanation"]
    assert isinstance(explanation, dict)
    tokens = explanation["tokens"]
    # Then every word is attributed, with offsets into the (normalized) text
    assert [t.token for t in tokens] == ["please", "refund", "my", "money"]
    text = "please refund my money"
    assert all(text[t.start : t.end] == t.token for t in tokens)
    # And "refund" carries the largest attribution, filler words none
    best = max(tokens, key=lambda t: t.attribution)
    assert best.token == "refund"
    assert {t.token: t.attribution for t in tokens}["please"] == pytest.approx(0.0, abs=1e-6)


def test_explain_for_a_given_label(predictor: Predictor) -> None:
    tokens = predictor.explain("refund my stolen card", label="card_lost")
    by_word = {t.token: t.attribution for t in tokens}
    assert by_word["card"] > 0 and by_word["stolen"] > 0
    assert by_word["refund"] < 0  # removing "refund" makes card_lost more likely


def test_low_confidence_abstains_with_a_reason(tmp_path: Path) -> None:
    predictor = Predictor.from_dir(build_toy_artifact(tmp_path / "m", abstain_threshold=0.6), threads=1)
    sure, unsure = predictor.predict(["I lost my card", "hello there"])
    assert sure.label == "card_lost" and sure.reason is None
    assert unsure.label is None
    assert unsure.reason is not None and "below the abstention threshold 0.600" in unsure.reason
    assert unsure.top_k[0][0] in {"card_lost", "refund", "top_up"}


def test_empty_batch(predictor: Predictor) -> None:
    assert predictor.predict([]) == []


def test_normalize_text() -> None:
    assert normalize_text("  a\t b\n") == "a b"
    assert normalize_text("Cafe\u0301") == "Caf\u00e9"


# ---- sources: local directory and tarball (S3 is covered in tests/integration/test_sources_s3.py) ----


def test_local_tarball_is_extracted_verified_and_cached(toy_dir: Path, tmp_path: Path) -> None:
    tar = pack(toy_dir, tmp_path / "model.tar.gz")
    cache = tmp_path / "cache"
    artifact = fetch_artifact(tar, cache_dir=cache)
    assert artifact.directory.parent == cache
    assert artifact.labels == ["card_lost", "refund", "top_up"]
    again = fetch_artifact(tar, cache_dir=cache)
    assert again.directory == artifact.directory
    assert not [p for p in cache.iterdir() if p.name.startswith(".fetch-")]  # no staging left behind


def test_damaged_cache_entry_is_replaced(toy_dir: Path, tmp_path: Path) -> None:
    tar = pack(toy_dir, tmp_path / "model.tar.gz")
    cache = tmp_path / "cache"
    artifact = fetch_artifact(tar, cache_dir=cache)
    (artifact.directory / "model.onnx").write_bytes(b"garbage")
    fixed = fetch_artifact(tar, cache_dir=cache)
    assert Predictor(fixed, threads=1).predict(["refund"])[0].label == "refund"


def test_tarball_with_a_corrupt_file_is_refused_and_not_cached(toy_dir: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    shutil.copytree(toy_dir, bad)
    labels = json.loads((bad / "labels.json").read_text())
    (bad / "labels.json").write_text(json.dumps(list(reversed(labels))))  # same size, different bytes
    tar = pack(bad, tmp_path / "model.tar.gz")
    cache = tmp_path / "cache"
    with pytest.raises(ArtifactError, match="sha256 differs"):
        fetch_artifact(tar, cache_dir=cache)
    assert list(cache.iterdir()) == []


def test_truncated_tarball_is_refused(toy_dir: Path, tmp_path: Path) -> None:
    tar = pack(toy_dir, tmp_path / "model.tar.gz")
    data = tar.read_bytes()
    tar.write_bytes(data[: len(data) // 2])
    with pytest.raises(ArtifactError, match=r"not a readable model\.tar\.gz|lacks"):
        fetch_artifact(tar, cache_dir=tmp_path / "cache")


def test_tarball_missing_a_file_is_refused(toy_dir: Path, tmp_path: Path) -> None:
    tar_path = tmp_path / "partial.tar.gz"
    with tarfile.open(tar_path, "w:gz") as tar:
        for name in ("model.onnx", "labels.json", "model_card.json"):
            tar.add(toy_dir / name, arcname=name)
    with pytest.raises(ArtifactError, match=r"lacks tokenizer\.json"):
        fetch_artifact(tar_path, cache_dir=tmp_path / "cache")


def test_tarball_with_a_link_instead_of_a_file_is_refused(toy_dir: Path, tmp_path: Path) -> None:
    tar_path = tmp_path / "link.tar.gz"
    with tarfile.open(tar_path, "w:gz") as tar:
        for name in ("tokenizer.json", "labels.json", "model_card.json"):
            tar.add(toy_dir / name, arcname=name)
        link = tarfile.TarInfo("model.onnx")
        link.type = tarfile.SYMTYPE
        link.linkname = "/etc/passwd"
        tar.addfile(link)
    with pytest.raises(ArtifactError, match="not a regular file"):
        fetch_artifact(tar_path, cache_dir=tmp_path / "cache")


def test_serving_normalizes_text_as_ingestion_does() -> None:
    # A zero-width space is removed from curated training data, so the cache key and the model input drop it too
    assert normalize_text("pass\u200bword\x07 reset") == "password reset"


def test_a_refused_call_is_audited_with_the_version_that_would_have_answered(
    predictor: Predictor, tmp_path: Path
) -> None:
    from cnai.audit.trail import Auditor, FileSink
    from cnai.serving.api import Call, PredictApi
    from cnai.serving.asgi import proxy_event
    from cnai.serving.backends import LocalBackend
    from cnai.serving.service import ModelService

    # Given a service with one local model and a call refused before it answered (413: too many inputs)
    service = ModelService({"toy": LocalBackend(predictor, "toy", package_version="7")})
    api = PredictApi(service, Auditor(FileSink(tmp_path / "a.jsonl")))
    body = json.dumps({"inputs": ["I lost my card", "refund"]}).encode()
    event = proxy_event("POST", "/v1/models/toy/predict", {}, body, "192.0.2.1", "arn:aws:iam::1:user/u")
    # When its record is built (no outcome, model and texts recovered from the event)
    record = api.call_record(Call(event, "r1", error="too_large"), status=413, latency_ms=1.5)
    # Then it names the model, the version and package that would have answered, and hashes both inputs
    assert (record.model, record.model_version, record.package_version) == ("toy", predictor.version, "7")
    assert len(record.inputs) == 2 and record.outputs is None and record.status == 413
    assert record.caller.id == "arn:aws:iam::1:user/u" and record.source_ip == "192.0.2.1"
