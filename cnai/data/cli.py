"""`cnai dataset build`: versioned training datasets from the curated lake (registered in cnai/cli.py).

Talks to AWS through boto3's usual configuration; `AWS_ENDPOINT_URL` points it at the local platform.
"""

from __future__ import annotations

import json
from datetime import date
from typing import Annotated

import typer
from rich.console import Console

from cnai.errors import CnaiError

console = Console(stderr=True)
dataset_app = typer.Typer(no_args_is_help=True, help="Versioned training datasets from the curated data lake.")


def _fail(exc: Exception) -> None:
    console.print(f"[red]error:[/red] {exc}")
    raise typer.Exit(2)


@dataset_app.command("build")
def dataset_build(
    start: Annotated[str, typer.Option(help="first day, YYYY-MM-DD (UTC)")],
    end: Annotated[str, typer.Option(help="last day, YYYY-MM-DD (UTC, inclusive)")],
    lake: Annotated[str, typer.Option(help="s3://BUCKET or a local folder holding curated/")],
    name: Annotated[str, typer.Option(help="dataset name")] = "default",
    test_fraction: Annotated[float, typer.Option(min=0.01, max=0.99, help="share of ids in the test split")] = 0.2,
    tenant: Annotated[str | None, typer.Option(help="only this tenant's records")] = None,
) -> None:
    """Freeze the curated records of a date range into a versioned train/test dataset with a manifest."""
    from cnai.data.snapshot import build_snapshot, store_for

    try:
        first, last = date.fromisoformat(start), date.fromisoformat(end)
    except ValueError as exc:
        _fail(CnaiError(f"--start/--end: {exc}"))
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        snap = build_snapshot(
            store_for(lake), start=first, end=last, name=name, test_fraction=test_fraction, tenant=tenant
        )
    except CnaiError as exc:
        _fail(exc)
    except ClientError as exc:  # access denied, throttled after botocore's retries ...: one line, not a trace
        error = exc.response.get("Error", {})
        _fail(CnaiError(f"{lake}: {error.get('Code', 'error')}: {error.get('Message', exc)}"))
    except BotoCoreError as exc:  # no credentials, endpoint unreachable
        _fail(CnaiError(f"{lake}: {exc}"))
    except OSError as exc:  # a local lake folder that cannot be read or written
        _fail(CnaiError(f"{exc.filename or lake}: {exc.strerror or exc}"))
    files = snap.manifest["files"]
    typer.echo(
        json.dumps(
            {
                "version": snap.version,
                "manifest": f"{lake.rstrip('/')}/{snap.manifest_key}",
                "manifest_sha256": snap.manifest["manifest_sha256"],
                "created": snap.created,
                "train_rows": files["train"]["rows"],
                "test_rows": files["test"]["rows"],
                "labels": snap.manifest["profile"]["labels"]["count"],
            },
            indent=2,
        )
    )


def register(app: typer.Typer) -> None:
    """Add the `dataset` group to the main CLI."""
    app.add_typer(dataset_app, name="dataset")
