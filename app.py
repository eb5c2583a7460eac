#!/usr/bin/env python3
"""CDK entry point: only wires stacks (infra/application.py). No STS, no git at synth time.

`make synth` runs this file directly; the CDK CLI (`cdk synth`, `cdk deploy`) runs it as cdk.json's "app". Both
must produce the same cloud assembly in the same place, so cdk.json is the one source for both: its "output"
folder (where `cdk deploy --app cdk.out` and template linters read) and its "context" (feature flags, stage).
The CLI passes them as CDK_OUTDIR / CDK_CONTEXT_JSON; run directly, this file reads them from cdk.json itself
(otherwise CDK would write into a temporary folder and drop the feature flags).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import aws_cdk as cdk

from infra.application import build

HERE = Path(__file__).resolve().parent


def app_props(environ: dict[str, str] | None = None, cdk_json: Path = HERE / "cdk.json") -> dict[str, Any]:
    """outdir and context for cdk.App: the CLI's when it launched us, cdk.json's when run directly."""
    environ = dict(os.environ if environ is None else environ)
    config = json.loads(cdk_json.read_text(encoding="utf-8"))
    props: dict[str, Any] = {"outdir": environ.get("CDK_OUTDIR") or str(cdk_json.parent / config["output"])}
    if "CDK_CONTEXT_JSON" not in environ:
        props["context"] = config.get("context", {})
    return props


def main() -> None:
    app = cdk.App(**app_props())
    build(app)
    app.synth()


if __name__ == "__main__":
    main()
