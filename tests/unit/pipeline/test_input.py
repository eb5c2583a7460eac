"""The console input: defaults filled, every bad field named, job names unique and within SageMaker's rules."""

from __future__ import annotations

from datetime import date

import pytest

from cnai.pipeline.input import JOB_NAME, RunInputError, job_name, parse_run


def test_the_documented_console_input_gets_every_default() -> None:
    # Given the smallest documented input
    run = parse_run({"model": "banking77", "dataset": {"from": "2026-11-01", "to": "2026-11-30"}})
    # When it is normalized for the later states
    payload = run.payload()
    # Then every default is filled and the dataset keeps its console spelling ("from")
    assert payload["dataset"]["from"] == "2026-11-01" and payload["dataset"]["to"] == "2026-11-30"
    assert payload["instance_type"] == "ml.g5.xlarge" and payload["instance_count"] == 1
    assert payload["spot"] is True and payload["max_wait_s"] == 2 * payload["max_runtime_s"]
    assert payload["stopping_condition"] == {"MaxRuntimeInSeconds": 7200, "MaxWaitTimeInSeconds": 14400}
    assert payload["thresholds"] == {"accuracy": 0.8, "macro_f1": 0.75, "tolerance": 0.01}
    assert payload["auto_approve"] is False and payload["profile"] == "default"
    # And the normalized payload reads back as the same run (QualityGate and Register re-validate `$.run`)
    assert parse_run(payload) == run


def test_on_demand_runs_carry_no_max_wait() -> None:
    run = parse_run({"model": "m", "dataset": {"manifest": "s3://lake/datasets/m/v1/manifest.json"}, "spot": False})
    assert run.max_wait_s is None and run.stopping_condition == {"MaxRuntimeInSeconds": 7200}


@pytest.mark.parametrize(
    ("data", "named"),
    [
        ({"model": "Bad Name", "dataset": {"from": "2026-11-01", "to": "2026-11-02"}}, "model: does not match"),
        ({"model": "m", "dataset": {"from": "2026-11-01"}}, "dataset: give from and to"),
        ({"model": "m", "dataset": {"from": "2026-11-05", "to": "2026-11-01"}}, "to 2026-11-01 is before from"),
        ({"model": "m", "dataset": {"from": "2026-11-01", "to": "2026-11-02", "manifest": "s3://lake/k/manifest.json"}},
         "either from/to"),
        ({"model": "m", "dataset": {"manifest": "/tmp/manifest.json"}}, "dataset.manifest: does not match"),
        ({"model": "m", "dataset": {"from": "2026-11-01", "to": "2026-11-02"}, "gpus": 8},
         "gpus: is not a known field"),
        ({"model": "m", "dataset": {"from": "2026-11-01", "to": "2026-11-02"}, "max_wait_s": 60, "max_runtime_s": 600},
         "max_wait_s 60 must be >= max_runtime_s 600"),
        ({"model": "m", "dataset": {"from": "2026-11-01", "to": "2026-11-02"}, "spot": False, "max_wait_s": 900},
         "max_wait_s only applies with spot"),
        ({"model": "m", "dataset": {"from": "2026-11-01", "to": "2026-11-02"}, "hyperparameters": {"profile": "x"}},
         "hyperparameters: 'profile' is set by the workflow"),
        ({"model": "m", "dataset": {"from": "2026-11-01", "to": "2026-11-02"}, "thresholds": {"accuracy": 1.5}},
         "thresholds.accuracy"),
    ],
)  # fmt: skip
def test_a_bad_input_names_the_field(data: dict, named: str) -> None:
    # When an invalid input is validated, Then the error names the field and the problem
    with pytest.raises(RunInputError, match="input: ") as caught:
        parse_run(data)
    assert named in str(caught.value)


def test_hyperparameter_overrides_become_strings() -> None:
    run = parse_run({"model": "m", "dataset": {"from": "2026-11-01", "to": "2026-11-01"},
                     "hyperparameters": {"student_epochs": 4, "eval_teacher": False, "lr": 3e-5}})  # fmt: skip
    assert run.hyperparameters == {"student_epochs": "4", "eval_teacher": "false", "lr": "3e-05"}


