"""Generated rows keep their provenance through the file, and never slip into real data unannounced."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from cnai.data.dataset import read_labeled
from cnai.data.generated import (
    GENERATED_FILE,
    GeneratedRow,
    Provenance,
    read_generated,
    row_id,
    summarize,
    write_generated,
)
from cnai.errors import DataError


def row(text: str, verdict: str = "agrees") -> GeneratedRow:
    provenance = Provenance(generator="smollm2-135m-instruct@abc123", prompt_sha256="b" * 64, seed=11)
    return GeneratedRow(
        id=row_id(provenance, text),
        text=text,
        label="card_arrival",
        train_label="card_arrival" if verdict == "agrees" else "lost_card",
        verdict=verdict,
        teacher_confidence=0.9 if verdict == "agrees" else 0.2,
        provenance=provenance,
    )


def test_rows_round_trip_with_provenance_and_a_stable_hash(tmp_path: Path) -> None:
    # Given two kept rows, one agreeing and one soft
    rows = [row("Where is my card?"), row("A thief took my card", "soft")]
    # When they are written twice and read back
    sha = write_generated(tmp_path / GENERATED_FILE, rows)
    again = write_generated(tmp_path / "again.jsonl.gz", rows)
    back, read_sha = read_generated(tmp_path / GENERATED_FILE)
    # Then the same rows come back, with the same bytes' hash each time
    assert back == rows
    assert sha == again == read_sha
    assert back[1].provenance.seed == 11 and back[1].verdict == "soft"


def test_summary_counts_kept_soft_and_dropped_by_reason() -> None:
    rows = [row("Where is my card?"), row("A thief took my card", "soft")]
    summary = summarize(rows, 5, {"pii": 1, "duplicate_near": 2}, "c" * 64, "gen")
    assert (summary["generated_texts"], summary["kept_texts"], summary["kept_soft"]) == (5, 2, 1)
    assert summary["dropped"] == {"duplicate_near": 2, "pii": 1}


def test_a_row_without_provenance_is_refused_naming_line_and_field(tmp_path: Path) -> None:
    good = row("Where is my card?").model_dump()
    bad = {k: v for k, v in good.items() if k != "provenance"}
    path = tmp_path / GENERATED_FILE
    path.write_bytes(gzip.compress((json.dumps(good) + "\n" + json.dumps(bad) + "\n").encode()))
    with pytest.raises(DataError) as err:
        read_generated(path)
    assert err.value.line == 2
    assert "provenance: is required" in str(err.value)


def test_generated_rows_cannot_be_read_as_real_training_data(tmp_path: Path) -> None:
    # Given a real-data folder that also holds the generated file
    (tmp_path / "train.jsonl").write_text(json.dumps({"text": "hello there", "label": "greeting"}) + "\n")
    write_generated(tmp_path / GENERATED_FILE, [row("Where is my card?")])
    # When it is read as labelled training data
    with pytest.raises(DataError) as err:
        read_labeled(tmp_path)
    # Then the reader stops at the generated row instead of mixing it in
    assert err.value.path.endswith(GENERATED_FILE)
    assert "generated row" in str(err.value)


def test_a_corrupt_generated_file_is_a_data_error(tmp_path: Path) -> None:
    # Given a gzip whose header is fine but whose compressed data is damaged (zlib.error, not an OSError)
    data = bytearray(gzip.compress(bytes(range(256)) * 100))
    for i in range(12, len(data) - 8, 7):
        data[i] ^= 0x5A
    path = tmp_path / GENERATED_FILE
    path.write_bytes(bytes(data))
    # Then the reader names the file instead of raising zlib's error
    with pytest.raises(DataError, match="not a gzip file"):
        read_generated(path)
