"""The serving stack: the predict Lambda behind a regional REST API, its audit trail, SageMaker Serverless.

    clients --SigV4 / API key--> API Gateway (regional, TLS 1.2, throttled, validated, access logs, X-Ray)
        --> alias `live` of the predict Lambda (arm64, 3.12, runtime layer, reserved + optional provisioned
            concurrency) --> model.tar.gz from S3, pinned by object version, loaded once per container
                         \\--> (by configuration) SageMaker Serverless endpoint on the same tar
                         \\--> (serving.generator.model_key) the generator's SageMaker Serverless endpoint
        predict log group (KMS) --{ $.cnai_audit IS TRUE }--> Firehose (KMS) --> S3 Object Lock + Glue/Athena

Outputs with stable ids: ApiUrl, PredictFunctionName, EndpointName (and, with cnai:api.auth=cognito, UserPoolId,
UserPoolClientId, IdentityPoolId; with serving.generator.model_key, GeneratorEndpointName).
"""

from __future__ import annotations

from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from constructs import Construct

from cnai.settings import environment_for
from functions.predict.settings import PredictSettings
from infra.config import Settings
from infra.constructs.audit_trail import AuditTrail
from infra.constructs.identity import Identity
from infra.constructs.monitoring import Monitoring
from infra.constructs.nag import acknowledge, acknowledge_inline_policy
from infra.constructs.nag_findings import allow, finding
from infra.constructs.predict_api import PredictApi
from infra.constructs.python_function import Invocation, PythonFunction, logs_key
from infra.constructs.runtime_layer import RuntimeLayer
from infra.constructs.sagemaker_serverless import SageMakerServerless
from infra.constructs.secure_bucket import SecureBucket

ALIAS = "live"


