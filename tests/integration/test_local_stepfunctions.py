"""A hand-written workflow (LambdaInvoke -> createTrainingJob.sync -> Choice -> Fail/Succeed, Retry, Catch)
executed by moto's ASL interpreter with cnai.local.stepfunctions: handlers in process, the training job as a
local process under SageMaker's env contract, channels and artifacts in moto's S3."""

from __future__ import annotations

import io
import json
import socket
import tarfile
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests
from moto import mock_aws
from moto.server import ThreadedMotoServer

from cnai.local.stepfunctions import LocalStepFunctions, LocalTrainingRunner

REGION = "us-east-1"
ACCOUNT = "123456789012"
BUCKET = "cnai-local"
FN = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:"

# The training entry point: reads the SageMaker env contract, resumes from its checkpoint, checkpoints every
# 2 steps, exits 143 after a checkpoint on SIGTERM (as models/train.py does), writes a model and a report.
ENTRY = textwrap.dedent(
    """
    import json, os, pathlib, signal, sys, time

    hps = json.loads(os.environ["SM_HPS"])
    ckpt = pathlib.Path(os.environ["SM_CHECKPOINT_DIR"])
    train = pathlib.Path(os.environ["SM_CHANNEL_TRAIN"])
    rows = sum(len(p.read_text().splitlines()) for p in sorted(train.rglob("*")) if p.is_file())
    if hps.get("fail"):
        print("bad input: label column missing", flush=True)
        sys.exit(3)
    stop = False
    def on_term(*_):
        global stop
        stop = True
    signal.signal(signal.SIGTERM, on_term)
    state = ckpt / "state.json"
    step = json.loads(state.read_text())["step"] if state.exists() else 0
    print(f"resumed at step {step}" if step else "fresh start", flush=True)
    while step < hps["steps"]:
        time.sleep(0.05)
        step += 1
        if step % 2 == 0:
            (ckpt / "state.tmp").write_text(json.dumps({"step": step}))
            (ckpt / "state.tmp").replace(state)
            print(f"checkpoint step={step}", flush=True)
            if stop:
                sys.exit(143)
    accuracy = round(rows / (rows + 1), 4)
    print(f"epoch=1 accuracy={accuracy}", flush=True)
    model = pathlib.Path(os.environ["SM_MODEL_DIR"])
    (model / "model.json").write_text(json.dumps({"rows": rows, "steps": step, "hps": hps, "args": sys.argv[1:]}))
    (pathlib.Path(os.environ["SM_OUTPUT_DATA_DIR"]) / "report.json").write_text(json.dumps({"accuracy": accuracy}))
    """
)

