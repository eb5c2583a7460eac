"""A generator card in the model registry's terms: its lineage under the registry's keys (the classifier's,
cnai.registry.packages.LINEAGE_KEYS), its gated figures as registry metrics, and the evaluation report the
package's ModelMetrics point at. Pure functions of the card: `cnai generate register` (cnai.deploy.generator)
uploads and registers with them; this package stays below the registry in the import layers.
"""

from __future__ import annotations

from typing import Any

from cnai.generate.artifact import GeneratorCard


def registry_lineage(card: GeneratorCard, artifact_object_version: str = "") -> dict[str, str]:
    """The card's lineage in the registry's keys, as the classifier's: the source the weights came from
    (`teacher`), the recipe's fingerprint, the code version, the card's content version, and the S3 VersionId
    of the uploaded tar (`artifact_object_version`: what a deploy pins) once it is known."""
    lineage = {
        "teacher": card.lineage.teacher,
        "recipe_fingerprint": str(card.lineage.hyperparameters.get("recipe_fingerprint", "")),
        "code_version": card.lineage.code_version,
        "artifact_version": card.version,
    }
    if artifact_object_version:
        lineage["artifact_object_version"] = artifact_object_version
    return lineage


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def registry_metrics(card: GeneratorCard) -> dict[str, float]:
    """What a reviewer gates a generator on, as registry metrics: the shipped precision's perplexity and its
    ratio to fp32's on the held-out text (the export refuses a ratio above 1.10), fp32's perplexity, and the
    parity check (greedy fp32 ONNX vs PyTorch: 1.0 identical, 0.0 not; the prompts compared)."""
    metrics: dict[str, float] = {}
    perplexity = card.metrics.get("perplexity") or {}
    ratio = card.metrics.get("perplexity_ratio") or {}
    if isinstance(perplexity, dict):
        for key, name in ((card.precision, "perplexity"), ("fp32", "perplexity_fp32")):
            found = _number(perplexity.get(key))
            if found is not None:
                metrics[name] = found
    found = _number(ratio.get(card.precision)) if isinstance(ratio, dict) else None
    if found is not None:
        metrics["perplexity_ratio"] = found
    elif card.precision == "fp32" and "perplexity" in metrics:
        metrics["perplexity_ratio"] = 1.0
    if isinstance(card.parity.get("greedy_identical"), bool):
        metrics["greedy_identical"] = 1.0 if card.parity["greedy_identical"] else 0.0
    prompts = _number(card.parity.get("prompts"))
    if prompts is not None:
        metrics["parity_prompts"] = prompts
    return metrics


def evaluation_report(card: GeneratorCard, model_data: str) -> dict[str, Any]:
    """The evaluation report a generator version's ModelMetrics point at: the card without its file list, and
    the tar it describes."""
    return {
        "model_data": model_data,
        "registry_metrics": registry_metrics(card),
        **card.model_dump(exclude={"files"}),
    }
