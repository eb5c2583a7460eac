"""An execution's progress, state by state, read from Step Functions' execution history.

The history is the one record both the console and `cnai train status | logs` read: each state's entry
and exit, task failures, retries, and the execution's end. Works the same on AWS and on the local
platform (moto's interpreter writes the same event types).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

END_EVENTS = {
    "ExecutionSucceeded": "SUCCEEDED",
    "ExecutionFailed": "FAILED",
    "ExecutionAborted": "ABORTED",
    "ExecutionTimedOut": "TIMED_OUT",
}
_FAILURES = ("TaskFailed", "TaskTimedOut", "TaskStartFailed", "TaskSubmitFailed", "LambdaFunctionFailed",
             "LambdaFunctionTimedOut")  # fmt: skip
_SUCCESSES = ("TaskSucceeded", "LambdaFunctionSucceeded")


@dataclass
class StateRow:
    name: str
    status: str  # RUNNING | SUCCEEDED | FAILED (a caught failure exits as FAILED too)
    entered: datetime | None
    exited: datetime | None = None
    failures: int = 0  # failed task attempts (each retry follows one)
    last_failed: bool = False
    error: str = ""

    @property
    def attempts(self) -> int:
        return self.failures + (0 if self.last_failed else 1)

    @property
    def seconds(self) -> float | None:
        if self.entered is None or self.exited is None:
            return None
        return (self.exited - self.entered).total_seconds()


def _details(event: dict[str, Any]) -> dict[str, Any]:
    for key, value in event.items():
        if key.endswith("EventDetails") and isinstance(value, dict):
            return value
    return {}


MAX_CAUSE = 600


def _failure(details: dict[str, Any]) -> str:
    error, cause = str(details.get("error", "")), str(details.get("cause", ""))
    try:
        parsed = json.loads(cause)
        if isinstance(parsed, dict) and "errorMessage" in parsed:
            cause = str(parsed["errorMessage"])
        elif isinstance(parsed, dict) and "FailureReason" in parsed:  # a .sync job: DescribeTrainingJob's output
            cause = f"training job {parsed.get('TrainingJobName', '?')}: {parsed['FailureReason']}"
    except (json.JSONDecodeError, TypeError):
        pass
    if len(cause) > MAX_CAUSE:  # a job's failure reason can hold a whole log tail: keep its end, the error
        cause = "..." + cause[-MAX_CAUSE:]
    return f"{error}: {cause}".strip(": ")


def state_rows(events: list[dict[str, Any]]) -> list[StateRow]:
    """One row per state visit, in order (the training workflow is sequential: no Map or Parallel)."""
    rows: list[StateRow] = []
    current: StateRow | None = None
    for event in events:
        kind = str(event.get("type", ""))
        details = _details(event)
        stamp = event.get("timestamp")
        if kind.endswith("StateEntered"):
            current = StateRow(str(details.get("name", "?")), "RUNNING", stamp)
            rows.append(current)
        elif current is None:
            continue
        elif kind.endswith("StateExited"):
            current.exited = stamp
            current.status = "FAILED" if current.last_failed or kind == "FailStateExited" else "SUCCEEDED"
        elif kind in _SUCCESSES:
            current.last_failed = False
        elif kind in _FAILURES:
            current.failures += 1
            current.last_failed = True
            current.error = _failure(details)
        elif kind == "ExecutionFailed" and current.status == "RUNNING":
            current.status = "FAILED"
            current.error = current.error or _failure(details)
    return rows


def event_line(event: dict[str, Any]) -> str | None:
    """One human line per interesting event (what `cnai train logs` prints), None for the rest."""
    kind = str(event.get("type", ""))
    details = _details(event)
    stamp = event.get("timestamp")
    clock = stamp.strftime("%H:%M:%S") if isinstance(stamp, datetime) else "--:--:--"
    if kind.endswith("StateEntered"):
        return f"{clock} > {details.get('name', '?')}"
    if kind.endswith("StateExited"):
        return f"{clock} < {details.get('name', '?')}"
    if kind in _FAILURES:
        return f"{clock} ! {kind} {_failure(details)}"
    if kind in END_EVENTS:
        extra = f" {_failure(details)}" if details and kind != "ExecutionSucceeded" else ""
        return f"{clock} = execution {END_EVENTS[kind]}{extra}"
    return None


def history(sfn: Any, execution_arn: str, start_token: str | None = None) -> tuple[list[dict[str, Any]], str | None]:
    """Every event after `start_token` (all when None), and the token to continue from."""
    events: list[dict[str, Any]] = []
    token = start_token
    while True:
        kwargs: dict[str, Any] = {"executionArn": execution_arn, "maxResults": 1000}
        if token:
            kwargs["nextToken"] = token
        page = sfn.get_execution_history(**kwargs)
        events += page.get("events", [])
        if not page.get("nextToken"):
            return events, token
        token = page["nextToken"]


def follow(
    sfn: Any,
    execution_arn: str,
    emit: Callable[[str], None],
    poll_s: float = 2.0,
    sleep: Callable[[float], None] = time.sleep,
) -> str:
    """Print the execution's events as they happen until it ends; answers its final status."""
    seen = 0
    while True:
        events, _ = history(sfn, execution_arn)
        for event in events[seen:]:
            line = event_line(event)
            if line is not None:
                emit(line)
        seen = len(events)
        status = str(sfn.describe_execution(executionArn=execution_arn)["status"])
        if status != "RUNNING":
            return status
        sleep(poll_s)


def find_state_machine(sfn: Any, workflow: str = "train") -> str:
    """The deployment's state machine for `workflow`: tagged cnai:workflow=<workflow>, else named
    `<workflow>` or `...-<workflow>` / `...<Workflow>`. Refuses when none or several match."""
    machines: list[dict[str, Any]] = []
    for page in sfn.get_paginator("list_state_machines").paginate():
        machines += page.get("stateMachines", [])
    tagged = []
    for machine in machines:
        tags = sfn.list_tags_for_resource(resourceArn=machine["stateMachineArn"]).get("tags", [])
        if any(t.get("key") == "cnai:workflow" and t.get("value") == workflow for t in tags):
            tagged.append(machine)
    named = [m for m in machines if _named(m["name"], workflow)]
    found = tagged or named
    if len(found) == 1:
        return str(found[0]["stateMachineArn"])
    from cnai.errors import CnaiError

    if not found:
        raise CnaiError(
            f"no state machine tagged cnai:workflow={workflow} or named like '*-{workflow}' "
            f"(of {len(machines)}); give --state-machine ARN"
        )
    names = ", ".join(m["name"] for m in found)
    raise CnaiError(f"several state machines match {workflow!r} ({names}); give --state-machine ARN")


def _named(name: str, workflow: str) -> bool:
    lowered = name.lower()
    return (
        lowered == workflow
        or lowered.endswith(f"-{workflow}")
        or lowered.endswith(f"_{workflow}")
        or (name.endswith(workflow.capitalize()) and not lowered.endswith(f"re{workflow}"))
    )


def iter_executions(sfn: Any, state_machine_arn: str) -> Iterator[dict[str, Any]]:
    for page in sfn.get_paginator("list_executions").paginate(stateMachineArn=state_machine_arn):
        yield from page.get("executions", [])
