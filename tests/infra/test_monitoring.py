"""The monitoring construct on a bare stack (topic, key, policies, subscriptions, alarm actions), and across the
whole synthesized app: every alarm of every stack notifies that stack's alarm topic, so every alarm reaches a
person."""

from __future__ import annotations

import json
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import assertions
from aws_cdk import aws_cloudwatch as cloudwatch

from infra.constructs.monitoring import Monitoring
from infra.constructs.nag import nag_packs

ACCOUNT = "111111111111"


@pytest.fixture(scope="module")
def bare() -> assertions.Template:
    # Given a bare stack with a Monitoring construct, two email addresses and one alarm made through it
    app = cdk.App()
    stack = cdk.Stack(app, "Bare", env=cdk.Environment(account=ACCOUNT, region="eu-west-1"))
    watch = Monitoring(stack, "Monitoring", emails=("ops@example.com", "oncall@example.com"), namespace="cnai")
    watch.above("Failures", watch.custom_metric("Failures", service="predict"), "something failed: look at X")
    cdk.Validations.of(app).add_plugins(*nag_packs(app))
    # When it synthesizes under cdk-nag (an unacknowledged finding fails)
    app.synth()
    return assertions.Template.from_stack(stack)


def only(template: assertions.Template, kind: str) -> dict[str, Any]:
    found = template.find_resources(kind)
    assert len(found) == 1, f"{kind}: {len(found)} found"
    return next(iter(found.values()))["Properties"]


def test_topic_is_encrypted_with_its_own_rotating_key(bare: assertions.Template) -> None:
    topic = only(bare, "AWS::SNS::Topic")
    key_id = next(iter(bare.find_resources("AWS::KMS::Key")))
    assert topic["KmsMasterKeyId"] == {"Fn::GetAtt": [key_id, "Arn"]}
    assert only(bare, "AWS::KMS::Key")["EnableKeyRotation"] is True


def test_cloudwatch_may_only_use_the_topic_key_for_this_account(bare: assertions.Template) -> None:
    statements = only(bare, "AWS::KMS::Key")["KeyPolicy"]["Statement"]
    [cw] = [s for s in statements if s.get("Principal", {}).get("Service") == "cloudwatch.amazonaws.com"]
    assert sorted(cw["Action"]) == ["kms:Decrypt", "kms:GenerateDataKey*"]
    assert cw["Condition"] == {"StringEquals": {"aws:SourceAccount": ACCOUNT}}


