"""The serving audit trail: predict log lines -> CloudWatch Logs subscription -> Firehose -> S3 (Object Lock).

The predict handler writes one JSON line per call with `"cnai_audit": true` to its own log group (KMS). A
subscription filter `{ $.cnai_audit IS TRUE }` sends exactly those lines to a Firehose stream (SSE-KMS) that
decompresses the CloudWatch envelope, keeps the message only, one JSON record per line, and writes gzip files to
an audit bucket under date partitions `audit/year=YYYY/month=MM/day=DD/`. The bucket is a SecureBucket (CMK,
versioning, TLS-only, access logs) with Object Lock default retention: a record cannot be altered or deleted
before `retention_days`, not even by the account root in COMPLIANCE mode. Lines also carry a per-container
hash chain (cnai/audit/trail.py), so a gap or an edit inside a chain is visible.

Query by caller and time: a Glue table over the prefix with partition projection, and an Athena workgroup that
enforces KMS-encrypted results (see docs/serving-infra.md for the queries). Why Athena and not Logs Insights:
the log group's retention is short and mutable; the Object-Locked S3 copy is the record of truth, so the queries
run on it.

Failure of the sink: Firehose retries delivery for 24 h and writes what it could not deliver under `errors/`
in the same locked bucket; its own delivery errors go to a log group. Upstream, the handler fails closed
(cnai/audit/trail.py): a call whose record cannot be written is not answered. Both hops have an alarm that
notifies the stack's alarm topic (infra/constructs/monitoring.py).
"""

from __future__ import annotations

from collections.abc import Sequence

import aws_cdk as cdk
from aws_cdk import aws_athena as athena
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_glue as glue
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kinesisfirehose as firehose
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from constructs import Construct

from infra.constructs.monitoring import Monitoring
from infra.constructs.nag import acknowledge, acknowledge_inline_policy
from infra.constructs.python_function import log_groups_arn
from infra.constructs.secure_bucket import SecureBucket

FILTER_PATTERN = "{ $.cnai_audit IS TRUE }"
PREFIX = "audit/year=!{timestamp:yyyy}/month=!{timestamp:MM}/day=!{timestamp:dd}/"
ERROR_PREFIX = "errors/!{firehose:error-output-type}/year=!{timestamp:yyyy}/month=!{timestamp:MM}/day=!{timestamp:dd}/"
# Glue columns of one audit record (cnai/audit/trail.py AuditRecord); tests keep the two in step.
COLUMNS: Sequence[tuple[str, str]] = (
    ("cnai_audit", "boolean"),
    ("schema_version", "int"),
    ("request_id", "string"),
    ("time", "string"),
    ("caller", "struct<kind:string,id:string,account_id:string,groups:array<string>>"),
    ("source_ip", "string"),
    ("user_agent", "string"),
    ("method", "string"),
    ("path", "string"),
    ("model", "string"),
    ("model_version", "string"),
    ("package_version", "string"),
    ("backend", "string"),
    ("inputs", "array<struct<sha256:string,chars:int>>"),
    ("texts", "array<string>"),
    ("outputs", "array<struct<label:string,score:double,reason:string>>"),
    ("status", "int"),
    ("error", "string"),
    ("latency_ms", "double"),
    ("action", "struct<verb:string,target:string,reason:string,detail:map<string,string>>"),  # operator actions
    (  # generate calls
        "generation",
        "struct<prompt_sha256:string,output_sha256:string,tokens_in:int,tokens_out:int,finish_reason:string>",
    ),
    ("chain", "struct<id:string,seq:bigint,prev:string,hash:string>"),
)


