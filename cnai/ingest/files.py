"""Reading records to ingest from CSV, JSON Lines or Parquet files, row by row, without loading it all.

Columns map onto the record contract: `id`, `text`, `label`, `source`, `tenant`, `timestamp`, `metadata`
(a JSON object in JSONL; in CSV and Parquet every other column becomes a metadata entry). `--text-column`
and `--label-column` rename, e.g. BANKING77's `category`; `tenant` and `source` fill missing values.

A file that cannot be read as its format says stops the run with one line naming the file and line
(`DataError`): a CSV quote that is never closed or that swallows line breaks (an unbalanced quote would
otherwise merge every following row into one record), a field over the csv module's limit, bytes that are
not UTF-8. A JSON Lines line that is not usable JSON (invalid, nested too deeply, not UTF-8) is one rejected
row with its reason, like any record the contract refuses: the lines around it are still good.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnai.csvfile import checked_csv, csv_reader, undecodable
from cnai.errors import DataError
from cnai.ingest.records import RecordError

FIELDS = ("id", "text", "label", "source", "tenant", "timestamp", "metadata")
FORMATS = ("csv", "jsonl", "parquet")


@dataclass(frozen=True)
class Mapping:
    text_column: str = "text"
    label_column: str = "label"
    tenant: str = "default"
    source: str | None = None  # default: the file's stem
    multiline: bool = False  # CSV: accept quoted fields that hold line breaks


def detect_format(path: Path) -> str:
    name = path.name.lower()
    for suffix, fmt in ((".csv", "csv"), (".jsonl", "jsonl"), (".ndjson", "jsonl"), (".parquet", "parquet")):
        if name.endswith(suffix):
            return fmt
    raise DataError(str(path), "unknown format (expected a name ending in .csv, .jsonl, .ndjson or .parquet)")


def _shape(row: dict[str, Any], mapping: Mapping, source: str, *, flat: bool) -> dict[str, Any]:
    renamed = dict(row)
    if mapping.text_column != "text" and mapping.text_column in renamed:
        renamed["text"] = renamed.pop(mapping.text_column)
    if mapping.label_column != "label" and mapping.label_column in renamed:
        renamed["label"] = renamed.pop(mapping.label_column)
    if flat:  # NaN is how pandas (and so many Parquet files) writes a missing value: absent, like None
        renamed = {k: v for k, v in renamed.items() if not (isinstance(v, float) and math.isnan(v))}
    out = {k: v for k, v in renamed.items() if k in FIELDS and v not in (None, "")}
    if flat:  # CSV / Parquet: the other columns are metadata
        extra = {k: v for k, v in renamed.items() if k not in FIELDS and v not in (None, "")}
        if extra:
            out["metadata"] = {**extra, **(out.get("metadata") or {})}
    else:  # JSONL keeps unknown keys so the contract rejects them by name
        out.update({k: v for k, v in renamed.items() if k not in FIELDS})
    out.setdefault("tenant", mapping.tenant)
    out.setdefault("source", source)
    return out


def read_rows(path: Path, mapping: Mapping | None = None, fmt: str | None = None) -> Iterator[tuple[str, Any]]:
    """(origin `file:line` or `file:row N`, row) for every row: a dict for `parse_record`, or a RecordError
    for a line that is not even JSON (the producer counts it as rejected with that reason)."""
    mapping = mapping or Mapping()
    if not path.is_file():
        raise DataError(str(path), "file not found")
    fmt = fmt or detect_format(path)
    source = mapping.source or "".join(c if c.isalnum() or c in "._-" else "-" for c in path.stem)[:64] or "file"
    if fmt == "csv":
        with path.open(newline="", encoding="utf-8-sig", errors="surrogateescape") as handle:
            reader = csv_reader(handle, str(path))
            if mapping.text_column not in (reader.fieldnames or ()):
                raise DataError(str(path), f"column {mapping.text_column!r} is missing", 1)
            for start, row in checked_csv(reader, str(path), multiline=mapping.multiline):
                yield f"{path.name}:{start}", _shape(row, mapping, source, flat=True)
    elif fmt == "jsonl":
        with path.open(encoding="utf-8-sig", errors="surrogateescape") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                yield f"{path.name}:{number}", _json_row(line, mapping, source)
    elif fmt == "parquet":
        row_number = 0
        for batch in _parquet(path).iter_batches(batch_size=10_000):
            for row in batch.to_pylist():
                row_number += 1
                yield f"{path.name}:row {row_number}", _shape(row, mapping, source, flat=True)
    else:
        raise DataError(str(path), f"format {fmt!r} is not one of {', '.join(FORMATS)}")


def _parquet(path: Path) -> Any:
    """The opened Parquet file; DataError (not pyarrow's exception) when it is not one."""
    import pyarrow as pa  # the `aws` extra; only this format needs it
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(path)
    except pa.ArrowException as exc:
        raise DataError(str(path), f"not a readable Parquet file ({str(exc).splitlines()[0][:200]})") from None


def _json_row(line: str, mapping: Mapping, source: str) -> Any:
    """One JSON Lines line -> the row for `parse_record`, or a RecordError saying why it is no JSON object."""
    bad = undecodable(line)
    if bad is not None:
        return RecordError(f"line: bytes are not valid UTF-8 ({bad})")
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        return RecordError(f"line: not valid JSON ({exc.msg})")
    except RecursionError:  # e.g. 20,000 '[': json recurses once per level
        return RecordError("line: JSON nested too deeply")
    return _shape(obj, mapping, source, flat=False) if isinstance(obj, dict) else obj


def count_rows(path: Path, fmt: str | None = None, *, multiline: bool = False) -> int | None:
    """How many rows `read_rows` will yield (for a progress bar). A CSV file is parsed whole here, so a file
    that `read_rows` would stop on (DataError, see `checked_csv`) stops the run before anything is sent."""
    fmt = fmt or detect_format(path)
    if fmt == "parquet":
        return int(_parquet(path).metadata.num_rows)
    if fmt == "csv":
        with path.open(newline="", encoding="utf-8-sig", errors="surrogateescape") as handle:
            return sum(1 for _ in checked_csv(csv_reader(handle, str(path)), str(path), multiline=multiline))
    with path.open("rb") as handle:
        return sum(1 for line in handle if line.strip())
