"""One monitor run: read the window's audit records, find the served model's dataset profile, score, decide,
start the training workflow at most once per cool-down, keep the report.

The drift monitor Lambda (functions/drift_monitor) calls `run_monitor_once` on each schedule tick; the local
platform and tests call it directly with moto's clients. Every AWS call goes through the clients passed in.

Never a loop: a drift retrain (1) holds the model's cool-down (cnai/monitoring/cooldown.py), so no second one
starts inside it whatever the scores say; (2) is not started while any drift-started execution of the train
machine is still running, even after the cool-down (a retrain slower than the cool-down would otherwise be
joined by another one on the same drift); (3) trains on the lake's latest window, and the model it produces
becomes the baseline only once approved and served, so its own traffic is never compared with itself.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cnai.audit.trail import AuditRecord, read_records
from cnai.errors import CnaiError
from cnai.monitoring.cooldown import CoolDown, until_text
from cnai.monitoring.drift import Baseline, Thresholds, Traffic, assess, decide
from cnai.monitoring.report import Action, BaselineInfo, DriftReport, ReportStore, WindowInfo, new_run_id
from cnai.registry.packages import ModelVersion, Registry

EXECUTION_PREFIX = "drift-"


class MonitorError(CnaiError):
    """The monitor cannot run as configured (bad audit source, unreadable manifest); names what."""


@dataclass(frozen=True)
class MonitorConfig:
    """What one run needs; the Lambda's settings model (functions/drift_monitor/settings.py) maps onto it."""

    model: str
    audit_source: str  # file:PATH, s3://bucket/prefix, with optional {yyyy} {MM} {dd} day placeholders
    reports: str  # s3://bucket/prefix or a folder
    state_machine_arn: str
    cooldown_table: str
    group_prefix: str
    window_hours: int = 24
    min_predictions: int = 200
    thresholds: Thresholds = field(default_factory=Thresholds)
    cooldown_hours: int = 72
    lookback_days: int = 30
    retrain: bool = True
    baseline_manifest: str | None = None  # instead of the registry version's lineage (tests, no registry)


@dataclass(frozen=True)
class Clients:
    s3: Any
    sfn: Any
    dynamodb: Any
    sagemaker: Any


def days(start: datetime, end: datetime) -> list[datetime]:
    """Each UTC day the window touches, plus the next one: Firehose files a record under its arrival time,
    up to a buffer interval after the record's own time."""
    first = start.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    last = end.astimezone(UTC) + timedelta(days=1)
    out = []
    while first <= last:
        out.append(first)
        first += timedelta(days=1)
    return out


def window_sources(template: str, start: datetime, end: datetime) -> list[str]:
    """The audit prefixes to read: one per day when the source names the day ({yyyy}, {MM}, {dd}; the Firehose
    layout `audit/year={yyyy}/month={MM}/day={dd}/`), else the source itself (a file, a whole prefix)."""
    if "{" not in template:
        return [template]
    out = []
    for day in days(start, end):
        try:
            source = template.format(yyyy=f"{day:%Y}", MM=f"{day:%m}", dd=f"{day:%d}")
        except (KeyError, IndexError, ValueError) as exc:
            raise MonitorError(
                f"audit source {template!r}: only {{yyyy}} {{MM}} {{dd}} may be filled ({exc})"
            ) from None
        out.append(source)
    return list(dict.fromkeys(out))


def window_records(config: MonitorConfig, start: datetime, end: datetime, s3: Any) -> Iterator[AuditRecord]:
    """The model's audit records of [start, end)."""
    lo, hi = start.isoformat(), end.isoformat()
    for source in window_sources(config.audit_source, start, end):
        if not source.startswith("s3://") and not Path(source.removeprefix("file:")).expanduser().exists():
            continue  # a file sink not written yet: no traffic
        for record in read_records(source, start=lo, end=hi, s3_client=s3):
            if record.model == config.model:
                yield record


