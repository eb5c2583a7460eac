"""SageMaker Serverless Inference for the same model.tar.gz the predict Lambda serves (for models too big for it).

Model data: the artifact tar as is. Inference code: a separate `sourcedir.tar.gz` asset (the container's
`SAGEMAKER_SUBMIT_DIRECTORY`), built locally without Docker from functions/sagemaker_inference/ (the entry
point `inference.py`: model_fn/input_fn/predict_fn/output_fn over cnai's Predictor), the `cnai` package and a
requirements.txt the container installs at start (onnxruntime, tokenizers, numpy, pydantic). So a new model
version never needs a new code bundle and the code never needs a new model tar.

Image: no PyTorch. By default the SageMaker scikit-learn inference image of the region (a plain Python
serving stack from AWS: sagemaker-inference-toolkit + the model_fn contract, no deep-learning framework),
from REGION_IMAGES; `image_uri` overrides it (a slimmer custom image with the requirements baked in, which
also allows network isolation). See docs/serving-infra.md for the trade-offs.
"""

from __future__ import annotations

import tarfile
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import jsii
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_assets as s3_assets
from aws_cdk import aws_sagemaker as sagemaker
from constructs import Construct

from infra.constructs.nag import acknowledge
from infra.constructs.python_function import COPY_IGNORE, ROOT, copy_sources

SKLEARN_TAG = "1.2-1-cpu-py3"
# Account of the SageMaker scikit-learn image per region (sagemaker-python-sdk image_uris/sklearn.json).
REGION_IMAGES = {
    "us-east-1": "683313688378",
    "us-east-2": "257758044811",
    "us-west-1": "746614075791",
    "us-west-2": "246618743249",
    "eu-west-1": "141502667606",
    "eu-west-2": "764974769150",
    "eu-central-1": "492215442770",
}
REQUIREMENTS = "onnxruntime>=1.20,<2\ntokenizers>=0.21,<1\nnumpy>=1.26\npydantic>=2.7,<3\n"
CODE_FOLDER = "sagemaker_inference"


