"""`cnai train start | status | logs`: start and follow the training workflow (registered in cnai/cli.py).

boto3's usual configuration reaches AWS; `AWS_ENDPOINT_URL` points it at the local platform (moto server).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer
from botocore.exceptions import ClientError
from rich.console import Console
from rich.table import Table

from cnai.errors import CnaiError
from cnai.settings import TrainingWorkflow, variable

console = Console()
train_app = typer.Typer(no_args_is_help=True, help="Run the training workflow (Step Functions) and follow it.")


def _fail(exc: Exception) -> None:
    console.print(f"[red]error:[/red] {exc}", highlight=False)
    raise typer.Exit(2)


def _sfn() -> Any:
    import boto3

    return boto3.client("stepfunctions")


def _machine(sfn: Any, arn: str | None) -> str:
    from cnai.pipeline.progress import find_state_machine

    return arn or os.environ.get(variable(TrainingWorkflow, "state_machine_arn")) or find_state_machine(sfn, "train")


def build_input(
    model: str | None,
    start: str | None,
    end: str | None,
    manifest: str | None,
    input_file: Path | None,
    overrides: dict[str, Any],
) -> dict[str, Any]:
    """The execution input from flags (or a JSON file, flags on top), validated as the workflow will."""
    from cnai.pipeline.input import parse_run

    data: dict[str, Any] = {}
    if input_file is not None:
        try:
            data = json.loads(input_file.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise CnaiError(f"{input_file}: {exc}") from None
    if model is not None:
        data["model"] = model
    dataset = dict(data.get("dataset") or {})
    if start is not None or end is not None:
        dataset.update({k: v for k, v in (("from", start), ("to", end)) if v is not None})
    if manifest is not None:
        dataset["manifest"] = manifest
    if dataset:
        data["dataset"] = dataset
    data.update({k: v for k, v in overrides.items() if v is not None})
    parse_run(data)  # the same errors the first state would give, before anything is started
    return data


@train_app.command("start")
def start(
    model: Annotated[str | None, typer.Option(help="model name (its registry group is <prefix>-<model>)")] = None,
    start_day: Annotated[str | None, typer.Option("--from", help="first day of the lake range, YYYY-MM-DD")] = None,
    end_day: Annotated[str | None, typer.Option("--to", help="last day of the lake range, inclusive")] = None,
    manifest: Annotated[str | None, typer.Option(help="an existing snapshot: s3://.../manifest.json")] = None,
    input_file: Annotated[Path | None, typer.Option("--input", help="execution input JSON (flags override it)")] = None,
    profile: Annotated[str | None, typer.Option(help="training recipe: default | quick | tiny")] = None,
    instance_type: Annotated[str | None, typer.Option(help="training instance type")] = None,
    spot: Annotated[bool | None, typer.Option("--spot/--no-spot", help="managed spot training")] = None,
    auto_approve: Annotated[bool | None, typer.Option("--auto-approve/--manual-approve")] = None,
    state_machine: Annotated[str | None, typer.Option(help="state machine ARN (default: found by tag/name)")] = None,
    name: Annotated[str | None, typer.Option(help="execution name (default: generated)")] = None,
    wait: Annotated[bool, typer.Option(help="follow the execution until it ends (as `cnai train logs`)")] = False,
) -> None:
    """Start the training workflow; prints the execution ARN and its console link."""
    from cnai.pipeline.notify import console_link

    overrides = {"profile": profile, "instance_type": instance_type, "spot": spot, "auto_approve": auto_approve}
    try:
        data = build_input(model, start_day, end_day, manifest, input_file, overrides)
        sfn = _sfn()
        kwargs: dict[str, Any] = {"stateMachineArn": _machine(sfn, state_machine), "input": json.dumps(data)}
        if name:
            kwargs["name"] = name
        arn = str(sfn.start_execution(**kwargs)["executionArn"])
    except CnaiError as exc:
        _fail(exc)
    except ClientError as exc:
        _fail(CnaiError(f"start_execution: {exc}"))
    typer.echo(arn)
    console.print(console_link(arn), highlight=False)
    if wait:
        _follow(sfn, arn)


def _follow(sfn: Any, arn: str) -> None:
    from cnai.pipeline.progress import follow

    final = follow(sfn, arn, lambda line: console.print(line, highlight=False))
    if final != "SUCCEEDED":
        raise typer.Exit(1)


@train_app.command("status")
def status(
    execution: Annotated[str | None, typer.Argument(help="execution ARN (default: the latest one)")] = None,
    state_machine: Annotated[str | None, typer.Option(help="state machine ARN (default: found by tag/name)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Per-state progress of an execution: state, status, seconds, attempts, error."""
    from cnai.pipeline.progress import history, iter_executions, state_rows

    try:
        sfn = _sfn()
        if execution is None:
            latest = next(iter(sorted(iter_executions(sfn, _machine(sfn, state_machine)),
                                      key=lambda e: e["startDate"], reverse=True)), None)  # fmt: skip
            if latest is None:
                raise CnaiError("the state machine has no executions yet")
            execution = str(latest["executionArn"])
        described = sfn.describe_execution(executionArn=execution)
        rows = state_rows(history(sfn, execution)[0])
    except CnaiError as exc:
        _fail(exc)
    except ClientError as exc:
        _fail(CnaiError(f"{execution or 'status'}: {exc}"))
    if as_json:
        out = [{"state": r.name, "status": r.status, "seconds": r.seconds, "attempts": r.attempts, "error": r.error}
               for r in rows]  # fmt: skip
        typer.echo(json.dumps({"execution": execution, "status": described["status"], "states": out}, indent=2))
        return
    table = Table(title=f"{described['name']}: {described['status']}")
    for column in ("state", "status", "seconds", "attempts", "error"):
        table.add_column(column, justify="right" if column in ("seconds", "attempts") else "left")
    for r in rows:
        seconds = "" if r.seconds is None else f"{r.seconds:.1f}"
        table.add_row(r.name, r.status, seconds, str(r.attempts), r.error[:120])
    console.print(table)


@train_app.command("logs")
def logs(execution: Annotated[str, typer.Argument(help="execution ARN")]) -> None:
    """Print the execution's events as they happen until it ends (exit 1 unless it succeeded)."""
    sfn = _sfn()
    try:
        sfn.describe_execution(executionArn=execution)
        _follow(sfn, execution)
    except ClientError as exc:
        _fail(CnaiError(f"{execution}: {exc}"))


def register(app: typer.Typer) -> None:
    app.add_typer(train_app, name="train")
