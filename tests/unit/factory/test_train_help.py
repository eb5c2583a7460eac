"""`python models/train.py --help` lists the recipe's flags without importing the training stack (torch and
transformers took 9 s of a help screen)."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT


def test_help_lists_every_recipe_flag_without_importing_torch() -> None:
    # When the factory's help is asked, with Python reporting every module it imports
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "models/train.py", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    # Then it exits 0 with the flags, the newest recipe fields among them
    assert done.returncode == 0, done.stderr[-2000:]
    assert "--augment-refit-epochs" in done.stdout and "--teacher-epochs" in done.stdout
    # And neither torch nor transformers was imported for it
    imported = {line.split("|")[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
    assert "models.config" in imported
    assert not {m for m in imported if m.split(".")[0] in {"torch", "transformers", "onnxruntime"}}
