"""bench-augment's low-data setting: exactly N real rows per intent, the same rows for the same seed."""

from __future__ import annotations

import csv
from pathlib import Path

from bench.augment import fewshot_file


def test_fewshot_file_keeps_n_rows_per_intent_seeded(tmp_path: Path) -> None:
    # Given a training CSV with 30 rows of one intent and 3 of another
    source = tmp_path / "train.csv"
    with source.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "category"])
        writer.writerows([f"card text {i}", "card_arrival"] for i in range(30))
        writer.writerows([f"pin text {i}", "change_pin"] for i in range(3))
    # When 10 per intent are drawn twice with one seed and once with another
    first = list(csv.DictReader(fewshot_file(source, tmp_path / "a.csv", 10, 42).open()))
    again = list(csv.DictReader(fewshot_file(source, tmp_path / "b.csv", 10, 42).open()))
    other = list(csv.DictReader(fewshot_file(source, tmp_path / "c.csv", 10, 7).open()))
    # Then each intent has min(10, its rows), the draw repeats with the seed and changes without it
    counts = {label: sum(r["category"] == label for r in first) for label in ("card_arrival", "change_pin")}
    assert counts == {"card_arrival": 10, "change_pin": 3}
    assert first == again
    assert first != other
