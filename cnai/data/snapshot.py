"""Freezing curated data into a versioned training dataset: split, manifest, data profile.

`build_snapshot` reads the curated JSONL.gz objects of a date range (partitions `dt=YYYY-MM-DD`), keeps
labelled records, drops repeated ids (defence in depth behind the consumer's dedup), splits train/test by
a hash of the id (a record never changes side when more data arrives), and writes

    datasets/<name>/<version>/train.jsonl.gz   test.jsonl.gz   manifest.json

The manifest lists every input object and output file with sha256 and row counts, label counts, and a data
profile (label distribution, text length statistics, vocabulary) that drift monitoring compares against.
Nothing in it depends on when or where it was built, so the same inputs give the same manifest and the
same `version` (the first 16 hex digits of the manifest's sha256): rebuilding is a no-op, not a new version.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
import statistics
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from cnai.errors import DataError, describe
from cnai.ingest.curate import jsonl_gz

SPLIT_SALT = "cnai-split-v1"
TOP_TOKENS = 200
LENGTH_BINS = (0, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)
_TOKEN = re.compile(r"\[[A-Z]+\]|[^\W\d_]+(?:'[^\W\d_]+)?|\d+")


class Store(Protocol):
    """Where the data lake lives: an S3 bucket in AWS, a folder on a laptop."""

    def list(self, prefix: str) -> list[str]: ...
    def get(self, key: str) -> bytes: ...
    def put(self, key: str, data: bytes, content_type: str) -> None: ...


class S3Store:
    def __init__(self, s3: Any, bucket: str) -> None:
        self.s3 = s3
        self.bucket = bucket

    @contextmanager
    def _missing_bucket(self) -> Iterator[None]:
        """A bucket that does not exist is a wrong lake (DataError, never retried); every other S3 error
        stays botocore's, so throttling and outages remain retryable errors for the workflow."""
        from botocore.exceptions import ClientError

        try:
            yield
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "NoSuchBucket":
                raise DataError(f"s3://{self.bucket}", "bucket does not exist") from None
            raise

    def list(self, prefix: str) -> list[str]:
        with self._missing_bucket():
            pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
            return sorted(o["Key"] for page in pages for o in page.get("Contents", []))

    def get(self, key: str) -> bytes:
        with self._missing_bucket():
            return bytes(self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read())

    def put(self, key: str, data: bytes, content_type: str) -> None:
        with self._missing_bucket():
            self.s3.put_object(Bucket=self.bucket, Key=key, Body=data, ContentType=content_type)


class LocalStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def list(self, prefix: str) -> list[str]:
        base = self.root / prefix
        folder = base if prefix.endswith("/") else base.parent
        if not folder.is_dir():
            return []
        keys = (p.relative_to(self.root).as_posix() for p in folder.rglob("*") if p.is_file())
        return sorted(k for k in keys if k.startswith(prefix))

    def get(self, key: str) -> bytes:
        return (self.root / key).read_bytes()

    def put(self, key: str, data: bytes, content_type: str) -> None:
        del content_type
        target = self.root / key
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)


def store_for(uri: str, s3: Any = None) -> Store:
    """`s3://bucket` (boto3 client `s3`, created when None) or a local folder path."""
    if uri.startswith("s3://"):
        bucket = uri.removeprefix("s3://").strip("/")
        if not bucket or "/" in bucket:
            raise DataError(uri, "expected s3://BUCKET (the data-lake bucket, no prefix)")
        if s3 is None:
            import boto3

            s3 = boto3.client("s3")
        return S3Store(s3, bucket)
    if not Path(uri).is_dir():
        raise DataError(uri, "folder not found (the lake is s3://BUCKET or a local folder holding curated/)")
    return LocalStore(Path(uri))


# A curated line carries more (source, timestamp, metadata, redactions); these are what a snapshot reads.
_CURATED_FIELDS: dict[str, tuple[type, ...]] = {
    "id": (str,),
    "text": (str,),
    "label": (str, type(None)),
    "tenant": (str,),
    "timestamp": (str, type(None)),
}


