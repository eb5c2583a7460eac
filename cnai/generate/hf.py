"""The transformers backend: a Hugging Face causal LM in PyTorch, for the cloud GPU jobs a recipe may point
at a bigger model (hub id, local folder) and as the reference the ONNX export is checked against.

torch and transformers are imported when a TransformersGenerator is built, never at module import: the
predict Lambda and the SageMaker serving container load ONNX (cnai.generate.onnx) and never reach here.
The loop is written out (one forward per token with the KV cache) instead of calling `model.generate`, so
stop sequences, the deadline and the timings go through the same run_loop as the ONNX backend.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cnai.generate.decode import TOP_K, LocalGenerator, TextCodec
from cnai.generate.params import GenerationError, GenerationParams
from cnai.model.identity import ModelId


class TransformersGenerator(LocalGenerator):
    """A causal LM through transformers. `source` is a local folder or a hub id (the hub only where the
    job's environment allows it; nothing here downloads for the bundled model)."""

    def __init__(self, source: str | Path, identity: ModelId, threads: int | None = None) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if threads is not None:
            torch.set_num_threads(threads)
        self._torch = torch
        self._identity = identity
        self.model: Any = AutoModelForCausalLM.from_pretrained(str(source), dtype=torch.float32)
        self.model.eval()
        tokenizer_file = Path(str(source)) / "tokenizer.json"
        if tokenizer_file.is_file():
            self.codec = TextCodec.from_file(tokenizer_file)
        else:  # a hub id (or a folder without tokenizer.json): the fast tokenizer's own `tokenizers` object
            self.codec = TextCodec.of(AutoTokenizer.from_pretrained(str(source)).backend_tokenizer)
        self.context_length = int(getattr(self.model.config, "max_position_embeddings", 2048))

    def _steps(self, ids: list[int], params: GenerationParams) -> Iterator[int]:
        torch = self._torch
        rng = torch.Generator().manual_seed(params.seed) if params.seed is not None else None
        with torch.inference_mode():
            cache = None
            inputs = torch.tensor([ids], dtype=torch.long)
            while True:
                out = self.model(input_ids=inputs, cache=cache, use_cache=True)
                cache = out.cache
                logits = out.logits[0, -1].float()
                token = int(torch.argmax(logits)) if params.greedy else _sample(torch, logits, params, rng)
                yield token
                inputs = torch.tensor([[token]], dtype=torch.long)

    def logits(self, ids: list[int]) -> Any:
        """Logits for every position of `ids` (numpy, [len, vocab]): what perplexity is computed from."""
        torch = self._torch
        with torch.inference_mode():
            return self.model(input_ids=torch.tensor([ids], dtype=torch.long)).logits[0].float().numpy()


def _sample(torch: Any, logits: Any, params: GenerationParams, rng: Any) -> int:
    """Temperature, then top-k (TOP_K), then top-p (nucleus), then one draw."""
    values, indices = torch.topk(logits / params.temperature, TOP_K)
    probs = torch.softmax(values, dim=-1)
    if params.top_p < 1.0:
        keep = torch.cumsum(probs, dim=-1) - probs < params.top_p
        probs = torch.where(keep, probs, torch.zeros_like(probs))
        probs = probs / probs.sum()
    choice = torch.multinomial(probs, 1, generator=rng)
    if choice.numel() != 1:
        raise GenerationError("top_p", "left no token to sample")
    return int(indices[int(choice)])
