"""The "deploy" state machine and the EventBridge rule that starts it on an approval, nothing else.

    SageMaker "Model Package State Change" (Approved, our groups) --rule--> deploy:
      Release -> Canary? --canary--> WaitCanary -> Check -> Verdict --alarm--> Rollback -> RolledBack (Fail)
                          \\--none/promoted--> Deployed           \\--done--> Promote -> Deployed
                                                                 \\--alias moved by a person--> Superseded
                                                                 \\--else--> WaitCanary

For a model routed to SageMaker Serverless, Release answers `endpoint` and the same machine takes the endpoint
branch (cnai.deploy.endpoint):

      Canary? --endpoint--> WaitInService -> CheckEndpoint -> InService? --in_service--> HealthCheck -> Finish
                                                                   \\--failed--> EndpointRollback      -> Deployed
                                                                   \\--else--> WaitInService
      EndpointRollback -> WaitRestored -> CheckRestored -> Restored? --in_service--> EndpointRolledBack (Fail)
                                                                   \\--failed--> EndpointRollbackFailed (Fail)
                                                                   \\--else--> WaitRestored

The waits are Wait states (no Lambda sleeps while SageMaker works); a failed check or health check returns the
endpoint to its previous configuration; an EndpointBusyError (an update still in progress) is retried by the state.

Every step is the one deploy function (cnai.deploy.steps), told which step by the payload. STANDARD type (a
person watches the canary in the console; every transition is recorded), JSONPath only (the local platform
runs this definition on moto's interpreter), all events logged with their data to a KMS log group, X-Ray on.
A Check that fails (an alarm deleted, an API error after retries) rolls back: a canary that cannot be watched
is not promoted. A failed Release moved no traffic: it ends in ReleaseFailed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sqs as sqs
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
        canary = sfn.Choice(
            self, "Canary?", comment="canary: watch it; endpoint: wait for its update; promoted or none: done"
        ).when(sfn.Condition.string_equals("$.release.result.action", "canary"), wait)
        self._endpoint_branch(step, canary, release, deployed, rollback_failed, execution)
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
        # An approval the rule cannot hand to the workflow (throttled, the state machine deleted, retries spent)
        # is kept here instead of lost: a person re-approves or starts the workflow with the kept event.
        self.dead_letters = sqs.Queue(
            self,
            "OnApprovalDeadLetters",
            encryption=sqs.QueueEncryption.KMS,
            encryption_master_key=key,
            enforce_ssl=True,
            retention_period=cdk.Duration.days(14),
        )
        key.grant_encrypt_decrypt(iam.ServicePrincipal("events.amazonaws.com"))
        acknowledge(
            self.dead_letters,
            ["AwsSolutions-SQS3", "Serverless-SQSRedrivePolicy"],
            "This queue is the approval rule's dead-letter queue itself: its events are read and replayed by a person "
            "(docs/deploy.md), so it has no further queue to redrive to.",
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
                targets.SfnStateMachine(
                    self.state_machine,
                    retry_attempts=8,
                    max_event_age=cdk.Duration.hours(2),
                    dead_letter_queue=self.dead_letters,
                )
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

    def _endpoint_branch(
        self,
        step: Callable[[str, str, dict[str, Any], str], tasks.LambdaInvoke],
        canary: sfn.Choice,
        release: tasks.LambdaInvoke,
        deployed: sfn.Succeed,
        rollback_failed: sfn.Fail,
        execution: str,
    ) -> None:
        """The SageMaker Serverless path: wait for the update, health check, keep/delete configurations; on any
        failure the previous configuration back, waited for, and the package Rejected."""
        release_result = sfn.JsonPath.object_at("$.release.result")
        check = step(
            "CheckEndpoint",
            "Where the endpoint's update to the new configuration stands (in service, updating, failed, timed out)",
            {"step": "endpoint_check", "watch": release_result, "execution_arn": execution},
            "$.endpoint_check",
        )
        probe = step(
            "HealthCheck",
            "InvokeEndpoint with a probe text: a well-formed prediction from the new model identity",
            {"step": "endpoint_probe", "release": release_result, "execution_arn": execution},
            "$.probe",
        )
        finish = step(
            "Finish",
            "Keep the newest replaced configurations for a rollback by command, delete older ones",
            {"step": "endpoint_finish", "release": release_result, "execution_arn": execution},
            "$.finished",
        )
        rollback = step(
            "EndpointRollback",
            "The endpoint back to its previous configuration; the package marked Rejected with the reason",
            {"step": "endpoint_rollback", "state": sfn.JsonPath.entire_payload, "execution_arn": execution},
            "$.endpoint_rolled_back",
        )
        restored_check = step(
            "CheckRestored",
            "Where the return to the previous configuration stands",
            {"step": "endpoint_check", "watch": sfn.JsonPath.object_at("$.endpoint_rolled_back.result"),
             "execution_arn": execution},
            "$.restored",
        )  # fmt: skip
        # An update in progress refuses another one: Release and EndpointRollback try again a while later.
        busy: dict[str, Any] = {"errors": ["EndpointBusyError"], "interval": cdk.Duration.seconds(30),
                                "max_attempts": 20, "backoff_rate": 1.0}  # fmt: skip
        release.add_retry(**busy)
        rollback.add_retry(**busy)
        check.add_catch(rollback, errors=["States.ALL"], result_path="$.error")
        probe.add_catch(rollback, errors=["States.ALL"], result_path="$.error")
        # Cleanup after a success never undoes it: a failed Finish leaves extra configurations, nothing else.
        finish.add_catch(deployed, errors=["States.ALL"], result_path="$.error")
        rollback.add_catch(rollback_failed, errors=["States.ALL"], result_path="$.error")
        restored_check.add_catch(rollback_failed, errors=["States.ALL"], result_path="$.error")

        wait = sfn.Wait(self, "WaitInService", time=sfn.WaitTime.seconds_path("$.release.result.interval_s"),
                        comment="SageMaker is moving the endpoint to the new configuration")  # fmt: skip
        rolled_back = sfn.Fail(self, "EndpointRolledBack", error="EndpointRolledBack",
                               cause_path="$.endpoint_rolled_back.result.reason")  # fmt: skip
        not_restored = sfn.Fail(self, "EndpointRollbackFailed", error="EndpointRollbackFailed",
                                cause_path="$.restored.result.reason")  # fmt: skip
        in_service = (
            sfn.Choice(self, "InService?", comment="in service: health check; failed or timed out: back; else wait")
            .when(sfn.Condition.string_equals("$.endpoint_check.result.status", "in_service"), probe)
            .when(sfn.Condition.string_equals("$.endpoint_check.result.status", "failed"), rollback)
            .otherwise(wait)
        )
        wait.next(check).next(in_service)
        probe.next(finish).next(deployed)
        wait_restored = sfn.Wait(
            self, "WaitRestored", time=sfn.WaitTime.seconds_path("$.endpoint_rolled_back.result.interval_s"),
            comment="SageMaker is moving the endpoint back to the previous configuration",
        )  # fmt: skip
        restored = (
            sfn.Choice(self, "Restored?", comment="previous configuration in service: done (failed); else wait")
            .when(sfn.Condition.string_equals("$.restored.result.status", "in_service"), rolled_back)
            .when(sfn.Condition.string_equals("$.restored.result.status", "failed"), not_restored)
            .otherwise(wait_restored)
        )
        rollback.next(wait_restored)
        wait_restored.next(restored_check).next(restored)
        canary.when(sfn.Condition.string_equals("$.release.result.action", "endpoint"), wait).otherwise(deployed)