def read_curated(key: str, data: bytes) -> list[dict[str, Any]]:
    """The rows of one curated JSONL.gz object. DataError naming the object (and the line) when it is not
    gzip, a line is not JSON, or a row lacks a field a snapshot reads: a lake object written by hand or by
    another tool must stop the build with a pointer to it, not with a traceback."""
    try:
        raw = gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as exc:  # BadGzipFile is an OSError; a cut-off file is an EOFError
        raise DataError(key, f"not a valid gzip file ({exc or type(exc).__name__})") from None
    rows = []
    for number, line in enumerate(raw.split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise DataError(key, f"bytes are not valid UTF-8 (byte 0x{line[exc.start]:02x})", number) from None
        except json.JSONDecodeError as exc:
            raise DataError(key, f"not valid JSON ({exc.msg})", number) from None
        except RecursionError:
            raise DataError(key, "not valid JSON (nested too deeply)", number) from None
        if not isinstance(row, dict):
            raise DataError(key, f"expected a JSON object, got {type(row).__name__}", number)
        for name, types in _CURATED_FIELDS.items():
            if not isinstance(row.get(name), types):
                problem = "is missing" if name not in row else f"is {type(row[name]).__name__}, not a string"
                raise DataError(key, f"field {name!r} {problem}", number)
        redactions = row.get("redactions")
        if redactions is not None and not (
            isinstance(redactions, dict) and all(type(n) is int for n in redactions.values())
        ):
            raise DataError(key, "field 'redactions' is not an object of counts", number)
        rows.append(row)
    return rows


def is_test(record_id: str, test_fraction: float) -> bool:
    """Stable split: sha256(salt + id) mapped to [0, 1); below the fraction goes to test."""
    digest = hashlib.sha256(f"{SPLIT_SALT}:{record_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < test_fraction


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _percentile(sorted_values: list[int], q: float) -> int:
    if not sorted_values:
        return 0
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def profile(rows: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Label distribution, text length statistics and vocabulary: the drift-monitoring baseline."""
    labels: Counter[str] = Counter()
    tokens: Counter[str] = Counter()
    lengths: list[int] = []
    token_counts: list[int] = []
    redactions: Counter[str] = Counter()
    for row in rows:
        labels[row["label"]] += 1
        text = row["text"]
        lengths.append(len(text))
        words = [w if w.startswith("[") else w.lower() for w in _TOKEN.findall(text)]
        token_counts.append(len(words))
        tokens.update(words)
        redactions.update(row.get("redactions") or {})
    lengths.sort()
    total = sum(labels.values())
    histogram = Counter(max(b for b in LENGTH_BINS if b <= n) for n in lengths)
    return {
        "rows": total,
        "labels": {
            "count": len(labels),
            "distribution": {k: {"rows": v, "share": round(v / total, 6)} for k, v in sorted(labels.items())},
        },
        "text_length_chars": {
            "min": lengths[0] if lengths else 0,
            "max": lengths[-1] if lengths else 0,
            "mean": round(statistics.fmean(lengths), 3) if lengths else 0.0,
            "p50": _percentile(lengths, 0.5),
            "p90": _percentile(lengths, 0.9),
            "p99": _percentile(lengths, 0.99),
            "histogram": {f">={b}": histogram.get(b, 0) for b in LENGTH_BINS},
        },
        "tokens_per_text": {"mean": round(statistics.fmean(token_counts), 3) if token_counts else 0.0},
        "vocabulary": {
            "size": len(tokens),
            "tokens": sum(tokens.values()),
            "top": [[t, n] for t, n in sorted(tokens.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_TOKENS]],
        },
        "redactions": dict(sorted(redactions.items())),
    }


@dataclass(frozen=True)
class Snapshot:
    """The written dataset: its version, where its manifest is, and the manifest itself."""

    version: str
    prefix: str
    manifest: dict[str, Any]
    created: bool

    @property
    def manifest_key(self) -> str:
        return f"{self.prefix}/manifest.json"


def _days(start: date, end: date) -> list[date]:
    if end < start:
        raise DataError(f"{start}..{end}", "the range ends before it starts")
    return [start + timedelta(days=i) for i in range((end - start).days + 1)]


def build_snapshot(
    store: Store,
    *,
    start: date,
    end: date,
    name: str = "default",
    test_fraction: float = 0.2,
    curated_prefix: str = "curated",
    output_prefix: str = "datasets",
    tenant: str | None = None,
) -> Snapshot:
    """Freeze the labelled curated records with timestamps in [start, end] (UTC dates, inclusive)."""
    if not 0.0 < test_fraction < 1.0:
        raise DataError("test_fraction", f"{test_fraction} is not between 0 and 1")
    if not re.fullmatch(r"[a-z0-9][a-z0-9._-]{0,63}", name):
        raise DataError("name", f"{name!r}: use lower-case letters, digits, '.', '_' or '-'")
    sources = []
    chosen: dict[str, dict[str, Any]] = {}
    seen = unlabeled = duplicates = out_of_range = other_tenant = 0
    lo = start.isoformat()  # ISO 8601 UTC strings compare in time order
    hi = end.isoformat() + "T~"  # '~' sorts after any time of that day
    for day in _days(start, end):
        for key in store.list(f"{curated_prefix}/dt={day.isoformat()}/"):
            data = store.get(key)
            rows = read_curated(key, data)
            sources.append({"key": key, "sha256": sha256(data), "rows": len(rows)})
            for row in rows:
                seen += 1
                stamp = str(row.get("timestamp") or "")
                if not lo <= stamp.removesuffix("Z") <= hi:
                    out_of_range += 1
                    continue
                if tenant is not None and row.get("tenant") != tenant:
                    other_tenant += 1
                    continue
                if not row.get("label"):
                    unlabeled += 1
                    continue
                current = chosen.get(row["id"])
                if current is not None:
                    duplicates += 1
                    if (current["timestamp"], current["text"]) <= (row["timestamp"], row["text"]):
                        continue
                chosen[row["id"]] = row
    if not chosen:
        raise DataError(f"{curated_prefix}/dt={start}..{end}", "no labelled curated records in this range")
    ordered = [chosen[k] for k in sorted(chosen)]
    # Same text, different labels (a relabelled record gets a new id): worth knowing before training.
    labels_by_text: dict[str, set[str]] = {}
    for row in ordered:
        labels_by_text.setdefault(row["text"].casefold(), set()).add(row["label"])
    conflicts = sum(len(labels) > 1 for labels in labels_by_text.values())
    splits: dict[str, list[dict[str, Any]]] = {"train": [], "test": []}
    for row in ordered:
        splits["test" if is_test(row["id"], test_fraction) else "train"].append(row)
    files = {}
    payloads = {}
    for split, rows in splits.items():
        lines = [{"id": r["id"], "text": r["text"], "label": r["label"], "tenant": r["tenant"]} for r in rows]
        payloads[split] = jsonl_gz(lines)
        files[split] = {
            "file": f"{split}.jsonl.gz",
            "sha256": sha256(payloads[split]),
            "rows": len(rows),
            "label_counts": dict(sorted(Counter(r["label"] for r in rows).items())),
        }
    manifest = {
        "schema": "cnai.dataset/1",
        "name": name,
        "range": {"start": start.isoformat(), "end": end.isoformat()},
        "tenant": tenant,
        "split": {"method": f"sha256('{SPLIT_SALT}:' + id) < test_fraction", "test_fraction": test_fraction},
        "sources": sources,
        "files": files,
        "counts": {
            "records_read": seen,
            "kept": len(ordered),
            "unlabeled_skipped": unlabeled,
            "duplicate_ids_skipped": duplicates,
            "out_of_range_skipped": out_of_range,
            "other_tenant_skipped": other_tenant,
            "texts_with_conflicting_labels": conflicts,
        },
        "profile": profile(ordered),
    }
    compact = json.dumps(manifest, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    canonical = compact.encode("utf-8")
    manifest_sha = sha256(canonical)
    version = manifest_sha[:16]
    manifest = {**manifest, "version": version, "manifest_sha256": manifest_sha}
    prefix = f"{output_prefix}/{name}/{version}"
    created = not store.list(f"{prefix}/manifest.json")
    if created:  # content-addressed: an existing version already holds exactly these bytes
        for split, data in payloads.items():
            store.put(f"{prefix}/{split}.jsonl.gz", data, "application/x-ndjson")
        body = json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False).encode("utf-8")
        store.put(f"{prefix}/manifest.json", body, "application/json")
    return Snapshot(version=version, prefix=prefix, manifest=manifest, created=created)


class SnapshotRequest(BaseModel):
    """What the training workflow's PrepareDataset step sends (Step Functions input)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    start: date
    end: date
    name: str = Field("default", pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$")
    test_fraction: float = Field(0.2, gt=0.0, lt=1.0)
    tenant: str | None = None


def prepare_dataset(request: dict[str, Any], store: Store, lake_uri: str) -> dict[str, Any]:
    """The training workflow's entry: validate the request, build (or reuse) the snapshot, and answer the
    URIs of the training job's channels plus the manifest hash the model card records as lineage.

    Raises DataError naming the field when the request is invalid or the range holds no labelled data.
    """
    try:
        req = SnapshotRequest.model_validate(request)
    except ValidationError as exc:
        raise DataError("request", describe(exc)) from None
    snap = build_snapshot(
        store, start=req.start, end=req.end, name=req.name, test_fraction=req.test_fraction, tenant=req.tenant
    )
    base = f"{lake_uri.rstrip('/')}/{snap.prefix}"
    return {
        "dataset": req.name,
        "version": snap.version,
        "manifest_sha256": snap.manifest["manifest_sha256"],
        "manifest_uri": f"{base}/manifest.json",
        "train_uri": f"{base}/train.jsonl.gz",
        "test_uri": f"{base}/test.jsonl.gz",
        "rows": {split: f["rows"] for split, f in snap.manifest["files"].items()},
        "created": snap.created,
    }
