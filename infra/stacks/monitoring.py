"""The monitoring stack: the scheduled drift monitor that closes the loop from served traffic back to training.

Reads `settings.drift` (schedule, window, thresholds, cool-down), `settings.training.models` (one schedule per
model, their registry groups) and `settings.monitoring` (who hears its alarms). What it watches belongs to the
other stacks and is imported explicitly (infra/constructs/nag_findings.imported): the audit bucket and its key
(serving), the lake and its key (ingestion: the dataset manifests), the train state machine (training). A stack
of its own, so the monitor deploys, changes and is switched off (`cnai:drift.enabled=false`) without touching
the stacks it reads.
"""

from __future__ import annotations

from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from constructs import Construct

from infra.config import Settings
from infra.constructs.drift_monitor import REPORTS_PREFIX, DriftMonitor
from infra.constructs.monitoring import Monitoring
from infra.constructs.nag_findings import imported
from infra.constructs.python_function import logs_key
from infra.constructs.runtime_layer import RuntimeLayer

AUDIT_PREFIX = "audit"  # infra/constructs/audit_trail.py PREFIX: audit/year=.../month=.../day=.../
DATASETS_PREFIX = "datasets"  # infra/stacks/training.py DATASETS


class MonitoringStack(cdk.Stack):
    """Attributes: `drift` (DriftMonitor), `monitoring` (the stack's alarm topic), `key`."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: Settings,
        audit_bucket: s3.IBucket,
        audit_key: kms.IKey | None,
        lake: s3.IBucket,
        lake_key: kms.IKey | None,
        state_machine_arn: str,
        state_machine_owner: Construct | None = None,
        layer_code: lambda_.Code | None = None,
        function_code: lambda_.Code | None = None,
        **kwargs: Any,
    ) -> None:
        """`state_machine_owner`: the construct whose attribute `state_machine_arn` is (the training stack's state
        machine), so the import is made explicit; None when the ARN is a literal (tests)."""
        super().__init__(scope, construct_id, **kwargs)
        audit_bucket = s3.Bucket.from_bucket_attributes(
            self,
            "AuditBucket",
            bucket_arn=imported(self, audit_bucket, audit_bucket.bucket_arn),
            bucket_name=imported(self, audit_bucket, audit_bucket.bucket_name),
        )
        lake = s3.Bucket.from_bucket_attributes(
            self,
            "Lake",
            bucket_arn=imported(self, lake, lake.bucket_arn),
            bucket_name=imported(self, lake, lake.bucket_name),
        )
        if audit_key is not None:
            audit_key = kms.Key.from_key_arn(self, "AuditKey", imported(self, audit_key, audit_key.key_arn))
        if lake_key is not None:
            lake_key = kms.Key.from_key_arn(self, "LakeKey", imported(self, lake_key, lake_key.key_arn))
        if state_machine_owner is not None:
            state_machine_arn = imported(self, state_machine_owner, state_machine_arn)
        self.key = logs_key(self, "Key", description="cnai monitoring: drift reports, cool-down table, logs")
        self.monitoring = Monitoring(
            self, "Monitoring", emails=settings.monitoring.alarm_emails, namespace=settings.project
        )
        layer = RuntimeLayer(self, "Runtime", code=layer_code)
        models = settings.training.models
        self.drift = DriftMonitor(
            self,
            "Drift",
            settings=settings.drift,
            models=models,
            group_names={m: settings.package_group(m) for m in models},
            audit_bucket=audit_bucket,
            audit_prefix=AUDIT_PREFIX,
            audit_key=audit_key,
            lake=lake,
            lake_key=lake_key,
            datasets_prefix=DATASETS_PREFIX,
            state_machine_arn=state_machine_arn,
            key=self.key,
            monitoring=self.monitoring,
            layers=[layer.layer],
            code=function_code,
            metrics_namespace=settings.project,
        )
        cdk.CfnOutput(self, "DriftReports", value=f"s3://{self.drift.reports.bucket_name}/{REPORTS_PREFIX}")
        cdk.CfnOutput(self, "DriftMonitorFunction", value=self.drift.function.function_name)
        cdk.CfnOutput(self, "DriftCoolDownTable", value=self.drift.table.table_name)
        cdk.CfnOutput(self, "TopicArn", value=self.monitoring.topic.topic_arn)
