"""The drift monitor Lambda end to end in moto: audit records in Firehose's layout, a real dataset snapshot
and registry version as the baseline, a real state machine ARN, the cool-down table.

In-domain traffic starts nothing; off-domain traffic starts exactly one retrain; later ticks inside the
cool-down, retries of the same tick and ticks while that retrain still runs start none.
"""

from __future__ import annotations

import gzip
import importlib
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import boto3
import pytest
from moto import mock_aws

from cnai.audit.trail import Auditor, AuditRecord
from cnai.data.snapshot import S3Store, build_snapshot
from cnai.ingest.curate import jsonl_gz
from cnai.local.context import LocalContext
from cnai.monitoring.report import DriftReport, ReportStore
from cnai.pipeline.input import parse_run
from cnai.registry.packages import Registry
from cnai.settings import environment_for
from functions.drift_monitor.settings import DriftMonitorSettings
from tests.unit.monitoring.traffic import MODEL, banking_rows, in_domain, intents, off_domain

PREFIX = "cnai-dev"
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
ROLE = "arn:aws:iam::123456789012:role/train-workflow"


class Lines:
    """An audit sink that keeps the chained lines, as the log group hands them to Firehose."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def write(self, line: str, record: AuditRecord) -> None:
        self.lines.append(line)


@dataclass
class World:
    s3: Any
    sfn: Any
    machine: str
    trained: list[str]
    handler: Any

    def serve(self, records: list[AuditRecord], part: str) -> None:
        """Firehose's delivery: gzip files of JSON lines under audit/year=/month=/day=/ of the audit bucket."""
        sink = Lines()
        auditor = Auditor(sink)
        for record in records:
            auditor.write(record)
        by_day: dict[str, list[str]] = {}
        for line, record in zip(sink.lines, records, strict=True):
            by_day.setdefault(record.time[:10], []).append(line)
        for day, lines in by_day.items():
            y, m, d = day.split("-")
            body = gzip.compress(("\n".join(lines) + "\n").encode())
            self.s3.put_object(Bucket="audit", Key=f"audit/year={y}/month={m}/day={d}/cnai-audit-{part}.gz", Body=body)

    def tick(self, moment: datetime) -> DriftReport:
        """One scheduled invocation, as EventBridge Scheduler sends it."""
        event = {"model": MODEL, "time": moment.isoformat()}
        answer = self.handler.handler(event, LocalContext("cnai-dev-monitoring-DriftMonitor", timeout_s=300))
        return DriftReport.model_validate(answer)

    def executions(self) -> list[dict[str, Any]]:
        return self.sfn.list_executions(stateMachineArn=self.machine)["executions"]


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": "us-east-1", "POWERTOOLS_SERVICE_NAME": "drift-monitor",
                        "POWERTOOLS_METRICS_NAMESPACE": "cnai"}.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("POWERTOOLS_METRICS_DISABLED", raising=False)
    with mock_aws():
        s3 = boto3.client("s3")
        for bucket in ("audit", "lake", "reports"):
            s3.create_bucket(Bucket=bucket)
        # The served model was trained on 20 intents: a snapshot of their curated records is its dataset
        trained = intents()[:20]
        rows = [
            {"id": f"t{i}", "text": text, "label": label, "tenant": "acme", "timestamp": "2026-11-30T08:00:00Z"}
            for i, (text, label) in enumerate(banking_rows("train"))
            if label in trained
        ]
        s3.put_object(Bucket="lake", Key="curated/dt=2026-11-30/part-0.jsonl.gz", Body=jsonl_gz(rows))
        snapshot = build_snapshot(S3Store(s3, "lake"), start=date(2026, 11, 30), end=date(2026, 11, 30), name=MODEL)
        manifest_uri = f"s3://lake/{snapshot.manifest_key}"
        registry = Registry(boto3.client("sagemaker"), PREFIX)
        registry.ensure_group(MODEL)
        registry.create_version(
            MODEL,
            image="123456789012.dkr.ecr.us-east-1.amazonaws.com/pytorch-inference:2.6.0-cpu-py312",
            model_data="s3://artifacts/training/job/output/model.tar.gz",
            report_uri="s3://artifacts/evaluations/job/report.json",
            metrics={"accuracy": 0.9, "macro_f1": 0.89},
            lineage={
                "dataset_manifest_uri": manifest_uri,
                "dataset_manifest_sha256": snapshot.manifest["manifest_sha256"],
            },
            approved=True,
        )
        sfn = boto3.client("stepfunctions")
        definition = {"StartAt": "Train", "States": {"Train": {"Type": "Pass", "End": True}}}
        machine = sfn.create_state_machine(name=f"{PREFIX}-train", definition=json.dumps(definition), roleArn=ROLE)
        boto3.client("dynamodb").create_table(
            TableName="cooldown",
            KeySchema=[{"AttributeName": "model", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "model", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        env = environment_for(
            DriftMonitorSettings,
            audit_source="s3://audit/audit/year={yyyy}/month={MM}/day={dd}/",
            reports_bucket="reports",
            cooldown_table="cooldown",
            state_machine_arn=machine["stateMachineArn"],
            group_prefix=PREFIX,
            window_hours=24,
            min_predictions=200,
            cooldown_hours=72,
            lookback_days=30,
        )
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        sys.modules.pop("functions.drift_monitor.handler", None)  # a cold start under this environment
        handler = importlib.import_module("functions.drift_monitor.handler")
        yield World(s3, sfn, machine["stateMachineArn"], trained, handler)
        sys.modules.pop("functions.drift_monitor.handler", None)


def test_traffic_from_the_training_distribution_starts_nothing(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a day of served texts of the trained intents, answered at the model's accuracy
    rows = [r for r in banking_rows("test") if r[1] in world.trained]
    world.serve(in_domain(rows, world.trained, NOW), "a")
    # When the schedule ticks
    report = world.tick(NOW)
    # Then it judged (enough predictions, a baseline from the registry's lineage) and found no drift
    assert report.decision == "no_drift", report.reasons
    assert report.window.predictions == len(rows) >= 200
    assert report.baseline.package_version == 1 and report.baseline.manifest_uri.startswith("s3://lake/datasets/")
    assert report.action.kind == "none" and world.executions() == []
    # And the report is kept, and the scores went out as metrics of this model
    kept = ReportStore.from_uri("s3://reports/drift", world.s3).last(MODEL, 5)
    assert [r.run_id for r in kept] == [report.run_id]
    emf = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    assert emf and emf[-1]["model"] == MODEL and emf[-1]["DriftDetected"] in (0.0, [0.0])  # Powertools: a list
    assert "Drift.label_psi" in emf[-1]


def test_off_domain_traffic_starts_exactly_one_retrain_per_cool_down(world: World) -> None:
    # Given a day of texts of intents the model was never trained on
    rows = [r for r in banking_rows("test") if r[1] not in world.trained][:600]
    world.serve(off_domain(rows, world.trained, NOW), "b")
    # When the schedule ticks
    first = world.tick(NOW)
    # Then one execution of the train machine is started, named for the run, on the lake's latest window
    assert first.decision == "drift" and first.action.kind == "retrain_started", first.reasons
    [execution] = world.executions()
    assert execution["name"] == f"drift-{first.run_id}" and execution["executionArn"] == first.action.execution_arn
    started = json.loads(world.sfn.describe_execution(executionArn=execution["executionArn"])["input"])
    run = parse_run(started)  # the workflow's own validation of its input
    assert (run.model, run.dataset.from_, run.dataset.to) == (MODEL, date(2026, 11, 2), date(2026, 12, 1))

    # When the same tick is retried (Lambda retry), and the next ticks come while the drift persists
    again = world.tick(NOW)
    later = world.tick(NOW + timedelta(hours=1))
    # Then no second execution: the retry finds its own execution, the later run the cool-down
    assert again.action.kind == "retrain_started" and again.action.execution_arn == first.action.execution_arn
    assert later.decision == "drift" and later.action.kind == "cooldown"
    assert later.action.execution_arn == first.action.execution_arn and "cool-down lasts until" in later.action.detail
    assert len(world.executions()) == 1

    # When the cool-down has passed but the drift retrain still runs, Then still none (never a loop)
    world.serve(off_domain(rows, world.trained, NOW + timedelta(hours=80)), "c")
    blocked = world.tick(NOW + timedelta(hours=80))
    assert blocked.action.kind == "retrain_running" and len(world.executions()) == 1
    # When it has ended, Then the drift that remains may start the next one
    world.sfn.stop_execution(executionArn=first.action.execution_arn)
    assert world.tick(NOW + timedelta(hours=81)).action.kind == "retrain_started"
    assert len(world.executions()) == 2
    # And every decision is kept and explained
    explained = [r.explain() for r in ReportStore.from_uri("s3://reports/drift", world.s3).last(MODEL, 10)]
    assert len(explained) == 4  # four runs: the retry rewrote its own run's report with the same decision
    assert all("why:" in text for text in explained)


def test_without_an_approved_version_the_monitor_reports_it_is_blind(world: World) -> None:
    # Given traffic naming a registry version that does not exist
    rows = [r for r in banking_rows("test") if r[1] in world.trained]
    records = [r.model_copy(update={"package_version": "7"}) for r in in_domain(rows, world.trained, NOW)]
    world.serve(records, "d")
    report = world.tick(NOW)
    assert report.decision == "no_baseline" and report.action.kind == "none"
    assert "version 7 of banking77" in report.reasons[0] and world.executions() == []


def test_the_cli_explains_the_kept_reports(world: World) -> None:
    from typer.testing import CliRunner

    from cnai.cli import app

    rows = [r for r in banking_rows("test") if r[1] not in world.trained][:600]
    world.serve(off_domain(rows, world.trained, NOW), "e")
    first = world.tick(NOW)
    world.tick(NOW + timedelta(hours=1))
    result = CliRunner().invoke(app, ["monitor", "report", "--reports", "s3://reports/drift", "--last", "2"])
    assert result.exit_code == 0, result.output
    assert result.output.index("action cooldown") < result.output.index("action retrain_started")
    one = CliRunner().invoke(app, ["monitor", "report", first.run_id, "--reports", "s3://reports/drift", "--json"])
    assert json.loads(one.output)["action"]["kind"] == "retrain_started"
