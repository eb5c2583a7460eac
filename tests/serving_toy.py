"""A toy but real model artifact for fast serving tests: a bag-of-words ONNX graph and a WordLevel tokenizer.

Each known word adds a fixed score to one label, so the right answer (and which word drove it) is known
in advance; everything else (artifact format, hashes, tokenizer, onnxruntime, calibration, abstention)
is the real serving path. Training a real model takes a minute; this takes milliseconds.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

from cnai.model.artifact import LABELS_FILE, MODEL_FILE, TOKENIZER_FILE, ModelCard, write_card

LABELS = ["card_lost", "refund", "top_up"]
WORDS = {"card": (0, 4.0), "lost": (0, 2.0), "stolen": (0, 3.0), "refund": (1, 5.0), "money": (1, 1.0), "top": (2, 3.0)}
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]
FILLER = ["i", "my", "the", "a", "want", "please", "how", "do", "up", "is", "where"]


def toy_tokenizer() -> Tokenizer:
    vocab = {token: i for i, token in enumerate([*SPECIAL, *WORDS, *FILLER])}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])]
    )
    return tokenizer


def toy_onnx(vocab_size: int, vocab: dict[str, int]) -> onnx.ModelProto:
    """logits[b, l] = sum over unmasked tokens t of table[ids[b, t], l]."""
    table = np.zeros((vocab_size, len(LABELS)), dtype=np.float32)
    for word, (label, score) in WORDS.items():
        table[vocab[word], label] = score
    nodes = [
        helper.make_node("Gather", ["table", "input_ids"], ["scores"], axis=0),
        helper.make_node("Cast", ["attention_mask"], ["mask_f"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["mask_f", "axis2"], ["mask3"]),
        helper.make_node("Mul", ["scores", "mask3"], ["masked"]),
        helper.make_node("ReduceSum", ["masked", "axis1"], ["logits"], keepdims=0),
    ]
    graph = helper.make_graph(
        nodes,
        "toy",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "seq"]),
        ],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", len(LABELS)])],
        [
            numpy_helper.from_array(table, "table"),
            numpy_helper.from_array(np.asarray([2], dtype=np.int64), "axis2"),
            numpy_helper.from_array(np.asarray([1], dtype=np.int64), "axis1"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def build_toy_artifact(root: Path, abstain_threshold: float | None = None, name: str = "toy") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    tokenizer = toy_tokenizer()
    tokenizer.save(str(root / TOKENIZER_FILE))
    vocab = tokenizer.get_vocab()
    onnx.save(toy_onnx(len(vocab), vocab), str(root / MODEL_FILE))
    (root / LABELS_FILE).write_text(json.dumps(LABELS), encoding="utf-8")
    card = ModelCard(
        name=name,
        version="toy0001",
        created_at="2026-01-01T00:00:00Z",
        num_labels=len(LABELS),
        max_length=32,
        abstain_threshold=abstain_threshold,
        metrics={"test": {"student_int8": {"accuracy": 1.0}}},
    )
    write_card(root, card)
    return root


class ImportedHandler:
    """functions.predict.handler with an API of its own. The module is one per interpreter; a test module's
    fixture keeps its API here and puts it on the module for each call, so another test module's fixture that
    built a different API in the same worker (interleaved under pytest-xdist's default distribution) cannot
    answer this one's calls. Everything else reads through to the module."""

    def __init__(self, module: Any, api: Any) -> None:
        self.module = module
        self.API = api

    def handler(self, event: Any, context: Any) -> Any:
        self.module.API = self.API
        return self.module.handler(event, context)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.module, name)


def import_handler(env: dict[str, str]) -> Any:
    """Import functions.predict.handler (it configures itself from the environment at import, like a cold
    start) with `env` set only for the import, then give the caller an API (models, auditor) of exactly `env`."""
    import importlib
    import os

    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        module = importlib.import_module("functions.predict.handler")
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    from cnai.serving.api import ServingOptions, build_api
    from functions.predict.settings import load_settings

    return ImportedHandler(module, build_api(ServingOptions.of(load_settings(env))))
