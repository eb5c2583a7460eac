"""The predictor: text in, calibrated labels out, with tokenizers + onnxruntime only (no torch).

One implementation serves the predict Lambda, the SageMaker Serverless container, `cnai serve`, the
CLI and the benchmarks, so a latency or accuracy figure measured anywhere is the one users get.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

from cnai.host import host_threads
from cnai.model.artifact import Artifact, load_artifact
from cnai.text import normalize_text

# What `explain` removes one at a time: a word (letters/digits, with inner apostrophes: "don't") or a run of
# other non-space characters ("?!"). Public, so the API bounds explanations by the same count that costs.
_EXPLAIN_WORD = re.compile(r"\w+(?:['\u2019]\w+)*|[^\w\s]+")
MAX_EXPLAIN_WORDS = 256  # hard ceiling per text for any caller; the API refuses beyond its own, lower bound
# Tokens per onnxruntime call on the serving path: per text, a call of 4-8 BANKING77-length texts cost 0.28 ms
# against 0.41 alone, and 16-32 of them (200-400 tokens) 0.38-0.49 again (1 thread; bench/predictor.py).
GROUP_TOKENS = 128


def explain_words(text: str) -> list[tuple[int, int]]:
    """(start, end) of each word occlusion would remove from `text` (already normalized): one forward pass
    each, so their count is the cost of explaining the text."""
    return [m.span() for m in _EXPLAIN_WORD.finditer(text)]


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    scaled = logits.astype(np.float64) / temperature
    scaled -= scaled.max(axis=-1, keepdims=True)
    exp = np.exp(scaled)
    return (exp / exp.sum(axis=-1, keepdims=True)).astype(np.float32)


class LRUCache:
    """A thread-safe LRU map from (model version, normalized text) to a probability row.

    Thread-safe because `cnai serve` answers from several threads and onnxruntime sessions are shared.
    """

    def __init__(self, maxsize: int) -> None:
        self.maxsize = max(0, maxsize)
        self._data: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: tuple[str, str]) -> np.ndarray | None:
        with self._lock:
            row = self._data.get(key)
            if row is None:
                self.misses += 1
                return None
            self._data.move_to_end(key)
            self.hits += 1
            return row

    def put(self, key: tuple[str, str], row: np.ndarray) -> None:
        if self.maxsize == 0:
            return
        row = np.array(row, copy=True)  # own the row: a view would pin the whole batch and could be mutated
        row.setflags(write=False)
        with self._lock:
            self._data[key] = row
            self._data.move_to_end(key)
            while len(self._data) > self.maxsize:
                self._data.popitem(last=False)

    def info(self) -> dict[str, float]:
        with self._lock:
            total = self.hits + self.misses
            return {
                "hits": self.hits,
                "misses": self.misses,
                "size": len(self._data),
                "maxsize": self.maxsize,
                "hit_rate": self.hits / total if total else 0.0,
            }


@dataclass(frozen=True)
class Attribution:
    """How much one word drove the answer: the drop in the explained label's probability without it."""

    token: str
    start: int
    end: int
    attribution: float


@dataclass(frozen=True)
class Prediction:
    """The answer for one input. label is None when the model abstains (route to a human)."""

    label: str | None
    score: float
    top_k: list[tuple[str, float]]
    reason: str | None = None
    extra: dict[str, object] = field(default_factory=dict)