def read_manifest(uri: str, s3: Any) -> dict[str, Any]:
    try:
        if uri.startswith("s3://"):
            bucket, _, key = uri.removeprefix("s3://").partition("/")
            body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        else:
            body = Path(uri.removeprefix("file:")).read_bytes()
        data = json.loads(body)
    except Exception as exc:  # boto3 errors, OSError, bad JSON: the report says which manifest and why
        raise MonitorError(f"{uri}: cannot read the dataset manifest ({type(exc).__name__}: {exc})") from None
    if not isinstance(data, dict):
        raise MonitorError(f"{uri}: a dataset manifest is a JSON object")
    return data


def served_version(registry: Registry, model: str, package_version: str | None) -> ModelVersion | None:
    """The registry version that answered most of the window (its audit records name it), else the approved one.
    Finds the version's ARN from the listing's summaries and describes that one only."""
    if package_version is None or not package_version.isdigit():
        return registry.approved(model)
    wanted = int(package_version)
    pages = registry.sm.get_paginator("list_model_packages").paginate(ModelPackageGroupName=registry.group(model))
    for page in pages:
        for summary in page.get("ModelPackageSummaryList", []):
            if int(summary.get("ModelPackageVersion") or 0) == wanted:
                return registry.describe(str(summary["ModelPackageArn"]))
    return None


def resolve_baseline(
    config: MonitorConfig, versions: Counter[str], clients: Clients
) -> tuple[Baseline | None, BaselineInfo, list[str]]:
    """The served model's dataset profile and expected confidence, or None with the reasons."""
    info = BaselineInfo()
    version = None
    served = versions.most_common(1)[0][0] if versions else None
    try:
        version = served_version(Registry(clients.sagemaker, config.group_prefix), config.model, served)
    except Exception as exc:  # RegistryError or boto3's (a missing group): reported in the report, not raised
        if config.baseline_manifest is None:
            return None, info, [f"registry: {type(exc).__name__}: {exc}"]
    manifest_uri = config.baseline_manifest
    if version is not None:
        info.package_version = version.version
        info.expected_confidence = version.metrics.get("accuracy")
        manifest_uri = manifest_uri or version.lineage.get("dataset_manifest_uri") or None
    if not manifest_uri:
        what = f"version {served}" if served else "approved version"
        return None, info, [f"no dataset manifest to compare with: the registry has no {what} of "
                            f"{config.model} with a dataset_manifest_uri in its lineage"]  # fmt: skip
    info.manifest_uri = manifest_uri
    try:
        manifest = read_manifest(manifest_uri, clients.s3)
    except MonitorError as exc:
        return None, info, [str(exc)]
    info.dataset_version = manifest.get("version")
    profile = manifest.get("profile") or {}
    info.rows = profile.get("rows")
    return Baseline.from_profile(profile, info.expected_confidence), info, []


def training_input(config: MonitorConfig, now: datetime) -> dict[str, Any]:
    """The training workflow's input (cnai/pipeline/input.py): the model on the lake's latest window."""
    end = now.astimezone(UTC).date()
    start = end - timedelta(days=config.lookback_days - 1)
    return {"model": config.model, "dataset": {"from": start.isoformat(), "to": end.isoformat()}}


def execution_name(run_id: str) -> str:
    """Deterministic per run: a retried invocation names the same execution (Step Functions: idempotent)."""
    return f"{EXECUTION_PREFIX}{run_id}"[:80]


def running_drift_execution(sfn: Any, state_machine_arn: str) -> str | None:
    pages = sfn.get_paginator("list_executions").paginate(stateMachineArn=state_machine_arn, statusFilter="RUNNING")
    for page in pages:
        for execution in page.get("executions", []):
            if str(execution.get("name", "")).startswith(EXECUTION_PREFIX):
                return str(execution["executionArn"])
    return None