class ServingStack(cdk.Stack):
    """Attributes: `api`, `predict`, `alias`, `audit`, `endpoint` (None when disabled), `model_bucket`."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: Settings,
        ingest_function_arn: str | None = None,
        layer_code: lambda_.Code | None = None,
        function_code: lambda_.Code | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        s = settings
        self.key = logs_key(self, "Key", description="cnai serving: logs, Lambda env, audit stream and bucket")
        if s.serving.model_bucket:
            self.model_bucket: s3.IBucket = s3.Bucket.from_bucket_name(self, "Models", s.serving.model_bucket)
            model_bucket_key = None
        else:
            models = SecureBucket(self, "Models", key=self.key)
            self.model_bucket, model_bucket_key = models.bucket, models.key
        model_uri = f"s3://{self.model_bucket.bucket_name}/{s.serving.model_key}"

        self.endpoint: SageMakerServerless | None = None
        if s.serving.endpoint.enabled:
            self.endpoint = SageMakerServerless(
                self,
                "Serverless",
                endpoint_name=f"{s.prefix}-{s.serving.model_name}",
                model_bucket=self.model_bucket,
                model_key=s.serving.model_key,
                memory_mb=s.serving.endpoint.memory_mb,
                max_concurrency=s.serving.endpoint.max_concurrency,
                bucket_key=model_bucket_key,
                image_uri=s.serving.endpoint.image_uri,
                key=self.key,
                network_isolation=s.serving.endpoint.isolated,
            )
        routes = (
            {s.serving.model_name: self.endpoint.endpoint_name} if self.endpoint and s.serving.endpoint.route else {}
        )
        # cnai:serving.generator.model_key: the generator on its own endpoint (the same construct, image and
        # isolation as the classifier's), reached by the predict function through CNAI_GENERATOR_URI.
        self.generator: SageMakerServerless | None = None
        generator = s.serving.generator
        if generator.model_key:
            self.generator = SageMakerServerless(
                self,
                "Generator",
                endpoint_name=f"{s.prefix}-generate",
                model_bucket=self.model_bucket,
                model_key=generator.model_key,
                memory_mb=generator.memory_mb,
                max_concurrency=generator.max_concurrency,
                bucket_key=model_bucket_key,
                image_uri=s.serving.endpoint.image_uri,
                key=self.key,
                network_isolation=s.serving.endpoint.isolated,
            )

        self.layer = RuntimeLayer(self, "Runtime", code=layer_code)
        if not s.serving.model_version_id:
            cdk.Annotations.of(self).add_warning_v2(
                "cnai:unpinned-model",
                f"{model_uri} is not pinned: set -c cnai:serving.model_version_id=<S3 VersionId> so a deployment "
                "serves exactly the artifact it was tested with",
            )
        environment = environment_for(
            PredictSettings,
            model_name=s.serving.model_name,
            model_uri=model_uri,
            model_version_id=s.serving.model_version_id,
            audit_sink="stdout",  # the log group: its subscription feeds the Object-Locked audit trail
            audit_store_text=s.audit.store_text,
            max_inputs=s.serving.max_inputs,
            max_input_chars=s.serving.max_input_chars,
            sagemaker_endpoints=routes or None,
            model_package_group=s.package_group(s.serving.model_name),
            generator_uri=f"sagemaker:{self.generator.endpoint_name}" if self.generator else None,
            max_new_tokens=generator.max_new_tokens if self.generator else None,
            generate_deadline_s=generator.deadline_s if self.generator else None,
        )
        self.predict = PythonFunction(
            self,
            "Predict",
            function="predict",
            description=f"cnai predict: {s.serving.model_name} (onnxruntime, audit trail)",
            environment=environment,
            metrics_namespace=s.project,
            layers=[self.layer.layer],
            memory_size=s.serving.memory_mb,
            # API Gateway's integration limit; above the generate deadline (serving.generator.deadline_s <= 25 s)
            timeout=cdk.Duration.seconds(29),
            reserved_concurrency=s.serving.reserved_concurrency,
            invocation=Invocation.api(),
            key=self.key,
            code=function_code,
        )
        role = self.predict.role
        # The model tar only, exact key: the function reads one artifact at init and nothing else.
        role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["s3:GetObject", "s3:GetObjectVersion"],
                resources=[self.model_bucket.arn_for_objects(s.serving.model_key)],
            )
        )
        if model_bucket_key is not None:
            model_bucket_key.grant_decrypt(role)
        if routes and self.endpoint is not None:
            role.add_to_principal_policy(
                iam.PolicyStatement(actions=["sagemaker:InvokeEndpoint"], resources=[self.endpoint.endpoint_arn])
            )
        if self.generator is not None:
            role.add_to_principal_policy(
                iam.PolicyStatement(actions=["sagemaker:InvokeEndpoint"], resources=[self.generator.endpoint_arn])
            )
        self._grant_describe_self(s)
        # CloudFormation publishes ONE version (Bootstrap: fixed logical id, properties that never change) and
        # creates the alias on it once. From then on the deploy workflow alone publishes versions and moves the
        # alias (infra/stacks/deploy.py, docs/deploy.md): a later `cdk deploy` finds no change to apply to
        # either, so it cannot put back the bootstrap model or clear a canary. (CDK's `current_version` would
        # publish a new version on every code or environment change and re-point the alias at it.)
        bootstrap = lambda_.Version(
            self,
            "Bootstrap",
            lambda_=self.predict.function,
            description="published once by CloudFormation; later versions are the deploy workflow's",
        )
        self.alias = lambda_.Alias(
            self,
            "Live",
            alias_name=ALIAS,
            version=bootstrap,
            provisioned_concurrent_executions=s.serving.provisioned_concurrency or None,
        )

        self.monitoring = Monitoring(self, "Monitoring", emails=s.monitoring.alarm_emails, namespace=s.project)
        self.audit = AuditTrail(
            self,
            "Audit",
            source=self.predict.log_group,
            key=self.key,
            retention_days=s.audit.retention_days,
            lock_mode=s.audit.lock_mode,
            database_name=f"{s.project}_{s.stage}_audit".replace("-", "_"),
            monitoring=self.monitoring,
        )

        ingest = None
        if ingest_function_arn:
            # Imported, not referenced: the invoke permission lives here and the stacks stay acyclic.
            ingest = lambda_.Function.from_function_attributes(
                self, "Ingest", function_arn=ingest_function_arn, same_environment=True
            )
        # cnai:api.auth=cognito: people sign in to a user pool; its groups map to roles (docs/serving-infra.md).
        self.identity: Identity | None = None
        if s.api.auth == "cognito":
            self.identity = Identity(
                self,
                "Identity",
                package_groups=[s.package_group(m) for m in s.training.models],
                user_pool_id=s.api.user_pool_id,
                plus=s.api.cognito_plus,
            )
        self.api = PredictApi(
            self,
            "Api",
            predict=self.alias,
            ingest=ingest,
            key=self.key,
            stage_name=s.stage,
            iam_auth=s.api.iam_auth,
            user_pool=self.identity.user_pool if self.identity else None,
            api_keys=s.api.keys,
            throttle_rate=s.api.throttle_rate,
            throttle_burst=s.api.throttle_burst,
            quota_per_day=s.api.quota_per_day,
            waf=s.api.waf,
            waf_rate_limit=s.api.waf_rate_limit,
            generate=self.generator is not None,
        )

        self._alarms(s)

        if self.identity is not None:
            self.identity.grant_api(
                self.api.api, s.stage, ingest=ingest is not None, generate=self.generator is not None
            )
            cdk.CfnOutput(self, "UserPoolId", value=self.identity.user_pool.user_pool_id)
            cdk.CfnOutput(self, "UserPoolClientId", value=self.identity.client.user_pool_client_id)
            cdk.CfnOutput(self, "IdentityPoolId", value=self.identity.identity_pool.ref)

        cdk.CfnOutput(self, "ApiUrl", value=self.api.api.url, description="REST API base URL (stage)")
        cdk.CfnOutput(self, "PredictFunctionName", value=self.predict.function.function_name)
        cdk.CfnOutput(
            self,
            "EndpointName",
            value=self.endpoint.endpoint_name if self.endpoint else "disabled",
            description="SageMaker Serverless endpoint ('disabled' when cnai:serving.endpoint.enabled is false)",
        )
        if self.generator is not None:  # only then: a deployment without a generator keeps its template as it was
            cdk.CfnOutput(
                self,
                "GeneratorEndpointName",
                value=self.generator.endpoint_name,
                description="the generator's SageMaker Serverless endpoint (serving.generator.model_key)",
            )
        cdk.CfnOutput(self, "AuditBucketName", value=self.audit.bucket.bucket_name)
        acknowledge(
            self.predict.role,
            "AwsSolutions-IAM5",
            "kms:GenerateDataKey*/ReEncrypt* come from the CDK key grant on the one serving CMK (its ARN, not '*').",
            findings=["Action::kms:GenerateDataKey*", "Action::kms:ReEncrypt*"],
        )

    def _grant_describe_self(self, s: Settings) -> None:
        """GET /v1/models/{model} (cnai.serving.live) reads the registry record of the package version served
        and the function's own alias: read-only calls on named resources, made on that route only."""
        group = s.package_group(s.serving.model_name).lower()  # SageMaker ARNs carry lower-case names
        allow(
            self.predict.role,
            sid="DescribeServedPackage",
            actions=["sagemaker:DescribeModelPackage"],
            resources=[self.format_arn(service="sagemaker", resource="model-package", resource_name=f"{group}/*")],
            wildcard_reason=f"The versions of the served model's package group ({group}/<version>, numbered by "
            "SageMaker at registration): read the approval of the one served, no other group.",
        )
        # A policy of its own, not the role's DefaultPolicy: the function depends on that one (CDK adds the
        # DependsOn), so naming the function's ARN there would make a cycle.
        fn = self.predict.function
        qualified = f"{fn.function_arn}:*"
        reason = (
            "The predict function's own qualified ARNs (<arn>:live, <arn>:<version>, versions published by the "
            "deploy workflow at run time): it reads its alias's routing and its versions' pinned model, nothing else."
        )
        policy = iam.Policy(self, "PredictReadsItsAlias")
        policy.add_statements(
            iam.PolicyStatement(
                sid="ReadOwnAlias",
                actions=["lambda:GetAlias", "lambda:GetFunctionConfiguration"],
                resources=[fn.function_arn, qualified],
            )
        )
        policy.attach_to_role(self.predict.role)
        acknowledge(policy, "AwsSolutions-IAM5", reason, findings=[finding(policy, qualified)])
        acknowledge_inline_policy(
            policy,
            f"{policy.node.path}: read-only calls on the predict function itself; a policy apart from the role's "
            "DefaultPolicy (which the function depends on) so that it may name the function's ARN.",
        )

    def _alarms(self, s: Settings) -> None:
        """Predict failures reach a person: crashes, throttling, slow answers, refused audits, API 5xx."""
        watch, fn = self.monitoring, self.predict.function
        watch.function_errors("PredictErrors", fn, "The predict function")
        watch.function_throttles("PredictThrottles", fn, "The predict function")
        watch.function_p99("PredictLatency", fn, "The predict function", s.monitoring.predict_p99_ms)
        watch.above(
            "AuditFailures",
            watch.custom_metric("AuditFailures", service=self.predict.service),
            "Predict calls were refused because their audit record could not be written (fail closed, 503): "
            "the audit sink is failing",
        )
        watch.above(
            "Api5xx",
            self.api.api.metric_server_error(statistic="Sum", period=cdk.Duration.minutes(5)),
            "The REST API answered 5xx: read the predict function's log group and the API access logs",
        )
        for alarm, endpoint in (("EndpointErrors", self.endpoint), ("GeneratorEndpointErrors", self.generator)):
            if endpoint is None:
                continue
            watch.above(
                alarm,
                cloudwatch.Metric(
                    namespace="AWS/SageMaker",
                    metric_name="Invocation5XXErrors",
                    dimensions_map={"EndpointName": endpoint.endpoint_name, "VariantName": "AllTraffic"},
                    statistic="Sum",
                    period=cdk.Duration.minutes(5),
                ),
                f"The SageMaker Serverless endpoint {endpoint.endpoint_name} answered 5xx: read "
                "/aws/sagemaker/Endpoints/<endpoint>",
            )
