"""One deploy workflow step per event: which function of cnai.deploy a state of the state machine runs.

The deploy function is one Lambda for every state (infra/constructs/deploy_workflow.py); the state tells it the
step in its payload. Dispatch and the unpacking of each payload live here, so the handler is settings, clients,
decorators and one call, and a malformed event fails naming the field before any AWS call.

    release            {"package_arn"}  -> canary.release, or endpoint.release when an endpoint is configured
    check | promote    {"release"}      -> the canary's verdict | 100% to the new version
    rollback           {"state"}        -> the alias back, the package Rejected (the whole workflow state)
    endpoint_check     {"watch"}        -> where the endpoint's update stands (a release's or a rollback's)
    endpoint_probe     {"release"}      -> the health check of the new configuration
    endpoint_finish    {"release"}      -> keep N replaced configurations, delete older ones
    endpoint_rollback  {"state"}        -> the endpoint back, the package Rejected (the whole workflow state)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cnai.deploy import canary, endpoint
from cnai.deploy.canary import Clients, Policy, Target
from cnai.deploy.endpoint import EndpointTarget

STEPS = ("release", "check", "promote", "rollback", "endpoint_check", "endpoint_probe", "endpoint_finish",
         "endpoint_rollback")  # fmt: skip


@dataclass(frozen=True)
class Steps:
    """What the deploy function was configured with: clients, the alias and its canary policy, the endpoint."""

    clients: Clients
    target: Target
    policy: Policy | None
    endpoint: EndpointTarget | None = None

    def run(self, event: dict[str, Any]) -> dict[str, Any]:
        step = event.get("step")
        if step not in STEPS:
            raise ValueError(f"step: {step!r} is not one of {', '.join(STEPS)}")
        state = _mapping(event, "release") if step in ("check", "promote", "endpoint_probe", "endpoint_finish") else {}
        if step == "release":
            package_arn = event.get("package_arn")
            if not isinstance(package_arn, str) or not package_arn:
                raise ValueError("package_arn: the release step needs the approved model package's ARN")
            if self.endpoint is not None:
                return endpoint.release(self.clients, self.endpoint, package_arn)
            return canary.release(self.clients, self.target, self.policy, package_arn)
        if step == "check":
            return canary.check(self.clients, state)
        if step == "promote":
            return canary.promote(self.clients, state)
        if step == "rollback":
            return canary.rollback_from_state(self.clients, _mapping(event, "state"))
        routed = self._endpoint(str(step))
        if step == "endpoint_check":
            return endpoint.check(self.clients, _mapping(event, "watch"))
        if step == "endpoint_probe":
            return endpoint.probe(self.clients, routed, state)
        if step == "endpoint_finish":
            return endpoint.finish(self.clients, routed, state)
        return endpoint.rollback_from_state(self.clients, _mapping(event, "state"))

    def _endpoint(self, step: str) -> EndpointTarget:
        if self.endpoint is None:
            raise ValueError(f"step {step}: no endpoint is configured (CNAI_DEPLOY_ENDPOINT): releases go to the alias")
        return self.endpoint


def _mapping(event: dict[str, Any], field: str) -> dict[str, Any]:
    value = event.get(field)
    if not isinstance(value, dict):
        raise ValueError(f"{field}: step {event.get('step')} needs it as an object, got {type(value).__name__}")
    return value
