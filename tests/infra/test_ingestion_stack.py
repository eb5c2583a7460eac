"""The ingestion stack under cdk-nag (an unacknowledged error fails synthesis): key properties of the stream,
the event source mapping, the idempotency table, the DLQ, the alarms, the data lake and least privilege.
Two configurations, each synthesized once per module: the default (on-demand) and provisioned shards."""

from __future__ import annotations

import json
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import assertions

from infra.config import IngestionSettings, Settings
from infra.constructs.nag import nag_packs
from infra.stacks.ingestion import IngestionStack

CONTEXT = {"aws:cdk:bundling-stacks": []}
ENV = cdk.Environment(account="111111111111", region="eu-west-1")
Match = assertions.Match


def synth(settings: Settings) -> tuple[IngestionStack, assertions.Template]:
    app = cdk.App(context=CONTEXT)
    stack = IngestionStack(app, "Ingestion", settings=settings, env=ENV)
    cdk.Validations.of(app).add_plugins(*nag_packs(app))
    app.synth()  # raises on any unacknowledged cdk-nag error
    return stack, assertions.Template.from_stack(stack)


@pytest.fixture(scope="module")
def default() -> tuple[IngestionStack, assertions.Template]:
    # Given the default settings / When the stack synthesizes under cdk-nag
    return synth(Settings())


@pytest.fixture(scope="module")
def provisioned() -> assertions.Template:
    ingestion = IngestionSettings(stream_mode="provisioned", shards=4, batch_size=1000, batching_window_s=20,
                                  parallelization=5, max_retries=3, retention_hours=48,
                                  max_record_age_s=86_400)  # fmt: skip
    settings = Settings(ingestion=ingestion)
    return synth(settings)[1]


def only(template: assertions.Template, kind: str, props: dict[str, Any] | None = None) -> dict[str, Any]:
    found = template.find_resources(kind, {"Properties": props} if props else None)
    assert len(found) == 1, f"{kind}: {len(found)} found"
    return next(iter(found.values()))["Properties"]


def test_stream_is_on_demand_and_encrypted_with_the_stack_cmk(default) -> None:
    _, t = default
    stream = only(t, "AWS::Kinesis::Stream")
    assert stream["StreamModeDetails"] == {"StreamMode": "ON_DEMAND"} and "ShardCount" not in stream
    assert stream["StreamEncryption"]["EncryptionType"] == "KMS"
    assert stream["StreamEncryption"]["KeyId"]["Fn::GetAtt"][1] == "Arn"
    assert stream["RetentionPeriodHours"] == 24
    for key in t.find_resources("AWS::KMS::Key").values():
        assert key["Properties"]["EnableKeyRotation"] is True


def test_provisioned_variant_sets_shards_and_mapping_knobs(provisioned) -> None:
    stream = only(provisioned, "AWS::Kinesis::Stream")
    assert stream["StreamModeDetails"] == {"StreamMode": "PROVISIONED"} and stream["ShardCount"] == 4
    mapping = only(provisioned, "AWS::Lambda::EventSourceMapping")
    assert (mapping["BatchSize"], mapping["MaximumBatchingWindowInSeconds"]) == (1000, 20)
    assert (mapping["ParallelizationFactor"], mapping["MaximumRetryAttempts"]) == (5, 3)
    assert mapping["MaximumRecordAgeInSeconds"] == 86_400


def test_event_source_mapping_reports_partial_failures_bisects_and_dead_letters(default) -> None:
    _, t = default
    mapping = only(t, "AWS::Lambda::EventSourceMapping")
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping["BisectBatchOnFunctionError"] is True
    assert mapping["StartingPosition"] == "TRIM_HORIZON"
    assert (mapping["BatchSize"], mapping["MaximumBatchingWindowInSeconds"]) == (500, 5)
    assert (mapping["MaximumRetryAttempts"], mapping["MaximumRecordAgeInSeconds"]) == (5, 21_600)
    assert mapping["ParallelizationFactor"] == 2
    destination = mapping["DestinationConfig"]["OnFailure"]["Destination"]
    assert destination["Fn::GetAtt"][0].startswith("DeadLetters")


def test_dlq_is_kms_encrypted_tls_only_and_alarmed(default) -> None:
    _, t = default
    queue = only(t, "AWS::SQS::Queue")
    assert "KmsMasterKeyId" in queue and queue["MessageRetentionPeriod"] == 14 * 24 * 3600
    policy = json.dumps(only(t, "AWS::SQS::QueuePolicy"))
    assert '"aws:SecureTransport": "false"' in policy
    t.has_resource_properties("AWS::CloudWatch::Alarm", {
        "MetricName": "ApproximateNumberOfMessagesVisible", "Threshold": 0,
        "ComparisonOperator": "GreaterThanThreshold", "AlarmActions": Match.any_value()})  # fmt: skip
    iterator_age = {
        "MetricName": "IteratorAge",
        "Namespace": "AWS/Lambda",
        "Statistic": "Maximum",
        "Threshold": 300_000,
    }
    t.has_resource_properties("AWS::CloudWatch::Alarm", iterator_age)


