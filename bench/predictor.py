"""The predictor alone on the BANKING77 test texts, 1 thread: one text vs a batch of 32 per text, the padded
batch (the evaluation path, `logits`) beside the grouped one (the serving path, `served_logits`), interleaved
in one run so the host's noise hits both; and the test accuracy each path gives in 64-text chunks (how
models/train.py evaluates) and one text at a time.

    python bench/predictor.py [--model reports/bench-distill/model] [--rounds 3]

Prints; asserts nothing. A minute on the full student.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import csv
import json
import statistics
import time
from collections.abc import Callable, Sequence

import numpy as np

from cnai.model.predictor import Predictor

ROOT = Path(__file__).resolve().parents[1]


def single_ms(predict: Callable[[Sequence[str]], object], texts: list[str]) -> tuple[float, float]:
    """(wall p50, mean CPU ms) of one text per call."""
    timings = []
    cpu = time.thread_time()
    for text in texts:
        started = time.perf_counter()
        predict([text])
        timings.append((time.perf_counter() - started) * 1000)
    return statistics.median(timings), (time.thread_time() - cpu) * 1000 / len(texts)


def batch_per_text_ms(
    predict: Callable[[Sequence[str]], object], texts: list[str], size: int = 32
) -> tuple[float, float]:
    """(wall, CPU) ms per text in calls of `size` texts. CPU time beside wall: on a loaded host a 20 ms call
    is preempted where a 0.5 ms one mostly is not, so wall time flatters the single text."""
    chunks = [texts[i : i + size] for i in range(0, len(texts) - size + 1, size)]
    started, cpu = time.perf_counter(), time.thread_time()
    for chunk in chunks:
        predict(chunk)
    count = len(chunks) * size
    return (time.perf_counter() - started) * 1000 / count, (time.thread_time() - cpu) * 1000 / count


def accuracy(probs: np.ndarray, truth: np.ndarray) -> float:
    return float((probs.argmax(axis=1) == truth).mean())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=ROOT / "reports" / "bench-distill" / "model")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "datasets" / "banking77")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--texts", type=int, default=1024, help="texts per timing round")
    args = parser.parse_args(argv)
    if not (args.model / "model_card.json").is_file():
        raise SystemExit(f"{args.model}: no model_card.json (run `make bench-distill` first, or pass --model)")
    predictor = Predictor.from_dir(args.model, threads=1, cache_size=0)
    with (args.data / "test.csv").open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    texts = [r["text"] for r in rows]
    truth = np.asarray([predictor.labels.index(r["category"]) for r in rows])

    paths = {"padded": predictor.logits, "grouped": predictor.served_logits}
    figures: dict[str, list[tuple[float, float]]] = {"single": [], "padded": [], "grouped": []}
    sample = texts[: args.texts]
    single_ms(predictor.logits, sample[:50])  # warm-up
    for _ in range(args.rounds):
        figures["single"].append(single_ms(predictor.logits, sample))
        for name, path in paths.items():
            figures[name].append(batch_per_text_ms(path, sample))
    single = statistics.median(f[0] for f in figures["single"])
    single_cpu = statistics.median(f[1] for f in figures["single"])
    result: dict[str, float] = {"single_p50_ms": single, "single_cpu_ms": single_cpu}
    for name in paths:
        per_text = statistics.median(f[0] for f in figures[name])
        per_text_cpu = statistics.median(f[1] for f in figures[name])
        result[f"{name}_batch32_per_text_ms"] = per_text
        result[f"{name}_batch32_vs_single"] = per_text / single
        result[f"{name}_batch32_per_text_cpu_ms"] = per_text_cpu
        result[f"{name}_batch32_vs_single_cpu"] = per_text_cpu / single_cpu

    for name, path in paths.items():
        chunks = np.concatenate([path(texts[i : i + 64]) for i in range(0, len(texts), 64)])
        result[f"{name}_accuracy_chunks64"] = accuracy(chunks, truth)
    result["one_by_one_accuracy"] = accuracy(np.concatenate([predictor.logits([t]) for t in texts]), truth)
    print(json.dumps({k: round(v, 6) for k, v in result.items()}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