DEFINITION = {
    "Comment": "train (test copy): prepare -> train -> gate",
    "StartAt": "PrepareDataset",
    "States": {
        "PrepareDataset": {
            "Type": "Task",
            "Resource": "arn:aws:states:::lambda:invoke",
            "Parameters": {
                "FunctionName": f"{FN}prepare",
                "Payload": {"input.$": "$", "execution_name.$": "$$.Execution.Name"},
            },
            "ResultSelector": {"run.$": "$.Payload.run"},
            "ResultPath": "$",
            "Retry": [{"ErrorEquals": ["Lambda.ServiceException", "Lambda.TooManyRequestsException"]}],
            "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "NotifyFailure"}],
            "Next": "TrainAndDistill",
        },
        "TrainAndDistill": {
            "Type": "Task",
            "Resource": "arn:aws:states:::sagemaker:createTrainingJob.sync",
            "Parameters": {
                "TrainingJobName.$": "$.run.job_name",
                "RoleArn": f"arn:aws:iam::{ACCOUNT}:role/training",
                "AlgorithmSpecification": {
                    "TrainingImage": "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-training:2.5-gpu-py311",
                    "TrainingInputMode": "File",
                    "MetricDefinitions": [{"Name": "test:accuracy", "Regex": "accuracy=([0-9.]+)"}],
                },
                "HyperParameters.$": "States.JsonMerge($.run.static_hps, $.run.hyperparameters, false)",
                "InputDataConfig": [
                    {
                        "ChannelName": "train",
                        "DataSource": {
                            "S3DataSource": {
                                "S3DataType": "S3Prefix",
                                "S3Uri.$": "$.run.train_uri",
                                "S3DataDistributionType": "FullyReplicated",
                            }
                        },
                    },
                    {
                        "ChannelName": "test",
                        "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri.$": "$.run.test_uri"}},
                    },
                ],
                "OutputDataConfig": {"S3OutputPath": f"s3://{BUCKET}/jobs"},
                "ResourceConfig": {"InstanceType": "ml.g5.xlarge", "InstanceCount": 1, "VolumeSizeInGB": 30},
                "StoppingCondition": {"MaxRuntimeInSeconds.$": "$.run.max_runtime_s", "MaxWaitTimeInSeconds": 1200},
                "EnableManagedSpotTraining.$": "$.run.spot",
                "CheckpointConfig": {
                    "S3Uri.$": f"States.Format('s3://{BUCKET}/checkpoints/{{}}/', $.run.job_name)",
                    "LocalPath": "/opt/ml/checkpoints",
                },
            },
            "ResultSelector": {
                "name.$": "$.TrainingJobName",
                "model_data.$": "$.ModelArtifacts.S3ModelArtifacts",
                "training_s.$": "$.TrainingTimeInSeconds",
                "billable_s.$": "$.BillableTimeInSeconds",
                "metrics.$": "$.FinalMetricDataList",
            },
            "ResultPath": "$.training",
            "Retry": [
                {
                    "ErrorEquals": ["SageMaker.ResourceLimitExceededException"],
                    "IntervalSeconds": 1,
                    "BackoffRate": 2,
                    "MaxAttempts": 2,
                }
            ],
            "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "NotifyFailure"}],
            "Next": "QualityGate",
        },
        "QualityGate": {
            "Type": "Task",
            "Resource": f"{FN}gate",  # the bare function ARN form
            "Parameters": {"training.$": "$.training", "bar.$": "$.run.bar"},
            "ResultPath": "$.quality",
            "Next": "Passed?",
        },
        "Passed?": {
            "Type": "Choice",
            "Choices": [{"Variable": "$.quality.passed", "BooleanEquals": True, "Next": "Done"}],
            "Default": "Rejected",
        },
        "Rejected": {"Type": "Fail", "Error": "QualityGateFailed", "CausePath": "$.quality.cause"},
        "Done": {"Type": "Succeed"},
        "NotifyFailure": {
            "Type": "Task",
            "Resource": "arn:aws:states:::lambda:invoke",
            "Parameters": {"FunctionName": f"{FN}notify", "Payload": {"status": "FAILED", "state.$": "$"}},
            "ResultPath": None,
            "Next": "Failed",
        },
        "Failed": {"Type": "Fail", "ErrorPath": "$.error.Error", "CausePath": "$.error.Cause"},
    },
}


TRAIN_PARAMETERS: dict[str, Any] = DEFINITION["States"]["TrainAndDistill"]["Parameters"]  # type: ignore[index]


