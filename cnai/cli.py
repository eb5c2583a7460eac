"""The `cnai` command line. Each command parses its arguments and calls the one implementation in cnai/."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from cnai.errors import CnaiError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="cnai: small, fast, audited text models.")
console = Console()


def _fail(exc: Exception) -> None:
    console.print(f"[red]error:[/red] {exc}")
    raise typer.Exit(2)


@app.command()
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


@app.command()
def info(model_dir: Annotated[Path, typer.Option(help="model artifact directory")]) -> None:
    """Verify an artifact (sha256 of every file) and print its model card."""
    from cnai.model.artifact import load_artifact

    try:
        artifact = load_artifact(model_dir)
    except CnaiError as exc:
        _fail(exc)
    typer.echo(artifact.card.model_dump_json(indent=2))


@app.command()
def serve(
    model_dir: Annotated[
        str | None, typer.Option(help="model artifact: a directory, a model.tar.gz, or s3://bucket/prefix/")
    ] = None,
    model: Annotated[str | None, typer.Option(help="registered model (registry package); needs the registry")] = None,
    name: Annotated[str | None, typer.Option(help="the name routes use (default: the model card's name)")] = None,
    host: Annotated[str, typer.Option(help="address to bind; anything but loopback exposes an API without auth")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option(min=0, max=65535, help="port (0: any free port)")] = 8080,
    audit: Annotated[
        str, typer.Option(help="audit sink: file:PATH, s3://bucket/prefix (local S3: AWS_ENDPOINT_URL) or stdout")
    ] = "file:.local/audit/audit.jsonl",
    store_text: Annotated[bool, typer.Option(help="keep PII-redacted input text in audit records")] = False,
    workers: Annotated[int, typer.Option(min=1, max=64, help="processes sharing the port (one per core)")] = 1,
) -> None:
    """Serve a model over HTTP with the predict Lambda's own handler (API Gateway events, audit included)."""
    from cnai.local.server import LOOPBACK, run

    if model is not None and model_dir is None:
        _fail(CnaiError("--model (a registered model) needs the model registry, not set up yet; use --model-dir"))
    if model_dir is None:
        _fail(CnaiError("give --model-dir DIR (an artifact directory, a model.tar.gz or an s3:// URI)"))
    if host not in LOOPBACK:
        console.print(f"[yellow]warning:[/yellow] binding {host}: the local API has no authentication")

    def ready(server: object) -> None:
        url = getattr(server, "url", "")
        typer.echo(f"serving on {url} (POST {url}/v1/models/<name>/predict, GET {url}/v1/models); audit: {audit}")

    try:
        run(
            str(model_dir),
            host=host,
            port=port,
            audit_sink=audit,
            model_name=name,
            store_text=store_text,
            ready=ready,
            workers=workers,
        )
    except CnaiError as exc:
        _fail(exc)


@app.command()
def audit(
    source: Annotated[str, typer.Argument(help="file:PATH, a path, or s3://bucket/prefix (S3 sink, Firehose output)")],
    caller: Annotated[str | None, typer.Option(help="only this caller (IAM principal ARN, API key id, ...)")] = None,
    since: Annotated[str | None, typer.Option(help="from this ISO 8601 time, inclusive")] = None,
    until: Annotated[str | None, typer.Option(help="to this ISO 8601 time, exclusive")] = None,
    verify: Annotated[
        bool, typer.Option(help="check the hash chains; exit 1 if a record was changed or removed")
    ] = False,
) -> None:
    """Query audit records by caller and time (JSON lines out); optionally verify their hash chains."""
    from cnai.audit.trail import AuditDamageError, read_records, verify_chain

    try:
        records = list(read_records(source, caller=caller, start=since, end=until))
        for record in records:
            typer.echo(record.model_dump_json())
        problems = verify_chain(read_records(source)) if verify else []  # the whole chain: a filter opens gaps
    except AuditDamageError as exc:  # a damaged store is a failed verification, not a crash
        console.print(f"[red]damaged:[/red] {exc}", highlight=False)
        raise typer.Exit(1) from None
    except (CnaiError, OSError) as exc:
        _fail(exc)
    if verify:
        for problem in problems:
            console.print(f"[red]chain:[/red] {problem}", highlight=False)
        if problems:
            raise typer.Exit(1)
        console.print(f"chain intact ({len(records)} records shown)", style="green", highlight=False)


def _register_ingestion() -> None:
    # `cnai ingest FILE --stream NAME` and `cnai dataset build`: cnai/ingest/cli.py
    from cnai.ingest.cli import register

    register(app)


_register_ingestion()

if __name__ == "__main__":  # pragma: no cover
    app()
