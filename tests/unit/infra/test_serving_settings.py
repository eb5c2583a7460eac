"""Deployment settings from CDK context: grouped by concern, strings coerced, unknown keys and bad values refused
naming the `cnai:` key."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from cnai.pipeline.notify import hourly_price
from infra.config import (
    ApiSettings,
    ContextError,
    EndpointSettings,
    Settings,
    TrainingSettings,
    context_keys,
    settings_from_context,
)


def test_context_strings_become_typed_grouped_settings() -> None:
    # Given `cdk -c cnai:serving.memory_mb=4096 -c cnai:api.keys=true ...` (context values arrive as strings)
    context = {
        "cnai:serving.memory_mb": "4096",
        "cnai:api.keys": "true",
        "cnai:serving.endpoint.memory_mb": "3072",
        "cnai:serving.model_version_id": "3HL4kqtJlcpXroDTDmJ",
        "cnai:monitoring.alarm_emails": "ops@example.com, oncall@example.com",
        "aws:cdk:bundling-stacks": [],  # other context is not ours
    }
    # When the settings are read
    settings = settings_from_context(context)
    # Then they are typed, in their group, and the rest keeps its defaults
    assert settings.serving.memory_mb == 4096
    assert settings.api.keys is True
    assert settings.api.iam_auth is True
    assert settings.serving.endpoint.memory_mb == 3072
    assert settings.serving.model_version_id == "3HL4kqtJlcpXroDTDmJ"
    assert settings.monitoring.alarm_emails == ("ops@example.com", "oncall@example.com")
    assert settings.audit.retention_days == 365


def test_a_group_object_from_cdk_json_is_overridden_by_a_leaf_key() -> None:
    # Given a whole group in cdk.json and one of its settings on the command line
    context = {"cnai:training": {"spot": False, "instance_count": 2}, "cnai:training.instance_count": "4"}
    # When read
    training = settings_from_context(context).training
    # Then the object applies and the more specific key wins
    assert training.spot is False
    assert training.instance_count == 4


def test_an_unknown_key_fails_naming_the_nearest_valid_one() -> None:
    # Given the flat key of the previous layout (a silent default would deploy the wrong memory)
    with pytest.raises(ContextError, match=r"cnai:serving_memory_mb \(did you mean cnai:serving.memory_mb\?\)"):
        settings_from_context({"cnai:serving_memory_mb": "4096"})


def test_a_bad_context_value_names_its_key() -> None:
    with pytest.raises(ContextError, match=r"cnai:serving\.memory_mb: Input should be a valid integer"):
        settings_from_context({"cnai:serving.memory_mb": "lots"})
    with pytest.raises(ContextError, match=r"cnai:api: api\.iam_auth and api\.keys are both false"):
        settings_from_context({"cnai:api.iam_auth": "false"})
    with pytest.raises(ContextError, match="cnai:training: not JSON"):
        settings_from_context({"cnai:training": "{spot: no}"})


def test_every_setting_has_a_context_key() -> None:
    keys = context_keys()
    assert keys["cnai:stage"] == (("stage",), False)
    assert keys["cnai:serving"] == (("serving",), True)
    assert keys["cnai:serving.endpoint.route"] == (("serving", "endpoint", "route"), False)
    assert "cnai:training.instance_type" in keys and "cnai:monitoring.alarm_emails" in keys


def test_an_open_api_is_refused() -> None:
    with pytest.raises(ValidationError, match="open to anyone"):
        ApiSettings(iam_auth=False, keys=False)


def test_routing_to_sagemaker_without_an_endpoint_is_refused() -> None:
    with pytest.raises(ValidationError, match="no endpoint to route to"):
        EndpointSettings(route=True, enabled=False)


def test_training_defaults_are_a_single_gpu_spot_job_gated_and_manually_approved() -> None:
    training = Settings().training
    assert (training.instance_type, training.instance_count, training.spot) == ("ml.g5.xlarge", 1, True)
    assert training.max_wait_s >= training.max_runtime_s
    assert training.auto_approve is False and training.schedule is None
    assert 0 < training.min_accuracy <= 1 and 0 < training.min_macro_f1 <= 1 and training.tolerance == 0.01
    # The training cost is priced from the one price file (cnai/pipeline/prices.json), not a second table here
    assert hourly_price(training.instance_type) is not None
    assert "hourly_usd" not in TrainingSettings.model_fields
    assert Settings().package_group("banking77") == "cnai-dev-banking77"
    with pytest.raises(ValueError, match=r"not in training\.models"):
        Settings().package_group("other")


def test_spot_training_must_wait_at_least_as_long_as_it_runs() -> None:
    with pytest.raises(ValidationError, match=r"training.max_wait_s \(3600\) is shorter than training.max_runtime_s"):
        TrainingSettings(max_runtime_s=7200, max_wait_s=3600)
    TrainingSettings(spot=False, max_runtime_s=7200, max_wait_s=3600)  # on demand: MaxWait is not sent


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("cnai:serving.endpoint.memory_mb", 1500),  # serverless memory comes in 1024 MB steps
        ("cnai:serving.endpoint.memory_mb", 8192),
        ("cnai:serving.memory_mb", 64),
        ("cnai:audit.retention_days", 0),
        ("cnai:audit.lock_mode", "NONE"),
        ("cnai:serving.model_name", "Bad Name"),
        ("cnai:training.instance_type", "g5.xlarge"),
        ("cnai:training.schedule", "every week"),
        ("cnai:training.models", "banking77,Bad Name"),
        ("cnai:monitoring.alarm_emails", "ops at example"),
        ("cnai:training.min_accuracy", 1.5),
    ],
)
def test_out_of_range_values_are_refused_naming_the_key(key: str, value: object) -> None:
    with pytest.raises(ContextError, match=key.replace(".", r"\.")):
        settings_from_context({key: value})


def test_every_context_key_is_documented() -> None:
    from pathlib import Path

    page = (Path(__file__).resolve().parents[3] / "docs" / "configuration.md").read_text(encoding="utf-8")
    missing = [key for key, (_, group) in context_keys().items() if not group and f"`{key}`" not in page]
    assert not missing, f"docs/configuration.md lacks {missing}"
