"""Notify (training workflow, every end). Thin: the message is cnai.pipeline.notify's.
Event: {"status": "SUCCEEDED"|"FAILED"|"REJECTED", "state": $, "execution_arn"}.
"""

from __future__ import annotations

from typing import Any

import boto3
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from cnai.observability import logger, metric, metrics, tracer
from cnai.pipeline.notify import notify
from functions.notify.settings import NotifySettings

settings = NotifySettings.from_env()
sns = boto3.client("sns")
STATUSES = ("SUCCEEDED", "FAILED", "REJECTED")


@logger.inject_lambda_context(correlation_id_path="execution_arn")
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    status = event.get("status")
    if status not in STATUSES:
        raise ValueError(f"status: {status!r} is not one of {', '.join(STATUSES)}")
    sent = notify(sns, settings.topic_arn, status, event.get("state") or {}, str(event.get("execution_arn", "")))
    # One count per outcome (WorkflowSucceeded / WorkflowFailed / WorkflowRejected): what alarms watch.
    metric(f"Workflow{status.title()}", MetricUnit.Count, 1)
    if "training_cost" in sent:  # in prices.json's currency (USD): a unit CloudWatch has no name for
        metric("TrainingCost", MetricUnit.NoUnit, sent["training_cost"])
        metric("TrainingSpotSaving", MetricUnit.NoUnit, sent["spot_saving"])
    logger.info("notified", extra=sent)
    return sent