class Predictor:
    """Loads a verified artifact once; predicts batches of texts, grouped by token count (never padded).

    predict() answers repeated texts from an LRU cache keyed by (model version, normalized text) and runs the
    rest through served_probabilities() (grouped); probabilities() and logits() run one padded batch as given
    (the factory's evaluation measures that path). Both always run the model.
    """

    def __init__(self, artifact: Artifact, threads: int | None = None, cache_size: int = 1024) -> None:
        self.artifact = artifact
        self.cache = LRUCache(cache_size)
        self.card = artifact.card
        self.labels = artifact.labels
        self.tokenizer = Tokenizer.from_file(str(artifact.tokenizer_path))
        self.tokenizer.enable_truncation(max_length=self.card.max_length)
        self.tokenizer.no_padding()  # encode() pads one batch itself; the serving path never pads
        self.pad_id = self.tokenizer.token_to_id("[PAD]") or 0
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or host_threads()
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(artifact.model_path), options, providers=["CPUExecutionProvider"])
        self.input_names = [i.name for i in self.session.get_inputs()]

    @classmethod
    def from_dir(cls, directory: str | Path, threads: int | None = None, cache_size: int = 1024) -> Predictor:
        return cls(load_artifact(directory), threads=threads, cache_size=cache_size)

    @classmethod
    def from_uri(
        cls,
        uri: str | Path,
        version_id: str | None = None,
        threads: int | None = None,
        cache_size: int = 1024,
        cache_dir: Path | None = None,
        s3_client: Any = None,
    ) -> Predictor:
        """A local directory or tarball, s3://bucket/prefix/ or s3://.../model.tar.gz, verified before use."""
        from cnai.model.fetch import fetch_artifact

        artifact = fetch_artifact(uri, version_id, cache_dir=cache_dir, s3_client=s3_client)
        return cls(artifact, threads=threads, cache_size=cache_size)

    @property
    def name(self) -> str:
        return self.card.name

    @property
    def version(self) -> str:
        return self.card.version

    def token_ids(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids per text (truncated to the card's max length), unpadded."""
        if len(texts) == 1:  # encode_batch's thread hand-off costs more than one short text
            return [self.tokenizer.encode(texts[0]).ids]
        return [e.ids for e in self.tokenizer.encode_batch(list(texts))]

    def encode(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """One batch padded to its longest text ([PAD], attention mask 0): the model's input for `logits`."""
        rows = self.token_ids(texts)
        width = max((len(r) for r in rows), default=0)
        ids = np.full((len(rows), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(rows), width), dtype=np.int64)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = row
            mask[i, : len(row)] = 1
        return self._feeds(ids, mask)

    def _feeds(self, ids: np.ndarray, mask: np.ndarray) -> dict[str, np.ndarray]:
        feeds = {"input_ids": ids, "attention_mask": mask}
        return {name: feeds[name] for name in self.input_names}

    def logits(self, texts: Sequence[str]) -> np.ndarray:
        """Raw logits, shape (len(texts), num_labels), from ONE forward pass of exactly this batch, padded to
        its longest text. The factory's evaluation, calibration and reports measure this path; its numbers
        depend on the batch (see `served_logits`), so it is kept as it was for their figures to stay put."""
        if not texts:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        (out,) = self.session.run(["logits"], self.encode(texts))
        return np.asarray(out, dtype=np.float32)

    def probabilities(self, texts: Sequence[str]) -> np.ndarray:
        return softmax(self.logits(texts), self.card.temperature)

    def served_logits(self, texts: Sequence[str]) -> np.ndarray:
        """Raw logits in input order, grouped the way serving runs them: texts of the same token count run
        together (at most GROUP_TOKENS tokens per onnxruntime call), so no row is ever padded.

        Why not pad: the exported int8 graph quantizes activations per tensor per call, and its fused
        attention does not mask padding, so a padded row's answer moves with its batch (a padded batch of 32
        cost 2-3x one text per text, and 10 [PAD] after a text moved its logits by 0.1). Unpadded, a text
        answers alone exactly as it did before; in a batch it only shares its group's quantization scale.
        Equal lengths keep the fixed cost of a call (about 40 small graph nodes) shared where a batch allows.
        """
        rows = self.token_ids(texts)
        if len(rows) == 1:  # the common request: one text, one call, no grouping to do
            ids = np.asarray(rows, dtype=np.int64)
            (logits,) = self.session.run(["logits"], self._feeds(ids, np.ones_like(ids)))
            return np.asarray(logits, dtype=np.float32)
        out = np.empty((len(rows), len(self.labels)), dtype=np.float32)
        groups: dict[int, list[int]] = {}
        for i, row in enumerate(rows):
            groups.setdefault(len(row), []).append(i)
        for length, members in groups.items():
            step = max(1, GROUP_TOKENS // max(1, length))
            for start in range(0, len(members), step):
                chunk = members[start : start + step]
                ids = np.asarray([rows[i] for i in chunk], dtype=np.int64).reshape(len(chunk), length)
                (logits,) = self.session.run(["logits"], self._feeds(ids, np.ones_like(ids)))
                out[chunk] = logits
        return out

    def served_probabilities(self, texts: Sequence[str]) -> np.ndarray:
        """Calibrated probabilities through the serving path (`served_logits`), in input order."""
        if not texts:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        return softmax(self.served_logits(texts), self.card.temperature)

    def cached_probabilities(self, texts: Sequence[str]) -> tuple[np.ndarray, int]:
        """Probabilities of normalized texts, from the cache where possible; also returns the cache hits.

        Misses (deduplicated) run as one batch, so a batch with repeats costs one forward pass per distinct text.
        """
        keys = [(self.version, normalize_text(t)) for t in texts]
        rows: list[np.ndarray | None] = [self.cache.get(k) for k in keys]
        hits = sum(r is not None for r in rows)
        missing = list(dict.fromkeys(k for k, r in zip(keys, rows, strict=True) if r is None))
        if missing:
            fresh = dict(zip(missing, self.served_probabilities([text for _, text in missing]), strict=True))
            for key, row in fresh.items():
                self.cache.put(key, row)
            rows = [fresh[k] if r is None else r for k, r in zip(keys, rows, strict=True)]
        if not rows:
            return np.zeros((0, len(self.labels)), dtype=np.float32), 0
        return np.stack([r for r in rows if r is not None]), hits

    def predict(self, texts: Sequence[str], top_k: int = 1, explain: bool = False) -> list[Prediction]:
        """Top-k calibrated labels per text; abstains (label None, with the reason) below the card's threshold.

        With explain=True each Prediction carries extra["explanation"]: per-word attributions (occlusion).
        """
        probs, _ = self.cached_probabilities(texts)
        return self._rank(texts, probs, top_k, explain)

    def predict_with_stats(
        self, texts: Sequence[str], top_k: int = 1, explain: bool = False
    ) -> tuple[list[Prediction], int]:
        """predict(), plus how many of the texts the cache answered (for the serving metrics)."""
        probs, hits = self.cached_probabilities(texts)
        return self._rank(texts, probs, top_k, explain), hits

    def explain(self, text: str, label: str | None = None, max_words: int | None = None) -> list[Attribution]:
        """Per-word attributions on the ONNX model itself, by occlusion: each word is removed in turn and the
        drop in the probability of `label` (default: the top label) is that word's attribution.

        One batched forward pass of (words + 1) texts; no extra model, no gradients. Words (`explain_words`)
        past the tokenizer's max length are not explained (the model never sees them), and at most
        `max_words` are: a hard ceiling on the cost, behind the API's 413 (cnai.serving.service.Limits).
        """
        text = normalize_text(text)
        encoding = self.tokenizer.encode(text)
        seen = max((end for word, (_, end) in zip(encoding.word_ids, encoding.offsets, strict=True)
                    if word is not None), default=0)  # fmt: skip
        words = [(s, e) for s, e in explain_words(text) if s < seen][:max_words]
        variants = [text] + [(text[:s] + " " + text[e:]).strip() for s, e in words]
        probs = self.served_probabilities(variants)
        index = self.labels.index(label) if label is not None else int(np.argmax(probs[0]))
        base = float(probs[0, index])
        return [
            Attribution(text[s:e], s, e, round(base - float(probs[i + 1, index]), 6)) for i, (s, e) in enumerate(words)
        ]

    def _rank(self, texts: Sequence[str], probs: np.ndarray, top_k: int, explain: bool) -> list[Prediction]:
        k = max(1, min(top_k, len(self.labels)))
        threshold = self.card.abstain_threshold
        results = []
        for text, row in zip(texts, probs, strict=True):
            order = np.argsort(-row)[:k]
            ranked = [(self.labels[i], float(row[i])) for i in order]
            best_label, best = ranked[0]
            extra: dict[str, object] = {}
            if explain:
                tokens = self.explain(text, best_label, max_words=MAX_EXPLAIN_WORDS)
                extra["explanation"] = {"label": best_label, "tokens": tokens}
            if threshold is not None and best < threshold:
                reason = f"top probability {best:.3f} is below the abstention threshold {threshold:.3f}"
                results.append(Prediction(None, best, ranked, reason, extra))
            else:
                results.append(Prediction(best_label, best, ranked, None, extra))
        return results
