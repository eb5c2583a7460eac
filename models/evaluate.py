"""Evaluation: quality (accuracy, macro-F1, per-class F1, calibration), latency, and the human report."""

from __future__ import annotations

import itertools
import json
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import minimize_scalar
from sklearn.metrics import confusion_matrix, f1_score

from cnai.model.predictor import softmax


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    """Mean |accuracy - confidence| over equal-width confidence bins, weighted by bin size."""
    confidence = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == labels).astype(np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    ece = 0.0
    for low, high in itertools.pairwise(edges):
        in_bin = (confidence > low) & (confidence <= high)
        if in_bin.any():
            ece += in_bin.mean() * abs(correct[in_bin].mean() - confidence[in_bin].mean())
    return float(ece)


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The softmax temperature that minimises held-out NLL (Guo et al. 2017): calibrated probabilities
    without changing any prediction."""

    def nll(log_t: float) -> float:
        probs = softmax(logits, float(np.exp(log_t)))
        return float(-np.log(probs[np.arange(len(labels)), labels] + 1e-12).mean())

    result = minimize_scalar(nll, bounds=(np.log(0.2), np.log(10.0)), method="bounded")
    return float(np.exp(result.x))


def classification_metrics(probs: np.ndarray, labels: np.ndarray, names: Sequence[str]) -> dict[str, Any]:
    predicted = probs.argmax(axis=1)
    every = list(range(len(names)))
    per_class = f1_score(labels, predicted, labels=every, average=None, zero_division=0)
    return {
        "accuracy": float((predicted == labels).mean()),
        "macro_f1": float(f1_score(labels, predicted, labels=every, average="macro", zero_division=0)),
        "ece": expected_calibration_error(probs, labels),
        "nll": float(-np.log(probs[np.arange(len(labels)), labels] + 1e-12).mean()),
        "per_class_f1": {name: float(f) for name, f in zip(names, per_class, strict=True)},
    }


def measure_latency(
    predict: Callable[[list[str]], object],
    texts: Sequence[str],
    samples: int,
    batches: int,
    batch_size: int = 32,
) -> dict[str, Any]:
    """Single-request p50/p99 (ms) over `samples` texts and batch throughput (texts/s), after a warm-up."""
    pool = list(texts)
    for text in pool[:10]:
        predict([text])
    single: list[float] = []
    for i in range(samples):
        text = pool[i % len(pool)]
        start = time.perf_counter()
        predict([text])
        single.append((time.perf_counter() - start) * 1000.0)
    chunks = [pool[(i * batch_size) % len(pool) :][:batch_size] for i in range(batches)]
    chunks = [c if len(c) == batch_size else (c + pool)[:batch_size] for c in chunks]
    predict(chunks[0])
    start = time.perf_counter()
    for chunk in chunks:
        predict(chunk)
    elapsed = time.perf_counter() - start
    ordered = sorted(single)
    return {
        "p50_ms": statistics.median(ordered),
        "p99_ms": ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))],
        "batch32_per_s": batch_size * batches / elapsed,
        "single_ms": single,
    }


def write_report(
    directory: Path,
    systems: dict[str, dict[str, Any]],
    labels: Sequence[str],
    confusion_for: tuple[str, np.ndarray, np.ndarray],
    history: dict[str, list[dict[str, float]]],
    extra: dict[str, Any],
) -> Path:
    """report.json (all figures), report.md (tables) and PNG plots a person would rather look at."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    directory.mkdir(parents=True, exist_ok=True)
    name, truth, predicted = confusion_for
    matrix = confusion_matrix(truth, predicted, labels=list(range(len(labels))), normalize="true")
    fig, ax = plt.subplots(figsize=(14, 12))
    ax.imshow(matrix, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=5)
    ax.set_yticks(range(len(labels)), labels, fontsize=5)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"confusion matrix (row-normalised): {name}")
    fig.tight_layout()
    fig.savefig(directory / "confusion_matrix.png", dpi=120)
    plt.close(fig)

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for phase, records in history.items():
        epochs = [r["epoch"] for r in records]
        axes[0].plot(epochs, [r["train_loss"] for r in records], marker="o", label=phase)
        if records and "dev_accuracy" in records[0]:
            axes[1].plot(epochs, [r["dev_accuracy"] for r in records], marker="o", label=phase)
    axes[0].set(title="training loss", xlabel="epoch")
    axes[1].set(title="dev accuracy", xlabel="epoch")
    for ax in axes:
        ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(directory / "training_curves.png", dpi=120)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(8, 4))
    for system, figures in systems.items():
        if figures.get("single_ms"):
            ax.hist(figures["single_ms"], bins=60, alpha=0.6, label=f"{system} (p50 {figures['p50_ms']:.2f} ms)")
    ax.set(title="single-request latency, 1 thread", xlabel="ms", ylabel="requests", xscale="log")
    ax.legend()
    fig.tight_layout()
    fig.savefig(directory / "latency_histogram.png", dpi=120)
    plt.close(fig)

    summary = {s: {k: v for k, v in f.items() if k != "single_ms"} for s, f in systems.items()}
    (directory / "report.json").write_text(json.dumps({"systems": summary, **extra}, indent=2) + "\n")
    columns = ["accuracy", "macro_f1", "ece", "p50_ms", "p99_ms", "batch32_per_s", "size_mb"]
    lines = [
        "# Evaluation report",
        "",
        "| system | " + " | ".join(columns) + " |",
        "|---" * (len(columns) + 1) + "|",
    ]
    for system, figures in summary.items():
        cells = [f"{figures[c]:.4g}" if isinstance(figures.get(c), float | int) else "-" for c in columns]
        lines.append(f"| {system} | " + " | ".join(cells) + " |")
    worst = sorted(summary[name]["per_class_f1"].items(), key=lambda kv: kv[1])[:10]
    lines += ["", f"Lowest per-class F1 ({name}):", ""]
    lines += [f"- {label}: {f1:.3f}" for label, f1 in worst]
    lines += ["", "![training curves](training_curves.png)", "", "![confusion matrix](confusion_matrix.png)"]
    lines += ["", "![latency](latency_histogram.png)", "", "```json", json.dumps(extra, indent=2), "```", ""]
    (directory / "report.md").write_text("\n".join(lines))
    return directory / "report.json"
