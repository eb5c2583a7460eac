"""Drift with a real model: the tiny factory run (trained on 6 BANKING77 intents) serves through the real
predict API, which writes its own audit records to a file sink; the monitor reads them (file: source, as
`cnai serve --audit file:` writes) against the snapshot of the very rows it was trained on and its registered
accuracy. Nothing is scripted here: the labels, confidences and abstentions are the model's own.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from cnai.data.snapshot import profile
from cnai.local.context import LocalContext
from cnai.model.artifact import load_artifact
from cnai.monitoring.monitor import Clients, MonitorConfig, run_monitor_once
from cnai.registry.packages import Registry
from cnai.serving.api import ServingOptions, build_api
from tests.unit.monitoring.traffic import banking_rows

PREFIX = "cnai-dev"
MODEL = "banking77"
EVENT = Path(__file__).resolve().parents[1] / "events" / "apigw_rest_predict.json"


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[Clients]:
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": "us-east-1", "POWERTOOLS_METRICS_DISABLED": "true"}.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        clients = Clients(*(boto3.client(s) for s in ("s3", "stepfunctions", "dynamodb", "sagemaker")))
        clients.s3.create_bucket(Bucket="lake")
        clients.dynamodb.create_table(
            TableName="cooldown",
            KeySchema=[{"AttributeName": "model", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "model", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        yield clients


def serve(api: Any, texts: list[str]) -> None:
    """Predict calls of 16 inputs each through the API Gateway event path (each call: one audit record)."""
    template = json.loads(EVENT.read_text())
    for start in range(0, len(texts), 16):
        event = {**template, "path": f"/v1/models/{MODEL}/predict",
                 "body": json.dumps({"inputs": texts[start:start + 16]})}  # fmt: skip
        assert api.handle(event, LocalContext())["statusCode"] == 200


def test_the_trained_model_on_its_own_intents_then_on_others(
    tiny_artifact: Path, banking_slice: dict[str, Path], aws: Clients, tmp_path: Path
) -> None:
    # Given the model's dataset (the slice it was trained on) as a manifest, and its registered version
    with banking_slice["train"].open(newline="", encoding="utf-8") as handle:
        rows = [{"text": r["text"], "label": r["category"]} for r in csv.DictReader(handle)]
    trained = sorted({r["label"] for r in rows})
    manifest = {"version": "slice", "profile": profile(rows)}
    aws.s3.put_object(Bucket="lake", Key="datasets/banking77/slice/manifest.json", Body=json.dumps(manifest))
    card = load_artifact(tiny_artifact).card
    registry = Registry(aws.sagemaker, PREFIX)
    registry.ensure_group(MODEL)
    registry.create_version(
        MODEL, image="img", model_data="s3://artifacts/model.tar.gz", report_uri="s3://artifacts/report.json",
        metrics={"accuracy": float(card.metrics["test"]["student_int8"]["accuracy"])},
        lineage={"dataset_manifest_uri": "s3://lake/datasets/banking77/slice/manifest.json"}, approved=True,
    )  # fmt: skip
    machine = aws.sfn.create_state_machine(
        name=f"{PREFIX}-train", roleArn="arn:aws:iam::123456789012:role/train",
        definition=json.dumps({"StartAt": "T", "States": {"T": {"Type": "Pass", "End": True}}}),
    )["stateMachineArn"]  # fmt: skip
    audit = tmp_path / "audit.jsonl"
    api = build_api(ServingOptions(model_uri=str(tiny_artifact), model_name=MODEL, model_package_version="1",
                                   audit_sink=f"file:{audit}"))  # fmt: skip
    config = MonitorConfig(
        model=MODEL, audit_source=f"file:{audit}", reports=str(tmp_path / "reports"), state_machine_arn=machine,
        cooldown_table="cooldown", group_prefix=PREFIX, min_predictions=200,
    )  # fmt: skip

    # When it serves the test texts of its own intents (all of BANKING77's test split for them)
    serve(api, [text for text, label in banking_rows("test") if label in trained])
    now = datetime.now(UTC) + timedelta(seconds=1)
    calm = run_monitor_once(config, aws, now=now)
    # Then no drift, nothing started
    assert calm.decision == "no_drift", calm.explain()
    assert calm.window.predictions == 40 * len(trained)
    assert aws.sfn.list_executions(stateMachineArn=machine)["executions"] == []

    # When it then serves three times as many texts of intents it never learned
    others = [text for text, label in banking_rows("test") if label not in trained][: 3 * 40 * len(trained)]
    serve(api, others)
    drifted = run_monitor_once(config, aws, now=now + timedelta(seconds=5))
    # Then the window (both traffics) is drift, and one retrain is started
    assert drifted.decision == "drift", drifted.explain()
    assert drifted.action.kind == "retrain_started"
    assert len(aws.sfn.list_executions(stateMachineArn=machine)["executions"]) == 1
    print(calm.explain(), drifted.explain(), sep="\n")
