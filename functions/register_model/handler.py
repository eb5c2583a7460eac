"""Register (training workflow). Thin: the work is cnai.pipeline.register + cnai.registry.
Event: {"run", "dataset", "training", "quality", "execution_arn"}.
Answers {"model_package_arn", "version", "approval"}.
"""

from __future__ import annotations

from typing import Any

import boto3
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from cnai.observability import logger, metric, metrics, tracer
from cnai.pipeline.register import register_run
from cnai.registry.packages import Registry
from functions.register_model.settings import RegisterSettings

settings = RegisterSettings.from_env()
registry = Registry(boto3.client("sagemaker"), settings.group_prefix)


@logger.inject_lambda_context(correlation_id_path="execution_arn")
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if settings.create_group:
        registry.ensure_group(str((event.get("run") or {}).get("model", "")))
    registered = register_run(
        registry,
        image=settings.serving_image,
        run=event.get("run") or {},
        dataset=event.get("dataset") or {},
        training=event.get("training") or {},
        quality=event.get("quality") or {},
        execution_arn=str(event.get("execution_arn", "")),
    )
    metric("ModelVersionsRegistered", MetricUnit.Count, 1)
    logger.info("registered", extra=registered)
    return registered
