"""The real CDK app, synthesized once and deployed into moto, with its `train` state machine executed locally.

What is real here: the templates `infra.application.build` synthesizes (no bundling), deployed by
infra.local.template.LocalDeployment (intrinsics resolved, resources created in moto); the four workflow
functions' handlers (functions/*/handler.py) run in process under the environment their templates give them
(infra.local.functions.InProcessFunctions); the synthesized definition of `<prefix>-train` executed by moto's
ASL interpreter with cnai.local.stepfunctions (Lambda tasks in process, createTrainingJob.sync as a local
process under SageMaker's environment contract); curated records written by the ingest consumer's own pieces
(cnai.ingest.curate + LakeWriter) in its format and layout.

What stands in: the training entry point of the fast scenarios (`STANDIN`), see its docstring.
"""

from __future__ import annotations

import base64
import csv
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from cnai.ingest.consumer import LakeWriter
from cnai.ingest.curate import Curated, curate, encode_record
from cnai.local.stepfunctions import LocalStepFunctions, LocalTrainingRunner
from cnai.pipeline.progress import StateRow, history, state_rows
from cnai.registry.packages import ModelVersion, Registry
from infra.local.functions import InProcessFunctions
from infra.local.template import LocalDeployment

REGION = "us-east-1"
STAGE = "wf"
MODEL = "banking77"
DAY = "2026-11-02"  # the curated slice's partition; runs name it as their dataset range
# The short first wait of TrainAndDistill's capacity Retry (settings.training.capacity_retry_s): moto's
# interpreter really sleeps, up to this, then twice this (full jitter).
CAPACITY_RETRY_S = 1

# A stand-in for models/train.py, for the orchestration scenarios only (the workflow is under test, not the
# factory): it runs under the same SageMaker contract the real job gets, reads both channels the snapshot
# produced, copies a REAL artifact that models/train.py trained (tests/conftest.py `tiny_artifact`, the tiny
# recipe) into SM_MODEL_DIR, and prints that artifact's test metrics the way train.py's last line does, so
# the metric definitions, QualityGate, Register and Notify all read a real model card. It also records what it
# was given (hyperparameters as SM_HPS and arguments, rows per channel) in its output data.
STANDIN = '''"""Stand-in for models/train.py in orchestration tests: copies a real tiny artifact, prints its metrics."""
import gzip, json, os, pathlib, shutil, sys

def rows(channel):
    root = pathlib.Path(os.environ["SM_CHANNEL_" + channel.upper()])
    return sum(len(gzip.decompress(p.read_bytes()).splitlines()) for p in sorted(root.rglob("*.jsonl.gz")))

hps = json.loads(os.environ["SM_HPS"])
artifact = pathlib.Path(os.environ["STANDIN_ARTIFACT"])
given = {"hps": hps, "args": sys.argv[1:], "rows": {c: rows(c) for c in json.loads(os.environ["SM_CHANNELS"])}}
print("stand-in entry point: " + json.dumps(given["rows"]), flush=True)
shutil.copytree(artifact, os.environ["SM_MODEL_DIR"], dirs_exist_ok=True)
out = pathlib.Path(os.environ["SM_OUTPUT_DATA_DIR"])
(out / "given.json").write_text(json.dumps(given))
card = json.loads((artifact / "model_card.json").read_text())
final = card["metrics"]["test"]["student_int8"]
print(" ".join(f"test_{k}={v:.6g}" for k, v in final.items() if isinstance(v, float)), flush=True)
'''