def start_retrain(config: MonitorConfig, run_id: str, now: datetime, clients: Clients) -> Action:
    """Start the train workflow unless the cool-down is held or a drift retrain still runs."""
    if not config.retrain:
        return Action(kind="retrain_disabled", detail="drift found; retraining is switched off (drift.retrain)")
    cooldown = CoolDown(clients.dynamodb, config.cooldown_table)
    claim = cooldown.claim(config.model, run_id, now, timedelta(hours=config.cooldown_hours))
    if not claim.granted:
        return Action(kind="cooldown", execution_arn=claim.execution_arn, cooldown_until=until_text(claim),
                      detail=f"run {claim.run_id} started a retrain; the cool-down lasts until "
                             f"{until_text(claim)}")  # fmt: skip
    if claim.execution_arn:  # a retry of this run, which had already started its execution
        return Action(kind="retrain_started", execution_arn=claim.execution_arn,
                      execution_name=execution_name(run_id), input=training_input(config, now),
                      cooldown_until=until_text(claim), detail="retried run: the execution it had started")  # fmt: skip
    running = running_drift_execution(clients.sfn, config.state_machine_arn)
    if running is not None and not running.endswith(f":{execution_name(run_id)}"):
        cooldown.release(config.model, run_id)
        return Action(kind="retrain_running", execution_arn=running,
                      detail="a drift-started training execution is still running: no second one")  # fmt: skip
    payload = training_input(config, now)
    name = execution_name(run_id)
    try:
        try:
            arn = str(clients.sfn.start_execution(stateMachineArn=config.state_machine_arn, name=name,
                                                  input=json.dumps(payload))["executionArn"])  # fmt: skip
        except clients.sfn.exceptions.ExecutionAlreadyExists:  # a retry of this run, after it had started it
            arn = config.state_machine_arn.replace(":stateMachine:", ":execution:") + f":{name}"
    except Exception:
        cooldown.release(config.model, run_id)
        raise
    cooldown.started(config.model, run_id, arn)
    return Action(kind="retrain_started", execution_arn=arn, execution_name=name, input=payload,
                  cooldown_until=until_text(claim))  # fmt: skip


def run_monitor_once(
    config: MonitorConfig, clients: Clients, *, now: datetime | None = None, run_id: str | None = None
) -> DriftReport:
    """One run: score the window ending at `now` (default: the current time), act, keep the report."""
    now = (now or datetime.now(UTC)).astimezone(UTC).replace(microsecond=0)
    start = now - timedelta(hours=config.window_hours)
    run_id = run_id or new_run_id(now, config.model)
    records = list(window_records(config, start, now, clients.s3))
    traffic = Traffic.from_records(records)
    versions = Counter(r.package_version for r in records if r.package_version and r.outputs)
    window = WindowInfo(
        start=start.isoformat().replace("+00:00", "Z"),
        end=now.isoformat().replace("+00:00", "Z"),
        records=traffic.records,
        predictions=traffic.predictions,
        abstentions=sum(label is None for label in traffic.labels),
        with_text=len(traffic.texts),
        sources=window_sources(config.audit_source, start, now),
        package_versions=dict(versions),
    )
    common: dict[str, Any] = {"run_id": run_id, "model": config.model, "time": window.end, "window": window,
              "thresholds": config.thresholds, "min_predictions": config.min_predictions}  # fmt: skip
    baseline, info, problems = resolve_baseline(config, versions, clients)
    if baseline is None:
        report = DriftReport(**common, baseline=info, decision="no_baseline", reasons=problems)
    else:
        scores = assess(baseline, traffic, config.thresholds)
        decision, reasons = decide(scores, traffic, config.min_predictions)
        action = start_retrain(config, run_id, now, clients) if decision == "drift" else Action()
        report = DriftReport(**common, baseline=info, scores=scores, decision=decision, action=action,
                             reasons=reasons)  # fmt: skip
    ReportStore.from_uri(config.reports, clients.s3).save(report)
    return report
