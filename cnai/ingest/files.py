"""Reading records to ingest from CSV, JSON Lines or Parquet files, row by row, without loading it all.

Columns map onto the record contract: `id`, `text`, `label`, `source`, `tenant`, `timestamp`, `metadata`
(a JSON object in JSONL; in CSV and Parquet every other column becomes a metadata entry). `--text-column`
and `--label-column` rename, e.g. BANKING77's `category`; `tenant` and `source` fill missing values.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            if not reader.fieldnames:
                raise DataError(str(path), "file is empty (no header row)")
            if mapping.text_column not in reader.fieldnames:
                raise DataError(str(path), f"column {mapping.text_column!r} is missing", 1)
            for row in reader:
                yield f"{path.name}:{reader.line_num}", _shape(row, mapping, source, flat=True)
    elif fmt == "jsonl":
        with path.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as exc:
                    yield f"{path.name}:{number}", RecordError(f"line: not valid JSON ({exc.msg})")
                    continue
                shaped = _shape(obj, mapping, source, flat=False) if isinstance(obj, dict) else obj
                yield f"{path.name}:{number}", shaped
    elif fmt == "parquet":
        import pyarrow.parquet as pq  # the `aws` extra; only this format needs it

        row_number = 0
        for batch in pq.ParquetFile(path).iter_batches(batch_size=10_000):
            for row in batch.to_pylist():
                row_number += 1
                yield f"{path.name}:row {row_number}", _shape(row, mapping, source, flat=True)
    else:
        raise DataError(str(path), f"format {fmt!r} is not one of {', '.join(FORMATS)}")


def count_rows(path: Path, fmt: str | None = None) -> int | None:
    """About how many rows `read_rows` will yield (for a progress bar), without parsing them."""
    fmt = fmt or detect_format(path)
    if fmt == "parquet":
        import pyarrow.parquet as pq

        return int(pq.ParquetFile(path).metadata.num_rows)
    with path.open("rb") as handle:
        lines = sum(1 for line in handle if line.strip())
    return max(lines - (1 if fmt == "csv" else 0), 0)
