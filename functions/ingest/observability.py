"""Logger, Tracer and Metrics, created once for the ingest consumer (one place, one configuration).

Service name, namespace and log level come from POWERTOOLS_SERVICE_NAME, POWERTOOLS_METRICS_NAMESPACE and
POWERTOOLS_LOG_LEVEL; the defaults only apply outside a deployment. Outside Lambda the Tracer is off.
"""

from __future__ import annotations

import os

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit

from cnai.ingest_consumer import BatchReport

SERVICE = os.environ.get("POWERTOOLS_SERVICE_NAME", "cnai-ingest")
NAMESPACE = os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "cnai")

logger = Logger(service=SERVICE)
tracer = Tracer(service=SERVICE)
metrics = Metrics(service=SERVICE, namespace=NAMESPACE)


def emit(report: BatchReport) -> None:
    """One batch's figures as EMF metrics plus one structured log line (the invariant included)."""
    metrics.add_metric(name="RecordsIn", unit=MetricUnit.Count, value=report.records_in)
    metrics.add_metric(name="RecordsCurated", unit=MetricUnit.Count, value=report.curated)
    metrics.add_metric(name="RecordsQuarantined", unit=MetricUnit.Count, value=report.quarantined)
    metrics.add_metric(name="DuplicatesSkipped", unit=MetricUnit.Count, value=report.duplicates)
    metrics.add_metric(name="RecordsFailed", unit=MetricUnit.Count, value=report.failed)
    metrics.add_metric(name="ClaimErrors", unit=MetricUnit.Count, value=report.claim_errors)
    metrics.add_metric(name="BatchLatency", unit=MetricUnit.Milliseconds, value=report.seconds * 1000)
    for kind, count in sorted(report.redactions.items()):
        metrics.add_metric(name=f"Redacted_{kind}", unit=MetricUnit.Count, value=count)
    logger.info(
        "batch processed",
        extra={
            "records_in": report.records_in,
            "curated": report.curated,
            "quarantined": report.quarantined,
            "duplicates": report.duplicates,
            "failed": report.failed,
            "claim_errors": report.claim_errors,
            "balanced": report.balanced,
            "objects": report.objects,
            "failed_sequence_numbers": report.failed_sequence_numbers,
        },
    )
