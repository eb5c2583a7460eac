"""Register: the workflow's record of a model that passed the gate, as a model package version.

Idempotent per execution: a retried Register (Lambda retry after a timeout that did create the version)
finds the version whose lineage names this execution and answers it instead of adding a second one.
"""

from __future__ import annotations

from typing import Any

from cnai.pipeline.input import parse_run
from cnai.registry.packages import ModelVersion, Registry, RegistryError

RETRY_WINDOW = 10


def lineage(
    dataset: dict[str, Any], training: dict[str, Any], quality: dict[str, Any], execution_arn: str
) -> dict[str, str]:
    card = quality.get("card") or {}
    return {
        "dataset_manifest_sha256": str(dataset.get("manifest_sha256", "")),
        "dataset_manifest_uri": str(dataset.get("manifest_uri", "")),
        "teacher": str(card.get("teacher", "")),
        "recipe_fingerprint": str(card.get("recipe_fingerprint", "")),
        "code_version": str(card.get("code_version", "")),
        "training_job_arn": str(training.get("TrainingJobArn", "")),
        "execution_arn": execution_arn,
        "artifact_version": str(card.get("artifact_version", "")),  # the model card's version (content hash)
        "artifact_object_version": str(card.get("artifact_object_version", "")),  # the tar's S3 VersionId
    }


def register_run(
    registry: Registry,
    *,
    image: str,
    run: dict[str, Any],
    dataset: dict[str, Any],
    training: dict[str, Any],
    quality: dict[str, Any],
    execution_arn: str,
) -> dict[str, Any]:
    """The `registered` object of the contract: {"model_package_arn", "version", "approval"}."""
    normalized = parse_run(run)
    if not quality.get("passed"):
        raise RegistryError("quality.passed is not true: only a model that passed the gate is registered")
    missing = [k for k in ("report_uri", "card", "metrics") if not quality.get(k)]
    if missing:  # a ResultSelector that drops them would register a version without report or lineage
        raise RegistryError(f"quality: {', '.join(missing)} missing (the QualityGate state must pass them on)")
    # A retry comes minutes after the attempt it repeats: its version, if any, is among the newest few.
    recent = registry.versions(normalized.model, limit=RETRY_WINDOW)
    existing = next((v for v in recent if v.lineage.get("execution_arn") == execution_arn), None)
    version: ModelVersion = existing or registry.create_version(
        normalized.model,
        image=image,
        model_data=str(training["model_data"]),
        report_uri=str(quality.get("report_uri", "")),
        metrics={k: float(v) for k, v in (quality.get("metrics") or {}).items()},
        lineage=lineage(dataset, training, quality, execution_arn),
        approved=normalized.auto_approve,
        description=f"{normalized.model} trained by {training.get('TrainingJobName', '?')}",
    )
    return {"model_package_arn": version.arn, "version": version.version, "approval": version.approval}
