"""`cnai cost`: print the estimate (tables) or its JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from cnai.errors import CnaiError

if TYPE_CHECKING:
    from cnai.cost.estimate import Line

console = Console()


def _table(title: str, lines: list[Line], currency: str) -> Table:
    table = Table(title=title, title_justify="left")
    for column, justify in (("item", "left"), ("quantity", "right"), (currency, "right"), ("basis", "left")):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for line in lines:
        table.add_row(line.item, line.quantity, f"{line.cost:,.2f}", line.basis)
    table.add_row("[b]total[/b]", "", f"[b]{sum(line.cost for line in lines):,.2f}[/b]", "")
    return table


def cost(
    app_dir: Annotated[
        Path, typer.Option("--app", help="the synthesized cloud assembly (`make synth` writes cdk.out)")
    ] = Path("cdk.out"),
    predictions: Annotated[int, typer.Option(min=1, help="how many predictions to price")] = 1_000_000,
    lambda_ms: Annotated[float, typer.Option(min=0.1, help="predict Lambda duration per request (ms)")] = 2.0,
    endpoint_ms: Annotated[
        float, typer.Option(min=0.1, help="SageMaker Serverless inference time per request (ms)")
    ] = 15.0,
    training_hours: Annotated[float, typer.Option(min=0.01, help="length of one training run (hours)")] = 1.0,
    instance_type: Annotated[str | None, typer.Option(help="training instance type (default: the workflow's)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the estimate as JSON")] = False,
) -> None:
    """What the deployment in --app costs: idle per month, per N predictions (REST API + Lambda vs SageMaker
    Serverless), one training run (spot vs on demand). Prices: cnai/pipeline/prices.json (source and date inside)."""
    from cnai.cost.estimate import Assumptions, estimate

    assume = Assumptions(
        predictions=predictions,
        lambda_ms=lambda_ms,
        endpoint_ms=endpoint_ms,
        training_hours=training_hours,
        instance_type=instance_type,
    )
    try:
        result = estimate(app_dir, assume)
    except CnaiError as exc:
        console.print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(2) from None
    if as_json:
        typer.echo(json.dumps(result.as_dict(), indent=2))
        return
    c = result.currency
    console.print(f"prices: {result.region}, as of {result.as_of} (cnai/pipeline/prices.json); app: {app_dir}")
    console.print(_table("idle deployment, per month", result.idle_month, c))
    for route, lines in result.per_predictions.items():
        console.print(_table(f"{result.predictions:,} predictions via {route.replace('_', ' ')}", lines, c))
    for mode, lines in result.training.items():
        console.print(_table(f"one training run, {mode.replace('_', ' ')}", lines, c))


def register(app: typer.Typer) -> None:
    app.command("cost")(cost)
