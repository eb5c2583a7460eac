"""Wires the stacks of one deployment. `app.py` calls this; tests call it once per session."""

from __future__ import annotations

import os

import aws_cdk as cdk
from cdk_nag import AwsSolutionsChecks

from infra.config import Settings, settings_from_context


def build(app: cdk.App, settings: Settings | None = None) -> dict[str, cdk.Stack]:
    """Create every stack on `app` and attach cdk-nag. Returns the stacks by concern."""
    settings = settings or settings_from_context(app.node.try_get_context)
    env = cdk.Environment(
        account=os.environ.get("CDK_DEFAULT_ACCOUNT"),
        region=os.environ.get("CDK_DEFAULT_REGION", "us-east-1"),
    )
    del env  # used by the stacks as they arrive (ingestion, serving, training)
    stacks: dict[str, cdk.Stack] = {}
    cdk.Tags.of(app).add("project", settings.project)
    cdk.Tags.of(app).add("stage", settings.stage)
    # cdk-nag v3 is a policy-validation plugin: synthesis fails on any unacknowledged AwsSolutions error.
    # Acknowledge a finding next to its resource, with a specific reason:
    #   Validations.of(c).acknowledge(Acknowledgment(id="AwsSolutions::AwsSolutions-XX", reason="..."))
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app, verbose=True))
    return stacks
