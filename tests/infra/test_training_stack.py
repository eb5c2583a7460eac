"""The training stack synthesized under cdk-nag (an unacknowledged finding fails synthesis): the "train" state
machine's definition (states, data flow, Retry/Catch, the .sync training task with spot, checkpoints, KMS and
metric definitions), least-privilege IAM, logging and tracing, the registry groups, outputs. The lake comes from a
separate producer stack, as in the app, so cross-stack imports go through the same nag path. Synthesized once
per module (default settings) plus one variant (schedule on, two models, spot off)."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import assertions

from infra.config import Settings
from infra.config.groups import TrainingSettings
from infra.constructs.nag import nag_packs
from infra.constructs.nag_findings import flatten
from infra.constructs.secure_bucket import SecureBucket
from infra.constructs.training_code import NOT_FOR_TRAINING, PROVIDED_BY_IMAGE, build_sourcedir, requirements
from infra.constructs.training_workflow import METRIC_DEFINITIONS
from infra.stacks.training import TrainingStack

CONTEXT = {"aws:cdk:bundling-stacks": []}
ENV = cdk.Environment(account="111111111111", region="eu-west-1")
ROOT = Path(__file__).resolve().parents[2]


class Synth:
    def __init__(self, settings: Settings) -> None:
        app = cdk.App(context=CONTEXT)
        lake_stack = cdk.Stack(app, "Lake", env=ENV)
        lake = SecureBucket(lake_stack, "Lake")
        self.stack = TrainingStack(app, "Training", settings=settings, lake=lake.bucket, lake_key=lake.key, env=ENV)
        cdk.Validations.of(app).add_plugins(*nag_packs(app))
        app.synth()  # raises on any unacknowledged cdk-nag finding
        self.template = assertions.Template.from_stack(self.stack)
        self.json = self.template.to_json()
        machine = self.only("AWS::StepFunctions::StateMachine")
        self.machine = machine
        self.definition: dict[str, Any] = json.loads(render(machine["DefinitionString"]))
        self.states: dict[str, Any] = self.definition["States"]

    def resources(self, kind: str) -> dict[str, Any]:
        return {k: v for k, v in self.json["Resources"].items() if v["Type"] == kind}

    def only(self, kind: str) -> dict[str, Any]:
        found = self.resources(kind)
        assert len(found) == 1, f"{kind}: {len(found)} found"
        return next(iter(found.values()))["Properties"]

    def logical_id(self, construct: Any) -> str:
        return self.stack.get_logical_id(construct.node.default_child)

    def policy(self, role: Any) -> list[dict[str, Any]]:
        """The statements of `role`'s default policy, with CloudFormation values flattened like cdk-nag."""
        role_id = self.stack.get_logical_id(role.node.default_child)
        for resource in self.resources("AWS::IAM::Policy").values():
            if {"Ref": role_id} in resource["Properties"]["Roles"]:
                statements = resource["Properties"]["PolicyDocument"]["Statement"]
                return [json.loads(render(json.dumps(s), in_json=True)) for s in statements]
        raise AssertionError(f"no policy for {role_id}")


def render(value: Any, in_json: bool = False) -> str:
    """A DefinitionString (Fn::Join of text and tokens) as text, each token written as cdk-nag flattens it."""
    if isinstance(value, str):
        if not in_json:
            return value
        return json.dumps(_flatten_tree(json.loads(value)))
    if isinstance(value, dict) and "Fn::Join" in value:
        return "".join(p if isinstance(p, str) else flatten(p) for p in value["Fn::Join"][1])
    return flatten(value)


