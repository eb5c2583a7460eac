"""The deploy workflow's steps for a model served by the predict Lambda: release, check, promote, rollback.

Who owns what (docs/deploy.md):
- CloudFormation (`cdk deploy`) owns the function's code and its base configuration ($LATEST), and creates the
  `live` alias once, on a bootstrap version whose properties never change, so a later `cdk deploy` finds no
  change to apply to the alias and leaves its target alone.
- This workflow owns every published version and the alias's target and weights. The model pointer (artifact
  URI, S3 object version, registry package version) lives in each published version's environment: a version
  is immutable, so what serves is exactly what was approved, whatever `cdk deploy` later writes into $LATEST.

Release: resolve the package (ModelDataUrl, registry version, the tar's S3 object version), write the pointer
into $LATEST over its current environment (the variable names come from cnai.settings.ModelSource, the model
the predict function reads), wait until the update is applied, publish a version, create the canary's alarms
and give the new version `percent`% of the alias (AdditionalVersionWeights). Check: any of those alarms in
ALARM, and whether the canary time is over. Promote: 100% to the new version. Rollback: 100% back to the
previous version and the package marked Rejected with the reason (a Rejected event starts nothing, so the
mark cannot loop back into a deploy).

What the canary alarms judge: errors and p99 duration of the new version alone (Lambda's `ExecutedVersion`
dimension, which it adds for aliases with weighted routing); abstention rate and audit failures are emitted
by Powertools per service, so they judge the alias as a whole while the canary runs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import WaiterError

from cnai.errors import CnaiError
from cnai.registry.packages import ModelVersion, Registry
from cnai.settings import ModelSource, environment_for, variable

Clock = Callable[[], float]
PERIOD_S = 60


class DeployError(CnaiError):
    """A deploy step cannot proceed; the message names the package, function or alias and why."""


# What a step needs of the Release step's result (the state machine passes it as `release.result`).
ALIAS_RELEASE = ("function", "model", "alias", "version", "package_arn", "package_version")


def need(state: dict[str, Any], fields: tuple[str, ...], step: str) -> None:
    """Refuse a state without the fields `step` reads, naming them (a state written by hand, or an execution
    redriven from a changed definition), before any call: a bare KeyError would name one key and no step."""
    missing = [f for f in fields if state.get(f) in (None, "")]
    if missing:
        raise DeployError(
            f"step {step}: release.result has no {', '.join(missing)} (the Release step's result is expected; "
            f"got keys: {', '.join(sorted(state)) or 'none'})"
        )


@dataclass(frozen=True)
class Target:
    """The predict function, its alias, and the model (registry group) it serves."""

    function: str
    model: str
    alias: str = "live"


@dataclass(frozen=True)
class Policy:
    """How a release is watched: share and duration of the canary, alarm thresholds, who is told."""

    percent: int = 10
    canary_s: int = 600
    interval_s: int = 60
    p99_ms: float = 3000.0
    max_errors: float = 0.0
    max_abstention_pct: float = 20.0
    namespace: str = "cnai"
    service: str = "predict"
    topic_arn: str | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.percent <= 99:
            raise DeployError(f"canary percent {self.percent}: must be 1 to 99 (100 is the promotion)")
        if self.canary_s < 0 or self.interval_s < 1:
            raise DeployError(f"canary_s {self.canary_s} / interval_s {self.interval_s}: need >= 0 / >= 1")


@dataclass
class Clients:
    """The boto3 clients the steps use (one place: the handler and the CLI build them)."""

    lambda_: Any
    cloudwatch: Any
    s3: Any
    registry: Registry
    runtime: Any = None  # sagemaker-runtime: the endpoint path's health check (cnai.deploy.endpoint)

    @classmethod
    def default(cls, prefix: str | None = None) -> Clients:
        import boto3

        return cls(
            boto3.client("lambda"), boto3.client("cloudwatch"), boto3.client("s3"), Registry.from_env(prefix),
            boto3.client("sagemaker-runtime"),
        )  # fmt: skip


# ---------------------------------------------------------------------------------------------- helpers


def pointer(model: str, version: ModelVersion, object_version: str | None) -> dict[str, str]:
    """The environment variables that pin `version` (names from ModelSource, the predict function's model)."""
    return environment_for(
        ModelSource,
        model_name=model,
        model_uri=version.model_data,
        model_version_id=object_version,
        model_package_version=str(version.version),
    )


def split_s3(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://") or "/" not in uri[5:]:
        raise DeployError(f"ModelDataUrl {uri!r}: expected s3://bucket/key")
    bucket, _, key = uri[5:].partition("/")
    return bucket, key


def object_version(clients: Clients, version: ModelVersion) -> str | None:
    """The tar's S3 object version: the one QualityGate judged and Register recorded (`artifact_object_version`;
    `artifact_version` is the model card's content version, not an S3 one), else the current one (None on an
    unversioned bucket: the pointer is then the key alone, and docs/deploy.md says to version the bucket)."""
    recorded = version.lineage.get("artifact_object_version")
    if recorded:
        return recorded
    bucket, key = split_s3(version.model_data)
    try:
        head = clients.s3.head_object(Bucket=bucket, Key=key)
    except clients.s3.exceptions.ClientError as exc:
        raise DeployError(f"{version.arn}: its artifact {version.model_data} cannot be read ({exc})") from None
    found = head.get("VersionId")
    return None if found in (None, "null") else str(found)


def get_alias(clients: Clients, target: Target) -> dict[str, Any] | None:
    try:
        return dict(clients.lambda_.get_alias(FunctionName=target.function, Name=target.alias))
    except clients.lambda_.exceptions.ResourceNotFoundException:
        return None


def weights(alias: dict[str, Any] | None) -> dict[str, float]:
    return dict(((alias or {}).get("RoutingConfig") or {}).get("AdditionalVersionWeights") or {})


def version_env(clients: Clients, function: str, qualifier: str) -> dict[str, str]:
    config = clients.lambda_.get_function_configuration(FunctionName=function, Qualifier=qualifier)
    return dict((config.get("Environment") or {}).get("Variables") or {})


def wait_updated(clients: Clients, function: str, timeout_s: float = 240.0, sleep: float = 1.0) -> None:
    """Until Lambda has applied the last configuration update: botocore's `function_updated` waiter
    (LastUpdateStatus Successful; Failed stops it at once), polled every `sleep` seconds, not its default 5."""
    waiter = clients.lambda_.get_waiter("function_updated")
    try:
        waiter.wait(FunctionName=function, WaiterConfig={"Delay": sleep, "MaxAttempts": max(1, int(timeout_s / sleep))})
    except WaiterError as exc:
        config = exc.last_response or {}
        status = config.get("LastUpdateStatus", "unknown")
        reason = f" ({config['LastUpdateStatusReason']})" if config.get("LastUpdateStatusReason") else ""
        if status == "Failed":
            raise DeployError(f"{function}: configuration update failed{reason}") from None
        raise DeployError(f"{function}: configuration update still {status} after {timeout_s:.0f}s{reason}") from None


def alarm_names(target: Target, version: str) -> dict[str, str]:
    base = f"{target.function.rsplit(':', 1)[-1]}-{target.alias}-canary-{version}"
    return {kind: f"{base}-{kind}" for kind in ("errors", "p99", "abstentions", "audit-failures")}


def create_alarms(clients: Clients, target: Target, policy: Policy, version: str) -> list[str]:
    """The canary's alarms on `version` (they notify the serving alarm topic when one is given)."""
    names = alarm_names(target, version)
    function = target.function.rsplit(":", 1)[-1]
    lambda_dims = [
        {"Name": "FunctionName", "Value": function},
        {"Name": "Resource", "Value": f"{function}:{target.alias}"},
        {"Name": "ExecutedVersion", "Value": version},
    ]
    service = [{"Name": "service", "Value": policy.service}]
    actions = {"AlarmActions": [policy.topic_arn]} if policy.topic_arn else {}
    common: dict[str, Any] = {"TreatMissingData": "notBreaching", "ComparisonOperator": "GreaterThanThreshold",
                              **actions}  # fmt: skip
    what = f"{function} version {version} (canary on {target.alias})"
    cw = clients.cloudwatch
    cw.put_metric_alarm(
        AlarmName=names["errors"], AlarmDescription=f"{what}: invocation errors",
        Namespace="AWS/Lambda", MetricName="Errors", Dimensions=lambda_dims, Statistic="Sum", Period=PERIOD_S,
        EvaluationPeriods=1, Threshold=policy.max_errors, **common,
    )  # fmt: skip
    cw.put_metric_alarm(
        AlarmName=names["p99"], AlarmDescription=f"{what}: p99 duration above {policy.p99_ms:g} ms",
        Namespace="AWS/Lambda", MetricName="Duration", Dimensions=lambda_dims, ExtendedStatistic="p99",
        Period=PERIOD_S, EvaluationPeriods=3, DatapointsToAlarm=2, Threshold=policy.p99_ms, **common,
    )  # fmt: skip

    def custom(metric_id: str, name: str) -> dict[str, Any]:
        metric = {"Namespace": policy.namespace, "MetricName": name, "Dimensions": service}
        return {"Id": metric_id, "MetricStat": {"Metric": metric, "Period": PERIOD_S, "Stat": "Sum"},
                "ReturnData": False}  # fmt: skip

    cw.put_metric_alarm(
        AlarmName=names["abstentions"],
        AlarmDescription=f"{what}: abstention rate above {policy.max_abstention_pct:g}% (whole alias)",
        Metrics=[custom("abstained", "Abstentions"), custom("inputs", "Inputs"),
                 {"Id": "rate", "Expression": "100 * abstained / inputs", "Label": "abstention %", "ReturnData": True}],
        EvaluationPeriods=2, DatapointsToAlarm=2, Threshold=policy.max_abstention_pct, **common,
    )  # fmt: skip
    cw.put_metric_alarm(
        AlarmName=names["audit-failures"], AlarmDescription=f"{what}: audit records refused (whole alias)",
        Namespace=policy.namespace, MetricName="AuditFailures", Dimensions=service, Statistic="Sum",
        Period=PERIOD_S, EvaluationPeriods=1, Threshold=0, **common,
    )  # fmt: skip
    return list(names.values())


def delete_alarms(clients: Clients, names: list[str]) -> None:
    if names:
        clients.cloudwatch.delete_alarms(AlarmNames=names)


def approved_package(clients: Clients, model: str, package_arn: str) -> ModelVersion:
    """The package behind an approval event, checked again now: the served model's group, still Approved."""
    version = clients.registry.describe(package_arn)
    head = f"{clients.registry.prefix}-"
    group_model = version.group.removeprefix(head) if version.group.startswith(head) else ""
    if group_model != model:
        raise DeployError(
            f"{package_arn}: group {version.group} is not the served model's ({clients.registry.group(model)})"
        )
    if version.approval != "Approved":
        raise DeployError(f"{package_arn}: approval is {version.approval}, not Approved (changed since the event)")
    return version


# ------------------------------------------------------------------------------------------------ steps


def release(
    clients: Clients, target: Target, policy: Policy | None, package_arn: str, *, clock: Clock = time.time
) -> dict[str, Any]:
    """Publish a version pinned to the package and start its canary (`policy` None: straight to 100%).

    Answers the state the later steps read: action `canary` (watch it), `promoted` (no canary: first release
    on a new alias, or policy None), `none` (the alias already serves this package version: a repeated event).
    """
    version = approved_package(clients, target.model, package_arn)
    pinned = pointer(target.model, version, object_version(clients, version))
    state: dict[str, Any] = {
        "model": target.model, "group": version.group, "package_arn": version.arn,
        "package_version": version.version, "model_data": version.model_data, "function": target.function,
        "alias": target.alias, "alarms": [], "previous_version": None, "version": None,
    }  # fmt: skip
    alias = get_alias(clients, target)
    current = str(alias["FunctionVersion"]) if alias else None
    if alias and weights(alias):
        running = next(iter(weights(alias)))
        if all(version_env(clients, target.function, running).get(k) == v for k, v in pinned.items()):
            # EventBridge delivers at least once: another execution is already running this package's canary
            return {**state, "action": "none", "version": running, "previous_version": current}
        raise DeployError(
            f"{target.function}:{target.alias}: a canary is already running ({weights(alias)}); wait for it to end "
            "or roll back (cnai models rollback) before releasing another version"
        )
    if current and current != "$LATEST":
        serving = version_env(clients, target.function, current)
        if all(serving.get(k) == v for k, v in pinned.items()):
            return {**state, "action": "none", "version": current, "previous_version": current}
    latest = clients.lambda_.get_function_configuration(FunctionName=target.function)
    env = {**((latest.get("Environment") or {}).get("Variables") or {}), **pinned}
    for name in set(ModelSource.model_fields) - {"model_name", "model_uri"}:  # a variable left from before
        alias_name = variable(ModelSource, name)
        if alias_name not in pinned:
            env.pop(alias_name, None)
    # The environment's CMK is named again: the configuration update must not fall back to Lambda's own key.
    key = {"KMSKeyArn": latest["KMSKeyArn"]} if latest.get("KMSKeyArn") else {}
    clients.lambda_.update_function_configuration(FunctionName=target.function, Environment={"Variables": env}, **key)
    wait_updated(clients, target.function)
    published = clients.lambda_.publish_version(
        FunctionName=target.function, Description=f"{version.group} version {version.version}"[:256]
    )
    new = str(published["Version"])
    state.update(version=new, previous_version=current)
    if alias is None:
        clients.lambda_.create_alias(FunctionName=target.function, Name=target.alias, FunctionVersion=new)
        return {**state, "action": "promoted"}
    if new == current:  # Lambda publishes nothing new when code and configuration are unchanged
        return {**state, "action": "none"}
    if policy is None:
        set_alias(clients, target, new)
        return {**state, "action": "promoted"}
    alarms = create_alarms(clients, target, policy, new)
    clients.lambda_.update_alias(
        FunctionName=target.function, Name=target.alias, FunctionVersion=current,
        RoutingConfig={"AdditionalVersionWeights": {new: policy.percent / 100}},
    )  # fmt: skip
    return {**state, "action": "canary", "alarms": alarms, "percent": policy.percent, "started": clock(),
            "canary_s": policy.canary_s, "interval_s": policy.interval_s}  # fmt: skip


def check(clients: Clients, state: dict[str, Any], *, clock: Clock = time.time) -> dict[str, Any]:
    """The canary's verdict so far: `alarm` (firing alarms, with CloudWatch's reasons), `done` (its time is over),
    `superseded` (someone moved the alias meanwhile, e.g. `cnai models rollback`: the workflow leaves it be).

    An alarm that no longer exists counts as firing: a canary that cannot be watched is not promoted."""
    need(state, ALIAS_RELEASE, "check")
    target = Target(function=state["function"], model=state["model"], alias=state["alias"])
    alias = get_alias(clients, target)
    expected = str(state.get("previous_version")), str(state.get("version"))
    if alias is None or (str(alias["FunctionVersion"]), next(iter(weights(alias)), None)) != expected:
        return {"alarm": False, "firing": [], "done": False, "superseded": True, "elapsed_s": 0}
    names = list(state.get("alarms") or [])
    found = {a["AlarmName"]: a for a in clients.cloudwatch.describe_alarms(AlarmNames=names).get("MetricAlarms", [])}
    firing = [f"{n}: {found[n].get('StateReason', '')}"[:300] for n in names if n in found
              and found[n].get("StateValue") == "ALARM"]  # fmt: skip
    firing += [f"{n}: alarm missing" for n in names if n not in found]
    elapsed = clock() - float(state.get("started", 0))
    return {"alarm": bool(firing), "firing": firing, "done": elapsed >= float(state.get("canary_s", 0)),
            "superseded": False, "elapsed_s": round(elapsed, 1)}  # fmt: skip


def set_alias(clients: Clients, target: Target, version: str) -> None:
    """All traffic of the alias to `version` (the canary weights cleared)."""
    clients.lambda_.update_alias(
        FunctionName=target.function, Name=target.alias, FunctionVersion=version,
        RoutingConfig={"AdditionalVersionWeights": {}},
    )  # fmt: skip


def promote(clients: Clients, state: dict[str, Any]) -> dict[str, Any]:
    """100% to the canary's version; its canary alarms are removed (the stack's alarms watch the alias)."""
    need(state, ALIAS_RELEASE, "promote")
    target = Target(function=state["function"], model=state["model"], alias=state["alias"])
    set_alias(clients, target, str(state["version"]))
    delete_alarms(clients, list(state.get("alarms") or []))
    return {"serving": str(state["version"]), "package_version": state["package_version"]}


def rollback(clients: Clients, state: dict[str, Any], reason: str) -> dict[str, Any]:
    """100% back to the previous version, the package marked Rejected with `reason`, canary alarms removed."""
    need(state, ALIAS_RELEASE, "rollback")
    target = Target(function=state["function"], model=state["model"], alias=state["alias"])
    previous = state.get("previous_version")
    if previous:
        set_alias(clients, target, str(previous))
    delete_alarms(clients, list(state.get("alarms") or []))
    text = f"deploy rolled back from function version {state.get('version')}: {reason}"[:1024]
    clients.registry.set_approval_of(str(state["package_arn"]), "Rejected", text)
    return {"serving": previous, "rejected": state["package_version"], "reason": text}


def rollback_reason(check_result: dict[str, Any] | None, error: dict[str, Any] | None) -> str:
    """One line for the package's ApprovalDescription: the firing alarms, or the error that stopped the step."""
    if check_result and check_result.get("firing"):
        return "alarm during the canary: " + "; ".join(check_result["firing"])
    if error:
        return f"{error.get('Error', 'error')}: {str(error.get('Cause', ''))[:600]}"
    return "rolled back"


def rollback_from_state(clients: Clients, whole: dict[str, Any]) -> dict[str, Any]:
    """The Rollback state's input is the whole workflow state (release.result, and check.result or the caught
    error): unpack it here, so the handler only hands it over."""
    checked = (whole.get("check") or {}).get("result")
    reason = rollback_reason(checked, whole.get("error"))
    return rollback(clients, (whole.get("release") or {}).get("result") or {}, reason)


def versions_serving(clients: Clients, target: Target) -> dict[int, str]:
    """Registry package version -> the newest function version pinned to it (for `cnai models rollback --to`).
    Only versions pinned to `target.model`: a version of another model is never a rollback target for this one."""
    alias, model_alias = variable(ModelSource, "model_package_version"), variable(ModelSource, "model_name")
    found: dict[int, str] = {}
    for page in clients.lambda_.get_paginator("list_versions_by_function").paginate(FunctionName=target.function):
        for config in page.get("Versions", []):
            variables = (config.get("Environment") or {}).get("Variables") or {}
            if config.get("Version") == "$LATEST" or variables.get(model_alias) != target.model:
                continue
            value = variables.get(alias, "")
            if value.isdigit():
                previous = found.get(int(value))
                if previous is None or int(config["Version"]) > int(previous):
                    found[int(value)] = str(config["Version"])
    return found


def clear_canary_alarms(clients: Clients, target: Target) -> list[str]:
    """Delete every canary alarm of the alias (a person moved it: no canary is being watched any more)."""
    prefix = f"{target.function.rsplit(':', 1)[-1]}-{target.alias}-canary-"
    names = []
    for page in clients.cloudwatch.get_paginator("describe_alarms").paginate(AlarmNamePrefix=prefix):
        names += [a["AlarmName"] for a in page.get("MetricAlarms", [])]
    delete_alarms(clients, names)
    return names


def rollback_to(clients: Clients, target: Target, package_version: int) -> str:
    """All traffic of the alias to the newest function version pinned to `package_version` (a person's
    rollback: the package keeps its approval). Returns that function version."""
    serving = versions_serving(clients, target)
    if package_version not in serving:
        known = ", ".join(f"{p} (function version {v})" for p, v in sorted(serving.items())) or "none"
        raise DeployError(
            f"{target.function}: no published version serves package version {package_version} (released: {known}); "
            "approve it to release it"
        )
    set_alias(clients, target, serving[package_version])
    clear_canary_alarms(clients, target)
    return serving[package_version]


def promote_now(clients: Clients, target: Target, package_version: int | None = None) -> dict[str, Any]:
    """A person's promotion: a running canary goes to 100% at once; otherwise the package version (default: the
    approved one) is released straight to 100%, without a canary."""
    alias = get_alias(clients, target)
    running = weights(alias)
    if alias is not None and running and package_version is None:
        version = next(iter(running))
        set_alias(clients, target, version)
        clear_canary_alarms(clients, target)
        return {"action": "promoted", "version": version, "previous_version": str(alias["FunctionVersion"])}
    if running:
        raise DeployError(f"{target.function}:{target.alias}: a canary is running; promote it or roll back first")
    if package_version is None:
        approved = clients.registry.approved(target.model)
        if approved is None:
            raise DeployError(f"{clients.registry.group(target.model)}: no Approved version to promote")
        arn = approved.arn
    else:
        arn = clients.registry.version(target.model, package_version).arn
    return release(clients, target, None, arn)
