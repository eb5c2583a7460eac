"""One Python Lambda function the way every cnai function is deployed.

arm64 + Python 3.12 (the runtime layer is built for cp312 manylinux2014_aarch64 wheels), its own
least-privilege role (no managed policies: write to its own log group, X-Ray, plus what the caller
grants), a KMS-encrypted log group with retention, X-Ray active, environment encrypted with a CMK.

The code asset mirrors the repository layout, so handlers import absolutely (`functions.<name>.x`, `cnai.x`):

    functions/__init__.py
    functions/<name>/...     the thin handler and its modules
    cnai/...                 the core library (runtime code only; `models/` never ships)

It is assembled by a local bundler (a plain file copy, no Docker). Tests synthesize with
`aws:cdk:bundling-stacks: []` so nothing is copied, or pass `code=` (a prebuilt folder).
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import jsii
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra.constructs.nag import acknowledge, acknowledge_inline_policy, in_packs

ROOT = Path(__file__).resolve().parents[2]
# A Step Functions task function rarely runs more than a few at once (one per workflow execution in flight).
TASK_CONCURRENCY = 5
RUNTIME = lambda_.Runtime.PYTHON_3_12
ARCHITECTURE = lambda_.Architecture.ARM_64
# Never shipped: caches and bytecode compiled for the build host's Python.
COPY_IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", "*.pyo", ".mypy_cache", ".pytest_cache")


def copy_sources(
    output_dir: Path, function: str, packages: Sequence[str] = ("cnai",), *, root: Path | None = None
) -> Path:
    """Copy `functions/<function>/` and the `packages` (repository-relative) into `output_dir`.

    Raises FileNotFoundError naming the missing folder: a typo in a function name must fail the synth,
    not deploy an empty zip.
    """
    root = root or ROOT
    sources = [root / "functions" / function, *(root / p for p in packages)]
    for source in sources:
        if not source.is_dir():
            raise FileNotFoundError(f"Lambda source folder {source} does not exist")
    (output_dir / "functions").mkdir(parents=True, exist_ok=True)
    (output_dir / "functions" / "__init__.py").touch()
    for source in sources:
        target = output_dir / source.relative_to(root)
        shutil.copytree(source, target, ignore=COPY_IGNORE, dirs_exist_ok=True)
    return output_dir


@jsii.implements(cdk.ILocalBundling)
class _CopyBundler:
    """Local bundling for CDK: copy the runtime sources instead of running a container."""

    def __init__(self, function: str, packages: Sequence[str]) -> None:
        self.function = function
        self.packages = tuple(packages)

    def try_bundle(self, output_dir: str, *_options: Any, **_kw_options: Any) -> bool:
        # jsii passes the BundlingOptions struct positionally; the copy needs none of it.
        copy_sources(Path(output_dir), self.function, self.packages)
        return True


def function_code(function: str, packages: Sequence[str] = ("cnai",)) -> lambda_.Code:
    """Code asset for `functions/<function>/` plus the packages, bundled locally (no Docker).

    The asset hash is the bundled output's, so a change in `cnai/` redeploys the function too.
    """
    source = ROOT / "functions" / function
    if not source.is_dir():
        raise FileNotFoundError(f"Lambda source folder {source} does not exist")
    return lambda_.Code.from_asset(
        str(source),
        asset_hash_type=cdk.AssetHashType.OUTPUT,
        bundling=cdk.BundlingOptions(
            # Never pulled: the local bundler always succeeds or raises.
            image=cdk.DockerImage.from_registry("cnai/local-bundling-only"),
            local=_CopyBundler(function, packages),
        ),
    )


def logs_key(scope: Construct, construct_id: str, *, description: str) -> kms.Key:
    """A rotating CMK that CloudWatch Logs in this account and region may use for its log groups."""
    key = kms.Key(scope, construct_id, description=description, enable_key_rotation=True)
    allow_logs_service(key)
    return key


def log_groups_arn(stack: cdk.Stack) -> str:
    """arn:...:logs:<region>:<account>:log-group:* -- every log group of this stack's account and region."""
    return stack.format_arn(
        service="logs", resource="log-group", resource_name="*", arn_format=cdk.ArnFormat.COLON_RESOURCE_NAME
    )


