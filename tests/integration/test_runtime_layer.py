"""The runtime layer recipe, built for THIS host (a twin of the arm64 layer: same pins, same pruning), imports and
runs with nothing else on the path but what the Lambda runtime provides (boto3 and friends)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.conftest import HostLayer

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import numpy as np, onnxruntime as ort, tokenizers, pydantic
from onnx_free_model import model_bytes
session = ort.InferenceSession(model_bytes(), providers=["CPUExecutionProvider"])
assert session.run(None, {"x": np.ones((1, 2), np.float32)})[0].tolist() == [[4.0, 6.0]]
from tokenizers import Tokenizer, models, pre_tokenizers
tok = Tokenizer(models.WordLevel({"[UNK]": 0, "lost": 1, "card": 2}, unk_token="[UNK]"))
tok.pre_tokenizer = pre_tokenizers.Whitespace()
assert Tokenizer.from_str(tok.to_str()).encode("lost my card").ids == [1, 0, 2]
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.event_handler import APIGatewayRestResolver
app = APIGatewayRestResolver(enable_validation=True)
import aws_xray_sdk.core
import cnai.model.predictor, cnai.model.artifact
assert "site-packages" not in " ".join(m.__file__ or "" for m in (np, ort, tokenizers, pydantic))
print("ok", ort.__file__)
"""

# An ONNX MatMul model serialized by hand-written protobuf bytes would be unreadable; build it with the venv's onnx
# here and hand the bytes to the probe through a module file, so the probe itself never imports onnx.
MODEL_MODULE = """
import base64
def model_bytes():
    return base64.b64decode({b64!r})
"""


def matmul_model() -> bytes:
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])],
        [helper.make_tensor("w", TensorProto.FLOAT, [2, 2], [1, 2, 3, 4])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


@pytest.mark.slow
def test_pruned_layer_imports_and_runs_with_only_the_lambda_runtime_beside_it(
    tmp_path: Path, host_layer: HostLayer
) -> None:
    import base64

    # Given the runtime layer built for this host's CPython (same pins, same DROP list), beside a folder playing
    # the Lambda runtime
    report, layer, runtime = host_layer.report, host_layer.python, host_layer.runtime
    assert not list(layer.glob("onnxruntime/capi/libonnxruntime.so*"))
    probe = tmp_path / "probe"
    probe.mkdir()
    (probe / "onnx_free_model.py").write_text(MODEL_MODULE.format(b64=base64.b64encode(matmul_model()).decode()))
    # When a Python without site-packages imports and runs the serving stack from it
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": os.pathsep.join(map(str, [probe, ROOT, layer, runtime]))}
    run = subprocess.run(
        [sys.executable, "-S", "-c", PROBE], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    # Then it works: nothing the pruning removed or the --no-deps install skipped is needed
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.startswith("ok " + str(layer))
    assert float(str(report["layer_unzipped_mb"])) < 120
