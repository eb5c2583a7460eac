"""PyTorch -> ONNX (dynamic batch and sequence) -> fused graph -> dynamic int8, with parity gates.

The gates fail the run instead of shipping a broken model: fp32 ONNX must match PyTorch logits within
max_abs_logit_diff, and int8 must pick the same top-1 label as fp32 on at least min_agreement of rows.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnxruntime.quantization import QuantType, quantize_dynamic
from torch import nn

from cnai.errors import CnaiError
from models.data import Encoded, collate, eval_batches

log = logging.getLogger(__name__)
OPSET = 17


class ParityError(CnaiError):
    """An exported model does not behave like the one it was exported from."""


def export_onnx(model: nn.Module, path: Path, sample: Encoded) -> None:
    """TorchScript-based export: its graph is the one onnxruntime's transformer fusions recognise."""
    model = model.to("cpu").eval()
    ids, mask = collate(sample.ids[:4])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (ids, mask),
            str(path),
            input_names=["input_ids", "attention_mask"],
            output_names=["logits"],
            dynamic_axes={
                "input_ids": {0: "batch", 1: "sequence"},
                "attention_mask": {0: "batch", 1: "sequence"},
                "logits": {0: "batch"},
            },
            opset_version=OPSET,
            dynamo=False,
        )


def optimize(source: Path, target: Path, num_heads: int, hidden_size: int) -> dict[str, int]:
    """Fuse attention, LayerNorm (+ skip) and GELU (+ bias) into onnxruntime's contrib ops."""
    from onnxruntime.transformers.optimizer import optimize_model

    optimized = optimize_model(str(source), model_type="bert", num_heads=num_heads, hidden_size=hidden_size)
    optimized.save_model_to_file(str(target))
    stats = optimized.get_fused_operator_statistics()
    return {k: int(v) for k, v in stats.items() if v}


def quantize(source: Path, target: Path, per_channel: bool, exclude: list[str] | None = None) -> None:
    quantize_dynamic(
        str(source),
        str(target),
        weight_type=QuantType.QInt8,
        per_channel=per_channel,
        nodes_to_exclude=exclude or [],
        # fused contrib ops defeat ONNX shape inference; their outputs are float
        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
    )


def session(path: Path, threads: int = 0) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def onnx_logits(path: Path, data: Encoded, batch_size: int = 128) -> np.ndarray:
    sess = session(path)
    out: np.ndarray | None = None
    for batch in eval_batches([len(x) for x in data.ids], batch_size):
        ids, mask = collate([data.ids[i] for i in batch])
        (logits,) = sess.run(["logits"], {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})
        if out is None:
            out = np.zeros((len(data), logits.shape[-1]), dtype=np.float32)
        out[batch] = logits
    assert out is not None
    return out


def _head_nodes(path: Path) -> list[str]:
    """The last MatMul (the classifier head): the first thing to keep in fp32 if int8 drifts."""
    graph = onnx.load(str(path), load_external_data=False).graph
    matmuls = [n.name for n in graph.node if n.op_type in ("MatMul", "Gemm")]
    return matmuls[-1:]


def export_int8(
    model: nn.Module,
    torch_logits: np.ndarray,
    data: Encoded,
    workdir: Path,
    target: Path,
    num_heads: int,
    hidden_size: int,
    per_channel: bool,
    max_abs_diff: float,
    min_agreement: float,
) -> dict[str, Any]:
    """Export, fuse, check fp32 parity, quantize, check int8 agreement. Returns the parity record."""
    workdir.mkdir(parents=True, exist_ok=True)
    raw, fused = workdir / "model.fp32.onnx", workdir / "model.fp32.opt.onnx"
    export_onnx(model, raw, data)
    fusions = optimize(raw, fused, num_heads, hidden_size)
    fp32 = onnx_logits(fused, data)
    diff = float(np.abs(fp32 - torch_logits).max())
    record: dict[str, Any] = {"rows": len(data), "fp32_max_abs_logit_diff": diff, "fusions": fusions}
    if diff > max_abs_diff:
        raise ParityError(f"fp32 ONNX differs from PyTorch by {diff:.2e} > {max_abs_diff:.0e} (max abs logit)")
    attempts: list[tuple[str, list[str]]] = [("all weights int8", []), ("head kept fp32", _head_nodes(fused))]
    for description, exclude in attempts:
        quantize(fused, target, per_channel=per_channel, exclude=exclude)
        int8 = onnx_logits(target, data)
        agreement = float((int8.argmax(-1) == fp32.argmax(-1)).mean())
        log.info("int8 (%s): top-1 agreement with fp32 %.4f", description, agreement)
        if agreement >= min_agreement:
            record.update(
                int8_top1_agreement=agreement,
                int8_max_abs_logit_diff=float(np.abs(int8 - fp32).max()),
                quantization=description,
                per_channel=per_channel,
            )
            return record
    raise ParityError(f"int8 top-1 agreement with fp32 is {agreement:.4f} < {min_agreement} even with the head in fp32")
