"""A tiny Llama (random weights, a 300-word tokenizer with ChatML's special tokens) for tests of the generator
path: the exporter, the ONNX runtime, the route. The same code paths as the bundled SmolLM2, in seconds
instead of minutes, and nothing downloaded. `write_carded_artifact`: a generator artifact's folder and card as
the exporter writes them, with placeholder weights, for tests of what reads the card (registry, GET routes)."""

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


def write_carded_artifact(folder: Path, name: str = "tiny-gen", weights: bytes = b"\0" * 1000) -> Path:
    """An int8 generator artifact: genai_config.json, tokenizer.json, model.onnx(.data) placeholders and the card
    (perplexity of torch, fp32 and int8 and the ratio, greedy parity on 5 prompts, lineage), hashed and versioned."""
    from cnai.generate.artifact import GeneratorCard, write_generator_card
    from cnai.model.artifact import Lineage

    folder.mkdir(parents=True)
    (folder / "genai_config.json").write_text(json.dumps({"model": {"context_length": 256}}))
    (folder / "tokenizer.json").write_text("{}")
    (folder / "model.onnx").write_bytes(b"graph")
    (folder / "model.onnx.data").write_bytes(weights)
    card = GeneratorCard(
        name=name,
        precision="int8",
        context_length=256,
        metrics={"perplexity": {"torch": 10.0, "fp32": 10.0, "int8": 10.5}, "perplexity_ratio": {"int8": 1.05}},
        parity={"greedy_identical": True, "prompts": 5, "max_new_tokens": 16},
        lineage=Lineage(
            teacher='{"folder": "src", "config_sha256": "ab"}',
            hyperparameters={"builder": "onnxruntime-genai==0.x", "recipe_fingerprint": "0123456789abcdef"},
            code_version="0.1.0+abc",
        ),
    )
    write_generator_card(folder, card)
    return folder


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
