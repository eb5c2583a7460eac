"""Deploy (deploy workflow): one function, one step per state. Thin: cnai.deploy.steps dispatches the step
(release, check, promote, rollback for the predict alias; endpoint_check, endpoint_probe, endpoint_finish,
endpoint_rollback for a model routed to SageMaker Serverless) to cnai.deploy.canary or cnai.deploy.endpoint.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from cnai.deploy.canary import Clients
from cnai.deploy.steps import Steps
from cnai.observability import logger, metric, metrics, tracer
from functions.deploy_model.settings import DeployFunctionSettings

settings = DeployFunctionSettings.from_env()
steps = Steps(Clients.default(settings.group_prefix), settings.target(), settings.policy(), settings.endpoint())
DONE = {"promote": "ModelsPromoted", "endpoint_finish": "ModelsPromoted", "rollback": "ModelsRolledBack",
        "endpoint_rollback": "ModelsRolledBack"}  # fmt: skip


@logger.inject_lambda_context(correlation_id_path="execution_arn")
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    result = steps.run(event)
    step = str(event.get("step"))
    if step in DONE:
        metric(DONE[step], MetricUnit.Count, 1)
    logger.info(f"deploy {step}", extra={"result": result})
    return result
