"""`cnai ingest`: the command-line side of ingestion (registered in cnai/cli.py).

Both talk to AWS through boto3's usual configuration; `AWS_ENDPOINT_URL` points them at the local
platform (moto server) instead.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from cnai.errors import CnaiError

console = Console(stderr=True)


def _fail(exc: Exception) -> None:
    console.print(f"[red]error:[/red] {exc}")
    raise typer.Exit(2)


def ingest(
    file: Annotated[Path, typer.Argument(help="records to send: .csv, .jsonl/.ndjson or .parquet")],
    stream: Annotated[str, typer.Option("--stream", help="Kinesis stream name or ARN")],
    fmt: Annotated[str | None, typer.Option("--format", help="csv | jsonl | parquet (default: from the name)")] = None,
    tenant: Annotated[str, typer.Option(help="tenant for rows without one")] = "default",
    source: Annotated[str | None, typer.Option(help="source for rows without one (default: file name)")] = None,
    text_column: Annotated[str, typer.Option(help="column holding the text")] = "text",
    label_column: Annotated[str, typer.Option(help="column holding the label")] = "label",
    multiline: Annotated[
        bool, typer.Option(help="CSV: accept quoted fields holding line breaks (refused by default: unbalanced quote)")
    ] = False,
    spread: Annotated[int, typer.Option(min=1, max=1024, help="partition-key buckets per tenant")] = 16,
    max_attempts: Annotated[int, typer.Option(min=1, max=20, help="PutRecords tries per entry")] = 6,
    strict: Annotated[bool, typer.Option(help="exit 3 when any row was rejected")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print the summary as JSON on stdout")] = False,
) -> None:
    """Validate FILE's rows with the record contract and put them on a Kinesis stream.

    Batches PutRecords within Kinesis limits (500 records, 5 MiB per call, 1 MiB per record), retries only
    the failed entries with backoff, and prints what was sent, retried and rejected (and why).
    Exit status: 0 sent, 1 some entries could not be sent, 2 bad usage or file, 3 rows rejected (--strict).
    A CSV file is checked whole before the first record is sent: a broken one sends nothing.
    """
    import boto3

    from cnai.ingest.files import Mapping, count_rows, detect_format, read_rows
    from cnai.ingest.producer import Producer, SendSummary, entries_from_rows

    try:
        fmt = fmt or detect_format(file)
        total = count_rows(file, fmt, multiline=multiline) if file.is_file() else None
        rows = read_rows(file, Mapping(text_column, label_column, tenant, source, multiline), fmt)
        summary = SendSummary()
        producer = Producer(boto3.client("kinesis"), stream, max_attempts=max_attempts)
        columns = (TextColumn("sending"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
        with Progress(*columns, console=console, transient=as_json) as progress:
            task = progress.add_task("send", total=total)
            producer.send(
                entries_from_rows(rows, summary, spread),
                summary,
                on_batch=lambda _n: progress.update(
                    task, completed=summary.sent + summary.failed + sum(summary.rejected.values())
                ),
            )
            progress.update(task, completed=summary.sent + summary.failed + sum(summary.rejected.values()))
    except CnaiError as exc:
        _fail(exc)
    except ValueError as exc:  # a record over the Kinesis limit after validation
        _fail(exc)
    except OSError as exc:  # unreadable file (permissions, a folder, a vanished mount)
        _fail(CnaiError(f"{file}: {exc.strerror or exc}"))
    result = summary.as_dict()
    if as_json:
        typer.echo(json.dumps(result, indent=2))
    else:
        table = Table(title=f"cnai ingest {file.name} -> {stream}")
        table.add_column("")
        table.add_column("records", justify="right")
        for label, value in (("sent", "sent"), ("retried (entries)", "retried"), ("failed", "failed")):
            table.add_row(label, str(result[value]))
        table.add_row("rejected", str(result["rejected"]))
        for item in result["rejected_reasons"][:10]:
            table.add_row(f"  {item['reason']} (first: {item['first']})", str(item["count"]))
        for code, count in result["errors"].items():
            table.add_row(f"  not sent: {code}", str(count))
        table.add_row("PutRecords calls", str(result["calls"]))
        table.add_row("shards used", str(len(result["shards"])))
        console.print(table)
    if summary.failed:
        raise typer.Exit(1)
    if strict and summary.rejected:
        raise typer.Exit(3)


def register(app: typer.Typer) -> None:
    """Add `ingest` to the main CLI."""
    app.command("ingest")(ingest)