def write_sourcedir(output_dir: Path, *, root: Path | None = None) -> Path:
    """`sourcedir.tar.gz` with inference.py (+ the folder's modules), cnai/ and requirements.txt at its root."""
    root = root or ROOT
    staging = output_dir / "staging"
    copy_sources(staging, CODE_FOLDER, root=root)
    tar_path = output_dir / "sourcedir.tar.gz"
    with tarfile.open(tar_path, "w:gz") as tar:
        for path in sorted((staging / "functions" / CODE_FOLDER).iterdir()):
            tar.add(path, arcname=path.name, filter=_no_caches)
        tar.add(staging / "cnai", arcname="cnai", filter=_no_caches)
        requirements = staging / "requirements.txt"
        requirements.write_text(REQUIREMENTS, encoding="utf-8")
        tar.add(requirements, arcname="requirements.txt")
    for path in sorted(staging.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    staging.rmdir()
    return tar_path


def _no_caches(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
    name = Path(info.name).name
    return None if COPY_IGNORE("", [name]) else info


@jsii.implements(cdk.ILocalBundling)
class _SourcedirBundler:
    def try_bundle(self, output_dir: str, *_options: Any, **_kw_options: Any) -> bool:
        write_sourcedir(Path(output_dir))
        return True


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
        model_name: str,
        memory_mb: int,
        max_concurrency: int,
        bucket_key: kms.IKey | None = None,
        image_uri: str | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        if memory_mb not in (1024, 2048, 3072, 4096, 5120, 6144):
            raise ValueError(f"memory_mb {memory_mb}: SageMaker Serverless takes 1024 to 6144 in 1024 steps")
        if not 1 <= max_concurrency <= 200:
            raise ValueError(f"max_concurrency {max_concurrency}: SageMaker Serverless takes 1 to 200")
        stack = cdk.Stack.of(self)
        self.code = s3_assets.Asset(
            self,
            "Code",
            # Only the bundler reads functions/sagemaker_inference; the source path just anchors the asset.
            path=str(ROOT / "functions"),
            asset_hash_type=cdk.AssetHashType.OUTPUT,
            bundling=cdk.BundlingOptions(
                image=cdk.DockerImage.from_registry("cnai/local-bundling-only"),
                local=_SourcedirBundler(),
                output_type=cdk.BundlingOutput.ARCHIVED,
            ),
        )
        if image_uri is None:
            mapping = cdk.CfnMapping(
                self, "SklearnImageAccount", mapping={r: {"account": a} for r, a in REGION_IMAGES.items()}
            )
            account = mapping.find_in_map(stack.region, "account")
            image_uri = f"{account}.dkr.ecr.{stack.region}.{stack.url_suffix}/sagemaker-scikit-learn:{SKLEARN_TAG}"
        self.image_uri = image_uri
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
            description="SageMaker Serverless: read the model tar and the code bundle, pull the image, write logs",
        )
        self.role.add_to_policy(
            iam.PolicyStatement(
                actions=["s3:GetObject", "s3:GetObjectVersion"],
                resources=[model_bucket.arn_for_objects(model_key)],
            )
        )
        self.code.grant_read(self.role)
        if bucket_key is not None:
            bucket_key.grant_decrypt(self.role)
        self.role.add_to_policy(iam.PolicyStatement(actions=["ecr:GetAuthorizationToken"], resources=["*"]))
        self.role.add_to_policy(
            iam.PolicyStatement(
                actions=["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"],
                resources=[f"arn:{stack.partition}:ecr:{stack.region}:*:repository/*"],
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
            primary_container=sagemaker.CfnModel.ContainerDefinitionProperty(
                image=image_uri,
                model_data_url=f"s3://{model_bucket.bucket_name}/{model_key}",
                environment={
                    "SAGEMAKER_PROGRAM": "inference.py",
                    "SAGEMAKER_SUBMIT_DIRECTORY": self.code.s3_object_url,
                    "SAGEMAKER_REGION": stack.region,
                    "SAGEMAKER_CONTAINER_LOG_LEVEL": "20",
                    "CNAI_MODEL_NAME": model_name,
                },
            ),
        )
        self.model.node.add_dependency(self.role)
        self.endpoint_config = sagemaker.CfnEndpointConfig(
            self,
            "Config",
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
        acknowledge(
            self.model,
            "AwsSolutions-SM3",
            "Network isolation is off because the default AWS scikit-learn image installs the bundle's "
            "requirements.txt (onnxruntime, tokenizers) at start; a custom image (cnai:sagemaker_image_uri) with "
            "them baked in can switch isolation on.",
        )
        acknowledge(
            self.endpoint_config,
            "AwsSolutions-SM2",
            "Serverless variants attach no ML storage volume to encrypt (KmsKeyId applies to instance variants); "
            "the model data itself is SSE-KMS in S3.",
        )
        acknowledge(
            self.role,
            "AwsSolutions-IAM5",
            "ecr:GetAuthorizationToken supports no resource-level permission; the image repositories are AWS-owned "
            "per-region accounts chosen by mapping, so the pull actions name repository/* in this region.",
            findings=["Resource::*", f"Resource::arn:<AWS::Partition>:ecr:{region}:*:repository/*"],
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
        acknowledge(
            self.role,
            "AwsSolutions-IAM5",
            "The CDK asset grant reads the code bundle object from the bootstrap assets bucket (s3:GetObject*/List* "
            "on that bucket); the KMS grant is kms:Decrypt on the model bucket's CMK only.",
            findings=[
                "Action::s3:GetObject*",
                "Action::s3:GetBucket*",
                "Action::s3:List*",
                f"Resource::arn:<AWS::Partition>:s3:::cdk-hnb659fds-assets-{account}-{region}/*",
            ],
        )
