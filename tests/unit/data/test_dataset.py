"""The dataset reader: every unusable row stops the run with file, line and problem."""

from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cnai.data.dataset import check_known_labels, label_order, read_labeled
from cnai.errors import DataError


def write_csv(path: Path, rows: list[dict[str, str]], fields: tuple[str, ...] = ("text", "label")) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(fields))
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_reads_csv_in_file_order_with_hash(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "d.csv", [{"text": "a b", "label": "x"}, {"text": "c", "label": "y"}])
    data = read_labeled(path)
    assert data.texts == ["a b", "c"]
    assert data.labels == ["x", "y"]
    assert data.where == [(str(path), 2), (str(path), 3)]
    assert len(data.sha256) == 64


def test_missing_column_names_it_and_lists_the_columns(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "d.csv", [{"text": "a", "label": "x"}])
    with pytest.raises(DataError) as err:
        read_labeled(path, label_col="category")
    assert err.value.line == 1
    assert "'category' is missing" in str(err.value)
    assert "text, label" in str(err.value)


@pytest.mark.parametrize("content", [b"", b"text,label\n"])
def test_empty_file_is_an_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "d.csv"
    path.write_bytes(content)
    with pytest.raises(DataError, match="empty"):
        read_labeled(path)


def test_non_utf8_bytes_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_bytes(b"text,label\nfine,x\ncaf\xe9,y\n")
    with pytest.raises(DataError) as err:
        read_labeled(path)
    assert err.value.line == 3
    assert "UTF-8" in err.value.problem
    assert str(path) in str(err.value)


def test_empty_text_names_the_line(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "d.csv", [{"text": "ok", "label": "x"}, {"text": "   ", "label": "x"}])
    with pytest.raises(DataError, match=r"d\.csv:3: empty text"):
        read_labeled(path)


def test_empty_label_names_the_line(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "d.csv", [{"text": "ok", "label": ""}])
    with pytest.raises(DataError, match=r":2: empty label"):
        read_labeled(path)


def test_label_in_test_absent_from_train_names_file_and_line(tmp_path: Path) -> None:
    train = read_labeled(write_csv(tmp_path / "train.csv", [{"text": "a", "label": "x"}]))
    test = read_labeled(write_csv(tmp_path / "test.csv", [{"text": "a", "label": "x"}, {"text": "b", "label": "new"}]))
    with pytest.raises(DataError) as err:
        check_known_labels(test, label_order(train.labels))
    assert err.value.path.endswith("test.csv")
    assert err.value.line == 3
    assert "'new'" in err.value.problem


def test_jsonl_gz_and_directories(tmp_path: Path) -> None:
    folder = tmp_path / "channel"
    folder.mkdir()
    lines = [json.dumps({"text": f"t{i}", "label": "a" if i % 2 else "b"}) for i in range(4)]
    (folder / "part-1.jsonl.gz").write_bytes(gzip.compress("\n".join(lines[:2]).encode()))
    (folder / "part-2.jsonl").write_text("\n".join(lines[2:]) + "\n\n")
    data = read_labeled(folder)
    assert data.texts == ["t0", "t1", "t2", "t3"]
    assert label_order(data.labels) == ["a", "b"]


def test_invalid_json_line(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text('{"text": "a", "label": "x"}\n{"text": "b", \n')
    with pytest.raises(DataError, match=r"d\.jsonl:2: invalid JSON"):
        read_labeled(path)


def test_json_nested_too_deeply_is_a_data_error(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text('{"text": "a", "label": "x"}\n' + "[" * 20000 + "\n")
    with pytest.raises(DataError, match=r"d\.jsonl:2: invalid JSON \(nested too deeply\)"):
        read_labeled(path)


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ('text,label\nfine,x\n"unclosed,y\nmore,z\n', "a quote opened here is never closed"),
        (f'text,label\nfine,x\n"{"a" * (csv.field_size_limit() + 1)}",y\n', "csv module's limit"),
        ('text,label\nfine,x\n"quoted" tail,y\n', "text follows a closing quote"),
    ],
)
def test_broken_csv_names_the_line_where_the_record_starts(tmp_path: Path, content: str, problem: str) -> None:
    # Given a training CSV whose third line is broken (an unbalanced quote, a field over the csv limit)
    path = tmp_path / "d.csv"
    path.write_text(content, encoding="utf-8")
    # When read / Then a DataError names the file and line 3 instead of a csv.Error or a merged row
    with pytest.raises(DataError) as err:
        read_labeled(path)
    assert (err.value.path, err.value.line) == (str(path), 3)
    assert problem in err.value.problem


def test_multiline_texts_in_a_training_csv_are_kept(tmp_path: Path) -> None:
    # Given a training CSV written by csv.writer with a text holding a line break
    path = write_csv(tmp_path / "d.csv", [{"text": "two\nlines", "label": "x"}, {"text": "one", "label": "y"}])
    # When read / Then the text is whole and each row is located at the line it starts on
    data = read_labeled(path)
    assert data.texts == ["two\nlines", "one"] and data.where == [(str(path), 2), (str(path), 4)]


def test_missing_file_and_empty_directory(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="file not found"):
        read_labeled(tmp_path / "nope.csv")
    with pytest.raises(DataError, match="no data file"):
        read_labeled(tmp_path)


def test_label_order_is_sorted_and_independent_of_row_order() -> None:
    assert label_order(["b", "a", "c", "a"]) == label_order(["c", "a", "b"]) == ["a", "b", "c"]


texts = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1).filter(lambda s: s.strip() != "")
labels = st.text("abcxyz_", min_size=1)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(texts, labels), min_size=1, max_size=8))
def test_csv_round_trip_keeps_every_text(tmp_path_factory: pytest.TempPathFactory, rows: list[tuple[str, str]]) -> None:
    path = write_csv(tmp_path_factory.mktemp("h") / "d.csv", [{"text": t, "label": lab} for t, lab in rows])
    data = read_labeled(path)
    # csv normalises \r\n inside quoted fields; everything else must come back byte for byte
    assert [t.replace("\r\n", "\n").replace("\r", "\n") for t in data.texts] == [
        t.replace("\r\n", "\n").replace("\r", "\n") for t, _ in rows
    ]
    assert data.labels == [lab.strip() for _, lab in rows]