def test_idempotency_table_has_ttl_pitr_and_cmk(default) -> None:
    _, t = default
    table = only(t, "AWS::DynamoDB::Table")
    assert table["KeySchema"] == [{"AttributeName": "id", "KeyType": "HASH"}]
    assert table["TimeToLiveSpecification"] == {"AttributeName": "expiration", "Enabled": True}
    assert table["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
    assert table["SSESpecification"]["SSEEnabled"] is True and table["SSESpecification"]["SSEType"] == "KMS"
    assert table["BillingMode"] == "PAY_PER_REQUEST"


def test_lake_bucket_is_secure_with_lifecycle_per_prefix(default) -> None:
    _, t = default
    lake = next(
        r["Properties"]
        for r in t.find_resources("AWS::S3::Bucket").values()
        if "LoggingConfiguration" in r["Properties"]
    )
    assert lake["VersioningConfiguration"] == {"Status": "Enabled"}
    sse = lake["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"]
    assert sse["SSEAlgorithm"] == "aws:kms"
    rules = {r["Id"]: r for r in lake["LifecycleConfiguration"]["Rules"]}
    assert (
        rules["quarantine-expires"]["Prefix"] == "quarantine/" and rules["quarantine-expires"]["ExpirationInDays"] == 90
    )
    assert rules["curated-to-infrequent-access"]["Transitions"][0]["StorageClass"] == "STANDARD_IA"
    assert lake["PublicAccessBlockConfiguration"]["BlockPublicPolicy"] is True


def test_consumer_is_arm64_py312_least_privilege_with_its_env(default) -> None:
    _, t = default
    functions = t.find_resources(
        "AWS::Lambda::Function", {"Properties": {"Handler": "functions.ingest.handler.handler"}}
    )
    (consumer,) = functions.values()
    props = consumer["Properties"]
    assert props["Architectures"] == ["arm64"] and props["Runtime"] == "python3.12"
    assert props["TracingConfig"] == {"Mode": "Active"}
    env = props["Environment"]["Variables"]
    assert set(env) >= {"CNAI_LAKE_BUCKET", "CNAI_IDEMPOTENCY_TABLE", "CNAI_DEDUP_SECONDS", "POWERTOOLS_SERVICE_NAME"}
    policies = json.dumps(t.find_resources("AWS::IAM::Policy"))
    assert '"s3:PutObject"' in policies and '"s3:DeleteObject"' not in policies and '"s3:*"' not in policies
    assert '"dynamodb:*"' not in policies and '"kinesis:*"' not in policies
    assert "/curated/*" in policies and "/quarantine/*" in policies


def test_api_function_is_exposed_for_the_serving_stack_and_may_only_put(default) -> None:
    stack, t = default
    assert stack.api_function is stack.api.function
    api = t.find_resources("AWS::Lambda::Function", {"Properties": {"Handler": "functions.ingest_api.handler.handler"}})
    assert len(api) == 1
    policy = json.dumps(
        t.find_resources("AWS::IAM::Policy", {"Properties": {"Roles": [{"Ref": Match.string_like_regexp("ApiRole")}]}})
    )
    assert "kinesis:PutRecords" in policy and "kinesis:GetRecords" not in policy
    outputs = t.find_outputs("*")
    assert {"StreamName", "StreamArn", "LakeBucket", "IdempotencyTable", "DeadLetterQueueUrl",
            "ConsumerFunction", "IngestApiFunctionArn"} <= set(outputs)  # fmt: skip


def test_record_age_beyond_retention_is_refused() -> None:
    with pytest.raises(ValueError, match=r"ingestion\.max_record_age_s exceeds the stream retention"):
        IngestionSettings(retention_hours=24, max_record_age_s=100_000)


def test_dedup_window_shorter_than_retention_is_refused() -> None:
    with pytest.raises(ValueError, match=r"ingestion.dedup_days \(7 days\) is shorter than the stream retention"):
        IngestionSettings(retention_hours=8760, max_record_age_s=86_400)
    with pytest.raises(ValueError, match=r"raise ingestion\.dedup_days to at least 2"):
        IngestionSettings(retention_hours=25, dedup_days=1)
    IngestionSettings(retention_hours=8760, dedup_days=365)  # a year each: fine
    IngestionSettings(retention_hours=48, dedup_days=2)
    Settings()  # the defaults satisfy it


def test_cloudwatch_may_only_make_and_read_data_keys_for_this_account(default) -> None:
    # The alarm topic is encrypted with the stack key: CloudWatch needs Decrypt and GenerateDataKey*, no more,
    # and only for alarms of this account.
    _, t = default
    statements = [
        st
        for key in t.find_resources("AWS::KMS::Key").values()
        for st in key["Properties"]["KeyPolicy"]["Statement"]
        if st.get("Principal", {}).get("Service") == "cloudwatch.amazonaws.com"
    ]
    assert len(statements) == 1
    (statement,) = statements
    assert statement["Effect"] == "Allow"
    assert sorted(statement["Action"]) == ["kms:Decrypt", "kms:GenerateDataKey*"]
    assert statement["Condition"] == {"StringEquals": {"aws:SourceAccount": ENV.account}}
