"""What `cdk synth` really packages for the predict Lambda, with bundling ON and no Docker:

- the runtime layer, built at synth by the local bundler from the recipe (no `make layers` beforehand): arm64
  cp312 wheels, pruned, inside the size budget;
- the function asset: functions/predict + cnai in the repository layout, nothing else;
- and that exact function asset, beside the host twin of the layer and nothing but the Lambda runtime's own
  packages, answers a real API Gateway event on a real artifact and writes its audit line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import assertions

from infra.config import Settings
from infra.constructs.runtime_layer import layer_code
from infra.stacks.serving import ServingStack
from tests.integration.conftest import HostLayer

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def synthesized(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, assertions.Template]:
    # Given the serving stack with bundling on and no prebuilt layer folder
    out = tmp_path_factory.mktemp("cdk.out")
    app = cdk.App(outdir=str(out))
    stack = ServingStack(
        app, "Serving", settings=Settings(), layer_code=layer_code(build_dir=tmp_path_factory.mktemp("no-layer"))
    )
    # When it synthesizes (bundling runs here: pip for the layer, a file copy for the function)
    app.synth()
    return out, assertions.Template.from_stack(stack)


def asset_dir(out: Path, s3_key: Any) -> Path:
    key = s3_key if isinstance(s3_key, str) else json.dumps(s3_key)
    digest = key.split(".zip")[0].split("/")[-1].strip('"')
    path = out / f"asset.{digest}"
    assert path.is_dir(), f"no asset folder for {key}"
    return path


def files_under(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def function_asset(synthesized: tuple[Path, assertions.Template]) -> Path:
    out, template = synthesized
    [fn] = [
        f["Properties"]
        for f in template.find_resources("AWS::Lambda::Function").values()
        if f["Properties"].get("Handler") == "functions.predict.handler.handler"
    ]
    return asset_dir(out, fn["Code"]["S3Key"])


def test_layer_is_built_at_synth_for_arm64_python312_and_pruned(synthesized: tuple[Path, assertions.Template]) -> None:
    out, template = synthesized
    [layer] = template.find_resources("AWS::Lambda::LayerVersion").values()
    root = asset_dir(out, layer["Properties"]["Content"]["S3Key"]) / "python"
    names = files_under(root)
    assert "onnxruntime/capi/onnxruntime_pybind11_state.cpython-312-aarch64-linux-gnu.so" in names
    assert any(n.startswith("tokenizers/tokenizers.") and n.endswith(".so") for n in names)
    assert not any(n.startswith("onnxruntime/capi/libonnxruntime.so") for n in names)
    assert not any("/tests/" in n or n.endswith(".pyc") for n in names)
    assert not any(n.startswith(("boto3/", "botocore/")) for n in names)
    size_mb = sum((root / n).stat().st_size for n in names) / 1e6
    assert size_mb < 120


def test_function_asset_is_the_handler_and_cnai_in_the_repository_layout(function_asset: Path) -> None:
    names = files_under(function_asset)
    assert {
        "functions/__init__.py",
        "functions/predict/handler.py",
        "cnai/model/predictor.py",
        "cnai/audit/trail.py",
    } <= names
    assert not any(n.startswith(("models/", "tests/", "infra/", "functions/ingest")) for n in names)
    assert not any("__pycache__" in n for n in names)


PROBE = """
import json
from cnai.local.server import LocalContext, proxy_event
import functions.predict.handler as predict
body = json.dumps({"inputs": ["I lost my card", "refund my money please"], "top_k": 2}).encode()
event = proxy_event("POST", "/v1/models/toy/predict", {"Content-Type": "application/json"}, body, "192.0.2.7",
                    "arn:aws:iam::111111111111:user/tester")
print("RESPONSE " + json.dumps(predict.handler(event, LocalContext())))
"""


def test_packaged_function_serves_a_real_event_with_only_the_layer_and_the_lambda_runtime(
    function_asset: Path, tmp_path: Path, host_layer: HostLayer
) -> None:
    from tests.serving_toy import build_toy_artifact

    # Given the synthesized function asset, the layer recipe built for this host, a runtime shim and an artifact
    artifact = build_toy_artifact(tmp_path / "model", name="toy")
    env = {
        "PATH": os.environ["PATH"],
        "PYTHONPATH": os.pathsep.join(map(str, [function_asset, host_layer.python, host_layer.runtime])),
        "CNAI_MODEL_NAME": "toy",
        "CNAI_MODEL_URI": str(artifact),
        "CNAI_AUDIT_SINK": "stdout",
        "POWERTOOLS_SERVICE_NAME": "predict",
        "POWERTOOLS_METRICS_NAMESPACE": "cnai",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "AWS_DEFAULT_REGION": "eu-west-1",
        "HOME": str(tmp_path),
    }
    # When a site-less Python cold-starts the handler from the asset and gets one predict event
    run = subprocess.run(
        [sys.executable, "-S", "-c", PROBE], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert run.returncode == 0, run.stderr[-3000:]
    # Then it answers 200 with a prediction per input ...
    [response_line] = [line for line in run.stdout.splitlines() if line.startswith("RESPONSE ")]
    response = json.loads(response_line.removeprefix("RESPONSE "))
    assert response["statusCode"] == 200, response
    body = json.loads(response["body"])
    assert [p["label"] for p in body["predictions"]] == ["card_lost", "refund"]
    # ... and leaves exactly one audit line with the caller, the source IP and input hashes, no raw text
    audits = [json.loads(line) for line in run.stdout.splitlines() if '"cnai_audit"' in line]
    assert len(audits) == 1
    assert audits[0]["cnai_audit"] is True
    assert audits[0]["caller"]["id"] == "arn:aws:iam::111111111111:user/tester"
    assert audits[0]["source_ip"] == "192.0.2.7"
    assert len(audits[0]["inputs"]) == 2
    assert "lost my card" not in run.stdout.split("RESPONSE")[0].replace(response_line, "")
