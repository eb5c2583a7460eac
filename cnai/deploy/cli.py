"""`cnai models approve | reject | rollback | promote`: act on the registry and the predict alias (or, for
`rollback --endpoint`, the SageMaker Serverless endpoint the model is routed to), and write
each action (who, what, when, why) to the audit trail. Registered on the `cnai models` group of
cnai/registry/cli.py (the registry's read-only commands live there; these live here because they reach the
alias and the audit trail, which sit beside or above the registry in the import layers).
`cnai generate register` (a generator artifact into the registry, cnai.deploy.generator) is audited the same
way and added to the `cnai generate` group of cnai/generate/cli.py for the same reason.

Who: the AWS principal (STS GetCallerIdentity), else the local user. Where the record goes: --audit, else
$CNAI_AUDIT_SINK, else file:~/.cnai/audit/models.jsonl. A failed action is recorded too (status 500, error).
"""

from __future__ import annotations

import getpass
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from botocore.exceptions import BotoCoreError, ClientError
from rich.console import Console

from cnai.audit.trail import Action, Auditor, AuditRecord, Caller, new_request_id, now_iso, sink_from_uri
from cnai.deploy import canary, endpoint
from cnai.errors import CnaiError
from cnai.generate.cli import generate_app
from cnai.registry.cli import PrefixOption, models_app
from cnai.settings import ArtifactStore, AuditSink, PredictFunction, ServingImage, variable

ARTIFACT_BUCKET = variable(ArtifactStore, "artifact_bucket")
SERVING_IMAGE = variable(ServingImage, "serving_image")
AUDIT_SINK = variable(AuditSink, "audit_sink")
PREDICT_FUNCTION = variable(PredictFunction, "function_name")

console = Console()
DEFAULT_SINK = "file:~/.cnai/audit/models.jsonl"
AuditOption = Annotated[
    str | None, typer.Option("--audit", help=f"audit sink (default: ${AUDIT_SINK} or {DEFAULT_SINK})")
]
FunctionOption = Annotated[
    str | None, typer.Option("--function", help=f"predict function name or ARN (default: ${PREDICT_FUNCTION})")
]
AliasOption = Annotated[str, typer.Option("--alias", help="the alias that serves")]
EndpointOption = Annotated[
    str | None,
    typer.Option("--endpoint", help="the SageMaker Serverless endpoint the model is routed to: roll back its "
                 "configuration (to one the deploy workflow kept) instead of the alias"),
]  # fmt: skip
ReasonOption = Annotated[str, typer.Option("--reason", help="why (kept in the audit record and the registry)")]


def who(sts: Any = None) -> Caller:
    """The AWS principal acting, else the local user (no credentials, no endpoint)."""
    try:
        if sts is None:
            import boto3

            sts = boto3.client("sts")
        identity = sts.get_caller_identity()
        return Caller(kind="iam", id=str(identity["Arn"]), account_id=str(identity.get("Account", "")) or None)
    except (BotoCoreError, ClientError, KeyError):
        return Caller(kind="local", id=f"local:{getpass.getuser()}")


def audited(
    verb: str,
    name: str,
    reason: str,
    audit: str | None,
    act: Callable[[], dict[str, Any]],
    caller: Caller | None = None,
    command: str = "cnai models",
) -> dict[str, Any]:
    """Run `act`, then write the action's audit record (done or failed); the action's error is re-raised after
    its record is written. Raises AuditUnavailableError when the sink refuses the record."""
    started = time.perf_counter()
    result: dict[str, Any] = {}
    error: Exception | None = None
    try:
        result = act()
    except (CnaiError, ClientError, BotoCoreError) as exc:
        error = exc
    detail = {k: str(v) for k, v in result.items() if v is not None and not isinstance(v, dict | list)}
    record = AuditRecord(
        request_id=new_request_id(),
        time=now_iso(),
        caller=caller or who(),
        method="CLI",
        path=f"{command} {verb} {name}",
        model=name,
        package_version=str(result["package_version"]) if result.get("package_version") is not None else None,
        status=500 if error else 200,
        error=str(error)[:1000] if error else None,
        latency_ms=round((time.perf_counter() - started) * 1000, 3),
        action=Action(verb=verb, target=name, reason=reason, detail=detail),
    )
    Auditor(sink_from_uri(audit or os.environ.get(AUDIT_SINK) or DEFAULT_SINK)).write(record)
    if error is not None:
        raise error
    return result


def _fail(exc: Exception) -> None:
    console.print(f"[red]error:[/red] {exc}", highlight=False)
    raise typer.Exit(2)


def _target(name: str, function: str | None, alias: str) -> canary.Target:
    function = function or os.environ.get(PREDICT_FUNCTION)
    if not function:
        raise CnaiError(f"--function: the predict function's name or ARN is required (or set {PREDICT_FUNCTION})")
    return canary.Target(function=function, model=name, alias=alias)


def _run(
    verb: str,
    name: str,
    reason: str,
    audit: str | None,
    act: Callable[[], dict[str, Any]],
    command: str = "cnai models",
) -> None:
    try:
        result = audited(verb, name, reason, audit, act, command=command)
    except (CnaiError, ClientError, BotoCoreError) as exc:
        _fail(exc)
    console.print(f"{verb} {name}: " + ", ".join(f"{k}={v}" for k, v in result.items() if v is not None),
                  highlight=False)  # fmt: skip


def _approval(name: str, version: int, approval: str, reason: str, prefix: str | None) -> dict[str, Any]:
    from cnai.registry.packages import Registry

    registry = Registry.from_env(prefix)
    changed = registry.set_approval(name, version, approval, reason)  # type: ignore[arg-type]
    return {"package_version": changed.version, "approval": changed.approval, "package": changed.arn}


