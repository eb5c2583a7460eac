"""PrepareDataset (training workflow, first state). Thin: settings, clients, observability; the work is
cnai.pipeline.prepare. Event: {"input": <execution input>, "execution_arn", "execution_name"}.
Answers {"run": <normalized input>, "dataset": {...}}; a refused dataset raises DatasetRefusedError (the
state's error name) with a cause naming the rule and the figures.
"""

from __future__ import annotations

from typing import Any

import boto3
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from cnai.observability import logger, metric, metrics, tracer
from cnai.pipeline.athena import AthenaRunner
from cnai.pipeline.input import parse_run
from cnai.pipeline.prepare import AthenaConfig, DatasetRefusedError, Limits, prepare_dataset
from functions.prepare_dataset.settings import PrepareSettings

settings = PrepareSettings.from_env()
s3 = boto3.client("s3")
athena_config = (
    AthenaConfig(settings.athena_workgroup, settings.glue_database, settings.glue_table)
    if settings.athena_workgroup and settings.glue_database and settings.glue_table
    else None
)
athena = (
    None
    if athena_config is None
    else AthenaRunner(boto3.client("athena"), athena_config.workgroup, athena_config.database)
)


@logger.inject_lambda_context(correlation_id_path="execution_arn")
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    run = parse_run(event.get("input")).with_job_name(settings.job_prefix, event.get("execution_arn"))
    try:
        dataset = prepare_dataset(
            run,
            s3=s3,
            bucket=settings.lake_bucket,
            curated_prefix=settings.curated_prefix,
            datasets_prefix=settings.datasets_prefix,
            limits=Limits(settings.max_objects, settings.max_bytes),
            athena=athena,
            athena_config=athena_config,
        )
    except DatasetRefusedError:
        metric("DatasetsRefused", MetricUnit.Count, 1)
        raise
    metric("DatasetRows", MetricUnit.Count, dataset["rows"]["train"] + dataset["rows"]["test"])
    logger.info("dataset ready", extra={"job_name": run.job_name, "dataset": dataset})
    return {"run": run.payload(), "dataset": dataset}
