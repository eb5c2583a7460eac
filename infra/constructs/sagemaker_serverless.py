"""SageMaker Serverless Inference for the same model.tar.gz the predict Lambda serves (for models too big for it).

Model data: the artifact tar as is. `cnai.serving.sagemaker.package_model` writes it with the artifact files at the
root (what the Lambda's predictor loads and verifies) and `code/` beside them: `inference.py` (the
model_fn/input_fn/predict_fn/output_fn hooks over cnai's Predictor), the cnai modules it needs and a
requirements.txt (onnxruntime, tokenizers, numpy, pydantic) that the container installs at start. The
SageMaker inference toolkit looks for exactly that `code/` folder in the model directory, so one tar serves
both places and a new model version is one new object, nothing else.

Image: the AWS Deep Learning Container for PyTorch inference, CPU, Python 3.12 (SERVING_FRAMEWORK_VERSION),
looked up at synth time with the SageMaker SDK's table (infra/constructs/framework_image.py). It is chosen for
its Python (cnai needs >= 3.11; the scikit-learn images run 3.9) and its SageMaker inference toolkit (the
model_fn contract, requirements.txt install); PyTorch is present in the image but never imported: the hooks run
onnxruntime only. `image_uri` overrides it, e.g. a slim custom image with the requirements baked in (faster cold
start, and network isolation becomes possible). See docs/serving-infra.md.
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sagemaker as sagemaker
from constructs import Construct

from infra.constructs.framework_image import EcrImage, FrameworkImage, framework_image, parse_image_uri
from infra.constructs.nag import acknowledge, acknowledge_inline_policy

__all__ = ["EcrImage", "SageMakerServerless", "parse_image_uri", "serving_image"]

# The serving image: PyTorch inference DLC, CPU (serverless endpoints run on CPU), Python 3.12.
SERVING_FRAMEWORK_VERSION = "2.6"
SERVING_PY_VERSION = "py312"
SERVING_INSTANCE_TYPE = "ml.m5.xlarge"  # only selects the CPU image; serverless variants name no instance
SAGEMAKER_PROGRAM = "inference.py"


def serving_image(scope: Construct, image_uri: str | None) -> FrameworkImage:
    """The configured image (and its repository), or the regional PyTorch inference DLC from the SDK's table."""
    if image_uri is not None:
        image = parse_image_uri(image_uri)
        stack = cdk.Stack.of(scope)
        return FrameworkImage(
            image_uri, f"arn:{stack.partition}:ecr:{image.region}:{image.account}:repository/{image.repository}"
        )
    return framework_image(
        scope,
        "ServingImage",
        version=SERVING_FRAMEWORK_VERSION,
        py_version=SERVING_PY_VERSION,
        instance_type=SERVING_INSTANCE_TYPE,
        image_scope="inference",
    )


