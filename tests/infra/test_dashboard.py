"""One CloudWatch dashboard per deployment: every function, the API, ingestion, training runs and cost, drift."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aws_cdk import assertions

pytestmark = pytest.mark.infra


def body(template: assertions.Template) -> str:
    """The dashboard body with CloudFormation references rendered as `<ref>` (what CloudWatch receives)."""
    dashboards = template.find_resources("AWS::CloudWatch::Dashboard")
    assert len(dashboards) == 1
    (resource,) = dashboards.values()

    def render(node: Any) -> str:
        if isinstance(node, str):
            return node
        if isinstance(node, dict) and "Fn::Join" in node:
            return "".join(render(part) for part in node["Fn::Join"][1])
        return f"<{json.dumps(node, sort_keys=True)}>"

    return render(resource["Properties"]["DashboardBody"])


def test_one_dashboard_for_the_deployment_watching_every_function(
    app_templates: dict[str, dict[str, assertions.Template]],
) -> None:
    # Given the synthesized app, When the dashboard stack is read
    templates = app_templates["default"]
    rendered = body(templates["dashboard"])
    # Then it exists once, named after the deployment, and no other stack makes a dashboard
    assert all(not t.find_resources("AWS::CloudWatch::Dashboard") for c, t in templates.items() if c != "dashboard")
    # And each Lambda function of the app has an errors line and a throttles line
    functions = sum(len(t.find_resources("AWS::Lambda::Function")) for t in templates.values())
    assert functions >= 8
    assert rendered.count('"Errors","FunctionName"') == functions
    assert rendered.count('"Throttles","FunctionName"') == functions


def test_the_rows_a_person_on_call_looks_for(app_templates: dict[str, dict[str, assertions.Template]]) -> None:
    rendered = body(app_templates["default"]["dashboard"])
    for title in (
        "4xx / 5xx",
        "Latency (ms)",
        "Cache hit rate (%)",
        "Quarantine rate (%)",
        "Consumer iterator age (ms)",
        "Dead-letter queues (messages)",
        "Training runs",
        "Drift scores: banking77",
    ):
        assert f'"title":"{title}' in rendered, title
    # API p50 and p99, the training cost the notify function publishes, drift thresholds drawn as lines
    assert '"stat":"p50"' in rendered and '"stat":"p99"' in rendered
    assert '"TrainingCost"' in rendered and '"Drift.label_psi"' in rendered
    assert '"label":"label_psi threshold"' in rendered


def test_the_api_metrics_name_this_deployments_api(app_templates: dict[str, dict[str, assertions.Template]]) -> None:
    # Given the REST API's name (API Gateway's metric dimension), Then it is unique per deployment (not "Api")
    serving = app_templates["default"]["serving"]
    (api,) = serving.find_resources("AWS::ApiGateway::RestApi").values()
    name = api["Properties"]["Name"]
    assert name.endswith("-serving-api") and name.startswith("cnai-")
    assert f'"ApiName","{name}"' in body(app_templates["default"]["dashboard"])
