"""Deploy (deploy workflow): one function, one step per state. Thin: the work is cnai.deploy.canary.

Event: {"step": "release", "package_arn", "execution_arn"} -> the release state (action canary|promoted|none)
       {"step": "check", "release"}                        -> {"alarm", "firing", "done", "elapsed_s"}
       {"step": "promote", "release"}                      -> {"serving", "package_version"}
       {"step": "rollback", "state"}                       -> {"serving", "rejected", "reason"}
(`state`: the whole workflow state: release.result, and check.result or the caught error.)
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from cnai.deploy import canary
from cnai.observability import logger, metric, metrics, tracer
from functions.deploy_model.settings import DeployFunctionSettings

settings = DeployFunctionSettings.from_env()
clients = canary.Clients.default(settings.group_prefix)
target, policy = settings.target(), settings.policy()


def _step(event: dict[str, Any]) -> dict[str, Any]:
    step, state = event.get("step"), event.get("release") or {}
    if step == "release":
        package_arn = event.get("package_arn")
        if not isinstance(package_arn, str) or not package_arn:
            raise ValueError("package_arn: the release step needs the approved model package's ARN")
        return canary.release(clients, target, policy, package_arn)
    if step == "check":
        return canary.check(clients, state)
    if step == "promote":
        return canary.promote(clients, state)
    if step == "rollback":
        whole = event.get("state") or {}
        checked = (whole.get("check") or {}).get("result")
        reason = canary.rollback_reason(checked, whole.get("error"))
        return canary.rollback(clients, (whole.get("release") or {}).get("result") or {}, reason)
    raise ValueError(f"step: {step!r} is not one of release, check, promote, rollback")


@logger.inject_lambda_context(correlation_id_path="execution_arn")
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    result = _step(event)
    step = str(event.get("step"))
    if step in ("promote", "rollback"):
        metric("ModelsPromoted" if step == "promote" else "ModelsRolledBack", MetricUnit.Count, 1)
    logger.info(f"deploy {step}", extra={"result": result})
    return result
