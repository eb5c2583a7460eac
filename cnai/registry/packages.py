"""The SageMaker Model Registry as cnai uses it: one model package group per model, one version per run.

A version carries what the serving side needs (the serving image + the model.tar.gz), what a reviewer
needs (ModelMetrics: the evaluation report; the gated metrics), and where it came from (lineage in
CustomerMetadataProperties: dataset manifest sha256, teacher, recipe fingerprint, code version, training
job and workflow execution). Everything here is a boto3 `sagemaker` client call that moto 5.2.5 also
implements, so the local platform runs the same code.

moto 5.2.5 note: UpdateModelPackage replaces CustomerMetadataProperties with what the call passes (None
when absent), where SageMaker keeps them; `set_approval` therefore passes the current properties back,
which is a no-op on SageMaker and keeps moto right.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from cnai.errors import CnaiError
from cnai.settings import variable

Approval = Literal["Approved", "Rejected", "PendingManualApproval"]
# SageMaker's CreateModelPackage `Task` (a free string in the API model; the documented values include these):
# the classifier registers CLASSIFICATION, the generator (cnai.generate) TEXT_GENERATION.
Task = Literal["CLASSIFICATION", "TEXT_GENERATION"]
METRIC_KEY = "metric."
LINEAGE_KEYS = (
    "dataset_manifest_sha256",
    "dataset_manifest_uri",
    "teacher",
    "recipe_fingerprint",
    "code_version",
    "training_job_arn",
    "execution_arn",
    "artifact_version",
    "artifact_object_version",
)
_VALUE = re.compile(r"[^\w\s.:/=+\-@]", re.UNICODE)  # characters CustomerMetadataProperties refuses


class RegistryError(CnaiError):
    """A model package or group is missing, or the registry refused a call; names which."""


GROUP_PREFIX = r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,40}$"  # a package group prefix


class PackageGroupPrefix(BaseModel):
    """The deployment's package group prefix, a setting of every function that reads or writes the registry
    (their settings inherit it) and the commands' default (Registry.from_env)."""

    group_prefix: str = Field(alias="CNAI_MODEL_PACKAGE_GROUP_PREFIX", pattern=GROUP_PREFIX)


GROUP_PREFIX_VARIABLE = variable(PackageGroupPrefix, "group_prefix")


def group_name(prefix: str, model: str) -> str:
    return f"{prefix}-{model}"


def _clean(value: str) -> str:
    return _VALUE.sub("_", value)[:256]


@dataclass(frozen=True)
class ModelVersion:
    """One registered version: identity, approval, artifact, metrics and lineage."""

    group: str
    version: int
    arn: str
    approval: str
    created: datetime | None
    model_data: str = ""
    image: str = ""
    report_uri: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    lineage: dict[str, str] = field(default_factory=dict)
    description: str = ""
    task: str = ""  # the package's Task (CLASSIFICATION, TEXT_GENERATION); "" when the description has none

    @classmethod
    def from_description(cls, d: dict[str, Any]) -> ModelVersion:
        containers = (d.get("InferenceSpecification") or {}).get("Containers") or [{}]
        props = dict(d.get("CustomerMetadataProperties") or {})
        stats = ((d.get("ModelMetrics") or {}).get("ModelQuality") or {}).get("Statistics") or {}
        metrics = {}
        for key, value in props.items():
            if key.startswith(METRIC_KEY):
                try:
                    metrics[key.removeprefix(METRIC_KEY)] = float(value)
                except ValueError:
                    continue
        return cls(
            group=str(d.get("ModelPackageGroupName", "")),
            version=int(d.get("ModelPackageVersion") or 0),
            arn=str(d["ModelPackageArn"]),
            approval=str(d.get("ModelApprovalStatus", "")),
            created=d.get("CreationTime"),
            model_data=str(containers[0].get("ModelDataUrl", "")),
            image=str(containers[0].get("Image", "")),
            report_uri=str(stats.get("S3Uri", "")),
            metrics=metrics,
            lineage={k: v for k, v in props.items() if not k.startswith(METRIC_KEY)},
            description=str(d.get("ModelPackageDescription", "")),
            task=str(d.get("Task") or ""),
        )


