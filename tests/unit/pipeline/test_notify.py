"""Notify's message: console link, outcome and cause, metrics, cost and spot saving from SageMaker's times."""

from __future__ import annotations

import pytest

from cnai.pipeline.notify import console_link, hourly_price, job_cost, message, price_table

ARN = "arn:aws:states:eu-west-1:123456789012:execution:cnai-train:run-1"
TRAINING = {
    "TrainingJobName": "cnai-banking77-abc",
    "TrainingTimeInSeconds": 3600,
    "BillableTimeInSeconds": 1200,
    "ResourceConfig": {"InstanceType": "ml.g5.xlarge", "InstanceCount": 2, "VolumeSizeInGB": 30},
}


def test_the_console_link_is_the_executions_page_in_its_region() -> None:
    assert console_link(ARN) == (
        f"https://eu-west-1.console.aws.amazon.com/states/home?region=eu-west-1#/v2/executions/details/{ARN}"
    )


def test_cost_is_billable_seconds_times_price_times_instances_and_saving_the_unbilled_seconds() -> None:
    # Given a 2-instance spot job that ran 3600 s and was billed 1200 s per instance
    cost = job_cost(TRAINING)
    assert cost is not None
    price = hourly_price("ml.g5.xlarge")
    assert price is not None and price > 0
    # Then cost = 1200 x price / 3600 x 2 and the saving = (3600 - 1200) x price / 3600 x 2
    assert cost.cost == pytest.approx(1200 * price / 3600 * 2)
    assert cost.spot_saving == pytest.approx(2400 * price / 3600 * 2)
    # And an unknown instance type says so instead of inventing a price
    unknown = job_cost({**TRAINING, "ResourceConfig": {"InstanceType": "ml.x9.huge", "InstanceCount": 1}})
    assert unknown is not None and unknown.cost is None and "no price on file" in unknown.line()
    # And a job that never reported times has no cost line
    assert job_cost({}) is None


def test_the_price_file_names_its_source_and_date_and_covers_the_default_instance() -> None:
    table = price_table()
    assert table["source"] and table["as_of"] and table["currency"] == "USD"
    assert "ml.g5.xlarge" in table["training_on_demand"]


def test_success_message_names_version_metrics_link_and_cost() -> None:
    state = {
        "run": {"model": "banking77"},
        "dataset": {"manifest_uri": "s3://lake/datasets/b/v/manifest.json", "rows": {"train": 80, "test": 20},
                    "engine": "lambda"},
        "training": TRAINING,
        "quality": {"passed": True, "metrics": {"accuracy": 0.91, "macro_f1": 0.9},
                    "baseline": {"version": 3, "metrics": {"accuracy": 0.9}}, "report_uri": "s3://art/e.json"},
        "registered": {"model_package_arn": "arn:pkg/4", "version": 4, "approval": "PendingManualApproval"},
    }  # fmt: skip
    subject, body = message("SUCCEEDED", state, ARN)
    assert subject == "cnai banking77: version 4 registered (PendingManualApproval)"
    assert console_link(ARN) in body and "arn:pkg/4" in body
    assert "accuracy 0.9100, macro_f1 0.9000" in body and "Approved version 3: accuracy 0.9000" in body
    assert "Cost: 2 x ml.g5.xlarge, 3600 s training, 1200 s billable" in body and "spot saved" in body


def test_rejected_and_failed_messages_carry_the_cause() -> None:
    rejected = {
        "run": {"model": "m"},
        "quality": {"passed": False, "cause": "accuracy 0.5000 below 0.8000 (threshold)"},
    }
    subject, body = message("REJECTED", rejected, ARN)
    assert "rejected" in subject and "accuracy 0.5000 below 0.8000 (threshold)" in body
    failed = {"run": {"model": "m"}, "error": {"Error": "States.TaskFailed",
              "Cause": '{"errorType": "DatasetRefusedError", "errorMessage": "empty range: nothing"}'}}  # fmt: skip
    subject, body = message("FAILED", failed, ARN)
    assert subject == "cnai m: training workflow failed" and "DatasetRefusedError: empty range: nothing" in body
    # a failure of PrepareDataset leaves the console input as the state: the model is read from it
    console_input = {"model": "banking77", "dataset": {"from": "2026-11-01", "to": "2026-11-30"}}
    subject, _ = message("FAILED", {**console_input, "error": {"Error": "X", "Cause": "y"}}, ARN)
    assert subject == "cnai banking77: training workflow failed"
    # and with nothing known the message still goes out
    assert message("FAILED", {"error": {"Error": "X", "Cause": "y"}}, ARN)[0] == "cnai ?: training workflow failed"


def test_notify_returns_the_runs_cost_for_the_dashboard_metric() -> None:
    # Given a finished run whose job reported billed seconds, and an SNS client that accepts the message
    class Sns:
        def publish(self, **kwargs: object) -> dict[str, str]:
            self.sent = kwargs
            return {"MessageId": "m-1"}

    from cnai.pipeline.notify import notify

    sns = Sns()
    # When the run is notified
    sent = notify(sns, "arn:aws:sns:eu-west-1:123456789012:t", "SUCCEEDED", {"training": TRAINING}, ARN)
    # Then the cost (1200 billable s x 2 instances x the hourly price) and the spot saving come back with it
    price = hourly_price("ml.g5.xlarge")
    assert price is not None
    assert sent["training_cost"] == pytest.approx(1200 * 2 * price / 3600, abs=1e-6)
    assert sent["spot_saving"] == pytest.approx(2400 * 2 * price / 3600, abs=1e-6)
    # And a run that never trained reports no cost rather than zero
    assert "training_cost" not in notify(sns, "arn:t", "FAILED", {}, ARN)
