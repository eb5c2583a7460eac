"""One way every cnai workflow becomes a state machine: STANDARD, JSONPath (moto's interpreter runs it locally),
every event logged with its data to a KMS-encrypted log group, X-Ray tracing on."""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from infra.constructs.nag import acknowledge_inline_policy


def logged_state_machine(
    scope: Construct,
    *,
    name: str,
    definition: sfn.IChainable,
    comment: str,
    key: kms.IKey,
    log_retention: logs.RetentionDays,
    removal_policy: cdk.RemovalPolicy,
    timeout: cdk.Duration,
) -> tuple[sfn.StateMachine, logs.LogGroup]:
    """The state machine `name` and its log group (`/aws/vendedlogs/states/<name>`: the prefix Step Functions'
    log delivery is allowed to write without a resource policy per group)."""
    log_group = logs.LogGroup(
        scope,
        "Logs",
        log_group_name=f"/aws/vendedlogs/states/{name}",
        encryption_key=key,
        retention=log_retention,
        removal_policy=removal_policy,
    )
    machine = sfn.StateMachine(
        scope,
        "StateMachine",
        state_machine_name=name,
        state_machine_type=sfn.StateMachineType.STANDARD,
        definition_body=sfn.DefinitionBody.from_chainable(definition),
        query_language=sfn.QueryLanguage.JSON_PATH,
        comment=comment,
        logs=sfn.LogOptions(destination=log_group, level=sfn.LogLevel.ALL, include_execution_data=True),
        tracing_enabled=True,
        timeout=timeout,
        removal_policy=removal_policy,
    )
    # Its execution role (and the EventsRole a rule target adds under it) hold CDK's grants for exactly the
    # resources the definition's tasks name.
    acknowledge_inline_policy(
        machine,
        f"{machine.node.path}: the execution role's statements are the grants CDK derives from the definition's "
        "tasks (the functions, jobs and topics it names); a managed policy would hold the same statements and could "
        "be attached to other principals.",
    )
    return machine, log_group