class Registry:
    def __init__(self, sagemaker: Any, prefix: str) -> None:
        self.sm = sagemaker
        self.prefix = prefix

    @classmethod
    def from_env(cls, prefix: str | None = None) -> Registry:
        """The deployment's registry for command-line use: `prefix`, else the group prefix setting's variable
        (PackageGroupPrefix), else `cnai`; boto3's usual configuration (AWS_ENDPOINT_URL: the local platform).
        A prefix no group name may start with is refused here, naming where it came from, before any call."""
        import os

        import boto3

        where = "--prefix" if prefix else GROUP_PREFIX_VARIABLE
        value = prefix or os.environ.get(GROUP_PREFIX_VARIABLE) or "cnai"
        if not re.fullmatch(GROUP_PREFIX, value):
            raise RegistryError(
                f"{where}: {value[:80]!r} is not a package group prefix (letters and digits, hyphens inside, "
                "never first or last)"
            )
        return cls(boto3.client("sagemaker"), value)

    def group(self, model: str) -> str:
        return group_name(self.prefix, model)

    def models(self) -> list[str]:
        """Model names: the groups under this deployment's prefix, sorted."""
        head = f"{self.prefix}-"
        names = []
        for page in self.sm.get_paginator("list_model_package_groups").paginate(NameContains=head):
            names += [g["ModelPackageGroupName"] for g in page.get("ModelPackageGroupSummaryList", [])]
        return sorted(n.removeprefix(head) for n in names if n.startswith(head))

    def ensure_group(self, model: str, description: str = "") -> str:
        """The group exists (CDK creates it in AWS; the local platform and tests create it here)."""
        name = self.group(model)
        try:
            return str(self.sm.describe_model_package_group(ModelPackageGroupName=name)["ModelPackageGroupArn"])
        except self.sm.exceptions.ClientError:
            pass
        created = self.sm.create_model_package_group(
            ModelPackageGroupName=name, ModelPackageGroupDescription=description or f"cnai model {model}"
        )
        return str(created["ModelPackageGroupArn"])

    def create_version(
        self,
        model: str,
        *,
        image: str,
        model_data: str,
        report_uri: str,
        metrics: dict[str, float],
        lineage: dict[str, str],
        approved: bool,
        description: str = "",
        task: Task = "CLASSIFICATION",
    ) -> ModelVersion:
        """A new version in the model's group (which must exist: `ensure_group`). `task` is the package's Task:
        CLASSIFICATION for the classifier, TEXT_GENERATION for a generator."""
        if task not in ("CLASSIFICATION", "TEXT_GENERATION"):
            raise RegistryError(f"task {task!r}: expected CLASSIFICATION or TEXT_GENERATION")
        unknown = sorted(set(lineage) - set(LINEAGE_KEYS))
        if unknown:
            raise RegistryError(f"lineage: unknown keys {', '.join(unknown)} (known: {', '.join(LINEAGE_KEYS)})")
        props = {k: _clean(v) for k, v in lineage.items() if v}
        props.update({f"{METRIC_KEY}{k}": f"{v:.6f}" for k, v in metrics.items()})
        try:
            arn = self.sm.create_model_package(
                ModelPackageGroupName=self.group(model),
                ModelPackageDescription=description[:1024],
                InferenceSpecification={
                    "Containers": [{"Image": image, "ModelDataUrl": model_data}],
                    "SupportedContentTypes": ["application/json"],
                    "SupportedResponseMIMETypes": ["application/json"],
                },
                ModelMetrics={"ModelQuality": {"Statistics": {"ContentType": "application/json", "S3Uri": report_uri}}},
                CustomerMetadataProperties=props,
                ModelApprovalStatus="Approved" if approved else "PendingManualApproval",
                Domain="NATURAL_LANGUAGE_PROCESSING",
                Task=task,
            )["ModelPackageArn"]
        except self.sm.exceptions.ClientError as exc:
            raise RegistryError(f"{self.group(model)}: cannot create a version ({exc})") from None
        return self.describe(str(arn))

    def describe(self, arn: str) -> ModelVersion:
        try:
            return ModelVersion.from_description(self.sm.describe_model_package(ModelPackageName=arn))
        except self.sm.exceptions.ClientError as exc:
            raise RegistryError(f"{arn}: {exc}") from None

    def versions(self, model: str, approval: Approval | None = None, limit: int | None = None) -> list[ModelVersion]:
        """The group's versions, newest first, at most `limit` of them (each is one DescribeModelPackage:
        summaries lack metrics and lineage)."""
        kwargs: dict[str, Any] = {"ModelPackageGroupName": self.group(model), "SortBy": "CreationTime",
                                  "SortOrder": "Descending"}  # fmt: skip
        if approval is not None:
            kwargs["ModelApprovalStatus"] = approval
        arns = []
        try:
            for page in self.sm.get_paginator("list_model_packages").paginate(**kwargs):
                arns += [s["ModelPackageArn"] for s in page.get("ModelPackageSummaryList", [])]
        except self.sm.exceptions.ClientError as exc:
            raise RegistryError(f"{self.group(model)}: {exc}") from None
        found = sorted((self.describe(a) for a in arns[:limit]), key=lambda v: v.version, reverse=True)
        return found

    def version(self, model: str, version: int | None = None) -> ModelVersion:
        """One version, or the latest when `version` is None."""
        found = self.versions(model)
        if not found:
            raise RegistryError(f"{self.group(model)}: no registered versions")
        if version is None:
            return found[0]
        for item in found:
            if item.version == version:
                return item
        raise RegistryError(f"{self.group(model)}: no version {version} (latest is {found[0].version})")

    def approved(self, model: str) -> ModelVersion | None:
        """The current Approved version (the newest approved one), None if there is none or no group."""
        try:
            found = self.versions(model, "Approved", limit=1)
        except RegistryError:
            return None
        return found[0] if found else None

    def set_approval(self, model: str, version: int, approval: Approval, reason: str = "") -> ModelVersion:
        return self.set_approval_of(self.version(model, version).arn, approval, reason)

    def set_approval_of(self, arn: str, approval: Approval, reason: str = "") -> ModelVersion:
        """By package ARN: one DescribeModelPackage, no listing (the deploy function may not list packages)."""
        current = self.describe(arn)
        props = {**current.lineage, **{f"{METRIC_KEY}{k}": f"{v:.6f}" for k, v in current.metrics.items()}}
        kwargs: dict[str, Any] = {"ModelPackageArn": current.arn, "ModelApprovalStatus": approval}
        if reason:
            kwargs["ApprovalDescription"] = reason[:1024]
        if props:
            kwargs["CustomerMetadataProperties"] = props
        try:
            self.sm.update_model_package(**kwargs)
        except self.sm.exceptions.ClientError as exc:
            raise RegistryError(f"{current.arn}: {exc}") from None
        return self.describe(current.arn)

    def approve(self, model: str, version: int, reason: str = "") -> ModelVersion:
        return self.set_approval(model, version, "Approved", reason)

    def reject(self, model: str, version: int, reason: str = "") -> ModelVersion:
        return self.set_approval(model, version, "Rejected", reason)
