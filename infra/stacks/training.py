"""The training stack: the "train" workflow, its four functions, the artifacts bucket, the model registry groups,
the notification topic and the optional schedule.

Reads `settings.training` (instance, spot, limits, image version, models, schedule) and `settings.monitoring`
(who is told). The data lake (where PrepareDataset reads curated records and writes snapshots) comes from the
ingestion stack; a test passes an imported bucket.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_scheduler as scheduler
from constructs import Construct

from cnai.settings import environment_for
from functions.notify.settings import NotifySettings
from functions.prepare_dataset.settings import PrepareSettings
from functions.quality_gate.settings import QualityGateSettings
from functions.register_model.settings import RegisterSettings
from infra.config import Settings
from infra.constructs.framework_image import framework_image
from infra.constructs.lake_catalog import LakeCatalog
from infra.constructs.model_registry import ModelRegistry
from infra.constructs.monitoring import Monitoring
from infra.constructs.nag import acknowledge_inline_policy
from infra.constructs.nag_findings import allow, allow_list, imported
from infra.constructs.python_function import PythonFunction, logs_key
from infra.constructs.runtime_layer import RuntimeLayer
from infra.constructs.sagemaker_serverless import serving_image
from infra.constructs.secure_bucket import SecureBucket
from infra.constructs.training_code import TrainingCode
from infra.constructs.training_workflow import CHECKPOINTS, OUTPUT, TrainingWorkflow

CURATED = "curated"
DATASETS = "datasets"
REPORTS = "evaluations"


class TrainingStack(cdk.Stack):
    """Attributes: `workflow`, `state_machine`, `artifacts` (bucket), `key`, `registry`, `topic`, `functions`."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: Settings,
        lake: s3.IBucket,
        lake_key: kms.IKey | None,
        layer_code: lambda_.Code | None = None,
        function_code: lambda_.Code | None = None,
        capacity_retry_s: int = 300,
        **kwargs: Any,
    ) -> None:
        """`capacity_retry_s`: the first wait before TrainAndDistill retries a quota/capacity error (5 minutes; the
        local platform may shorten it, moto's interpreter really sleeps)."""
        super().__init__(scope, construct_id, **kwargs)
        t = settings.training
        # The lake belongs to the ingestion stack: import its attributes explicitly (see nag_findings.imported).
        lake_name = imported(self, lake, lake.bucket_name)
        lake = s3.Bucket.from_bucket_attributes(
            self, "Lake", bucket_arn=imported(self, lake, lake.bucket_arn), bucket_name=lake_name
        )
        if lake_key is not None:
            lake_key = kms.Key.from_key_arn(self, "LakeKey", imported(self, lake_key, lake_key.key_arn))
        self.job_prefix = f"{settings.prefix}-train"
        self.key = logs_key(self, "Key", description="cnai training: artifacts, job volumes and output, logs")
        self.artifacts = SecureBucket(
            self,
            "Artifacts",
            key=self.key,
            lifecycle_rules=[
                # Checkpoints matter while a job can still resume; afterwards the model in training/ is the result.
                s3.LifecycleRule(id="expire-checkpoints", prefix=f"{CHECKPOINTS}/", expiration=cdk.Duration.days(30))
            ],
        ).bucket
        self.registry = ModelRegistry(self, "Registry", groups={m: settings.package_group(m) for m in t.models})
        self.monitoring = Monitoring(
            self, "Monitoring", emails=settings.monitoring.alarm_emails, namespace=settings.project
        )
        self.topic = self.monitoring.topic

        training_image = framework_image(
            self,
            "TrainingImage",
            version=t.framework_version,
            py_version=t.py_version,
            instance_type=t.instance_type,
            image_scope="training",
        )
        # Register names the image the SageMaker Serverless endpoint serves the package with: the same one.
        serving = serving_image(self, settings.serving.endpoint.image_uri)
        self.code = TrainingCode(self, "Code")

        # Large ranges: Athena over the curated lake (PrepareDataset switches above the configured size).
        self.catalog = LakeCatalog(
            self,
            "LakeCatalog",
            database=f"{settings.prefix}_lake".replace("-", "_"),
            lake=lake,
            curated_prefix=CURATED,
            results=self.artifacts,
            key=self.key,
            workgroup=f"{settings.prefix}-snapshots",
        )

        layer = RuntimeLayer(self, "Runtime", code=layer_code)
        group_prefix = settings.prefix

        def function(
            construct_id: str, name: str, description: str, env: Mapping[str, str], **kw: Any
        ) -> PythonFunction:
            return PythonFunction(
                self,
                construct_id,
                function=name,
                description=description,
                environment=dict(env),
                layers=[layer.layer],
                key=self.key,
                code=function_code,
                metrics_namespace=settings.project,
                **kw,
            )

        prepare = function(
            "PrepareDataset",
            "prepare_dataset",
            "cnai train: freeze a date range of the lake into a snapshot (or validate a manifest)",
            environment_for(
                PrepareSettings,
                lake_bucket=lake.bucket_name,
                job_prefix=self.job_prefix,
                curated_prefix=CURATED,
                datasets_prefix=DATASETS,
                max_objects=t.prepare_lambda_max_objects,
                max_bytes=t.prepare_lambda_max_mb * 1024 * 1024,
                athena_workgroup=self.catalog.workgroup,
                glue_database=self.catalog.database,
                glue_table=self.catalog.table,
            ),
            memory_size=3008,
            timeout=cdk.Duration.minutes(15),
        )
        quality = function(
            "QualityGate",
            "quality_gate",
            "cnai train: model card + evaluation report vs thresholds and the approved version",
            environment_for(
                QualityGateSettings,
                artifact_bucket=self.artifacts.bucket_name,
                reports_prefix=REPORTS,
                group_prefix=group_prefix,
            ),
            memory_size=1024,
            timeout=cdk.Duration.minutes(5),
        )
        register = function(
            "Register",
            "register_model",
            "cnai train: a new model package version with metrics and lineage",
            environment_for(RegisterSettings, group_prefix=group_prefix, serving_image=serving.uri),
            memory_size=512,
            timeout=cdk.Duration.minutes(2),
        )
        notify = function(
            "Notify",
            "notify",
            "cnai train: publish the run's outcome (console link, version, metrics, cost) to SNS",
            environment_for(NotifySettings, topic_arn=self.topic.topic_arn),
            memory_size=256,
            timeout=cdk.Duration.seconds(30),
        )
        self.functions = {
            "prepare_dataset": prepare,
            "quality_gate": quality,
            "register_model": register,
            "notify": notify,
        }
        self._grant_functions(lake, lake_key, serving.repository_arn)
        for name, f in self.functions.items():
            self.monitoring.function_errors(f"{f.node.id}Errors", f.function, f"training workflow step {name}")

        self.workflow = TrainingWorkflow(
            self,
            "Workflow",
            state_machine_name=f"{settings.prefix}-train",
            job_prefix=self.job_prefix,
            project=settings.project,
            functions={name: f.function for name, f in self.functions.items()},
            artifacts=self.artifacts,
            key=self.key,
            datasets=lake,
            datasets_key=lake_key,
            datasets_prefix=DATASETS,
            code_uri=self.code.s3_uri,
            code_bucket=self.code.asset.bucket,
            code_key=self.code.asset.s3_object_key,
            image_uri=training_image.uri,
            image_repository_arn=training_image.repository_arn,
            volume_gb=t.volume_gb,
            augment_generator=t.augment_generator,
            capacity_retry=cdk.Duration.seconds(capacity_retry_s),
        )
        self.state_machine = self.workflow.state_machine
        self.monitoring.alarm(
            "ExecutionsFailed",
            metric=self.state_machine.metric_failed(period=cdk.Duration.minutes(5), statistic="Sum"),
            description=f"{self.state_machine.state_machine_name}: an execution failed (see the NotifyFailure message)",
            threshold=0,
        )
        if t.schedule:
            self._schedule(t.schedule, t.schedule_lookback_days, t.models)

        cdk.CfnOutput(self, "StateMachineArn", value=self.state_machine.state_machine_arn)
        cdk.CfnOutput(self, "ArtifactsBucket", value=self.artifacts.bucket_name)
        cdk.CfnOutput(self, "TopicArn", value=self.topic.topic_arn)
        cdk.CfnOutput(self, "JobPrefix", value=self.job_prefix)
        cdk.CfnOutput(self, "ModelPackageGroups", value=",".join(self.registry.names.values()))

    def _grant_functions(self, lake: s3.IBucket, lake_key: kms.IKey | None, serving_repository_arn: str) -> None:
        """Each function gets what its step does, named: no bucket-wide or registry-wide rights."""
        prepare, quality, register, notify = (self.functions[n].role for n in FUNCTION_ORDER)
        lake_reason = (
            f"PrepareDataset reads the curated records of the requested dates ({CURATED}/<date>/...) and writes "
            f"or re-reads the snapshot files ({DATASETS}/<name>/<version>/...): fixed prefixes, object names per run."
        )
        allow(
            prepare,
            sid="ReadCuratedAndSnapshots",
            actions=["s3:GetObject"],
            resources=[lake.arn_for_objects(f"{CURATED}/*"), lake.arn_for_objects(f"{DATASETS}/*")],
            wildcard_reason=lake_reason,
        )
        allow(
            prepare,
            sid="WriteSnapshots",
            # Delete: the Athena path clears an interrupted attempt's UNLOAD target and renames the parts.
            actions=["s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"],
            resources=[lake.arn_for_objects(f"{DATASETS}/*")],
            wildcard_reason=lake_reason,
        )
        # The Athena path: queries run with the caller's rights, so Athena reads the curated table and writes
        # the UNLOAD parts (above) and the query results (here) as PrepareDataset.
        allow(
            prepare,
            sid="AthenaQueries",
            actions=[
                "athena:StartQueryExecution",
                "athena:GetQueryExecution",
                "athena:GetQueryResults",
                "athena:StopQueryExecution",
                "athena:GetWorkGroup",
            ],
            resources=[self.catalog.workgroup_arn],
        )
        allow(
            prepare,
            sid="GlueTable",
            actions=["glue:GetDatabase", "glue:GetTable", "glue:GetPartitions"],
            resources=self.catalog.glue_arns,
        )
        allow(
            prepare,
            sid="QueryResults",
            actions=["s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload"],
            resources=[self.artifacts.arn_for_objects(f"{self.catalog.results_prefix}/*")],
            wildcard_reason="Athena names each query's result files (<query id>.csv, .metadata) under the "
            "workgroup's fixed athena/ prefix at run time.",
        )
        allow(prepare, sid="ResultsLocation", actions=["s3:GetBucketLocation"], resources=[self.artifacts.bucket_arn])
        allow_list(prepare, sid="ListResults", bucket=self.artifacts, prefixes=[self.catalog.results_prefix])
        allow(
            prepare,
            sid="LakeLocation",
            actions=["s3:GetBucketLocation"],
            resources=[lake.bucket_arn],
        )
        allow(prepare, sid="ResultsKey", actions=["kms:Decrypt", "kms:GenerateDataKey"], resources=[self.key.key_arn])
        allow_list(prepare, sid="ListLake", bucket=lake, prefixes=[CURATED, DATASETS])
        if lake_key is not None:
            allow(prepare, sid="LakeKey", actions=["kms:Decrypt", "kms:GenerateDataKey"], resources=[lake_key.key_arn])
        artifact_objects = {prefix: self.artifacts.arn_for_objects(f"{prefix}/*") for prefix in (OUTPUT, REPORTS)}
        reason = (
            f"The job's model.tar.gz (under {OUTPUT}/<job>/output/) and the evaluation report (under "
            f"{REPORTS}/<job>/) are named per training job at run time: fixed prefixes, no other object."
        )
        allow(
            quality,
            sid="ReadModel",
            actions=["s3:GetObject"],
            resources=[artifact_objects[OUTPUT]],
            wildcard_reason=reason,
        )
        allow(
            quality,
            sid="WriteReport",
            actions=["s3:PutObject"],
            resources=[artifact_objects[REPORTS]],
            wildcard_reason=reason,
        )
        registry = [*self.registry.group_arns(), *self.registry.package_arns()]
        registry_reason = (
            "Model package versions are numbered by SageMaker at registration: the resource is the versions of "
            "this deployment's groups (model-package/<group>/*), no other group."
        )
        for role in (quality, register):
            allow(
                role,
                sid="ArtifactKey",
                actions=["kms:Decrypt", "kms:GenerateDataKey"],
                resources=[self.key.key_arn],
            )
            allow(
                role,
                sid="ReadRegistry",
                actions=[
                    "sagemaker:ListModelPackages",
                    "sagemaker:DescribeModelPackage",
                    "sagemaker:DescribeModelPackageGroup",
                ],
                resources=registry,
                wildcard_reason=registry_reason,
            )
        allow(
            register,
            sid="RegisterVersion",
            actions=["sagemaker:CreateModelPackage", "sagemaker:AddTags"],
            resources=registry,
            wildcard_reason=registry_reason,
        )
        # CreateModelPackage validates that the caller can read the model data and the report it points at.
        allow(
            register,
            sid="ReadModelAndReport",
            actions=["s3:GetObject"],
            resources=list(artifact_objects.values()),
            wildcard_reason=reason,
        )
        allow(
            register,
            sid="ServingImage",
            actions=["ecr:BatchGetImage", "ecr:DescribeImages"],
            resources=[serving_repository_arn],
        )
        allow(notify, sid="Publish", actions=["sns:Publish"], resources=[self.topic.topic_arn])
        allow(
            notify,
            sid="TopicKey",
            actions=["kms:Decrypt", "kms:GenerateDataKey"],
            resources=[self.monitoring.key.key_arn],
        )

    def _schedule(self, expression: str, lookback_days: int, models: tuple[str, ...]) -> None:
        """EventBridge Scheduler starts one execution per model on the expression (off unless configured)."""
        role = iam.Role(
            self,
            "ScheduleRole",
            assumed_by=iam.ServicePrincipal("scheduler.amazonaws.com"),
            description="EventBridge Scheduler: start the train workflow",
        )
        acknowledge_inline_policy(role)
        self.state_machine.grant_start_execution(role)
        for model in models:
            # The input names a relative range; PrepareDataset resolves it against the scheduled time.
            # <aws.scheduler.scheduled-time> is filled in by Scheduler at each run.
            payload = {
                "model": model,
                "dataset": {"last_days": lookback_days, "until": "<aws.scheduler.scheduled-time>"},
            }
            scheduler.CfnSchedule(
                self,
                f"Schedule-{model}",
                schedule_expression=expression,
                flexible_time_window=scheduler.CfnSchedule.FlexibleTimeWindowProperty(mode="OFF"),
                target=scheduler.CfnSchedule.TargetProperty(
                    arn=self.state_machine.state_machine_arn, role_arn=role.role_arn, input=json.dumps(payload)
                ),
                description=f"cnai train {model} on the last {lookback_days} days of the lake",
            )


FUNCTION_ORDER = ("prepare_dataset", "quality_gate", "register_model", "notify")
