"""One place where a stack's alarms are made, so every alarm reaches a person.

`Monitoring` owns the stack's alarm topic: SNS encrypted with its own rotating CMK, a topic policy that refuses
anything but TLS and lets CloudWatch alarms of this account (and nothing else) publish, and the email
subscriptions from settings (`cnai:monitoring.alarm_emails`). Every alarm is created through it (`alarm`,
`above`, `function_errors`, ...), and each one notifies the topic when it fires and when it clears: an alarm
that notifies no one cannot be written here. tests/infra assert it over the whole synthesized app.

Why a CMK of its own and not the stack key: CloudWatch must be allowed to make data keys on the topic's key;
on a dedicated key that grant reaches the alarm notifications only, not the stream, table or logs.
"""

from __future__ import annotations

from collections.abc import Sequence

import aws_cdk as cdk
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from constructs import Construct

from infra.constructs.nag import acknowledge

FIVE_MINUTES = cdk.Duration.minutes(5)
ABOVE = cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD


class Monitoring(Construct):
    """`topic` (the stack's alarm topic), its `key`, and `alarms`: every alarm made through this construct."""

    def __init__(self, scope: Construct, construct_id: str, *, emails: Sequence[str] = (), namespace: str) -> None:
        """`namespace`: the Powertools metrics namespace of the stack's functions (POWERTOOLS_METRICS_NAMESPACE)."""
        super().__init__(scope, construct_id)
        stack = cdk.Stack.of(self)
        self.namespace = namespace
        self.key = kms.Key(self, "Key", description=f"{self.node.path}: alarm notifications", enable_key_rotation=True)
        cloudwatch_service = iam.ServicePrincipal("cloudwatch.amazonaws.com")
        # CloudWatch publishes to the encrypted topic: it may make and read data keys, nothing more, and only on
        # behalf of alarms in this account (no confused deputy).
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="CloudWatchAlarmsPublishToEncryptedTopic",
                principals=[cloudwatch_service],
                actions=["kms:Decrypt", "kms:GenerateDataKey*"],
                resources=["*"],
                conditions={"StringEquals": {"aws:SourceAccount": stack.account}},
            )
        )
        self.topic = sns.Topic(
            self, "Topic", master_key=self.key, enforce_ssl=True, display_name=f"{stack.stack_name} alarms"
        )
        self.topic.add_to_resource_policy(
            iam.PolicyStatement(
                sid="CloudWatchAlarmsOfThisAccount",
                principals=[cloudwatch_service],
                actions=["sns:Publish"],
                resources=[self.topic.topic_arn],
                conditions={
                    "StringEquals": {"aws:SourceAccount": stack.account},
                    "ArnLike": {
                        "aws:SourceArn": stack.format_arn(
                            service="cloudwatch",
                            resource="alarm",
                            resource_name="*",
                            arn_format=cdk.ArnFormat.COLON_RESOURCE_NAME,
                        )
                    },
                },
            )
        )
        for email in emails:
            subscription = self.topic.add_subscription(subscriptions.EmailSubscription(email))
            acknowledge(
                subscription,
                "Serverless-SNSRedrivePolicy",
                "An alarm email SNS could not deliver would land in a DLQ whose only way to reach a person is this "
                "same topic; the alarm's state and history stay in CloudWatch (console, describe-alarm-history), "
                "and every alarm also notifies on OK, so a lost email leaves a visible gap.",
            )
        self._action = actions.SnsAction(self.topic)
        self.alarms: list[cloudwatch.Alarm] = []

    def alarm(
        self,
        construct_id: str,
        *,
        metric: cloudwatch.IMetric,
        description: str,
        threshold: float,
        comparison: cloudwatch.ComparisonOperator = ABOVE,
        evaluation_periods: int = 1,
        datapoints_to_alarm: int | None = None,
        missing: cloudwatch.TreatMissingData = cloudwatch.TreatMissingData.NOT_BREACHING,
    ) -> cloudwatch.Alarm:
        """An alarm that notifies the topic when it fires and when it clears. The description is what the person
        reads first: say what broke and what to look at."""
        if not description.strip():
            raise ValueError(f"alarm {construct_id}: a description is required (it is the notification's first line)")
        alarm = cloudwatch.Alarm(
            self,
            construct_id,
            metric=metric,
            alarm_description=description,
            threshold=threshold,
            comparison_operator=comparison,
            evaluation_periods=evaluation_periods,
            datapoints_to_alarm=datapoints_to_alarm,
            treat_missing_data=missing,
        )
        alarm.add_alarm_action(self._action)
        alarm.add_ok_action(self._action)
        self.alarms.append(alarm)
        return alarm

    def above(
        self, construct_id: str, metric: cloudwatch.IMetric, description: str, threshold: float = 0
    ) -> cloudwatch.Alarm:
        """Fires on any period whose value exceeds `threshold` (default: anything at all)."""
        return self.alarm(construct_id, metric=metric, description=description, threshold=threshold)

    def custom_metric(
        self, name: str, *, service: str, statistic: str = "Sum", period: cdk.Duration = FIVE_MINUTES
    ) -> cloudwatch.Metric:
        """A metric the functions emit through Powertools (EMF): this namespace, dimension `service`."""
        return cloudwatch.Metric(
            namespace=self.namespace,
            metric_name=name,
            dimensions_map={"service": service},
            statistic=statistic,
            period=period,
        )

    def function_errors(self, construct_id: str, function: lambda_.IFunction, what: str) -> cloudwatch.Alarm:
        """Any invocation error (an exception, a timeout, an out-of-memory) in five minutes."""
        return self.above(
            construct_id,
            function.metric_errors(statistic="Sum", period=FIVE_MINUTES),
            f"{what} failed (unhandled error, timeout or out of memory): read its log group",
        )

    def function_throttles(self, construct_id: str, function: lambda_.IFunction, what: str) -> cloudwatch.Alarm:
        """Any throttled invocation in five minutes: the reserved concurrency is too small for the load."""
        return self.above(
            construct_id,
            function.metric_throttles(statistic="Sum", period=FIVE_MINUTES),
            f"{what} was throttled (calls refused): raise its reserved concurrency or find the source of the load",
        )

    def function_p99(
        self, construct_id: str, function: lambda_.IFunction, what: str, milliseconds: float
    ) -> cloudwatch.Alarm:
        """p99 duration above `milliseconds` in three of five minutes."""
        return self.alarm(
            construct_id,
            metric=function.metric_duration(statistic="p99", period=cdk.Duration.minutes(1)),
            description=f"{what}: p99 duration above {milliseconds:g} ms in 3 of 5 minutes",
            threshold=milliseconds,
            evaluation_periods=5,
            datapoints_to_alarm=3,
        )
