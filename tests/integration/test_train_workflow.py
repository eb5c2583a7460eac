"""The SYNTHESIZED `train` state machine executed locally, end to end through its real functions.

The app is synthesized once for this module (infra.application.build, no bundling, stage "wf", the capacity
Retry's first wait shortened to 1 s through `cnai:training.capacity_retry_s`), its templates deployed into moto
(infra.local.template), its four workflow functions run in process (infra.local.functions), and the definition
CDK wrote is executed by moto's interpreter with cnai.local.stepfunctions. A small labelled BANKING77 slice is in
the lake's curated/ prefix in the ingest consumer's format, so PrepareDataset really freezes a snapshot.

What trains: success and the capacity retry run a STAND-IN entry point in place of models/train.py
(tests/integration/workflow_env.py STANDIN): it copies a real artifact models/train.py trained with the tiny
recipe (the session's `tiny_artifact`) and prints its metrics as train.py does, so the gate, the registry and
the notification read a real model card in seconds. The rejection (a starved recipe: a genuinely weak model),
the failing job (a recipe override train.py refuses), the spot interruption (slow) and the augmented run
(GenerateSyntheticData running models/augment.py with a tiny real generator, then TrainAndDistill judging its
candidates) run the real models/train.py, unchanged, from this checkout.
"""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cnai.model.artifact import ModelCard, load_artifact
from cnai.pipeline.notify import console_link
from cnai.pipeline.quality import served_metrics
from tests.conftest import BANKING77
from tests.generate_tiny import write_tiny_llama
from tests.integration.workflow_env import (
    DAY,
    MODEL,
    Execution,
    Workflow,
    banking_rows,
    curated_lines,
    deployed,
    synthesize,
)

ROOT = Path(__file__).resolve().parents[2]
HAPPY_PATH = ["PrepareDataset", "Synthetic data?", "TrainAndDistill", "QualityGate", "Passed?", "Register",
              "NotifySuccess"]  # fmt: skip
AUGMENTED_PATH = ["PrepareDataset", "Synthetic data?", "GenerateSyntheticData", "AddCandidatesChannel", *HAPPY_PATH[2:]]


@pytest.fixture(scope="module")
def templates() -> dict[str, dict[str, Any]]:
    """The real app, synthesized once for this module (jsii is slow)."""
    return synthesize()


@pytest.fixture(scope="module")
def workflow(
    templates: dict[str, dict[str, Any]], tiny_artifact: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Workflow]:
    """Given the deployed app in moto with 6 intents x 50 curated BANKING77 rows in the lake."""
    curated = curated_lines(banking_rows(BANKING77 / "train.csv", labels=6, per_label=50), DAY)
    with deployed(templates, work=tmp_path_factory.mktemp("workflow"), artifact=tiny_artifact, curated=curated) as wf:
        yield wf


@pytest.fixture(autouse=True)
def fresh_runner(workflow: Workflow) -> Iterator[None]:
    """Each scenario starts with the stand-in entry point, no injected fault and no notification pending."""
    workflow.runner.source_dir = workflow.standin_dir
    workflow.runner.faults.create_errors = []
    workflow.runner.faults.spot_interruptions = 0
    workflow.messages()
    yield
    workflow.runner.source_dir = workflow.standin_dir


@pytest.fixture(scope="module")
def card(tiny_artifact: Path) -> ModelCard:
    return load_artifact(tiny_artifact).card


def console_input(**overrides: Any) -> dict[str, Any]:
    """What a person types into the console's Start execution box (cnai.pipeline.input), over the slice's day."""
    return {"model": MODEL, "dataset": {"from": DAY, "to": DAY}, "profile": "tiny", **overrides}


def bars_below(metrics: dict[str, float]) -> dict[str, float]:
    return {"accuracy": round(metrics["accuracy"] - 0.05, 4), "macro_f1": round(metrics["macro_f1"] - 0.05, 4)}


def tar_member(workflow: Workflow, uri: str, name: str) -> dict[str, Any]:
    bucket, key = uri.removeprefix("s3://").split("/", 1)
    blob = workflow.s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(blob)) as archive:
        member = archive.extractfile(name)
        assert member is not None, f"{name} not in {uri}"
        return dict(json.load(member))


def scheduled_training_jobs(done: Execution) -> dict[str, dict[str, Any]]:
    """CreateTrainingJob parameters of each job the execution scheduled, by TrainingJobName."""
    found = {}
    for event in done.events:
        details = event.get("taskScheduledEventDetails") or {}
        if event["type"] == "TaskScheduled" and details["resourceType"] == "sagemaker":
            parameters = json.loads(details["parameters"])
            found[parameters["TrainingJobName"]] = parameters
    return found


