"""The predict Lambda behind API Gateway (REST proxy): settings, the API (models + audit trail), decorators.

Everything else (routes, errors, 415/405, the audit record of every predict call) is cnai.serving.api, the
same code `cnai serve` runs. The model is loaded once per container, at init (module import).
"""

from __future__ import annotations

import time

_INIT_STARTED = time.perf_counter()

from collections.abc import Callable  # noqa: E402 - the init timer must start before the imports it measures
from typing import Any  # noqa: E402

from aws_lambda_powertools.utilities.typing import LambdaContext  # noqa: E402

from cnai.errors import CnaiError  # noqa: E402
from cnai.observability import METRICS_ON, logger, metrics, tracer  # noqa: E402
from cnai.serving.api import ServingOptions, build_api  # noqa: E402
from cnai.serving.live import LiveStatus  # noqa: E402
from functions.predict.settings import load_settings  # noqa: E402

try:
    SETTINGS = load_settings()
    # GET /v1/models/{model}: this function's alias (canary weights) and the registry's approval, read on demand
    LIVE = LiveStatus(package_group=SETTINGS.model_package_group)
    API = build_api(ServingOptions.of(SETTINGS), init_started=_INIT_STARTED, live=LIVE)
except CnaiError as exc:  # stop the container at init, with the reason in the log
    logger.error("predict function cannot start", extra={"problem": str(exc)})
    raise


def _handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    # The correlation id is API Gateway's request id (correlation_paths.API_GATEWAY_REST), read directly: the
    # decorator's JMESPath query of that path cost more per call than the audit hash of a short text.
    request = event.get("requestContext") if isinstance(event, dict) else None
    logger.set_correlation_id(request.get("requestId") if isinstance(request, dict) else None)
    return API.handle(event, context)


# The cookbook's decorator order: context + correlation id, metrics flush, tracing. With metrics disabled
# (POWERTOOLS_METRICS_DISABLED) there is nothing to flush, so log_metrics is left out; with tracing off
# (outside Lambda, or POWERTOOLS_TRACE_DISABLED) there is nothing to trace, so capture_lambda_handler is too.
_traced: Callable[..., dict[str, Any]] = (
    _handler if tracer.disabled else tracer.capture_lambda_handler(_handler, capture_response=False)
)
_measured = metrics.log_metrics(_traced, capture_cold_start_metric=True) if METRICS_ON else _traced
handler = logger.inject_lambda_context(_measured, log_event=False)

logger.info(
    "predict function ready",
    extra={"init_ms": round(API.init_ms or 0.0, 1), "models": sorted(API.service.backends)},
)
