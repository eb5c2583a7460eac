"""Drift scores against a real BANKING77 dataset profile (cnai.data.snapshot.profile)."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from cnai.data.snapshot import profile
from cnai.monitoring.drift import (
    Baseline,
    Thresholds,
    Traffic,
    assess,
    decide,
    label_psi,
    length_bucket,
    psi,
    psi_allowance,
    unknown_token_rate,
)
from tests.unit.monitoring.traffic import banking_rows, in_domain, intents, off_domain, record

END = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def trained() -> list[str]:
    """The model was trained on the first 20 intents (sorted), as a smaller deployment might be."""
    return intents()[:20]


@pytest.fixture(scope="module")
def baseline(trained: list[str]) -> Baseline:
    rows = [{"text": t, "label": label} for t, label in banking_rows("train") if label in trained]
    return Baseline.from_profile(profile(rows), expected_confidence=0.9)


def by_name(scores: list, name: str):  # type: ignore[no-untyped-def]
    return next(s for s in scores if s.name == name)


def test_psi_is_zero_for_equal_distributions_and_grows_with_the_shift() -> None:
    base = {"a": 50, "b": 30, "c": 20}
    assert psi(base, {"a": 500, "b": 300, "c": 200}) == pytest.approx(0.0, abs=1e-3)
    small, large = psi(base, {"a": 40, "b": 35, "c": 25}), psi(base, {"a": 5, "b": 5, "c": 90})
    assert 0 < small < 0.1 < 1.0 < large


def test_psi_stays_finite_when_one_side_lacks_a_category() -> None:
    # Given a category the baseline never saw and one the window never saw (smoothing, no log(0))
    value = psi({"a": 100, "b": 100}, {"a": 10, "c": 10})
    assert 0 < value < 20


def test_a_window_from_the_training_distribution_stays_within_the_limit_though_raw_psi_may_not(
    baseline: Baseline, trained: list[str]
) -> None:
    # Given 30 windows of 200 answers drawn from the dataset's own label distribution
    labels, weights = zip(*baseline.labels.items(), strict=True)
    raw, over = [], 0
    for seed in range(30):
        drawn = random.Random(seed).choices(labels, weights, k=200)
        score = label_psi(baseline, Traffic(labels=list(drawn), scores=[0.9] * 200), 0.1)
        raw.append(score.value)
        over += score.exceeded
    # Then sampling alone pushes raw PSI well past a bare 0.1 bar, and the allowance absorbs it
    assert max(raw) > 0.1
    assert over == 0
    assert psi_allowance(len(trained), 200, sum(baseline.labels.values())) == pytest.approx(
        (19 + 2 * (2 * 19) ** 0.5) * (1 / 200 + 1 / sum(baseline.labels.values()))
    )


def test_in_domain_traffic_is_no_drift(baseline: Baseline, trained: list[str]) -> None:
    # Given served texts of the trained intents (the test split), answered at the model's accuracy
    rows = [r for r in banking_rows("test") if r[1] in trained]
    traffic = Traffic.from_records(in_domain(rows, trained, END))
    # When scored
    scores = assess(baseline, traffic, Thresholds())
    decision, reasons = decide(scores, traffic, min_predictions=200)
    # Then nothing is over its limit
    assert decision == "no_drift", reasons
    assert by_name(scores, "label_psi").value < 0.25
    assert by_name(scores, "unknown_token_rate").value is None  # no text audited


def test_off_domain_traffic_is_drift_with_reasons(baseline: Baseline, trained: list[str]) -> None:
    # Given texts of intents the model was never trained on
    rows = [r for r in banking_rows("test") if r[1] not in trained][:400]
    traffic = Traffic.from_records(off_domain(rows, trained, END))
    scores = assess(baseline, traffic, Thresholds())
    decision, reasons = decide(scores, traffic, min_predictions=200)
    # Then the label distribution, the confidence and the abstentions all say so, each with its numbers
    assert decision == "drift"
    assert {s.name for s in scores if s.exceeded} >= {"label_psi", "confidence_drop"}
    assert any(r.startswith("label_psi ") and "threshold 0.25" in r for r in reasons)
    # Lengths: other BANKING77 intents are written alike, so the length score rightly stays quiet
    assert not by_name(scores, "length_psi").exceeded


def test_too_little_traffic_is_not_judged(baseline: Baseline, trained: list[str]) -> None:
    rows = [r for r in banking_rows("test") if r[1] not in trained][:50]
    traffic = Traffic.from_records(off_domain(rows, trained, END))
    decision, reasons = decide(assess(baseline, traffic, Thresholds()), traffic, min_predictions=200)
    assert decision == "insufficient_traffic"
    assert "50 predictions" in reasons[0]


def test_length_buckets_follow_the_profile_histogram() -> None:
    assert [length_bucket(n) for n in (0, 15, 16, 70, 5000)] == [0, 0, 16, 64, 4096]


def test_long_inputs_move_the_length_score(baseline: Baseline, trained: list[str]) -> None:
    # Given whole paragraphs pasted in instead of one-line questions
    text = "Please read the attached terms and conditions carefully before you continue. " * 8
    traffic = Traffic.from_records([record(text, trained[0], 0.9, END) for _ in range(300)])
    score = by_name(assess(baseline, traffic, Thresholds()), "length_psi")
    assert score.exceeded and "300 inputs" in score.detail


def test_unknown_token_rate_needs_texts_and_then_sees_foreign_vocabulary(
    baseline: Baseline, trained: list[str]
) -> None:
    rows = [r for r in banking_rows("test") if r[1] in trained]
    familiar = Traffic.from_records(in_domain(rows, trained, END, store_text=True))
    foreign_texts = ["Quantos quilómetros faltam até à estação de comboios mais próxima?"] * 200
    foreign = Traffic.from_records([record(t, trained[0], 0.5, END, store_text=True) for t in foreign_texts])
    assert not unknown_token_rate(baseline, familiar, 0.15).exceeded
    assert unknown_token_rate(baseline, foreign, 0.15).exceeded


def test_refused_calls_are_not_predictions(trained: list[str]) -> None:
    records = [record("hi", trained[0], 0.9, END), record("hi", None, 0.0, END, status=503)]
    traffic = Traffic.from_records(records)
    assert (traffic.records, traffic.predictions) == (1, 1)


def test_an_athena_built_profile_without_distributions_is_reported_not_guessed() -> None:
    # Given the Athena path's manifest profile, which holds the label count only
    baseline = Baseline.from_profile({"labels": {"count": 77}})
    traffic = Traffic(labels=["a"] * 300, scores=[0.9] * 300, lengths=[40] * 300)
    scores = assess(baseline, traffic, Thresholds())
    assert by_name(scores, "label_psi").value is None
    assert "no label distribution" in by_name(scores, "label_psi").detail
    assert by_name(scores, "length_psi").value is None
    assert by_name(scores, "confidence_drop").value is None
