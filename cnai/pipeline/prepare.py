"""PrepareDataset: the training workflow's first state. Freeze or validate the data a job trains on.

A date range of the curated lake becomes a versioned snapshot (cnai.data.snapshot); a given manifest is
checked (its own hash, every file's sha256 and row count). Either way the splits are then refused, with a
cause a person can act on, when:

- the range is empty (no curated object, or no labelled record in it),
- a label has fewer training rows than `min_per_label`,
- the test split holds a label the train split lacks (the model could never predict it),
- train and test leak: the same id on both sides, or more than `max_overlap` of the test texts also
  occurring in train.

The engine: one Lambda reads the range itself when it holds at most `max_objects` objects and `max_bytes`
bytes (gzipped; see docs/registry.md for the measured rate that sets the defaults); above either, and when
an Athena workgroup is configured, Athena builds the snapshot (cnai.pipeline.athena). The local platform
has no Athena and always takes the Lambda path.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any, Literal

from cnai.data.snapshot import S3Store, build_snapshot, sha256
from cnai.errors import CnaiError, DataError
from cnai.ingest.curate import read_jsonl_gz
from cnai.pipeline.athena import (
    AthenaRunner,
    AthenaTable,
    label_counts,
    label_counts_sql,
    overlap_sql,
    unload_sql,
)
from cnai.pipeline.input import DatasetSpec, TrainingRunInput

Engine = Literal["lambda", "athena"]
MANIFEST_SCHEMA = "cnai.dataset/1"


class DatasetRefusedError(CnaiError):
    """The data cannot train a model worth registering. Step Functions shows the class name as the error
    and the message (which names the rule, the figures and the bar) as the cause."""


@dataclass(frozen=True)
class Limits:
    """Above either figure the range goes to Athena (when configured).

    Measured (docs/registry.md): the Lambda path freezes ~17-21k records/s and holds ~1.7 KB of memory per
    record, while the lake stores ~30 gzipped bytes per short record. Memory binds long before the
    15-minute limit: 48 MiB of gzipped JSON Lines is ~1.6M records, ~3 GB of a 4 GB function, ~2 minutes.
    Each object is one sequential GET (~30-50 ms on S3): 5000 objects is ~4 minutes of latency alone.
    """

    max_objects: int = 5_000
    max_bytes: int = 48 << 20


@dataclass(frozen=True)
class AthenaConfig:
    workgroup: str
    database: str
    table: str


@dataclass(frozen=True)
class RangeSize:
    objects: int
    bytes: int


@dataclass(frozen=True)
class SplitSummary:
    """What the refusal rules look at; built from rows (Lambda path) or from queries (Athena path)."""

    train: Counter[str]
    test: Counter[str]
    shared_ids: int = 0
    shared_texts: int = 0
    examples: tuple[str, ...] = ()


def measure_range(s3: Any, bucket: str, curated_prefix: str, start: date, end: date) -> RangeSize:
    """Objects and bytes under the range's partitions: one LIST per 1000 objects, no object read."""
    objects = size = 0
    paginator = s3.get_paginator("list_objects_v2")
    for i in range((end - start).days + 1):
        prefix = f"{curated_prefix}/dt={(start + timedelta(days=i)).isoformat()}/"
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                objects += 1
                size += int(item["Size"])
    return RangeSize(objects, size)


def choose_engine(size: RangeSize, limits: Limits, athena_configured: bool) -> Engine:
    if athena_configured and (size.objects > limits.max_objects or size.bytes > limits.max_bytes):
        return "athena"
    return "lambda"


def _norm(text: str) -> str:
    return " ".join(text.casefold().split())


def summarize(train: Iterable[dict[str, Any]], test: Iterable[dict[str, Any]]) -> SplitSummary:
    train_rows, test_rows = list(train), list(test)
    train_ids = {str(r["id"]) for r in train_rows if "id" in r}
    train_texts = {_norm(str(r["text"])) for r in train_rows}
    shared_ids = sum(1 for r in test_rows if "id" in r and str(r["id"]) in train_ids)
    shared = [str(r["text"]) for r in test_rows if _norm(str(r["text"])) in train_texts]
    return SplitSummary(
        train=Counter(str(r["label"]) for r in train_rows),
        test=Counter(str(r["label"]) for r in test_rows),
        shared_ids=shared_ids,
        shared_texts=len(shared),
        examples=tuple(shared[:3]),
    )


