"""The augmentation filters on crafted generated rows: each bad row is dropped for its own, counted reason."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cnai.data.dataset import LabeledData
from cnai.data.generated import Provenance
from models.augment import (
    Candidate,
    CheapFilters,
    Complete,
    Recipe,
    Sampling,
    augment,
    build_prompts,
    judge,
    parse_candidates,
    refit_rows,
    stage,
    without_cut_line,
)
from models.config import HyperParameters

LABELS = ["card_arrival", "lost_card"]
TRAIN = LabeledData(
    texts=[
        "When will my new card arrive?",
        "My card still has not arrived after two weeks",
        "I lost my card yesterday, what do I do?",
        "Someone stole my card on the train",
    ],
    labels=["card_arrival", "card_arrival", "lost_card", "lost_card"],
    source="train.csv",
    sha256="0" * 64,
    where=[("train.csv", i) for i in range(2, 6)],
)
TEST = ["how long does it take for the card to be delivered to my home address in the UK"]
PROV = Provenance(generator="scripted", prompt_sha256="a" * 64, seed=7)


def recipe(**changes: object) -> Recipe:
    return Recipe(**{"per_label": 4, **changes})  # type: ignore[arg-type]


def test_each_crafted_bad_row_is_dropped_for_its_reason_and_a_good_one_passes() -> None:
    # Given filters built from the real training rows and the test split
    filters = CheapFilters(TRAIN, TEST, recipe())
    rows = {
        "ok?": "too_short",
        "when will my NEW card arrive": "duplicate_exact",  # a real row, other case and punctuation
        "My card still has not arrived after two week": "duplicate_near",
        "please send the card to john.doe@example.com": "pii",
        "How long does it take for the card to be delivered to my home, please?": "test_overlap",
        "x" * 200: "too_long",
        "Is there a way to track the delivery of my card?": None,
    }
    # When each crafted candidate goes through the filters
    reasons = {text: filters.reason(text, "card_arrival") for text in rows}
    # Then each is dropped for its own reason, and the good one passes
    assert reasons == rows


def test_a_kept_row_counts_as_seen_so_its_repeat_is_a_duplicate() -> None:
    filters = CheapFilters(TRAIN, TEST, recipe())
    assert filters.reason("Is there a way to track my card delivery?", "card_arrival") is None
    assert filters.reason("is there a way to track my card delivery", "lost_card") == "duplicate_exact"


def test_teacher_verdict_agrees_drops_or_keeps_soft_as_the_recipe_says() -> None:
    # Given one candidate the teacher agrees with and one it labels otherwise (a wrong-label row)
    candidates = [
        Candidate("Where is my card, it has not come yet", "card_arrival", PROV),
        Candidate("I think a thief took my card", "card_arrival", PROV),
    ]
    probs = np.array([[0.9, 0.1], [0.2, 0.8]])
    # When the recipe drops disagreeing rows
    kept, dropped = judge(candidates, probs, LABELS, recipe(disagreeing="drop", min_confidence=0.5))
    # Then only the agreeing row remains and the other is counted
    assert [r.text for r in kept] == [candidates[0].text]
    assert kept[0].verdict == "agrees" and kept[0].train_label == "card_arrival"
    assert dropped == Counter({"teacher_disagrees": 1})
    # When the recipe keeps them as soft-labelled transfer examples
    kept, dropped = judge(candidates, probs, LABELS, recipe(disagreeing="soft", min_confidence=0.5))
    # Then the wrong-label row is kept with the teacher's label for the student, its intent recorded apart
    assert not dropped
    soft = kept[1]
    assert (soft.verdict, soft.label, soft.train_label) == ("soft", "card_arrival", "lost_card")
    assert soft.teacher_confidence == pytest.approx(0.2)


def test_judge_refuses_probabilities_of_the_wrong_shape() -> None:
    with pytest.raises(ValueError, match="probabilities: shape"):
        judge([Candidate("text here", "lost_card", PROV)], np.ones((2, 2)), LABELS, recipe())


def test_prompts_are_seeded_show_real_examples_as_turns_and_hash_what_they_ask() -> None:
    # Given a recipe asking for 3 texts per label, 1 per generation, showing 2 real examples
    r = recipe(per_label=3, per_prompt=1, examples=2)
    # When prompts are built twice
    first, second = build_prompts(TRAIN, r), build_prompts(TRAIN, r)
    # Then three prompts per label, identical both times
    assert [p.label for p in first] == ["card_arrival"] * 3 + ["lost_card"] * 3
    assert [(p.sha256, p.sampling) for p in first] == [(p.sha256, p.sampling) for p in second]
    # And each is system, (request, real example) x 2, request: examples of its own label only
    for prompt in first:
        roles = [m["role"] for m in prompt.messages]
        assert roles == ["system", "user", "assistant", "user", "assistant", "user"]
        own = {t for t, label in zip(TRAIN.texts, TRAIN.labels, strict=True) if label == prompt.label}
        assert {m["content"] for m in prompt.messages if m["role"] == "assistant"} == own
        assert prompt.label.replace("_", " ") in prompt.messages[-1]["content"]
    # And another seed changes the sampling seed, hence the prompt's sha256
    assert build_prompts(TRAIN, recipe(per_label=3, seed=1))[0].sha256 != first[0].sha256


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        (
            'Here are 3 messages:\n1. Where is my card?\n2) "Card not here yet"\n- Still waiting',
            ["Where is my card?", "Card not here yet", "Still waiting"],
        ),
        ("  \n\n", []),
        ("Message 1: my card is late", ["my card is late"]),
        ('**Message 1**\n"Where is my card?"', ["Where is my card?"]),
    ],
)
def test_parse_candidates_strips_numbering_bullets_quotes_and_list_headers(output: str, expected: list[str]) -> None:
    assert parse_candidates(output) == expected


def test_whole_stage_counts_every_candidate_once() -> None:
    # Given a scripted generator that writes a good row, a duplicate and a PII row for every prompt
    def complete(messages: list[dict[str, str]], sampling: Sampling) -> str:
        intent = "card arrival" if "card arrival" in messages[1]["content"] else "lost card"
        return f"Has my {intent} request been handled?\nWhen will my new card arrive?\ncall me on 07700 900123"

    def teacher(texts: list[str]) -> np.ndarray:
        return np.tile([0.7, 0.3], (len(texts), 1))

    # When the stage runs with one prompt per label
    outcome = augment(TRAIN, TEST, LABELS, recipe(per_label=3, per_prompt=3), complete, "scripted", teacher)
    # Then generated = kept + every drop, and the kept rows carry their provenance
    assert outcome.generated == 6
    assert outcome.generated == len(outcome.kept) + sum(outcome.dropped.values())
    assert outcome.dropped == Counter({"duplicate_exact": 2, "pii": 2})
    assert {r.verdict for r in outcome.kept} == {"agrees", "soft"}
    assert all(r.provenance.generator == "scripted" and len(r.provenance.prompt_sha256) == 64 for r in outcome.kept)


def test_a_generation_cut_by_its_token_budget_loses_its_unfinished_last_line() -> None:
    assert without_cut_line("Where is my card?\nI'm having a", cut=True) == "Where is my card?"
    assert without_cut_line("Where is my card?\nIs it lost?", cut=False) == "Where is my card?\nIs it lost?"


def test_stage_generates_once_and_a_restarted_job_reads_the_cached_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a recipe that augments, and a scripted generator that counts its loads
    loads: list[str] = []

    def load(uri: str) -> tuple[Complete, str]:
        loads.append(uri)
        return (lambda messages, sampling: "Has the card I ordered been posted?\nMy card is lost, help"), "scripted:1"

    monkeypatch.setattr("models.augment.load_complete", load)
    hp = HyperParameters(augment_per_label=2, augment_per_prompt=2)
    test = LabeledData(TEST, ["card_arrival"], "test.csv", "1" * 64, [("test.csv", 2)])

    def teacher(texts: list[str]) -> np.ndarray:
        return np.tile([0.2, 0.8], (len(texts), 1))

    # When the stage runs, and runs again as a restarted job would
    first, summary = stage(hp, TRAIN, test, LABELS, teacher, tmp_path, "f" * 64)
    again, _ = stage(hp, TRAIN, test, LABELS, teacher, tmp_path, "f" * 64)
    # Then the generator was loaded once, and both runs train on the same rows with the student's labels
    assert loads == ["onnx:bundled"]
    assert (again.texts, again.labels, again.sha256) == (first.texts, first.labels, first.sha256)
    assert summary["generator"] == "scripted:1" and summary["generated_texts"] == 4
    assert summary["kept_texts"] == len(first) and set(first.labels) <= set(LABELS)
    # And with the teacher preferring lost_card, card_arrival rows were kept soft with the teacher's label
    assert summary["kept_soft"] >= 1 and "lost_card" in first.labels


def test_the_teacher_refit_learns_agreeing_rows_by_their_intended_label_or_every_kept_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given kept rows of both verdicts: the teacher prefers lost_card, so card_arrival candidates are soft
    def complete(messages: list[Any], sampling: Sampling) -> str:
        if "lost" in messages[-1]["content"].lower():
            return "My card is lost, help me please\nSomeone took my wallet and the card in it"
        return "Has the card I ordered been posted?\nWhere is the parcel with my new card"

    monkeypatch.setattr("models.augment.load_complete", lambda uri: (complete, "scripted:1"))
    hp = HyperParameters(augment_per_label=2, augment_per_prompt=2)
    test = LabeledData(TEST, ["card_arrival"], "test.csv", "1" * 64, [("test.csv", 2)])
    kept, summary = stage(hp, TRAIN, test, LABELS, lambda t: np.tile([0.2, 0.8], (len(t), 1)), tmp_path, "e" * 64)
    assert 0 < summary["kept_soft"] < summary["kept_texts"]

    # When the refit's rows are chosen both ways
    agreeing, every = refit_rows(kept, "agreeing"), refit_rows(kept, "kept")

    # Then `agreeing` holds only the rows the teacher confirmed, under the label the generator was asked for
    assert len(agreeing) == summary["kept_texts"] - summary["kept_soft"]
    assert set(agreeing.labels) == {"lost_card"} and set(agreeing.texts) <= set(kept.texts)
    # And `kept` is every kept row with the student's labels (the teacher's own for soft rows)
    assert (every.texts, every.labels) == (kept.texts, kept.labels)
    # And the two choices hash apart, so a checkpoint of one is never resumed as the other
    assert len({agreeing.sha256, every.sha256, kept.sha256}) == 3
    # And any other choice is refused naming the recipe field, never read as `agreeing`
    with pytest.raises(ValueError, match="augment_refit_rows: 'all' is not one of agreeing, kept"):
        refit_rows(kept, "all")
