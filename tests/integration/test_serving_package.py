"""What ships, run the way the platform runs it: a separate, isolated interpreter (`python -I`, a throwaway venv)
with nothing of the repository on its path (tests/isolated.py).

- the runtime layer, built at synth by the local bundler from the recipe (no `make layers` beforehand): arm64
  cp312 wheels, pruned, inside the size budget;
- the predict function asset that `cdk synth` bundles: functions/predict + cnai in the repository layout,
  nothing else; that exact asset, beside the host twin of the layer and nothing but the Lambda runtime's own
  packages, answers a real API Gateway event on a real artifact and writes its audit line;
- the SageMaker model.tar.gz: extracted, its code/inference.py imported by a venv holding only what
  code/requirements.txt resolves to, its four hooks answer a prediction.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tarfile
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import assertions
from packaging.requirements import Requirement

from cnai.serving.sagemaker import package_model
from infra.config import Settings
from infra.constructs.runtime_layer import layer_code
from infra.stacks.ingestion import IngestionStack
from infra.stacks.serving import ServingStack
from tests.integration.conftest import HostLayer
from tests.isolated import requirements_venv, run_isolated
from tests.serving_toy import build_toy_artifact

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


@dataclass(frozen=True)
class Synthesized:
    out: Path  # the cloud assembly folder, assets included
    serving: assertions.Template
    ingestion: assertions.Template


@pytest.fixture(scope="module")
def synthesized(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    # Given the serving and ingestion stacks with bundling on and no prebuilt layer folder
    out = tmp_path_factory.mktemp("cdk.out")
    app = cdk.App(outdir=str(out))
    no_layer = tmp_path_factory.mktemp("no-layer")  # one Code per stack; the same recipe hash bundles once
    serving = ServingStack(app, "Serving", settings=Settings(), layer_code=layer_code(build_dir=no_layer))
    ingestion = IngestionStack(app, "Ingestion", settings=Settings(), layer_code=layer_code(build_dir=no_layer))
    # When it synthesizes (bundling runs here: pip for the layer, once, a file copy for each function)
    app.synth()
    return Synthesized(out, assertions.Template.from_stack(serving), assertions.Template.from_stack(ingestion))


def asset_dir(out: Path, s3_key: Any) -> Path:
    key = s3_key if isinstance(s3_key, str) else json.dumps(s3_key)
    digest = key.split(".zip")[0].split("/")[-1].strip('"')
    path = out / f"asset.{digest}"
    assert path.is_dir(), f"no asset folder for {key}"
    return path


def files_under(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def function_asset(synthesized: Synthesized) -> Path:
    [fn] = [
        f["Properties"]
        for f in synthesized.serving.find_resources("AWS::Lambda::Function").values()
        if f["Properties"].get("Handler") == "functions.predict.handler.handler"
    ]
    return asset_dir(synthesized.out, fn["Code"]["S3Key"])


def test_layer_is_built_at_synth_for_arm64_python312_and_pruned(synthesized: Synthesized) -> None:
    out, template = synthesized.out, synthesized.serving
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


EVENT = ROOT / "tests" / "events" / "apigw_rest_predict.json"

# Lambda's runtime calls handler(event, context) with its own context object: the probe brings the fields
# Powertools reads, nothing from our code.
LAMBDA_PROBE = """
import json, os, sys, time
class Context:
    function_name = "cnai-predict"; function_version = "$LATEST"; memory_limit_in_mb = 1769
    invoked_function_arn = "arn:aws:lambda:eu-west-1:111111111111:function:cnai-predict"
    aws_request_id = "c0ffee00-0000-4000-8000-000000000001"; log_group_name = "/aws/lambda/cnai-predict"
    log_stream_name = "local"
    def get_remaining_time_in_millis(self): return 30000
