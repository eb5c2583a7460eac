"""Assets of the serving stack built without Docker: the SageMaker sourcedir tar and the runtime layer source;
and the whole CDK app (as `python app.py` builds it) synthesizing under cdk-nag with the serving stack."""

from __future__ import annotations

import tarfile
from pathlib import Path

import aws_cdk as cdk
import pytest
from aws_cdk import assertions
from aws_cdk import aws_lambda as lambda_

from infra.constructs.runtime_layer import layer_code
from infra.constructs.sagemaker_serverless import REQUIREMENTS, write_sourcedir


def test_sourcedir_holds_the_entry_point_the_cnai_package_and_requirements(tmp_path: Path) -> None:
    # Given a repository with the SageMaker entry point, the core package and stray caches
    root = tmp_path / "repo"
    (root / "functions" / "sagemaker_inference" / "__pycache__").mkdir(parents=True)
    (root / "functions" / "sagemaker_inference" / "inference.py").write_text("from cnai.sagemaker import model_fn\n")
    (root / "functions" / "sagemaker_inference" / "__pycache__" / "inference.cpython-311.pyc").write_bytes(b"\0")
    (root / "cnai").mkdir()
    (root / "cnai" / "sagemaker.py").write_text("def model_fn(d): ...\n")
    # When the sourcedir is written
    out = tmp_path / "out"
    out.mkdir()
    tar_path = write_sourcedir(out, root=root)
    # Then the tar has inference.py at its root (SAGEMAKER_PROGRAM), cnai/ beside it and the requirements
    with tarfile.open(tar_path, "r:gz") as tar:
        names = sorted(m.name for m in tar.getmembers() if m.isfile())
        requirements = tar.extractfile("requirements.txt")
        assert requirements is not None
        assert requirements.read().decode() == REQUIREMENTS
    assert names == ["cnai/sagemaker.py", "inference.py", "requirements.txt"]
    assert "onnxruntime" in REQUIREMENTS
    assert "torch" not in REQUIREMENTS
    # And nothing but the tar is left in the output (CDK takes a single archive as the asset)
    assert [p.name for p in out.iterdir()] == ["sourcedir.tar.gz"]


def test_layer_uses_the_prebuilt_folder_when_make_layers_ran(tmp_path: Path) -> None:
    (tmp_path / "runtime" / "python").mkdir(parents=True)
    code = layer_code("runtime", build_dir=tmp_path)
    assert isinstance(code, lambda_.AssetCode)
    assert Path(code.path) == tmp_path / "runtime"


def test_layer_falls_back_to_the_recipe_bundled_at_synth(tmp_path: Path) -> None:
    code = layer_code("runtime", build_dir=tmp_path)
    assert isinstance(code, lambda_.AssetCode)
    assert Path(code.path).name == "runtime"
    assert (Path(code.path) / "requirements.txt").is_file()
    with pytest.raises(FileNotFoundError, match="no-such-layer"):
        layer_code("no-such-layer", build_dir=tmp_path)


def test_the_app_synthesizes_under_cdk_nag_with_the_serving_stack() -> None:
    from infra.application import build

    # Given the app as app.py builds it, without bundling
    app = cdk.App(context={"aws:cdk:bundling-stacks": []})
    stacks = build(app)
    # When it synthesizes (build registers cdk-nag; any unacknowledged error fails this)
    assembly = app.synth()
    # Then the serving stack is there with its outputs
    serving = stacks["serving"]
    assert assembly.get_stack_by_name(serving.stack_name)
    outputs = assertions.Template.from_stack(serving).find_outputs("*")
    assert {"ApiUrl", "PredictFunctionName", "EndpointName"} <= set(outputs)
