"""ONNX export with fusions and int8 quantization, and the parity gates that fail a broken export."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from transformers import BertConfig, BertModel

from models.data import Encoded, collate
from models.export import ParityError, export_int8, onnx_logits
from models.modeling import EncoderClassifier

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def model_and_data() -> tuple[EncoderClassifier, Encoded, np.ndarray]:
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=200, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
        max_position_embeddings=64,
    )  # fmt: skip
    config._attn_implementation = "eager"  # the graph onnxruntime's attention fusion recognises
    model = EncoderClassifier(BertModel(config, add_pooling_layer=False), num_labels=5).eval()
    rng = np.random.default_rng(0)
    ids = [[101, *rng.integers(1000 % 200, 199, size=int(n)).tolist(), 102] for n in rng.integers(1, 30, 60)]
    data = Encoded(ids, np.zeros(len(ids), dtype=np.int64))
    with torch.inference_mode():
        logits = np.concatenate([model(*collate([ids[i]])).numpy() for i in range(len(ids))])
    return model, data, logits


def test_export_fuses_quantizes_and_passes_parity(tmp_path: Path, model_and_data) -> None:
    model, data, logits = model_and_data
    record = export_int8(model, logits, data, tmp_path / "w", tmp_path / "m.int8.onnx", 4, 64, True, 1e-3, 0.95)
    assert record["fp32_max_abs_logit_diff"] <= 1e-3
    assert record["int8_top1_agreement"] >= 0.95
    assert record["fusions"].get("Attention") == 2
    assert record["fusions"].get("SkipLayerNormalization", 0) >= 2
    graph = onnx.load(str(tmp_path / "m.int8.onnx")).graph
    assert any(n.op_type in ("MatMulInteger", "DynamicQuantizeMatMul", "QAttention") for n in graph.node)
    # dynamic batch and sequence axes: any shape runs
    for rows in ([data.ids[0]], data.ids[:7]):
        out = onnx_logits(tmp_path / "m.int8.onnx", Encoded(list(rows), np.zeros(len(rows), dtype=np.int64)))
        assert out.shape == (len(rows), 5)


def test_fp32_gate_fails_when_onnx_and_pytorch_disagree(tmp_path: Path, model_and_data) -> None:
    model, data, logits = model_and_data
    with pytest.raises(ParityError, match="fp32 ONNX differs from PyTorch"):
        export_int8(model, logits + 0.01, data, tmp_path / "w", tmp_path / "m.onnx", 4, 64, True, 1e-3, 0.5)


def test_int8_gate_fails_below_the_agreement_threshold(tmp_path: Path, model_and_data) -> None:
    model, data, logits = model_and_data
    with pytest.raises(ParityError, match="int8 top-1 agreement"):
        export_int8(model, logits, data, tmp_path / "w", tmp_path / "m.onnx", 4, 64, True, 1e-3, 1.01)
