"""QualityGate: decide from the trained artifact's own model card whether it may be registered.

The card is read from the job's model.tar.gz in S3 as a stream (nothing is extracted to disk and no path
inside the tar is trusted: only a regular file named exactly `model_card.json` at the root is read, size
capped). The gate passes only if

1. the parity gates passed (fp32 ONNX vs PyTorch, int8 vs fp32, at the bars recorded in the card),
2. accuracy and macro-F1 of what will be served (`student_int8` on the test split) meet the thresholds,
3. neither is worse than the group's current Approved version's by more than the tolerance.

Otherwise the cause names the metric, its value and the bar: `macro_f1 0.7012 below 0.7500 (threshold)`.
The evaluation report (the card's test metrics, in SageMaker's model-quality JSON shape plus ours) is
written next to the job's output for the registry's ModelMetrics.
"""

from __future__ import annotations

import hashlib
import json
import tarfile
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from cnai.errors import ArtifactError
from cnai.model.artifact import CARD_FILE, ModelCard
from cnai.pipeline.input import Thresholds
from cnai.pipeline.prepare import parse_s3_uri

MAX_CARD_BYTES = 4 << 20
SERVED = "student_int8"  # the system the card's test metrics describe for the shipped model.onnx
GATED = ("accuracy", "macro_f1")


@dataclass(frozen=True)
class Baseline:
    """The group's current Approved version, as the registry records it."""

    version: int
    arn: str
    metrics: dict[str, float]


def read_card(s3: Any, model_data: str) -> ModelCard:
    """The model card inside s3://.../model.tar.gz, streamed (tar read front to back, one pass)."""
    return read_artifact(s3, model_data)[0]


def read_artifact(s3: Any, model_data: str) -> tuple[ModelCard, str | None]:
    """(the model card, the S3 object version of the bytes read; None on an unversioned bucket). The version is
    what the package records (`artifact_object_version`): the deploy pins exactly the tar that was judged."""
    bucket, key = parse_s3_uri(model_data)
    response = s3.get_object(Bucket=bucket, Key=key)
    found = response.get("VersionId")
    return _card(response["Body"], model_data), (None if found in (None, "null") else str(found))


def _card(body: Any, model_data: str) -> ModelCard:
    try:
        with tarfile.open(fileobj=body, mode="r|gz") as tar:
            for member in tar:
                if member.name.removeprefix("./") != CARD_FILE:
                    continue
                if not member.isreg():
                    raise ArtifactError(f"{model_data}: {member.name} is not a regular file (link?); refused")
                if member.size > MAX_CARD_BYTES:
                    raise ArtifactError(f"{model_data}: {member.name} is {member.size} bytes, over {MAX_CARD_BYTES}")
                handle = tar.extractfile(member)
                assert handle is not None
                try:
                    return ModelCard.model_validate_json(handle.read())
                except ValidationError as exc:
                    raise ArtifactError(f"{model_data}: {CARD_FILE} is not a valid model card ({exc})") from None
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise ArtifactError(f"{model_data}: not a readable model.tar.gz ({exc})") from None
    raise ArtifactError(f"{model_data}: holds no {CARD_FILE} at its root; not a cnai artifact")


def served_metrics(card: ModelCard) -> dict[str, float]:
    test = (card.metrics.get("test") or {}).get(SERVED) or {}
    out = {k: float(v) for k, v in test.items() if isinstance(v, int | float) and not isinstance(v, bool)}
    missing = [m for m in GATED if m not in out]
    if missing:
        raise ArtifactError(f"model card metrics.test.{SERVED} lacks {', '.join(missing)}")
    return out


