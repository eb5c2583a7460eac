"""EventBridge for the local platform's approval rule: a registry change becomes SageMaker's event, matched with
the rule's own pattern from the synthesized template, and starts the rule's state machine targets.

Why a bridge: moto (5.2.x) emits no event when a model package's approval changes, and its EventBridge does not
deliver to Step Functions (or Lambda) targets. What is real here: the pattern and the targets are read from the
template CDK synthesized (`rules_from_template`), the match is moto's own EventBridge matcher, the event is the
shape SageMaker sends (cnai.deploy.events.package_state_change: the detail is DescribeModelPackage), and the
execution runs the synthesized definition (with cnai.local.stepfunctions for its Lambda tasks).

What differs: SageMaker sends an event on every change of a package; `poll` notices changes of the approval
status only (the ones a deploy can depend on), by listing the registry's packages and comparing with the last
poll. `poll` is explicit (tests, `infra.local.platform`); `watch` runs it on a thread.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from cnai.deploy.events import package_state_change

log = logging.getLogger("cnai.local.events")
RULE = "AWS::Events::Rule"


def matches(pattern: Mapping[str, Any], event: Mapping[str, Any]) -> bool:
    """Whether EventBridge would deliver `event` to a rule with `pattern` (moto's matcher)."""
    from moto.events.models import EventPattern

    message: Any = dict(event)  # moto types it as its own EventMessageType (a TypedDict of the same keys)
    return bool(EventPattern.load(json.dumps(pattern)).matches_event(message))


@dataclass(frozen=True)
class Rule:
    """One EventBridge rule of a template: its logical id, pattern and Step Functions target ARNs."""

    name: str
    pattern: dict[str, Any]
    state_machines: tuple[str, ...]


def rules_from_template(template: Mapping[str, Any], resolve: Callable[[Any], Any]) -> list[Rule]:
    """The enabled rules with an event pattern and at least one state machine target; `resolve` evaluates the
    template's intrinsic functions (infra.local.template.LocalDeployment.resolve for the stack)."""
    rules = []
    for logical_id, resource in (template.get("Resources") or {}).items():
        if resource.get("Type") != RULE:
            continue
        props = resource.get("Properties") or {}
        if props.get("State", "ENABLED") != "ENABLED" or "EventPattern" not in props:
            continue
        pattern = resolve(props["EventPattern"])
        if isinstance(pattern, str):
            pattern = json.loads(pattern)
        arns = tuple(str(resolve(t["Arn"])) for t in props.get("Targets") or [])
        machines = tuple(a for a in arns if a.split(":")[2:3] == ["states"])
        if machines:
            rules.append(Rule(logical_id, dict(pattern), machines))
    return rules


@dataclass(frozen=True)
class Delivery:
    """An event that matched a rule and the execution it started."""

    rule: str
    event: dict[str, Any]
    execution_arn: str


class ApprovalBridge:
    """Turns approval changes in the registry into SageMaker events, delivered to the matching rules' targets.

    The first `poll` (done at construction unless `deliver_existing`) only records what is there: packages
    approved before the bridge started are not deployed again."""

    def __init__(
        self,
        rules: list[Rule],
        sagemaker: Any,
        stepfunctions: Any,
        *,
        account: str,
        region: str,
        deliver_existing: bool = False,
    ) -> None:
        if not rules:
            raise ValueError("ApprovalBridge: no rules with a state machine target in the templates")
        self.rules, self.sm, self.sfn = rules, sagemaker, stepfunctions
        self.account, self.region = account, region
        self.delivered: list[Delivery] = []
        self._seen: dict[str, str] = {}
        self._lock = threading.Lock()
        if not deliver_existing:
            self._changes()

    def _changes(self) -> list[str]:
        """ARNs whose approval status differs from the last look (new packages included)."""
        changed = []
        groups = []
        for page in self.sm.get_paginator("list_model_package_groups").paginate():
            groups += [g["ModelPackageGroupName"] for g in page.get("ModelPackageGroupSummaryList", [])]
        for group in groups:
            pages = self.sm.get_paginator("list_model_packages").paginate(ModelPackageGroupName=group)
            for page in pages:
                for summary in page.get("ModelPackageSummaryList", []):
                    arn, status = str(summary["ModelPackageArn"]), str(summary.get("ModelApprovalStatus", ""))
                    if self._seen.get(arn) != status:
                        self._seen[arn] = status
                        changed.append(arn)
        return changed

    def poll(self) -> list[Delivery]:
        """Deliver the events of the approval changes since the last poll; returns what was started."""
        with self._lock:
            started = []
            for arn in self._changes():
                description = self.sm.describe_model_package(ModelPackageName=arn)
                event = package_state_change(description, account=self.account, region=self.region)
                for rule in self.rules:
                    if not matches(rule.pattern, event):
                        continue
                    for machine in rule.state_machines:
                        version = event["detail"].get("ModelPackageVersion", "")
                        name = f"approval-{version}-{uuid.uuid4().hex[:12]}"
                        execution = self.sfn.start_execution(
                            stateMachineArn=machine, name=name, input=json.dumps(event)
                        )
                        delivery = Delivery(rule.name, event, str(execution["executionArn"]))
                        log.info("approval of %s -> %s (%s)", arn, machine, delivery.execution_arn)
                        started.append(delivery)
            self.delivered += started
            return started

    def watch(self, interval_s: float = 1.0) -> Callable[[], None]:
        """Poll on a daemon thread every `interval_s`; returns the function that stops it."""
        stop = threading.Event()

        def loop() -> None:
            while not stop.wait(interval_s):
                try:
                    self.poll()
                except Exception:  # a moto hiccup must not end the bridge; the next poll retries
                    log.exception("approval bridge poll failed")

        thread = threading.Thread(target=loop, name="cnai-approval-bridge", daemon=True)
        thread.start()

        def stop_watching() -> None:
            stop.set()
            thread.join(timeout=interval_s + 5)

        return stop_watching