class SageMakerServerless(Construct):
    """`model`, `endpoint_config`, `endpoint` (named `endpoint_name`) and the execution `role`."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        endpoint_name: str,
        model_bucket: s3.IBucket,
        model_key: str,
        memory_mb: int,
        max_concurrency: int,
        key: kms.IKey,
        bucket_key: kms.IKey | None = None,
        image_uri: str | None = None,
        network_isolation: bool = False,
    ) -> None:
        """`key` encrypts what SageMaker stores for the endpoint (its copy of the image); `network_isolation`
        runs the container without network, which only an image with the requirements baked in survives."""
        super().__init__(scope, construct_id)
        if network_isolation and image_uri is None:
            raise ValueError(
                "network_isolation needs image_uri: the default image pip-installs code/requirements.txt at start"
            )
        self.network_isolation = network_isolation
        self.kms_key_arn = key.key_arn
        if memory_mb not in (1024, 2048, 3072, 4096, 5120, 6144):
            raise ValueError(f"memory_mb {memory_mb}: SageMaker Serverless takes 1024 to 6144 in 1024 steps")
        if not 1 <= max_concurrency <= 200:
            raise ValueError(f"max_concurrency {max_concurrency}: SageMaker Serverless takes 1 to 200")
        stack = cdk.Stack.of(self)
        image = serving_image(self, image_uri)
        self.image_uri = image.uri
        # The pull actions name the one repository the image lives in (the DLC's, or the configured URI's
        # account, region and repository): never another account's ECR.
        self.image_repository_arn = image.repository_arn
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
            description="SageMaker Serverless: read the model tar, pull the image, write the endpoint's logs",
        )
        self.role.add_to_policy(
            iam.PolicyStatement(
                actions=["s3:GetObject", "s3:GetObjectVersion"],
                resources=[model_bucket.arn_for_objects(model_key)],
            )
        )
        if bucket_key is not None:
            bucket_key.grant_decrypt(self.role)
        # The endpoint configuration's KmsKeyId: SageMaker encrypts its copy of the image with it, through grants.
        key.grant(self.role, "kms:CreateGrant", "kms:DescribeKey", "kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey")
        self.role.add_to_policy(iam.PolicyStatement(actions=["ecr:GetAuthorizationToken"], resources=["*"]))
        self.role.add_to_policy(
            iam.PolicyStatement(
                actions=["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"],
                resources=[self.image_repository_arn],
            )
        )
        endpoint_logs = stack.format_arn(
            service="logs",
            resource="log-group",
            resource_name=f"/aws/sagemaker/Endpoints/{endpoint_name}:*",
            arn_format=cdk.ArnFormat.COLON_RESOURCE_NAME,
        )
        self.role.add_to_policy(
            iam.PolicyStatement(
                actions=["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
                resources=[endpoint_logs],
            )
        )
        self.model = sagemaker.CfnModel(
            self,
            "Model",
            execution_role_arn=self.role.role_arn,
            enable_network_isolation=network_isolation,
            primary_container=sagemaker.CfnModel.ContainerDefinitionProperty(
                image=self.image_uri,
                model_data_url=f"s3://{model_bucket.bucket_name}/{model_key}",
                environment={
                    "SAGEMAKER_PROGRAM": SAGEMAKER_PROGRAM,
                    "SAGEMAKER_SUBMIT_DIRECTORY": "/opt/ml/model/code",
                    "SAGEMAKER_REGION": stack.region,
                    "SAGEMAKER_CONTAINER_LOG_LEVEL": "20",
                },
            ),
        )
        self.model.node.add_dependency(self.role)
        self.endpoint_config = sagemaker.CfnEndpointConfig(
            self,
            "Config",
            kms_key_id=key.key_arn,
            production_variants=[
                sagemaker.CfnEndpointConfig.ProductionVariantProperty(
                    variant_name="AllTraffic",
                    model_name=self.model.attr_model_name,
                    serverless_config=sagemaker.CfnEndpointConfig.ServerlessConfigProperty(
                        memory_size_in_mb=memory_mb, max_concurrency=max_concurrency
                    ),
                )
            ],
        )
        self.endpoint = sagemaker.CfnEndpoint(
            self,
            "Endpoint",
            endpoint_name=endpoint_name,
            endpoint_config_name=self.endpoint_config.attr_endpoint_config_name,
        )
        self.endpoint_name = endpoint_name
        self.endpoint_arn = stack.format_arn(
            service="sagemaker", resource="endpoint", resource_name=endpoint_name.lower()
        )
        self._acknowledge()

    def _acknowledge(self) -> None:
        stack = cdk.Stack.of(self)
        region = "<AWS::Region>" if cdk.Token.is_unresolved(stack.region) else stack.region
        account = "<AWS::AccountId>" if cdk.Token.is_unresolved(stack.account) else stack.account
        acknowledge(
            self.model,
            "AwsSolutions-SM1",
            "Serverless endpoints run in AWS-managed capacity; the model reads only its S3 tar and code bundle "
            "(both SSE-KMS, TLS-only buckets), so no VPC is attached.",
        )
        if not self.network_isolation:
            acknowledge(
                self.model,
                "AwsSolutions-SM3",
                "Network isolation is off because the default AWS PyTorch inference image installs the tar's "
                "code/requirements.txt (onnxruntime, tokenizers) at start; a custom image "
                "(cnai:serving.endpoint.image_uri) with them baked in switches isolation on.",
            )
        acknowledge_inline_policy(self.role)
        acknowledge(
            self.role,
            "AwsSolutions-IAM5",
            "Resource '*' is only for ecr:GetAuthorizationToken, which supports no resource-level permission (the "
            "registry login token); the image pull actions name the one image repository.",
            findings=["Resource::*"],
        )
        acknowledge(
            self.role,
            "AwsSolutions-IAM5",
            "SageMaker names the log streams of the endpoint's log group at run time: the resource is that one "
            "log group's streams (/aws/sagemaker/Endpoints/<endpoint>:*).",
            findings=[
                f"Resource::arn:<AWS::Partition>:logs:{region}:{account}:log-group:/aws/sagemaker/Endpoints/"
                f"{self.endpoint_name}:*"
            ],
        )
