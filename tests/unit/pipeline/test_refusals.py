"""PrepareDataset's refusal rules on split summaries: each cause names the rule, the figures and the bar."""

from __future__ import annotations

from collections import Counter

import pytest

from cnai.pipeline.input import DatasetSpec
from cnai.pipeline.prepare import DatasetRefusedError, SplitSummary, check_splits, summarize

SPEC = DatasetSpec.model_validate({"from": "2026-11-01", "to": "2026-11-02", "min_per_label": 3, "max_overlap": 0.1})


def rows(label: str, n: int, start: int = 0, text: str = "t") -> list[dict]:
    return [{"id": f"{label}{i}", "text": f"{text} {label} {i}", "label": label} for i in range(start, start + n)]


def test_good_splits_pass() -> None:
    summary = summarize(rows("a", 5) + rows("b", 5), rows("a", 2, 100) + rows("b", 1, 100))
    check_splits(summary, SPEC, "here")  # no exception


@pytest.mark.parametrize(
    ("summary", "cause"),
    [
        (SplitSummary(Counter(), Counter()), "empty range: here gives no train rows"),
        (SplitSummary(Counter(a=5), Counter()), "empty range: here gives no test rows"),
        (SplitSummary(Counter(a=5, b=2, c=1), Counter(a=1)),
         "too few examples per label: 2 of 3 labels have fewer than min_per_label 3 training rows: c (1), b (2)"),
        (SplitSummary(Counter(a=5), Counter(a=1, zz=2)),
         "unknown labels in test: zz (2) occur in test but not in train"),
        (SplitSummary(Counter(a=5), Counter(a=2), shared_ids=1), "train/test leakage: 1 ids are in both splits"),
        (SplitSummary(Counter(a=5), Counter(a=4), shared_texts=1, examples=("hello",)),
         "train/test leakage: 1 of 4 test texts (25.0%) also occur in train, above max_overlap 10.0%; e.g. 'hello'"),
    ],
)  # fmt: skip
def test_each_refusal_names_its_rule_and_figures(summary: SplitSummary, cause: str) -> None:
    with pytest.raises(DatasetRefusedError) as caught:
        check_splits(summary, SPEC, "here")
    assert cause in str(caught.value)


def test_leakage_compares_texts_case_and_space_insensitively() -> None:
    # Given a test text that is a train text in other case and spacing, under another id
    train = [{"id": "1", "text": "Where is my  CARD", "label": "a"}]
    test = [{"id": "2", "text": "where is my card", "label": "a"}, {"id": "3", "text": "new", "label": "a"}]
    summary = summarize(train, test)
    # Then it counts as shared text, not as a shared id
    assert (summary.shared_texts, summary.shared_ids, summary.examples) == (1, 0, ("where is my card",))
