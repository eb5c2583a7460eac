"""`cnai monitor report | run`: read the drift monitor's kept reports, or run the monitor once (registered in
cnai/cli.py). Reports live where the deployment keeps them (the monitoring stack's `DriftReports` output,
s3://bucket/drift) or in a folder; `AWS_ENDPOINT_URL` points boto3 at the local platform.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import typer
from botocore.exceptions import BotoCoreError, ClientError
from rich.console import Console

from cnai.errors import CnaiError

console = Console()
monitor_app = typer.Typer(no_args_is_help=True, help="Drift monitoring: explain past decisions, run it once.")
ReportsOption = Annotated[
    str, typer.Option("--reports", envvar="CNAI_DRIFT_REPORTS", help="s3://bucket/prefix or a folder")
]


def _fail(exc: Exception) -> None:
    console.print(f"[red]error:[/red] {exc}", highlight=False)
    raise typer.Exit(2)


@monitor_app.command("report")
def report(
    run_id: Annotated[str | None, typer.Argument(help="one run (default: the newest --last N)")] = None,
    model: Annotated[str, typer.Option(help="model name")] = "banking77",
    reports: ReportsOption = "",
    last: Annotated[int, typer.Option("--last", min=1, help="the newest N runs")] = 1,
    as_json: Annotated[bool, typer.Option("--json", help="print the reports as JSON")] = False,
) -> None:
    """The kept report of one run, or of the last N: scores against thresholds, decision, action, reasons."""
    from cnai.monitoring.report import ReportStore

    if not reports:
        _fail(CnaiError("--reports (or CNAI_DRIFT_REPORTS): where the monitor keeps its reports"))
    try:
        store = ReportStore.from_uri(reports)
        found = [store.load(model, run_id)] if run_id else store.last(model, last)
    except (CnaiError, ClientError, BotoCoreError) as exc:
        _fail(exc)
    if not found:
        _fail(CnaiError(f"no drift report for {model} under {reports}"))
    for item in found:
        typer.echo(item.to_json() if as_json else item.explain())


@monitor_app.command("run")
def run(
    model: Annotated[str, typer.Option(help="model name (route name = registry model name)")],
    audit: Annotated[str, typer.Option(help="file:PATH or s3://bucket/prefix, optional {yyyy} {MM} {dd}")],
    reports: ReportsOption,
    state_machine: Annotated[str, typer.Option(help="the train state machine ARN")],
    table: Annotated[str, typer.Option(help="the cool-down DynamoDB table")],
    prefix: Annotated[str, typer.Option(help="model package group prefix (<project>-<stage>)")],
    window_hours: Annotated[int, typer.Option(min=1)] = 24,
    min_predictions: Annotated[int, typer.Option(min=1)] = 200,
    cooldown_hours: Annotated[int, typer.Option(min=1)] = 72,
    now: Annotated[str | None, typer.Option(help="end of the window, ISO 8601 (default: now)")] = None,
) -> None:
    """Run the monitor once, as its Lambda does, and print the report."""
    import boto3

    from cnai.monitoring.monitor import Clients, MonitorConfig, run_monitor_once

    config = MonitorConfig(model=model, audit_source=audit, reports=reports, state_machine_arn=state_machine,
                           cooldown_table=table, group_prefix=prefix, window_hours=window_hours,
                           min_predictions=min_predictions, cooldown_hours=cooldown_hours)  # fmt: skip
    clients: Any = Clients(*(boto3.client(s) for s in ("s3", "stepfunctions", "dynamodb", "sagemaker")))
    try:
        moment = datetime.fromisoformat(now) if now else None
        result = run_monitor_once(config, clients, now=moment)
    except ValueError as exc:
        _fail(CnaiError(f"--now: {exc}"))
    except (CnaiError, ClientError, BotoCoreError) as exc:
        _fail(exc)
    typer.echo(result.explain())


def register(app: typer.Typer) -> None:
    app.add_typer(monitor_app, name="monitor")