class AuditTrail(Construct):
    """`bucket` (Object Lock), `stream` (Firehose), `subscription`, Glue `database`/`table`, Athena `workgroup`."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        source: logs.ILogGroup,
        key: kms.IKey,
        retention_days: int,
        lock_mode: str = "GOVERNANCE",
        database_name: str,
        monitoring: Monitoring,
        removal_policy: cdk.RemovalPolicy = cdk.RemovalPolicy.RETAIN,
    ) -> None:
        super().__init__(scope, construct_id)
        if retention_days < 1:
            raise ValueError(f"retention_days {retention_days}: the audit trail keeps records at least a day")
        duration = cdk.Duration.days(retention_days)
        lock = (
            s3.ObjectLockRetention.compliance(duration)
            if lock_mode == "COMPLIANCE"
            else s3.ObjectLockRetention.governance(duration)
        )
        self.store = SecureBucket(
            self,
            "Store",
            key=key,
            object_lock_retention=lock,
            # Records leave when the lock lets them: expiry one day after the retention period.
            lifecycle_rules=[
                s3.LifecycleRule(id="expire-after-retention", expiration=duration.plus(cdk.Duration.days(1)))
            ],
            removal_policy=removal_policy,
        )
        self.bucket = self.store.bucket
        stack = cdk.Stack.of(self)
        self.delivery_logs = logs.LogGroup(
            self,
            "DeliveryErrors",
            encryption_key=key,
            retention=logs.RetentionDays.ONE_YEAR,
            removal_policy=removal_policy,
        )
        delivery_log_stream = self.delivery_logs.add_stream("S3Delivery")
        self.delivery_role = iam.Role(
            self,
            "DeliveryRole",
            assumed_by=iam.ServicePrincipal(
                "firehose.amazonaws.com", conditions={"StringEquals": {"aws:SourceAccount": stack.account}}
            ),
            description="Firehose: write audit records to the audit bucket only",
        )
        self.delivery_role.add_to_policy(
            iam.PolicyStatement(
                actions=[
                    "s3:AbortMultipartUpload",
                    "s3:GetBucketLocation",
                    "s3:ListBucket",
                    "s3:ListBucketMultipartUploads",
                    "s3:PutObject",
                ],
                resources=[self.bucket.bucket_arn, self.bucket.arn_for_objects("*")],
            )
        )
        key.grant_encrypt_decrypt(self.delivery_role)
        self.delivery_role.add_to_policy(
            iam.PolicyStatement(actions=["logs:PutLogEvents"], resources=[self.delivery_logs.log_group_arn])
        )
        self.stream = firehose.CfnDeliveryStream(
            self,
            "Stream",
            delivery_stream_type="DirectPut",
            delivery_stream_encryption_configuration_input=firehose.CfnDeliveryStream.DeliveryStreamEncryptionConfigurationInputProperty(
                key_type="CUSTOMER_MANAGED_CMK", key_arn=key.key_arn
            ),
            extended_s3_destination_configuration=firehose.CfnDeliveryStream.ExtendedS3DestinationConfigurationProperty(
                bucket_arn=self.bucket.bucket_arn,
                role_arn=self.delivery_role.role_arn,
                prefix=PREFIX,
                error_output_prefix=ERROR_PREFIX,
                compression_format="GZIP",
                buffering_hints=firehose.CfnDeliveryStream.BufferingHintsProperty(
                    interval_in_seconds=60, size_in_m_bs=5
                ),
                encryption_configuration=firehose.CfnDeliveryStream.EncryptionConfigurationProperty(
                    kms_encryption_config=firehose.CfnDeliveryStream.KMSEncryptionConfigProperty(
                        awskms_key_arn=key.key_arn
                    )
                ),
                cloud_watch_logging_options=firehose.CfnDeliveryStream.CloudWatchLoggingOptionsProperty(
                    enabled=True,
                    log_group_name=self.delivery_logs.log_group_name,
                    log_stream_name=delivery_log_stream.log_stream_name,
                ),
                processing_configuration=firehose.CfnDeliveryStream.ProcessingConfigurationProperty(
                    enabled=True,
                    processors=[
                        _processor("Decompression", CompressionFormat="GZIP"),
                        _processor("CloudWatchLogProcessing", DataMessageExtraction="true"),
                        _processor("AppendDelimiterToRecord"),
                    ],
                ),
            ),
        )
        self.stream.node.add_dependency(self.delivery_role)
        self.subscription_role = iam.Role(
            self,
            "SubscriptionRole",
            assumed_by=iam.ServicePrincipal(
                "logs.amazonaws.com",
                conditions={"StringLike": {"aws:SourceArn": log_groups_arn(stack)}},
            ),
            description="CloudWatch Logs: put the predict function's audit lines into the audit stream",
        )
        self.subscription_role.add_to_policy(
            iam.PolicyStatement(
                actions=["firehose:PutRecord", "firehose:PutRecordBatch"], resources=[self.stream.attr_arn]
            )
        )
        self.subscription = logs.CfnSubscriptionFilter(
            self,
            "Subscription",
            log_group_name=source.log_group_name,
            filter_pattern=FILTER_PATTERN,
            destination_arn=self.stream.attr_arn,
            role_arn=self.subscription_role.role_arn,
        )
        self.subscription.node.add_dependency(self.subscription_role)
        acknowledge_inline_policy(
            self.delivery_role,
            f"{self.delivery_role.node.path}: Firehose's role writes the audit bucket, its key and its own error log "
            "group only (named resources, source-account condition); no other principal should ever hold it.",
        )
        acknowledge_inline_policy(
            self.subscription_role,
            f"{self.subscription_role.node.path}: CloudWatch Logs' role puts records into this one delivery stream; "
            "a statement that small has no reuse a managed policy would serve.",
        )
        self._glue(database_name)
        self._workgroup(key, removal_policy)
        self._alarms(source, monitoring)
        acknowledge(
            self.delivery_role,
            "AwsSolutions-IAM5",
            "Firehose writes objects under date-partitioned keys it names at delivery time: object-level actions "
            "need the bucket's /* resource; the role reaches this one audit bucket only.",
            findings=[f"Resource::<{stack.get_logical_id(_cfn(self.bucket))}.Arn>/*"],
        )
        acknowledge(
            self.delivery_role,
            "AwsSolutions-IAM5",
            "kms:GenerateDataKey*/ReEncrypt* are the grant's action families on the single audit CMK (resource is "
            "that key's ARN, not '*').",
            findings=["Action::kms:GenerateDataKey*", "Action::kms:ReEncrypt*"],
        )

    def _workgroup(self, key: kms.IKey, removal_policy: cdk.RemovalPolicy) -> None:
        """An Athena workgroup whose settings callers cannot override: results (caller ARNs, IPs) SSE-KMS."""
        self.results = SecureBucket(
            self,
            "QueryResults",
            key=key,
            access_logs=self.store.access_logs,
            lifecycle_rules=[s3.LifecycleRule(id="expire-results", expiration=cdk.Duration.days(30))],
            removal_policy=removal_policy,
        )
        stack = cdk.Stack.of(self)
        self.workgroup = athena.CfnWorkGroup(
            self,
            "WorkGroup",
            name=f"{stack.stack_name}-audit",
            description="queries over the cnai audit trail (results encrypted with the serving CMK)",
            recursive_delete_option=removal_policy == cdk.RemovalPolicy.DESTROY,
            work_group_configuration=athena.CfnWorkGroup.WorkGroupConfigurationProperty(
                enforce_work_group_configuration=True,
                publish_cloud_watch_metrics_enabled=True,
                result_configuration=athena.CfnWorkGroup.ResultConfigurationProperty(
                    output_location=f"s3://{self.results.bucket.bucket_name}/results/",
                    encryption_configuration=athena.CfnWorkGroup.EncryptionConfigurationProperty(
                        encryption_option="SSE_KMS", kms_key=key.key_arn
                    ),
                ),
            ),
        )

    def _alarms(self, source: logs.ILogGroup, monitoring: Monitoring) -> None:
        """A stuck or failing sink is loud, not silent: an alarm on each hop, both notifying the alarm topic."""
        five_minutes = cdk.Duration.minutes(5)
        freshness = cloudwatch.Metric(
            namespace="AWS/Firehose",
            metric_name="DeliveryToS3.DataFreshness",
            dimensions_map={"DeliveryStreamName": self.stream.ref},
            statistic="Maximum",
            period=five_minutes,
        )
        subscription_errors = cloudwatch.Metric(
            namespace="AWS/Logs",
            metric_name="DeliveryErrors",
            dimensions_map={
                "LogGroupName": source.log_group_name,
                "DestinationType": "Firehose",
                "FilterName": self.subscription.ref,
            },
            statistic="Sum",
            period=five_minutes,
        )
        self.alarms = [
            monitoring.above(
                "AuditDeliveryLag",
                freshness,
                "Audit records older than 15 minutes have not reached the audit bucket (Firehose delivery stuck: "
                "see its DeliveryErrors log group)",
                threshold=900,
            ),
            monitoring.above(
                "AuditSubscriptionErrors",
                subscription_errors,
                "CloudWatch Logs failed to hand audit lines to the Firehose stream: records may be missing from "
                "the audit bucket",
            ),
        ]

    def _glue(self, database_name: str) -> None:
        """A Glue database + table over `audit/`, partitions projected from the date (no crawler, no MSCK)."""
        stack = cdk.Stack.of(self)
        self.database = glue.CfnDatabase(
            self,
            "Database",
            catalog_id=stack.account,
            database_input=glue.CfnDatabase.DatabaseInputProperty(
                name=database_name, description="cnai audit trail (Object-Locked S3), for Athena"
            ),
        )
        location = f"s3://{self.bucket.bucket_name}/audit/"
        self.table = glue.CfnTable(
            self,
            "Table",
            catalog_id=stack.account,
            database_name=database_name,
            table_input=glue.CfnTable.TableInputProperty(
                name="predict_audit",
                description="one row per predict call: caller, time, model version, input hashes, outputs, status",
                table_type="EXTERNAL_TABLE",
                parameters={
                    "classification": "json",
                    "projection.enabled": "true",
                    "projection.year.type": "integer",
                    "projection.year.range": "2024,2100",
                    "projection.month.type": "integer",
                    "projection.month.range": "1,12",
                    "projection.month.digits": "2",
                    "projection.day.type": "integer",
                    "projection.day.range": "1,31",
                    "projection.day.digits": "2",
                    "storage.location.template": location + "year=${year}/month=${month}/day=${day}/",
                },
                partition_keys=[
                    glue.CfnTable.ColumnProperty(name=name, type="string") for name in ("year", "month", "day")
                ],
                storage_descriptor=glue.CfnTable.StorageDescriptorProperty(
                    location=location,
                    input_format="org.apache.hadoop.mapred.TextInputFormat",
                    output_format="org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat",
                    compressed=True,
                    serde_info=glue.CfnTable.SerdeInfoProperty(
                        serialization_library="org.openx.data.jsonserde.JsonSerDe",
                        parameters={"ignore.malformed.json": "false"},
                    ),
                    columns=[glue.CfnTable.ColumnProperty(name=n, type=t) for n, t in COLUMNS],
                ),
            ),
        )
        self.table.node.add_dependency(self.database)


def _processor(kind: str, **parameters: str) -> firehose.CfnDeliveryStream.ProcessorProperty:
    return firehose.CfnDeliveryStream.ProcessorProperty(
        type=kind,
        parameters=[
            firehose.CfnDeliveryStream.ProcessorParameterProperty(parameter_name=k, parameter_value=v)
            for k, v in parameters.items()
        ]
        or None,
    )


def _cfn(bucket: s3.IBucket) -> cdk.CfnElement:
    child = bucket.node.default_child
    assert isinstance(child, cdk.CfnElement)
    return child