def synthesize(context: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """The app's templates by stack name, as app.py wires it (`infra.application.build`), without bundling:
    the functions run from this checkout. cdk-nag runs too: an unacknowledged finding fails here."""
    os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")
    import aws_cdk as cdk

    from infra.application import build

    app = cdk.App(
        context={
            "aws:cdk:bundling-stacks": [],
            "cnai:stage": STAGE,
            "cnai:training.capacity_retry_s": CAPACITY_RETRY_S,
            **(context or {}),
        }
    )
    build(app)
    return {stack.stack_name: stack.template for stack in app.synth().stacks}


def banking_rows(source: Path, labels: int, per_label: int) -> list[tuple[str, str]]:
    """The first `per_label` (text, intent) rows of the first `labels` intents (sorted) of a BANKING77 CSV."""
    by_label: dict[str, list[str]] = {}
    with source.open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            by_label.setdefault(row["category"], []).append(row["text"])
    return [(text, label) for label in sorted(by_label)[:labels] for text in by_label[label][:per_label]]


def curated_lines(rows: list[tuple[str, str]], day: str) -> list[dict[str, Any]]:
    """The lines the ingest consumer writes for these records: each payload curated by cnai.ingest.curate
    (validated, normalized, redacted, content-hash id), exactly as the consumer does for a stream record."""
    lines = []
    arrival = datetime.fromisoformat(f"{day}T10:00:00+00:00")
    stamp = f"{day}T09:00:00Z"
    for text, label in rows:
        payload = {"text": text, "label": label, "source": "banking77", "tenant": "acme", "timestamp": stamp}
        outcome = curate(base64.b64encode(encode_record(payload)).decode(), arrival)
        assert isinstance(outcome, Curated), (text, outcome)
        lines.append(outcome.line())
    return lines


@dataclass
class Execution:
    """One finished execution: what DescribeExecution answered and the states it went through."""

    arn: str
    status: str
    error: str | None
    cause: str | None
    output: dict[str, Any]
    events: list[dict[str, Any]]
    rows: list[StateRow]

    @property
    def path(self) -> list[str]:
        """The states entered, in order (a retried task is one visit)."""
        return [row.name for row in self.rows]

    def row(self, name: str) -> StateRow:
        return next(row for row in self.rows if row.name == name)

    def failed_tasks(self) -> list[dict[str, Any]]:
        """Every TaskFailed event's details (error, cause), retried ones included."""
        return [e["taskFailedEventDetails"] for e in self.events if e["type"] == "TaskFailed"]

    def input_of(self, state: str) -> dict[str, Any]:
        """The data a state was entered with (its StateEntered event)."""
        for event in self.events:
            details = event.get("stateEnteredEventDetails") or {}
            if details.get("name") == state:
                return dict(json.loads(details.get("input") or "{}"))
        raise KeyError(f"state {state} was never entered")


@dataclass
class Workflow:
    """The deployed app in moto, the train state machine, and the clients a test reads it back with."""

    deployment: LocalDeployment
    functions: InProcessFunctions
    runner: LocalTrainingRunner
    standin_dir: Path
    prefix: str
    machine: str
    lake: str
    artifacts: str
    topic: str
    queue: str
    lines: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.sfn = boto3.client("stepfunctions", region_name=REGION)
        self.s3 = boto3.client("s3", region_name=REGION)
        self.sagemaker = boto3.client("sagemaker", region_name=REGION)
        self.sqs = boto3.client("sqs", region_name=REGION)
        self.registry = Registry(self.sagemaker, self.prefix)

    def start(self, name: str, given: dict[str, Any]) -> str:
        return str(self.sfn.start_execution(stateMachineArn=self.machine, name=name, input=json.dumps(given))[
            "executionArn"
        ])  # fmt: skip

    def run(self, name: str, given: dict[str, Any], timeout_s: float = 120) -> Execution:
        """Start an execution and wait until it ends (a RUNNING one after the timeout fails the test)."""
        return self.wait(self.start(name, given), timeout_s)

    def wait(self, arn: str, timeout_s: float = 120) -> Execution:
        """The execution once it has ended; one still RUNNING after the timeout fails the test."""
        name = arn.rsplit(":", 1)[-1]
        deadline = time.monotonic() + timeout_s
        while True:
            described = self.sfn.describe_execution(executionArn=arn)
            if described["status"] != "RUNNING":
                break
            if time.monotonic() > deadline:
                tail = "\n".join(self.lines[-15:])
                raise AssertionError(f"execution {name} still RUNNING after {timeout_s} s; job log tail:\n{tail}")
            time.sleep(0.2)
        events, _ = history(self.sfn, arn)
        return Execution(
            arn=arn,
            status=str(described["status"]),
            error=described.get("error"),
            cause=described.get("cause"),
            output=json.loads(described.get("output") or "{}"),
            events=events,
            rows=state_rows(events),
        )

    def versions(self) -> list[ModelVersion]:
        return self.registry.versions(MODEL)

    def messages(self) -> list[dict[str, Any]]:
        """The SNS notifications delivered to the test's SQS subscription since the last call (drained)."""
        found: list[dict[str, Any]] = []
        while True:
            got = self.sqs.receive_message(QueueUrl=self.queue, MaxNumberOfMessages=10).get("Messages", [])
            if not got:
                return found
            for message in got:
                found.append(json.loads(message["Body"]))
                self.sqs.delete_message(QueueUrl=self.queue, ReceiptHandle=message["ReceiptHandle"])

    def job_log(self, job: str) -> str:
        return (self.runner.work_dir / job / "training.log").read_text(encoding="utf-8")


AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
}