event = json.loads(open(os.environ["PROBE_EVENT"]).read())
import functions.predict.handler as predict, cnai
print("FROM " + json.dumps([predict.__file__, cnai.__file__]))
print("RESPONSE " + json.dumps(predict.handler(event, Context())))
"""


def test_packaged_function_serves_a_real_event_with_only_the_layer_and_the_lambda_runtime(
    function_asset: Path, tmp_path: Path, host_layer: HostLayer
) -> None:
    # Given the synthesized function asset, the layer recipe built for this host, a folder playing the Lambda
    # runtime (boto3 and friends), an artifact, and one API Gateway event from two inputs
    artifact = build_toy_artifact(tmp_path / "model", name="toy")
    event = json.loads(EVENT.read_text())
    event["body"] = json.dumps({"inputs": ["I lost my card", "refund my money please"], "top_k": 2})
    event["requestContext"]["identity"]["userArn"] = "arn:aws:iam::111111111111:user/tester"
    event["requestContext"]["identity"]["sourceIp"] = "192.0.2.7"
    (tmp_path / "event.json").write_text(json.dumps(event))
    python = requirements_venv(tmp_path / "venv", [])  # an empty site-packages: Lambda's python
    env = {
        "PROBE_EVENT": str(tmp_path / "event.json"),
        "CNAI_MODEL_NAME": "toy",
        "CNAI_MODEL_URI": str(artifact),
        "CNAI_AUDIT_SINK": "stdout",
        "POWERTOOLS_SERVICE_NAME": "predict",
        "POWERTOOLS_METRICS_NAMESPACE": "cnai",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "AWS_DEFAULT_REGION": "eu-west-1",
    }
    # When an isolated Python cold-starts the handler from /var/task, /opt/python, /var/runtime alone
    run = run_isolated(python, LAMBDA_PROBE, [function_asset, host_layer.python, host_layer.runtime], env=env,
                       cwd=tmp_path)  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    lines = run.stdout.splitlines()
    # Then the handler and the library were imported from the asset, not from the repository ...
    [origin] = [json.loads(line.removeprefix("FROM ")) for line in lines if line.startswith("FROM ")]
    assert all(Path(f).is_relative_to(function_asset) for f in origin), origin
    # ... it answers 200 with a prediction per input ...
    [response_line] = [line for line in lines if line.startswith("RESPONSE ")]
    response = json.loads(response_line.removeprefix("RESPONSE "))
    assert response["statusCode"] == 200, response
    body = json.loads(response["body"])
    assert [p["label"] for p in body["predictions"]] == ["card_lost", "refund"]
    # ... and leaves exactly one audit line with the caller, the source IP and input hashes, no raw text
    audits = [json.loads(line) for line in lines if '"cnai_audit"' in line]
    assert len(audits) == 1
    assert audits[0]["caller"]["id"] == "arn:aws:iam::111111111111:user/tester"
    assert audits[0]["source_ip"] == "192.0.2.7"
    assert len(audits[0]["inputs"]) == 2
    assert "lost my card" not in "\n".join(line for line in lines if line != response_line)


IMPORT_PROBE = """
import importlib, json, os
module = importlib.import_module(os.environ["PROBE_MODULE"])
assert callable(module.handler)
import cnai
print("FROM " + json.dumps([module.__file__, cnai.__file__]))
"""


def deployed_environment(variables: dict[str, Any]) -> dict[str, str]:
    """The function's environment as infra wrote it; a value CloudFormation resolves at deploy time (a Ref to
    the bucket, the table, the stream) becomes a name of the same shape."""
    return {k: v if isinstance(v, str) else k.lower().replace("_", "-") for k, v in variables.items()}


def test_every_function_asset_cold_starts_from_itself_the_layer_and_the_runtime(
    synthesized: Synthesized, tmp_path: Path, host_layer: HostLayer
) -> None:
    # Given every function of ours that the stacks synthesize (predict answers a real event in the test above)
    functions = [
        f["Properties"]
        for template in (synthesized.serving, synthesized.ingestion)
        for f in template.find_resources("AWS::Lambda::Function").values()
        if str(f["Properties"].get("Handler", "")).startswith("functions.")
    ]
    handlers = {f["Handler"] for f in functions}
    assert {"functions.ingest.handler.handler", "functions.ingest_api.handler.handler"} <= handlers
    python = requirements_venv(tmp_path / "venv", [])
    for fn in functions:
        if fn["Handler"] == "functions.predict.handler.handler":
            continue  # loads a model at import: covered with a real artifact above
        asset = asset_dir(synthesized.out, fn["Code"]["S3Key"])
        env = {
            **deployed_environment(fn.get("Environment", {}).get("Variables", {})),
            "PROBE_MODULE": fn["Handler"].rsplit(".", 1)[0],
            "AWS_DEFAULT_REGION": "eu-west-1",
            "POWERTOOLS_TRACE_DISABLED": "true",
        }
        # When an isolated Python imports its handler module as Lambda's cold start does
        run = run_isolated(python, IMPORT_PROBE, [asset, host_layer.python, host_layer.runtime], env=env,
                           cwd=tmp_path)  # fmt: skip
        # Then it imports from the asset alone: settings valid, clients built, nothing missing
        assert run.returncode == 0, f"{fn['Handler']}:\n{run.stderr[-3000:]}"
        [origin] = [json.loads(x.removeprefix("FROM ")) for x in run.stdout.splitlines() if x.startswith("FROM ")]
        assert all(Path(f).is_relative_to(asset) for f in origin), origin


# ---- SageMaker Serverless: model.tar.gz ----

SAGEMAKER_PROBE = """
import json, sys
import inference, cnai
service = inference.model_fn(MODEL_DIR)
data = inference.input_fn(b'{"inputs": ["I lost my card", "refund my money please"], "top_k": 2}', "application/json")
body, content_type = inference.output_fn(inference.predict_fn(data, service), "application/json")
print("FROM " + json.dumps([inference.__file__, cnai.__file__]))
print("SYSPATH " + json.dumps(sys.path))
print("ANSWER " + body)
"""


@pytest.fixture(scope="module")
def sagemaker_package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """model.tar.gz of the toy artifact, extracted as the endpoint does into /opt/ml/model."""
    root = tmp_path_factory.mktemp("sagemaker")
    tar_path = package_model(build_toy_artifact(root / "artifact", name="toy"), root / "model.tar.gz")
    with tarfile.open(tar_path) as tar:
        tar.extractall(root / "opt-ml-model", filter="data")
    return root / "opt-ml-model"


def run_endpoint(model_dir: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """What the inference toolkit does: pip install code/requirements.txt, put code/ on sys.path, import
    inference and call its hooks."""
    requirements = (model_dir / "code" / "requirements.txt").read_text().split()
    python = requirements_venv(tmp_path / "venv", requirements)
    probe = SAGEMAKER_PROBE.replace("MODEL_DIR", repr(str(model_dir)))
    return run_isolated(python, probe, [model_dir / "code"], cwd=tmp_path)


def test_sagemaker_package_ships_the_library_whole_and_only_serving_requirements(sagemaker_package: Path) -> None:
    # Given the extracted package
    code = sagemaker_package / "code"
    shipped = {p.relative_to(code).as_posix() for p in code.rglob("*.py")}
    # Then every module of the cnai package ships (folders, never a list), no caches, no training code ...
    expected = {p.relative_to(ROOT).as_posix() for p in (ROOT / "cnai").rglob("*.py") if "__pycache__" not in p.parts}
    assert {p for p in shipped if p.startswith("cnai/")} == expected
    assert not any(n.startswith(("models/", "functions/", "infra/")) for n in shipped)
    assert not list(code.rglob("__pycache__"))
    # ... the artifact sits at the root, and the requirements carry no torch, no powertools, no boto3
    assert {"model.onnx", "tokenizer.json", "labels.json", "model_card.json"} <= {
        p.name for p in sagemaker_package.iterdir()
    }
    shipped_requirements = [Requirement(r) for r in (code / "requirements.txt").read_text().split()]
    assert {r.name for r in shipped_requirements} == {"onnxruntime", "tokenizers", "numpy", "pydantic"}
    # ... pinned exactly as the library's own core dependencies (no drift between the two lists)
    core = {Requirement(r).name: Requirement(r).specifier for r in PYPROJECT["project"]["dependencies"]}
    assert {r.name: r.specifier for r in shipped_requirements} == {r.name: core[r.name] for r in shipped_requirements}


def test_sagemaker_package_answers_in_an_isolated_interpreter_with_only_its_requirements(
    sagemaker_package: Path, tmp_path: Path
) -> None:
    # When the endpoint's Python imports code/inference.py with only code/ and the requirements on its path
    run = run_endpoint(sagemaker_package, tmp_path)
    # Then it answers the predict API's JSON ...
    assert run.returncode == 0, run.stderr[-3000:]
    lines = run.stdout.splitlines()
    [answer] = [json.loads(line.removeprefix("ANSWER ")) for line in lines if line.startswith("ANSWER ")]
    assert answer["model"] == "toy" and answer["version"] == "toy0001"
    assert [p["label"] for p in answer["predictions"]] == ["card_lost", "refund"]
    # ... from the package's own code, with nothing of the repository (or its venv) on the path
    [origin] = [json.loads(line.removeprefix("FROM ")) for line in lines if line.startswith("FROM ")]
    assert all(Path(f).is_relative_to(sagemaker_package / "code") for f in origin), origin
    [path] = [json.loads(line.removeprefix("SYSPATH ")) for line in lines if line.startswith("SYSPATH ")]
    assert str(ROOT) not in path and "" not in path
    assert not any(Path(p).resolve() == ROOT.resolve() or ".venv" in Path(p).parts for p in path), path


def test_sagemaker_package_missing_a_module_fails_in_isolation(sagemaker_package: Path, tmp_path: Path) -> None:
    # Given a copy of the package without cnai/text.py (the module the old hand-kept list forgot)
    broken = tmp_path / "broken"
    shutil.copytree(sagemaker_package, broken)
    (broken / "code" / "cnai" / "text.py").unlink()
    # When the endpoint imports it, Then the isolated interpreter cannot find it (the repository does not leak)
    run = run_endpoint(broken, tmp_path)
    assert run.returncode != 0
    assert "ModuleNotFoundError: No module named 'cnai.text'" in run.stderr
