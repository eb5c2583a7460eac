"""People as API callers (`cnai:api.auth=cognito`): a Cognito user pool whose groups map to IAM roles.

    user (user pool: no self sign-up, strong passwords, TOTP MFA required)
      --SRP--> ID token with `cognito:groups` --Authorization header--> API Gateway (COGNITO_USER_POOLS authorizer)
                                                                       --> handler: the route's group or 403
      --ID token--> identity pool (token-based role mapping) --> the group's IAM role's credentials
                                                                  (model-approvers: `cnai models approve`)

The groups are what cnai.identity names: `predict` (predict and model routes), `ingest` (POST /v1/ingest),
`model-approvers` (approve or reject model package versions of this deployment). Each group carries the role
the identity pool hands its members, so the mapping of groups to rights is literal, in IAM: the predict and
ingest roles may invoke exactly their routes of this API's stage (SigV4 callers with those credentials), the
approvers' role may read and update this deployment's model package groups only. The authorizer only proves a
token; the handlers check the group (the gateway's authorizer cannot), and the audit record carries it.

An existing pool (`user_pool_id`) is used as it is: its password, MFA and threat-protection settings are its
owner's; this construct adds the app client, the three groups, their roles and the identity pool to it.
"""

from __future__ import annotations

from collections.abc import Sequence

import aws_cdk as cdk
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_cognito as cognito
from aws_cdk import aws_iam as iam
from constructs import Construct

from cnai.identity import APPROVERS, INGEST, PREDICT
from infra.constructs.nag import acknowledge, acknowledge_inline_policy
from infra.constructs.nag_findings import allow

# Lower precedence wins the ID token's `cognito:preferred_role` (the identity pool's default for a member of
# several groups): the least privileged role first; an approver asks for the approvers' role by ARN.
PRECEDENCE = {PREDICT: 10, INGEST: 20, APPROVERS: 30}
DESCRIPTIONS = {
    PREDICT: "may call the predict and model routes",
    INGEST: "may POST records to /v1/ingest",
    APPROVERS: "may approve or reject this deployment's model package versions (cnai models approve)",
}
# The predict role's routes: (method, path under the stage). Paths with a model name are per model, any model.
PREDICT_ROUTES = (("GET", "/v1/models"), ("GET", "/v1/models/*"), ("POST", "/v1/models/*/predict"))
GENERATE_ROUTES = (("POST", "/v1/models/*/generate"),)  # with a generator served: the predict group's too
INGEST_ROUTES = (("POST", "/v1/ingest"),)
# What `cnai models approve | reject` calls (cnai.registry.packages.Registry.set_approval): list the group's
# versions, describe one, update its approval.
APPROVER_ACTIONS = ("sagemaker:ListModelPackages", "sagemaker:DescribeModelPackage", "sagemaker:UpdateModelPackage")
SESSION = cdk.Duration.hours(1)