def parity_failure(card: ModelCard) -> str | None:
    """None when the card records passed parity gates; else the cause (metric, value, bar)."""
    parity = card.parity
    hp = card.lineage.hyperparameters
    if "int8_top1_agreement" not in parity or "fp32_max_abs_logit_diff" not in parity:
        return "parity not recorded in the model card (export gates did not run)"
    agreement, diff = float(parity["int8_top1_agreement"]), float(parity["fp32_max_abs_logit_diff"])
    if "min_int8_agreement" in hp and agreement < float(hp["min_int8_agreement"]):
        return f"int8_top1_agreement {agreement:.4f} below {float(hp['min_int8_agreement']):.4f} (parity gate)"
    if "max_abs_logit_diff" in hp and diff > float(hp["max_abs_logit_diff"]):
        return f"fp32_max_abs_logit_diff {diff:.2e} above {float(hp['max_abs_logit_diff']):.0e} (parity gate)"
    return None


def judge(card: ModelCard, thresholds: Thresholds, baseline: Baseline | None) -> str | None:
    """The first failed rule as a cause, or None when the model may be registered."""
    failed = parity_failure(card)
    if failed:
        return failed
    metrics = served_metrics(card)
    for name in GATED:
        bar = float(getattr(thresholds, name))
        if metrics[name] < bar:
            return f"{name} {metrics[name]:.4f} below {bar:.4f} (threshold)"
    if baseline is not None:
        for name in GATED:
            if name not in baseline.metrics:
                continue
            bar = baseline.metrics[name] - thresholds.tolerance
            if metrics[name] < bar:
                return (
                    f"{name} {metrics[name]:.4f} below {bar:.4f} (approved version {baseline.version}: "
                    f"{baseline.metrics[name]:.4f} - tolerance {thresholds.tolerance:.4f})"
                )
    return None


def recipe_fingerprint(card: ModelCard) -> str:
    """sha256 of the recipe (hyperparameters + student shape): equal fingerprints, same recipe."""
    recipe = {"hyperparameters": card.lineage.hyperparameters, "student": card.lineage.student}
    return hashlib.sha256(json.dumps(recipe, sort_keys=True, default=str).encode()).hexdigest()[:16]


def evaluation_report(card: ModelCard, model_data: str) -> dict[str, Any]:
    """SageMaker's model-quality statistics shape (what Studio shows for ModelQuality) plus the card's own
    test metrics for every evaluated system."""
    metrics = served_metrics(card)
    return {
        "version": 0.0,
        "multiclass_classification_metrics": {
            "accuracy": {"value": metrics["accuracy"], "standard_deviation": "NaN"},
            "macro_f1": {"value": metrics["macro_f1"], "standard_deviation": "NaN"},
        },
        "cnai": {
            "model": card.name,
            "artifact_version": card.version,
            "model_data": model_data,
            "test": card.metrics.get("test", {}),
            "parity": card.parity,
            "dataset": card.lineage.dataset,
        },
    }


def quality_gate(
    s3: Any,
    *,
    model_data: str,
    thresholds: Thresholds,
    baseline: Baseline | None,
    report_uri: str,
) -> dict[str, Any]:
    """The `quality` object of the contract; the evaluation report is written for every judged model (a
    rejected one too: the notification links it)."""
    card, object_version = read_artifact(s3, model_data)
    cause = judge(card, thresholds, baseline)
    metrics = {k: v for k, v in served_metrics(card).items() if k in (*GATED, "ece", "nll", "p50_ms", "p99_ms")}
    bucket, key = parse_s3_uri(report_uri)
    body = json.dumps(evaluation_report(card, model_data), indent=2, sort_keys=True).encode("utf-8")
    s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/json")
    return {
        "passed": cause is None,
        "cause": cause,
        "metrics": metrics,
        "baseline": None
        if baseline is None
        else {"version": baseline.version, "arn": baseline.arn, "metrics": baseline.metrics},
        "report_uri": report_uri,
        "card": {
            "name": card.name,
            "artifact_version": card.version,
            "artifact_object_version": object_version or "",
            "teacher": card.lineage.teacher,
            "code_version": card.lineage.code_version,
            "recipe_fingerprint": recipe_fingerprint(card),
        },
    }