def allow_logs_service(key: kms.IKey) -> None:
    """Let CloudWatch Logs encrypt this account's log groups with `key` (bound by the encryption context)."""
    stack = cdk.Stack.of(key)
    key.add_to_resource_policy(
        iam.PolicyStatement(
            actions=["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"],
            principals=[iam.ServicePrincipal(f"logs.{stack.region}.amazonaws.com")],
            resources=["*"],
            conditions={"ArnLike": {"kms:EncryptionContext:aws:logs:arn": log_groups_arn(stack)}},
        )
    )


@dataclass(frozen=True)
class Invocation:
    """How a function is invoked, which decides where a failed invocation goes. cdk-nag's LambdaDLQ rules look for
    an asynchronous-invocation DLQ, which only an asynchronous invoke ever uses: the acknowledgment of those rules
    on each function is this `reason`, so it is true per function, not a blanket one."""

    kind: str
    reason: str

    @classmethod
    def step_functions(cls) -> Invocation:
        return cls(
            "Step Functions task",
            "Invoked synchronously as a Step Functions task: every failure returns to the state machine, whose "
            "Retry/Catch handle it and whose execution history keeps the input; no event is ever queued "
            "asynchronously, so an async DLQ would stay empty.",
        )

    @classmethod
    def api(cls) -> Invocation:
        return cls(
            "API Gateway",
            "Invoked synchronously by API Gateway (Lambda proxy integration): the caller receives the error "
            "response and decides to retry; nothing is queued asynchronously, so an async DLQ would stay empty.",
        )

    @classmethod
    def kinesis(cls, on_failure: str) -> Invocation:
        return cls(
            "Kinesis event source mapping",
            f"Invoked by a Kinesis event source mapping whose on-failure destination is the SQS queue {on_failure}: "
            "failed batches (after bisection and retries) go there; an async DLQ never applies to stream polling.",
        )

    @classmethod
    def scheduler(cls, alarm: str) -> Invocation:
        return cls(
            "EventBridge Scheduler",
            "Invoked by EventBridge Scheduler once per tick (retry policy on the schedule); a failed tick is "
            f"repeated by the next one, which covers the same window, and the {alarm} alarm reports it; a queued "
            "copy of a stale tick would have nothing to add.",
        )


