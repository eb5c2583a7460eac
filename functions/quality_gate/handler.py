"""QualityGate (training workflow). Thin: the work is cnai.pipeline.quality.
Event: {"run": $.run, "training": $.training}. Answers {"passed", "cause", "metrics", "baseline",
"report_uri", "card"}; the state machine's Choice reads `passed`.
"""

from __future__ import annotations

from typing import Any

import boto3
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from cnai.observability import logger, metric, metrics, tracer
from cnai.pipeline.input import parse_run
from cnai.pipeline.quality import Baseline, quality_gate
from cnai.registry.packages import Registry
from functions.quality_gate.settings import QualityGateSettings

settings = QualityGateSettings.from_env()
s3 = boto3.client("s3")
registry = Registry(boto3.client("sagemaker"), settings.group_prefix)


@logger.inject_lambda_context
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    run = parse_run(event.get("run"))
    training = event.get("training") or {}
    if not isinstance(training.get("model_data"), str) or not training["model_data"]:
        raise ValueError("training.model_data: the event must carry the trained model's s3:// artifact URI")
    approved = registry.approved(run.model)
    baseline = None if approved is None else Baseline(approved.version, approved.arn, approved.metrics)
    job = training.get("TrainingJobName") or run.job_name
    result = quality_gate(
        s3,
        model_data=training["model_data"],
        thresholds=run.thresholds,
        baseline=baseline,
        report_uri=f"s3://{settings.artifact_bucket}/{settings.reports_prefix}/{job}/evaluation.json",
    )
    metric("QualityGatePassed", MetricUnit.Count, 1 if result["passed"] else 0)
    logger.info("quality gate", extra={"passed": result["passed"], "cause": result["cause"]})
    return result
