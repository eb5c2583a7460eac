"""`cnai models list | show`: the model registry from the command line (registered in cnai/cli.py);
`approve | reject | rollback | promote` act and are audited, so they live in cnai/deploy/cli.py.
The group prefix is the deployment's (CNAI_MODEL_PACKAGE_GROUP_PREFIX, default `cnai`);
`AWS_ENDPOINT_URL` points boto3 at the local platform.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Annotated, Any

import typer
from botocore.exceptions import ClientError
from rich.console import Console
from rich.table import Table

from cnai.errors import CnaiError
from cnai.registry.packages import Registry

console = Console()
models_app = typer.Typer(no_args_is_help=True, help="Registered model versions: metrics, lineage, approval.")
PrefixOption = Annotated[
    str | None, typer.Option("--prefix", help="group prefix (default: $CNAI_MODEL_PACKAGE_GROUP_PREFIX or cnai)")
]


def _fail(exc: Exception) -> None:
    console.print(f"[red]error:[/red] {exc}", highlight=False)
    raise typer.Exit(2)


def _as_json(version: Any) -> str:
    return json.dumps(asdict(version), indent=2, default=str)


@models_app.command("list")
def list_models(
    prefix: PrefixOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Every model (group under the prefix) and its versions, newest first."""
    try:
        registry = Registry.from_env(prefix)
        found = {model: registry.versions(model) for model in registry.models()}
    except (CnaiError, ClientError) as exc:
        _fail(exc)
    if as_json:
        typer.echo(json.dumps({m: [asdict(v) for v in vs] for m, vs in found.items()}, indent=2, default=str))
        return
    table = Table(title=f"models ({registry.prefix}-*)")
    for column in ("model", "version", "approval", "accuracy", "macro_f1", "created", "training job"):
        table.add_column(column)
    for model, versions in found.items():
        if not versions:
            table.add_row(model, "-", "(no versions)", "", "", "", "")
        for v in versions:
            created = v.created.strftime("%Y-%m-%d %H:%M") if v.created else ""
            job = v.lineage.get("training_job_arn", "").rsplit("/", 1)[-1]
            acc, f1 = (f"{v.metrics[k]:.4f}" if k in v.metrics else "" for k in ("accuracy", "macro_f1"))
            table.add_row(model, str(v.version), v.approval, acc, f1, created, job)
    console.print(table)


@models_app.command("show")
def show(
    name: Annotated[str, typer.Argument(help="model name")],
    version: Annotated[int | None, typer.Argument(help="version (default: the latest)")] = None,
    prefix: PrefixOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """One version: approval, artifact, evaluation report, metrics and lineage."""
    try:
        v = Registry.from_env(prefix).version(name, version)
    except (CnaiError, ClientError) as exc:
        _fail(exc)
    if as_json:
        typer.echo(_as_json(v))
        return
    table = Table(title=f"{v.group} version {v.version}", show_header=False)
    table.add_column("")
    table.add_column("")
    rows = [("approval", v.approval), ("package", v.arn), ("artifact", v.model_data), ("image", v.image),
            ("evaluation report", v.report_uri), ("created", str(v.created))]  # fmt: skip
    for key, value in rows:
        table.add_row(key, value)
    for key, number in v.metrics.items():
        table.add_row(f"metric {key}", f"{number:.4f}")
    for key, value in v.lineage.items():
        table.add_row(key, value)
    console.print(table)


def register(app: typer.Typer) -> None:
    app.add_typer(models_app, name="models")
