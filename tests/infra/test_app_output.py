"""`make synth` (python app.py) and the CDK CLI agree: the assembly lands in cdk.json's "output" folder (so
`cdk deploy --app cdk.out` and template linters find it), synthesized with cdk.json's context."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from app import app_props

ROOT = Path(__file__).resolve().parents[2]

# Stands in for infra.application.build so the real app.py runs end to end in seconds (jsii start-up only):
# one stack that reports the context it saw.
PROBE = """
import runpy, sys
import aws_cdk as cdk
import infra.application

def build(app):
    stack = cdk.Stack(app, "Probe")
    cdk.CfnOutput(stack, "Stages", value=",".join(sorted(app.node.try_get_context("cnai:stages"))))
    cdk.CfnOutput(stack, "Minimize", value=str(app.node.try_get_context("@aws-cdk/aws-iam:minimizePolicies")))
    return {"probe": stack}

infra.application.build = build
runpy.run_path(sys.argv[1], run_name="__main__")
"""


def test_cdk_json_names_the_output_folder_make_synth_writes() -> None:
    # Given cdk.json, When app.py is run directly (no CLI variables), Then it writes into cdk.json's output
    config = json.loads((ROOT / "cdk.json").read_text())
    assert config["output"] == "cdk.out"
    props = app_props(environ={})
    assert Path(props["outdir"]) == ROOT / "cdk.out"
    assert props["context"] == config["context"]


def test_under_the_cdk_cli_the_cli_decides() -> None:
    # Given the variables the CDK CLI sets when it runs cdk.json's "app"
    props = app_props(environ={"CDK_OUTDIR": "/tmp/elsewhere", "CDK_CONTEXT_JSON": "{}"})
    # Then app.py takes its folder and leaves the context to it (the CLI already merged cdk.json's)
    assert props == {"outdir": "/tmp/elsewhere"}


def test_app_py_run_directly_leaves_a_cloud_assembly_in_cdk_out(tmp_path: Path) -> None:
    # Given app.py and cdk.json in a folder of their own (not the repository's cdk.out), run from another folder
    shutil.copy2(ROOT / "app.py", tmp_path / "app.py")
    shutil.copy2(ROOT / "cdk.json", tmp_path / "cdk.json")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    # When it runs as `make synth` runs it
    run = subprocess.run(
        [sys.executable, "-c", PROBE, str(tmp_path / "app.py")],
        cwd=elsewhere, capture_output=True, text=True, timeout=300, check=False,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    # Then the cloud assembly is in cdk.out next to cdk.json: a manifest `cdk deploy --app cdk.out` reads, the
    # template linters read, built with cdk.json's context
    out = tmp_path / "cdk.out"
    manifest = json.loads((out / "manifest.json").read_text())
    assert "Probe" in manifest["artifacts"]
    outputs = json.loads((out / "Probe.template.json").read_text())["Outputs"]
    assert outputs["Stages"]["Value"] == "dev,prod"
    assert outputs["Minimize"]["Value"] == "True"
    assert not list(elsewhere.iterdir())