@contextmanager
def deployed(
    templates: dict[str, dict[str, Any]], *, work: Path, artifact: Path, curated: list[dict[str, Any]]
) -> Iterator[Workflow]:
    """moto (in process, executing state machines) holding the deployed templates and the curated slice,
    with cnai.local.stepfunctions active; the training runner starts on the stand-in source dir."""
    standin_dir = work / "standin"
    (standin_dir / "models").mkdir(parents=True, exist_ok=True)
    (standin_dir / "models" / "train.py").write_text(STANDIN, encoding="utf-8")
    training = next(name for name in templates if name.endswith("-training"))
    ingestion = next(name for name in templates if name.endswith("-ingestion"))
    with pytest.MonkeyPatch.context() as patch:
        for key, value in AWS_ENV.items():
            patch.setenv(key, value)
        for key in ("AWS_ENDPOINT_URL", "AWS_PROFILE", "MOTO_PORT"):
            patch.delenv(key, raising=False)
        with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
            deployment = LocalDeployment(templates)
            deployment.create(boto3.Session(region_name=REGION))
            functions = InProcessFunctions(deployment.functions)
            lines: list[str] = []
            runner = LocalTrainingRunner(
                source_dir=standin_dir,
                work_dir=work / "jobs",
                env={"STANDIN_ARTIFACT": str(artifact), "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"},
                progress=lambda job, line: lines.append(f"{job}: {line}"),
                checkpoint_sync_s=0.5,
                stop_grace_s=120,
            )
            lake = deployment.output(ingestion, "LakeBucket")
            topic = deployment.output(training, "TopicArn")
            sqs, sns = boto3.client("sqs", region_name=REGION), boto3.client("sns", region_name=REGION)
            queue = sqs.create_queue(QueueName="workflow-inbox")["QueueUrl"]
            queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
            sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
            s3 = boto3.client("s3", region_name=REGION)
            writer = LakeWriter(s3, lake)
            writer.put(writer.key("curated", DAY, "banking77-slice"), curated)
            with LocalStepFunctions(functions.callables(), runner):
                yield Workflow(
                    deployment=deployment,
                    functions=functions,
                    runner=runner,
                    standin_dir=standin_dir,
                    prefix=training.removesuffix("-training"),
                    machine=deployment.output(training, "StateMachineArn"),
                    lake=lake,
                    artifacts=deployment.output(training, "ArtifactsBucket"),
                    topic=topic,
                    queue=queue,
                    lines=lines,
                )


def deploy_workflow_template(stack_name: str, groups: list[str], function_name: str) -> dict[str, Any]:
    """The deploy workflow construct (infra/constructs/deploy_workflow.py) synthesized alone on a bare stack,
    matching approvals in `groups`, its deploy function imported by ARN (`function_name`): what the deploy
    workflow tests run on moto's interpreter."""
    import aws_cdk as cdk
    from aws_cdk import aws_kms as kms
    from aws_cdk import aws_lambda as lambda_

    from cnai.deploy.events import approval_pattern
    from infra.constructs.deploy_workflow import DeployWorkflow
    from infra.local.template import ACCOUNT
    from infra.local.template import REGION as LOCAL_REGION

    app = cdk.App(context={"aws:cdk:bundling-stacks": []})
    stack = cdk.Stack(app, stack_name, env=cdk.Environment(account=ACCOUNT, region=LOCAL_REGION))
    function = lambda_.Function.from_function_arn(
        stack, "Deploy", f"arn:aws:lambda:{LOCAL_REGION}:{ACCOUNT}:function:{function_name}"
    )
    DeployWorkflow(stack, "Workflow", state_machine_name=stack_name, function=function,
                   pattern=approval_pattern(groups), key=kms.Key(stack, "Key"))  # fmt: skip
    return dict(app.synth().get_stack_by_name(stack_name).template)
