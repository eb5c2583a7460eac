"""The generator's SageMaker model.tar.gz, run the way the endpoint runs it: extracted, its code/inference.py
imported by an isolated interpreter (tests/isolated.py) whose venv holds only what code/requirements.txt
resolves to, with nothing of the repository on the path; the four hooks answer describe and a generate request
on a real exported generator (the tiny Llama of tests/generate_tiny.py, exported to int8 by the exporter).
The same tar is also an `s3://` generator URI's object: unpack_generator skips code/."""

from __future__ import annotations

import json
import subprocess
import tarfile
import tomllib
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement

from cnai.generate.artifact import read_generator_card, unpack_generator
from cnai.serving.sagemaker import package_generator
from tests.generate_tiny import write_tiny_llama
from tests.isolated import requirements_venv, run_isolated

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))

PROBE = """
import json, sys
import inference, cnai
endpoint = inference.model_fn(MODEL_DIR)
describe = inference.predict_fn(inference.input_fn(b'{"describe": true}', "application/json"), endpoint)
request = {"messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello card"}],
           "max_new_tokens": 6, "temperature": 0, "deadline_ms": 20000}
data = inference.input_fn(json.dumps(request).encode(), "application/json")
body, content_type = inference.output_fn(inference.predict_fn(data, endpoint), "application/json")
too_long = inference.predict_fn({"prompt": "w1 " * 400, "max_new_tokens": 8}, endpoint)
try:
    inference.predict_fn({"prompt": "hello", "top_k": 3}, endpoint)
    print("REFUSED none")
except Exception as exc:
    print("REFUSED " + type(exc).__name__)
print("FROM " + json.dumps([inference.__file__, cnai.__file__]))
heavy = ("torch", "transformers", "aws_lambda_powertools", "boto3")
print("MODULES " + json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in heavy)))
print("DESCRIBE " + json.dumps(describe))
print("ANSWER " + body)
print("TOO_LONG " + json.dumps(too_long))
"""


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from models.export_generator import export

    root = tmp_path_factory.mktemp("generator")
    export("int8", root / "tiny-int8", source=write_tiny_llama(root / "src"))
    return root / "tiny-int8"


@pytest.fixture(scope="module")
def package(exported: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(model.tar.gz, the folder SageMaker extracts it into: /opt/ml/model)."""
    root = tmp_path_factory.mktemp("sagemaker-generator")
    tar_path = package_generator(exported, root / "model.tar.gz")
    with tarfile.open(tar_path) as tar:
        tar.extractall(root / "opt-ml-model", filter="data")
    return tar_path, root / "opt-ml-model"


def lines(run: subprocess.CompletedProcess[str], key: str) -> Any:
    [found] = [json.loads(x.removeprefix(f"{key} ")) for x in run.stdout.splitlines() if x.startswith(f"{key} ")]
    return found


def test_the_package_holds_the_artifact_at_the_root_and_the_library_with_the_generator_runtime(
    package: tuple[Path, Path], exported: Path
) -> None:
    _, model_dir = package
    # Then every artifact file sits at the root, as the card lists it
    card = read_generator_card(model_dir)
    assert set(card.files) | {"model_card.json"} == {p.name for p in model_dir.iterdir() if p.is_file()}
    assert card.version == read_generator_card(exported).version
    # And code/ holds the whole cnai package and a requirements list pinned as pyproject pins it
    code = model_dir / "code"
    shipped = {p.relative_to(code).as_posix() for p in code.rglob("*.py") if p.parts[-2] != "__pycache__"}
    expected = {p.relative_to(ROOT).as_posix() for p in (ROOT / "cnai").rglob("*.py") if "__pycache__" not in p.parts}
    assert {p for p in shipped if p.startswith("cnai/")} == expected
    requirements = [Requirement(r) for r in (code / "requirements.txt").read_text().split()]
    assert {r.name for r in requirements} == {"onnxruntime", "tokenizers", "numpy", "pydantic", "onnxruntime-genai"}
    pinned = {Requirement(r).name: Requirement(r).specifier for r in PYPROJECT["project"]["dependencies"]}
    pinned |= {
        Requirement(r).name: Requirement(r).specifier for r in PYPROJECT["project"]["optional-dependencies"]["generate"]
    }
    assert {r.name: r.specifier for r in requirements} == {r.name: pinned[r.name] for r in requirements}


def test_the_same_tar_loads_as_an_s3_generator_object(package: tuple[Path, Path], tmp_path: Path) -> None:
    # Given the SageMaker package, When it is unpacked as an s3:// generator URI's object is
    tar_path, _ = package
    (tmp_path / "unpacked").mkdir()
    card = unpack_generator(tar_path, tmp_path / "unpacked")
    # Then the artifact is complete and verified, and the endpoint's code/ was left out
    assert card.task == "text-generation" and not (tmp_path / "unpacked" / "code").exists()


def test_the_endpoint_generates_in_an_isolated_interpreter_with_only_its_requirements(
    package: tuple[Path, Path], tmp_path: Path
) -> None:
    _, model_dir = package
    requirements = (model_dir / "code" / "requirements.txt").read_text().split()
    python = requirements_venv(tmp_path / "venv", requirements)
    probe = PROBE.replace("MODEL_DIR", repr(str(model_dir)))
    # When the endpoint's Python imports code/inference.py and calls its hooks, as the inference toolkit does
    env = {"CNAI_MODEL_PACKAGE_VERSION": "3"}
    run = run_isolated(python, probe, [model_dir / "code"], env=env, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    # Then it describes the generator under the registry version the Model's environment pinned
    card = read_generator_card(model_dir)
    describe = lines(run, "DESCRIBE")
    assert (describe["name"], describe["version"], describe["package_version"]) == (card.name, card.version, "3")
    assert describe["task"] == "text-generation" and describe["precision"] == "int8"
    # And answers the generate route's request in the route's response shape, from the real model
    answer = lines(run, "ANSWER")
    assert (answer["model"], answer["version"], answer["package_version"]) == (card.name, card.version, "3")
    assert 1 <= answer["usage"]["tokens_out"] <= 6 and answer["usage"]["tokens_in"] > 0
    assert answer["finish_reason"] in ("stop", "length") and answer["timing"]["total_ms"] > 0
    # And a prompt beyond the model's context is refused as the route refuses it (the Lambda makes it a 400)
    assert lines(run, "TOO_LONG")["refused"]["field"] == "messages"
    # And a body the route's schema refuses is an error (the toolkit's 4xx/5xx; a 502 to the Lambda's caller)
    assert "REFUSED InferenceError" in run.stdout
    # From the package's own code, without torch, transformers, Powertools or boto3
    assert all(Path(f).is_relative_to(model_dir / "code") for f in lines(run, "FROM"))
    assert lines(run, "MODULES") == []
