"""The public face of serving: a regional REST API in front of the predict Lambda (and the ingest Lambda).

Routes (the predict handler's APIGatewayRestResolver owns the routing inside; the API declares each one so
authorization, validation and throttling apply per method):

    POST /v1/models/{model}/predict   body validated by the handler (which audits every call), not the gateway
    POST /v1/models/{model}/generate  when a generator is served (`generate=True`): the same function, same rules
    GET  /v1/models                   GET /v1/models/{model}    GET /v1/health    GET /v1/openapi.json
    POST /v1/ingest                   ING's thin ingest Lambda, when given

Security: IAM (SigV4) authorization by default (or, given a `user_pool`, a Cognito user-pool authorizer on every
method: infra/constructs/identity.py), optional API keys with a usage plan and quota, TLS 1.2
security policy, stage throttling, a regional WAF web ACL on the stage (per-IP rate limit, AWS managed rule groups,
its own KMS-encrypted log group with the API key header redacted; `waf=False` leaves it out, e.g. in dev), a
request validator for the request parameters only, JSON access logs in a KMS-encrypted log group, execution logs
for errors, X-Ray tracing.

No body validation at the gateway: a 400 there would answer before the Lambda runs, so that predict call would
leave no audit record (one per call, success or failure) and get an error shape unlike the handler's. The
handler's pydantic model validates the body, answers the 400/413 and writes the audit record. Gateway-level
403 (auth, API key) and 429 (throttle, quota) never reach the Lambda: they appear only in the access logs.
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_cognito as cognito
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_wafv2 as wafv2
from constructs import Construct

from infra.constructs.nag import acknowledge, in_packs

TLS_POLICY = "TLS_1_2"
# AWS managed rule groups on the web ACL, in evaluation order. The common rule set's 8 KB body limit would block
# legitimate predict calls (up to serving.max_inputs x serving.max_input_chars of text): that one rule only counts;
# the handler bounds bodies itself (413).
MANAGED_RULE_GROUPS = (
    "AWSManagedRulesAmazonIpReputationList",
    "AWSManagedRulesKnownBadInputsRuleSet",
    "AWSManagedRulesCommonRuleSet",
)
COUNT_ONLY = {"AWSManagedRulesCommonRuleSet": ("SizeRestrictions_BODY",)}


class PredictApi(Construct):
    """`api` (RestApi), its `stage`, `access_logs`, and the `usage_plan` when API keys are on."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        predict: lambda_.IFunction,
        key: kms.IKey,
        stage_name: str,
        iam_auth: bool = True,
        user_pool: cognito.IUserPool | None = None,
        api_keys: bool = False,
        throttle_rate: float = 100.0,
        throttle_burst: int = 200,
        quota_per_day: int = 100_000,
        waf: bool = True,
        waf_rate_limit: int = 2000,
        ingest: lambda_.IFunction | None = None,
        generate: bool = False,
        log_retention: logs.RetentionDays = logs.RetentionDays.ONE_YEAR,
        removal_policy: cdk.RemovalPolicy = cdk.RemovalPolicy.RETAIN,
    ) -> None:
        super().__init__(scope, construct_id)
        if not (iam_auth or api_keys or user_pool):
            raise ValueError("iam_auth and api_keys are false and there is no user_pool: the API would be open")
        self.access_logs = logs.LogGroup(
            self, "AccessLogs", encryption_key=key, retention=log_retention, removal_policy=removal_policy
        )
        self.api = apigw.RestApi(
            self,
            "Api",
            # Unique per deployment: API Gateway's metrics carry the name (ApiName), and dev and prod may share
            # an account; the default (the construct id, "Api") would merge their dashboards and alarms.
            rest_api_name=f"{cdk.Stack.of(self).stack_name}-api",
            description="cnai serving: predict, model info, health (and ingest)",
            endpoint_types=[apigw.EndpointType.REGIONAL],
            cloud_watch_role=True,
            cloud_watch_role_removal_policy=removal_policy,
            deploy_options=apigw.StageOptions(
                stage_name=stage_name,
                tracing_enabled=True,
                metrics_enabled=True,
                logging_level=apigw.MethodLoggingLevel.ERROR,
                data_trace_enabled=False,  # full request logs would put raw texts in CloudWatch
                throttling_rate_limit=throttle_rate,
                throttling_burst_limit=throttle_burst,
                access_log_destination=apigw.LogGroupLogDestination(self.access_logs),
                access_log_format=apigw.AccessLogFormat.json_with_standard_fields(
                    caller=True,
                    http_method=True,
                    ip=True,
                    protocol=True,
                    request_time=True,
                    resource_path=True,
                    response_length=True,
                    status=True,
                    user=True,
                ),
            ),
        )
        cfn_api = self.api.node.default_child
        assert isinstance(cfn_api, apigw.CfnRestApi)
        cfn_api.security_policy = TLS_POLICY
        self.stage = self.api.deployment_stage
        # Parameters only: the bodies go to the handlers, which validate them and audit every predict call
        # (a gateway 400 would leave no audit record and answer in another shape).
        self.validator = apigw.RequestValidator(
            self, "Validator", rest_api=self.api, validate_request_body=False, validate_request_parameters=True
        )
        auth = apigw.AuthorizationType.IAM if iam_auth else apigw.AuthorizationType.NONE
        # With a user pool, every method takes its ID token instead of SigV4 (the handlers check the group).
        authorizer: apigw.IAuthorizer | None = None
        if user_pool is not None:
            auth = apigw.AuthorizationType.COGNITO
            authorizer = apigw.CognitoUserPoolsAuthorizer(
                self, "Authorizer", cognito_user_pools=[user_pool], results_cache_ttl=cdk.Duration.minutes(5)
            )
        target = apigw.LambdaIntegration(predict, proxy=True)

        def method(resource: apigw.IResource, verb: str, **extra: object) -> apigw.Method:
            return resource.add_method(
                verb,
                target,
                authorization_type=auth,
                authorizer=authorizer,
                api_key_required=api_keys,
                request_validator=self.validator,
                **extra,  # type: ignore[arg-type]
            )

        v1 = self.api.root.add_resource("v1")
        models = v1.add_resource("models")
        model = models.add_resource("{model}")
        method(models, "GET")
        method(model, "GET", request_parameters={"method.request.path.model": True})
        method(
            model.add_resource("predict"),
            "POST",
            request_parameters={"method.request.path.model": True},
        )
        if generate:  # the predict function answers it (cnai.serving.generate_api) and audits every call
            method(model.add_resource("generate"), "POST", request_parameters={"method.request.path.model": True})
        method(v1.add_resource("health"), "GET")
        method(v1.add_resource("openapi.json"), "GET")
        if ingest is not None:
            v1.add_resource("ingest").add_method(
                "POST",
                apigw.LambdaIntegration(ingest, proxy=True),
                authorization_type=auth,
                authorizer=authorizer,
                api_key_required=api_keys,
                request_validator=self.validator,
            )
        self.usage_plan: apigw.UsagePlan | None = None
        if api_keys:
            self.usage_plan = self.api.add_usage_plan(
                "UsagePlan",
                description="per-key throttle and daily quota for cnai serving",
                throttle=apigw.ThrottleSettings(rate_limit=throttle_rate, burst_limit=throttle_burst),
                quota=apigw.QuotaSettings(limit=quota_per_day, period=apigw.Period.DAY),
                api_stages=[apigw.UsagePlanPerApiStage(api=self.api, stage=self.stage)],
            )
            self.usage_plan.add_api_key(self.api.add_api_key("DefaultKey", description="first client key"))
        self.web_acl: wafv2.CfnWebACL | None = None
        if waf:
            self.web_acl = self._web_acl(key, waf_rate_limit, log_retention, removal_policy)
        self._acknowledge(iam_auth, cognito=user_pool is not None)

    def _web_acl(
        self, key: kms.IKey, rate_limit: int, log_retention: logs.RetentionDays, removal_policy: cdk.RemovalPolicy
    ) -> wafv2.CfnWebACL:
        """A regional web ACL on the stage: block an IP above `rate_limit` requests per 5 minutes, then the AWS
        managed groups; every request it sees is logged (WAF requires the `aws-waf-logs-` name prefix)."""
        if not 10 <= rate_limit <= 2_000_000_000:
            raise ValueError(f"waf_rate_limit {rate_limit}: WAF rate-based rules take 10 to 2e9 requests per 5 min")
        stack = cdk.Stack.of(self)

        def visibility(name: str) -> wafv2.CfnWebACL.VisibilityConfigProperty:
            return wafv2.CfnWebACL.VisibilityConfigProperty(
                cloud_watch_metrics_enabled=True, metric_name=name, sampled_requests_enabled=True
            )

        rules = [
            wafv2.CfnWebACL.RuleProperty(
                name="RateLimitPerIp",
                priority=0,
                action=wafv2.CfnWebACL.RuleActionProperty(block={}),
                statement=wafv2.CfnWebACL.StatementProperty(
                    rate_based_statement=wafv2.CfnWebACL.RateBasedStatementProperty(
                        limit=rate_limit, aggregate_key_type="IP"
                    )
                ),
                visibility_config=visibility("RateLimitPerIp"),
            )
        ]
        for priority, group in enumerate(MANAGED_RULE_GROUPS, start=1):
            overrides = [
                wafv2.CfnWebACL.RuleActionOverrideProperty(
                    name=rule, action_to_use=wafv2.CfnWebACL.RuleActionProperty(count={})
                )
                for rule in COUNT_ONLY.get(group, ())
            ]
            rules.append(
                wafv2.CfnWebACL.RuleProperty(
                    name=group,
                    priority=priority,
                    override_action=wafv2.CfnWebACL.OverrideActionProperty(none={}),
                    statement=wafv2.CfnWebACL.StatementProperty(
                        managed_rule_group_statement=wafv2.CfnWebACL.ManagedRuleGroupStatementProperty(
                            vendor_name="AWS", name=group, rule_action_overrides=overrides or None
                        )
                    ),
                    visibility_config=visibility(group),
                )
            )
        acl = wafv2.CfnWebACL(
            self,
            "WebAcl",
            scope="REGIONAL",
            default_action=wafv2.CfnWebACL.DefaultActionProperty(allow={}),
            description="cnai serving API: per-IP rate limit and AWS managed rule groups",
            rules=rules,
            visibility_config=visibility(f"{stack.stack_name}-api"),
        )
        # The stage ARN is a reference: CloudFormation creates the stage first.
        wafv2.CfnWebACLAssociation(
            self, "WebAclAssociation", resource_arn=self.stage.stage_arn, web_acl_arn=acl.attr_arn
        )
        waf_logs = logs.LogGroup(
            self,
            "WafLogs",
            log_group_name=f"aws-waf-logs-{stack.stack_name}",
            encryption_key=key,
            retention=log_retention,
            removal_policy=removal_policy,
        )
        wafv2.CfnLoggingConfiguration(
            self,
            "WafLogging",
            resource_arn=acl.attr_arn,
            # WAF expects the log group ARN without the trailing ':*' CloudFormation's Arn attribute carries.
            log_destination_configs=[
                stack.format_arn(
                    service="logs",
                    resource="log-group",
                    resource_name=waf_logs.log_group_name,
                    arn_format=cdk.ArnFormat.COLON_RESOURCE_NAME,
                )
            ],
            # An API key is a credential: never written to the WAF logs.
            redacted_fields=[wafv2.CfnLoggingConfiguration.FieldToMatchProperty(single_header={"Name": "x-api-key"})],
        )
        return acl

    def _acknowledge(self, iam_auth: bool, *, cognito: bool = False) -> None:
        stage = self.stage.node.default_child
        assert stage is not None
        acknowledge(
            stage,
            in_packs("APIGWCacheEnabledAndEncrypted", ("HIPAA.Security", "NIST.800.53.R5")),
            "Caching is off on purpose: every predict call must reach the handler, which writes one audit record "
            "per call and answers from the model version being served; a cached answer would be unaudited and "
            "could outlive a rollback. Nothing is stored at rest by the stage.",
        )
        acknowledge(
            stage,
            in_packs("APIGWSSLEnabled", ("HIPAA.Security", "NIST.800.53.R5")),
            "Every integration is a Lambda proxy invoked through the Lambda API with API Gateway's IAM identity; a "
            "client certificate only lets an HTTP backend authenticate the gateway, and there is no HTTP backend.",
        )
        if self.web_acl is None:
            acknowledge(
                stage,
                ["NIST.800.53.R5-APIGWAssociatedWithWAF", "AwsSolutions-APIG3"],
                "WAF switched off by configuration (cnai:api.waf=false, meant for dev): every method still requires "
                "SigV4 (IAM) or an API key, the stage and usage plan throttle, and the handler bounds every body.",
            )
        acknowledge(
            self.api,
            "AwsSolutions-APIG2",
            "The validator checks request parameters but deliberately not bodies: a gateway 400 answers before the "
            "predict Lambda runs, so the call would leave no audit record (one per call is required) and get a "
            "different error shape; the handler's pydantic model validates every body and audits the outcome.",
        )
        acknowledge(
            self.api,
            "AwsSolutions-IAM4",
            "API Gateway's account-level CloudWatch role uses the AWS managed AmazonAPIGatewayPushToCloudWatchLogs "
            "policy, the documented way to let the service write execution and access logs.",
            findings=["Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs"],
        )
        if cognito:
            return  # every method has the user-pool authorizer: COG4 and APIG4 hold, nothing to acknowledge
        if iam_auth:
            acknowledge(
                self.api,
                "AwsSolutions-COG4",
                "Callers are AWS principals (services, pipelines, operators) authenticated by SigV4 IAM "
                "authorization, whose principal ARN the audit trail records; no Cognito user pool is involved.",
            )
        else:
            acknowledge(
                self.api,
                "AwsSolutions-APIG4",
                "IAM authorization switched off by configuration (cnai:api.iam_auth=false): every method still "
                "requires an API key bound to a usage plan with throttle and quota.",
            )
            acknowledge(
                self.api,
                "AwsSolutions-COG4",
                "API-key deployment by configuration: callers are identified by API key id in the audit trail.",
            )
