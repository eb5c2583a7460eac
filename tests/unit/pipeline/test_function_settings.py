"""The four workflow functions' environments: what infra writes (environment_for) is what they read, and a
bad value stops the cold start naming the variable."""

from __future__ import annotations

import pytest

from cnai.settings import SettingsError, environment_for
from functions.notify.settings import NotifySettings
from functions.prepare_dataset.settings import PrepareSettings
from functions.quality_gate.settings import QualityGateSettings
from functions.register_model.settings import RegisterSettings


def test_infra_written_environments_read_back() -> None:
    cases = [
        (PrepareSettings, {"lake_bucket": "cnai-lake", "job_prefix": "cnai-dev", "athena_workgroup": "cnai",
                           "glue_database": "cnai_lake", "glue_table": "curated", "max_bytes": 1024}),
        (QualityGateSettings, {"artifact_bucket": "cnai-artifacts", "group_prefix": "cnai-dev"}),
        (RegisterSettings, {"group_prefix": "cnai-dev", "serving_image": "img:1", "create_group": True}),
        (NotifySettings, {"topic_arn": "arn:aws:sns:us-east-1:123456789012:cnai-dev-training"}),
    ]  # fmt: skip
    for model, values in cases:
        settings = model.from_env(environment_for(model, **values))
        assert {k: getattr(settings, k) for k in values} == values


@pytest.mark.parametrize(
    ("model", "env", "named"),
    [
        (PrepareSettings, {"CNAI_LAKE_BUCKET": "cnai-lake"}, "CNAI_JOB_PREFIX: is required"),
        (PrepareSettings, {"CNAI_LAKE_BUCKET": "cnai-lake", "CNAI_JOB_PREFIX": "cnai", "CNAI_GLUE_TABLE": "t"},
         "set all three or none"),
        (PrepareSettings, {"CNAI_LAKE_BUCKET": "cnai-lake", "CNAI_JOB_PREFIX": "x" * 41}, "CNAI_JOB_PREFIX"),
        (QualityGateSettings, {"CNAI_ARTIFACT_BUCKET": "Bad_Bucket", "CNAI_MODEL_PACKAGE_GROUP_PREFIX": "c"},
         "CNAI_ARTIFACT_BUCKET: does not match"),
        (RegisterSettings, {"CNAI_MODEL_PACKAGE_GROUP_PREFIX": "c"}, "CNAI_SERVING_IMAGE: is required"),
        (NotifySettings, {"CNAI_TOPIC_ARN": "cnai-dev-training"}, "CNAI_TOPIC_ARN: does not match"),
    ],
)  # fmt: skip
def test_a_bad_environment_names_the_variable(model: type, env: dict[str, str], named: str) -> None:
    with pytest.raises(SettingsError, match="function environment") as caught:
        model.from_env(env)
    assert named in str(caught.value)
