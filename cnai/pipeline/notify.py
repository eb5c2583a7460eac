"""Notify: one SNS message per finished execution, on every path (registered, rejected, failed).

It says what a person needs without opening anything: the outcome and why, the console link of the
execution, the registered version and its metrics, and what the training job cost. SageMaker reports
TrainingTimeInSeconds (wall clock) and BillableTimeInSeconds (what is billed; less with managed spot), both
per instance, so

    cost        = BillableTimeInSeconds x instance price per hour / 3600 x InstanceCount
    spot saving = (TrainingTimeInSeconds - BillableTimeInSeconds) x price / 3600 x InstanceCount

with the public on-demand price of the instance type from prices.json (its source and date inside).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal

Status = Literal["SUCCEEDED", "FAILED", "REJECTED"]
PRICES = Path(__file__).with_name("prices.json")


@cache
def price_table() -> dict[str, Any]:
    return dict(json.loads(PRICES.read_text(encoding="utf-8")))


def hourly_price(instance_type: str) -> float | None:
    value = price_table()["training_on_demand"].get(instance_type)
    return None if value is None else float(value)


@dataclass(frozen=True)
class Cost:
    instance_type: str
    count: int
    training_s: int
    billable_s: int
    price_per_hour: float | None

    @property
    def cost(self) -> float | None:
        if self.price_per_hour is None:
            return None
        return self.billable_s * self.price_per_hour / 3600 * self.count

    @property
    def spot_saving(self) -> float | None:
        if self.price_per_hour is None:
            return None
        return max(0, self.training_s - self.billable_s) * self.price_per_hour / 3600 * self.count

    def line(self) -> str:
        head = f"{self.count} x {self.instance_type}, {self.training_s} s training, {self.billable_s} s billable"
        if self.cost is None or self.spot_saving is None:
            return f"{head}; no price on file for {self.instance_type} (cnai/pipeline/prices.json)"
        currency = price_table()["currency"]
        return (
            f"{head}: {self.cost:.4f} {currency} at {self.price_per_hour} {currency}/h on-demand; "
            f"spot saved {self.spot_saving:.4f} {currency}"
        )


def job_cost(training: dict[str, Any]) -> Cost | None:
    """From the TrainAndDistill result ($.training); None when the job never reported times."""
    if not training or "BillableTimeInSeconds" not in training:
        return None
    resources = training.get("ResourceConfig") or {}
    instance_type = str(resources.get("InstanceType", ""))
    return Cost(
        instance_type=instance_type,
        count=int(resources.get("InstanceCount", 1)),
        training_s=int(training.get("TrainingTimeInSeconds") or 0),
        billable_s=int(training.get("BillableTimeInSeconds") or 0),
        price_per_hour=hourly_price(instance_type),
    )


def console_link(execution_arn: str) -> str:
    """The execution's page in the Step Functions console (region read from the ARN)."""
    parts = execution_arn.split(":")
    region = parts[3] if len(parts) > 3 and parts[3] else "us-east-1"
    return f"https://{region}.console.aws.amazon.com/states/home?region={region}#/v2/executions/details/{execution_arn}"


def _error_text(error: Any) -> str:
    if not isinstance(error, dict):
        return "unknown error"
    name, cause = str(error.get("Error", "")), str(error.get("Cause", ""))
    try:  # a Lambda's error arrives as a JSON cause {"errorMessage": ..., "errorType": ...}
        parsed = json.loads(cause)
        if isinstance(parsed, dict) and "errorMessage" in parsed:
            name, cause = str(parsed.get("errorType", name)), str(parsed["errorMessage"])
    except (json.JSONDecodeError, TypeError):
        pass
    return f"{name}: {cause}".strip(": ")


def message(status: Status, state: dict[str, Any], execution_arn: str) -> tuple[str, str]:
    """(subject, body) of the notification. Subject <= 100 characters (SNS's limit for email)."""
    run = state.get("run") or {}
    # Before PrepareDataset answered (it failed), the state is still the console input: `model` at the top.
    model = str(run.get("model") or state.get("model") or "?")
    quality = state.get("quality") or {}
    registered = state.get("registered") or {}
    lines: list[str] = []
    if status == "SUCCEEDED":
        version = registered.get("version", "?")
        subject = f"cnai {model}: version {version} registered ({registered.get('approval', '?')})"
        lines.append(f"Model {model} version {version} registered, approval {registered.get('approval', '?')}.")
        lines.append(f"Model package: {registered.get('model_package_arn', '?')}")
    elif status == "REJECTED":
        subject = f"cnai {model}: rejected by the quality gate"
        lines.append(f"Model {model} was not registered: {quality.get('cause') or 'quality gate failed'}.")
    else:
        subject = f"cnai {model}: training workflow failed"
        lines.append(f"The training workflow for {model} failed: {_error_text(state.get('error'))}")
    lines.append(f"Execution: {console_link(execution_arn)}")
    metrics = quality.get("metrics") or {}
    if metrics:
        lines.append("Metrics (test, served int8 model): " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
    baseline = quality.get("baseline")
    if baseline:
        figures = ", ".join(f"{k} {v:.4f}" for k, v in (baseline.get("metrics") or {}).items())
        lines.append(f"Approved version {baseline.get('version')}: {figures}")
    if quality.get("report_uri"):
        lines.append(f"Evaluation report: {quality['report_uri']}")
    dataset = state.get("dataset") or {}
    if dataset:
        lines.append(
            f"Dataset: {dataset.get('manifest_uri', '?')} (train {dataset.get('rows', {}).get('train', '?')}, "
            f"test {dataset.get('rows', {}).get('test', '?')} rows, {dataset.get('engine', '?')})"
        )
    training = state.get("training") or {}
    if training.get("TrainingJobName"):
        lines.append(f"Training job: {training['TrainingJobName']}")
    cost = job_cost(training)
    if cost is not None:
        lines.append(f"Cost: {cost.line()}")
    return subject[:100], "\n".join(lines)


def notify(sns: Any, topic_arn: str, status: Status, state: dict[str, Any], execution_arn: str) -> dict[str, Any]:
    subject, body = message(status, state, execution_arn)
    response = sns.publish(
        TopicArn=topic_arn,
        Subject=subject,
        Message=body,
        MessageAttributes={"status": {"DataType": "String", "StringValue": status}},
    )
    sent: dict[str, Any] = {"message_id": response["MessageId"], "subject": subject, "status": status}
    cost = job_cost(state.get("training") or {})
    if cost is not None and cost.cost is not None:
        # What the run cost (billed seconds x the on-demand price): the dashboard's training cost series.
        sent["training_cost"] = round(cost.cost, 6)
        sent["spot_saving"] = round(cost.spot_saving or 0.0, 6)
    return sent
