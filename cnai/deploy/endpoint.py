"""The deploy workflow's steps for a model routed to SageMaker Serverless: release, check, probe, finish, rollback.

Who owns what (docs/deploy.md, "The serverless endpoint"):
- CloudFormation (`cdk deploy`) creates the endpoint once, on its bootstrap Model and EndpointConfig
  (infra/constructs/sagemaker_serverless.py). Those two are never deleted here: the stack still owns them.
- This workflow owns every later Model and EndpointConfig (both named `<endpoint>-p<package version>-<stamp>`)
  and which configuration the endpoint runs. A released Model copies the serving Model's image, execution role
  and environment, and is pinned to the package: its ModelDataUrl is the package's tar, and its environment
  carries the pointer (CNAI_MODEL_URI, CNAI_MODEL_VERSION_ID, CNAI_MODEL_PACKAGE_VERSION; names from
  cnai.settings.ModelSource), which the container reports back as the model's identity.

SageMaker loads a ModelDataUrl by key and has no object-version field, so "pinned to the object version" is a
check: the release refuses when the key's current version is not the one the package recorded (the tar was
overwritten since registration). Training writes each job's tar under its own key, so this does not happen in
normal operation; the check turns it from silent into a refusal.

The endpoint's new configuration is judged in three steps: the update must end InService on that configuration
(Failed, or InService on another configuration with a FailureReason, is a failed update; so is still updating
after `timeout_s`), then a probe (InvokeEndpoint with one text) must answer a well-formed prediction from the new
identity (model name and registry version). Any failure returns the endpoint to the previous configuration,
waits for it to be InService, and marks the package Rejected with the reason, as the Lambda path does.

After a success the replaced configuration is kept: the `keep` newest configurations this one replaced, release
after release, stay (with their Models), for `cnai models rollback NAME --to V --endpoint E`; older ones are
deleted. Each released Model is tagged with the configuration it replaced, and Finish follows those links:
ListEndpointConfigs has no resource-level permission, and the deploy role is granted nothing on '*'.
"""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from cnai.deploy import canary
from cnai.deploy.canary import Clients, Clock, DeployError, approved_package, need, object_version, pointer
from cnai.model.endpoint import MAX_ANSWER_BYTES
from cnai.registry.packages import ModelVersion
from cnai.serving.schema import PredictResponse
from cnai.settings import ModelSource, variable

IN_PROGRESS = frozenset({"Creating", "Updating", "SystemUpdating", "RollingBack"})
BROKEN = frozenset({"Failed", "UpdateRollbackFailed", "OutOfService", "Deleting"})
NAME_MAX = 63  # SageMaker's limit for Model and EndpointConfig names
HEAD_MAX = 40  # the endpoint part of our names: leaves room for -p<version>-<stamp>
CHAIN_SLACK = 5  # links walked past `keep`: what an earlier failed cleanup may have left
# What the endpoint steps read of Release's result (release() below writes them).
ENDPOINT_RELEASE = ("endpoint", "config", "previous_config", "package_arn", "package_version")
MODEL_NAME_VARIABLE = variable(ModelSource, "model_name")  # in every released Model's pointer (canary.pointer)
REPLACES_TAG = "cnai:replaces"  # on each released Model: the configuration the release replaced


class EndpointBusyError(DeployError):
    """The endpoint is being created or updated: SageMaker refuses an UpdateEndpoint now. The state machine
    retries the step that raised it (by this class name) after a while."""


class EndpointUnhealthyError(DeployError):
    """The new configuration is in service but its answer to the probe is not the new model's."""


@dataclass(frozen=True)
class EndpointModel:
    """What every released Model and EndpointConfig is made of besides the package: the serving image, the
    execution role SageMaker assumes, the container's environment, the serverless capacity. The deploy stack
    takes them from the endpoint construct (infra/constructs/sagemaker_serverless.py), so a release runs the
    same container as the bootstrap; the package adds its tar and its pointer."""

    image: str
    role_arn: str
    memory_mb: int = 2048
    max_concurrency: int = 5
    environment: dict[str, str] = field(default_factory=dict)
    kms_key_id: str | None = None  # the bootstrap configuration's key: SageMaker encrypts its copy of the image
    network_isolation: bool = False  # the bootstrap Model's: a release never runs with more network than it
    variant: str = "AllTraffic"

    def __post_init__(self) -> None:
        if not self.image or not self.role_arn:
            raise DeployError("endpoint model: the image and the execution role ARN are required")
        if self.memory_mb not in (1024, 2048, 3072, 4096, 5120, 6144) or not 1 <= self.max_concurrency <= 200:
            raise DeployError(
                f"memory_mb {self.memory_mb} / max_concurrency {self.max_concurrency}: SageMaker Serverless takes "
                "1024 to 6144 in 1024 steps / 1 to 200"
            )