def scheduled_job_names(done: Execution) -> list[str]:
    """TrainingJobName of each TrainAndDistill attempt, from the TaskScheduled events' parameters."""
    return [
        json.loads(e["taskScheduledEventDetails"]["parameters"])["TrainingJobName"]
        for e in done.events
        if e["type"] == "TaskScheduled" and e["taskScheduledEventDetails"]["resourceType"] == "sagemaker"
    ]


def test_success_with_auto_approve_registers_an_approved_version_with_lineage_and_notifies(
    workflow: Workflow, card: ModelCard
) -> None:
    # Given bars below what the trained model reaches, auto-approve on
    metrics = served_metrics(card)
    before = len(workflow.versions())

    # When a run over the slice's day is started
    done = workflow.run("success", console_input(auto_approve=True, thresholds=bars_below(metrics)))

    # Then it succeeded through every state of the happy path
    assert done.status == "SUCCEEDED", (done.error, done.cause, workflow.lines[-10:])
    assert done.path == HAPPY_PATH
    out = done.output
    # And PrepareDataset froze the curated slice into a snapshot the job read as its two channels
    dataset = out["dataset"]
    assert dataset["engine"] == "lambda" and dataset["labels"] == 6
    assert dataset["rows"]["train"] + dataset["rows"]["test"] == 300
    assert dataset["manifest_uri"].startswith(f"s3://{workflow.lake}/datasets/{MODEL}/")
    training = out["training"]
    job = training["TrainingJobName"]
    assert job == f"{out['run']['job_name']}-0" and job.startswith(f"{workflow.prefix}-train-{MODEL}-")
    given = tar_member(workflow, training["model_data"].replace("model.tar.gz", "output.tar.gz"), "given.json")
    assert given["rows"] == dataset["rows"]
    # the synthesized hyperparameters reached the entry point as SageMaker's toolkit hands them on
    assert given["hps"] == {"profile": "tiny", "text_column": "text", "label_column": "label"}
    # And the metric definitions turned the job's last line into training metrics
    described = workflow.sagemaker.describe_training_job(TrainingJobName=job)
    final = {m["MetricName"]: m["Value"] for m in described["FinalMetricDataList"]}
    assert final["test:accuracy"] == pytest.approx(metrics["accuracy"], abs=1e-5)
    assert final["test:macro_f1"] == pytest.approx(metrics["macro_f1"], abs=1e-5)
    # And a new version is Approved in the model's group with its metrics, ModelMetrics report and lineage
    registered = out["registered"]
    assert registered["approval"] == "Approved" and registered["version"] == before + 1
    version = workflow.registry.version(MODEL, registered["version"])
    assert version.approval == "Approved" and version.arn == registered["model_package_arn"]
    assert version.metrics["accuracy"] == pytest.approx(metrics["accuracy"], abs=1e-5)
    assert version.metrics["macro_f1"] == pytest.approx(metrics["macro_f1"], abs=1e-5)
    assert version.model_data == training["model_data"]
    assert version.report_uri == out["quality"]["report_uri"]
    report_bucket, report_key = version.report_uri.removeprefix("s3://").split("/", 1)
    assert report_bucket == workflow.artifacts
    assert json.loads(workflow.s3.get_object(Bucket=report_bucket, Key=report_key)["Body"].read())
    assert version.lineage["dataset_manifest_sha256"] == dataset["manifest_sha256"]
    assert version.lineage["training_job_arn"] == training["TrainingJobArn"] == described["TrainingJobArn"]
    assert version.lineage["execution_arn"] == done.arn
    assert version.lineage["artifact_version"] == card.version  # the card of the artifact the job wrote
    # And NotifySuccess published one message to the topic: console link, version, metrics and the job's cost
    (message,) = workflow.messages()
    assert message["TopicArn"] == workflow.topic and message["MessageId"] == out["notified"]["message_id"]
    assert message["Subject"] == f"cnai {MODEL}: version {registered['version']} registered (Approved)"
    body = message["Message"]
    assert f"Execution: {console_link(done.arn)}" in body
    assert f"accuracy {metrics['accuracy']:.4f}" in body
    cost = (
        f"Cost: 1 x ml.g5.xlarge, {training['TrainingTimeInSeconds']} s training, "
        f"{training['BillableTimeInSeconds']} s billable: "
    )
    assert cost in body and "USD" in body


