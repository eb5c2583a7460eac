"""The "deploy" state machine and the EventBridge rule that starts it on an approval, nothing else.

    SageMaker "Model Package State Change" (Approved, our groups) --rule--> deploy:
      Release -> Canary? --canary--> WaitCanary -> Check -> Verdict --alarm--> Rollback -> RolledBack (Fail)
                          \\--none/promoted--> Deployed           \\--done--> Promote -> Deployed
                                                                 \\--alias moved by a person--> Superseded
                                                                 \\--else--> WaitCanary

Every step is the one deploy function (cnai.deploy.canary), told which step by the payload. STANDARD type (a
person watches the canary in the console; every transition is recorded), JSONPath only (the local platform
runs this definition on moto's interpreter), all events logged with their data to a KMS log group, X-Ray on.
A Check that fails (an alarm deleted, an API error after retries) rolls back: a canary that cannot be watched
is not promoted. A failed Release moved no traffic: it ends in ReleaseFailed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from infra.constructs.nag import acknowledge
from infra.constructs.nag_findings import finding
from infra.constructs.state_machine import logged_state_machine
from infra.constructs.training_workflow import LAMBDA_RETRY


class DeployWorkflow(Construct):
    """`state_machine`, its `log_group`, and `rule` (the approval rule; its pattern is `pattern`)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        state_machine_name: str,
        function: lambda_.IFunction,
        pattern: Mapping[str, Any],
        key: kms.IKey,
        log_retention: logs.RetentionDays = logs.RetentionDays.ONE_YEAR,
        removal_policy: cdk.RemovalPolicy = cdk.RemovalPolicy.RETAIN,
    ) -> None:
        super().__init__(scope, construct_id)
        self.pattern = dict(pattern)

        def step(state_id: str, comment: str, payload: dict[str, Any], result_path: str) -> tasks.LambdaInvoke:
            task = tasks.LambdaInvoke(
                self,
                state_id,
                lambda_function=function,
                comment=comment,
                payload=sfn.TaskInput.from_object(payload),
                result_selector={"result": sfn.JsonPath.object_at("$.Payload")},
                result_path=result_path,
                retry_on_service_exceptions=False,
            )
            task.add_retry(**LAMBDA_RETRY)
            return task

        execution = sfn.JsonPath.execution_id
        release = step(
            "Release",
            "Resolve the package, pin it in a new function version, give the version the canary share",
            {"step": "release", "package_arn": sfn.JsonPath.string_at("$.detail.ModelPackageArn"),
             "execution_arn": execution},
            "$.release",
        )  # fmt: skip
        check = step(
            "Check",
            "The canary's alarms (errors, p99, abstentions, audit failures) and whether its time is over",
            {"step": "check", "release": sfn.JsonPath.object_at("$.release.result"), "execution_arn": execution},
            "$.check",
        )
        promote = step(
            "Promote",
            "All traffic of the alias to the new version",
            {"step": "promote", "release": sfn.JsonPath.object_at("$.release.result"), "execution_arn": execution},
            "$.promoted",
        )
        rollback = step(
            "Rollback",
            "All traffic back to the previous version; the package marked Rejected with the reason",
            {"step": "rollback", "state": sfn.JsonPath.entire_payload, "execution_arn": execution},
            "$.rolled_back",
        )
        deployed = sfn.Succeed(self, "Deployed", comment="The alias serves the approved package (or already did)")
        superseded = sfn.Succeed(
            self, "Superseded", comment="The alias was moved outside this workflow (cnai models rollback|promote)"
        )
        release_failed = sfn.Fail(self, "ReleaseFailed", error_path="$.error.Error", cause_path="$.error.Cause")
        rolled_back = sfn.Fail(self, "RolledBack", error="CanaryRolledBack", cause_path="$.rolled_back.result.reason")
        rollback_failed = sfn.Fail(self, "RollbackFailed", error_path="$.error.Error", cause_path="$.error.Cause")

        release.add_catch(release_failed, errors=["States.ALL"], result_path="$.error")
        check.add_catch(rollback, errors=["States.ALL"], result_path="$.error")
        promote.add_catch(rollback, errors=["States.ALL"], result_path="$.error")
        rollback.add_catch(rollback_failed, errors=["States.ALL"], result_path="$.error")
        rollback.next(rolled_back)
        promote.next(deployed)

        wait = sfn.Wait(
            self, "WaitCanary", time=sfn.WaitTime.seconds_path("$.release.result.interval_s"),
            comment="Let the canary serve its share before looking at its alarms again",
        )  # fmt: skip
        verdict = (
            sfn.Choice(
                self,
                "Verdict",
                comment="Alias moved by a person: leave it; alarm: roll back; canary time over: promote; else wait",
            )
            .when(sfn.Condition.boolean_equals("$.check.result.superseded", True), superseded)
            .when(sfn.Condition.boolean_equals("$.check.result.alarm", True), rollback)
            .when(sfn.Condition.boolean_equals("$.check.result.done", True), promote)
            .otherwise(wait)
        )
        wait.next(check).next(verdict)
        canary = (
            sfn.Choice(self, "Canary?", comment="canary: watch it; promoted (first release) or none: done")
            .when(sfn.Condition.string_equals("$.release.result.action", "canary"), wait)
            .otherwise(deployed)
        )
        definition = release.next(canary)

        self.state_machine, self.log_group = logged_state_machine(
            self,
            name=state_machine_name,
            definition=definition,
            comment="cnai deploy: approved package -> new function version -> canary on the alias -> 100% or rollback",
            key=key,
            log_retention=log_retention,
            removal_policy=removal_policy,
            timeout=cdk.Duration.days(1),
        )
        self.rule = events.Rule(
            self,
            "OnApproval",
            description="SageMaker model package approved (our groups only) -> deploy workflow",
            event_pattern=events.EventPattern(
                source=list(self.pattern["source"]),
                detail_type=list(self.pattern["detail-type"]),
                detail=dict(self.pattern["detail"]),
            ),
            targets=[
                targets.SfnStateMachine(self.state_machine, retry_attempts=8, max_event_age=cdk.Duration.hours(2))
            ],
        )
        role = self.state_machine.role
        acknowledge(
            role,
            "AwsSolutions-IAM5",
            "Step Functions requires Resource '*' for vended log delivery (logs:CreateLogDelivery, ...) and X-Ray "
            "(xray:PutTraceSegments, ...): none has a resource type.",
            findings=["Resource::*"],
        )
        acknowledge(
            role,
            "AwsSolutions-IAM5",
            "CDK's LambdaInvoke grant covers the deploy function and its versions (<arn>:*); the workflow invokes "
            "this one function only.",
            findings=[finding(role, f"{function.function_arn}:*")],
        )
