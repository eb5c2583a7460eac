"""The decoding loop every local backend shares: chat rendering, tokenization, stop sequences, the deadline,
timing. A backend only supplies the next token ids; so the ONNX runtime and the transformers peer stop, count
and time the same way, and their greedy outputs can be compared token for token.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tokenizers import Tokenizer

from cnai.generate.params import (
    FinishReason,
    Generation,
    GenerationError,
    GenerationParams,
    Messages,
    check_messages,
)

if TYPE_CHECKING:
    from cnai.model.identity import ModelId

# SmolLM2's own chat template (ChatML), written out so that rendering needs no jinja and no transformers; a
# unit test checks it against the tokenizer's template. Models with another template ship their own
# `chat_format` in the model card (not needed yet: one family is bundled).
DEFAULT_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
END_OF_TURN = "<|im_end|>"
EXTRA_EOS = ("<|endoftext|>",)
TOP_K = 50  # sampling keeps the 50 likeliest tokens before top-p (onnxruntime-genai's default, mirrored)


def render_chat(messages: Messages | str, system: str = DEFAULT_SYSTEM) -> str:
    """ChatML with the generation prompt open: `<|im_start|>role\\ncontent<|im_end|>\\n ... assistant\\n`."""
    checked = check_messages(messages)
    parts = []
    if checked[0]["role"] != "system":
        parts.append(f"<|im_start|>system\n{system}{END_OF_TURN}\n")
    parts.extend(f"<|im_start|>{m['role']}\n{m['content']}{END_OF_TURN}\n" for m in checked)
    parts.append("<|im_start|>assistant\n")
    return "".join(parts)


@dataclass(frozen=True)
class TextCodec:
    """tokenizer.json (tokenizers, no transformers) plus the ids that end a turn."""

    tokenizer: Tokenizer
    eos_ids: frozenset[int]

    @classmethod
    def from_file(cls, path: Path) -> TextCodec:
        if not path.is_file():
            raise GenerationError("tokenizer", f"{path}: missing")
        return cls.of(Tokenizer.from_file(str(path)))

    @classmethod
    def of(cls, tokenizer: Tokenizer) -> TextCodec:
        eos = {tokenizer.token_to_id(t) for t in (END_OF_TURN, *EXTRA_EOS)}
        return cls(tokenizer, frozenset(i for i in eos if i is not None))

    def encode(self, text: str) -> list[int]:
        # The special tokens are written in the text; the post-processor must not add more (HF's
        # apply_chat_template tokenizes the same way).
        return list(self.tokenizer.encode(text, add_special_tokens=False).ids)

    def decode(self, ids: list[int]) -> str:
        return str(self.tokenizer.decode(ids, skip_special_tokens=True))


def _first_stop(text: str, stops: tuple[str, ...]) -> int:
    found = [i for i in (text.find(s) for s in stops) if i >= 0]
    return min(found) if found else -1


def run_loop(
    codec: TextCodec,
    prompt_ids: list[int],
    steps: Iterator[int],
    params: GenerationParams,
    started: float,
) -> Generation:
    """Pull tokens from `steps` (a backend's lazy iterator) until a turn ends, a stop sequence appears, the
    token budget is spent or the deadline passes. The deadline is checked between tokens, so a call
    overruns it by at most one decoding step."""
    out: list[int] = []
    text = ""
    ttft_ms = 0.0
    reason: FinishReason = "length"
    deadline = started + params.deadline_s if params.deadline_s is not None else None
    for token in steps:
        if not out and ttft_ms == 0.0:
            ttft_ms = (time.perf_counter() - started) * 1000.0
        if token in codec.eos_ids:
            reason = "stop"
            break
        out.append(token)
        text = codec.decode(out)
        if params.stop and (cut := _first_stop(text, params.stop)) >= 0:
            text, reason = text[:cut], "stop"
            break
        if len(out) >= params.max_new_tokens:
            break
        if deadline is not None and time.perf_counter() >= deadline:
            reason = "deadline"
            break
    total_ms = (time.perf_counter() - started) * 1000.0
    return Generation(text, len(prompt_ids), len(out), reason, ttft_ms or total_ms, total_ms, tuple(out))


def check_context(prompt_ids: list[int], params: GenerationParams, context_length: int) -> None:
    if len(prompt_ids) + params.max_new_tokens > context_length:
        raise GenerationError(
            "messages",
            f"{len(prompt_ids)} prompt tokens + max_new_tokens {params.max_new_tokens} exceed the model's "
            f"context of {context_length} tokens",
        )


class LocalGenerator:
    """What the ONNX and transformers backends share: identity, prompt tokenization, the context check and
    the loop. A subclass sets `_identity`, `codec` and `context_length` and supplies `_steps`."""

    _identity: ModelId
    codec: TextCodec
    context_length: int

    @property
    def identity(self) -> ModelId:
        return self._identity

    def prompt_ids(self, messages: Messages | str) -> list[int]:
        return self.codec.encode(render_chat(messages))

    def generate(self, messages: Messages | str, params: GenerationParams | None = None) -> Generation:
        params = params or GenerationParams()
        started = time.perf_counter()
        ids = self.prompt_ids(messages)
        check_context(ids, params, self.context_length)
        return run_loop(self.codec, ids, self._steps(ids, params), params, started)

    def _steps(self, ids: list[int], params: GenerationParams) -> Iterator[int]:
        raise NotImplementedError