@dataclass
class Handlers:
    """Tiny stand-ins for the workflow's functions (the extension is under test, not these)."""

    program: str = "train/entry.py"
    defaults: dict[str, str] = field(default_factory=lambda: {"steps": "8"})
    bar: float = 0.9
    notified: list[dict[str, Any]] = field(default_factory=list)
    contexts: list[str] = field(default_factory=list)

    def prepare(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        self.contexts.append(f"{context.function_name}:{context.get_remaining_time_in_millis() > 0}")
        given = event["input"]
        if given.get("explode"):
            raise ValueError("dataset range 2026-11-01..2026-11-30 is empty")
        return {
            "run": {
                "job_name": f"cnai-{event['execution_name']}",
                "spot": bool(given.get("spot", False)),
                "max_runtime_s": given.get("max_runtime_s", 600),
                "train_uri": f"s3://{BUCKET}/datasets/v1/train/",
                "test_uri": f"s3://{BUCKET}/datasets/v1/test/",
                "static_hps": {"sagemaker_program": self.program, "sagemaker_submit_directory": "s3://x/src"},
                "hyperparameters": {**self.defaults, **given.get("hps", {})},
                "bar": self.bar,
            }
        }

    def gate(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        accuracy = {m["MetricName"]: m["Value"] for m in event["training"]["metrics"]}["test:accuracy"]
        passed = accuracy >= event["bar"]
        return {"passed": passed, "cause": None if passed else f"accuracy {accuracy} below {event['bar']}"}

    def notify(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        self.notified.append(event)
        return {"sent": True}

    def table(self) -> dict[str, Any]:
        return {"prepare": self.prepare, f"{FN}gate": self.gate, "notify": self.notify}


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)


@pytest.fixture
def source_dir(tmp_path: Path) -> Path:
    root = tmp_path / "src"
    (root / "train").mkdir(parents=True)
    (root / "train" / "entry.py").write_text(ENTRY, encoding="utf-8")
    return root


def seed(s3: Any) -> None:
    s3.create_bucket(Bucket=BUCKET)
    for part in range(2):
        rows = "".join(f"text {part}-{i},label{i % 3}\n" for i in range(10))
        s3.put_object(Bucket=BUCKET, Key=f"datasets/v1/train/part-{part}.csv", Body=rows.encode())
    s3.put_object(Bucket=BUCKET, Key="datasets/v1/test/part-0.csv", Body=b"not in the train channel\n")


def run(sfn: Any, machine: str, given: dict[str, Any], name: str, timeout_s: float = 90) -> dict[str, Any]:
    arn = sfn.start_execution(stateMachineArn=machine, name=name, input=json.dumps(given))["executionArn"]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        described: dict[str, Any] = sfn.describe_execution(executionArn=arn)
        if described["status"] != "RUNNING":
            return described
        time.sleep(0.2)
    raise AssertionError(f"execution {name} still running after {timeout_s} s")


def failed_events(sfn: Any, arn: str) -> list[dict[str, Any]]:
    events = sfn.get_execution_history(executionArn=arn, maxResults=1000)["events"]
    return [e["taskFailedEventDetails"] for e in events if e["type"] == "TaskFailed"]


def model_of(s3: Any, uri: str, name: str = "model.json") -> dict[str, Any]:
    bucket, key = uri[5:].split("/", 1)
    blob = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(blob)) as archive:
        member = archive.extractfile(name)
        assert member is not None
        return dict(json.load(member))


@dataclass
class Local:
    sfn: Any
    s3: Any
    sagemaker: Any
    machine: str
    handlers: Handlers
    runner: LocalTrainingRunner
    lines: list[str]


@pytest.fixture
def local(aws_env: None, source_dir: Path, tmp_path: Path) -> Iterator[Local]:
    """Given moto (in process) executing state machines, with our extension active."""
    lines: list[str] = []
    runner = LocalTrainingRunner(
        source_dir=source_dir,
        work_dir=tmp_path / "jobs",
        checkpoint_sync_s=0.2,
        stop_grace_s=10,
        progress=lambda job, line: lines.append(line),
    )
    handlers = Handlers()
    with (
        mock_aws(config={"stepfunctions": {"execute_state_machine": True}}),
        LocalStepFunctions(handlers.table(), runner),
    ):
        s3 = boto3.client("s3", region_name=REGION)
        seed(s3)
        sfn = boto3.client("stepfunctions", region_name=REGION)
        machine = sfn.create_state_machine(
            name="train", definition=json.dumps(DEFINITION), roleArn=f"arn:aws:iam::{ACCOUNT}:role/sfn"
        )["stateMachineArn"]
        yield Local(sfn, s3, boto3.client("sagemaker", region_name=REGION), machine, handlers, runner, lines)


def test_success_runs_the_handlers_and_the_training_job_under_the_sagemaker_contract(local: Local) -> None:
    # When
    done = run(local.sfn, local.machine, {"hps": {"profile": "quick"}}, "ok")

    # Then the execution succeeded through every state, the training output shaped as .sync's
    assert done["status"] == "SUCCEEDED", done
    out = json.loads(done["output"])
    job = "cnai-ok"
    assert out["training"]["name"] == job
    assert out["training"]["model_data"] == f"s3://{BUCKET}/jobs/{job}/output/model.tar.gz"
    assert out["quality"] == {"passed": True, "cause": None}
    # the handler got a LambdaContext with the function's name and a running clock
    assert local.handlers.contexts == ["prepare:True"]
    # the entry point read the train channel (2 x 10 rows, not the test prefix), SM_HPS decoded as the toolkit
    # does (sagemaker_* removed) and the same hyperparameters as command-line arguments
    model = model_of(local.s3, out["training"]["model_data"])
    assert model["rows"] == 20 and model["steps"] == 8
    assert model["hps"] == {"steps": 8, "profile": "quick"}
    assert model["args"] == ["--steps", "8", "--profile", "quick"]
    report = local.s3.get_object(Bucket=BUCKET, Key=f"jobs/{job}/output/output.tar.gz")["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(report)) as archive:
        assert archive.getnames() == ["report.json"]
    # DescribeTrainingJob (moto's record, kept by the runner) shows what SageMaker would
    described = local.sagemaker.describe_training_job(TrainingJobName=job)
    assert described["TrainingJobStatus"] == "Completed" and described["SecondaryStatus"] == "Completed"
    assert described["ModelArtifacts"]["S3ModelArtifacts"] == out["training"]["model_data"]
    assert described["BillableTimeInSeconds"] == described["TrainingTimeInSeconds"] >= 1  # on-demand
    assert described["FinalMetricDataList"][0]["MetricName"] == "test:accuracy"
    assert described["FinalMetricDataList"][0]["Value"] == pytest.approx(20 / 21, abs=1e-4)
    assert described["AlgorithmSpecification"]["MetricDefinitions"][0]["Name"] == "test:accuracy"
    steps = [t["Status"] for t in described["SecondaryStatusTransitions"]]
    assert steps == ["Starting", "Downloading", "Training", "Uploading", "Completed"]
    # checkpoints went to CheckpointConfig.S3Uri; the log lines reached the progress callback
    keys = local.s3.list_objects_v2(Bucket=BUCKET, Prefix=f"checkpoints/{job}/")["Contents"]
    assert [k["Key"] for k in keys] == [f"checkpoints/{job}/state.json"]
    assert "fresh start" in local.lines and any("accuracy=" in line for line in local.lines)
    assert "fresh start" in (local.runner.work_dir / job / "training.log").read_text()


def test_a_handler_exception_is_the_task_error_that_catch_routes(local: Local) -> None:
    # When PrepareDataset raises
    done = run(local.sfn, local.machine, {"explode": True}, "boom")

    # Then Catch routed it to NotifyFailure, and Failed reported Lambda's error shape
    assert done["status"] == "FAILED"
    assert done["error"] == "ValueError"
    cause = json.loads(done["cause"])
    assert cause["errorType"] == "ValueError"
    assert cause["errorMessage"] == "dataset range 2026-11-01..2026-11-30 is empty"
    assert any("prepare" in frame for frame in cause["stackTrace"])
    assert local.handlers.notified[0]["state"]["error"]["Error"] == "ValueError"


def test_a_failing_training_job_fails_the_task_and_is_caught(local: Local) -> None:
    # When the entry point exits 3
    done = run(local.sfn, local.machine, {"hps": {"fail": "true"}}, "bad")

    # Then the job is Failed with SageMaker's FailureReason, and the .sync task failed as States.TaskFailed
    described = local.sagemaker.describe_training_job(TrainingJobName="cnai-bad")
    assert described["TrainingJobStatus"] == "Failed"
    assert "ExitCode 3" in described["FailureReason"] and "label column missing" in described["FailureReason"]
    assert "ModelArtifacts" not in described or not described["ModelArtifacts"].get("S3ModelArtifacts")
    assert done["status"] == "FAILED" and done["error"] == "States.TaskFailed"
    cause = json.loads(done["cause"])
    assert cause["TrainingJobStatus"] == "Failed" and cause["FailureReason"] == described["FailureReason"]
    assert len(local.handlers.notified) == 1


def test_a_capacity_error_is_retried_then_the_job_runs(local: Local) -> None:
    # Given SageMaker refuses the first CreateTrainingJob for an instance limit
    local.runner.faults.create_errors = ["ResourceLimitExceeded"]

    # When
    done = run(local.sfn, local.machine, {}, "retry")

    # Then the task failed once with the named error, Retry ran it again, and the execution succeeded
    assert done["status"] == "SUCCEEDED", done
    failures = failed_events(local.sfn, done["executionArn"])
    assert [f["error"] for f in failures] == ["SageMaker.ResourceLimitExceededException"]
    assert "Error Code: ResourceLimitExceeded" in failures[0]["cause"]
    assert local.runner.faults.create_errors == []


def test_a_spot_interruption_resumes_from_the_checkpoint_to_the_same_result(local: Local) -> None:
    # Given a reference run without interruption
    slow = {"spot": True, "hps": {"steps": "20"}}  # about 1 s of training, a checkpoint every 0.1 s
    reference = run(local.sfn, local.machine, slow, "ref")
    assert reference["status"] == "SUCCEEDED", reference
    local.runner.faults.spot_interruptions = 1
    local.runner.spot_restart_delay_s = 1.0

    # When the same job is interrupted (SIGTERM) after its first checkpoint
    done = run(local.sfn, local.machine, slow, "spot")

    # Then it restarted within the same job from the checkpoint synced back from S3, and ended the same
    assert done["status"] == "SUCCEEDED", done
    assert local.runner.faults.spot_interruptions == 0
    log = (local.runner.work_dir / "cnai-spot" / "training.log").read_text()
    assert "spot interruption: SIGTERM" in log and "exited with 143" in log
    assert "resumed at step" in log and "restored 1 checkpoint file(s)" in log
    first = model_of(local.s3, json.loads(reference["output"])["training"]["model_data"])
    second = model_of(local.s3, json.loads(done["output"])["training"]["model_data"])
    assert first == second
    described = local.sagemaker.describe_training_job(TrainingJobName="cnai-spot")
    steps = [t["Status"] for t in described["SecondaryStatusTransitions"]]
    assert steps == ["Starting", "Downloading", "Training", "Interrupted", "Restarting", "Training", "Uploading",
                     "Completed"]  # fmt: skip
    # the wait for spot capacity is not billed
    assert described["BillableTimeInSeconds"] < described["TrainingTimeInSeconds"]


def test_a_job_over_its_max_runtime_is_stopped_and_fails_the_task(local: Local) -> None:
    # When the entry point would train for about 3 s under a 1 s limit
    done = run(local.sfn, local.machine, {"max_runtime_s": 1, "hps": {"steps": "60"}}, "slow")

    # Then SageMaker's answer: Stopped / MaxRuntimeExceeded, no model; the .sync task failed
    described = local.sagemaker.describe_training_job(TrainingJobName="cnai-slow")
    assert (described["TrainingJobStatus"], described["SecondaryStatus"]) == ("Stopped", "MaxRuntimeExceeded")
    assert not local.s3.list_objects_v2(Bucket=BUCKET, Prefix="jobs/cnai-slow/").get("Contents")
    assert done["status"] == "FAILED" and done["error"] == "States.TaskFailed"
    assert json.loads(done["cause"])["SecondaryStatus"] == "MaxRuntimeExceeded"


def test_plain_create_training_job_answers_with_the_arn_and_the_job_runs_on(
    aws_env: None, source_dir: Path, tmp_path: Path
) -> None:
    # Given a Request Response task (no .sync)
    definition = {
        "StartAt": "Create",
        "States": {
            "Create": {
                "Type": "Task",
                "Resource": "arn:aws:states:::sagemaker:createTrainingJob",
                "Parameters": {
                    **{k: v for k, v in TRAIN_PARAMETERS.items() if not k.endswith(".$")},
                    "TrainingJobName": "plain",
                    "HyperParameters": {"sagemaker_program": "train/entry.py", "steps": "4"},
                    "EnableManagedSpotTraining": False,
                    "StoppingCondition": {"MaxRuntimeInSeconds": 600},
                    "CheckpointConfig": {"S3Uri": f"s3://{BUCKET}/checkpoints/plain"},
                    "InputDataConfig": [
                        {"ChannelName": "train", "DataSource": {"S3DataSource": {
                            "S3DataType": "S3Prefix", "S3Uri": f"s3://{BUCKET}/datasets/v1/train"}}}
                    ],
                },
                "End": True,
            }
        },
    }  # fmt: skip
    runner = LocalTrainingRunner(source_dir=source_dir, work_dir=tmp_path / "jobs")
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}), LocalStepFunctions({}, runner):
        s3 = boto3.client("s3", region_name=REGION)
        seed(s3)
        sfn = boto3.client("stepfunctions", region_name=REGION)
        machine = sfn.create_state_machine(
            name="create", definition=json.dumps(definition), roleArn=f"arn:aws:iam::{ACCOUNT}:role/sfn"
        )["stateMachineArn"]

        # When
        done = run(sfn, machine, {}, "plain")

        # Then the task answered CreateTrainingJob's response, and the job completed after it
        assert done["status"] == "SUCCEEDED", done
        assert json.loads(done["output"]) == {
            "TrainingJobArn": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:training-job/plain"
        }
        assert runner.wait("plain", 60) == "Completed"
        assert model_of(s3, f"s3://{BUCKET}/jobs/plain/output/model.tar.gz")["rows"] == 20


