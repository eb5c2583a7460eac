"""The ingestion stack: Kinesis stream -> consumer Lambda -> curated / quarantine objects in the data lake.

Resources: a KMS CMK (stream, idempotency table, DLQ, alarm topic, Lambda logs and environment), the data
stream (on-demand by default, provisioned shards as an option), the consumer Lambda with its event source
mapping (batch size and window, bisect on error, ReportBatchItemFailures, maximum retries and record age,
parallelization factor, SQS on-failure destination), the DynamoDB idempotency table (TTL, PITR, CMK), the
encrypted DLQ with a depth alarm, an iterator-age alarm, the data-lake bucket (SecureBucket: its own CMK,
versioning, TLS only, no public access, lifecycle, access logs) and the POST /v1/ingest function, which the
serving stack's API imports by ARN (`api_function`).
"""

from __future__ import annotations

from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kinesis as kinesis
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as sources
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from cnai.settings import environment_for
from functions.ingest.settings import IngestSettings
from functions.ingest_api.settings import IngestApiSettings
from infra.config import Settings
from infra.constructs.monitoring import Monitoring
from infra.constructs.nag import acknowledge
from infra.constructs.python_function import Invocation, PythonFunction, logs_key
from infra.constructs.runtime_layer import RuntimeLayer
from infra.constructs.secure_bucket import SecureBucket
from infra.constructs.secure_table import secure_table

CURATED = "curated"
QUARANTINE = "quarantine"
DATASETS = "datasets"