def test_a_model_below_the_thresholds_is_rejected_naming_metric_value_and_bar(workflow: Workflow) -> None:
    # Given the real models/train.py on a starved recipe (2 rows per intent, one epoch each: a weak model; the
    # tiny artifact of the other scenarios is perfect on its 6 intents, no bar could be above it; the int8
    # parity bar lowered so the job itself passes), and an accuracy bar such a model cannot reach
    workflow.runner.source_dir = ROOT
    starved = {"train_limit": "12", "teacher_epochs": "1", "student_epochs": "1", "min_int8_agreement": "0.5",
               "eval_teacher": "false"}  # fmt: skip
    bar = 0.99
    before = len(workflow.versions())

    # When
    done = workflow.run(
        "rejected",
        console_input(hyperparameters=starved, auto_approve=True, thresholds={"accuracy": bar, "macro_f1": 0.0}),
        timeout_s=300,
    )

    # Then the gate said no: NotifyRejected, then the Rejected Fail state with the gate's cause naming the
    # metric, the value the job's model card records and the bar
    assert done.path == ["PrepareDataset", "Synthetic data?", "TrainAndDistill", "QualityGate", "Passed?",
                         "NotifyRejected", "Rejected"]  # fmt: skip
    assert done.status == "FAILED" and done.error == "QualityGateFailed"
    quality = done.input_of("NotifyRejected")["quality"]
    card = tar_member(workflow, done.input_of("QualityGate")["training"]["model_data"], "model_card.json")
    accuracy = card["metrics"]["test"]["student_int8"]["accuracy"]
    assert quality["passed"] is False and quality["metrics"]["accuracy"] == accuracy < bar
    assert done.cause == f"accuracy {accuracy:.4f} below {bar:.4f} (threshold)"
    # And nothing was registered
    assert len(workflow.versions()) == before
    # And the notification says why
    (message,) = workflow.messages()
    assert message["Subject"] == f"cnai {MODEL}: rejected by the quality gate"
    assert done.cause in message["Message"] and console_link(done.arn) in message["Message"]


def test_a_failing_training_job_is_caught_notified_and_fails_with_its_reason(workflow: Workflow) -> None:
    # Given the real models/train.py, and a recipe override it refuses (student_epochs must be >= 1)
    workflow.runner.source_dir = ROOT
    before = len(workflow.versions())

    # When
    done = workflow.run("failing-job", console_input(hyperparameters={"student_epochs": "0"}))

    # Then the .sync task failed once (a failed job is not retried), Catch went to NotifyFailure, then Failed
    assert done.path == ["PrepareDataset", "Synthetic data?", "TrainAndDistill", "NotifyFailure", "Failed"]
    assert [f["error"] for f in done.failed_tasks()] == ["States.TaskFailed"]
    assert done.status == "FAILED" and done.error == "States.TaskFailed"
    # And the cause is the job's description: Failed, train.py's exit code and the field it refused
    assert done.cause is not None
    cause = json.loads(done.cause)
    job = cause["TrainingJobName"]
    assert cause["TrainingJobStatus"] == "Failed"
    assert "ExitCode 2" in cause["FailureReason"] and "student_epochs" in cause["FailureReason"]
    described = workflow.sagemaker.describe_training_job(TrainingJobName=job)
    assert described["FailureReason"] == cause["FailureReason"]
    assert "models/train.py" in workflow.job_log(job)
    assert len(workflow.versions()) == before
    (message,) = workflow.messages()
    assert message["Subject"] == f"cnai {MODEL}: training workflow failed"
    assert "student_epochs" in message["Message"] and console_link(done.arn) in message["Message"]


def test_a_capacity_error_is_retried_under_a_new_job_name_then_succeeds(workflow: Workflow, card: ModelCard) -> None:
    # Given SageMaker refuses the first two CreateTrainingJob calls for an instance quota
    workflow.runner.faults.create_errors = ["ResourceLimitExceeded", "ResourceLimitExceeded"]
    metrics = served_metrics(card)

    # When
    done = workflow.run("capacity", console_input(thresholds=bars_below(metrics)))

    # Then TrainAndDistill failed twice with the error name Step Functions gives SageMaker's quota error,
    # was retried (the synthesized Retry, 1 s first wait here), and the run went on to register the model
    assert done.status == "SUCCEEDED", (done.error, done.cause)
    assert done.path == HAPPY_PATH
    failures = done.failed_tasks()
    assert [f["error"] for f in failures] == ["SageMaker.ResourceLimitExceededException"] * 2
    assert all("Error Code: ResourceLimitExceeded" in f["cause"] for f in failures)
    row = done.row("TrainAndDistill")
    assert (row.failures, row.attempts) == (2, 3)
    # And each attempt had its own job name (SageMaker refuses a name twice); the third one ran
    run_job = done.output["run"]["job_name"]
    assert scheduled_job_names(done) == [f"{run_job}-0", f"{run_job}-1", f"{run_job}-2"]
    assert done.output["training"]["TrainingJobName"] == f"{run_job}-2"
    assert workflow.sagemaker.describe_training_job(TrainingJobName=f"{run_job}-2")["TrainingJobStatus"] == "Completed"
    # And without auto-approve the new version waits for a person
    assert done.output["registered"]["approval"] == "PendingManualApproval"
    assert workflow.runner.faults.create_errors == []


