"""The dashboard stack: one CloudWatch dashboard for the deployment (infra/constructs/dashboard.py).

A stack of its own, created last: it only reads the other stacks' resources, so it can be deployed, changed or
removed without touching them, and no other stack depends on it.
"""

from __future__ import annotations

from typing import Any

import aws_cdk as cdk
from constructs import Construct

from infra.constructs.dashboard import Dashboard, DashboardSources


class DashboardStack(cdk.Stack):
    """`dashboard`: the deployment's dashboard, named after the deployment (`<project>-<stage>`)."""

    def __init__(
        self, scope: Construct, construct_id: str, *, name: str, sources: DashboardSources, **kwargs: Any
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.dashboard = Dashboard(self, "Dashboard", name=name, sources=sources).dashboard
        cdk.CfnOutput(
            self,
            "DashboardUrl",
            value=f"https://console.aws.amazon.com/cloudwatch/home?region={self.region}#dashboards:name={name}",
            description="the deployment's CloudWatch dashboard",
        )
