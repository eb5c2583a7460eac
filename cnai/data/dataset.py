"""The labelled-text dataset schema: one reader for CSV and JSON Lines, used by training and evaluation.

Why strict: a silently skipped row changes the label distribution and the dataset hash that the model
card records as lineage, so every unusable row stops the run with its file, line and problem instead.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cnai.csvfile import checked_csv, csv_reader
from cnai.errors import DataError

SUFFIXES = (".csv", ".jsonl", ".ndjson", ".jsonl.gz", ".csv.gz")


@dataclass(frozen=True)
class LabeledData:
    """Texts with their labels, in file order, and the sha256 of the bytes they came from."""

    texts: list[str]
    labels: list[str]
    source: str
    sha256: str
    where: list[tuple[str, int]]  # (file, line) of each row, for errors found after reading

    def __len__(self) -> int:
        return len(self.texts)

    def head(self, n: int) -> LabeledData:
        """The first n rows (tests and quick runs use slices; the hash still names the whole source)."""
        return LabeledData(self.texts[:n], self.labels[:n], self.source, self.sha256, self.where[:n])


def _files_in(path: Path) -> list[Path]:
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.name.endswith(SUFFIXES))
        if not files:
            raise DataError(str(path), f"directory holds no data file (expected one of {', '.join(SUFFIXES)})")
        return files
    if not path.exists():
        raise DataError(str(path), "file not found")
    return [path]


def _decode(path: Path, raw: bytes) -> str:
    if path.name.endswith(".gz"):
        try:
            raw = gzip.decompress(raw)
        except OSError as exc:
            raise DataError(str(path), f"not a valid gzip file ({exc})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DataError(str(path), f"bytes are not valid UTF-8 (byte 0x{raw[exc.start]:02x})", line) from None
    return text.removeprefix("\ufeff")


def _rows_csv(path: Path, text: str, text_col: str, label_col: str) -> Iterable[tuple[int, str, str]]:
    # Strict parsing (cnai.ingest.files.checked_csv): an unclosed quote or a field over the csv module's limit
    # is a DataError naming the line, not a traceback or a silently merged row. Quoted line breaks are
    # accepted here: a training file written by csv.writer may hold multi-line texts on purpose.
    reader = csv_reader(io.StringIO(text, newline=""), str(path))
    columns = reader.fieldnames or []
    for col in (text_col, label_col):
        if col not in columns:
            raise DataError(str(path), f"column {col!r} is missing (columns: {', '.join(columns)})", 1)
    for line, row in checked_csv(reader, str(path), multiline=True):
        yield line, row.get(text_col) or "", row.get(label_col) or ""


def _rows_jsonl(path: Path, text: str, text_col: str, label_col: str) -> Iterable[tuple[int, str, str]]:
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(str(path), f"invalid JSON ({exc.msg})", number) from None
        except RecursionError:
            raise DataError(str(path), "invalid JSON (nested too deeply)", number) from None
        if not isinstance(obj, dict):
            raise DataError(str(path), "each line must be a JSON object", number)
        if obj.get("origin") == "generated":  # synthetic rows are read apart (cnai.data.generated), never mixed in
            raise DataError(str(path), "a generated row in a real-data file (read it with read_generated)", number)
        for col in (text_col, label_col):
            if col not in obj:
                raise DataError(str(path), f"field {col!r} is missing", number)
        value, label = obj[text_col], obj[label_col]
        if not isinstance(value, str):
            raise DataError(str(path), f"field {text_col!r} must be a string", number)
        yield number, value, "" if label is None else str(label)


def read_labeled(path: str | Path, text_col: str = "text", label_col: str = "label") -> LabeledData:
    """Read a CSV / JSONL file (or every such file in a directory, in name order) into LabeledData.

    Raises DataError naming file, line and problem for: a missing file or column, an empty file,
    non-UTF-8 bytes, invalid JSON, an empty text or an empty label.
    """
    root = Path(path)
    digest = hashlib.sha256()
    texts: list[str] = []
    labels: list[str] = []
    where: list[tuple[str, int]] = []
    for file in _files_in(root):
        raw = file.read_bytes()
        digest.update(raw)
        decoded = _decode(file, raw)
        rows = _rows_jsonl if ".json" in file.name or ".ndjson" in file.name else _rows_csv
        for line, text, label in rows(file, decoded, text_col, label_col):
            if not text.strip():
                raise DataError(str(file), f"empty text in column {text_col!r}", line)
            if not label.strip():
                raise DataError(str(file), f"empty label in column {label_col!r}", line)
            texts.append(text)
            labels.append(label.strip())
            where.append((str(file), line))
    if not texts:
        raise DataError(str(root), "file is empty (no data rows)")
    return LabeledData(texts, labels, str(root), digest.hexdigest(), where)


def label_order(labels: Iterable[str]) -> list[str]:
    """The stable label order saved with a model: sorted names, so it never depends on row order."""
    return sorted(set(labels))


def check_known_labels(data: LabeledData, known: Sequence[str]) -> None:
    """Fail on the first row whose label the model was not trained on (it could never be predicted)."""
    allowed = set(known)
    for (file, line), label in zip(data.where, data.labels, strict=True):
        if label not in allowed:
            raise DataError(file, f"label {label!r} does not occur in the training data", line)