def test_the_run_says_whether_it_generates_synthetic_data_for_the_workflows_choice() -> None:
    # Given a run without augmentation and one whose recipe asks for 8 generated utterances per label
    plain = parse_run({"model": "m", "dataset": {"from": "2026-11-01", "to": "2026-11-01"}})
    augmented = parse_run({"model": "m", "dataset": {"from": "2026-11-01", "to": "2026-11-01"},
                           "hyperparameters": {"augment_per_label": 8}})  # fmt: skip
    # Then `$.run.augment_per_label` is the number GenerateSyntheticData's Choice compares with 0
    assert plain.payload()["augment_per_label"] == 0
    payload = augmented.payload()
    assert payload["augment_per_label"] == 8 and payload["hyperparameters"] == {"augment_per_label": "8"}
    # And the payload reads back as the same run
    assert parse_run(payload) == augmented
    # And a value the Choice could not compare is refused at the start, naming the field
    with pytest.raises(RunInputError, match="augment_per_label: '-2' is not a whole number"):
        parse_run({"model": "m", "dataset": {"from": "2026-11-01", "to": "2026-11-01"},
                   "hyperparameters": {"augment_per_label": -2}})  # fmt: skip


def test_job_names_are_deterministic_per_execution_and_fit_sagemaker() -> None:
    # Given the same execution twice (a retried PrepareDataset) and another execution
    arn = "arn:aws:states:us-east-1:123456789012:execution:cnai-train:run-1"
    first, again = job_name("cnai-dev", "banking77", arn), job_name("cnai-dev", "banking77", arn)
    other = job_name("cnai-dev", "banking77", arn + "x")
    # Then the retry names the same job, another execution another one, all under the prefix
    assert first == again != other
    assert first.startswith("cnai-dev-banking77-")
    # And a long prefix and model still give a valid name, prefix intact, leaving room for the workflow's
    # per-attempt suffix ("-0", "-1", ...) within SageMaker's 63 characters
    long = job_name("p" * 40, "m" * 40, arn)
    assert len(long) == 60 and long.startswith("p" * 40 + "-") and JOB_NAME.fullmatch(long + "-12")
    assert len(long + "-g9") <= 63  # GenerateSyntheticData's attempts: "-g0", "-g1", ...
    # And without an execution (CLI) names are random
    assert job_name("cnai", "m") != job_name("cnai", "m")


def test_a_given_job_name_must_be_under_the_prefix() -> None:
    run = parse_run({"model": "m", "dataset": {"from": "2026-11-01", "to": "2026-11-01"}, "job_name": "other-x"})
    with pytest.raises(RunInputError, match="must start with cnai-"):
        run.with_job_name("cnai")
    with pytest.raises(RunInputError, match="job name prefix"):
        job_name("bad prefix!", "m")


def test_scheduled_run_dataset_is_the_last_days_before_the_scheduled_time() -> None:
    # Given what the training schedule sends (EventBridge Scheduler fills in the scheduled time)
    from cnai.pipeline.input import DatasetSpec

    spec = DatasetSpec.model_validate({"last_days": 30, "until": "2026-12-01T03:00:00Z"})
    # Then it is the 30 days ending on that date, inclusive
    assert (spec.from_, spec.to) == (date(2026, 11, 2), date(2026, 12, 1))


@pytest.mark.parametrize(
    ("dataset", "message"),
    [
        ({"last_days": 0}, "last_days"),
        ({"last_days": "30"}, "last_days"),
        ({"last_days": 3, "until": "soon"}, "until"),
        ({"last_days": 3, "from": "2026-01-01"}, "not both"),
    ],
)
def test_bad_relative_ranges_name_the_field(dataset: dict, message: str) -> None:
    from pydantic import ValidationError

    from cnai.pipeline.input import DatasetSpec

    with pytest.raises(ValidationError, match=message):
        DatasetSpec.model_validate(dataset)
