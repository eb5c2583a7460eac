"""Reading files to ingest: every broken file is one line naming the file and the line, never a traceback or a
silently merged record; a line that is not usable JSON, or a number JSON cannot hold, is one rejected row."""

from __future__ import annotations

import csv
import io
import json
import tempfile
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from moto import mock_aws
from typer.testing import CliRunner

from cnai.cli import app
from cnai.errors import DataError
from cnai.ingest.files import Mapping, count_rows, read_rows
from cnai.ingest.producer import SendSummary, entries_from_rows

STREAM = "cnai-ingest-files-test"


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8", newline="")
    return path


def rows_of(path: Path, **mapping: object) -> list[tuple[str, object]]:
    return list(read_rows(path, Mapping(**mapping)))  # type: ignore[arg-type]


def cli(*args: str) -> tuple[int, str, str]:
    """Exit code, everything printed (stderr included) and stdout alone."""
    result = CliRunner().invoke(app, ["ingest", *args])
    return result.exit_code, result.output, result.stdout


def squash(text: str) -> str:
    """Without whitespace: rich wraps a long error line at the terminal's width."""
    return "".join(text.split())


@pytest.fixture
def stream(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": "us-east-1"}.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        boto3.client("kinesis").create_stream(StreamName=STREAM, ShardCount=1)
        yield STREAM


# ---- CSV: a quote that is never closed or swallows line breaks ----


@pytest.mark.parametrize(
    ("content", "line", "problem"),
    [
        # the quote runs to the end of the file: the csv module would return one merged record
        ('text,label\nhello,a\n"broken,b\nworld,c\nlast,d\n', 3, "never closed"),
        # a second stray quote closes it three lines later: one well-formed looking record of 3 lines
        ('text,label\nhello,a\n"broken,b\nworld,c\noops",d\nlast,e\n', 3, "runs over 3 lines"),
        # no newline after the last line
        ('text,label\nhello,a\n"never closed,b', 3, "never closed"),
        # text after a closing quote
        ('text,label\nhello,a\n"quoted" tail,b\n', 3, "text follows a closing quote"),
    ],
)
def test_csv_with_an_unbalanced_quote_names_the_line_where_it_opened(
    tmp_path: Path, content: str, line: int, problem: str
) -> None:
    # Given a CSV file whose third line opens a quote that is not balanced
    path = write(tmp_path, "records.csv", content)
    # When it is read (or counted, as `cnai ingest` does before sending anything)
    for attempt in (lambda: rows_of(path), lambda: count_rows(path)):
        with pytest.raises(DataError) as info:
            attempt()
        # Then the error names the file and the line where the quote opened
        assert (info.value.path, info.value.line) == (str(path), line)
        assert problem in info.value.problem


def test_multiline_fields_are_read_when_asked_for(tmp_path: Path) -> None:
    # Given a CSV file with a text that really holds a line break
    path = write(tmp_path, "records.csv", 'text,label\nhello,a\n"two\nlines",b\nafter,c\n')
    # When read without --multiline / Then it is refused at the line where the quote opened
    with pytest.raises(DataError, match=r"records\.csv:3: a quote opened here runs over 2 lines"):
        rows_of(path)
    # When read with multiline / Then every record comes with the line it starts on
    rows = rows_of(path, multiline=True)
    assert [(origin, row["text"]) for origin, row in rows] == [  # type: ignore[index]
        ("records.csv:2", "hello"),
        ("records.csv:3", "two\nlines"),
        ("records.csv:5", "after"),
    ]
    assert count_rows(path, multiline=True) == 3


def test_csv_field_over_the_csv_module_limit_is_a_data_error(tmp_path: Path) -> None:
    # Given a field longer than the csv module's limit on line 3
    path = write(tmp_path, "big.csv", f'text,label\nok,a\n"{"x" * (csv.field_size_limit() + 10)}",b\n')
    # When read / Then a DataError names the file, the line and the limit (not a csv.Error traceback)
    with pytest.raises(DataError) as info:
        rows_of(path)
    assert info.value.line == 3 and f"longer than {csv.field_size_limit()} characters" in info.value.problem


def test_csv_bytes_not_utf8_name_the_line(tmp_path: Path) -> None:
    # Given a Latin-1 byte on line 3
    path = write(tmp_path, "latin.csv", b"text,label\nhello,a\ncaf\xe9,b\n")
    # When read / Then the error names the line and the byte
    with pytest.raises(DataError, match=r"latin\.csv:3: bytes are not valid UTF-8 \(byte 0xe9\)"):
        rows_of(path)


single_line = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"), max_size=30)


@settings(max_examples=150, deadline=None)
@given(
    rows=st.lists(st.tuples(single_line.filter(str.strip), single_line), min_size=1, max_size=8),
    data=st.data(),
)
def test_csv_property_a_stray_quote_is_reported_at_its_line(rows: list[tuple[str, str]], data: st.DataObject) -> None:
    # Given any CSV written by csv.writer from single-line values
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["text", "label"])
    writer.writerows(rows)
    lines = buffer.getvalue().split("\n")
    with tempfile.TemporaryDirectory() as folder:
        clean = write(Path(folder), "clean.csv", buffer.getvalue())
        # When it is read as it is / Then every row comes back, with its own line
        read = rows_of(clean)
        assert [origin for origin, _ in read] == [f"clean.csv:{i + 2}" for i in range(len(rows))]
        assert [row.get("text") for _, row in read] == [text for text, _ in rows]  # type: ignore[union-attr]
        # When one row gets a stray quote at its start
        k = data.draw(st.integers(0, len(rows) - 1), label="row")
        broken = [*lines[: k + 1], '"' + lines[k + 1], *lines[k + 2 :]]
        path = write(Path(folder), "broken.csv", "\n".join(broken))
        # Then reading stops with a DataError at that row's line, or (when the quote happens to close on the same
        # line, e.g. before a `"""` of a later field) reads every row at its own line: never a merged record
        try:
            again = rows_of(path)
        except DataError as exc:
            assert exc.line == k + 2, exc
        else:
            assert [origin for origin, _ in again] == [f"broken.csv:{i + 2}" for i in range(len(rows))]


