"""Dataset snapshots on a local lake folder: same inputs, same manifest hash; stable split; counts."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws
from typer.testing import CliRunner

from cnai.cli import app
from cnai.data.snapshot import LocalStore, build_snapshot, is_test, store_for
from cnai.errors import DataError
from cnai.ingest.curate import jsonl_gz, read_jsonl_gz


def row(i: int, day: str, label: str | None = "a", text: str | None = None) -> dict:
    return {"id": f"r{i}", "text": text or f"text number {i} [EMAIL]", "label": label, "source": "s",
            "tenant": "acme", "timestamp": f"{day}T08:00:00Z", "metadata": {}, "redactions": {"email": 1}}  # fmt: skip


def lake(tmp_path: Path) -> LocalStore:
    store = LocalStore(tmp_path)
    store.put("curated/dt=2026-02-01/a.jsonl.gz", jsonl_gz([row(i, "2026-02-01", "ab"[i % 2]) for i in range(50)]), "")
    store.put("curated/dt=2026-02-02/b.jsonl.gz", jsonl_gz([row(1, "2026-02-02"), row(99, "2026-02-02", None)]), "")
    store.put("curated/dt=2026-02-09/c.jsonl.gz", jsonl_gz([row(7, "2026-02-09")]), "")
    return store


def test_same_inputs_give_the_same_manifest_hash_and_one_version(tmp_path: Path) -> None:
    store = lake(tmp_path)
    first = build_snapshot(store, start=date(2026, 2, 1), end=date(2026, 2, 2), name="n")
    second = build_snapshot(store, start=date(2026, 2, 1), end=date(2026, 2, 2), name="n")
    assert first.manifest == second.manifest and first.version == second.version
    assert first.created and not second.created
    on_disk = json.loads((tmp_path / first.manifest_key).read_text())
    assert on_disk["manifest_sha256"] == first.manifest["manifest_sha256"]
    # A different range or fraction is a different version
    other = build_snapshot(store, start=date(2026, 2, 1), end=date(2026, 2, 9), name="n")
    assert other.version != first.version


def test_counts_split_files_and_profile(tmp_path: Path) -> None:
    snap = build_snapshot(lake(tmp_path), start=date(2026, 2, 1), end=date(2026, 2, 2), test_fraction=0.3)
    m = snap.manifest
    # r1 appears twice (kept once), r99 has no label; 2026-02-09 is out of the listed partitions
    assert m["counts"] == {"records_read": 52, "kept": 50, "unlabeled_skipped": 1, "duplicate_ids_skipped": 1,
                           "out_of_range_skipped": 0, "other_tenant_skipped": 0,
                           "texts_with_conflicting_labels": 0}  # fmt: skip
    train = read_jsonl_gz((tmp_path / snap.prefix / "train.jsonl.gz").read_bytes())
    test = read_jsonl_gz((tmp_path / snap.prefix / "test.jsonl.gz").read_bytes())
    assert len(train) + len(test) == 50 and m["files"]["test"]["rows"] == len(test) > 0
    assert all(is_test(r["id"], 0.3) for r in test) and not any(is_test(r["id"], 0.3) for r in train)
    assert [s["key"] for s in m["sources"]] == ["curated/dt=2026-02-01/a.jsonl.gz", "curated/dt=2026-02-02/b.jsonl.gz"]
    assert m["profile"]["labels"]["distribution"]["a"]["rows"] == 25
    assert m["profile"]["vocabulary"]["top"][:3] == [["[EMAIL]", 50], ["number", 50], ["text", 50]]
    assert m["profile"]["redactions"] == {"email": 50}
    assert m["files"]["train"]["label_counts"]["a"] + m["files"]["test"]["label_counts"]["a"] == 25


def test_split_is_stable_when_data_grows() -> None:
    ids = [f"id-{i}" for i in range(2000)]
    share = sum(is_test(i, 0.2) for i in ids) / len(ids)
    assert 0.17 < share < 0.23
    assert [is_test(i, 0.2) for i in ids[:100]] == [is_test(i, 0.2) for i in ids[:100]]


def test_empty_range_and_bad_arguments_name_the_problem(tmp_path: Path) -> None:
    store = lake(tmp_path)
    with pytest.raises(DataError, match="no labelled curated records"):
        build_snapshot(store, start=date(2025, 1, 1), end=date(2025, 1, 2))
    with pytest.raises(DataError, match="ends before it starts"):
        build_snapshot(store, start=date(2026, 2, 2), end=date(2026, 2, 1))
    with pytest.raises(DataError, match="test_fraction"):
        build_snapshot(store, start=date(2026, 2, 1), end=date(2026, 2, 2), test_fraction=1.5)


def test_prepare_dataset_answers_the_training_channels_and_names_bad_fields(tmp_path: Path) -> None:
    from cnai.data.snapshot import prepare_dataset

    store = lake(tmp_path)
    out = prepare_dataset({"start": "2026-02-01", "end": "2026-02-02", "name": "b77"}, store, "s3://lake/")
    assert out["train_uri"] == f"s3://lake/datasets/b77/{out['version']}/train.jsonl.gz"
    assert out["rows"]["train"] + out["rows"]["test"] == 50 and out["created"]
    with pytest.raises(DataError, match=r"request: start: Input should be a valid date.*test_fraction"):
        prepare_dataset({"start": "soon", "end": "2026-02-02", "test_fraction": 2}, store, "s3://lake")


def test_texts_with_conflicting_labels_are_counted(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    rows = [row(1, "2026-02-01", "a", "Same text"), row(2, "2026-02-01", "b", "same TEXT"), row(3, "2026-02-01")]
    store.put("curated/dt=2026-02-01/x.jsonl.gz", jsonl_gz(rows), "")
    snap = build_snapshot(store, start=date(2026, 2, 1), end=date(2026, 2, 1))
    assert snap.manifest["counts"]["texts_with_conflicting_labels"] == 1


# ---- a lake that cannot be read: one line naming the object (and line), never a traceback ----


def curated_object(tmp_path: Path, data: bytes) -> LocalStore:
    store = lake(tmp_path)
    store.put("curated/dt=2026-02-01/zz-bad.jsonl.gz", data, "")
    return store


@pytest.mark.parametrize(
    ("data", "line", "problem"),
    [
        (b"not gzip at all", None, "not a valid gzip file"),
        (jsonl_gz([row(1, "2026-02-01")])[:-9], None, "not a valid gzip file"),  # cut off before its trailer
        (gzip.compress(json.dumps(row(1, "2026-02-01")).encode() + b"\n{oops\n"), 2, "not valid JSON"),
        (gzip.compress(b"[" * 100_000 + b"\n"), 1, "nested too deeply"),
        (gzip.compress(b'{"id": "a", "text": "t", "label": "x", "tenant": "t", "timestamp": "2026-02-01"}\n[1]\n'), 2,
         "expected a JSON object, got list"),
        (gzip.compress(json.dumps({**row(1, "2026-02-01"), "id": None}).encode()), 1, "field 'id' is NoneType"),
        (gzip.compress(json.dumps({k: v for k, v in row(1, "2026-02-01").items() if k != "text"}).encode()), 1,
         "field 'text' is missing"),
        (gzip.compress(b'{"id": "a", "text": "caf\xe9"}'), 1, "not valid UTF-8 (byte 0xe9)"),
    ],
    # Named ids: gzip bytes carry the time they were made, and pytest-xdist refuses workers whose test ids differ
    ids=["not-gzip", "truncated", "bad-json", "nested", "not-an-object", "id-none", "no-text", "not-utf8"],
)  # fmt: skip
def test_a_corrupt_curated_object_names_the_object_and_line(
    tmp_path: Path, data: bytes, line: int | None, problem: str
) -> None:
    # Given a curated object in the range that is not gzip, or holds a line that is not a curated record
    store = curated_object(tmp_path, data)
    # When a snapshot is built / Then the error names the object, the line and the problem
    with pytest.raises(DataError) as info:
        build_snapshot(store, start=date(2026, 2, 1), end=date(2026, 2, 2))
    assert (info.value.path, info.value.line) == ("curated/dt=2026-02-01/zz-bad.jsonl.gz", line)
    assert problem in info.value.problem


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": "us-east-1"}.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        yield boto3.client("s3")


def test_a_lake_bucket_that_does_not_exist_is_a_data_error(s3: Any) -> None:
    # Given no bucket named like the lake / When a snapshot is built / Then one DataError names the bucket
    with pytest.raises(DataError, match=r"^s3://no-such-lake: bucket does not exist$"):
        build_snapshot(store_for("s3://no-such-lake", s3), start=date(2026, 2, 1), end=date(2026, 2, 2))


def test_other_s3_errors_stay_botocore_errors_for_the_workflow_to_retry(s3: Any) -> None:
    from botocore.exceptions import ClientError
    from botocore.stub import Stubber

    # Given S3 throttles the listing (precise error injection: botocore's Stubber)
    stubber = Stubber(s3)
    stubber.add_client_error("list_objects_v2", service_error_code="SlowDown", http_status_code=503)
    # When a snapshot is built / Then the throttling error is not turned into a refusal
    with stubber, pytest.raises(ClientError, match="SlowDown"):
        build_snapshot(store_for("s3://lake", s3), start=date(2026, 2, 1), end=date(2026, 2, 1))


def cli_build(*args: str) -> tuple[int, str]:
    """Exit code and output without whitespace (rich wraps long lines at the terminal's width)."""
    result = CliRunner().invoke(app, ["dataset", "build", "--start", "2026-02-01", "--end", "2026-02-02", *args])
    return result.exit_code, "".join(result.output.split())


def squash(text: str) -> str:
    return "".join(text.split())


def test_cli_dataset_build_errors_are_one_line(tmp_path: Path, s3: Any) -> None:
    # Given a lake bucket that does not exist / When `cnai dataset build` runs / Then exit 2 and one line
    code, output = cli_build("--lake", "s3://no-such-lake")
    assert code == 2 and squash("error: s3://no-such-lake: bucket does not exist") in output
    # Given a lake folder that does not exist
    code, output = cli_build("--lake", str(tmp_path / "nowhere"))
    assert code == 2 and squash(f"error: {tmp_path / 'nowhere'}: folder not found") in output
    # Given a curated object that is not gzip, and one with a line that is not JSON
    (tmp_path / "a").mkdir()
    curated_object(tmp_path / "a", b"garbage")
    code, output = cli_build("--lake", str(tmp_path / "a"))
    assert code == 2 and squash("error: curated/dt=2026-02-01/zz-bad.jsonl.gz: not a valid gzip file") in output
    (tmp_path / "b").mkdir()
    curated_object(tmp_path / "b", gzip.compress(json.dumps(row(1, "2026-02-01")).encode() + b"\n{oops\n"))
    code, output = cli_build("--lake", str(tmp_path / "b"))
    assert code == 2 and squash("error: curated/dt=2026-02-01/zz-bad.jsonl.gz:2: not valid JSON") in output
    assert "Traceback" not in output