class Identity(Construct):
    """`user_pool`, `client` (public: no secret, SRP and refresh tokens), `identity_pool`, `roles` (group -> role),
    `groups` (group -> CfnUserPoolGroup). Call `grant_api` once the REST API exists."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        package_groups: Sequence[str],
        user_pool_id: str | None = None,
        plus: bool = False,
        removal_policy: cdk.RemovalPolicy = cdk.RemovalPolicy.RETAIN,
    ) -> None:
        """`package_groups`: the deployment's ModelPackageGroup names (Settings.package_group), the only ones the
        approvers' role may touch. `plus`: the Plus feature plan with full threat protection (adaptive
        authentication, compromised-credential checks; billed per monthly active user)."""
        super().__init__(scope, construct_id)
        stack = cdk.Stack.of(self)
        self.user_pool: cognito.IUserPool
        if user_pool_id:
            self.user_pool = cognito.UserPool.from_user_pool_id(self, "UserPool", user_pool_id)
        else:
            self.user_pool = self._user_pool(plus, removal_policy)
        self.client = self.user_pool.add_client(
            "Client",
            generate_secret=False,  # CLIs and browsers cannot keep a secret; SRP never sends the password
            auth_flows=cognito.AuthFlow(user_srp=True),  # plus ALLOW_REFRESH_TOKEN_AUTH, always on
            disable_o_auth=True,  # no hosted UI, no redirect URLs (CDK's default would allow implicit grants)
            prevent_user_existence_errors=True,
            enable_token_revocation=True,
            id_token_validity=SESSION,
            access_token_validity=SESSION,
            refresh_token_validity=cdk.Duration.days(1),
        )
        provider = self.user_pool.user_pool_provider_name
        self.identity_pool = cognito.CfnIdentityPool(
            self,
            "IdentityPool",
            allow_unauthenticated_identities=False,
            allow_classic_flow=False,  # enhanced flow only: the role comes from the token, not from the caller
            cognito_identity_providers=[
                cognito.CfnIdentityPool.CognitoIdentityProviderProperty(
                    client_id=self.client.user_pool_client_id,
                    provider_name=provider,
                    server_side_token_check=True,  # a signed-out (revoked) user gets no credentials
                )
            ],
        )
        self.roles: dict[str, iam.Role] = {}
        self.groups: dict[str, cognito.CfnUserPoolGroup] = {}
        for name in (PREDICT, INGEST, APPROVERS):
            role = iam.Role(
                self,
                f"{name.title().replace('-', '')}Role",
                description=f"cnai {stack.stack_name}: members of Cognito group {name} ({DESCRIPTIONS[name]})",
                assumed_by=iam.FederatedPrincipal(
                    "cognito-identity.amazonaws.com",
                    conditions={
                        "StringEquals": {"cognito-identity.amazonaws.com:aud": self.identity_pool.ref},
                        "ForAnyValue:StringLike": {"cognito-identity.amazonaws.com:amr": "authenticated"},
                    },
                    assume_role_action="sts:AssumeRoleWithWebIdentity",
                ),
                max_session_duration=SESSION,
            )
            self.roles[name] = role
            self.groups[name] = cognito.CfnUserPoolGroup(
                self,
                f"{name.title().replace('-', '')}Group",
                user_pool_id=self.user_pool.user_pool_id,
                group_name=name,
                description=DESCRIPTIONS[name],
                precedence=PRECEDENCE[name],
                role_arn=role.role_arn,
            )
        # Token-based mapping: a member gets its group's role (cognito:preferred_role, or one of cognito:roles
        # asked for by ARN); a token with no group gets nothing (Deny), there is no default authenticated role.
        cognito.CfnIdentityPoolRoleAttachment(
            self,
            "RoleMapping",
            identity_pool_id=self.identity_pool.ref,
            role_mappings={
                "userpool": cognito.CfnIdentityPoolRoleAttachment.RoleMappingProperty(
                    type="Token",
                    ambiguous_role_resolution="Deny",
                    identity_provider=cdk.Fn.join(":", [provider, self.client.user_pool_client_id]),
                )
            },
        )
        self._grant_registry(package_groups)

    def _user_pool(self, plus: bool, removal_policy: cdk.RemovalPolicy) -> cognito.UserPool:
        pool = cognito.UserPool(
            self,
            "UserPool",
            self_sign_up_enabled=False,  # an administrator creates each user (and puts it in its groups)
            sign_in_aliases=cognito.SignInAliases(username=True, email=True),
            sign_in_case_sensitive=False,
            password_policy=cognito.PasswordPolicy(
                min_length=14,
                require_lowercase=True,
                require_uppercase=True,
                require_digits=True,
                require_symbols=True,
                temp_password_validity=cdk.Duration.days(3),
            ),
            mfa=cognito.Mfa.REQUIRED,
            mfa_second_factor=cognito.MfaSecondFactor(otp=True, sms=False),  # TOTP apps; no SMS (SIM swaps)
            account_recovery=cognito.AccountRecovery.EMAIL_ONLY,
            deletion_protection=True,
            removal_policy=removal_policy,
            feature_plan=cognito.FeaturePlan.PLUS if plus else cognito.FeaturePlan.ESSENTIALS,
            standard_threat_protection_mode=(cognito.StandardThreatProtectionMode.FULL_FUNCTION if plus else None),
        )
        if not plus:
            acknowledge(
                pool,
                "AwsSolutions-COG8",
                "Plus feature plan off by configuration (cnai:api.cognito_plus=false): it is billed per monthly "
                "active user; sign-in is still SRP with TOTP MFA required, 14-character passwords and no "
                "self sign-up, and every call is throttled by the stage and the WAF.",
            )
        return pool

    def _grant_registry(self, package_groups: Sequence[str]) -> None:
        stack = cdk.Stack.of(self)
        role = self.roles[APPROVERS]
        names = [g.lower() for g in package_groups]  # SageMaker ARNs carry lower-case names
        resources = [
            *(stack.format_arn(service="sagemaker", resource="model-package-group", resource_name=n) for n in names),
            *(stack.format_arn(service="sagemaker", resource="model-package", resource_name=f"{n}/*") for n in names),
        ]
        allow(
            role,
            sid="ApproveModelPackages",
            actions=list(APPROVER_ACTIONS),
            resources=resources,
            wildcard_reason="Model package versions are numbered by SageMaker at registration: the versions of "
            "this deployment's package groups (model-package/<group>/*), no other group.",
        )
        acknowledge_inline_policy(role)

    def grant_api(self, api: apigw.RestApiBase, stage: str, *, ingest: bool, generate: bool = False) -> None:
        """The predict role may invoke the predict and model routes of `api`'s `stage` (and POST .../generate
        when a generator is served), the ingest role POST /v1/ingest (when the API has it): SigV4 with the
        group's credentials, these routes only."""
        predict_routes = PREDICT_ROUTES + (GENERATE_ROUTES if generate else ())
        for name, routes in ((PREDICT, predict_routes), (INGEST, INGEST_ROUTES if ingest else ())):
            role = self.roles[name]
            if routes:
                allow(
                    role,
                    sid="InvokeRoutes",
                    actions=["execute-api:Invoke"],
                    resources=[api.arn_for_execute_api(method, path, stage) for method, path in routes],
                    wildcard_reason="A path segment is the model name ({model}): any served model, these routes "
                    "and methods of this API's stage only.",
                )
            acknowledge_inline_policy(role)
