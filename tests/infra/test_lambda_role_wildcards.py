"""Every PythonFunction role acknowledges cdk-nag's `AwsSolutions-IAM5[Resource::*]` (for X-Ray). That blanket
acknowledgment would also hide any other `"Resource": "*"` a later change adds to a function role, so this walks
every Lambda role policy of the synthesized ingestion and serving stacks (as `app.py` builds them) and allows
`"Resource": "*"` only for the actions listed here, each provably without resource-level permissions."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aws_cdk import assertions

# Actions that support no resource-level permission, so '*' is their only possible resource.
WILDCARD_ALLOWED = {
    "xray:PutTraceSegments",  # active tracing (lambda_.Tracing.ACTIVE)
    "xray:PutTelemetryRecords",
}


@pytest.fixture(scope="module", params=["default", "variant"])
def templates(
    request: pytest.FixtureRequest, app_templates: dict[str, dict[str, assertions.Template]]
) -> dict[str, assertions.Template]:
    return app_templates[request.param]


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def lambda_role_ids(template: assertions.Template) -> set[str]:
    """Roles Lambda assumes, and every role a Lambda function runs with (custom resources included)."""
    roles = template.find_resources("AWS::IAM::Role")
    assumed = {
        k for k, r in roles.items() if "lambda.amazonaws.com" in json.dumps(r["Properties"]["AssumeRolePolicyDocument"])
    }
    used = set()
    for fn in template.find_resources("AWS::Lambda::Function").values():
        role = fn["Properties"]["Role"]
        assert "Fn::GetAtt" in role, f"a function role from outside the stack: {role}"
        used.add(role["Fn::GetAtt"][0])
    assert used <= set(roles)
    return assumed | used


def role_statements(template: assertions.Template, role_id: str) -> list[dict[str, Any]]:
    """Inline statements of the role and of every policy (inline or customer managed) attached to it."""
    role = template.find_resources("AWS::IAM::Role")[role_id]["Properties"]
    # AWS managed policies would be invisible here (and AWSLambdaBasicExecutionRole allows logs on '*')
    assert not role.get("ManagedPolicyArns"), f"{role_id}: managed policies {role['ManagedPolicyArns']}"
    statements = [s for p in role.get("Policies", []) for s in p["PolicyDocument"]["Statement"]]
    for kind in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
        for policy in template.find_resources(kind).values():
            if {"Ref": role_id} in policy["Properties"].get("Roles", []):
                statements += policy["Properties"]["PolicyDocument"]["Statement"]
    return statements


def test_lambda_roles_use_resource_star_only_for_xray(templates: dict[str, assertions.Template]) -> None:
    assert {"ingestion", "serving"} <= set(templates)
    walked = 0
    for name, template in templates.items():
        role_ids = lambda_role_ids(template)
        has_functions = bool(template.find_resources("AWS::Lambda::Function"))
        assert role_ids or not has_functions, f"{name}: no Lambda role found"
        for role_id in role_ids:
            statements = role_statements(template, role_id)
            assert statements, f"{name}/{role_id}: no policy statements"
            walked += 1
            for statement in statements:
                assert statement["Effect"] == "Allow"
                assert "NotResource" not in statement and "NotAction" not in statement
                if "*" in as_list(statement["Resource"]):
                    actions = set(as_list(statement["Action"]))
                    assert actions <= WILDCARD_ALLOWED, (
                        f"{name}/{role_id}: Resource '*' for {actions - WILDCARD_ALLOWED}"
                    )
    assert walked >= 3  # ingestion consumer and API, serving predict


def test_every_function_role_traces_to_xray(templates: dict[str, assertions.Template]) -> None:
    # The acknowledged '*' is the X-Ray statement, present because every function traces actively
    for name, template in templates.items():
        for role_id in lambda_role_ids(template):
            xray = [s for s in role_statements(template, role_id) if s["Resource"] == "*"]
            assert len(xray) == 1, f"{name}/{role_id}"
            assert set(as_list(xray[0]["Action"])) == WILDCARD_ALLOWED
