"""Turning labelled text into batches: stratified subsets and splits, tokenization, length-bucketed batches.

Batches group texts of similar length (dynamic padding wastes little), and their order is a pure
function of (seed, epoch): a run resumed from a checkpoint sees exactly the batches it would have seen.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from tokenizers import Tokenizer

from cnai.data.dataset import LabeledData


def stratified_indices(labels: Sequence[str], n: int, seed: int) -> list[int]:
    """About n indices with each label's share kept (at least one per label), in original order."""
    if n >= len(labels):
        return list(range(len(labels)))
    rng = np.random.default_rng(seed)
    by_label: dict[str, list[int]] = defaultdict(list)
    for i, label in enumerate(labels):
        by_label[label].append(i)
    chosen: list[int] = []
    for label in sorted(by_label):
        idx = by_label[label]
        take = max(1, round(len(idx) * n / len(labels)))
        chosen.extend(rng.choice(idx, size=min(take, len(idx)), replace=False).tolist())
    return sorted(chosen)


def subset(data: LabeledData, indices: Sequence[int]) -> LabeledData:
    return LabeledData(
        [data.texts[i] for i in indices],
        [data.labels[i] for i in indices],
        data.source,
        data.sha256,
        [data.where[i] for i in indices],
    )


def split_dev(data: LabeledData, fraction: float, seed: int) -> tuple[LabeledData, LabeledData | None]:
    """Hold out a stratified dev set (for calibration and curves); labels with one row stay in train."""
    if fraction <= 0:
        return data, None
    rng = np.random.default_rng(seed + 1)
    by_label: dict[str, list[int]] = defaultdict(list)
    for i, label in enumerate(data.labels):
        by_label[label].append(i)
    dev: set[int] = set()
    for label in sorted(by_label):
        idx = by_label[label]
        take = int(len(idx) * fraction)
        if len(idx) > 1 and take >= 1:
            dev.update(rng.choice(idx, size=take, replace=False).tolist())
    if not dev:
        return data, None
    train_idx = [i for i in range(len(data)) if i not in dev]
    return subset(data, train_idx), subset(data, sorted(dev))


@dataclass
class Encoded:
    """Token ids (unpadded) and label ids for one split."""

    ids: list[list[int]]
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)


def serving_tokenizer(tokenizer: Tokenizer, max_length: int) -> Tokenizer:
    """Truncate at max_length, pad to the longest text of each batch (never to a fixed length)."""
    tok = Tokenizer.from_str(tokenizer.to_str())
    tok.enable_truncation(max_length=max_length)
    pad_id = tok.token_to_id("[PAD]")
    tok.enable_padding(pad_id=0 if pad_id is None else pad_id, pad_token="[PAD]")
    return tok


def encode(tokenizer: Tokenizer, data: LabeledData, label_ids: dict[str, int], max_length: int) -> Encoded:
    tok = Tokenizer.from_str(tokenizer.to_str())
    tok.no_padding()
    tok.enable_truncation(max_length=max_length)
    ids = [e.ids for e in tok.encode_batch(data.texts)]
    return Encoded(ids, np.asarray([label_ids[x] for x in data.labels], dtype=np.int64))


def epoch_batches(lengths: Sequence[int], batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """Shuffled batches of similar-length rows. Same (seed, epoch) -> same batches, in the same order."""
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(lengths))
    # Sort within windows of 50 batches: similar lengths together, yet still a different mix each epoch.
    window = batch_size * 50
    batches: list[list[int]] = []
    for start in range(0, len(order), window):
        chunk = sorted(order[start : start + window].tolist(), key=lambda i: lengths[i])
        batches.extend(chunk[j : j + batch_size] for j in range(0, len(chunk), batch_size))
    return [batches[i] for i in rng.permutation(len(batches))]


def eval_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Deterministic batches sorted by length (fast inference); callers scatter results back by index."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    return [order[j : j + batch_size] for j in range(0, len(order), batch_size)]


def collate(ids: Sequence[Sequence[int]], pad_id: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad to the longest row: (input_ids, attention_mask), both int64."""
    width = max(len(x) for x in ids)
    input_ids = torch.full((len(ids), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(ids), width), dtype=torch.long)
    for row, seq in enumerate(ids):
        input_ids[row, : len(seq)] = torch.as_tensor(seq, dtype=torch.long)
        mask[row, : len(seq)] = 1
    return input_ids, mask
