"""Name cdk-nag's granular findings while the constructs are built, so a wildcard is acknowledged where it is
granted, with its own reason.

cdk-nag reports `AwsSolutions-IAM5[Resource::<arn>]` with the ARN flattened from the resolved template
(cdk-nag 3.0.2 `flattenCfnReference`): `Fn::GetAtt [X, Arn]` -> `<X.Arn>`, `Ref X` -> `<X>`,
`Fn::Join` -> the joined parts, `Fn::ImportValue name` -> `name`, `${...}` in strings -> `<...>`.
`finding()` renders a token the same way from `Stack.resolve`, which works for anything that resolves at
construction time: this stack's resources, pseudo parameters, and imports made explicit with
`Stack.export_value` (`imported()`), whose export name is fixed when it is created.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from constructs import IConstruct

from infra.constructs.nag import acknowledge


def flatten(node: Any) -> str:
    """cdk-nag's flattenCfnReference, in Python."""
    if node is None:
        return ""
    if isinstance(node, str):
        return node.replace("${", "<").replace("}", ">")
    if isinstance(node, dict):
        if "Fn::Join" in node:
            delimiter, items = node["Fn::Join"]
            return str(delimiter).join(flatten(i) for i in items)
        if "Fn::Sub" in node:
            return flatten(node["Fn::Sub"])
        if "Fn::GetAtt" in node:
            resource, attribute = node["Fn::GetAtt"]
            return f"<{flatten(resource)}.{flatten(attribute)}>"
        if "Fn::ImportValue" in node:
            return flatten(node["Fn::ImportValue"])
        if "Ref" in node:
            return f"<{flatten(node['Ref'])}>"
    return json.dumps(node, separators=(",", ":"))


def finding(scope: IConstruct, resource: str) -> str:
    """The `Resource::...` finding id cdk-nag will report for `resource` in `scope`'s stack."""
    return "Resource::" + flatten(cdk.Stack.of(scope).resolve(resource))


def imported(consumer: cdk.Stack, owner: IConstruct, value: str) -> str:
    """`value` (an attribute of `owner`, a construct of another stack of the app) as an explicit import into
    `consumer`: the export name is then fixed now, not when references are resolved at synthesis, so findings
    on ARNs built from it can be named. A value of `consumer` itself, or a literal, is returned unchanged."""
    producer = cdk.Stack.of(owner)
    if producer is consumer or not cdk.Token.is_unresolved(value):
        return value
    try:
        return producer.export_value(value)
    except RuntimeError:  # jsii's error for "not a resource attribute" (e.g. an imported bucket's ARN): keep it
        return value


def allow(
    role: iam.IRole,
    *,
    sid: str,
    actions: Sequence[str],
    resources: Sequence[str],
    conditions: dict[str, Any] | None = None,
    wildcard_reason: str | None = None,
) -> iam.PolicyStatement:
    """Add a statement to `role`; every wildcard resource in it is acknowledged with `wildcard_reason`, which is
    therefore required when one is present (ValueError otherwise): no wildcard without a stated reason."""
    if any("*" in a for a in actions):
        raise ValueError(f"{sid}: name the actions ({', '.join(a for a in actions if '*' in a)} has a wildcard)")
    wild = [finding(role, r) for r in resources if "*" in flatten(cdk.Stack.of(role).resolve(r))]
    if wild and not wildcard_reason:
        raise ValueError(f"{sid}: wildcard resources {wild} need a wildcard_reason")
    statement = iam.PolicyStatement(sid=sid, actions=list(actions), resources=list(resources), conditions=conditions)
    role.add_to_principal_policy(statement)
    if wild:
        acknowledge(role, "AwsSolutions-IAM5", str(wildcard_reason), findings=wild)
    return statement


def allow_list(role: iam.IRole, *, sid: str, bucket: s3.IBucket, prefixes: Sequence[str]) -> iam.PolicyStatement:
    """s3:ListBucket on `bucket`, only for keys under `prefixes` (each given without its trailing slash)."""
    return allow(
        role,
        sid=sid,
        actions=["s3:ListBucket"],
        resources=[bucket.bucket_arn],
        conditions={"StringLike": {"s3:prefix": [f"{prefix}/*" for prefix in prefixes]}},
    )
