"""The deploy stack: approval -> the "deploy" workflow -> a new predict function version on the `live` alias.

Reads `settings.deploy` (canary share and duration, alarm thresholds) and the served model
(`settings.serving.model_name`, whose package group the rule watches). The predict function, its role, key and
alarm topic come from the serving stack; the registered artifacts (training/<job>/output/model.tar.gz) and
their key from the training stack. It grants the predict role read access to those artifacts: a released
version loads the approved package's tar, not the one `cdk deploy` configured.

Ownership of the function and its alias (docs/deploy.md): CloudFormation creates the alias once; this
workflow alone moves it. Outputs with stable ids: DeployStateMachineArn, DeployRuleName, DeployFunctionName.

When the served model is routed to SageMaker Serverless (`cnai:serving.endpoint.route`), `endpoint` is the
serving stack's SageMakerServerless and releases go to it (cnai.deploy.endpoint): the deploy function gets the
endpoint's image, execution role, container environment and capacity (so a released Model runs what the
bootstrap runs), and may touch that endpoint, the Models and EndpointConfigs named `<endpoint>-p*`, and pass
that one execution role to SageMaker; the execution role may read registered artifacts.
"""

from __future__ import annotations

from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sns as sns
from constructs import Construct

from cnai.deploy.endpoint import ours
from cnai.deploy.events import approval_pattern
from cnai.settings import environment_for
from functions.deploy_model.settings import DeployFunctionSettings
from infra.config import Settings
from infra.constructs.deploy_workflow import DeployWorkflow
from infra.constructs.monitoring import Monitoring
from infra.constructs.nag import acknowledge, acknowledge_inline_policy
from infra.constructs.nag_findings import allow, finding, imported
from infra.constructs.python_function import PythonFunction, logs_key
from infra.constructs.runtime_layer import RuntimeLayer
from infra.constructs.sagemaker_serverless import SageMakerServerless, serving_image
from infra.constructs.training_workflow import OUTPUT


