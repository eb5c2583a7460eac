"""Batches, splits and subsets: deterministic, complete, stratified."""

from __future__ import annotations

from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from cnai.data.dataset import LabeledData
from models.data import collate, epoch_batches, eval_batches, split_dev, stratified_indices


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(1, 60), min_size=1, max_size=300), st.integers(1, 40), st.integers(0, 5))
def test_epoch_batches_cover_every_row_once_and_repeat_exactly(lengths: list[int], size: int, epoch: int) -> None:
    batches = epoch_batches(lengths, size, seed=7, epoch=epoch)
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(len(lengths)))
    assert all(1 <= len(b) <= size for b in batches)
    assert batches == epoch_batches(lengths, size, seed=7, epoch=epoch)


def test_epochs_differ() -> None:
    lengths = list(range(1, 200))
    assert epoch_batches(lengths, 8, 1, 0) != epoch_batches(lengths, 8, 1, 1)


def test_eval_batches_sorted_by_length() -> None:
    lengths = [5, 1, 3, 2, 4]
    batches = eval_batches(lengths, 2)
    assert [lengths[i] for b in batches for i in b] == [1, 2, 3, 4, 5]


def test_collate_pads_and_masks() -> None:
    ids, mask = collate([[1, 2, 3], [4]])
    assert ids.tolist() == [[1, 2, 3], [4, 0, 0]]
    assert mask.tolist() == [[1, 1, 1], [1, 0, 0]]


def _data(labels: list[str]) -> LabeledData:
    return LabeledData(
        [f"t{i}" for i in range(len(labels))], labels, "mem", "0" * 64, [("mem", i + 2) for i in range(len(labels))]
    )


def test_stratified_subset_keeps_every_label_and_proportions() -> None:
    labels = ["a"] * 600 + ["b"] * 300 + ["c"] * 100 + ["rare"]
    chosen = stratified_indices(labels, 100, seed=1)
    counts = Counter(labels[i] for i in chosen)
    assert set(counts) == {"a", "b", "c", "rare"}
    assert counts["a"] > counts["b"] > counts["c"]
    assert chosen == sorted(chosen) == stratified_indices(labels, 100, seed=1)


def test_split_dev_is_disjoint_stratified_and_keeps_singletons_in_train() -> None:
    data = _data(["a"] * 100 + ["b"] * 40 + ["solo"])
    train, dev = split_dev(data, 0.1, seed=3)
    assert dev is not None
    assert set(train.texts).isdisjoint(dev.texts)
    assert len(train) + len(dev) == len(data)
    assert Counter(dev.labels) == {"a": 10, "b": 4}
    assert "solo" in train.labels
    assert split_dev(data, 0.0, seed=3) == (data, None)
