"""Hyperparameters resolve the same way on SageMaker and a laptop: defaults < profile < SM_HPS < flags."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from models.config import ConfigError, parse

SM_ENV = {
    "SM_CHANNEL_TRAIN": "/opt/ml/input/data/train",
    "SM_CHANNEL_TEST": "/opt/ml/input/data/test",
    "SM_MODEL_DIR": "/opt/ml/model",
    "SM_OUTPUT_DATA_DIR": "/opt/ml/output/data",
}


def test_sagemaker_contract_fills_paths_and_hyperparameters() -> None:
    env = {**SM_ENV, "SM_HPS": json.dumps({"student_layers": "3", "kd_temperature": "4", "prune_vocab": "false"})}
    cfg = parse([], env)
    assert cfg.paths.train == Path("/opt/ml/input/data/train")
    assert cfg.paths.model_dir == Path("/opt/ml/model")
    assert cfg.paths.checkpoint_dir == Path("/opt/ml/checkpoints")
    assert cfg.hp.student_layers == 3
    assert cfg.hp.kd_temperature == 4.0
    assert cfg.hp.prune_vocab is False


def test_flags_override_sm_hps_and_profile() -> None:
    env = {**SM_ENV, "SM_HPS": json.dumps({"student_epochs": 7})}
    cfg = parse(["--profile", "quick", "--student_epochs", "9", "--teacher-epochs", "2"], env)
    assert cfg.profile == "quick"
    assert cfg.hp.student_epochs == 9
    assert cfg.hp.teacher_epochs == 2
    assert cfg.hp.train_limit == 3000  # from the profile


def test_profile_may_come_from_sm_hps() -> None:
    cfg = parse([], {**SM_ENV, "SM_HPS": json.dumps({"profile": "tiny"})})
    assert cfg.profile == "tiny"
    assert cfg.hp.student_layers == 1


def test_profile_passed_both_ways_as_the_sagemaker_toolkit_does() -> None:
    # Given SageMaker's toolkit: every hyperparameter in SM_HPS and again as --key value
    env = {**SM_ENV, "SM_HPS": json.dumps({"profile": "tiny", "student_epochs": 2})}
    # When parsed
    cfg = parse(["--profile", "tiny", "--student_epochs", "2"], env)
    # Then the profile applies and is not mistaken for an unknown hyperparameter
    assert cfg.profile == "tiny" and cfg.hp.student_layers == 1 and cfg.hp.student_epochs == 2


def test_bad_hyperparameter_names_the_field() -> None:
    with pytest.raises(ConfigError, match=r"kd_alpha"):
        parse(["--kd_alpha", "1.5"], SM_ENV)


def test_unknown_hyperparameter_from_sagemaker_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"lerning_rate"):
        parse([], {**SM_ENV, "SM_HPS": json.dumps({"lerning_rate": 0.1})})


def test_layer_map_must_match_layer_count() -> None:
    with pytest.raises(ConfigError, match="student_layer_map"):
        parse(["--student_layers", "2", "--student_layer_map", "0,3,5"], SM_ENV)


def test_missing_train_channel_is_named() -> None:
    with pytest.raises(ConfigError, match="--train"):
        parse([], {})


def test_invalid_sm_hps_json() -> None:
    with pytest.raises(ConfigError, match="SM_HPS"):
        parse([], {**SM_ENV, "SM_HPS": "{not json"})
