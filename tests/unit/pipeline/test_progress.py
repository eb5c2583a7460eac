"""Per-state progress from an execution history (the event shapes Step Functions' GetExecutionHistory returns)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from moto import mock_aws

from cnai.errors import CnaiError
from cnai.pipeline.progress import event_line, find_state_machine, state_rows

T0 = datetime(2026, 11, 30, 12, 0, 0, tzinfo=UTC)


def ev(kind: str, second: int, **details: Any) -> dict[str, Any]:
    key = {"TaskStateEntered": "stateEnteredEventDetails", "ChoiceStateEntered": "stateEnteredEventDetails",
           "FailStateEntered": "stateEnteredEventDetails", "TaskStateExited": "stateExitedEventDetails",
           "ChoiceStateExited": "stateExitedEventDetails", "TaskFailed": "taskFailedEventDetails",
           "TaskSucceeded": "taskSucceededEventDetails", "ExecutionFailed": "executionFailedEventDetails",
           "ExecutionSucceeded": "executionSucceededEventDetails"}[kind]  # fmt: skip
    return {"type": kind, "timestamp": T0 + timedelta(seconds=second), key: details}


def test_a_retried_task_then_a_rejection_reads_state_by_state() -> None:
    # Given a history: PrepareDataset ok; training fails once (capacity), is retried and succeeds; the gate
    # rejects and the execution fails in the Rejected state
    events = [
        ev("TaskStateEntered", 0, name="PrepareDataset"), ev("TaskSucceeded", 3),
        ev("TaskStateExited", 3, name="PrepareDataset"),
        ev("TaskStateEntered", 3, name="TrainAndDistill"),
        ev("TaskFailed", 10, error="SageMaker.CapacityError", cause="InsufficientCapacityError"),
        ev("TaskSucceeded", 70), ev("TaskStateExited", 70, name="TrainAndDistill"),
        ev("ChoiceStateEntered", 72, name="Passed?"), ev("ChoiceStateExited", 72, name="Passed?"),
        ev("FailStateEntered", 73, name="Rejected"),
        ev("ExecutionFailed", 73, error="QualityGateFailed", cause="accuracy 0.5000 below 0.8000 (threshold)"),
    ]  # fmt: skip
    rows = state_rows(events)
    # Then each state shows its status, seconds and attempts, and the failure its cause
    summary = [(r.name, r.status, r.seconds, r.attempts) for r in rows]
    assert summary == [
        ("PrepareDataset", "SUCCEEDED", 3.0, 1),
        ("TrainAndDistill", "SUCCEEDED", 67.0, 2),
        ("Passed?", "SUCCEEDED", 0.0, 1),
        ("Rejected", "FAILED", None, 1),
    ]
    assert rows[1].error == "SageMaker.CapacityError: InsufficientCapacityError"
    assert rows[3].error == "QualityGateFailed: accuracy 0.5000 below 0.8000 (threshold)"


def test_a_caught_task_failure_shows_failed_with_the_lambda_error_message() -> None:
    cause = '{"errorMessage": "empty range: no curated objects", "errorType": "DatasetRefusedError"}'
    events = [ev("TaskStateEntered", 0, name="PrepareDataset"),
              ev("TaskFailed", 1, error="DatasetRefusedError", cause=cause),
              ev("TaskStateExited", 1, name="PrepareDataset")]  # fmt: skip
    (row,) = state_rows(events)
    assert (row.status, row.attempts, row.error) == (
        "FAILED",
        1,
        "DatasetRefusedError: empty range: no curated objects",
    )


def test_log_lines() -> None:
    assert event_line(ev("TaskStateEntered", 5, name="QualityGate")) == "12:00:05 > QualityGate"
    assert event_line(ev("TaskFailed", 6, error="E", cause="c")) == "12:00:06 ! TaskFailed E: c"
    assert event_line(ev("ExecutionSucceeded", 9)) == "12:00:09 = execution SUCCEEDED"
    assert event_line({"type": "TaskScheduled", "timestamp": T0}) is None


def machines(monkeypatch: pytest.MonkeyPatch, spec: list[tuple[str, dict[str, str]]]) -> Any:
    """Step Functions (moto) holding these state machines and tags."""
    sfn = boto3.client("stepfunctions")
    definition = json.dumps({"StartAt": "A", "States": {"A": {"Type": "Pass", "End": True}}})
    for name, tags in spec:
        sfn.create_state_machine(name=name, definition=definition, roleArn="arn:aws:iam::123456789012:role/r",
                                 tags=[{"key": k, "value": v} for k, v in tags.items()])  # fmt: skip
    return sfn


@pytest.fixture
def aws(fake_aws_env: None) -> Iterator[None]:
    with mock_aws():
        yield


@pytest.mark.parametrize(
    ("spec", "found"),
    [
        ([("Workflow1A2B", {"cnai:workflow": "train"}), ("cnai-dev-train", {})], "Workflow1A2B"),
        ([("deploy", {}), ("cnai-dev-train", {})], "cnai-dev-train"),
        ([("TrainingTrain", {})], "TrainingTrain"),
        ([("deploy", {})], "no state machine tagged cnai:workflow=train"),
        ([("a-train", {}), ("b-train", {})], "several state machines match"),
    ],
)
def test_the_train_state_machine_is_found_by_tag_then_by_name(
    aws: None, monkeypatch: pytest.MonkeyPatch, spec: list[tuple[str, dict[str, str]]], found: str
) -> None:
    sfn = machines(monkeypatch, spec)
    if found[0].isupper() or found.startswith("cnai"):
        assert find_state_machine(sfn).endswith(f":stateMachine:{found}")
    else:
        with pytest.raises(CnaiError, match=found):
            find_state_machine(sfn)
