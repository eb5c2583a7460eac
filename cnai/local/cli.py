"""`cnai serve`: the predict API (cnai.serving.api) on uvicorn, from the command line (registered in cnai/cli.py)."""

from __future__ import annotations

import os
from typing import Annotated

import typer
from rich.console import Console

from cnai.errors import CnaiError
from cnai.registry.packages import GROUP_PREFIX_VARIABLE
from cnai.settings import ModelSource, ServingLimits, variable

console = Console()


def _fail(exc: Exception) -> None:
    console.print(f"[red]error:[/red] {exc}")
    raise typer.Exit(2)


def serve(
    model_dir: Annotated[
        str | None, typer.Option(help="model artifact: a directory, a model.tar.gz, or s3://bucket/prefix/")
    ] = None,
    model: Annotated[
        str | None, typer.Option(help="registered model: serve its approved registry version (or --version)")
    ] = None,
    version: Annotated[
        int | None, typer.Option(min=1, help="with --model: this registry version, approved or not")
    ] = None,
    follow: Annotated[
        str | None,
        typer.Option(
            help="FUNCTION[:ALIAS] (alias default: live): serve what the predict function's alias routes to"
            " (the model each version pins, split by the canary weights) and follow it as it moves"
        ),
    ] = None,
    follow_interval: Annotated[
        float, typer.Option(min=0.1, help="with --follow: seconds between two looks at the alias")
    ] = 5.0,
    prefix: Annotated[
        str | None, typer.Option(help=f"with --model: registry group prefix (default: ${GROUP_PREFIX_VARIABLE})")
    ] = None,
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
    package_version: Annotated[
        str | None,
        typer.Option(
            envvar=variable(ModelSource, "model_package_version"), help="the registry's package version it serves"
        ),
    ] = None,
    cache_size: Annotated[
        int, typer.Option(envvar=variable(ServingLimits, "cache_size"), min=0, help="predictions cached (0: off)")
    ] = 1024,
    threads: Annotated[
        int, typer.Option(envvar=variable(ServingLimits, "threads"), min=1, max=64, help="onnxruntime threads")
    ] = 1,
    max_inputs: Annotated[
        int, typer.Option(envvar=variable(ServingLimits, "max_inputs"), min=1, max=1024, help="texts per call")
    ] = 64,
    max_input_chars: Annotated[
        int,
        typer.Option(envvar=variable(ServingLimits, "max_input_chars"), min=1, max=100_000, help="characters per text"),
    ] = 2000,
    max_body: Annotated[
        int, typer.Option(min=1, help="request body limit in bytes (413 before reading more; Lambda's is 6 MB)")
    ] = 6 * 1024 * 1024,
    body_timeout: Annotated[
        float, typer.Option(min=0.1, help="seconds a request's body may take to arrive (then 408, disconnected)")
    ] = 10.0,
    generator: Annotated[
        str | None,
        typer.Option(help="also serve POST /v1/models/<name>/generate with this generator (e.g. onnx:bundled)"),
    ] = None,
) -> None:
    """Serve a model over HTTP with the predict Lambda's own API (API Gateway events, audit included).

    One onnxruntime thread per worker by default: each worker answers one request at a time, so N workers x
    1 thread uses N cores without the oversubscription of N x N thread pools.
    """
    # The one observability module reads these at import: quiet defaults for a local server, unless set.
    os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "cnai-serve")
    os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
    from cnai.local.server import LOOPBACK, Listening, run

    given = [flag for flag, value in (("--model", model), ("--model-dir", model_dir), ("--follow", follow)) if value]
    if len(given) > 1:
        _fail(CnaiError(f"give one of --model, --model-dir or --follow, not {' and '.join(given)}"))
    if follow is not None:
        _follow(follow, follow_interval, name, host, port, audit, store_text, workers, cache_size, threads,
                max_inputs, max_input_chars, max_body, body_timeout)  # fmt: skip
        return
    if model is not None:
        try:
            model_dir, package_version = _registered(model, version, prefix)
        except CnaiError as exc:
            _fail(exc)
        name = name or model
    if model_dir is None and generator is None:
        _fail(
            CnaiError(
                "give --model NAME (registry) or --model-dir DIR (an artifact directory, a model.tar.gz or s3://)"
            )
        )
    if host not in LOOPBACK:
        console.print(f"[yellow]warning:[/yellow] binding {host}: the local API has no authentication")

    def ready(listening: Listening) -> None:
        url = listening.url
        typer.echo(f"serving on {url} (POST {url}/v1/models/<name>/predict, GET {url}/v1/models); audit: {audit}")

    try:
        run(
            str(model_dir or ""),
            host=host,
            port=port,
            audit_sink=audit,
            model_name=name,
            store_text=store_text,
            ready=ready,
            workers=workers,
            model_package_version=package_version or None,
            cache_size=cache_size,
            threads=threads,
            max_inputs=max_inputs,
            max_input_chars=max_input_chars,
            max_body=max_body,
            body_timeout_s=body_timeout,
            generator_uri=generator or "",
        )
    except CnaiError as exc:
        _fail(exc)


def _follow(
    follow: str, interval_s: float, name: str | None, host: str, port: int, audit: str, store_text: bool,
    workers: int, cache_size: int, threads: int, max_inputs: int, max_input_chars: int, max_body: int,
    body_timeout: float,
) -> None:  # fmt: skip
    """`cnai serve --follow`: the model identity comes from each routed version's environment, never from flags."""
    from cnai.local.alias import AliasRef, follow_forever
    from cnai.local.server import LOOPBACK, Listening
    from cnai.serving.api import ServingOptions

    if host not in LOOPBACK:
        console.print(f"[yellow]warning:[/yellow] binding {host}: the local API has no authentication")
    options = ServingOptions(
        model_name=name or "", audit_sink=audit, audit_store_text=store_text, cache_size=cache_size, threads=threads,
        max_inputs=max_inputs, max_input_chars=max_input_chars,
    )  # fmt: skip

    def ready(listening: Listening) -> None:
        url = listening.url
        typer.echo(f"serving on {url} (POST {url}/v1/models/<name>/predict, GET {url}/v1/models); audit: {audit}")

    try:
        follow_forever(
            AliasRef.parse(follow), options, interval_s=interval_s, host=host, port=port, workers=workers,
            ready=ready, max_body=max_body, body_timeout_s=body_timeout,
        )  # fmt: skip
    except CnaiError as exc:
        _fail(exc)


def _registered(model: str, version: int | None, prefix: str | None) -> tuple[str, str]:
    """(model.tar.gz URI, registry version) of the approved version of `model`, or of `version` when given."""
    from cnai.registry.packages import Registry

    registry = Registry.from_env(prefix)
    found = registry.version(model, version) if version is not None else registry.approved(model)
    if found is None:
        raise CnaiError(f"{registry.group(model)}: no Approved version to serve (approve one, or pass --version)")
    if not found.model_data:
        raise CnaiError(f"{found.arn}: the package names no model artifact")
    return found.model_data, str(found.version)


def register(app: typer.Typer) -> None:
    """Add `serve` to the main CLI."""
    app.command("serve")(serve)
