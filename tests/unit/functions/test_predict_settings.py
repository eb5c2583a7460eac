"""The predict function's environment is validated at cold start, with messages naming the variable."""

from __future__ import annotations

import pytest

from functions.predict.settings import SettingsError, load_settings


def test_defaults() -> None:
    settings = load_settings({"CNAI_MODEL_URI": "s3://bucket/models/m/model.tar.gz"})
    assert settings.audit_sink == "stdout" and settings.audit_store_text is False
    assert settings.max_inputs == 64 and settings.max_input_chars == 2000
    assert settings.sagemaker_endpoints == {} and settings.model_version_id is None


def test_every_contract_variable_is_read() -> None:
    settings = load_settings(
        {
            "CNAI_MODEL_NAME": "intents",
            "CNAI_MODEL_URI": "s3://b/p/model.tar.gz",
            "CNAI_MODEL_VERSION_ID": "3HL4kqtJlcpXroDTDmJ.rmSpXd3dIbrHY",
            "CNAI_SAGEMAKER_ENDPOINTS": '{"big": "cnai-big-endpoint"}',
            "CNAI_AUDIT_SINK": "s3://audit-bucket/records",
            "CNAI_AUDIT_STORE_TEXT": "true",
            "CNAI_MAX_INPUTS": "16",
            "CNAI_MAX_INPUT_CHARS": "500",
            "UNRELATED": "ignored",
        }
    )
    assert settings.model_name == "intents" and settings.model_version_id == "3HL4kqtJlcpXroDTDmJ.rmSpXd3dIbrHY"
    assert settings.sagemaker_endpoints == {"big": "cnai-big-endpoint"}
    assert settings.audit_store_text is True and settings.max_inputs == 16 and settings.max_input_chars == 500


def test_sagemaker_only_deployment_needs_no_local_model() -> None:
    assert load_settings({"CNAI_SAGEMAKER_ENDPOINTS": '{"big": "ep"}'}).model_uri == ""


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "set CNAI_MODEL_URI"),
        ({"CNAI_MODEL_URI": "m", "CNAI_MAX_INPUTS": "0"}, "CNAI_MAX_INPUTS"),
        ({"CNAI_MODEL_URI": "m", "CNAI_MAX_INPUT_CHARS": "lots"}, "CNAI_MAX_INPUT_CHARS"),
        ({"CNAI_MODEL_URI": "m", "CNAI_AUDIT_SINK": "kafka://x"}, "CNAI_AUDIT_SINK"),
        ({"CNAI_MODEL_URI": "m", "CNAI_SAGEMAKER_ENDPOINTS": "{not json"}, "ENDPOINTS: not JSON"),
        ({"CNAI_MODEL_URI": "m", "CNAI_SAGEMAKER_ENDPOINTS": '["a"]'}, "CNAI_SAGEMAKER_ENDPOINTS"),
        ({"CNAI_MODEL_URI": "m", "CNAI_MODEL_NAME": "bad name/with slash"}, "CNAI_MODEL_NAME"),
        ({"CNAI_MODEL_URI": "m", "CNAI_AUDIT_STORE_TEXT": "maybe"}, "CNAI_AUDIT_STORE_TEXT"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        load_settings(env)


# ---- environment_for: infra writes the environment from the same model


def test_environment_for_writes_each_field_under_its_variable_name() -> None:
    from cnai.settings import environment_for
    from functions.predict.settings import PredictSettings

    # Given field values as infra has them (typed)
    env = environment_for(
        PredictSettings,
        model_uri="s3://b/k.tar.gz",
        audit_store_text=True,
        max_inputs=16,
        sagemaker_endpoints={"big": "ep"},
        model_version_id=None,
    )
    # Then the variables are the model's aliases, as text the model reads back, and None is left out
    assert env == {
        "CNAI_MODEL_URI": "s3://b/k.tar.gz",
        "CNAI_AUDIT_STORE_TEXT": "true",
        "CNAI_MAX_INPUTS": "16",
        "CNAI_SAGEMAKER_ENDPOINTS": '{"big":"ep"}',
    }
    loaded = load_settings(env)
    assert loaded.audit_store_text is True and loaded.max_inputs == 16 and loaded.sagemaker_endpoints == {"big": "ep"}


def test_environment_for_refuses_an_unknown_field_and_a_missing_required_one() -> None:
    from cnai.settings import environment_for
    from functions.ingest.settings import IngestSettings
    from functions.ingest_api.settings import IngestApiSettings

    with pytest.raises(ValueError, match="IngestApiSettings has no setting strem"):
        environment_for(IngestApiSettings, strem="s")
    with pytest.raises(ValueError, match="IngestSettings requires idempotency_table"):
        environment_for(IngestSettings, lake_bucket="lake-bucket")


def test_settings_models_are_built_from_shared_pieces() -> None:
    from cnai.settings import AuditSink, Lake, ModelSource
    from functions.ingest.settings import IngestSettings
    from functions.predict.settings import PredictSettings

    # One definition of each shared variable: the audit sink and the model source for predict, the lake for
    # the ingest consumer (and, next, the dataset snapshot function)
    assert issubclass(PredictSettings, AuditSink) and issubclass(PredictSettings, ModelSource)
    assert issubclass(IngestSettings, Lake)
    assert PredictSettings.variables()["audit_sink"] == AuditSink.model_fields["audit_sink"].alias == "CNAI_AUDIT_SINK"
