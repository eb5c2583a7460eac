"""A checkpoint is resumed only by the configuration that wrote it: a reused checkpoint dir must never hand
back a model trained with another recipe (it did, before fingerprints: `make run` after a change)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from models.data import Encoded
from models.train import fingerprint
from models.trainer import DistInfo, Phase, run_phase


class BagOfIds(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.EmbeddingBag(16, 3, mode="sum")

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.emb(ids, per_sample_weights=mask.float())


def _phase(fp: str, epochs: int = 2) -> Phase:
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    data = Encoded(
        [list(rng.integers(1, 16, size=int(n))) for n in rng.integers(2, 6, size=24)], rng.integers(0, 3, 24)
    )
    labels = torch.as_tensor(data.labels)
    model = BagOfIds()

    def loss(m: nn.Module, batch: list[int], ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(m(ids, mask), labels[batch])

    return Phase("toy", model, [{"params": model.parameters(), "lr": 0.1}], data, None, loss, epochs, 8, 0.0, 0.0,
                 1.0, 2, 0, "fp32", fp)  # fmt: skip


def test_same_fingerprint_resumes_a_finished_phase(tmp_path: Path) -> None:
    # Given a finished phase
    first = run_phase(_phase("a" * 64), DistInfo(), tmp_path)
    # When the same configuration runs again
    again = run_phase(_phase("a" * 64), DistInfo(), tmp_path)
    # Then it is not retrained: the history comes back from the checkpoint
    assert again == first and len(first) == 2


def test_other_fingerprint_trains_afresh_and_replaces_the_checkpoint(tmp_path: Path) -> None:
    run_phase(_phase("a" * 64, epochs=1), DistInfo(), tmp_path)
    # When a different configuration (here: 3 epochs) meets that checkpoint
    history = run_phase(_phase("b" * 64, epochs=3), DistInfo(), tmp_path)
    # Then it trains all its own epochs and the checkpoint now carries its fingerprint
    assert len(history) == 3
    assert torch.load(tmp_path / "toy.pt", weights_only=False)["fingerprint"] == "b" * 64


def test_fingerprint_ignores_what_changes_no_weight() -> None:
    base = {"student_epochs": 12, "latency_samples": 300, "checkpoint_every": 100}
    assert fingerprint(base, "data") == fingerprint({**base, "latency_samples": 1000, "checkpoint_every": 5}, "data")
    assert fingerprint(base, "data") != fingerprint({**base, "student_epochs": 3}, "data")
    assert fingerprint(base, "data") != fingerprint(base, "other data")