class DeployStack(cdk.Stack):
    """Attributes: `workflow`, `state_machine`, `rule`, `function` (the deploy function), `monitoring`."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: Settings,
        predict: lambda_.IFunction,
        predict_role: iam.IRole,
        predict_key: kms.IKey,
        predict_service: str,
        alias: str,
        serving_topic: sns.ITopic,
        artifacts: s3.IBucket,
        artifacts_key: kms.IKey,
        endpoint: SageMakerServerless | None = None,
        layer_code: lambda_.Code | None = None,
        function_code: lambda_.Code | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        d, model = settings.deploy, settings.serving.model_name
        group = settings.package_group(model)  # ValueError when the served model is not trained/registered
        # The other stacks' resources, imported explicitly (their export names fixed now: see nag_findings).
        function_arn = imported(self, predict, predict.function_arn)
        function_name = imported(self, predict, predict.function_name)
        predict_role = iam.Role.from_role_arn(
            self, "PredictRole", imported(self, predict_role, predict_role.role_arn), mutable=True
        )
        predict_key = kms.Key.from_key_arn(self, "PredictKey", imported(self, predict_key, predict_key.key_arn))
        artifacts = s3.Bucket.from_bucket_attributes(
            self,
            "Artifacts",
            bucket_arn=imported(self, artifacts, artifacts.bucket_arn),
            bucket_name=imported(self, artifacts, artifacts.bucket_name),
        )
        artifacts_key = kms.Key.from_key_arn(self, "ArtifactsKey", imported(self, artifacts_key, artifacts_key.key_arn))
        topic_arn = imported(self, serving_topic, serving_topic.topic_arn)

        self.key = logs_key(self, "Key", description="cnai deploy: the deploy function's env and logs, workflow logs")
        self.monitoring = Monitoring(
            self, "Monitoring", emails=settings.monitoring.alarm_emails, namespace=settings.project
        )
        layer = RuntimeLayer(self, "Runtime", code=layer_code)
        self.function = PythonFunction(
            self,
            "Deploy",
            function="deploy_model",
            description=f"cnai deploy: approved {model} package -> predict version, canary on {alias}, 100% or back",
            environment=environment_for(
                DeployFunctionSettings,
                function_name=function_name,
                alias=alias,
                model_name=model,
                group_prefix=settings.prefix,
                canary_percent=d.canary_percent,
                canary_s=d.canary_minutes * 60,
                check_interval_s=d.check_interval_s,
                p99_ms=d.p99_ms or settings.monitoring.predict_p99_ms,
                max_errors=d.max_errors,
                max_abstention_pct=d.max_abstention_pct,
                metrics_namespace=settings.project,
                metrics_service=predict_service,
                alarm_topic_arn=topic_arn,
                **self._endpoint_environment(settings, endpoint),
            ),
            metrics_namespace=settings.project,
            layers=[layer.layer],
            memory_size=256,
            timeout=cdk.Duration.minutes(5),
            key=self.key,
            code=function_code,
        )
        self._grant(function_arn, function_name, alias, predict_key, artifacts, artifacts_key, group, predict_role)
        if endpoint is not None:
            self._grant_endpoint(endpoint, artifacts, artifacts_key)

        self.workflow = DeployWorkflow(
            self,
            "Workflow",
            state_machine_name=f"{settings.prefix}-deploy",
            function=self.function.function,
            pattern=approval_pattern([group]),
            key=self.key,
        )
        self.state_machine, self.rule = self.workflow.state_machine, self.workflow.rule
        self.monitoring.function_errors("DeployErrors", self.function.function, "The deploy function")
        self.monitoring.alarm(
            "DeployExecutionsFailed",
            metric=self.state_machine.metric_failed(period=cdk.Duration.minutes(5), statistic="Sum"),
            description=f"{settings.prefix}-deploy: a release failed or a canary was rolled back (read the "
            "execution's Rollback/ReleaseFailed state and the package's ApprovalDescription)",
            threshold=0,
        )
        self.monitoring.above(
            "ApprovalDeadLetters",
            self.workflow.dead_letters.metric_approximate_number_of_messages_visible(
                period=cdk.Duration.minutes(5), statistic="Maximum"
            ),
            f"{settings.prefix}-deploy: an approval event could not start the deploy workflow and waits in the "
            "rule's dead-letter queue (re-approve, or start the workflow with the kept event)",
        )
        cdk.CfnOutput(self, "DeployStateMachineArn", value=self.state_machine.state_machine_arn)
        cdk.CfnOutput(self, "DeployRuleName", value=self.rule.rule_name)
        cdk.CfnOutput(self, "DeployFunctionName", value=self.function.function.function_name)

    def _grant(
        self,
        function_arn: str,
        function_name: str,
        alias: str,
        predict_key: kms.IKey,
        artifacts: s3.IBucket,
        artifacts_key: kms.IKey,
        group: str,
        predict_role: iam.IRole,
    ) -> None:
        role = self.function.role
        allow(
            role,
            sid="PredictVersionsAndAlias",
            actions=[
                "lambda:GetFunctionConfiguration",
                "lambda:UpdateFunctionConfiguration",
                "lambda:PublishVersion",
                "lambda:ListVersionsByFunction",
                "lambda:GetAlias",
                "lambda:CreateAlias",
                "lambda:UpdateAlias",
            ],
            resources=[function_arn, f"{function_arn}:*"],
            wildcard_reason="The predict function and its qualified ARNs (<arn>:<version>, <arn>:live): the "
            "workflow publishes versions and moves the alias of this one function.",
        )
        # The environment is encrypted with the serving key: reading it back and writing it need the key.
        allow(role, sid="PredictEnvironmentKey", actions=["kms:Decrypt", "kms:Encrypt", "kms:CreateGrant"],
              resources=[predict_key.key_arn])  # fmt: skip
        stack = cdk.Stack.of(self)
        allow(
            role,
            sid="CanaryAlarms",
            actions=["cloudwatch:PutMetricAlarm", "cloudwatch:DescribeAlarms", "cloudwatch:DeleteAlarms"],
            resources=[
                stack.format_arn(
                    service="cloudwatch",
                    resource="alarm",
                    resource_name=f"{function_name}-{alias}-canary-*",
                    arn_format=cdk.ArnFormat.COLON_RESOURCE_NAME,
                )
            ],
            wildcard_reason="A canary's alarms are named per released version at run time, "
            f"<predict function>-{alias}-canary-<version>-<kind>: no other alarm.",
        )
        allow(
            role,
            sid="ModelPackages",
            actions=["sagemaker:DescribeModelPackage", "sagemaker:UpdateModelPackage"],
            resources=[
                stack.format_arn(service="sagemaker", resource="model-package", resource_name=f"{group.lower()}/*")
            ],
            wildcard_reason=f"The versions of the served model's package group ({group}/<version>): read the "
            "approved one, mark a rolled-back one Rejected with the reason.",
        )
        artifact_objects = artifacts.arn_for_objects(f"{OUTPUT}/*")
        reason = (
            f"Registered model tars are written by SageMaker under {OUTPUT}/<training job>/output/ (job names per "
            "run): the fixed prefix, nothing else of the artifacts bucket."
        )
        allow(role, sid="ReadArtifactVersion", actions=["s3:GetObject", "s3:GetObjectVersion"],
              resources=[artifact_objects], wildcard_reason=reason)  # fmt: skip
        # A released version loads the approved package's tar: the predict role may read registered artifacts.
        policy = iam.Policy(self, "PredictReadsRegisteredModels")
        policy.add_statements(
            iam.PolicyStatement(
                sid="ReadRegisteredModels",
                actions=["s3:GetObject", "s3:GetObjectVersion"],
                resources=[artifact_objects],
            ),
            iam.PolicyStatement(
                sid="DecryptRegisteredModels", actions=["kms:Decrypt"], resources=[artifacts_key.key_arn]
            ),
        )
        policy.attach_to_role(predict_role)
        acknowledge(policy, "AwsSolutions-IAM5", reason, findings=[finding(policy, artifact_objects)])
        acknowledge_inline_policy(
            policy,
            f"{policy.node.path}: the predict role (serving stack) reads registered tars only after this stack exists; "
            "an inline policy here keeps that grant with the deploy stack that needs it, and cannot be attached to "
            "other principals.",
        )

    def _endpoint_environment(self, settings: Settings, endpoint: SageMakerServerless | None) -> dict[str, Any]:
        """The deploy function's endpoint settings: what every released Model is made of (the bootstrap's image,
        role, container environment and capacity). Empty when releases go to the predict alias."""
        if endpoint is None:
            return {}
        container = endpoint.model.primary_container
        environment = dict(getattr(container, "environment", None) or {})
        e = settings.serving.endpoint
        return {
            "endpoint_name": endpoint.endpoint_name,
            # Looked up again here: a region-token stack's image is a CfnMapping, which cannot cross stacks.
            "endpoint_image": serving_image(self, e.image_uri).uri,
            "endpoint_role_arn": imported(self, endpoint.role, endpoint.role.role_arn),
            "endpoint_memory_mb": e.memory_mb,
            "endpoint_max_concurrency": e.max_concurrency,
            "endpoint_environment": environment,
            # Every released configuration is encrypted and isolated as the bootstrap one is (cdk-nag checks the
            # bootstrap; these carry the same settings to what the workflow creates at run time).
            "endpoint_kms_key_arn": imported(self, endpoint, endpoint.kms_key_arn),
            "endpoint_network_isolation": endpoint.network_isolation,
            "endpoint_timeout_s": settings.deploy.endpoint_timeout_minutes * 60,
            "endpoint_check_s": settings.deploy.endpoint_check_interval_s,
            "endpoint_keep": settings.deploy.endpoint_keep_configs,
        }

    def _grant_endpoint(self, endpoint: SageMakerServerless, artifacts: s3.IBucket, artifacts_key: kms.IKey) -> None:
        """The endpoint path's permissions: that endpoint, our `<endpoint>-p*` Models and EndpointConfigs, passing
        the endpoint's execution role to SageMaker; and that role reading registered artifacts."""
        role, stack = self.function.role, cdk.Stack.of(self)
        name = endpoint.endpoint_name

        def arn(resource: str, resource_name: str) -> str:  # SageMaker ARNs carry names in lower case
            return stack.format_arn(service="sagemaker", resource=resource, resource_name=resource_name.lower())

        allow(role, sid="ServedEndpoint",
              actions=["sagemaker:DescribeEndpoint", "sagemaker:UpdateEndpoint", "sagemaker:InvokeEndpoint"],
              resources=[arn("endpoint", name)])  # fmt: skip
        released = f"Released Models and EndpointConfigs are named per package and release at run time, {ours(name)}"
        released += "<version>-<stamp>: only ours (never the stack's bootstrap"
        allow(role, sid="ReleasedModels",
              actions=["sagemaker:CreateModel", "sagemaker:DescribeModel", "sagemaker:DeleteModel",
                       "sagemaker:AddTags", "sagemaker:ListTags"],
              resources=[arn("model", f"{ours(name)}*")],
              wildcard_reason=f"{released} Model).")  # fmt: skip
        allow(role, sid="ReleasedEndpointConfigs",
              actions=["sagemaker:CreateEndpointConfig", "sagemaker:DescribeEndpointConfig",
                       "sagemaker:DeleteEndpointConfig"],
              resources=[arn("endpoint-config", f"{ours(name)}*")],
              wildcard_reason=f"{released} config).")  # fmt: skip
        # CreateEndpointConfig with the bootstrap's KmsKeyId: SageMaker encrypts through grants made as the caller.
        allow(role, sid="EndpointConfigKey", actions=["kms:CreateGrant", "kms:DescribeKey"],
              resources=[imported(self, endpoint, endpoint.kms_key_arn)],
              conditions={"Bool": {"kms:GrantIsForAWSResource": "true"}})  # fmt: skip
        serving_role = iam.Role.from_role_arn(
            self, "EndpointRole", imported(self, endpoint.role, endpoint.role.role_arn), mutable=True
        )
        allow(role, sid="PassEndpointRole", actions=["iam:PassRole"], resources=[serving_role.role_arn],
              conditions={"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}})  # fmt: skip
        # A released Model loads the approved package's tar: the endpoint's role may read registered artifacts.
        objects = artifacts.arn_for_objects(f"{OUTPUT}/*")
        policy = iam.Policy(self, "EndpointReadsRegisteredModels")
        policy.add_statements(
            iam.PolicyStatement(sid="ReadRegisteredModels", actions=["s3:GetObject", "s3:GetObjectVersion"],
                                resources=[objects]),
            iam.PolicyStatement(sid="DecryptRegisteredModels", actions=["kms:Decrypt"],
                                resources=[artifacts_key.key_arn]),
        )  # fmt: skip
        policy.attach_to_role(serving_role)
        acknowledge_inline_policy(
            policy,
            f"{policy.node.path}: the endpoint's role (serving stack) reads registered tars only once this stack "
            "exists; an inline policy keeps that grant with the deploy stack and cannot be attached elsewhere.",
        )
        acknowledge(
            policy,
            "AwsSolutions-IAM5",
            f"Registered model tars are written by SageMaker under {OUTPUT}/<training job>/output/ (job names per "
            "run): the fixed prefix of the artifacts bucket, nothing else.",
            findings=[finding(policy, objects)],
        )
