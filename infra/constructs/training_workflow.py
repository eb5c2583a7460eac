"""The "train" state machine: PrepareDataset -> Synthetic data? -> [GenerateSyntheticData -> AddCandidatesChannel]
-> TrainAndDistill -> QualityGate -> Passed? -> Register -> Notify.

STANDARD type (a run lasts hours; every transition is recorded), JSONPath only (the local platform runs the
same definition on moto's ASL interpreter, whose JSONata is a stub), every event logged with its data to a
KMS-encrypted log group, X-Ray tracing on. docs/training-workflow.md shows the graph rendered from this
definition and the data each state adds.

TrainAndDistill is written as the task's JSON (`sfn.CustomState`): CDK 2.275's SageMakerCreateTrainingJob
task cannot express managed spot training (EnableManagedSpotTraining + MaxWaitTimeInSeconds) nor
CheckpointConfig. Its parameters:

- HyperParameters = `$.job.hyperparameters` (script mode: sagemaker_program, sagemaker_submit_directory, the
  torchrun switch, the run's profile; put there by PrepareDataset's ResultSelector, because an intrinsic
  string literal cannot hold a JSON object portably: moto does not unescape `\\{`) merged with the run's
  recipe overrides `$.run.hyperparameters` by States.JsonMerge.
- `sagemaker_torch_distributed_enabled: true` is what the SageMaker SDK writes for
  `distribution={"torch_distributed": {"enabled": True}}`: the PyTorch DLC's training toolkit then starts
  `torchrun --nnodes <instances> --nproc_per_node <GPUs per instance>` (sagemaker-training's
  TorchDistributedRunner), so one job uses every GPU of every instance; train.py reads RANK/WORLD_SIZE.
- The job name is `<run.job_name>-<attempt>` ($$.State.RetryCount): a retried attempt (throttled, no
  capacity) needs a new name, SageMaker refuses a name twice; the checkpoint prefix is the run's job name,
  shared by every attempt, so a later attempt resumes where the last one stopped.
- Its channels are `$.job.channels`: train and test (PrepareDataset's ResultSelector), plus `candidates` when the
  recipe augments (`$.run.augment_per_label > 0`): GenerateSyntheticData, a training job of the same image, code
  and instance type running the generation-only entry `models/augment.py`, writes the candidates file into its
  checkpoint directory, which SageMaker syncs to `checkpoints/<run job name>-candidates/`; AddCandidatesChannel
  (a Pass state: JSONPath cannot append to a list) names that prefix as the third channel. train.py then filters
  and judges those candidates instead of generating (docs/synthetic-data.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from infra.constructs.nag import acknowledge, acknowledge_inline_policy
from infra.constructs.nag_findings import allow, allow_list, finding
from infra.constructs.state_machine import logged_state_machine

FUNCTIONS = ("prepare_dataset", "quality_gate", "register_model", "notify")
CHECKPOINTS = "checkpoints"
OUTPUT = "training"
CHECKPOINT_LOCAL_PATH = "/opt/ml/checkpoints"
GENERATION_ENTRY_POINT = "models/augment.py"
# GenerateSyntheticData's checkpoint prefix, the `candidates` channel of TrainAndDistill: a sibling of the run's
# checkpoint prefix (checkpoints/<run job name>/), so the training job does not sync it down a second time.
CANDIDATES_SUFFIX = "-candidates"
SYNC_RULE = "StepFunctionsGetEventsForSageMakerTrainingJobsRule"
LAMBDA_TRANSIENT_ERRORS = (
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
)
# Step Functions names the optimized SageMaker integration's API errors after the SDK's exception classes: the
# modeled ResourceLimitExceeded becomes SageMaker.ResourceLimitExceededException, every other code (throttling
# included) SageMaker.AmazonSageMakerException with the code in the Cause (cnai.local.stepfunctions models the
# same). The short names are kept too: they are what the workflow contract lists. A job that starts and then
# fails (a capacity failure after creation included) ends the .sync task as States.TaskFailed: not retried, a
# new attempt would rerun a failing job; it goes to NotifyFailure with the job's FailureReason.
THROTTLING_ERRORS = ("SageMaker.ThrottlingException", "SageMaker.AmazonSageMakerException")
CAPACITY_ERRORS = (
    "SageMaker.ResourceLimitExceeded",
    "SageMaker.ResourceLimitExceededException",
    "SageMaker.CapacityError",
)
# Regexes over the job's log: the first group is the value. They match the `key=value` lines train.py prints
# (models/trainer.py _metric_line per epoch: `<phase>_<key>=<v>`; the final line: `test_<key>=<v>`); `\b`
# keeps `test_accuracy` from matching inside `student_test_accuracy`. Tested against real lines.
NUMBER = r"([-+]?(?:[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?|nan|inf))"
METRIC_DEFINITIONS: tuple[tuple[str, str], ...] = (
    ("test:accuracy", r"\btest_accuracy=" + NUMBER),
    ("test:macro_f1", r"\btest_macro_f1=" + NUMBER),
    ("test:ece", r"\btest_ece=" + NUMBER),
    ("test:nll", r"\btest_nll=" + NUMBER),
    ("test:p99_ms", r"\btest_p99_ms=" + NUMBER),
    ("test:size_mb", r"\btest_size_mb=" + NUMBER),
    ("teacher:train_loss", r"\bteacher_train_loss=" + NUMBER),
    ("teacher:dev_accuracy", r"\bteacher_dev_accuracy=" + NUMBER),
    ("student:train_loss", r"\bstudent_train_loss=" + NUMBER),
    ("student:dev_accuracy", r"\bstudent_dev_accuracy=" + NUMBER),
    ("student:dev_loss", r"\bstudent_dev_loss=" + NUMBER),
    ("student:epoch_seconds", r"\bstudent_seconds=" + NUMBER),
)
# The generation job's last line (models/augment.py main): candidates written, seconds, texts per second.
GENERATION_METRIC_DEFINITIONS: tuple[tuple[str, str], ...] = (
    ("generation:candidates", r"\bgeneration_candidates=" + NUMBER),
    ("generation:seconds", r"\bgeneration_seconds=" + NUMBER),
    ("generation:texts_per_s", r"\bgeneration_texts_per_s=" + NUMBER),
)


def channel(name: str, uri: str) -> dict[str, Any]:
    """One File-mode S3 prefix channel of a training job; `uri` is a JSONPath or an intrinsic (a `.$` field)."""
    source = {"S3DataType": "S3Prefix", "S3DataDistributionType": "FullyReplicated", "S3Uri.$": uri}
    return {"ChannelName": name, "InputMode": "File", "DataSource": {"S3DataSource": source}}


LAMBDA_RETRY: dict[str, Any] = {
    "errors": list(LAMBDA_TRANSIENT_ERRORS),
    "interval": cdk.Duration.seconds(2),
    "max_attempts": 6,
    "backoff_rate": 2.0,
    "jitter_strategy": sfn.JitterType.FULL,
}


class TrainingWorkflow(Construct):
    """`state_machine`, its `log_group`, the SageMaker `execution_role`; `job_arn_pattern` scopes IAM."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        state_machine_name: str,
        job_prefix: str,
        project: str,
        functions: Mapping[str, lambda_.IFunction],
        artifacts: s3.IBucket,
        key: kms.IKey,
        datasets: s3.IBucket,
        datasets_key: kms.IKey | None,
        datasets_prefix: str,
        code_uri: str,
        code_bucket: s3.IBucket,
        code_key: str,
        image_uri: str,
        image_repository_arn: str,
        volume_gb: int,
        augment_generator: str | None = None,
        throttle_retry: cdk.Duration | None = None,
        capacity_retry: cdk.Duration | None = None,
        log_retention: logs.RetentionDays = logs.RetentionDays.ONE_YEAR,
        removal_policy: cdk.RemovalPolicy = cdk.RemovalPolicy.RETAIN,
    ) -> None:
        super().__init__(scope, construct_id)
        missing = [f for f in FUNCTIONS if f not in functions]
        if missing:
            raise ValueError(f"functions: missing {', '.join(missing)} (the workflow invokes {', '.join(FUNCTIONS)})")
        if not 1 <= volume_gb <= 16_384:
            raise ValueError(f"volume_gb {volume_gb}: SageMaker takes 1 to 16384 GB")
        if augment_generator is not None and not augment_generator.startswith(("s3://", "bedrock:")):
            raise ValueError(
                f"augment_generator {augment_generator!r}: a training job reaches an s3:// generator artifact or "
                "bedrock:<model id> (the bundled model's GGUF package is not installed in the job)"
            )
        stack = cdk.Stack.of(self)
        self.job_prefix = job_prefix
        self.job_arn_pattern = stack.format_arn(
            service="sagemaker", resource="training-job", resource_name=f"{job_prefix.lower()}-*"
        )
        self.execution_role = self._execution_role(
            artifacts, key, datasets, datasets_key, datasets_prefix, code_bucket, code_key, image_repository_arn
        )
        if augment_generator is not None:
            self._grant_generator(augment_generator)
        # Script-mode values both jobs share; the run's profile; the deployment's generator (a recipe's own
        # augment_generator overrides it, as every recipe override does, in both jobs alike: the candidates' cache
        # key includes the generator).
        shared = {
            "sagemaker_submit_directory": code_uri,
            "sagemaker_region": stack.region,
            "sagemaker_container_log_level": "20",
            "profile": sfn.JsonPath.string_at("$.Payload.run.profile"),
            # the columns of a dataset snapshot's rows (cnai.data.snapshot), not BANKING77's CSV
            "text_column": "text",
            "label_column": "label",
            **({"augment_generator": augment_generator} if augment_generator else {}),
        }

        # ---- states
        prepare = tasks.LambdaInvoke(
            self,
            "PrepareDataset",
            lambda_function=functions["prepare_dataset"],
            comment="Freeze the date range into a versioned snapshot (or validate the manifest); normalize the input",
            payload=sfn.TaskInput.from_object(
                {
                    "input": sfn.JsonPath.entire_payload,
                    "execution_arn": sfn.JsonPath.execution_id,
                    "execution_name": sfn.JsonPath.execution_name,
                }
            ),
            result_selector={
                "run": sfn.JsonPath.object_at("$.Payload.run"),
                "dataset": sfn.JsonPath.object_at("$.Payload.dataset"),
                # What the training jobs merge the run's recipe overrides into, and the channels TrainAndDistill
                # reads (see the module docstring).
                "job": {
                    "hyperparameters": {
                        "sagemaker_program": "models/train.py",
                        "sagemaker_torch_distributed_enabled": "true",
                        **shared,
                    },
                    # one process: generation is not data-parallel (no torchrun)
                    "generation_hyperparameters": {"sagemaker_program": GENERATION_ENTRY_POINT, **shared},
                    "channels": [
                        channel("train", "$.Payload.dataset.train_uri"),
                        channel("test", "$.Payload.dataset.test_uri"),
                    ],
                },
            },
            result_path="$",
            retry_on_service_exceptions=False,
        )
        train = sfn.CustomState(
            self,
            "TrainAndDistill",
            state_json=self._training_task(artifacts, key, image_uri, volume_gb, project),
        )
        generate = sfn.CustomState(
            self,
            "GenerateSyntheticData",
            state_json=self._generation_task(artifacts, key, image_uri, volume_gb, project),
        )
        add_candidates = sfn.Pass(
            self,
            "AddCandidatesChannel",
            comment="TrainAndDistill reads the generated candidates as its `candidates` channel",
            parameters={
                "hyperparameters": sfn.JsonPath.object_at("$.job.hyperparameters"),
                "generation_hyperparameters": sfn.JsonPath.object_at("$.job.generation_hyperparameters"),
                "channels": [
                    channel("train", "$.dataset.train_uri"),
                    channel("test", "$.dataset.test_uri"),
                    channel("candidates", self.candidates_uri(artifacts)),
                ],
            },
            result_path="$.job",
        )
        quality = tasks.LambdaInvoke(
            self,
            "QualityGate",
            lambda_function=functions["quality_gate"],
            comment="Parity gates, accuracy and macro-F1 bars, no worse than the approved version",
            payload=sfn.TaskInput.from_object(
                {"run": sfn.JsonPath.object_at("$.run"), "training": sfn.JsonPath.object_at("$.training")}
            ),
            result_selector={
                "passed": sfn.JsonPath.string_at("$.Payload.passed"),
                "metrics": sfn.JsonPath.object_at("$.Payload.metrics"),
                "cause": sfn.JsonPath.string_at("$.Payload.cause"),
                "baseline": sfn.JsonPath.object_at("$.Payload.baseline"),
                # Register's ModelMetrics and lineage: the evaluation report and the card's identity fields
                "report_uri": sfn.JsonPath.string_at("$.Payload.report_uri"),
                "card": sfn.JsonPath.object_at("$.Payload.card"),
            },
            result_path="$.quality",
            retry_on_service_exceptions=False,
        )
        register = tasks.LambdaInvoke(
            self,
            "Register",
            lambda_function=functions["register_model"],
            comment="New model package version: artifact, metrics, lineage; approved only with auto_approve",
            payload=sfn.TaskInput.from_object(
                {
                    "run": sfn.JsonPath.object_at("$.run"),
                    "dataset": sfn.JsonPath.object_at("$.dataset"),
                    "training": sfn.JsonPath.object_at("$.training"),
                    "quality": sfn.JsonPath.object_at("$.quality"),
                    "execution_arn": sfn.JsonPath.execution_id,
                }
            ),
            result_selector={
                "model_package_arn": sfn.JsonPath.string_at("$.Payload.model_package_arn"),
                "version": sfn.JsonPath.number_at("$.Payload.version"),
                "approval": sfn.JsonPath.string_at("$.Payload.approval"),
            },
            result_path="$.registered",
            retry_on_service_exceptions=False,
        )

        def notify(state_id: str, status: str) -> tasks.LambdaInvoke:
            task = tasks.LambdaInvoke(
                self,
                state_id,
                lambda_function=functions["notify"],
                comment=f"Publish the {status} message (console link, version, metrics, cost, spot saving)",
                payload=sfn.TaskInput.from_object(
                    {"status": status, "state": sfn.JsonPath.entire_payload, "execution_arn": sfn.JsonPath.execution_id}
                ),
                result_path="$.notified",
                result_selector={"message_id": sfn.JsonPath.string_at("$.Payload.message_id")},
                retry_on_service_exceptions=False,
            )
            task.add_retry(**LAMBDA_RETRY)
            return task

        notify_success = notify("NotifySuccess", "SUCCEEDED")
        notify_failure = notify("NotifyFailure", "FAILED")
        notify_rejected = notify("NotifyRejected", "REJECTED")
        failed = sfn.Fail(self, "Failed", error_path="$.error.Error", cause_path="$.error.Cause")
        rejected = sfn.Fail(self, "Rejected", error="QualityGateFailed", cause_path="$.quality.cause")

        for task in (prepare, quality, register):
            task.add_retry(**LAMBDA_RETRY)
            task.add_catch(notify_failure, errors=["States.ALL"], result_path="$.error")
        # The first waits; each later one doubles (full jitter). Shorter ones are for the local platform's tests.
        for job in (generate, train):
            job.add_retry(
                errors=list(THROTTLING_ERRORS),
                interval=throttle_retry or cdk.Duration.seconds(10),
                max_attempts=4,
                backoff_rate=2.0,
                jitter_strategy=sfn.JitterType.FULL,
            )
            job.add_retry(
                errors=list(CAPACITY_ERRORS),
                interval=capacity_retry or cdk.Duration.minutes(5),
                max_attempts=3,
                backoff_rate=2.0,
                max_delay=cdk.Duration.minutes(30),
                jitter_strategy=sfn.JitterType.FULL,
            )
            job.add_catch(notify_failure, errors=["States.ALL"], result_path="$.error")
        notify_failure.next(failed)
        notify_rejected.next(rejected)
        gate = (
            sfn.Choice(self, "Passed?", comment="The quality gate's verdict")
            .when(sfn.Condition.boolean_equals("$.quality.passed", True), register.next(notify_success))
            .otherwise(notify_rejected)
        )
        synthetic = (
            sfn.Choice(self, "Synthetic data?", comment="Does the run's recipe generate rows (augment_per_label > 0)?")
            .when(
                sfn.Condition.number_greater_than("$.run.augment_per_label", 0),
                generate.next(add_candidates).next(train),
            )
            .otherwise(train)
        )
        train.next(quality).next(gate)
        definition = prepare.next(synthetic)

        # ---- the state machine
        self.state_machine, self.log_group = logged_state_machine(
            self,
            name=state_machine_name,
            definition=definition,
            comment="cnai train: dataset snapshot, GPU training + distillation, quality gate, registry, notify",
            key=key,
            log_retention=log_retention,
            removal_policy=removal_policy,
            timeout=cdk.Duration.days(7),
        )
        self._grant_training(functions)

    # ---- TrainAndDistill

    def _job_parameters(self, artifacts: s3.IBucket, key: kms.IKey, volume_gb: int, project: str) -> dict[str, Any]:
        """What both training jobs share: role, output, encryption, limits, spot, tags."""
        return {
            "RoleArn": self.execution_role.role_arn,
            "OutputDataConfig": {"S3OutputPath": f"s3://{artifacts.bucket_name}/{OUTPUT}/", "KmsKeyId": key.key_arn},
            "ResourceConfig": {
                "InstanceType.$": "$.run.instance_type",
                "InstanceCount.$": "$.run.instance_count",
                "VolumeSizeInGB": volume_gb,
                "VolumeKmsKeyId": key.key_arn,
            },
            "StoppingCondition.$": "$.run.stopping_condition",
            "EnableManagedSpotTraining.$": "$.run.spot",
            "EnableInterContainerTrafficEncryption": True,
            "Tags": [
                {"Key": "project", "Value": project},
                {"Key": "model", "Value.$": "$.run.model"},
                {"Key": "execution", "Value.$": "$$.Execution.Name"},
            ],
        }

    def _training_task(
        self, artifacts: s3.IBucket, key: kms.IKey, image_uri: str, volume_gb: int, project: str
    ) -> dict[str, Any]:
        stack = cdk.Stack.of(self)
        return {
            "Type": "Task",
            "Comment": "SageMaker training job (GPU, managed spot, S3 checkpoints, torchrun over every GPU)",
            "Resource": f"arn:{stack.partition}:states:::sagemaker:createTrainingJob.sync",
            "Parameters": {
                **self._job_parameters(artifacts, key, volume_gb, project),
                "TrainingJobName.$": "States.Format('{}-{}', $.run.job_name, $$.State.RetryCount)",
                "AlgorithmSpecification": {
                    "TrainingImage": image_uri,
                    "TrainingInputMode": "File",
                    "EnableSageMakerMetricsTimeSeries": True,
                    "MetricDefinitions": [{"Name": n, "Regex": r} for n, r in METRIC_DEFINITIONS],
                },
                "HyperParameters.$": "States.JsonMerge($.job.hyperparameters, $.run.hyperparameters, false)",
                # train + test, and candidates after GenerateSyntheticData (AddCandidatesChannel)
                "InputDataConfig.$": "$.job.channels",
                "CheckpointConfig": {
                    "S3Uri.$": f"States.Format('s3://{artifacts.bucket_name}/{CHECKPOINTS}/{{}}/', $.run.job_name)",
                    "LocalPath": CHECKPOINT_LOCAL_PATH,
                },
            },
            # The contract's names (cnai.pipeline reads them): SageMaker's own, model_data for the tar's URI.
            "ResultSelector": {
                "TrainingJobName.$": "$.TrainingJobName",
                "TrainingJobArn.$": "$.TrainingJobArn",
                "model_data.$": "$.ModelArtifacts.S3ModelArtifacts",
                "TrainingTimeInSeconds.$": "$.TrainingTimeInSeconds",
                "BillableTimeInSeconds.$": "$.BillableTimeInSeconds",
                "ResourceConfig.$": "$.ResourceConfig",
                "EnableManagedSpotTraining.$": "$.EnableManagedSpotTraining",
                "OutputDataConfig.$": "$.OutputDataConfig",
            },
            "ResultPath": "$.training",
        }

    def _generation_task(
        self, artifacts: s3.IBucket, key: kms.IKey, image_uri: str, volume_gb: int, project: str
    ) -> dict[str, Any]:
        """models/augment.py as a training job: the candidates of the run's recipe, before any filter, written to
        its checkpoint directory and so to `<candidates prefix>`; a retried attempt finds them there."""
        stack = cdk.Stack.of(self)
        parameters = self._job_parameters(artifacts, key, volume_gb, project)
        # one instance: generation runs in one process (the GPU's, when the generator is local)
        parameters["ResourceConfig"] = {**parameters["ResourceConfig"], "InstanceCount": 1}
        del parameters["ResourceConfig"]["InstanceCount.$"]
        return {
            "Type": "Task",
            "Comment": "SageMaker training job running models/augment.py: generated candidates for TrainAndDistill",
            "Resource": f"arn:{stack.partition}:states:::sagemaker:createTrainingJob.sync",
            "Parameters": {
                **parameters,
                "TrainingJobName.$": "States.Format('{}-g{}', $.run.job_name, $$.State.RetryCount)",
                "AlgorithmSpecification": {
                    "TrainingImage": image_uri,
                    "TrainingInputMode": "File",
                    "EnableSageMakerMetricsTimeSeries": True,
                    "MetricDefinitions": [{"Name": n, "Regex": r} for n, r in GENERATION_METRIC_DEFINITIONS],
                },
                "HyperParameters.$": "States.JsonMerge($.job.generation_hyperparameters, $.run.hyperparameters, false)",
                "InputDataConfig.$": "$.job.channels",
                "CheckpointConfig": {"S3Uri.$": self.candidates_uri(artifacts), "LocalPath": CHECKPOINT_LOCAL_PATH},
            },
            "ResultSelector": {
                "TrainingJobName.$": "$.TrainingJobName",
                "TrainingJobArn.$": "$.TrainingJobArn",
                "TrainingTimeInSeconds.$": "$.TrainingTimeInSeconds",
                "BillableTimeInSeconds.$": "$.BillableTimeInSeconds",
            },
            "ResultPath": "$.synthetic",
        }

    @staticmethod
    def candidates_uri(artifacts: s3.IBucket) -> str:
        """The intrinsic naming the run's candidates prefix (checkpoints/<run job name>-candidates/)."""
        return f"States.Format('s3://{artifacts.bucket_name}/{CHECKPOINTS}/{{}}{CANDIDATES_SUFFIX}/', $.run.job_name)"

    # ---- IAM

    def _execution_role(
        self,
        artifacts: s3.IBucket,
        key: kms.IKey,
        datasets: s3.IBucket,
        datasets_key: kms.IKey | None,
        datasets_prefix: str,
        code_bucket: s3.IBucket,
        code_key: str,
        image_repository_arn: str,
    ) -> iam.Role:
        """What the training job itself may do: read its channels and code, write its output and checkpoints,
        pull its image, write its logs and metrics. Nothing else."""
        stack = cdk.Stack.of(self)
        role = iam.Role(
            self,
            "ExecutionRole",
            assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
            description="cnai training job: read the dataset snapshot and code, write checkpoints and the model",
        )
        acknowledge_inline_policy(role)
        allow(
            role,
            sid="ReadDatasetChannels",
            actions=["s3:GetObject"],
            resources=[datasets.arn_for_objects(f"{datasets_prefix}/*")],
            wildcard_reason="The train/test channels are objects of the snapshot PrepareDataset wrote for this run, "
            f"named at run time under the {datasets_prefix}/ prefix: nothing else of the lake is readable.",
        )
        allow_list(role, sid="ListDatasetChannels", bucket=datasets, prefixes=[datasets_prefix])
        allow(role, sid="ReadCode", actions=["s3:GetObject"], resources=[code_bucket.arn_for_objects(code_key)])
        allow(
            role,
            sid="WriteModelAndCheckpoints",
            actions=["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"],
            resources=[artifacts.arn_for_objects(f"{OUTPUT}/*"), artifacts.arn_for_objects(f"{CHECKPOINTS}/*")],
            wildcard_reason="SageMaker writes <job name>/output/model.tar.gz under training/ and syncs the job's "
            "checkpoint files under checkpoints/<run job name>/ (read back on resume, pruned by the job): "
            "object names are per job, the prefixes fixed.",
        )
        allow_list(role, sid="ListCheckpoints", bucket=artifacts, prefixes=[CHECKPOINTS, OUTPUT])
        allow(
            role,
            sid="ArtifactKey",
            actions=["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey", "kms:DescribeKey"],
            resources=[key.key_arn],
        )
        allow(
            role,
            sid="VolumeKeyGrant",
            actions=["kms:CreateGrant"],
            resources=[key.key_arn],
            conditions={"Bool": {"kms:GrantIsForAWSResource": "true"}},
        )
        if datasets_key is not None:
            allow(role, sid="DatasetKey", actions=["kms:Decrypt"], resources=[datasets_key.key_arn])
        allow(
            role,
            sid="EcrLogin",
            actions=["ecr:GetAuthorizationToken"],
            resources=["*"],
            wildcard_reason="Resource '*' is required by ecr:GetAuthorizationToken (the registry login token has "
            "no resource type) and by cloudwatch:PutMetricData (no resource type; bound to /aws/sagemaker/*).",
        )
        allow(
            role,
            sid="PullImage",
            actions=["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"],
            resources=[image_repository_arn],
        )
        self.job_logs_arn = stack.format_arn(
            service="logs",
            resource="log-group",
            resource_name="/aws/sagemaker/TrainingJobs:*",
            arn_format=cdk.ArnFormat.COLON_RESOURCE_NAME,
        )
        allow(
            role,
            sid="JobLogs",
            actions=["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
            resources=[self.job_logs_arn],
            wildcard_reason="SageMaker names a training job's log streams (<job>/algo-1-<time>) at run time inside "
            "the one log group /aws/sagemaker/TrainingJobs; the resource is that group's streams.",
        )
        allow(
            role,
            sid="JobMetrics",
            actions=["cloudwatch:PutMetricData"],
            resources=["*"],
            conditions={"StringLike": {"cloudwatch:namespace": "/aws/sagemaker/*"}},
            wildcard_reason="Resource '*' is required by ecr:GetAuthorizationToken (the registry login token has "
            "no resource type) and by cloudwatch:PutMetricData (no resource type; bound to /aws/sagemaker/*).",
        )
        return role

    def _grant_generator(self, uri: str) -> None:
        """The deployment's generator (settings.training.augment_generator), for GenerateSyntheticData: read the
        one s3:// generator artifact, or call the one Bedrock model (the Converse API is bedrock:InvokeModel)."""
        stack = cdk.Stack.of(self)
        if uri.startswith("s3://"):
            bucket, _, key = uri.removeprefix("s3://").partition("/")
            if not bucket or not key:
                raise ValueError(f"augment_generator {uri!r}: s3://bucket/key of a generator model.tar.gz")
            arn = stack.format_arn(service="s3", region="", account="", resource=bucket, resource_name=key)
            allow(self.execution_role, sid="ReadGenerator", actions=["s3:GetObject"], resources=[arn])
        else:
            model = uri.removeprefix("bedrock:")
            arn = stack.format_arn(service="bedrock", account="", resource="foundation-model", resource_name=model)
            allow(self.execution_role, sid="InvokeGenerator", actions=["bedrock:InvokeModel"], resources=[arn])

    def _grant_training(self, functions: Mapping[str, lambda_.IFunction]) -> None:
        """The state machine's rights for TrainAndDistill (.sync): jobs named with the prefix, this one role."""
        stack = cdk.Stack.of(self)
        role = self.state_machine.role
        allow(
            role,
            sid="TrainingJobs",
            actions=[
                "sagemaker:CreateTrainingJob",
                "sagemaker:DescribeTrainingJob",
                "sagemaker:StopTrainingJob",
                "sagemaker:AddTags",
            ],
            resources=[self.job_arn_pattern],
            wildcard_reason="Training jobs are named per execution at run time: the resource is every job whose "
            f"name starts with this deployment's prefix ({self.job_prefix}-*), no other job.",
        )
        allow(
            role,
            sid="PassExecutionRole",
            actions=["iam:PassRole"],
            resources=[self.execution_role.role_arn],
            conditions={"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}},
        )
        self.sync_rule_arn = stack.format_arn(service="events", resource="rule", resource_name=SYNC_RULE)
        allow(
            role,
            sid="SyncEventRule",
            actions=["events:PutTargets", "events:PutRule", "events:DescribeRule"],
            resources=[self.sync_rule_arn],
        )
        acknowledge(
            role,
            "AwsSolutions-IAM5",
            "Step Functions requires Resource '*' for vended log delivery (logs:CreateLogDelivery, "
            "logs:PutResourcePolicy, ...) and X-Ray (xray:PutTraceSegments, ...): none has a resource type.",
            findings=["Resource::*"],
        )
        acknowledge(
            role,
            "AwsSolutions-IAM5",
            "CDK's LambdaInvoke grant covers each workflow function and its versions/aliases (<arn>:*); "
            "the workflow invokes these four functions only.",
            findings=[finding(role, f"{f.function_arn}:*") for f in functions.values()],
        )
