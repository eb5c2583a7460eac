"""Logger, Tracer and Metrics, created once per process for every cnai function and server (one configuration).

Service name, namespace and log level come from POWERTOOLS_SERVICE_NAME, POWERTOOLS_METRICS_NAMESPACE
and POWERTOOLS_LOG_LEVEL; infra sets them per function; the defaults below only apply outside a deployment
(tests, `cnai serve`).

Tracing: in Lambda (LAMBDA_TASK_ROOT set) with tracing not disabled, the Tracer uses the X-Ray SDK, with
botocore patched (TRACED_MODULES, when it is imported) rather than every library the SDK knows. Everywhere
else (tests, `cnai serve`, the benchmarks) and when POWERTOOLS_TRACE_DISABLED is true, the Tracer gets a
no-op provider, because merely constructing the X-Ray recorder costs about 150 ms of cold start on a small
CPU and nothing would receive the traces anyway.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Generator, Sequence
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.metrics.functions import is_metrics_disabled
from aws_lambda_powertools.tracing.base import BaseProvider, BaseSegment

SERVICE = os.environ.get("POWERTOOLS_SERVICE_NAME", "cnai")
NAMESPACE = os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "cnai")


class _NoSegment(BaseSegment):
    def close(self, end_time: int | None = None) -> None: ...
    def add_subsegment(self, subsegment: Any) -> None: ...
    def remove_subsegment(self, subsegment: Any) -> None: ...
    def put_annotation(self, key: str, value: Any) -> None: ...
    def put_metadata(self, key: str, value: Any, namespace: str = "default") -> None: ...
    def add_exception(self, exception: BaseException, stack: Any, remote: bool = False) -> None: ...


class _NoTracing(BaseProvider):
    """Stands in for the X-Ray recorder where no trace can be sent; every call does nothing."""

    @contextlib.contextmanager
    def in_subsegment(self, name: Any = None, **kwargs: Any) -> Generator[BaseSegment, None, None]:
        yield _NoSegment()

    @contextlib.asynccontextmanager
    async def in_subsegment_async(self, name: Any = None, **kwargs: Any) -> Any:
        yield _NoSegment()

    def put_annotation(self, key: str, value: Any) -> None: ...
    def put_metadata(self, key: str, value: Any, namespace: str = "default") -> None: ...
    def patch(self, modules: Sequence[str]) -> None: ...
    def patch_all(self) -> None: ...


def tracing_enabled() -> bool:
    disabled = os.environ.get("POWERTOOLS_TRACE_DISABLED", "false").strip().lower() in ("1", "true", "yes", "on")
    return bool(os.environ.get("LAMBDA_TASK_ROOT")) and not disabled


logger = Logger(service=SERVICE)
metrics = Metrics(service=SERVICE, namespace=NAMESPACE)
METRICS_ON = not is_metrics_disabled()


def metric(name: str, unit: MetricUnit, value: float) -> None:
    """add_metric, skipped when metrics are disabled: Powertools would otherwise keep the values and still
    print them every 100 (it skips the per-invocation flush but not the full-buffer one)."""
    if METRICS_ON:
        metrics.add_metric(name=name, unit=unit, value=value)


# The only outbound calls cnai functions make go through botocore (S3, Kinesis, SageMaker, ...). Powertools'
# default patches every library the X-Ray SDK knows that is installed (requests, httpx, sqlite3, ...),
# importing each at cold start. Here botocore is patched when botocore.session is first imported (by wrapt's
# post-import hook, the mechanism the X-Ray SDK is built on), not at init: patching imports botocore.client,
# the heavy part (~40% of the traced cold start), which a cold start that creates no AWS client never needs;
# every client is made by a botocore session, so one that does is patched before its first client exists.
# (Not on botocore.client itself: its hook runs before `botocore.client` is set on the package, which the
# patch reads.) Library -> the module whose import triggers its patch.
TRACED_MODULES = {"botocore": "botocore.session"}


def _traced() -> Tracer:
    import wrapt  # the X-Ray SDK's own dependency: present wherever tracing is on

    tracer = Tracer(service=SERVICE, auto_patch=False)
    for library, trigger in TRACED_MODULES.items():

        def patch(_module: Any, library: str = library) -> None:
            tracer.patch([library])

        wrapt.register_post_import_hook(patch, trigger)
    return tracer


tracer = (
    _traced() if tracing_enabled() else Tracer(service=SERVICE, disabled=True, auto_patch=False, provider=_NoTracing())
)
