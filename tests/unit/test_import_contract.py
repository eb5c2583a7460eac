"""The import contract (pyproject [tool.importlinter], docs/shipping.md) holds, and it would catch a breach.

`lint-imports` reads the source (grimp parses it; nothing is imported), so this is fast and offline. The second
test runs the same contract on a copy of the tree with one bad import planted, so a contract that silently
checks nothing (a wrong root package, a misspelt layer) fails here too.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"
PACKAGES = ("cnai", "functions", "infra", "bench", "models")


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    # wide columns: rich would wrap the report at 80 and split the import chains the tests look for
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--no-logo", str(root / "pyproject.toml")],
        cwd=root, capture_output=True, text=True, timeout=120, check=False, env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip


def test_the_repository_keeps_its_import_contract() -> None:
    # When the contract is checked on the repository
    run = lint_imports(ROOT)
    # Then every contract is kept (the output names each broken import and its line)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert "0 broken" in run.stdout


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """The library and a stand-in for each package it must not import, with the repository's contract."""
    shutil.copytree(ROOT / "cnai", tmp_path / "cnai", ignore=shutil.ignore_patterns("__pycache__"))
    for package in PACKAGES[1:]:
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("", encoding="utf-8")
        (tmp_path / package / "thing.py").write_text("VALUE = 1\n", encoding="utf-8")
    shutil.copy2(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


@pytest.mark.parametrize(
    ("module", "source", "broken"),
    [
        # a library module reaching up into a Lambda handler (the old `cnai serve`), lazily inside a function
        ("cnai/model/upward.py", "def load():\n    from functions.thing import VALUE\n    return VALUE\n",
         "cnai.model.upward -> functions.thing"),
        ("cnai/text_bench.py", "import bench.thing\n", "cnai.text_bench -> bench.thing"),
        ("cnai/audit/train.py", "from models import thing\n", "cnai.audit.train -> models.thing"),
        # a lower layer importing a higher one (a cycle in the making)
        ("cnai/model/uses_serving.py", "from cnai.serving import service\n",
         "cnai.model.uses_serving -> cnai.serving.service"),
        # a new subpackage nobody placed in the layers
        ("cnai/unplaced/__init__.py", "", "unplaced"),
    ],
)  # fmt: skip
def test_the_contract_catches_a_planted_breach(tree: Path, module: str, source: str, broken: str) -> None:
    # Given the tree with one bad module added
    path = tree / module
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(source, encoding="utf-8")
    # When the contract is checked, Then it is broken and the report names the offending import
    run = lint_imports(tree)
    assert run.returncode != 0, run.stdout[-3000:]
    assert broken in run.stdout, run.stdout[-3000:]
