"""Drift monitor (EventBridge Scheduler, one schedule per model). Thin: settings, clients, observability; the
work is cnai.monitoring.monitor. Event: {"model": "banking77", "time": "<aws.scheduler.scheduled-time>"}.

The scheduled time names the run: a retried invocation of the same tick scores the same window, writes the
same report key and names the same execution, so a retry can never start a second retrain.
Answers the report (JSON); every score goes out as a metric with the `model` dimension the alarms select on.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import boto3
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from cnai.monitoring.monitor import Clients, run_monitor_once
from cnai.observability import logger, metric, metrics, tracer
from functions.drift_monitor.settings import DriftMonitorSettings

settings = DriftMonitorSettings.from_env()
clients = Clients(
    s3=boto3.client("s3"),
    sfn=boto3.client("stepfunctions"),
    dynamodb=boto3.client("dynamodb"),
    sagemaker=boto3.client("sagemaker"),
)


def scheduled_time(event: dict[str, Any]) -> datetime | None:
    value = event.get("time")
    if value is None:
        return None
    try:
        return datetime.fromisoformat(str(value))
    except ValueError:
        raise ValueError(f"time: {value!r} is not an ISO 8601 time") from None


@logger.inject_lambda_context(correlation_id_path="model")
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    model = event.get("model")
    if not isinstance(model, str) or not model:
        raise ValueError('model: the schedule\'s input must name the model ({"model": "banking77"})')
    report = run_monitor_once(settings.config(model), clients, now=scheduled_time(event))
    metrics.add_dimension(name="model", value=model)
    for name, value in report.metrics().items():
        metric(name, MetricUnit.NoUnit if name.startswith("Drift.") else MetricUnit.Count, value)
    logger.info(
        "drift monitor run",
        extra={
            "run_id": report.run_id,
            "decision": report.decision,
            "action": report.action.kind,
            "reasons": report.reasons,
        },
    )
    return report.model_dump(mode="json", by_alias=True)