@pytest.mark.slow
def test_a_spot_interruption_resumes_from_its_checkpoint_to_the_same_metrics(workflow: Workflow) -> None:
    """Real models/train.py (tiny recipe) under the synthesized workflow, twice at once: through, interrupted.

    The interruption is the runner's: once train.py has written a checkpoint, SIGTERM to its process group (train.py
    finishes its checkpoint and exits 143), the checkpoints synced to S3, the local ones wiped (a new instance),
    synced back, and train.py started again within the same job."""
    # Given the real entry point on a short recipe (20 rows per intent, one teacher epoch of 7 steps: the first
    # checkpoint at step 5 is inside it, so the restart resumes a half-trained teacher; two student epochs; no
    # teacher reference) and bars it passes whatever version is approved (tolerance 1: the success scenario may
    # have approved a perfect stand-in artifact); the int8 parity bar is lowered from 0.99 to 0.95 as the local
    # platform does for its short recipes (a few test rows decide it here)
    workflow.runner.source_dir = ROOT
    recipe = {"train_limit": "120", "teacher_epochs": "1", "student_epochs": "2", "eval_teacher": "false",
              "min_int8_agreement": "0.95"}  # fmt: skip
    given = console_input(hyperparameters=recipe, thresholds={"accuracy": 0.0, "macro_f1": 0.0, "tolerance": 1.0})
    workflow.runner.faults.spot_interruptions = 1

    # When the same run goes twice at once (each train.py on one thread): on demand, never interrupted, and on
    # spot, interrupted once after its first checkpoint (the runner interrupts spot jobs only)
    reference_arn = workflow.start("spot-reference", {**given, "spot": False})
    done_arn = workflow.start("spot-interrupted", {**given, "spot": True})
    reference, done = workflow.wait(reference_arn, timeout_s=900), workflow.wait(done_arn, timeout_s=900)

    assert reference.status == "SUCCEEDED", (reference.error, reference.cause, workflow.lines[-20:])
    assert "spot interruption" not in workflow.job_log(reference.output["training"]["TrainingJobName"])
    # Then it succeeded through the same states, the job restarted from its synced checkpoint
    assert done.status == "SUCCEEDED", (done.error, done.cause, workflow.lines[-20:])
    assert done.path == HAPPY_PATH
    assert workflow.runner.faults.spot_interruptions == 0
    job = done.output["training"]["TrainingJobName"]
    log = workflow.job_log(job)
    assert "spot interruption: SIGTERM" in log and "exited with 143" in log
    assert "restored" in log and "checkpoint file(s) from" in log
    described = workflow.sagemaker.describe_training_job(TrainingJobName=job)
    steps = [t["Status"] for t in described["SecondaryStatusTransitions"]]
    assert steps == ["Starting", "Downloading", "Training", "Interrupted", "Restarting", "Training", "Uploading",
                     "Completed"]  # fmt: skip
    # And the resumed model's test metrics equal the uninterrupted run's
    cards = [tar_member(workflow, r.output["training"]["model_data"], "model_card.json") for r in (reference, done)]
    first, second = (c["metrics"]["test"]["student_int8"] for c in cards)
    assert (second["accuracy"], second["macro_f1"]) == (first["accuracy"], first["macro_f1"])
    gated = ("accuracy", "macro_f1")
    assert {k: done.output["quality"]["metrics"][k] for k in gated} == {
        k: reference.output["quality"]["metrics"][k] for k in gated
    }


