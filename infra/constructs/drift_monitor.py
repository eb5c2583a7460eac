"""The drift monitor: EventBridge Scheduler -> Lambda, its report bucket, its cool-down table, its alarms.

One schedule per model invokes `functions/drift_monitor` with `{"model", "time": <scheduled time>}`. The function
reads the window's audit records (the serving stack's Object-Locked audit bucket, Firehose's day partitions),
the served registry version and its dataset manifest (the lake's datasets/), scores drift
(cnai/monitoring/drift.py), keeps the report (reports bucket, SSE-KMS) and, over a threshold, starts the train
state machine at most once per cool-down (the DynamoDB table's conditional write). Its role can do exactly
that: StartExecution and ListExecutions on the train state machine and nothing else in Step Functions; read the
audit prefix, the dataset manifests and the model's registry versions; read and write its own reports and
cool-down items.

Alarms (the stack's topic): the monitor failed, drift was found, a retrain was started, no baseline to compare.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

import aws_cdk as cdk
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_scheduler as scheduler
from constructs import Construct

from cnai.settings import environment_for
from functions.drift_monitor.settings import DriftMonitorSettings
from infra.config import DriftSettings
from infra.constructs.monitoring import Monitoring
from infra.constructs.nag import acknowledge_inline_policy
from infra.constructs.nag_findings import allow, allow_list
from infra.constructs.python_function import Invocation, PythonFunction
from infra.constructs.secure_bucket import SecureBucket
from infra.constructs.secure_table import secure_table

REPORTS_PREFIX = "drift"
AUDIT_DAYS = "year={yyyy}/month={MM}/day={dd}/"  # cnai.monitoring.monitor.window_sources fills it per day


class DriftMonitor(Construct):
    """`function` (and `monitor`, its PythonFunction), `reports` (bucket), `table` (cool-down), `schedules`
    (model -> CfnSchedule) and their `schedule_role`, `alarms`."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: DriftSettings,
        models: Sequence[str],
        group_names: Mapping[str, str],
        audit_bucket: s3.IBucket,
        audit_prefix: str,
        audit_key: kms.IKey | None,
        lake: s3.IBucket,
        lake_key: kms.IKey | None,
        datasets_prefix: str,
        state_machine_arn: str,
        key: kms.IKey,
        monitoring: Monitoring,
        layers: Sequence[lambda_.ILayerVersion] = (),
        code: lambda_.Code | None = None,
        metrics_namespace: str = "cnai",
    ) -> None:
        """`group_names`: model -> its ModelPackageGroup (Settings.package_group); `audit_prefix`: where Firehose
        writes the audit records (infra/constructs/audit_trail.py: `audit/`)."""
        super().__init__(scope, construct_id)
        if not models:
            raise ValueError("models: the drift monitor needs at least one model to watch")
        self.reports = SecureBucket(
            self,
            "Reports",
            key=key,
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="expire-reports", prefix=f"{REPORTS_PREFIX}/", expiration=cdk.Duration.days(settings.report_days)
                )
            ],
        ).bucket
        # One item per model: who started the last drift retrain and until when no other may (cnai/monitoring/
        # cooldown.py); TTL removes spent items, the condition reads `until`.
        self.table = secure_table(self, "CoolDown", partition_key="model", ttl_attribute="expires_at", key=key)
        audit_prefix = audit_prefix.strip("/")
        environment = environment_for(
            DriftMonitorSettings,
            audit_source=f"s3://{audit_bucket.bucket_name}/{audit_prefix}/{AUDIT_DAYS}",
            reports_bucket=self.reports.bucket_name,
            reports_prefix=REPORTS_PREFIX,
            cooldown_table=self.table.table_name,
            state_machine_arn=state_machine_arn,
            group_prefix=_common_prefix(models, group_names),
            window_hours=settings.window_hours,
            min_predictions=settings.min_predictions,
            thresholds=settings.thresholds(),
            cooldown_hours=settings.cooldown_hours,
            lookback_days=settings.lookback_days,
            retrain=settings.retrain,
        )
        self.monitor = PythonFunction(
            self,
            "Function",
            function="drift_monitor",
            description="cnai drift: served traffic vs the model's dataset profile; retrain at most once per cool-down",
            environment=environment,
            layers=layers,
            key=key,
            code=code,
            metrics_namespace=metrics_namespace,
            memory_size=1024,
            timeout=cdk.Duration.minutes(5),
            reserved_concurrency=1,  # one run at a time: ticks never overlap on the same cool-down
            invocation=Invocation.scheduler("DriftMonitorErrors"),
        )
        self.function = self.monitor.function
        self._grant(
            audit_bucket, audit_prefix, audit_key, lake, lake_key, datasets_prefix, state_machine_arn, key,
            [group_names[m] for m in models],
        )  # fmt: skip

        self.schedule_role = role = iam.Role(
            self,
            "ScheduleRole",
            assumed_by=iam.ServicePrincipal("scheduler.amazonaws.com"),
            description="EventBridge Scheduler: invoke the drift monitor",
        )
        acknowledge_inline_policy(role)
        allow(role, sid="InvokeMonitor", actions=["lambda:InvokeFunction"], resources=[self.function.function_arn])
        self.schedules: dict[str, scheduler.CfnSchedule] = {}
        for model in models:
            # Scheduler fills <aws.scheduler.scheduled-time>: the run's identity (a retried tick is the same run).
            payload = {"model": model, "time": "<aws.scheduler.scheduled-time>"}
            self.schedules[model] = scheduler.CfnSchedule(
                self,
                f"Schedule-{model}",
                schedule_expression=settings.schedule,
                flexible_time_window=scheduler.CfnSchedule.FlexibleTimeWindowProperty(mode="OFF"),
                target=scheduler.CfnSchedule.TargetProperty(
                    arn=self.function.function_arn,
                    role_arn=role.role_arn,
                    input=json.dumps(payload),
                    retry_policy=scheduler.CfnSchedule.RetryPolicyProperty(
                        maximum_retry_attempts=2, maximum_event_age_in_seconds=3600
                    ),
                ),
                description=f"cnai drift monitor for {model}: the last {settings.window_hours} h of traffic",
            )

        self.alarms = [monitoring.function_errors("DriftMonitorErrors", self.function, "the drift monitor")]
        for model in models:

            def drift_metric(name: str, statistic: str, model: str = model) -> cloudwatch.Metric:
                return cloudwatch.Metric(
                    namespace=metrics_namespace,
                    metric_name=name,
                    dimensions_map={"service": self.monitor.service, "model": model},
                    statistic=statistic,
                    period=cdk.Duration.hours(1),
                )

            self.alarms += [
                monitoring.above(
                    f"Drift-{model}",
                    drift_metric("DriftDetected", "Maximum"),
                    f"{model}: served traffic drifted from the training data. Read the report: "
                    f"cnai monitor report --model {model} --reports <the stack's DriftReports output>",
                ),
                monitoring.above(
                    f"DriftRetrain-{model}",
                    drift_metric("DriftRetrainStarted", "Sum"),
                    f"{model}: drift started the train workflow (at most once per {settings.cooldown_hours} h); "
                    "approve or reject the new version when it is registered",
                ),
                monitoring.above(
                    f"DriftBlind-{model}",
                    drift_metric("DriftBaselineMissing", "Maximum"),
                    f"{model}: the drift monitor found no dataset profile to compare with (no approved version, "
                    "or its manifest is unreadable); drift is not being watched",
                ),
            ]

    def _grant(
        self,
        audit_bucket: s3.IBucket,
        audit_prefix: str,
        audit_key: kms.IKey | None,
        lake: s3.IBucket,
        lake_key: kms.IKey | None,
        datasets_prefix: str,
        state_machine_arn: str,
        key: kms.IKey,
        groups: Sequence[str],
    ) -> None:
        """Exactly what one run does, named."""
        role = self.monitor.role
        stack = cdk.Stack.of(self)
        allow(
            role,
            sid="ReadAuditRecords",
            actions=["s3:GetObject"],
            resources=[audit_bucket.arn_for_objects(f"{audit_prefix}/*")],
            wildcard_reason="Firehose names each audit file (date partitions, delivery stream, time, uuid) when it "
            f"writes it: read-only, the {audit_prefix}/ prefix only.",
        )
        allow_list(role, sid="ListAuditRecords", bucket=audit_bucket, prefixes=[audit_prefix])
        allow(
            role,
            sid="ReadDatasetManifests",
            actions=["s3:GetObject"],
            resources=[lake.arn_for_objects(f"{datasets_prefix}/*/manifest.json")],
            wildcard_reason="A dataset's manifest sits under its name and content-derived version "
            f"({datasets_prefix}/<name>/<version>/manifest.json): manifests only, never the rows.",
        )
        keys = [k.key_arn for k in (audit_key, lake_key) if k is not None]
        if keys:
            allow(role, sid="ReadKeys", actions=["kms:Decrypt"], resources=keys)
        reports = self.reports.arn_for_objects(f"{REPORTS_PREFIX}/*")
        allow(
            role,
            sid="Reports",
            actions=["s3:PutObject", "s3:GetObject"],
            resources=[reports],
            wildcard_reason=f"One report per run, named by model and run time under {REPORTS_PREFIX}/.",
        )
        allow_list(role, sid="ListReports", bucket=self.reports, prefixes=[REPORTS_PREFIX])
        allow(role, sid="OwnKey", actions=["kms:Decrypt", "kms:GenerateDataKey"], resources=[key.key_arn])
        allow(
            role,
            sid="CoolDown",
            actions=["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"],
            resources=[self.table.table_arn],
        )
        allow(
            role,
            sid="StartTraining",
            actions=["states:StartExecution", "states:ListExecutions"],
            resources=[state_machine_arn],
        )
        registry = [
            *(stack.format_arn(service="sagemaker", resource="model-package-group", resource_name=g.lower())
              for g in groups),
            *(stack.format_arn(service="sagemaker", resource="model-package", resource_name=f"{g.lower()}/*")
              for g in groups),
        ]  # fmt: skip
        allow(
            role,
            sid="ReadRegistry",
            actions=["sagemaker:ListModelPackages", "sagemaker:DescribeModelPackage"],
            resources=registry,
            wildcard_reason="Model package versions are numbered by SageMaker at registration: the versions of the "
            "watched models' groups (model-package/<group>/*), no other group.",
        )


def _common_prefix(models: Sequence[str], group_names: Mapping[str, str]) -> str:
    """The deployment's group prefix: every group is `<prefix>-<model>` (Settings.package_group)."""
    prefixes = {group_names[m].removesuffix(f"-{m}") for m in models}
    if len(prefixes) != 1 or any(group_names[m] == p for m in models for p in prefixes):
        raise ValueError(f"model package groups {dict(group_names)} are not all <prefix>-<model>")
    return prefixes.pop()