@models_app.command("approve")
def approve(
    name: Annotated[str, typer.Argument(help="model name")],
    version: Annotated[int, typer.Argument(help="version to approve")],
    reason: ReasonOption = "",
    prefix: PrefixOption = None,
    audit: AuditOption = None,
) -> None:
    """Approve a version: the approval rule starts the deploy workflow (canary, then 100% or rollback)."""
    _run("approve", name, reason, audit, lambda: _approval(name, version, "Approved", reason, prefix))


@models_app.command("reject")
def reject(
    name: Annotated[str, typer.Argument(help="model name")],
    version: Annotated[int, typer.Argument(help="version to reject")],
    reason: ReasonOption = "",
    prefix: PrefixOption = None,
    audit: AuditOption = None,
) -> None:
    """Reject a version (nothing is deployed; a serving version keeps serving until rolled back)."""
    _run("reject", name, reason, audit, lambda: _approval(name, version, "Rejected", reason, prefix))


@models_app.command("rollback")
def rollback(
    name: Annotated[str, typer.Argument(help="model name")],
    to: Annotated[int, typer.Option("--to", help="registry version to serve again (released before)")],
    reason: ReasonOption = "",
    function: FunctionOption = None,
    alias: AliasOption = "live",
    endpoint_name: EndpointOption = None,
    prefix: PrefixOption = None,
    audit: AuditOption = None,
) -> None:
    """All traffic of the alias back to the function version that served registry version --to (with --endpoint:
    the endpoint back to the kept configuration of that version; it is Updating when the command returns)."""

    def act() -> dict[str, Any]:
        clients = canary.Clients.default(prefix)
        if endpoint_name:
            before = clients.registry.sm.describe_endpoint(EndpointName=endpoint_name)["EndpointConfigName"]
            config = endpoint.rollback_to(clients, endpoint_name, to, model=name)
            return {"package_version": to, "endpoint_config": config, "previous_endpoint_config": before}
        target = _target(name, function, alias)
        before = canary.get_alias(clients, target)
        version = canary.rollback_to(clients, target, to)
        return {"package_version": to, "function_version": version,
                "previous_function_version": (before or {}).get("FunctionVersion")}  # fmt: skip

    _run("rollback", name, reason, audit, act)


@models_app.command("promote")
def promote(
    name: Annotated[str, typer.Argument(help="model name")],
    version: Annotated[
        int | None, typer.Argument(help="registry version (default: the running canary, else the approved version)")
    ] = None,
    reason: ReasonOption = "",
    function: FunctionOption = None,
    alias: AliasOption = "live",
    prefix: PrefixOption = None,
    audit: AuditOption = None,
) -> None:
    """100% now: a running canary's version, or a version released without a canary (also how new code from a
    `cdk deploy` reaches the alias with the approved model: docs/deploy.md)."""

    def act() -> dict[str, Any]:
        target = _target(name, function, alias)
        clients = canary.Clients.default(prefix)
        result = canary.promote_now(clients, target, version)
        return {k: result.get(k) for k in ("action", "package_version", "version", "previous_version")}

    _run("promote", name, reason, audit, act)


@generate_app.command("register")
def register_generator(
    path: Annotated[
        Path, typer.Argument(help="generator artifact folder (models/export_generator.py) or its model.tar.gz")
    ],
    bucket: Annotated[
        str | None,
        typer.Option("--bucket", envvar=ARTIFACT_BUCKET, help="S3 bucket for the tar and its report"),
    ] = None,
    key_prefix: Annotated[
        str, typer.Option("--key-prefix", help="key prefix: <prefix>/<model>/<card version>/model.tar.gz")
    ] = "generators",
    image: Annotated[
        str | None,
        typer.Option("--image", envvar=SERVING_IMAGE, help="serving image (the Register function's setting)"),
    ] = None,
    model: Annotated[str | None, typer.Option("--model", help="registry model name (default: the card's name)")] = None,
    approve: Annotated[
        bool, typer.Option("--approve", help="register as Approved (else PendingManualApproval)")
    ] = False,
    again: Annotated[
        bool, typer.Option("--again", help="register once more even if this card version is registered already")
    ] = False,
    reason: ReasonOption = "",
    prefix: PrefixOption = None,
    audit: AuditOption = None,
) -> None:
    """Upload a generator artifact (verified against its card) and register it as a TEXT_GENERATION version
    with its perplexity, parity and lineage; audited. The same card version twice answers the first version."""
    from cnai.deploy.generator import peek_name
    from cnai.deploy.generator import register_generator as register

    if not bucket or not image:
        missing = [n for n, v in ((f"--bucket (or {ARTIFACT_BUCKET})", bucket), (f"--image (or {SERVING_IMAGE};"
                   " `make register-generator` looks the image up as the stacks do)", image)) if not v]  # fmt: skip
        _fail(CnaiError(f"{' and '.join(missing)}: required"))
    assert bucket is not None and image is not None

    def act() -> dict[str, Any]:
        import boto3

        from cnai.registry.packages import Registry

        return register(Registry.from_env(prefix), boto3.client("s3"), path, bucket=bucket, image=image,
                        key_prefix=key_prefix, model=model, approve=approve, again=again,
                        reason=reason)  # fmt: skip

    _run("register", model or peek_name(path), reason, audit, act, command="cnai generate")


def register(app: typer.Typer) -> None:
    """The commands are on `cnai models` and `cnai generate` already (decorated above); importing this module is
    the registration."""
    del app