@pytest.fixture(scope="module")
def tiny_generator(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generator in seconds: the tiny random Llama of tests/generate_tiny.py, whose end-of-turn embedding is
    moved next to the word it keeps repeating, so a sampled answer is a few words and then stops ("assistant
    assistant"): text to filter, judge and count, not good text. Loaded by folder (the transformers backend)."""
    import torch
    from transformers import LlamaForCausalLM

    folder = write_tiny_llama(tmp_path_factory.mktemp("tiny-generator") / "llama")
    vocab = json.loads((folder / "tokenizer.json").read_text())["model"]["vocab"]
    model: Any = LlamaForCausalLM.from_pretrained(folder)
    with torch.no_grad():
        embeddings = model.get_input_embeddings().weight
        embeddings[vocab["<|im_end|>"]] = 0.9 * embeddings[vocab["assistant"]]
    model.save_pretrained(folder)
    return folder


def test_a_recipe_that_augments_generates_in_its_own_job_and_trains_on_those_candidates(
    workflow: Workflow, tiny_generator: Path
) -> None:
    # Given the real entry points and a starved recipe that asks for 2 generated utterances per intent from the
    # tiny generator (short answers: min_chars lowered so some pass), with a one-epoch self-training refit of the
    # teacher; bars any model passes
    workflow.runner.source_dir = ROOT
    recipe = {"train_limit": "24", "teacher_epochs": "1", "student_epochs": "1", "min_int8_agreement": "0.5",
              "eval_teacher": "false", "augment_per_label": "2", "augment_examples": "2",
              "augment_max_new_tokens": "12", "augment_min_chars": "5", "augment_refit_epochs": "1",
              "augment_generator": str(tiny_generator)}  # fmt: skip
    given = console_input(hyperparameters=recipe, thresholds={"accuracy": 0.0, "macro_f1": 0.0, "tolerance": 1.0})

    # When
    done = workflow.run("augmented", given, timeout_s=600)

    # Then the Choice sent it through GenerateSyntheticData, then TrainAndDistill, and on to the registry
    assert done.status == "SUCCEEDED", (done.error, done.cause, workflow.lines[-20:])
    assert done.path == AUGMENTED_PATH
    run_job = done.output["run"]["job_name"]
    assert done.output["run"]["augment_per_label"] == 2
    # And the generation job ran models/augment.py as a one-instance job of its own, named per attempt
    jobs = scheduled_training_jobs(done)
    generation, training = jobs[f"{run_job}-g0"], jobs[f"{run_job}-0"]
    assert generation["HyperParameters"]["sagemaker_program"] == "models/augment.py"
    assert "sagemaker_torch_distributed_enabled" not in generation["HyperParameters"]
    assert generation["ResourceConfig"]["InstanceCount"] == 1
    assert done.output["synthetic"]["TrainingJobName"] == f"{run_job}-g0"
    described = workflow.sagemaker.describe_training_job(TrainingJobName=f"{run_job}-g0")
    assert described["TrainingJobStatus"] == "Completed"
    # And its candidates file is in S3 under the run's candidates prefix, named by the recipe's generation key
    prefix = f"checkpoints/{run_job}-candidates/"
    listed = workflow.s3.list_objects_v2(Bucket=workflow.artifacts, Prefix=prefix).get("Contents", [])
    [key] = [o["Key"] for o in listed]
    assert key.removeprefix(prefix).startswith("candidates-")
    written = json.loads(workflow.s3.get_object(Bucket=workflow.artifacts, Key=key)["Body"].read())
    count = len(written["candidates"])
    assert count > 0 and written["generator"].startswith("llama:")
    final = {m["MetricName"]: m["Value"] for m in described["FinalMetricDataList"]}
    assert final["generation:candidates"] == count
    # And TrainAndDistill got that prefix as its `candidates` channel beside train and test
    channels = {c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"] for c in training["InputDataConfig"]}
    assert set(channels) == {"train", "test", "candidates"}
    assert channels["candidates"] == f"s3://{workflow.artifacts}/{prefix}"
    assert channels["train"] == done.output["dataset"]["train_uri"]
    # And train.py judged those candidates instead of generating them again (it would have cached its own in its
    # checkpoint directory, synced to the run's checkpoint prefix)
    assert "augmentation: candidates generated ahead" in workflow.job_log(f"{run_job}-0")
    synced = workflow.s3.list_objects_v2(Bucket=workflow.artifacts, Prefix=f"checkpoints/{run_job}/").get(
        "Contents", []
    )
    assert synced and not [o["Key"] for o in synced if "/candidates-" in o["Key"]]
    # And the model card's lineage counts them apart from the real rows
    card = tar_member(workflow, done.output["training"]["model_data"], "model_card.json")
    generated = card["lineage"]["dataset"]["generated"]
    assert generated["generated_texts"] == count and generated["generator"] == written["generator"]
    assert generated["kept_texts"] + sum(generated["dropped"].values()) == count
    assert card["lineage"]["dataset"]["train_rows"] + card["lineage"]["dataset"]["dev_rows"] == 24
    # And the recipe's self-training refit ran as a teacher phase of its own, recorded in the card's history
    assert "teacher: self-training on" in workflow.job_log(f"{run_job}-0")
    assert [len(card["metrics"]["history"][p]) for p in ("teacher", "teacher_refit")] == [1, 1]