def _flatten_tree(node: Any) -> Any:
    if isinstance(node, dict) and any(k.startswith("Fn::") or k == "Ref" for k in node):
        return flatten(node)
    if isinstance(node, dict):
        return {k: _flatten_tree(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_flatten_tree(v) for v in node]
    return node


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


@pytest.fixture(scope="module")
def default() -> Synth:
    # Given the default settings (ml.g5.xlarge, spot, one model, no schedule) and a lake in another stack
    # When the training stack synthesizes under cdk-nag
    return Synth(Settings())


@pytest.fixture(scope="module")
def variant() -> Synth:
    training = TrainingSettings(models=("banking77", "support"), spot=False, schedule="rate(7 days)", volume_gb=100,
                                augment_generator="s3://generators-bucket/smollm2/model.tar.gz")  # fmt: skip
    return Synth(Settings(stage="prod", training=training))


# ---- the definition: states and data flow


def test_the_machine_is_standard_jsonpath_with_readable_states(default: Synth) -> None:
    d, states = default.definition, default.states
    assert default.machine["StateMachineType"] == "STANDARD"
    assert d.get("QueryLanguage", "JSONPath") == "JSONPath"
    assert d["StartAt"] == "PrepareDataset"
    assert set(states) == {
        "PrepareDataset", "Synthetic data?", "GenerateSyntheticData", "AddCandidatesChannel", "TrainAndDistill",
        "QualityGate", "Passed?", "Register", "NotifySuccess", "NotifyFailure", "NotifyRejected", "Failed", "Rejected",
    }  # fmt: skip
    assert [states["PrepareDataset"]["Next"], states["TrainAndDistill"]["Next"], states["QualityGate"]["Next"]] == [
        "Synthetic data?", "QualityGate", "Passed?",
    ]  # fmt: skip
    choice = states["Passed?"]
    assert choice["Choices"] == [{"Variable": "$.quality.passed", "BooleanEquals": True, "Next": "Register"}]
    assert choice["Default"] == "NotifyRejected"
    assert states["Register"]["Next"] == "NotifySuccess" and states["NotifySuccess"]["End"] is True
    assert states["NotifyFailure"]["Next"] == "Failed" and states["NotifyRejected"]["Next"] == "Rejected"
    assert states["Failed"] == {"Type": "Fail", "ErrorPath": "$.error.Error", "CausePath": "$.error.Cause"}
    assert states["Rejected"] == {"Type": "Fail", "Error": "QualityGateFailed", "CausePath": "$.quality.cause"}
    # JSONPath only: no JSONata expression anywhere
    assert "{%" not in json.dumps(d)


def test_lambda_states_pass_the_contract_payloads_and_keep_their_results_apart(default: Synth) -> None:
    s = default.states
    prepare = s["PrepareDataset"]
    assert prepare["Resource"] == "arn:<AWS::Partition>:states:::lambda:invoke"
    assert prepare["Parameters"]["Payload"] == {
        "input.$": "$", "execution_arn.$": "$$.Execution.Id", "execution_name.$": "$$.Execution.Name",
    }  # fmt: skip
    assert prepare["ResultPath"] == "$"
    assert prepare["ResultSelector"]["run.$"] == "$.Payload.run"
    assert prepare["ResultSelector"]["dataset.$"] == "$.Payload.dataset"
    assert s["QualityGate"]["Parameters"]["Payload"] == {"run.$": "$.run", "training.$": "$.training"}
    assert s["QualityGate"]["ResultPath"] == "$.quality"
    assert s["QualityGate"]["ResultSelector"]["passed.$"] == "$.Payload.passed"
    assert s["QualityGate"]["ResultSelector"]["cause.$"] == "$.Payload.cause"
    assert s["Register"]["Parameters"]["Payload"] == {
        "run.$": "$.run", "dataset.$": "$.dataset", "training.$": "$.training", "quality.$": "$.quality",
        "execution_arn.$": "$$.Execution.Id",
    }  # fmt: skip
    assert s["Register"]["ResultPath"] == "$.registered"
    for name, status in (("NotifySuccess", "SUCCEEDED"), ("NotifyFailure", "FAILED"), ("NotifyRejected", "REJECTED")):
        assert s[name]["Parameters"]["Payload"] == {
            "status": status, "state.$": "$", "execution_arn.$": "$$.Execution.Id",
        }  # fmt: skip
        # the Fail states after them still read $.error / $.quality
        assert s[name]["ResultPath"] == "$.notified"
    functions = {s[n]["Parameters"]["FunctionName"] for n in ("NotifySuccess", "NotifyFailure", "NotifyRejected")}
    assert len(functions) == 1


def test_every_lambda_state_retries_transient_errors_with_backoff_and_work_states_catch_to_notify(
    default: Synth,
) -> None:
    for name in ("PrepareDataset", "QualityGate", "Register", "NotifySuccess", "NotifyFailure", "NotifyRejected"):
        (retry,) = default.states[name]["Retry"]
        assert set(retry["ErrorEquals"]) == {
            "Lambda.ServiceException", "Lambda.AWSLambdaException", "Lambda.SdkClientException",
            "Lambda.TooManyRequestsException",
        }, name  # fmt: skip
        assert retry["BackoffRate"] == 2 and retry["MaxAttempts"] >= 3, name
    for name in ("PrepareDataset", "TrainAndDistill", "QualityGate", "Register"):
        assert default.states[name]["Catch"] == [
            {"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "NotifyFailure"}
        ], name
    for name in ("NotifySuccess", "NotifyFailure", "NotifyRejected"):
        assert "Catch" not in default.states[name]  # a failed notification fails the execution visibly


# ---- TrainAndDistill


def test_training_is_a_sync_sagemaker_job_with_spot_checkpoints_and_kms(default: Synth) -> None:
    train = default.states["TrainAndDistill"]
    p = train["Parameters"]
    key = f"<{default.logical_id(default.stack.key)}.Arn>"
    bucket = f"<{default.stack.get_logical_id(default.stack.artifacts.node.default_child)}>"
    assert train["Type"] == "Task"
    assert train["Resource"] == "arn:<AWS::Partition>:states:::sagemaker:createTrainingJob.sync"
    assert p["EnableManagedSpotTraining.$"] == "$.run.spot"
    assert p["StoppingCondition.$"] == "$.run.stopping_condition"  # MaxWaitTime only with spot (PrepareDataset)
    assert p["CheckpointConfig"] == {
        "S3Uri.$": f"States.Format('s3://{bucket}/checkpoints/{{}}/', $.run.job_name)",
        "LocalPath": "/opt/ml/checkpoints",
    }
    assert p["OutputDataConfig"] == {"S3OutputPath": f"s3://{bucket}/training/", "KmsKeyId": key}
    assert p["ResourceConfig"] == {
        "InstanceType.$": "$.run.instance_type", "InstanceCount.$": "$.run.instance_count",
        "VolumeSizeInGB": 50, "VolumeKmsKeyId": key,
    }  # fmt: skip
    assert p["EnableInterContainerTrafficEncryption"] is True
    # a retried attempt gets a new job name (SageMaker refuses a name twice); checkpoints stay the run's
    assert p["TrainingJobName.$"] == "States.Format('{}-{}', $.run.job_name, $$.State.RetryCount)"
    # train + test from PrepareDataset, + candidates from AddCandidatesChannel (see the synthetic data test)
    assert p["InputDataConfig.$"] == "$.job.channels"
    channels = default.states["PrepareDataset"]["ResultSelector"]["job"]["channels"]
    assert [c["ChannelName"] for c in channels] == ["train", "test"]
    assert channels[0]["DataSource"]["S3DataSource"]["S3Uri.$"] == "$.Payload.dataset.train_uri"
    assert channels[1]["DataSource"]["S3DataSource"]["S3Uri.$"] == "$.Payload.dataset.test_uri"
    assert {"Key": "model", "Value.$": "$.run.model"} in p["Tags"]
    assert train["ResultPath"] == "$.training"
    assert train["ResultSelector"] == {
        "TrainingJobName.$": "$.TrainingJobName", "TrainingJobArn.$": "$.TrainingJobArn",
        "model_data.$": "$.ModelArtifacts.S3ModelArtifacts", "TrainingTimeInSeconds.$": "$.TrainingTimeInSeconds",
        "BillableTimeInSeconds.$": "$.BillableTimeInSeconds", "ResourceConfig.$": "$.ResourceConfig",
        "EnableManagedSpotTraining.$": "$.EnableManagedSpotTraining", "OutputDataConfig.$": "$.OutputDataConfig",
    }  # fmt: skip


def test_a_recipe_that_augments_generates_candidates_in_a_job_of_its_own_read_as_a_channel(default: Synth) -> None:
    states = default.states
    bucket = f"<{default.stack.get_logical_id(default.stack.artifacts.node.default_child)}>"
    candidates = f"States.Format('s3://{bucket}/checkpoints/{{}}-candidates/', $.run.job_name)"
    # Given the Choice after PrepareDataset: augment_per_label > 0 (cnai.pipeline.input puts the number in $.run)
    choice = states["Synthetic data?"]
    assert choice["Type"] == "Choice"
    assert choice["Choices"] == [
        {"Variable": "$.run.augment_per_label", "NumericGreaterThan": 0, "Next": "GenerateSyntheticData"}
    ]
    assert choice["Default"] == "TrainAndDistill"
    # Then GenerateSyntheticData is a .sync training job: same image, code, role, spot, limits and KMS as
    # TrainAndDistill, one instance, the generation-only entry point, and its checkpoints under the candidates prefix
    generate, train = states["GenerateSyntheticData"], states["TrainAndDistill"]
    g, t = generate["Parameters"], train["Parameters"]
    assert generate["Resource"] == train["Resource"] == "arn:<AWS::Partition>:states:::sagemaker:createTrainingJob.sync"
    for same in ("RoleArn", "OutputDataConfig", "StoppingCondition.$", "EnableManagedSpotTraining.$", "Tags",
                 "InputDataConfig.$"):  # fmt: skip
        assert g[same] == t[same], same
    assert g["AlgorithmSpecification"]["TrainingImage"] == t["AlgorithmSpecification"]["TrainingImage"]
    assert g["ResourceConfig"] == {**{k: v for k, v in t["ResourceConfig"].items() if k != "InstanceCount.$"},
                                   "InstanceCount": 1}  # fmt: skip
    assert g["TrainingJobName.$"] == "States.Format('{}-g{}', $.run.job_name, $$.State.RetryCount)"
    assert g["CheckpointConfig"] == {"S3Uri.$": candidates, "LocalPath": "/opt/ml/checkpoints"}
    assert g["HyperParameters.$"] == (
        "States.JsonMerge($.job.generation_hyperparameters, $.run.hyperparameters, false)"
    )
    job = states["PrepareDataset"]["ResultSelector"]["job"]
    generation, training = job["generation_hyperparameters"], job["hyperparameters"]
    assert (
        generation["sagemaker_program"] == "models/augment.py"
        and "sagemaker_torch_distributed_enabled" not in generation
    )
    # the candidates' cache key is computed from these in both jobs: everything but the script mode is shared
    assert {k: v for k, v in generation.items() if k != "sagemaker_program"} == {
        k: v for k, v in training.items() if k not in ("sagemaker_program", "sagemaker_torch_distributed_enabled")
    }
    assert generate["ResultPath"] == "$.synthetic" and generate["Next"] == "AddCandidatesChannel"
    # And it retries and catches as TrainAndDistill does
    assert generate["Retry"] == train["Retry"] and generate["Catch"] == train["Catch"]
    assert generate["Catch"] == [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "NotifyFailure"}]
    # And AddCandidatesChannel gives TrainAndDistill the candidates prefix as a third channel, keeping the job's
    # hyperparameters
    add = states["AddCandidatesChannel"]
    assert add["Type"] == "Pass" and add["ResultPath"] == "$.job" and add["Next"] == "TrainAndDistill"
    assert set(add["Parameters"]) - {"channels"} == {f"{k}.$" for k in job if k != "channels"}
    channels = {c["ChannelName"]: c["DataSource"]["S3DataSource"] for c in add["Parameters"]["channels"]}
    assert list(channels) == ["train", "test", "candidates"]
    assert channels["candidates"] == {"S3DataType": "S3Prefix", "S3DataDistributionType": "FullyReplicated",
                                      "S3Uri.$": candidates}  # fmt: skip
    assert channels["train"]["S3Uri.$"] == "$.dataset.train_uri"


def test_the_deployments_generator_is_every_jobs_default_and_the_only_one_the_role_reads(
    default: Synth, variant: Synth
) -> None:
    # Given no generator in the default settings: models/config.py's default applies, nothing extra is granted
    job = default.states["PrepareDataset"]["ResultSelector"]["job"]
    assert "augment_generator" not in job["hyperparameters"]
    assert not [s for s in default.policy(default.stack.workflow.execution_role) if s.get("Sid") == "ReadGenerator"]
    # When the variant names an s3:// generator artifact
    uri = "s3://generators-bucket/smollm2/model.tar.gz"
    job = variant.states["PrepareDataset"]["ResultSelector"]["job"]
    # Then both jobs default to it (a recipe's own augment_generator still wins in States.JsonMerge)
    assert job["hyperparameters"]["augment_generator"] == job["generation_hyperparameters"]["augment_generator"] == uri
    # And the job role may read that one object
    [read] = [s for s in variant.policy(variant.stack.workflow.execution_role) if s.get("Sid") == "ReadGenerator"]
    assert read["Action"] == "s3:GetObject"
    assert read["Resource"] == "arn:<AWS::Partition>:s3:::generators-bucket/smollm2/model.tar.gz"


def test_training_retries_throttling_and_capacity_with_backoff(default: Synth) -> None:
    retries = default.states["TrainAndDistill"]["Retry"]
    errors = {e: r for r in retries for e in r["ErrorEquals"]}
    # the names Step Functions gives SageMaker's API errors (and the contract's short ones)
    assert set(errors) == {
        "SageMaker.ThrottlingException", "SageMaker.AmazonSageMakerException",
        "SageMaker.ResourceLimitExceeded", "SageMaker.ResourceLimitExceededException", "SageMaker.CapacityError",
    }  # fmt: skip
    # a failed job (States.TaskFailed) is not retried: it would rerun a failing job
    assert "States.TaskFailed" not in errors and "States.ALL" not in errors
    assert all(r["BackoffRate"] > 1 and r["JitterStrategy"] == "FULL" for r in retries)
    capacity = errors["SageMaker.ResourceLimitExceededException"]
    assert capacity["IntervalSeconds"] >= 60 and capacity["MaxDelaySeconds"] <= 3600


def test_script_mode_hyperparameters_merge_the_runs_overrides_and_launch_torchrun(default: Synth) -> None:
    p = default.states["TrainAndDistill"]["Parameters"]
    assert p["HyperParameters.$"] == "States.JsonMerge($.job.hyperparameters, $.run.hyperparameters, false)"
    job = default.states["PrepareDataset"]["ResultSelector"]["job"]["hyperparameters"]
    code = default.stack.code.asset
    assert job["sagemaker_program"] == "models/train.py"
    assert job["sagemaker_submit_directory"] == f"s3://{code.s3_bucket_name}/{code.s3_object_key}"
    assert job["sagemaker_torch_distributed_enabled"] == "true"
    assert job["profile.$"] == "$.Payload.run.profile"
    assert all(isinstance(v, str) for k, v in job.items() if not k.endswith(".$"))  # SageMaker takes strings


def test_the_training_image_is_the_sdk_lookup_for_the_region_and_settings(default: Synth) -> None:
    image = default.states["TrainAndDistill"]["Parameters"]["AlgorithmSpecification"]["TrainingImage"]
    t = TrainingSettings()
    assert (
        image
        == f"763104351884.dkr.ecr.eu-west-1.amazonaws.com/pytorch-training:{t.framework_version}-gpu-{t.py_version}"
    )


def test_metric_definitions_match_the_lines_train_py_prints() -> None:
    # Given the real line writers: the per-epoch metric line of models/trainer.py and the final line's format
    from models.trainer import _metric_line

    out = io.StringIO()
    stdout, sys.stdout = sys.stdout, out
    try:
        _metric_line({"student_epoch": 2, "student_train_loss": 0.41234, "student_seconds": 12.5,
                      "student_dev_accuracy": 0.875, "student_dev_loss": 0.3})  # fmt: skip
        _metric_line({"teacher_epoch": 1, "teacher_train_loss": 1.25e-05, "teacher_dev_accuracy": 0.5})
        final = {"test_accuracy": 0.93182, "test_macro_f1": 0.9301, "test_ece": 0.021, "test_nll": 0.25}
        _metric_line(
            {**final, "test_p50_ms": 1.5, "test_p99_ms": 3.25, "test_batch32_per_s": 900.0, "test_size_mb": 11.2}
        )
    finally:
        sys.stdout = stdout
    text = out.getvalue()
    # the final line in train.py uses the same `k=v:.6g` format with a test_ prefix
    source = (ROOT / "models" / "train.py").read_text()
    assert 'print(" ".join(f"{k}={v:.6g}" for k, v in final.items()), flush=True)' in source
    assert 'final = {f"test_{k}": v' in source
    # When each metric's regex runs over the log (SageMaker takes the first group of a match)
    found = {}
    for name, regex in METRIC_DEFINITIONS:
        match = re.search(regex, text)
        assert match is not None, f"{name}: {regex} matches no line of\n{text}"
        found[name] = float(match.group(1))
    # Then every value is read exactly
    assert found["test:accuracy"] == 0.93182 and found["test:macro_f1"] == 0.9301
    assert found["student:train_loss"] == 0.41234 and found["teacher:train_loss"] == 1.25e-05
    assert found["student:epoch_seconds"] == 12.5 and found["test:size_mb"] == 11.2
    # and a longer key that ends the same way is not mistaken for it
    regex = dict(METRIC_DEFINITIONS)["test:accuracy"]
    assert re.search(regex, "student_test_accuracy=0.5") is None


def test_definition_intrinsics_parse_with_motos_asl_interpreter(default: Synth) -> None:
    # The local platform runs this definition on moto: every intrinsic must be one its parser knows.
    from moto.stepfunctions.parser.asl.parse.intrinsic.intrinsic_parser import IntrinsicParser

    expressions = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key.endswith(".$") and isinstance(value, str) and value.startswith("States."):
                    expressions.append(value)
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(default.definition)
    assert len(expressions) == 7  # job name, hyperparameters, checkpoints x 2 jobs; the candidates channel
    for expression in expressions:
        IntrinsicParser.parse(expression)  # raises on an unknown function or bad syntax


# ---- logging, tracing, registry, outputs


def test_every_event_is_logged_with_its_data_to_a_kms_log_group_and_traced(default: Synth) -> None:
    m = default.machine
    assert m["LoggingConfiguration"]["Level"] == "ALL"
    assert m["LoggingConfiguration"]["IncludeExecutionData"] is True
    assert m["TracingConfiguration"] == {"Enabled": True}
    groups = [g["Properties"] for g in default.resources("AWS::Logs::LogGroup").values()]
    machine_logs = [g for g in groups if str(g.get("LogGroupName", "")).startswith("/aws/vendedlogs/states/")]
    assert len(machine_logs) == 1 and "KmsKeyId" in machine_logs[0]
    assert machine_logs[0]["LogGroupName"] == "/aws/vendedlogs/states/cnai-dev-train"


def test_one_model_package_group_per_model_and_stable_outputs(default: Synth, variant: Synth) -> None:
    groups = [
        g["Properties"]["ModelPackageGroupName"]
        for g in default.resources("AWS::SageMaker::ModelPackageGroup").values()
    ]
    assert groups == ["cnai-dev-banking77"]
    assert sorted(
        g["Properties"]["ModelPackageGroupName"]
        for g in variant.resources("AWS::SageMaker::ModelPackageGroup").values()
    ) == ["cnai-prod-banking77", "cnai-prod-support"]
    outputs = default.json["Outputs"]
    for name in ("StateMachineArn", "ArtifactsBucket", "TopicArn", "JobPrefix", "ModelPackageGroups"):
        assert name in outputs, name
    assert outputs["ModelPackageGroups"]["Value"] == "cnai-dev-banking77"
    assert outputs["JobPrefix"]["Value"] == "cnai-dev-train"


def test_the_schedule_is_off_by_default_and_starts_one_run_per_model_when_set(default: Synth, variant: Synth) -> None:
    assert default.resources("AWS::Scheduler::Schedule") == {}
    schedules = [s["Properties"] for s in variant.resources("AWS::Scheduler::Schedule").values()]
    assert sorted(json.loads(s["Target"]["Input"])["model"] for s in schedules) == ["banking77", "support"]
    assert all(s["ScheduleExpression"] == "rate(7 days)" for s in schedules)
    assert variant.states["TrainAndDistill"]["Parameters"]["ResourceConfig"]["VolumeSizeInGB"] == 100


def test_the_functions_get_their_environment_from_their_settings_models(default: Synth) -> None:
    env = {
        f["Properties"]["Handler"].split(".")[1]: f["Properties"]["Environment"]["Variables"]
        for f in default.resources("AWS::Lambda::Function").values()
        if f["Properties"].get("Handler", "").startswith("functions.")
    }
    assert set(env) == {"prepare_dataset", "quality_gate", "register_model", "notify"}
    assert env["prepare_dataset"]["CNAI_JOB_PREFIX"] == "cnai-dev-train"
    assert env["prepare_dataset"]["CNAI_DATASETS_PREFIX"] == "datasets"
    assert env["register_model"]["CNAI_MODEL_PACKAGE_GROUP_PREFIX"] == "cnai-dev"
    assert env["register_model"]["CNAI_SERVING_IMAGE"].startswith(
        "763104351884.dkr.ecr.eu-west-1.amazonaws.com/pytorch-inference:"
    )
    assert "CNAI_TOPIC_ARN" in env["notify"]


def test_large_ranges_have_an_athena_table_with_partition_projection_and_a_locked_workgroup(default: Synth) -> None:
    [table] = [t["Properties"]["TableInput"] for t in default.resources("AWS::Glue::Table").values()]
    assert table["Name"] == "curated" and [k["Name"] for k in table["PartitionKeys"]] == ["dt"]
    assert [c["Name"] for c in table["StorageDescriptor"]["Columns"]] == [
        "id", "text", "label", "tenant", "source", "timestamp",
    ]  # fmt: skip
    params = table["Parameters"]
    assert params["projection.enabled"] == "true" and params["projection.dt.format"] == "yyyy-MM-dd"
    assert render(params["storage.location.template"]).endswith("/curated/dt=${dt}/")
    [group] = [g["Properties"] for g in default.resources("AWS::Athena::WorkGroup").values()]
    config = group["WorkGroupConfiguration"]
    assert config["EnforceWorkGroupConfiguration"] is True
    assert config["ResultConfiguration"]["EncryptionConfiguration"]["EncryptionOption"] == "SSE_KMS"
    assert render(config["ResultConfiguration"]["OutputLocation"]).endswith("/athena/")
    env = next(
        f["Properties"]["Environment"]["Variables"]
        for f in default.resources("AWS::Lambda::Function").values()
        if f["Properties"].get("Handler") == "functions.prepare_dataset.handler.handler"
    )
    t = TrainingSettings()
    assert env["CNAI_ATHENA_WORKGROUP"] == group["Name"] == "cnai-dev-snapshots"
    assert env["CNAI_GLUE_DATABASE"] == "cnai_dev_lake" and env["CNAI_GLUE_TABLE"] == "curated"
    assert env["CNAI_SNAPSHOT_MAX_OBJECTS"] == str(t.prepare_lambda_max_objects)
    assert env["CNAI_SNAPSHOT_MAX_BYTES"] == str(t.prepare_lambda_max_mb * 1024 * 1024)


def test_prepare_dataset_queries_only_its_workgroup_and_table(default: Synth) -> None:
    statements = {s.get("Sid"): s for s in default.policy(default.stack.functions["prepare_dataset"].role)}
    assert as_list(statements["AthenaQueries"]["Resource"]) == [
        "arn:<AWS::Partition>:athena:eu-west-1:111111111111:workgroup/cnai-dev-snapshots"
    ]
    assert as_list(statements["GlueTable"]["Resource"]) == [
        "arn:<AWS::Partition>:glue:eu-west-1:111111111111:catalog",
        "arn:<AWS::Partition>:glue:eu-west-1:111111111111:database/cnai_dev_lake",
        "arn:<AWS::Partition>:glue:eu-west-1:111111111111:table/cnai_dev_lake/curated",
    ]
    assert statements["ListResults"]["Condition"] == {"StringLike": {"s3:prefix": ["athena/*"]}}
    writes = as_list(statements["WriteSnapshots"]["Resource"])
    assert len(writes) == 1 and writes[0].endswith("/datasets/*")  # never curated/


# ---- IAM


def test_the_workflow_may_run_only_its_prefixed_jobs_with_its_one_role(default: Synth) -> None:
    workflow = default.stack.workflow
    statements = default.policy(workflow.state_machine.role)
    by_sid = {s.get("Sid"): s for s in statements}
    jobs = by_sid["TrainingJobs"]
    assert as_list(jobs["Resource"]) == [
        "arn:<AWS::Partition>:sagemaker:eu-west-1:111111111111:training-job/cnai-dev-train-*"
    ]
    assert set(as_list(jobs["Action"])) == {
        "sagemaker:CreateTrainingJob", "sagemaker:DescribeTrainingJob",
        "sagemaker:StopTrainingJob", "sagemaker:AddTags",
    }  # fmt: skip
    passrole = by_sid["PassExecutionRole"]
    assert as_list(passrole["Resource"]) == [f"<{default.logical_id(workflow.execution_role)}.Arn>"]
    assert passrole["Condition"] == {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}
    rule = by_sid["SyncEventRule"]
    assert as_list(rule["Resource"]) == [
        "arn:<AWS::Partition>:events:eu-west-1:111111111111:rule/StepFunctionsGetEventsForSageMakerTrainingJobsRule"
    ]
    invoked = {r for s in statements if "lambda:InvokeFunction" in as_list(s["Action"]) for r in as_list(s["Resource"])}
    functions = {f"<{default.logical_id(f.function)}.Arn>" for f in default.stack.functions.values()}
    assert invoked == functions | {f + ":*" for f in functions}
    # Resource '*' only for what has no resource type: log delivery and X-Ray
    star_actions = {a for s in statements if "*" in as_list(s["Resource"]) for a in as_list(s["Action"])}
    assert all(a.startswith(("logs:", "xray:")) for a in star_actions), star_actions
    assert not any(a.endswith("*") for s in statements for a in as_list(s["Action"]))


def test_the_job_role_reads_and_writes_only_its_prefixes_key_image_and_logs(default: Synth) -> None:
    workflow = default.stack.workflow
    statements = default.policy(workflow.execution_role)
    artifacts = f"<{default.stack.get_logical_id(default.stack.artifacts.node.default_child)}.Arn>"
    objects = {
        r for s in statements if any(a.startswith("s3:") and a != "s3:ListBucket" for a in as_list(s["Action"]))
        for r in as_list(s["Resource"])
    }  # fmt: skip
    code = default.stack.code.asset
    lake_objects = [r for r in objects if r.endswith("/datasets/*") and not r.startswith(artifacts)]
    assert len(lake_objects) == 1 and lake_objects[0].startswith("Lake:ExportsOutput")  # the lake, imported
    assert objects == {
        f"{artifacts}/training/*",
        f"{artifacts}/checkpoints/*",
        lake_objects[0],
        f"arn:<AWS::Partition>:s3:::{code.s3_bucket_name}/{code.s3_object_key}",
    }
    lists = [s for s in statements if "s3:ListBucket" in as_list(s["Action"])]
    assert all("s3:prefix" in s["Condition"]["StringLike"] for s in lists)
    stars = [s for s in statements if "*" in as_list(s["Resource"])]
    assert sorted(a for s in stars for a in as_list(s["Action"])) == [
        "cloudwatch:PutMetricData",
        "ecr:GetAuthorizationToken",
    ]
    metrics = next(s for s in stars if "cloudwatch:PutMetricData" in as_list(s["Action"]))
    assert metrics["Condition"] == {"StringLike": {"cloudwatch:namespace": "/aws/sagemaker/*"}}
    pull = next(s for s in statements if "ecr:BatchGetImage" in as_list(s["Action"]))
    assert as_list(pull["Resource"]) == ["arn:<AWS::Partition>:ecr:eu-west-1:763104351884:repository/pytorch-training"]
    grant = next(s for s in statements if "kms:CreateGrant" in as_list(s["Action"]))
    assert grant["Condition"] == {"Bool": {"kms:GrantIsForAWSResource": "true"}}


def test_register_and_quality_gate_reach_only_this_deployments_groups(default: Synth) -> None:
    for name in ("register_model", "quality_gate"):
        statements = default.policy(default.stack.functions[name].role)
        sagemaker = {
            r for s in statements if any(a.startswith("sagemaker:") for a in as_list(s["Action"]))
            for r in as_list(s["Resource"])
        }  # fmt: skip
        assert sagemaker == {
            "arn:<AWS::Partition>:sagemaker:eu-west-1:111111111111:model-package-group/cnai-dev-banking77",
            "arn:<AWS::Partition>:sagemaker:eu-west-1:111111111111:model-package/cnai-dev-banking77/*",
        }, name


# ---- the code asset


def test_the_sourcedir_is_reproducible_and_ships_the_factory_without_torch(tmp_path: Path) -> None:
    first = build_sourcedir(tmp_path / "a.tar.gz")
    second = build_sourcedir(tmp_path / "b.tar.gz")
    assert first.read_bytes() == second.read_bytes()
    with tarfile.open(first) as tar:
        names = tar.getnames()
        reqs = tar.extractfile("requirements.txt").read().decode().split()  # type: ignore[union-attr]
    assert "models/train.py" in names and "cnai/__init__.py" in names and "cnai/model/artifact.py" in names
    assert not any("__pycache__" in n or n.endswith(".pyc") for n in names)
    assert not any(r.startswith("torch==") for r in reqs)
    assert all(re.fullmatch(r"[a-z0-9-]+==[\w.]+", r) for r in reqs), reqs
    assert reqs == requirements()


def test_the_sourcedir_alone_runs_the_entry_point(tmp_path: Path) -> None:
    # Given the tar unpacked where SageMaker puts it (/opt/ml/code), with nothing of the repository on the path
    with tarfile.open(build_sourcedir(tmp_path / "sourcedir.tar.gz")) as tar:
        tar.extractall(tmp_path / "code", filter="data")
    # When the toolkit's command runs from there, isolated (-I: no cwd, no PYTHONPATH, no user site)
    done = subprocess.run(
        [sys.executable, "-I", "models/train.py", "--help"],
        cwd=tmp_path / "code",
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    # Then it starts, and the modules of ours it imports come from the tar (train.py puts /opt/ml/code first),
    # not from the editable install the test interpreter also has
    assert done.returncode == 0, done.stderr[-2000:]
    assert "--profile" in done.stdout
    # (where each module would load from, by the import system's own lookup: importing models.train again would
    # cost another 13 s of torch and transformers imports the --help run above already paid)
    probe = (
        "import sys; sys.path.insert(0, '.'); from importlib.util import find_spec; "
        "[print(find_spec(m).origin) for m in ('models.train', 'cnai.model.artifact', 'cnai.data.dataset')]"
    )
    where = subprocess.run(
        [sys.executable, "-I", "-c", probe],
        cwd=tmp_path / "code",
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert where.returncode == 0, where.stderr[-2000:]
    for line in where.stdout.split():
        assert Path(line).resolve().is_relative_to((tmp_path / "code").resolve()), line


# ---- the picture in docs/


def test_the_workflow_picture_is_drawn_from_the_definition_and_is_stable(default: Synth, tmp_path: Path) -> None:
    from infra.render_workflow import definition_from_template, render

    # Given the synthesized template; When it is drawn twice
    definition = definition_from_template(default.json)
    first = render(definition, tmp_path / "a.svg").read_bytes()
    second = render(definition, tmp_path / "b.svg").read_bytes()
    # Then the SVG is byte-stable and names every state and the .sync task
    assert first == second
    text = first.decode()
    for state in default.states:
        assert state.replace("?", "") in text, state
    assert "createTrainingJob.sync" in text


def _distribution_closure(names: set[str]) -> set[str]:
    """The distributions `names` install, transitively (their unconditional requirements)."""
    from importlib.metadata import PackageNotFoundError, distribution

    seen: set[str] = set()
    todo = list(names)
    while todo:
        name = re.sub(r"[-_.]+", "-", todo.pop()).lower()
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = distribution(name).requires or []
        except PackageNotFoundError:
            continue
        todo += [re.split(r"[\s<>=!~;\[(]", r, maxsplit=1)[0] for r in requires if "extra ==" not in r]
    return seen


def test_requirements_cover_every_third_party_import_of_the_factory() -> None:
    # Given the modules of ours the entry point imports (models.train.code_files: the code_version closure)
    import ast
    from importlib.metadata import packages_distributions

    from models.train import code_files

    imported: set[str] = set()
    for path in code_files(ROOT):
        for node in ast.walk(ast.parse(path.read_bytes())):
            if isinstance(node, ast.Import):
                imported |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                imported.add(node.module.split(".")[0])
    third_party = {
        m for m in imported if m not in sys.stdlib_module_names and m not in ("cnai", "models", "__future__")
    }
    # When their distributions are compared with what the job installs (requirements.txt, transitively) or has
    by_module = packages_distributions()
    needed = {re.sub(r"[-_.]+", "-", d).lower() for m in third_party for d in by_module.get(m, [m])}
    installed = _distribution_closure({r.split("==")[0] for r in requirements()}) | PROVIDED_BY_IMAGE
    # Then nothing is missing, and nothing left out as "not for training" is imported by the factory
    assert needed <= installed, f"the training job would lack {sorted(needed - installed)}"
    assert not needed & NOT_FOR_TRAINING


# ---- constructs on a bare Stack


def test_an_environment_agnostic_stack_gets_the_image_from_a_region_mapping() -> None:
    from infra.constructs.framework_image import framework_image

    # Given a stack whose region is unknown at synth time
    stack = cdk.Stack(cdk.App())
    # When the training image is looked up
    image = framework_image(
        stack, "Image", version="2.6", py_version="py312", instance_type="ml.g5.xlarge", image_scope="training"
    )
    # Then CloudFormation picks it by region from a mapping built from the SDK's table (opt-in regions included)
    mapping = stack.resolve(image.uri)
    assert mapping == {"Fn::FindInMap": ["Image", {"Ref": "AWS::Region"}, "uri"]}
    table = assertions.Template.from_stack(stack).to_json()["Mappings"]["Image"]
    assert table["eu-west-1"]["uri"] == "763104351884.dkr.ecr.eu-west-1.amazonaws.com/pytorch-training:2.6-gpu-py312"
    assert table["af-south-1"]["account"] != "763104351884" and "cn-north-1" in table
    assert "repository/pytorch-training" in json.dumps(stack.resolve(image.repository_arn))


def test_an_unknown_framework_version_fails_the_synth_naming_it() -> None:
    from infra.constructs.framework_image import framework_image

    stack = cdk.Stack(cdk.App(), env=ENV)
    with pytest.raises(ValueError, match=r"no pytorch training image for version 0\.1"):
        framework_image(
            stack, "I", version="0.1", py_version="py312", instance_type="ml.g5.xlarge", image_scope="training"
        )


def test_a_model_whose_group_name_would_be_invalid_is_refused() -> None:
    from infra.constructs.model_registry import ModelRegistry

    with pytest.raises(ValueError, match="model package group name"):
        ModelRegistry(cdk.Stack(cdk.App()), "R", groups={"bad_name": "cnai-dev-bad_name"})


def test_imported_fixes_the_export_name_of_another_stacks_resource_and_keeps_other_values() -> None:
    from aws_cdk import aws_s3 as s3

    from infra.constructs.nag_findings import finding, imported

    app = cdk.App()
    producer, consumer = cdk.Stack(app, "Producer"), cdk.Stack(app, "Consumer")
    bucket = s3.Bucket(producer, "Lake")
    named = s3.Bucket.from_bucket_name(producer, "Named", "acme")
    # A resource attribute of another stack becomes an explicit import whose name is known now
    arn = imported(consumer, bucket, bucket.bucket_arn)
    resolved = consumer.resolve(arn)
    assert set(resolved) == {"Fn::ImportValue"} and resolved["Fn::ImportValue"].startswith("Producer:ExportsOutput")
    assert finding(consumer, arn + "/datasets/*") == f"Resource::{resolved['Fn::ImportValue']}/datasets/*"
    # A value that is not a resource attribute (an imported bucket's ARN), or one of the same stack, is kept
    assert imported(consumer, named, named.bucket_arn) == named.bucket_arn
    assert imported(producer, bucket, bucket.bucket_arn) == bucket.bucket_arn


def test_allow_refuses_wildcard_actions_and_unexplained_wildcard_resources() -> None:
    from aws_cdk import aws_iam as iam

    from infra.constructs.nag_findings import allow

    role = iam.Role(cdk.Stack(cdk.App()), "R", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"))
    with pytest.raises(ValueError, match="name the actions"):
        allow(role, sid="A", actions=["s3:*"], resources=["arn:aws:s3:::b/x"])
    with pytest.raises(ValueError, match="need a wildcard_reason"):
        allow(role, sid="B", actions=["s3:GetObject"], resources=["arn:aws:s3:::b/*"])
    allow(
        role,
        sid="C",
        actions=["s3:GetObject"],
        resources=["arn:aws:s3:::b/*"],
        wildcard_reason="objects are named per run under b/",
    )
