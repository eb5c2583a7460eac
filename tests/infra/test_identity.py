"""The Cognito identity option (cnai:api.auth=cognito): the user pool, its app client, the three groups and the
IAM roles they map to through the identity pool, and the user-pool authorizer on every API method.

The construct is synthesized on bare stacks under the four cdk-nag packs (an unacknowledged error fails the
synthesis), once per module; the whole app's "variant" configuration (tests/infra/conftest.py) carries the
option through the serving stack."""

from __future__ import annotations

import json
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import assertions
from aws_cdk import aws_apigateway as apigw
from pydantic import ValidationError

from infra.config import ApiSettings
from infra.constructs.identity import Identity
from infra.constructs.nag import nag_packs

ENV = cdk.Environment(account="111111111111", region="eu-west-1")
GROUPS = ("cnai-dev-banking77", "cnai-dev-Intents")
Templates = dict[str, dict[str, assertions.Template]]


def identity_stack(app: cdk.App, name: str, **kwargs: Any) -> cdk.Stack:
    stack = cdk.Stack(app, name, env=ENV)
    identity = Identity(stack, "Identity", package_groups=GROUPS, **kwargs)
    # The API by id: its own hardening is PredictApi's (judged by the whole app's synthesis below).
    api = apigw.RestApi.from_rest_api_attributes(stack, "Api", rest_api_id="a1b2c3d4e5", root_resource_id="r00t")
    identity.grant_api(api, "dev", ingest=True)
    return stack


@pytest.fixture(scope="module")
def synth() -> dict[str, assertions.Template]:
    # Given a pool the stack creates, the same on the Plus plan, and an existing pool
    app = cdk.App(context={"aws:cdk:bundling-stacks": []})
    stacks = {
        "created": identity_stack(app, "Created"),
        "plus": identity_stack(app, "Plus", plus=True),
        "imported": identity_stack(app, "Imported", user_pool_id="eu-west-1_AbCdEf123"),
    }
    cdk.Validations.of(app).add_plugins(*nag_packs(app))
    # When they synthesize under cdk-nag
    app.synth()
    return {name: assertions.Template.from_stack(stack) for name, stack in stacks.items()}


def resource(template: assertions.Template, kind: str) -> dict[str, Any]:
    [found] = template.find_resources(kind).values()
    return dict(found)


def test_the_created_pool_is_closed_strong_mfa_and_retained(synth: dict[str, assertions.Template]) -> None:
    pool = resource(synth["created"], "AWS::Cognito::UserPool")
    props = pool["Properties"]
    # Then only an administrator creates users, passwords are long and mixed, TOTP MFA is required
    assert props["AdminCreateUserConfig"]["AllowAdminCreateUserOnly"] is True
    policy = props["Policies"]["PasswordPolicy"]
    assert policy["MinimumLength"] >= 14
    assert all(policy[k] for k in ("RequireLowercase", "RequireUppercase", "RequireNumbers", "RequireSymbols"))
    assert props["MfaConfiguration"] == "ON" and props["EnabledMfas"] == ["SOFTWARE_TOKEN_MFA"]
    # And the pool survives a stack deletion twice over
    assert props["DeletionProtection"] == "ACTIVE"
    assert pool["DeletionPolicy"] == "Retain" and pool["UpdateReplacePolicy"] == "Retain"
    # And threat protection follows the plan: Essentials by default, Plus with full protection when asked
    assert props["UserPoolTier"] == "ESSENTIALS"
    plus = resource(synth["plus"], "AWS::Cognito::UserPool")["Properties"]
    assert plus["UserPoolTier"] == "PLUS" and plus["UserPoolAddOns"]["AdvancedSecurityMode"] == "ENFORCED"