def test_a_function_missing_from_the_table_fails_as_lambda_would(aws_env: None, source_dir: Path) -> None:
    # Given a table without "prepare"
    handlers = Handlers()
    with (
        mock_aws(config={"stepfunctions": {"execute_state_machine": True}}),
        LocalStepFunctions({"notify": handlers.notify}),
    ):
        sfn = boto3.client("stepfunctions", region_name=REGION)
        machine = sfn.create_state_machine(
            name="train", definition=json.dumps(DEFINITION), roleArn=f"arn:aws:iam::{ACCOUNT}:role/sfn"
        )["stateMachineArn"]

        # When
        done = run(sfn, machine, {}, "missing")

    # Then
    assert done["status"] == "FAILED" and done["error"] == "Lambda.ResourceNotFoundException"
    assert "Function not found" in done["cause"] and "notify" in done["cause"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_the_same_definition_runs_through_a_moto_server(aws_env: None, source_dir: Path, tmp_path: Path) -> None:
    # Given a moto server on 127.0.0.1 in this process (the local platform's mode), reached through endpoint_url
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    requests.post(f"{endpoint}/moto-api/config", json={"stepfunctions": {"execute_state_machine": True}}, timeout=5)
    handlers = Handlers()
    runner = LocalTrainingRunner(source_dir=source_dir, work_dir=tmp_path / "jobs", checkpoint_sync_s=0.2)
    try:
        with LocalStepFunctions(handlers.table(), runner, server_port=port):
            s3 = boto3.client("s3", region_name=REGION, endpoint_url=endpoint)
            seed(s3)
            sfn = boto3.client("stepfunctions", region_name=REGION, endpoint_url=endpoint)
            machine = sfn.create_state_machine(
                name="train", definition=json.dumps(DEFINITION), roleArn=f"arn:aws:iam::{ACCOUNT}:role/sfn"
            )["stateMachineArn"]

            # When
            done = run(sfn, machine, {}, "server")

            # Then
            assert done["status"] == "SUCCEEDED", done
            model = model_of(s3, json.loads(done["output"])["training"]["model_data"])
            assert model["rows"] == 20
            sagemaker = boto3.client("sagemaker", region_name=REGION, endpoint_url=endpoint)
            assert sagemaker.describe_training_job(TrainingJobName="cnai-server")["TrainingJobStatus"] == "Completed"
    finally:
        requests.post(
            f"{endpoint}/moto-api/config", json={"stepfunctions": {"execute_state_machine": False}}, timeout=5
        )
        server.stop()


# models/train.py itself interrupted and resumed through the extension: tests/integration/test_train_workflow.py
# (the synthesized definition, scenario 5), so CI runs the real trainer's spot resume once, not twice.
