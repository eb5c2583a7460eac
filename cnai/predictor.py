"""The predictor: text in, calibrated labels out, with tokenizers + onnxruntime only (no torch).

One implementation serves the predict Lambda, the SageMaker Serverless container, `cnai serve`, the
CLI and the benchmarks, so a latency or accuracy figure measured anywhere is the one users get.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

from cnai.artifact import Artifact, load_artifact


def host_threads() -> int:
    """CPUs this process may use (Lambda's vCPUs follow its memory size; containers pin affinity)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    scaled = logits.astype(np.float64) / temperature
    scaled -= scaled.max(axis=-1, keepdims=True)
    exp = np.exp(scaled)
    return (exp / exp.sum(axis=-1, keepdims=True)).astype(np.float32)


@dataclass(frozen=True)
class Prediction:
    """The answer for one input. label is None when the model abstains (route to a human)."""

    label: str | None
    score: float
    top_k: list[tuple[str, float]]
    reason: str | None = None
    extra: dict[str, object] = field(default_factory=dict)


class Predictor:
    """Loads a verified artifact once; predicts batches of texts with dynamic padding."""

    def __init__(self, artifact: Artifact, threads: int | None = None) -> None:
        self.artifact = artifact
        self.card = artifact.card
        self.labels = artifact.labels
        self.tokenizer = Tokenizer.from_file(str(artifact.tokenizer_path))
        self.tokenizer.enable_truncation(max_length=self.card.max_length)
        pad_id = self.tokenizer.token_to_id("[PAD]") or 0
        self.tokenizer.enable_padding(pad_id=pad_id, pad_token="[PAD]")  # to the longest in the batch
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or host_threads()
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(artifact.model_path), options, providers=["CPUExecutionProvider"])
        self.input_names = [i.name for i in self.session.get_inputs()]

    @classmethod
    def from_dir(cls, directory: str | Path, threads: int | None = None) -> Predictor:
        return cls(load_artifact(directory), threads=threads)

    @property
    def name(self) -> str:
        return self.card.name

    @property
    def version(self) -> str:
        return self.card.version

    def encode(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        encodings = self.tokenizer.encode_batch(list(texts))
        ids = np.asarray([e.ids for e in encodings], dtype=np.int64)
        mask = np.asarray([e.attention_mask for e in encodings], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask}
        return {name: feeds[name] for name in self.input_names}

    def logits(self, texts: Sequence[str]) -> np.ndarray:
        """Raw logits, shape (len(texts), num_labels)."""
        if not texts:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        (out,) = self.session.run(["logits"], self.encode(texts))
        return np.asarray(out, dtype=np.float32)

    def probabilities(self, texts: Sequence[str]) -> np.ndarray:
        return softmax(self.logits(texts), self.card.temperature)

    def predict(self, texts: Sequence[str], top_k: int = 1) -> list[Prediction]:
        probs = self.probabilities(texts)
        k = max(1, min(top_k, len(self.labels)))
        threshold = self.card.abstain_threshold
        results = []
        for row in probs:
            order = np.argsort(-row)[:k]
            ranked = [(self.labels[i], float(row[i])) for i in order]
            best_label, best = ranked[0]
            if threshold is not None and best < threshold:
                reason = f"top probability {best:.3f} is below the abstention threshold {threshold:.3f}"
                results.append(Prediction(None, best, ranked, reason))
            else:
                results.append(Prediction(best_label, best, ranked))
        return results