def test_the_client_is_public_srp_only_without_oauth(synth: dict[str, assertions.Template]) -> None:
    client = resource(synth["created"], "AWS::Cognito::UserPoolClient")["Properties"]
    assert client["GenerateSecret"] is False
    assert sorted(client["ExplicitAuthFlows"]) == ["ALLOW_REFRESH_TOKEN_AUTH", "ALLOW_USER_SRP_AUTH"]
    assert not client.get("AllowedOAuthFlows") and not client.get("CallbackURLs")
    assert client["PreventUserExistenceErrors"] == "ENABLED" and client["EnableTokenRevocation"] is True


def test_each_group_maps_to_its_role_through_the_identity_pool(synth: dict[str, assertions.Template]) -> None:
    template = synth["created"]
    groups = {g["Properties"]["GroupName"]: g["Properties"] for g in template.find_resources(
        "AWS::Cognito::UserPoolGroup").values()}  # fmt: skip
    # Then the three groups exist, each naming its own role, the least privileged first
    assert set(groups) == {"predict", "ingest", "model-approvers"}
    roles = {name: props["RoleArn"]["Fn::GetAtt"][0] for name, props in groups.items()}
    assert len(set(roles.values())) == 3
    assert groups["predict"]["Precedence"] < groups["ingest"]["Precedence"] < groups["model-approvers"]["Precedence"]
    # And the identity pool takes signed-in users only and maps roles from the token, denying the ambiguous
    pool = resource(template, "AWS::Cognito::IdentityPool")["Properties"]
    assert pool["AllowUnauthenticatedIdentities"] is False and pool["AllowClassicFlow"] is False
    assert pool["CognitoIdentityProviders"][0]["ServerSideTokenCheck"] is True
    attachment = resource(template, "AWS::Cognito::IdentityPoolRoleAttachment")["Properties"]
    [mapping] = attachment["RoleMappings"].values()
    assert mapping["Type"] == "Token" and mapping["AmbiguousRoleResolution"] == "Deny"
    assert "Roles" not in attachment  # no default authenticated role: no group, no credentials
    # And each role trusts only this identity pool's authenticated identities
    all_roles = template.find_resources("AWS::IAM::Role")
    identity_pool_id = next(iter(template.find_resources("AWS::Cognito::IdentityPool")))
    for role_id in roles.values():
        [trust] = all_roles[role_id]["Properties"]["AssumeRolePolicyDocument"]["Statement"]
        assert trust["Action"] == "sts:AssumeRoleWithWebIdentity"
        assert trust["Principal"] == {"Federated": "cognito-identity.amazonaws.com"}
        assert trust["Condition"]["StringEquals"]["cognito-identity.amazonaws.com:aud"] == {"Ref": identity_pool_id}
        assert trust["Condition"]["ForAnyValue:StringLike"]["cognito-identity.amazonaws.com:amr"] == "authenticated"


def statements(template: assertions.Template, role_prefix: str) -> list[dict[str, Any]]:
    policies = template.find_resources("AWS::IAM::Policy")
    found = [p for p in policies.values() if p["Properties"]["Roles"][0]["Ref"].startswith(role_prefix)]
    return [s for p in found for s in p["Properties"]["PolicyDocument"]["Statement"]]


def test_each_role_holds_exactly_its_rights(synth: dict[str, assertions.Template]) -> None:
    template = synth["created"]
    # Then predict invokes the model routes of this API's stage, ingest POST /v1/ingest, nothing else
    [predict] = statements(template, "IdentityPredictRole")
    assert predict["Action"] == "execute-api:Invoke"
    routes = sorted(json.dumps(r).split("a1b2c3d4e5/dev/")[1].split('"')[0] for r in predict["Resource"])
    assert routes == ["GET/v1/models", "GET/v1/models/*", "POST/v1/models/*/predict"]
    [ingest] = statements(template, "IdentityIngestRole")
    assert ingest["Action"] == "execute-api:Invoke" and json.dumps(ingest["Resource"]).endswith(
        '/dev/POST/v1/ingest"]]}'
    )
    # And approvers may list, describe and update versions of this deployment's package groups only
    [approve] = statements(template, "IdentityModelApproversRole")
    assert sorted(approve["Action"]) == [
        "sagemaker:DescribeModelPackage",
        "sagemaker:ListModelPackages",
        "sagemaker:UpdateModelPackage",
    ]
    arns = sorted(json.dumps(r).split(":111111111111:")[1].split('"')[0] for r in approve["Resource"])
    assert arns == [
        "model-package-group/cnai-dev-banking77",
        "model-package-group/cnai-dev-intents",
        "model-package/cnai-dev-banking77/*",
        "model-package/cnai-dev-intents/*",
    ]


