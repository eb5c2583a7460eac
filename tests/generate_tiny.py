"""A tiny Llama (random weights, a 300-word tokenizer with ChatML's special tokens) for tests of the generator
path: the exporter, the ONNX runtime, the route. The same code paths as the bundled SmolLM2, in seconds
instead of minutes, and nothing downloaded."""

from __future__ import annotations

import json
from pathlib import Path

WORDS = [f"w{i}" for i in range(280)] + ["hello", "card", "lost", "reply", "thanks", "customer", "stop", "."]
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def write_tokenizer(folder: Path) -> Path:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from tokenizers.decoders import WordPiece

    vocab = {token: i for i, token in enumerate([*SPECIAL, "[UNK]", "\n", *WORDS, "system", "user", "assistant"])}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    split = [pre_tokenizers.Split("\n", "isolated"), pre_tokenizers.WhitespaceSplit()]
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(split)
    tokenizer.decoder = WordPiece(prefix="##", cleanup=False)
    tokenizer.add_special_tokens(SPECIAL)
    path = folder / "tokenizer.json"
    tokenizer.save(str(path))
    return path


def write_tiny_llama(folder: Path, seed: int = 0) -> Path:
    """config.json + model.safetensors + tokenizer.json: a 2-layer Llama with GQA, tied embeddings."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    folder.mkdir(parents=True, exist_ok=True)
    write_tokenizer(folder)
    vocab = len(json.loads((folder / "tokenizer.json").read_text())["model"]["vocab"])
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=32,
        max_position_embeddings=256,
        tie_word_embeddings=True,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=2,
    )
    model = LlamaForCausalLM(config)
    with torch.no_grad():  # sharper logits than the default init: greedy choices are not near-ties
        model.lm_head.weight.mul_(8.0)
    model.save_pretrained(folder)
    return folder
