"""`cnai predict` and `cnai info`: the command-line side of serving (registered in cnai/cli.py).

`cnai serve` puts the predict API behind an HTTP server: cnai/local/cli.py (local sits above serving).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from cnai.errors import CnaiError

console = Console()


def _fail(exc: Exception) -> None:
    console.print(f"[red]error:[/red] {exc}")
    raise typer.Exit(2)


def predict(
    texts: Annotated[list[str], typer.Argument(help="texts to classify")],
    model_dir: Annotated[Path, typer.Option(help="model artifact directory")],
    top_k: Annotated[int, typer.Option(min=1, help="labels to show per text")] = 3,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False,
) -> None:
    """Classify texts with a model artifact, on this machine."""
    from cnai.model.predictor import Predictor

    try:
        predictor = Predictor.from_dir(model_dir)
    except CnaiError as exc:
        _fail(exc)
    results = predictor.predict(texts, top_k=top_k)
    if as_json:
        rows = [
            {"text": t, "label": r.label, "score": r.score, "top_k": r.top_k}
            for t, r in zip(texts, results, strict=True)
        ]
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table(title=f"{predictor.name} {predictor.version}")
    table.add_column("text")
    table.add_column("label")
    table.add_column("p", justify="right")
    table.add_column("runners-up")
    for text, result in zip(texts, results, strict=True):
        others = ", ".join(f"{label} {p:.2f}" for label, p in result.top_k[1:])
        table.add_row(text, result.label or f"(abstain: {result.reason})", f"{result.score:.3f}", others)
    console.print(table)


def info(model_dir: Annotated[Path, typer.Option(help="model artifact directory")]) -> None:
    """Verify an artifact (sha256 of every file) and print its model card."""
    from cnai.model.artifact import load_artifact

    try:
        artifact = load_artifact(model_dir)
    except CnaiError as exc:
        _fail(exc)
    typer.echo(artifact.card.model_dump_json(indent=2))


def register(app: typer.Typer) -> None:
    """Add `predict` and `info` to the main CLI."""
    app.command("predict")(predict)
    app.command("info")(info)