@dataclass(frozen=True)
class EndpointTarget:
    """The endpoint, the model (registry group) it serves, what a release is made of, how it is watched, and how
    many replaced configurations are kept."""

    endpoint: str
    model: str
    spec: EndpointModel
    timeout_s: int = 1800
    interval_s: int = 30
    keep: int = 2
    probe_text: str = "I would like to check my card's status"

    def __post_init__(self) -> None:
        if not self.endpoint:
            raise DeployError("endpoint: the name of the SageMaker endpoint to release to is empty")
        if self.timeout_s < 1 or self.interval_s < 1 or self.keep < 0:
            raise DeployError(
                f"timeout_s {self.timeout_s} / interval_s {self.interval_s} / keep {self.keep}: need >= 1 / >= 1 / >= 0"
            )
        if not self.probe_text.strip():
            raise DeployError("probe_text: the health check needs a non-empty text to send")


def ours(endpoint: str) -> str:
    """The name prefix of the Models and EndpointConfigs this workflow creates for `endpoint`."""
    return f"{endpoint[:HEAD_MAX].rstrip('-')}-p"


def resource_name(endpoint: str, package_version: int, stamp: float) -> str:
    """`<endpoint>-p<package version>-<stamp>`: the version is readable in the console, the stamp (milliseconds,
    base 36) makes a second release of the same package (after a rollback) a new name."""
    name = f"{ours(endpoint)}{package_version}-{_base36(int(stamp * 1000))}"
    if len(name) > NAME_MAX:
        raise DeployError(f"{name}: longer than SageMaker's {NAME_MAX} characters")
    return name


