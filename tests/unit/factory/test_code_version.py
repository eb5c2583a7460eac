"""A model's code_version covers the code that shapes the model (models/train.py and every module of ours it
imports, transitively), not the rest of the repository (the ingest CLI, the HTTP server, the benchmarks)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from models.train import code_files, code_version

ROOT = Path(__file__).resolve().parents[3]


def relative(paths: list[Path], root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in paths}


def test_code_files_are_the_factory_and_the_library_modules_it_imports() -> None:
    # When the files behind code_version are listed for this repository
    files = relative(code_files(ROOT), ROOT)
    # Then the factory and the library code it runs are in: the artifact writer, the predictor (parity, calibration)
    # and what the predictor imports (the text normalizer), with each package's __init__
    assert {
        "models/train.py",
        "models/trainer.py",
        "models/export.py",
        "cnai/__init__.py",
        "cnai/model/__init__.py",
        "cnai/model/artifact.py",
        "cnai/model/predictor.py",
        "cnai/text.py",
        "cnai/data/dataset.py",
    } <= files
    # And the code that does not shape a model is out
    assert not files & {"cnai/cli.py", "cnai/ingest/cli.py", "cnai/local/server.py", "models/bench_distill.py"}
    assert not any(f.startswith(("cnai/ingest/", "cnai/local/", "functions/", "infra/", "bench/")) for f in files)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A copy of the two packages, to edit."""
    for package in ("cnai", "models"):
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


def test_code_version_moves_with_the_model_code_only(tree: Path) -> None:
    # Given the version of an untouched copy
    before = code_version(tree)
    assert before == code_version(ROOT)  # paths are hashed relative to the root: the copy is the same code
    # When the ingest CLI changes, Then the version does not
    (tree / "cnai" / "ingest" / "cli.py").write_text("# another command\n", encoding="utf-8")
    assert code_version(tree) == before
    # When the text normalizer (imported by the predictor) changes, Then it does
    with (tree / "cnai" / "text.py").open("a", encoding="utf-8") as handle:
        handle.write("\n# normalization changed\n")
    after_text = code_version(tree)
    assert after_text != before
    # And so does a change to the factory's own losses
    with (tree / "models" / "losses.py").open("a", encoding="utf-8") as handle:
        handle.write("\n# loss changed\n")
    assert code_version(tree) not in (before, after_text)
