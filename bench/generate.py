"""`make bench-generate`: the generator's figures, printed and written to reports/bench-generate.json.

On one thread and a fixed prompt set (PROMPTS, greedy, MAX_NEW_TOKENS each):
- ours: the shipped artifact (the bundled SmolLM2 exported to int4 by models/export_generator.py, run by
  cnai.generate's ONNX Runtime GenAI backend), and the int8 export beside it when one exists;
- the peer: transformers generating with the same weights (the de-quantized GGUF in float32) the way its
  users do, `model.generate(do_sample=False)` with a streamer timing the first token;
- greedy_identical: the fp32 ONNX export (built here, in a temporary folder) decoded by our loop against the
  peer's `model.generate`, token for token, on every prompt;
- perplexity_ratio: the shipped model's perplexity over the fp32 export's, on the exporter's held-out text;
- package_mb: the artifact folder on disk (what a Lambda or a SageMaker container unpacks), and its tarball.

tokens/s = tokens generated / wall time of the calls (prompt processing included); ttft_ms = median time from
the call to the first new token. The runners take the prompts in turn (each prompt through ours, the peer and
the other exports before the next), so load from other processes on a shared machine hits them alike; the
report adds tokens per CPU second of this process (less sensitive to that load) and the load average.
Benchmarks print; they assert nothing about time.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import json
import os
import statistics
import tempfile
import time
from typing import Any

PROMPTS = (
    "A customer writes: 'I lost my card yesterday.' Write a short, polite first reply.",
    "A customer asks how to top up their account by bank transfer. Answer briefly.",
    "A customer says a card payment was declined at a shop. Draft a helpful reply.",
    "Write one more example of a customer message asking about exchange rates.",
    "A customer wants to change their PIN. Explain the steps.",
    "What should a customer do if they see a payment they do not recognise?",
)
MAX_NEW_TOKENS = 48
KEYS = (
    "ours_tokens_per_s", "peer_tokens_per_s", "ours_ttft_ms", "peer_ttft_ms", "greedy_identical",
    "perplexity_ratio", "package_mb",
)  # fmt: skip


Run = tuple[list[int], float, float, float]  # (new token ids, ttft ms, wall s, cpu s)


def ours_runner(generator: Any) -> Any:
    from cnai.generate import GenerationParams

    params = GenerationParams(max_new_tokens=MAX_NEW_TOKENS)

    def run(prompt: str) -> Run:
        cpu = time.process_time()
        result = generator.generate(prompt, params)
        return list(result.token_ids), result.ttft_ms, result.total_ms / 1000.0, time.process_time() - cpu

    run(PROMPTS[0])  # warm-up: first-call allocations
    return run


def peer_runner(folder: Path) -> Any:
    """transformers as its users run it: model.generate, greedy, one thread; a streamer notes the first token."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.generation.streamers import BaseStreamer

    torch.set_num_threads(1)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()

    class FirstToken(BaseStreamer):
        def __init__(self) -> None:
            self.calls = 0
            self.at: float | None = None

        def put(self, value: Any) -> None:
            self.calls += 1
            if self.calls == 2 and self.at is None:  # the first put is the prompt, the second the first new token
                self.at = time.perf_counter()

        def end(self) -> None:
            pass

    def run(prompt: str) -> Run:
        chat = [{"role": "user", "content": prompt}]
        cpu, started = time.process_time(), time.perf_counter()
        ids: Any = tokenizer.apply_chat_template(
            chat, add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        streamer = FirstToken()
        with torch.inference_mode():
            out = model.generate(
                **ids, max_new_tokens=MAX_NEW_TOKENS, do_sample=False, streamer=streamer, pad_token_id=2
            )
        total, cpu = time.perf_counter() - started, time.process_time() - cpu
        new = out[0, ids["input_ids"].shape[1] :].tolist()
        if new and new[-1] in (0, 2):
            new = new[:-1]  # the end of turn is not a generated token for us either
        return new, ((streamer.at or time.perf_counter()) - started) * 1000.0, total, cpu

    run(PROMPTS[0])
    return run


def summary(runs: list[Run]) -> dict[str, Any]:
    tokens = sum(len(r[0]) for r in runs)
    return {
        "tokens_per_s": tokens / sum(r[2] for r in runs),
        "tokens_per_cpu_s": tokens / sum(r[3] for r in runs),
        "ttft_ms": statistics.median(r[1] for r in runs),
        "tokens": tokens,
        "outputs": [r[0] for r in runs],
    }


def interleaved(runners: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each prompt through every runner in turn, so a burst of load from other processes hits them alike."""
    runs: dict[str, list[Run]] = {name: [] for name in runners}
    for prompt in PROMPTS:
        for name, run in runners.items():
            runs[name].append(run(prompt))
    return {name: summary(r) for name, r in runs.items()}


def folder_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.iterdir() if p.is_file()) / 1e6


def main(argv: list[str] | None = None) -> int:
    from cnai.generate import bundled, load_generator
    from cnai.generate.decode import TextCodec
    from cnai.generate.onnx import OnnxGenerator
    from cnai.model.identity import ModelId
    from models.export_generator import HELD_OUT_TEXT, build_onnx, perplexity_onnx

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("reports"))
    parser.add_argument("--precision", default="int4", help="the shipped export (models/export_generator.py)")
    args = parser.parse_args(argv)

    hf = bundled.hf_folder()
    shipped = bundled.onnx_folder(args.precision)
    report: dict[str, Any] = {"prompts": len(PROMPTS), "max_new_tokens": MAX_NEW_TOKENS, "threads": 1}
    report["load_average_at_start"] = round(os.getloadavg()[0], 2)
    runners = {"ours": ours_runner(load_generator(f"onnx:{shipped}", threads=1)), "peer": peer_runner(hf)}
    for other in ("int8", "int4"):
        try:
            if other != args.precision:
                runners[other] = ours_runner(load_generator(f"onnx:{bundled.onnx_folder(other)}", threads=1))
        except Exception as exc:  # another export is optional
            print(f"ours ({other}): not measured ({exc})")
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = build_onnx(hf, Path(tmp) / "fp32", "fp32", Path(tmp) / "cache")
        runners["fp32"] = ours_runner(OnnxGenerator(fp32, ModelId("witness", "fp32"), threads=1))
        figures = interleaved(runners)
        codec = TextCodec.from_file(fp32 / "tokenizer.json")
        held_out = codec.encode(HELD_OUT_TEXT)
        ppl_fp32, ppl_ours = perplexity_onnx(fp32, held_out), perplexity_onnx(shipped, held_out)
    for name, f in figures.items():
        print(f"{name}: {f['tokens_per_s']:.1f} tokens/s ({f['tokens_per_cpu_s']:.1f} per CPU second), first token "
              f"{f['ttft_ms']:.0f} ms")  # fmt: skip
    ours, peer = figures["ours"], figures["peer"]
    same = [a == b for a, b in zip(figures["fp32"]["outputs"], peer["outputs"], strict=True)]
    report["load_average_at_end"] = round(os.getloadavg()[0], 2)
    for name, f in figures.items():
        if name not in ("ours", "peer"):
            report[f"onnx_{name}"] = {
                k: round(v, 2) for k, v in f.items() if k in ("tokens_per_s", "tokens_per_cpu_s", "ttft_ms")
            }
    tar = shipped.parent / f"{shipped.name}.tar.gz"
    report.update(
        ours_tokens_per_s=round(ours["tokens_per_s"], 2),
        peer_tokens_per_s=round(peer["tokens_per_s"], 2),
        ours_ttft_ms=round(ours["ttft_ms"], 1),
        peer_ttft_ms=round(peer["ttft_ms"], 1),
        greedy_identical=all(same),
        greedy_identical_prompts=f"{sum(same)}/{len(same)}",
        perplexity_ratio=round(ppl_ours / ppl_fp32, 4),
        perplexity={"fp32": round(ppl_fp32, 4), args.precision: round(ppl_ours, 4)},
        package_mb=round(folder_mb(shipped), 1),
        package_tar_mb=round(tar.stat().st_size / 1e6, 1) if tar.is_file() else None,
        speedup=round(ours["tokens_per_s"] / peer["tokens_per_s"], 2),
        ours_tokens_per_cpu_s=round(ours["tokens_per_cpu_s"], 2),
        peer_tokens_per_cpu_s=round(peer["tokens_per_cpu_s"], 2),
        speedup_cpu=round(ours["tokens_per_cpu_s"] / peer["tokens_per_cpu_s"], 2),
        precision=args.precision,
        tokens={"ours": ours["tokens"], "peer": peer["tokens"]},
    )
    report = {k: report[k] for k in KEYS} | {k: v for k, v in report.items() if k not in KEYS}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench-generate.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