def _listing(items: list[tuple[str, int]], limit: int = 5) -> str:
    shown = ", ".join(f"{label} ({n})" for label, n in items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def check_splits(summary: SplitSummary, spec: DatasetSpec, where: str) -> None:
    """Raise DatasetRefusedError naming the first rule the splits break (checked in the order of the docstring)."""
    if not summary.train or not summary.test:
        empty = "train" if not summary.train else "test"
        raise DatasetRefusedError(f"empty range: {where} gives no {empty} rows (test_fraction {spec.test_fraction})")
    few = sorted(((label, n) for label, n in summary.train.items() if n < spec.min_per_label), key=lambda x: x[1])
    if few:
        raise DatasetRefusedError(
            f"too few examples per label: {len(few)} of {len(summary.train)} labels have fewer than "
            f"min_per_label {spec.min_per_label} training rows: {_listing(few)} ({where})"
        )
    unknown = sorted((label, n) for label, n in summary.test.items() if label not in summary.train)
    if unknown:
        raise DatasetRefusedError(
            f"unknown labels in test: {_listing(unknown)} occur in test but not in train ({where})"
        )
    if summary.shared_ids:
        raise DatasetRefusedError(f"train/test leakage: {summary.shared_ids} ids are in both splits ({where})")
    test_rows = sum(summary.test.values())
    share = summary.shared_texts / test_rows
    if share > spec.max_overlap:
        example = f"; e.g. {summary.examples[0]!r}" if summary.examples else ""
        raise DatasetRefusedError(
            f"train/test leakage: {summary.shared_texts} of {test_rows} test texts ({share:.1%}) also occur in "
            f"train, above max_overlap {spec.max_overlap:.1%}{example} ({where})"
        )


def _result(
    bucket: str, prefix: str, manifest: dict[str, Any], summary: SplitSummary, engine: Engine, channels: dict[str, str]
) -> dict[str, Any]:
    base = f"s3://{bucket}/{prefix}"
    return {
        "manifest_uri": f"{base}/manifest.json",
        "manifest_sha256": manifest["manifest_sha256"],
        "version": manifest["version"],
        "train_uri": f"{base}/{channels['train']}",
        "test_uri": f"{base}/{channels['test']}",
        "rows": {"train": sum(summary.train.values()), "test": sum(summary.test.values())},
        "labels": len(summary.train),
        "engine": engine,
    }


def canonical_sha256(manifest: dict[str, Any]) -> str:
    """The manifest's own hash, as cnai.data.snapshot computes it (everything but version and the hash)."""
    body = {k: v for k, v in manifest.items() if k not in ("version", "manifest_sha256")}
    return sha256(json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))


