"""The `cnai` command line. Each command parses its arguments and calls the one implementation in cnai/."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from cnai.errors import CnaiError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="cnai: small, fast, audited text models.")
console = Console()


def _fail(exc: Exception) -> None:
    console.print(f"[red]error:[/red] {exc}")
    raise typer.Exit(2)


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


def _register_subpackages() -> None:
    # `cnai predict | info`: cnai/serving/cli.py; `cnai serve`: cnai/local/cli.py; `cnai ingest FILE --stream
    # NAME` and `cnai dataset build`: cnai/ingest/cli.py; `cnai train`: cnai/pipeline/cli.py; `cnai models`:
    # cnai/registry/cli.py
    from cnai.cost.cli import register as register_cost
    from cnai.data.cli import register as register_data
    from cnai.deploy.cli import register as register_deploy
    from cnai.generate.cli import register as register_generate
    from cnai.ingest.cli import register as register_ingestion
    from cnai.local.cli import register as register_local
    from cnai.monitoring.cli import register as register_monitoring
    from cnai.pipeline.cli import register as register_training
    from cnai.registry.cli import register as register_registry
    from cnai.serving.cli import register as register_serving

    register_serving(app)
    register_local(app)
    register_ingestion(app)
    register_data(app)
    register_training(app)
    register_registry(app)
    register_deploy(app)  # `cnai models approve | reject | rollback | promote`: cnai/deploy/cli.py
    register_monitoring(app)  # `cnai monitor report | run`: cnai/monitoring/cli.py
    register_generate(app)  # `cnai generate PROMPT`: cnai/generate/cli.py
    register_cost(app)  # `cnai cost`: cnai/cost/cli.py


_register_subpackages()

if __name__ == "__main__":  # pragma: no cover
    app()
