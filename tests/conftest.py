"""Shared fixtures: BANKING77 slices, a tiny trained artifact, and markers by folder."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BANKING77 = Path(os.environ.get("CNAI_BANKING77", ROOT.parent / "shared" / "datasets" / "banking77"))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        for kind in ("unit", "infra", "integration"):
            if f"{os.sep}tests{os.sep}{kind}{os.sep}" in str(item.path):
                item.add_marker(kind)


def write_slice(target: Path, split: str, labels: int, per_label: int) -> Path:
    """The first `per_label` rows of the first `labels` intents (sorted names) of a BANKING77 split."""
    with (BANKING77 / f"{split}.csv").open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    keep = sorted({r["category"] for r in rows})[:labels]
    chosen = [r for label in keep for r in [x for x in rows if x["category"] == label][:per_label]]
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=["text", "category"])
        writer.writeheader()
        writer.writerows(chosen)
    return target


@pytest.fixture(scope="session")
def banking_slice(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """6 intents: 40 train rows and 15 test rows each (240 / 90 rows)."""
    root = tmp_path_factory.mktemp("banking77-slice")
    return {
        "train": write_slice(root / "train.csv", "train", 6, 40),
        "test": write_slice(root / "test.csv", "test", 6, 15),
    }


def train_args(data: dict[str, Path], out: Path, *extra: str) -> list[str]:
    return [
        "--profile", "tiny",
        "--train", str(data["train"]), "--test", str(data["test"]),
        "--model-dir", str(out / "model"), "--output-data-dir", str(out / "data"),
        "--checkpoint-dir", str(out / "ckpt"), *extra,
    ]  # fmt: skip


@pytest.fixture(scope="session")
def tiny_run(banking_slice: dict[str, Path], tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> Path:
    """A real, tiny factory run (1-layer student, few steps): its model dir is a servable artifact.

    Trained once per test run, not once per pytest-xdist worker: the workers share the run's base temp folder,
    and a file lock lets the first train (with both cores) while the other waits instead of training a second
    copy beside it (pytest-xdist's recipe for session fixtures that must run once).
    """
    from filelock import FileLock

    from models.train import main

    base = tmp_path_factory.getbasetemp()
    shared = base.parent if worker_id != "master" else base  # base.parent of a lone run is shared across runs
    out, done = shared / "tiny-run", shared / "tiny-run.done"
    with FileLock(str(shared / "tiny-run.lock")):
        if not done.exists():
            assert main(train_args(banking_slice, out)) == 0
            done.touch()
    return out


@pytest.fixture(scope="session")
def tiny_artifact(tiny_run: Path) -> Path:
    return tiny_run / "model"


@pytest.fixture
def fake_aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """moto's recommended dummy credentials; no endpoint override, so a mock_aws block is what answers."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "t",
        "AWS_SECRET_ACCESS_KEY": "t",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
