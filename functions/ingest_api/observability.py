"""Logger, Tracer and Metrics, created once for the ingest API function."""

from __future__ import annotations

import os

from aws_lambda_powertools import Logger, Metrics, Tracer

SERVICE = os.environ.get("POWERTOOLS_SERVICE_NAME", "cnai-ingest-api")
NAMESPACE = os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "cnai")

logger = Logger(service=SERVICE)
tracer = Tracer(service=SERVICE)
metrics = Metrics(service=SERVICE, namespace=NAMESPACE)
