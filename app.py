#!/usr/bin/env python3
"""CDK entry point: only wires stacks (infra/application.py). No STS, no git at synth time."""

import aws_cdk as cdk

from infra.application import build

app = cdk.App()
build(app)
app.synth()