def test_an_existing_pool_gets_the_client_groups_and_roles_but_keeps_its_own_settings(
    synth: dict[str, assertions.Template],
) -> None:
    template = synth["imported"]
    assert template.find_resources("AWS::Cognito::UserPool") == {}
    client = resource(template, "AWS::Cognito::UserPoolClient")["Properties"]
    assert client["UserPoolId"] == "eu-west-1_AbCdEf123"
    groups = template.find_resources("AWS::Cognito::UserPoolGroup").values()
    assert {g["Properties"]["UserPoolId"] for g in groups} == {"eu-west-1_AbCdEf123"}


def test_settings_refuse_a_pool_without_cognito_and_plus_on_an_existing_pool() -> None:
    with pytest.raises(ValidationError, match=r"api\.user_pool_id needs api\.auth=cognito"):
        ApiSettings(user_pool_id="eu-west-1_AbCdEf123")
    with pytest.raises(ValidationError, match=r"api\.cognito_plus needs api\.auth=cognito"):
        ApiSettings(cognito_plus=True)
    with pytest.raises(ValidationError, match="an existing pool keeps its plan"):
        ApiSettings(auth="cognito", user_pool_id="eu-west-1_AbCdEf123", cognito_plus=True)
    with pytest.raises(ValidationError, match="user_pool_id"):
        ApiSettings(auth="cognito", user_pool_id="not a pool id")
    # And Cognito alone is not an open API, even without SigV4 or keys
    assert ApiSettings(auth="cognito", iam_auth=False).authorizer == "cognito"
    assert ApiSettings(iam_auth=False, keys=True).authorizer == "none"


def test_the_app_puts_the_user_pool_authorizer_on_every_method(app_templates: Templates) -> None:
    # Given the whole app in the variant configuration (cnai:api.auth=cognito) and in the default one
    serving = app_templates["variant"]["serving"]
    [authorizer_id] = serving.find_resources("AWS::ApiGateway::Authorizer")
    authorizer = serving.find_resources("AWS::ApiGateway::Authorizer")[authorizer_id]["Properties"]
    [pool_id] = serving.find_resources("AWS::Cognito::UserPool")
    # Then the authorizer is the deployment's user pool, reading the Authorization header
    assert authorizer["Type"] == "COGNITO_USER_POOLS"
    assert authorizer["ProviderARNs"] == [{"Fn::GetAtt": [pool_id, "Arn"]}]
    assert authorizer["IdentitySource"] == "method.request.header.Authorization"
    # And every method, ingest included, requires it (and the API key the variant also asks for)
    methods = [m["Properties"] for m in serving.find_resources("AWS::ApiGateway::Method").values()]
    assert len(methods) == 6
    for method in methods:
        assert method["AuthorizationType"] == "COGNITO_USER_POOLS"
        assert method["AuthorizerId"] == {"Ref": authorizer_id}
        assert method["ApiKeyRequired"] is True
    # And the ids a client needs are outputs with stable names
    outputs = serving.find_outputs("*")
    assert {"UserPoolId", "UserPoolClientId", "IdentityPoolId"} <= set(outputs)
    # And the default deployment has no user pool and signs every method with IAM
    default = app_templates["default"]["serving"]
    assert default.find_resources("AWS::Cognito::UserPool") == {}
    assert {
        m["Properties"]["AuthorizationType"] for m in default.find_resources("AWS::ApiGateway::Method").values()
    } == {"AWS_IAM"}