def test_topic_policy_refuses_plain_http_and_admits_only_this_accounts_alarms(bare: assertions.Template) -> None:
    statements = only(bare, "AWS::SNS::TopicPolicy")["PolicyDocument"]["Statement"]
    [deny] = [s for s in statements if s["Effect"] == "Deny"]
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    [publish] = [s for s in statements if s["Effect"] == "Allow"]
    assert publish["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
    assert publish["Action"] == "sns:Publish"
    assert publish["Condition"]["StringEquals"] == {"aws:SourceAccount": ACCOUNT}
    assert ":cloudwatch:eu-west-1:111111111111:alarm:*" in json.dumps(publish["Condition"]["ArnLike"])


def test_each_configured_address_is_subscribed(bare: assertions.Template) -> None:
    subs = bare.find_resources("AWS::SNS::Subscription").values()
    assert sorted((s["Properties"]["Protocol"], s["Properties"]["Endpoint"]) for s in subs) == [
        ("email", "oncall@example.com"),
        ("email", "ops@example.com"),
    ]


def test_an_alarm_notifies_the_topic_when_it_fires_and_when_it_clears(bare: assertions.Template) -> None:
    alarm = only(bare, "AWS::CloudWatch::Alarm")
    topic = {"Ref": next(iter(bare.find_resources("AWS::SNS::Topic")))}
    assert alarm["AlarmActions"] == [topic] and alarm["OKActions"] == [topic]
    assert (alarm["Namespace"], alarm["MetricName"]) == ("cnai", "Failures")
    assert alarm["Dimensions"] == [{"Name": "service", "Value": "predict"}]
    assert alarm["AlarmDescription"] == "something failed: look at X"


def test_an_alarm_without_a_description_is_refused() -> None:
    stack = cdk.Stack(cdk.App(), "S")
    watch = Monitoring(stack, "Monitoring", namespace="cnai")
    metric = cloudwatch.Metric(namespace="cnai", metric_name="X")
    with pytest.raises(ValueError, match="Quiet: a description is required"):
        watch.alarm("Quiet", metric=metric, description=" ", threshold=0)


# ---- the whole app


def test_every_alarm_of_the_app_notifies_its_stacks_alarm_topic(
    app_templates: dict[str, dict[str, assertions.Template]],
) -> None:
    # Given the app as app.py builds it, in both configurations / When every alarm is read
    counted = 0
    for config, stacks in app_templates.items():
        for concern, template in stacks.items():
            alarms = template.find_resources("AWS::CloudWatch::Alarm")
            if not alarms:
                continue
            topics = template.find_resources("AWS::SNS::Topic")
            [topic_id] = [t for t, r in topics.items() if "Monitoring" in t]
            for alarm_id, alarm in alarms.items():
                # Then each one has an action, and its actions (fire and clear) are that topic
                props = alarm["Properties"]
                assert props.get("AlarmActions") == [{"Ref": topic_id}], f"{config}/{concern}/{alarm_id}"
                assert props.get("OKActions") == [{"Ref": topic_id}], f"{config}/{concern}/{alarm_id}"
                assert props.get("AlarmDescription"), f"{config}/{concern}/{alarm_id}: no description"
                counted += 1
    assert counted >= 2 * 11  # ingestion 5, serving 6 (+1 with the endpoint) per configuration


def described(template: assertions.Template) -> dict[str, dict[str, Any]]:
    return {
        a["Properties"]["AlarmDescription"]: a["Properties"]
        for a in template.find_resources("AWS::CloudWatch::Alarm").values()
    }


def test_serving_alarms_cover_predict_failures_and_refused_audits(
    app_templates: dict[str, dict[str, assertions.Template]],
) -> None:
    alarms = list(described(app_templates["default"]["serving"]).values())
    metrics = {(a.get("Namespace"), a.get("MetricName")) for a in alarms}
    assert {
        ("AWS/Lambda", "Errors"),
        ("AWS/Lambda", "Throttles"),
        ("AWS/Lambda", "Duration"),
        ("cnai", "AuditFailures"),
        ("AWS/ApiGateway", "5XXError"),
        ("AWS/Firehose", "DeliveryToS3.DataFreshness"),
        ("AWS/Logs", "DeliveryErrors"),
        ("AWS/SageMaker", "Invocation5XXErrors"),
    } <= metrics
    [audit] = [a for a in alarms if a.get("MetricName") == "AuditFailures"]
    # The predict function's Powertools metrics: namespace = project, dimension service = its service name
    assert audit["Dimensions"] == [{"Name": "service", "Value": "predict"}]
    assert audit["Threshold"] == 0 and audit["Statistic"] == "Sum"
    [latency] = [a for a in alarms if a.get("MetricName") == "Duration"]
    assert latency["ExtendedStatistic"] == "p99" and latency["Threshold"] == 3000


def test_ingestion_alarms_cover_lag_dead_letters_errors_and_claims(
    app_templates: dict[str, dict[str, assertions.Template]],
) -> None:
    alarms = list(described(app_templates["default"]["ingestion"]).values())
    metrics = sorted(a["MetricName"] for a in alarms)
    assert metrics == ["ApproximateNumberOfMessagesVisible", "ClaimErrors", "Errors", "Errors", "IteratorAge"]
    [claims] = [a for a in alarms if a["MetricName"] == "ClaimErrors"]
    assert claims["Dimensions"] == [{"Name": "service", "Value": "ingest"}]