def _base36(value: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    text = ""
    while True:
        value, rest = divmod(value, 36)
        text = digits[rest] + text
        if not value:
            return text


def package_of(name: str, endpoint: str) -> int | None:
    """The registry version in one of our names, None for a name that is not ours (e.g. the bootstrap's)."""
    head = ours(endpoint)
    version = name[len(head) :].split("-", 1)[0] if name.startswith(head) else ""
    return int(version) if version.isdigit() else None


def serves(clients: Clients, endpoint: str, config: str, version: ModelVersion, pinned: dict[str, str]) -> bool:
    """Whether `config` (the endpoint's current one) is ours and runs a Model pinned to this package: a repeated
    event. The bootstrap configuration is never pinned to a package (and is not described: the deploy role
    may describe our Models only)."""
    if package_of(config, endpoint) != version.version:
        return False
    container = clients.registry.sm.describe_model(ModelName=config).get("PrimaryContainer") or {}
    env = container.get("Environment") or {}
    return container.get("ModelDataUrl") == version.model_data and all(env.get(k) == v for k, v in pinned.items())


def _check_object_version(clients: Clients, version: ModelVersion, recorded: str | None) -> None:
    """SageMaker reads the key's current bytes: refuse when they are not the version the package recorded."""
    if not recorded or not version.lineage.get("artifact_object_version"):
        return
    bucket, key = canary.split_s3(version.model_data)
    try:
        current = clients.s3.head_object(Bucket=bucket, Key=key).get("VersionId")
    except clients.s3.exceptions.ClientError as exc:
        raise DeployError(f"{version.arn}: its artifact {version.model_data} cannot be read ({exc})") from None
    if current not in (None, "null") and current != recorded:
        raise DeployError(
            f"{version.arn}: {version.model_data} was overwritten since registration (current object version "
            f"{current}, registered {recorded}); SageMaker would load the new bytes: register that tar again"
        )


# ------------------------------------------------------------------------------------------------ steps


def release(clients: Clients, target: EndpointTarget, package_arn: str, *, clock: Clock = time.time) -> dict[str, Any]:
    """A new Model and EndpointConfig pinned to the package, and UpdateEndpoint onto them.

    Answers the state the later steps read: action `endpoint` (wait for the update, then probe) or `none` (the
    endpoint already serves this package version: a repeated event)."""
    version = approved_package(clients, target.model, package_arn)
    recorded = object_version(clients, version)
    _check_object_version(clients, version, recorded)
    pinned = pointer(target.model, version, recorded)
    sm = clients.registry.sm
    try:
        described = sm.describe_endpoint(EndpointName=target.endpoint)
    except sm.exceptions.ClientError as exc:
        raise DeployError(f"endpoint {target.endpoint}: cannot be described ({exc})") from None
    status, current = str(described["EndpointStatus"]), str(described["EndpointConfigName"])
    state: dict[str, Any] = {
        "model": target.model, "group": version.group, "package_arn": version.arn,
        "package_version": version.version, "model_data": version.model_data, "endpoint": target.endpoint,
        "previous_config": current, "config": current, "timeout_s": target.timeout_s,
        "interval_s": target.interval_s,
    }  # fmt: skip
    if status in IN_PROGRESS:
        raise EndpointBusyError(f"endpoint {target.endpoint} is {status}: an update is in progress; released later")
    if status != "InService":
        raise DeployError(
            f"endpoint {target.endpoint} is {status} ({described.get('FailureReason', 'no reason given')}): it has "
            "no working configuration to return to; repair it (cnai models rollback ... --endpoint) first"
        )
    if serves(clients, target.endpoint, current, version, pinned):
        return {**state, "action": "none"}
    spec = target.spec
    name = resource_name(target.endpoint, version.version, clock())
    container = {"Image": spec.image, "ModelDataUrl": version.model_data,
                 "Environment": {**spec.environment, **pinned}}  # fmt: skip
    # The configuration this one replaces, on the Model: Finish walks these links to find what to keep and
    # delete (ListEndpointConfigs has no resource-level permission; the deploy role lists nothing).
    sm.create_model(ModelName=name, ExecutionRoleArn=spec.role_arn, PrimaryContainer=container,
                    EnableNetworkIsolation=spec.network_isolation,
                    Tags=[{"Key": REPLACES_TAG, "Value": current}])  # fmt: skip
    key = {"KmsKeyId": spec.kms_key_id} if spec.kms_key_id else {}
    serverless = {"MemorySizeInMB": spec.memory_mb, "MaxConcurrency": spec.max_concurrency}
    try:
        sm.create_endpoint_config(
            EndpointConfigName=name,
            ProductionVariants=[{"VariantName": spec.variant, "ModelName": name, "ServerlessConfig": serverless}],
            **key,
        )
        sm.update_endpoint(EndpointName=target.endpoint, EndpointConfigName=name)
    except sm.exceptions.ClientError as exc:
        _refused(sm, target.endpoint, name, exc)
    return {**state, "action": "endpoint", "config": name, "started": clock()}


def _refused(sm: Any, endpoint: str, name: str, exc: Exception) -> None:
    """The update was refused (e.g. another update started since DescribeEndpoint): the Model and configuration
    made for it are deleted (no release points at them, Finish would never find them), and the refusal raised:
    EndpointBusyError when the endpoint is now updating (the state retries), DeployError otherwise."""
    for delete, field_name in ((sm.delete_endpoint_config, "EndpointConfigName"), (sm.delete_model, "ModelName")):
        with contextlib.suppress(sm.exceptions.ClientError):
            delete(**{field_name: name})
    with contextlib.suppress(sm.exceptions.ClientError):
        if str(sm.describe_endpoint(EndpointName=endpoint)["EndpointStatus"]) in IN_PROGRESS:
            raise EndpointBusyError(f"endpoint {endpoint}: an update started meanwhile ({exc}); released later")
    raise DeployError(f"endpoint {endpoint}: the update to {name} was refused ({exc}); the endpoint is unchanged")


def check(clients: Clients, watch: dict[str, Any], *, clock: Clock = time.time) -> dict[str, Any]:
    """Where the update to `watch["config"]` stands: `in_service`, `updating`, or `failed` with the reason.

    `watch` is a release's state, or a rollback's (the previous configuration, the time it was asked for)."""
    sm = clients.registry.sm
    endpoint, expected = str(watch["endpoint"]), str(watch["config"])
    described = sm.describe_endpoint(EndpointName=endpoint)
    status, running = str(described["EndpointStatus"]), str(described.get("EndpointConfigName"))
    elapsed = round(clock() - float(watch.get("started", 0)), 1)
    why = described.get("FailureReason") or "no reason given"
    result: dict[str, Any] = {"status": "updating", "endpoint_status": status, "elapsed_s": elapsed, "reason": None}
    if status == "InService" and running == expected:
        return {**result, "status": "in_service"}
    if status == "InService":  # SageMaker kept (or went back to) another configuration: the update failed
        return {**result, "status": "failed", "reason": f"{endpoint} stayed on {running}, not {expected}: {why}"}
    if status in BROKEN:
        return {**result, "status": "failed", "reason": f"{endpoint} is {status} updating to {expected}: {why}"}
    if elapsed > float(watch.get("timeout_s", 0)):
        return {**result, "status": "failed",
                "reason": f"{endpoint} still {status} {elapsed:.0f}s after the update to {expected}"}  # fmt: skip
    return result


def probe(clients: Clients, target: EndpointTarget, state: dict[str, Any]) -> dict[str, Any]:
    """One prediction from the endpoint: it must be a well-formed PredictResponse from the new identity
    (the served model's name, the released registry version). Raises EndpointUnhealthyError naming what is wrong."""
    need(state, ("endpoint", "package_version"), "endpoint_probe")
    endpoint, expected = str(state["endpoint"]), str(state["package_version"])
    body = json.dumps({"inputs": [target.probe_text], "top_k": 1})
    runtime = clients.runtime
    try:
        answer = runtime.invoke_endpoint(EndpointName=endpoint, ContentType="application/json",
                                         Accept="application/json", Body=body)  # fmt: skip
        raw = answer["Body"].read(MAX_ANSWER_BYTES + 1)
    except runtime.exceptions.ClientError as exc:
        raise EndpointUnhealthyError(f"{endpoint}: the probe call failed ({exc})") from None
    if len(raw) > MAX_ANSWER_BYTES:
        raise EndpointUnhealthyError(f"{endpoint}: the probe's answer is over {MAX_ANSWER_BYTES} bytes")
    try:
        response = PredictResponse.model_validate_json(raw)
    except ValidationError as exc:
        text = raw[:200].decode(errors="replace")
        raise EndpointUnhealthyError(f"{endpoint}: the probe's answer is not a prediction ({exc.error_count()} "
                                f"error(s), first: {exc.errors()[0]['msg']}): {text!r}") from None  # fmt: skip
    identity = response.identity
    if identity.name != target.model or identity.package_version != expected:
        raise EndpointUnhealthyError(
            f"{endpoint}: the probe was answered by {identity}, not {target.model} registry version {expected}"
        )
    if len(response.predictions) != 1:
        raise EndpointUnhealthyError(f"{endpoint}: one text sent, {len(response.predictions)} predictions answered")
    return {"healthy": True, "identity": str(identity), "label": response.predictions[0].label}


def our_configs(clients: Clients, endpoint: str) -> list[str]:
    """This workflow's configurations for `endpoint`, newest first (by the stamp in the name: creation times of
    configurations made within the same second tie). Lists: for a person's credentials (rollback by command),
    not the deploy role's."""
    sm, names = clients.registry.sm, []
    for page in sm.get_paginator("list_endpoint_configs").paginate(NameContains=ours(endpoint)):
        names += [str(c["EndpointConfigName"]) for c in page.get("EndpointConfigs", [])]
    mine = [n for n in names if package_of(n, endpoint) is not None]
    return sorted(mine, key=lambda n: int(n.rsplit("-", 1)[-1], 36), reverse=True)


def replaced_chain(clients: Clients, target: EndpointTarget, start: str, limit: int) -> list[str]:
    """Our configurations from `start` back through what each one replaced (its Model's REPLACES_TAG), newest
    first, at most `limit`; the walk stops at a configuration that is not ours (the bootstrap) or is gone."""
    sm, name = clients.registry.sm, start
    chain: list[str] = []
    while package_of(name, target.endpoint) is not None and name not in chain and len(chain) < limit:
        try:
            arn = sm.describe_model(ModelName=name)["ModelArn"]
            tags = {t["Key"]: t["Value"] for t in sm.list_tags(ResourceArn=arn).get("Tags", [])}
        except sm.exceptions.ClientError:
            break  # deleted by an earlier Finish (or by a person): nothing older is ours to manage from here
        chain.append(name)
        name = str(tags.get(REPLACES_TAG, ""))
    return chain


def finish(clients: Clients, target: EndpointTarget, state: dict[str, Any]) -> dict[str, Any]:
    """The release serves: of the configurations it replaced (the chain of releases before it), keep the `keep`
    newest as rollback targets and delete the older ones with their Models. Cleanup is best effort: a failure
    is reported, it never undoes the release. A rolled-back release's configuration is not in any chain: it is
    kept for investigation (its name is in the package's ApprovalDescription)."""
    need(state, ("config", "previous_config", "package_version"), "endpoint_finish")
    sm, serving = clients.registry.sm, str(state["config"])
    chain = replaced_chain(clients, target, str(state["previous_config"]), target.keep + CHAIN_SLACK)
    deleted, errors = [], []
    for name in chain[target.keep :]:
        try:
            sm.delete_endpoint_config(EndpointConfigName=name)
            sm.delete_model(ModelName=name)
            deleted.append(name)
        except sm.exceptions.ClientError as exc:
            errors.append(f"{name}: {exc}"[:300])
    return {"serving": serving, "package_version": state["package_version"], "kept": chain[: target.keep],
            "deleted": deleted, "cleanup_errors": errors}  # fmt: skip


def rollback(clients: Clients, state: dict[str, Any], reason: str, *, clock: Clock = time.time) -> dict[str, Any]:
    """The endpoint back on the previous configuration (UpdateEndpoint, unless SageMaker already went back),
    the package marked Rejected with `reason`. Answers what the restore loop watches (check)."""
    need(state, ENDPOINT_RELEASE, "endpoint_rollback")
    sm = clients.registry.sm
    endpoint, previous = str(state["endpoint"]), str(state["previous_config"])
    described = sm.describe_endpoint(EndpointName=endpoint)
    status = str(described["EndpointStatus"])
    if status in IN_PROGRESS:
        raise EndpointBusyError(f"endpoint {endpoint} is {status}: it can be sent back to {previous} once that ends")
    if (status, described.get("EndpointConfigName")) != ("InService", previous):
        sm.update_endpoint(EndpointName=endpoint, EndpointConfigName=previous)
    text = f"deploy rolled back from endpoint config {state.get('config')}: {reason}"[:1024]
    clients.registry.set_approval_of(str(state["package_arn"]), "Rejected", text)
    return {"endpoint": endpoint, "config": previous, "started": clock(), "timeout_s": state.get("timeout_s", 1800),
            "interval_s": state.get("interval_s", 30), "rejected": state["package_version"],
            "reason": text}  # fmt: skip


def rollback_reason(check_result: dict[str, Any] | None, error: dict[str, Any] | None) -> str:
    """One line for the package's ApprovalDescription: the failed update, or the error that stopped a step."""
    if check_result and check_result.get("status") == "failed":
        return f"endpoint update failed: {check_result.get('reason')}"
    return canary.rollback_reason(None, error)


def rollback_from_state(clients: Clients, whole: dict[str, Any], *, clock: Clock = time.time) -> dict[str, Any]:
    """The EndpointRollback state's input is the whole workflow state (release.result, and endpoint_check.result
    or the caught error): unpacked here, so the handler only hands it over."""
    checked = (whole.get("endpoint_check") or {}).get("result")
    reason = rollback_reason(checked, whole.get("error"))
    return rollback(clients, (whole.get("release") or {}).get("result") or {}, reason, clock=clock)


def rollback_to(clients: Clients, endpoint: str, package_version: int, model: str | None = None) -> str:
    """A person's rollback: `endpoint` onto the newest kept configuration of `package_version` (the package keeps
    its approval). With `model`, that configuration's Model must be pinned to it (the name a person typed is the
    model the endpoint serves: the audit record names it). Returns that configuration; the endpoint is Updating
    when this returns."""
    configs = our_configs(clients, endpoint)
    kept = [n for n in configs if package_of(n, endpoint) == package_version]
    if not kept:
        known = sorted({v for n in configs if (v := package_of(n, endpoint)) is not None})
        raise DeployError(
            f"endpoint {endpoint}: no kept configuration serves package version {package_version} (kept: "
            f"{', '.join(map(str, known)) or 'none'}); approve it to release it again"
        )
    sm = clients.registry.sm
    if model is not None:
        container = sm.describe_model(ModelName=kept[0]).get("PrimaryContainer") or {}
        pinned = (container.get("Environment") or {}).get(MODEL_NAME_VARIABLE)
        if pinned != model:
            raise DeployError(
                f"endpoint {endpoint}: configuration {kept[0]} serves model {pinned or '(none pinned)'}, not {model}; "
                "nothing was changed"
            )
    status = str(sm.describe_endpoint(EndpointName=endpoint)["EndpointStatus"])
    if status in IN_PROGRESS:
        raise EndpointBusyError(f"endpoint {endpoint} is {status}: roll back once that ends")
    sm.update_endpoint(EndpointName=endpoint, EndpointConfigName=kept[0])
    return kept[0]