class IngestionStack(cdk.Stack):
    """Attributes: `stream`, `lake` (bucket), `table`, `dlq`, `consumer`, `api_function`, `alarm_topic`."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: Settings,
        layer_code: lambda_.Code | None = None,
        function_code: lambda_.Code | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        s = settings
        self.key = logs_key(self, "Key", description="cnai ingestion: stream, idempotency table, DLQ, logs")

        # The data lake: curated records (kept, cheaper after a month), quarantine (may hold PII: expires).
        lake = SecureBucket(
            self,
            "Lake",
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="curated-to-infrequent-access",
                    prefix=f"{CURATED}/",
                    transitions=[
                        s3.Transition(
                            storage_class=s3.StorageClass.INFREQUENT_ACCESS,
                            transition_after=cdk.Duration.days(s.ingestion.lake_ia_days),
                        )
                    ],
                ),
                s3.LifecycleRule(
                    id="quarantine-expires",
                    prefix=f"{QUARANTINE}/",
                    expiration=cdk.Duration.days(s.ingestion.lake_quarantine_days),
                ),
            ],
        )
        self.lake, self.lake_key = lake.bucket, lake.key

        provisioned = s.ingestion.stream_mode == "provisioned"
        self.stream = kinesis.Stream(
            self,
            "Stream",
            stream_mode=kinesis.StreamMode.PROVISIONED if provisioned else kinesis.StreamMode.ON_DEMAND,
            shard_count=s.ingestion.shards if provisioned else None,
            encryption=kinesis.StreamEncryption.KMS,
            encryption_key=self.key,
            retention_period=cdk.Duration.hours(s.ingestion.retention_hours),
        )
        acknowledge(
            self.stream,
            "AwsSolutions-KDS3",
            "Encrypted with this stack's customer-managed key (rotating, auditable key policy), stricter than the "
            "AWS-managed aws/kinesis key the rule looks for.",
        )

        # powertools Idempotency layout: partition key `id`, TTL attribute `expiration`.
        self.table = secure_table(self, "Idempotency", partition_key="id", ttl_attribute="expiration", key=self.key)

        self.dlq = sqs.Queue(
            self,
            "DeadLetters",
            encryption=sqs.QueueEncryption.KMS,
            encryption_master_key=self.key,
            enforce_ssl=True,
            retention_period=cdk.Duration.days(14),
        )
        acknowledge(
            self.dlq,
            "AwsSolutions-SQS3",
            "This queue is the on-failure destination of the ingest event source mapping: it is the DLQ itself.",
        )
        acknowledge(
            self.dlq,
            "Serverless-SQSRedrivePolicy",
            "This queue is itself the dead-letter queue of the ingest mapping; its messages are inspected and "
            "replayed by a person (docs/ingestion.md), so it has no further queue to redrive to.",
        )

        self.monitoring = Monitoring(
            self, "Monitoring", emails=settings.monitoring.alarm_emails, namespace=settings.project
        )
        self.alarm_topic = self.monitoring.topic

        layer = RuntimeLayer(self, "Runtime", code=layer_code)
        self.consumer = PythonFunction(
            self,
            "Consumer",
            function="ingest",
            description="cnai ingest: Kinesis batch -> validate, normalize, redact, dedup -> S3 data lake",
            environment=environment_for(
                IngestSettings,
                lake_bucket=self.lake.bucket_name,
                idempotency_table=self.table.table_name,
                curated_prefix=CURATED,
                quarantine_prefix=QUARANTINE,
                dedup_seconds=s.ingestion.dedup_days * 24 * 3600,
            ),
            metrics_namespace=s.project,
            layers=[layer.layer],
            memory_size=s.ingestion.memory_mb,
            timeout=cdk.Duration.minutes(2),
            reserved_concurrency=s.ingestion.consumer_reserved_concurrency,
            invocation=Invocation.kinesis(self.dlq.node.path),
            key=self.key,
            code=function_code,
        )
        consumer_role = self.consumer.role
        # Writes only under its two prefixes; never reads or deletes lake objects.
        consumer_role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["s3:PutObject"],
                resources=[self.lake.arn_for_objects(f"{CURATED}/*"), self.lake.arn_for_objects(f"{QUARANTINE}/*")],
            )
        )
        consumer_role.add_to_principal_policy(
            iam.PolicyStatement(actions=["kms:GenerateDataKey", "kms:Encrypt"], resources=[self.lake_key.key_arn])
        )
        consumer_role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"],
                resources=[self.table.table_arn],
            )
        )
        # Table items and DLQ messages are encrypted with the stack key (named actions, no wildcards).
        consumer_role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey", "kms:DescribeKey"],
                resources=[self.key.key_arn],
            )
        )

        self.mapping = sources.KinesisEventSource(
            self.stream,
            starting_position=lambda_.StartingPosition.TRIM_HORIZON,
            batch_size=s.ingestion.batch_size,
            max_batching_window=cdk.Duration.seconds(s.ingestion.batching_window_s),
            bisect_batch_on_error=True,
            report_batch_item_failures=True,
            retry_attempts=s.ingestion.max_retries,
            max_record_age=cdk.Duration.seconds(s.ingestion.max_record_age_s),
            parallelization_factor=s.ingestion.parallelization,
            on_failure=sources.SqsDlq(self.dlq),
        )
        self.consumer.function.add_event_source(self.mapping)

        self.api = PythonFunction(
            self,
            "Api",
            function="ingest_api",
            description="cnai POST /v1/ingest: validate records with the record contract, PutRecords",
            environment=environment_for(IngestApiSettings, stream=self.stream.stream_name),
            metrics_namespace=s.project,
            layers=[layer.layer],
            memory_size=512,
            timeout=cdk.Duration.seconds(29),  # API Gateway's integration limit
            # One producer flooding POST /v1/ingest is throttled (429) here instead of starving predict.
            reserved_concurrency=s.ingestion.api_reserved_concurrency,
            invocation=Invocation.api(),
            key=self.key,
            code=function_code,
        )
        self.api.role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["kinesis:PutRecords", "kinesis:PutRecord", "kinesis:DescribeStreamSummary"],
                resources=[self.stream.stream_arn],
            )
        )
        self.api.role.add_to_principal_policy(
            iam.PolicyStatement(actions=["kms:GenerateDataKey", "kms:Encrypt"], resources=[self.key.key_arn])
        )
        self.api_function: lambda_.IFunction = self.api.function

        self._alarms(s)
        self._acknowledge()
        for output_id, value in {
            "StreamName": self.stream.stream_name,
            "StreamArn": self.stream.stream_arn,
            "LakeBucket": self.lake.bucket_name,
            "IdempotencyTable": self.table.table_name,
            "DeadLetterQueueUrl": self.dlq.queue_url,
            "ConsumerFunction": self.consumer.function.function_name,
            "IngestApiFunctionArn": self.api_function.function_arn,
        }.items():
            cdk.CfnOutput(self, output_id, value=value)

    def _alarms(self, s: Settings) -> None:
        watch = self.monitoring
        watch.alarm(
            "IteratorAgeAlarm",
            metric=self.consumer.function.metric("IteratorAge", statistic="Maximum", period=cdk.Duration.minutes(1)),
            description="The ingest consumer is falling behind the stream (records wait too long).",
            threshold=s.ingestion.iterator_age_alarm_s * 1000,
            evaluation_periods=5,
            datapoints_to_alarm=3,
        )
        watch.above(
            "DeadLetterAlarm",
            self.dlq.metric_approximate_number_of_messages_visible(statistic="Maximum", period=cdk.Duration.minutes(1)),
            "Ingest batches were dead-lettered: records were not curated. Inspect the DLQ.",
        )
        watch.function_errors(
            "ConsumerErrorsAlarm", self.consumer.function, "The ingest consumer (whole batches retried)"
        )
        watch.above(
            "ClaimErrorsAlarm",
            watch.custom_metric("ClaimErrors", service=self.consumer.service),
            "The ingest consumer could not release or complete idempotency claims: a redelivered record may be "
            "skipped until its claim expires (see docs/ingestion.md, ClaimErrors).",
        )
        watch.function_errors("ApiErrorsAlarm", self.api.function, "The POST /v1/ingest function")

    def _acknowledge(self) -> None:
        acknowledge(
            self.consumer.role,
            "AwsSolutions-IAM5",
            "PutObject is limited to the curated/ and quarantine/ prefixes of the data-lake bucket; object "
            "names are generated per batch, so a prefix wildcard is the narrowest possible grant.",
            findings=[
                f"Resource::<{self.get_logical_id(self._lake_cfn())}.Arn>/{CURATED}/*",
                f"Resource::<{self.get_logical_id(self._lake_cfn())}.Arn>/{QUARANTINE}/*",
            ],
        )

        acknowledge(
            self.consumer.role,
            "AwsSolutions-IAM5",
            "kms:GenerateDataKey* and kms:ReEncrypt* come from CDK's SqsDlq grant (queue.grantSendMessages) so "
            "Lambda can put on-failure records on the encrypted DLQ; the resource is the one stack key.",
            findings=["Action::kms:GenerateDataKey*", "Action::kms:ReEncrypt*"],
        )

    def _lake_cfn(self) -> cdk.CfnElement:
        child = self.lake.node.default_child
        assert isinstance(child, cdk.CfnElement)
        return child