# ---- JSON Lines: bad lines are rejected rows, named by line ----


def test_jsonl_lines_that_are_not_usable_json_are_rejected_with_their_line(tmp_path: Path) -> None:
    # Given good lines around a line nested 100,000 deep, an invalid line and a line that is not UTF-8
    good = json.dumps({"text": "I lost my card", "label": "card_lost"})
    content = "\n".join([good, "[" * 100_000, "{oops", good]).encode() + b'\n{"text": "caf\xe9"}\n'
    path = write(tmp_path, "records.jsonl", content)
    # When its rows are validated as `cnai ingest` does
    summary = SendSummary()
    entries = list(entries_from_rows(read_rows(path), summary))
    # Then the good lines are sent and each bad line is one rejection naming its problem and line
    assert len(entries) == 2
    assert {r: summary.first_rejected[r] for r in summary.rejected} == {
        "line: JSON nested too deeply": "records.jsonl:2",
        "line: not valid JSON (Expecting property name enclosed in double quotes)": "records.jsonl:3",
        "line: bytes are not valid UTF-8 (byte 0xe9)": "records.jsonl:5",
    }


@pytest.mark.parametrize("number", ["1e999", "-1e999", "NaN", "Infinity", "-Infinity"])
def test_jsonl_non_finite_numbers_are_refused_with_the_field(tmp_path: Path, number: str) -> None:
    # Given a record whose metadata holds a number JSON cannot represent
    path = write(tmp_path, "records.jsonl", f'{{"text": "hello", "metadata": {{"score": [1, {number}]}}}}\n')
    # When validated / Then it is rejected naming the field, and nothing reaches the stream
    summary = SendSummary()
    assert list(entries_from_rows(read_rows(path), summary)) == []
    (reason,) = summary.rejected
    assert reason.startswith("metadata: score[1] is not a finite number")


def test_parquet_nan_is_a_missing_value_and_infinity_is_refused(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    # Given a Parquet file (as pandas writes it: NaN for a missing float) with an infinite value in row 2
    table = pa.table({"text": ["a", "b"], "score": [float("nan"), float("inf")]})
    pq.write_table(table, tmp_path / "records.parquet")
    # When validated
    summary = SendSummary()
    entries = list(entries_from_rows(read_rows(tmp_path / "records.parquet"), summary))
    # Then NaN is simply absent, and infinity is refused by name
    assert len(entries) == 1 and b"score" not in entries[0].data
    assert dict(summary.first_rejected) == {
        "metadata: score is not a finite number (JSON has no NaN or Infinity; 1e999 overflows)": "records.parquet:row 2"
    }


def test_a_file_that_is_not_parquet_is_a_data_error(tmp_path: Path) -> None:
    pytest.importorskip("pyarrow")
    path = write(tmp_path, "records.parquet", b"not parquet at all")
    with pytest.raises(DataError, match="not a readable Parquet file"):
        rows_of(path)


# ---- the command line: one line, exit 2 ----


@pytest.mark.parametrize(
    ("content", "where"),
    [
        (f'text,label\nok,a\n"{"x" * 200_000}",b\n', "big.csv:3: a field is longer than"),
        ('text,label\nhello,a\n"broken,b\nworld,c\n', "big.csv:3: a quote opened here is never closed"),
    ],
)
def test_cli_broken_csv_is_one_line_exit_2_and_sends_nothing(
    tmp_path: Path, stream: str, content: str, where: str
) -> None:
    # Given a CSV file broken on line 3
    path = write(tmp_path, "big.csv", content)
    # When `cnai ingest` is asked to send it
    code, output, _ = cli(str(path), "--stream", stream)
    # Then it exits 2 with one line naming the file and line, no traceback, and sent nothing
    assert code == 2, output
    assert squash(where) in squash(output) and "Traceback" not in output
    assert squash(output).startswith(squash(f"error: {path}"))
    shard = boto3.client("kinesis").list_shards(StreamName=stream)["Shards"][0]["ShardId"]
    iterator = boto3.client("kinesis").get_shard_iterator(
        StreamName=stream, ShardId=shard, ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    assert boto3.client("kinesis").get_records(ShardIterator=iterator)["Records"] == []


def test_cli_deep_jsonl_and_infinity_are_rejected_rows_not_tracebacks(tmp_path: Path, stream: str) -> None:
    # Given a JSONL file: a good record, a line nested 100,000 deep, a record with 1e999 in its metadata
    good = json.dumps({"text": "I lost my card", "label": "card_lost"})
    path = write(tmp_path, "records.jsonl", "\n".join([good, "[" * 100_000, '{"text": "x", "metadata": {"v": 1e999}}']))
    # When sent with --strict
    code, output, stdout = cli(str(path), "--stream", stream, "--json", "--strict")
    # Then the good record is sent, the two others are rejected by line and reason, and the exit status says so
    assert code == 3, output
    summary = json.loads(stdout)
    assert summary["sent"] == 1
    assert {r["first"]: r["reason"][:40] for r in summary["rejected_reasons"]} == {
        "records.jsonl:2": "line: JSON nested too deeply",
        "records.jsonl:3": "metadata: v is not a finite number (JSON",
    }
    assert "Traceback" not in output
