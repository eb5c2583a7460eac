"""Stages: one typed profile per stage in cdk.json, selected with `-c stage=NAME`; stages differ only by config."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from infra.config import ContextError, Settings, settings_from_context

pytestmark = pytest.mark.unit

CDK_JSON = json.loads((Path(__file__).resolve().parents[3] / "cdk.json").read_text())["context"]


def context(**more: Any) -> dict[str, Any]:
    return {**CDK_JSON, **more}


def test_cdk_json_defines_dev_and_prod_and_dev_is_the_default() -> None:
    # Given cdk.json as shipped, When nothing selects a stage, Then dev's profile applies under the dev prefix
    settings = settings_from_context(context())
    assert settings.stage == "dev" and settings.prefix == "cnai-dev"
    assert settings.audit.retention_days == CDK_JSON["cnai:stages"]["dev"]["audit"]["retention_days"]


def test_prod_differs_from_dev_only_by_its_profile() -> None:
    # Given both stages from cdk.json
    dev = settings_from_context(context(stage="dev")).model_dump()
    prod = settings_from_context(context(stage="prod")).model_dump()
    profiles = CDK_JSON["cnai:stages"]
    # Then every setting that differs is named by one of the two profiles (or is the stage name itself)
    named = {(g, k) for p in profiles.values() for g, fields in p.items() for k in fields}
    differing = {
        (g, k) for g, fields in prod.items() if isinstance(fields, dict) for k in fields if fields[k] != dev[g][k]
    }
    assert differing and differing <= named
    assert prod["stage"] == "prod" and prod["audit"]["lock_mode"] == "COMPLIANCE"
    assert prod["training"]["auto_approve"] is False


def test_the_shorthand_and_the_full_key_select_the_same_stage() -> None:
    assert settings_from_context(context(stage="prod")) == settings_from_context(context(**{"cnai:stage": "prod"}))
    with pytest.raises(ContextError, match="disagree"):
        settings_from_context(context(stage="prod", **{"cnai:stage": "dev"}))


def test_explicit_keys_win_over_the_stage_profile() -> None:
    # Given prod's profile (COMPLIANCE, 2557 days) and one leaf key and one group object on the command line
    settings = settings_from_context(
        context(stage="prod", **{"cnai:audit.retention_days": 3650, "cnai:deploy": {"canary_minutes": 45}})
    )
    assert settings.audit.retention_days == 3650 and settings.audit.lock_mode == "COMPLIANCE"
    assert settings.deploy.canary_minutes == 45 and settings.deploy.check_interval_s == 60


def test_a_stage_without_a_profile_is_refused_naming_the_known_ones() -> None:
    with pytest.raises(ContextError, match=r"stage 'prdo' has no profile in cnai:stages \(dev, prod\)"):
        settings_from_context(context(stage="prdo"))


@pytest.mark.parametrize(
    ("profile", "message"),
    [
        ({"audit": {"retention_dayz": 3}}, r"cnai:stages\.qa\.audit\.retention_dayz: Extra inputs"),
        ({"audit": {"lock_mode": "FOREVER"}}, r"cnai:stages\.qa\.audit\.lock_mode"),
        ({"stage": "prod"}, "not stage or project"),
    ],
)
def test_a_bad_profile_names_the_stage_and_the_setting(profile: dict[str, Any], message: str) -> None:
    with pytest.raises(ContextError, match=message):
        settings_from_context({"cnai:stages": {"qa": profile}, "stage": "qa"})


def test_without_profiles_the_stage_is_only_a_name() -> None:
    # The local platform and the tests synthesize with their own context, no cnai:stages
    assert settings_from_context({"cnai:stage": "local"}) == Settings(stage="local")
    assert settings_from_context({"stage": "ci"}).stage == "ci"