class PythonFunction(Construct):
    """`function`, its `role`, its `log_group`, the `key` encrypting the environment and the logs, its Powertools
    `service` name and the `environment` it was given (POWERTOOLS_* included).

    Pass `key` to share one CMK (it must allow CloudWatch Logs: see `logs_key`); otherwise one is created.

    Every function has a reserved concurrency: a cap that keeps one runaway caller from starving the account's other
    functions, and a floor that keeps them from starving it. The defaults (`TASK_CONCURRENCY`, invoked as a Step
    Functions task) fit a workflow task; a function behind an API or a stream takes its cap from the settings of its
    stack. Reserved concurrency needs account headroom: AWS keeps at least 100 executions unreserved, so an account
    still at a new account's quota of 10 concurrent executions must request an increase first (docs/compliance.md).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        function: str,
        description: str,
        environment: Mapping[str, str] | None = None,
        service: str | None = None,
        metrics_namespace: str = "cnai",
        log_level: str = "INFO",
        layers: Sequence[lambda_.ILayerVersion] = (),
        packages: Sequence[str] = ("cnai",),
        handler: str | None = None,
        memory_size: int = 1024,
        timeout: cdk.Duration | None = None,
        reserved_concurrency: int = TASK_CONCURRENCY,
        invocation: Invocation | None = None,
        key: kms.IKey | None = None,
        log_retention: logs.RetentionDays = logs.RetentionDays.THREE_MONTHS,
        code: lambda_.Code | None = None,
        removal_policy: cdk.RemovalPolicy = cdk.RemovalPolicy.RETAIN,
    ) -> None:
        super().__init__(scope, construct_id)
        if not 128 <= memory_size <= 10240:
            raise ValueError(f"memory_size {memory_size}: Lambda allows 128 to 10240 MB")
        if not 1 <= reserved_concurrency <= 1000:
            # 0 would throttle every invocation; above 1000 exceeds the default account quota outright.
            raise ValueError(f"{construct_id}: reserved_concurrency {reserved_concurrency} must be 1 to 1000")
        self.invocation = invocation or Invocation.step_functions()
        self.reserved_concurrency = reserved_concurrency
        overridden = sorted(k for k in environment or {} if k.startswith("POWERTOOLS_"))
        if overridden:
            raise ValueError(f"{construct_id}: {', '.join(overridden)} are set by PythonFunction (service=, ...)")
        # cnai/observability.py reads these: the service names the function in logs, traces and the `service`
        # dimension of its metrics (the alarms on custom metrics select by it).
        self.service = service or function.replace("_", "-")
        self.environment = {
            **(environment or {}),
            "POWERTOOLS_SERVICE_NAME": self.service,
            "POWERTOOLS_METRICS_NAMESPACE": metrics_namespace,
            "POWERTOOLS_LOG_LEVEL": log_level,
        }
        self.key: kms.IKey = key or logs_key(self, "Key", description=f"{self.node.path}: env and logs")
        self.log_group = logs.LogGroup(
            self,
            "Logs",
            encryption_key=self.key,
            retention=log_retention,
            removal_policy=removal_policy,
        )
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"{self.node.path}: runs the function, writes its own logs only",
        )
        # The log group is created here, so the role needs no logs:CreateLogGroup and no wildcard.
        self.role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["logs:CreateLogStream", "logs:PutLogEvents"],
                resources=[self.log_group.log_group_arn],
            )
        )
        self.function = lambda_.Function(
            self,
            "Function",
            description=description,
            runtime=RUNTIME,
            architecture=ARCHITECTURE,
            handler=handler or f"functions.{function}.handler.handler",
            code=code or function_code(function, packages),
            layers=list(layers),
            memory_size=memory_size,
            timeout=timeout or cdk.Duration.seconds(30),
            environment=self.environment,
            environment_encryption=self.key,
            reserved_concurrent_executions=reserved_concurrency,
            tracing=lambda_.Tracing.ACTIVE,
            log_group=self.log_group,
            role=self.role,
        )
        acknowledge(
            self.role,
            "AwsSolutions-IAM5",
            "X-Ray PutTraceSegments/PutTelemetryRecords support no resource-level permissions: '*' is required.",
            findings=["Resource::*"],
        )
        self._acknowledge()

    def _acknowledge(self) -> None:
        acknowledge(
            self.function,
            ["AwsSolutions-L1", "Serverless-LambdaLatestVersion"],
            "Pinned to Python 3.12: the runtime layer ships cp312 manylinux2014_aarch64 wheels "
            "(onnxruntime, tokenizers, numpy), whose ABI must match the runtime.",
        )
        acknowledge(
            self.function,
            in_packs("LambdaDLQ", ("HIPAA.Security", "NIST.800.53.R5", "Serverless")),
            f"{self.invocation.kind}. {self.invocation.reason}",
        )
        acknowledge(
            self.function,
            in_packs("LambdaInsideVPC", ("HIPAA.Security", "NIST.800.53.R5")),
            "The function reaches only AWS service APIs (S3, DynamoDB, Kinesis, SageMaker, KMS) over TLS with IAM "
            "auth and reaches no resource inside a VPC; a VPC would add NAT or endpoint costs and ENI cold starts "
            "without narrowing what its role may do.",
        )
        acknowledge_inline_policy(self.role)
