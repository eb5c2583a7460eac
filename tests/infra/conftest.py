"""The whole app (`infra.application.build`, as app.py wires it), synthesized once per test session under
cdk-nag in two configurations, for the tests that check properties across every stack."""

from __future__ import annotations

import aws_cdk as cdk
import pytest
from aws_cdk import assertions

from infra.config import ApiSettings, EndpointSettings, MonitoringSettings, ServingSettings, Settings

APP_CONFIGS = {
    "default": Settings(serving=ServingSettings(model_bucket="acme-models", model_version_id="v3.abc")),
    "variant": Settings(
        api=ApiSettings(auth="cognito", keys=True, waf=False),
        serving=ServingSettings(provisioned_concurrency=2, endpoint=EndpointSettings(route=True)),
        monitoring=MonitoringSettings(alarm_emails=("ops@example.com", "oncall@example.com")),
    ),
}


@pytest.fixture(scope="session")
def app_templates() -> dict[str, dict[str, assertions.Template]]:
    """config name -> stack name (by concern) -> template. Synthesis raises on any unacknowledged nag error."""
    synthesized = {}
    for name, settings in APP_CONFIGS.items():
        app = cdk.App(context={"aws:cdk:bundling-stacks": []})
        # Local import: infra.application pulls every stack; collection of unrelated tests stays cheap.
        from infra.application import build

        stacks = build(app, settings)
        app.synth()
        synthesized[name] = {concern: assertions.Template.from_stack(stack) for concern, stack in stacks.items()}
    return synthesized