def parse_s3_uri(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://") or "/" not in uri[5:]:
        raise DataError(uri, "expected s3://BUCKET/KEY")
    bucket, key = uri[5:].split("/", 1)
    return bucket, key


def validate_manifest(s3: Any, uri: str, spec: DatasetSpec) -> dict[str, Any]:
    """Check a given snapshot: its hash, each file's sha256 and rows; then the refusal rules."""
    bucket, key = parse_s3_uri(uri)
    try:
        raw = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except s3.exceptions.NoSuchKey:
        raise DatasetRefusedError(f"manifest {uri}: not found") from None
    try:
        manifest = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DatasetRefusedError(f"manifest {uri}: not JSON ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("schema") != MANIFEST_SCHEMA:
        raise DatasetRefusedError(f"manifest {uri}: schema is not {MANIFEST_SCHEMA}")
    if canonical_sha256(manifest) != manifest.get("manifest_sha256"):
        raise DatasetRefusedError(f"manifest {uri}: manifest_sha256 does not match its content (edited?)")
    prefix = key.rsplit("/", 1)[0]
    if manifest.get("engine") == "athena":
        return athena_manifest_result(s3, bucket, prefix, manifest, spec)
    rows: dict[str, list[dict[str, Any]]] = {}
    for split in ("train", "test"):
        entry = (manifest.get("files") or {}).get(split)
        if not isinstance(entry, dict) or "file" not in entry:
            raise DatasetRefusedError(f"manifest {uri}: files.{split} is missing")
        file_key = f"{prefix}/{entry['file']}"
        try:
            data = s3.get_object(Bucket=bucket, Key=file_key)["Body"].read()
        except s3.exceptions.NoSuchKey:
            raise DatasetRefusedError(f"s3://{bucket}/{file_key}: listed in the manifest, not found") from None
        if sha256(data) != entry.get("sha256"):
            raise DatasetRefusedError(f"s3://{bucket}/{file_key}: sha256 differs from the manifest (changed after it)")
        rows[split] = read_jsonl_gz(data)
        if len(rows[split]) != entry.get("rows"):
            raise DatasetRefusedError(
                f"s3://{bucket}/{file_key}: {len(rows[split])} rows, the manifest says {entry.get('rows')}"
            )
    summary = summarize(rows["train"], rows["test"])
    check_splits(summary, spec, uri)
    channels = {split: manifest["files"][split]["file"] for split in ("train", "test")}
    return _result(bucket, prefix, manifest, summary, "lambda", channels)


def athena_manifest_result(
    s3: Any, bucket: str, prefix: str, manifest: dict[str, Any], spec: DatasetSpec
) -> dict[str, Any]:
    """An Athena-built snapshot is too large to read back here: each part must exist with the ETag the
    manifest recorded, and the refusal rules judge the manifest's own counts."""
    for split in ("train", "test"):
        for part in (manifest.get("files") or {}).get(split, {}).get("parts", []):
            part_key = f"{prefix}/{part['file']}"
            try:
                etag = s3.head_object(Bucket=bucket, Key=part_key)["ETag"].strip('"')
            except s3.exceptions.ClientError:
                raise DatasetRefusedError(f"s3://{bucket}/{part_key}: listed in the manifest, not found") from None
            if etag != part.get("etag"):
                raise DatasetRefusedError(
                    f"s3://{bucket}/{part_key}: ETag differs from the manifest (changed after it)"
                )
    files = manifest.get("files") or {}
    summary = SplitSummary(
        Counter(files.get("train", {}).get("label_counts", {})),
        Counter(files.get("test", {}).get("label_counts", {})),
        shared_texts=int((manifest.get("counts") or {}).get("test_texts_in_train", 0)),
    )
    check_splits(summary, spec, f"s3://{bucket}/{prefix}/manifest.json")
    return _result(bucket, prefix, manifest, summary, "athena", {"train": "train/", "test": "test/"})


def snapshot_in_lambda(
    s3: Any, bucket: str, spec: DatasetSpec, name: str, curated_prefix: str, datasets_prefix: str
) -> dict[str, Any]:
    assert spec.from_ is not None and spec.to is not None
    store = S3Store(s3, bucket)
    try:
        snap = build_snapshot(
            store,
            start=spec.from_,
            end=spec.to,
            name=name,
            test_fraction=spec.test_fraction,
            curated_prefix=curated_prefix,
            output_prefix=datasets_prefix,
            tenant=spec.tenant,
        )
    except DataError as exc:
        raise DatasetRefusedError(f"empty range: {exc}") from None
    # Read back what the job will read: the checks judge the written files, not an in-memory copy.
    rows = {split: read_jsonl_gz(store.get(f"{snap.prefix}/{split}.jsonl.gz")) for split in ("train", "test")}
    summary = summarize(rows["train"], rows["test"])
    check_splits(summary, spec, f"s3://{bucket}/{curated_prefix}/dt={spec.from_}..{spec.to}")
    return _result(bucket, snap.prefix, snap.manifest, summary, "lambda", {s: f"{s}.jsonl.gz" for s in rows})


def snapshot_in_athena(
    s3: Any,
    runner: AthenaRunner,
    config: AthenaConfig,
    bucket: str,
    spec: DatasetSpec,
    name: str,
    curated_prefix: str,
    datasets_prefix: str,
) -> dict[str, Any]:
    """The same snapshot computed by Athena: counts and leakage by query (nothing read into the Lambda),
    the splits written by UNLOAD, then renamed `part-NNNNN.jsonl.gz` so the training side recognizes them.

    The version is the hash of what determines the result (the source objects' ETags, the range and the
    rules), so a rerun over unchanged data reuses the snapshot, as the Lambda path does.
    """
    assert spec.from_ is not None and spec.to is not None
    table = AthenaTable(config.database, config.table)
    sources = []
    for i in range((spec.to - spec.from_).days + 1):
        prefix = f"{curated_prefix}/dt={(spec.from_ + timedelta(days=i)).isoformat()}/"
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            sources += [
                {"key": o["Key"], "etag": o["ETag"].strip('"'), "bytes": o["Size"]} for o in page.get("Contents", [])
            ]
    if not sources:
        raise DatasetRefusedError(
            f"empty range: no curated objects under s3://{bucket}/{curated_prefix}/dt={spec.from_}..{spec.to}"
        )
    rules = {
        "range": [spec.from_.isoformat(), spec.to.isoformat()],
        "tenant": spec.tenant,
        "test_fraction": spec.test_fraction,
    }
    version = hashlib.sha256(json.dumps([sources, rules, "athena-v1"], sort_keys=True).encode()).hexdigest()[:16]
    prefix = f"{datasets_prefix}/{name}/{version}"
    existing = s3.list_objects_v2(Bucket=bucket, Prefix=f"{prefix}/manifest.json").get("KeyCount", 0)
    if existing:  # content-addressed by its inputs: the same sources and rules were frozen before
        manifest = json.loads(s3.get_object(Bucket=bucket, Key=f"{prefix}/manifest.json")["Body"].read())
        return athena_manifest_result(s3, bucket, prefix, manifest, spec)
    counts = label_counts(
        runner.rows(runner.run(label_counts_sql(table, spec.from_, spec.to, spec.test_fraction, spec.tenant)))
    )
    overlap = runner.rows(runner.run(overlap_sql(table, spec.from_, spec.to, spec.test_fraction, spec.tenant)))
    summary = SplitSummary(counts["train"], counts["test"], shared_texts=int(overlap[0][0]) if overlap else 0)
    where = f"s3://{bucket}/{curated_prefix}/dt={spec.from_}..{spec.to} (Athena)"
    if not summary.train and not summary.test:
        raise DatasetRefusedError(f"empty range: no labelled curated records in {where}")
    check_splits(summary, spec, where)
    files: dict[str, Any] = {}
    for split in ("train", "test"):
        target = f"s3://{bucket}/{prefix}/{split}/"
        # UNLOAD refuses a non-empty target: clear what an interrupted attempt (no manifest yet) left there.
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{prefix}/{split}/"):
            for item in page.get("Contents", []):
                s3.delete_object(Bucket=bucket, Key=item["Key"])
        runner.run(unload_sql(table, spec.from_, spec.to, spec.test_fraction, split, target, spec.tenant))
        parts = []
        written = s3.list_objects_v2(Bucket=bucket, Prefix=f"{prefix}/{split}/").get("Contents", [])
        for n, item in enumerate(sorted(written, key=lambda o: o["Key"])):
            new_key = f"{prefix}/{split}/part-{n:05d}.jsonl.gz"
            # Server-side copy (no bytes through the Lambda); the copy's ETag is what a later check compares
            # (a multipart original's ETag differs from its single-part copy's).
            copied = s3.copy_object(Bucket=bucket, Key=new_key, CopySource={"Bucket": bucket, "Key": item["Key"]})
            s3.delete_object(Bucket=bucket, Key=item["Key"])
            etag = copied["CopyObjectResult"]["ETag"].strip('"')
            parts.append({"file": f"{split}/part-{n:05d}.jsonl.gz", "etag": etag, "bytes": item["Size"]})
        files[split] = {
            "prefix": f"{split}/",
            "parts": parts,
            "rows": sum((counts[split]).values()),
            "label_counts": dict(sorted(counts[split].items())),
        }
    manifest = {
        "schema": MANIFEST_SCHEMA,
        "name": name,
        "engine": "athena",
        "range": {"start": spec.from_.isoformat(), "end": spec.to.isoformat()},
        "tenant": spec.tenant,
        "split": {"method": "sha256('cnai-split-v1:' + id) < test_fraction", "test_fraction": spec.test_fraction},
        "sources": sources,
        "files": files,
        "counts": {"kept": sum(f["rows"] for f in files.values()), "test_texts_in_train": summary.shared_texts},
        "profile": {"labels": {"count": len(counts["train"])}},
    }
    manifest = {**manifest, "version": version, "manifest_sha256": canonical_sha256(manifest)}
    body = json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False).encode("utf-8")
    s3.put_object(Bucket=bucket, Key=f"{prefix}/manifest.json", Body=body, ContentType="application/json")
    return _result(bucket, prefix, manifest, summary, "athena", {"train": "train/", "test": "test/"})


def prepare_dataset(
    run: TrainingRunInput,
    *,
    s3: Any,
    bucket: str,
    curated_prefix: str = "curated",
    datasets_prefix: str = "datasets",
    limits: Limits = Limits(),
    athena: AthenaRunner | None = None,
    athena_config: AthenaConfig | None = None,
) -> dict[str, Any]:
    """The `dataset` object of the contract: manifest URI and hash, channel URIs, rows, labels, engine."""
    spec = run.dataset
    if spec.manifest is not None:
        return validate_manifest(s3, spec.manifest, spec)
    assert spec.from_ is not None and spec.to is not None
    size = measure_range(s3, bucket, curated_prefix, spec.from_, spec.to)
    if size.objects == 0:
        raise DatasetRefusedError(
            f"empty range: no curated objects under s3://{bucket}/{curated_prefix}/dt={spec.from_}..{spec.to}"
        )
    engine = choose_engine(size, limits, athena is not None and athena_config is not None)
    if engine == "athena":
        assert athena is not None and athena_config is not None
        return snapshot_in_athena(
            s3, athena, athena_config, bucket, spec, run.dataset_name, curated_prefix, datasets_prefix
        )
    return snapshot_in_lambda(s3, bucket, spec, run.dataset_name, curated_prefix, datasets_prefix)
