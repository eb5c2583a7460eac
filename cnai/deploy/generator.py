"""`cnai generate register`: a generator artifact into the model registry beside the classifier.

The artifact (models/export_generator.py writes the folder and, with --tarball, the model.tar.gz SageMaker
serves) is verified against its card, the tar is uploaded to S3 under `<key prefix>/<model>/<card version>/`
with the evaluation report beside it, the model's package group is created if needed, and a version is
created with Task TEXT_GENERATION, the card's perplexity and parity as metrics and its lineage under the
classifier's keys, `artifact_object_version` being the S3 VersionId of the uploaded tar (what a deploy pins,
as for the classifier, whose VersionId QualityGate reads back). PendingManualApproval unless approved.

A second registration of the same artifact (same card version) answers the version already registered
instead of adding one (`again` registers it once more). It lives in `deploy` because the command is audited
like `cnai models approve` (cnai/deploy/cli.py), and reaches both the registry and the generator artifact.
"""

from __future__ import annotations

import json
import re
import tarfile
import tempfile
from pathlib import Path
from typing import Any

from cnai.errors import ArtifactError
from cnai.generate.artifact import (
    CARD_FILE,
    GeneratorCard,
    pack_generator,
    read_generator_card,
    unpack_generator,
)
from cnai.generate.registration import evaluation_report, registry_lineage, registry_metrics
from cnai.model.artifact import sha256_file
from cnai.registry.packages import ModelVersion, Registry, RegistryError, Task
from cnai.settings import ServingImage, variable

TASK: Task = "TEXT_GENERATION"
DEFAULT_KEY_PREFIX = "generators"
RECENT = 10  # versions looked through for one of the same artifact
# SageMaker's ModelPackageGroupName pattern (the group is <prefix>-<model>)
GROUP_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
TARBALL = (".tar.gz", ".tgz")


def peek_name(path: Path) -> str:
    """The model name the card at `path` gives (folder or tarball), without verifying anything; the path's
    own name when it has no readable card (the registration then fails, naming why)."""
    try:
        if path.is_dir():
            return read_generator_card(path, verify=False).name
        with tarfile.open(path, "r|*") as tar:
            for member in tar:
                if member.name.removeprefix("./") == CARD_FILE and member.isreg():
                    handle = tar.extractfile(member)
                    if handle is not None:
                        return GeneratorCard.model_validate_json(handle.read()).name
    except (ArtifactError, OSError, tarfile.TarError, ValueError):
        pass
    return path.name.removesuffix(".tar.gz").removesuffix(".tgz")


def read_source(path: Path, work: Path) -> tuple[GeneratorCard, Path]:
    """(the verified card, the tarball to upload). A tarball is unpacked into `work` and verified file by
    file; a folder is verified in place and uploaded as the exporter's `<folder>.tar.gz` beside it when that
    holds the same card version (the SageMaker package, code/ included), else packed flat into `work`."""
    if path.is_dir():
        card = read_generator_card(path)
        sibling = path.parent / f"{path.name}.tar.gz"
        if sibling.is_file():
            (work / "sibling").mkdir()
            try:
                if unpack_generator(sibling, work / "sibling").version == card.version:
                    return card, sibling
            except ArtifactError:
                pass  # a stale or damaged tar beside the folder: pack the folder instead
        return card, pack_generator(path, work / "model.tar.gz")
    if path.is_file() and path.name.endswith(TARBALL):
        (work / "unpacked").mkdir()
        return unpack_generator(path, work / "unpacked"), path
    raise ArtifactError(f"{path}: expected a generator artifact folder (with {CARD_FILE}) or its model.tar.gz")


def _put(s3: Any, bucket: str, key: str, body: Any, **extra: Any) -> str | None:
    """PutObject; the new object's VersionId, None on an unversioned bucket."""
    try:
        response = s3.put_object(Bucket=bucket, Key=key, Body=body, **extra)
    except s3.exceptions.ClientError as exc:
        raise ArtifactError(f"s3://{bucket}/{key}: S3 refused the upload ({exc})") from None
    found = response.get("VersionId")
    return None if found in (None, "null") else str(found)


def _same_artifact(registry: Registry, model: str, card: GeneratorCard) -> ModelVersion | None:
    try:
        recent = registry.versions(model, limit=RECENT)
    except RegistryError:
        return None
    return next((v for v in recent if v.lineage.get("artifact_version") == card.version), None)


def register_generator(
    registry: Registry,
    s3: Any,
    path: Path,
    *,
    bucket: str,
    image: str,
    key_prefix: str = DEFAULT_KEY_PREFIX,
    model: str | None = None,
    approve: bool = False,
    again: bool = False,
    reason: str = "",
) -> dict[str, Any]:
    """Upload and register the generator at `path`; answers what the audit record and the command print:
    model, package_version, approval, package, task, model_data, report, artifact_version,
    artifact_object_version (None on an unversioned bucket) and already_registered."""
    if not image:
        setting = variable(ServingImage, "serving_image")
        raise RegistryError(f"image: the serving image is required (--image or {setting})")
    with tempfile.TemporaryDirectory(prefix="cnai-register-") as tmp:
        card, tar = read_source(Path(path), Path(tmp))
        name = model or card.name
        group = registry.group(name)
        if not GROUP_NAME.match(group):
            raise RegistryError(
                f"model {name!r}: the group {group!r} is not a valid model package group name (letters, digits and"
                " single hyphens, at most 63 characters); give --model"
            )
        existing = None if again else _same_artifact(registry, name, card)
        if existing is not None:
            return _answer(name, existing, card, already=True)
        registry.ensure_group(name, description=f"cnai generator {name} (text generation)")
        folder = "/".join(p for p in (key_prefix.strip("/"), name, card.version) if p)
        key, report_key = f"{folder}/model.tar.gz", f"{folder}/evaluation.json"
        model_data = f"s3://{bucket}/{key}"
        with tar.open("rb") as body:
            object_version = _put(
                s3, bucket, key, body, ContentType="application/gzip", Metadata={"sha256": sha256_file(tar)}
            )
        report = json.dumps(evaluation_report(card, model_data), indent=2, sort_keys=True).encode("utf-8")
        _put(s3, bucket, report_key, report, ContentType="application/json")
    metrics = registry_metrics(card)
    version = registry.create_version(
        name,
        image=image,
        model_data=model_data,
        report_uri=f"s3://{bucket}/{report_key}",
        metrics=metrics,
        lineage=registry_lineage(card, object_version or ""),
        approved=approve,
        description=f"{name} generator {card.version} ({card.precision}, "
        f"perplexity ratio {metrics.get('perplexity_ratio', float('nan')):.3f} to fp32)"
        + (f": {reason}" if reason else ""),
        task=TASK,
    )
    return _answer(name, version, card, already=False)


def _answer(name: str, version: ModelVersion, card: GeneratorCard, *, already: bool) -> dict[str, Any]:
    return {
        "model": name,
        "package_version": version.version,
        "approval": version.approval,
        "package": version.arn,
        "task": version.task,
        "model_data": version.model_data,
        "report": version.report_uri,
        "artifact_version": card.version,
        "artifact_object_version": version.lineage.get("artifact_object_version") or None,
        "already_registered": already,
    }
