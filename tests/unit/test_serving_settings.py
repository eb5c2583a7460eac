"""Serving deployment settings from CDK context: strings coerced, bad values refused naming the field."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from infra.config import Settings, settings_from_context


def test_context_strings_become_typed_serving_settings() -> None:
    # Given `cdk -c cnai:serving_memory_mb=4096 -c cnai:api_keys=true ...` (context values arrive as strings)
    context = {
        "cnai:serving_memory_mb": "4096",
        "cnai:api_keys": "true",
        "cnai:sagemaker_memory_mb": "3072",
        "cnai:serving_model_version_id": "3HL4kqtJlcpXroDTDmJ",
    }
    # When the settings are read
    settings = settings_from_context(context.get)
    # Then they are typed and the rest keeps its defaults
    assert settings.serving_memory_mb == 4096
    assert settings.api_keys is True
    assert settings.api_iam_auth is True
    assert settings.sagemaker_memory_mb == 3072
    assert settings.serving_model_version_id == "3HL4kqtJlcpXroDTDmJ"
    assert settings.audit_retention_days == 365


def test_an_open_api_is_refused() -> None:
    with pytest.raises(ValidationError, match="open to anyone"):
        Settings(api_iam_auth=False, api_keys=False)


def test_routing_to_sagemaker_without_an_endpoint_is_refused() -> None:
    with pytest.raises(ValidationError, match="no endpoint to route to"):
        Settings(sagemaker_route=True, sagemaker_endpoint=False)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("sagemaker_memory_mb", 1500),  # serverless memory comes in 1024 MB steps
        ("sagemaker_memory_mb", 8192),
        ("serving_memory_mb", 64),
        ("audit_retention_days", 0),
        ("audit_lock_mode", "NONE"),
        ("serving_model_name", "Bad Name"),
    ],
)
def test_out_of_range_values_are_refused_naming_the_field(field: str, value: object) -> None:
    with pytest.raises(ValidationError, match=field):
        Settings.model_validate({field: value})
