"""The runtime layer asset source (prebuilt by `make layers` or bundled at synth, never by Docker);
and the whole CDK app (as `python app.py` builds it) synthesizing under cdk-nag with the serving stack."""

from __future__ import annotations

from pathlib import Path

import aws_cdk as cdk
import pytest
from aws_cdk import assertions
from aws_cdk import aws_lambda as lambda_

from infra.constructs.runtime_layer import layer_code


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
    template = assertions.Template.from_stack(serving)
    assert {"ApiUrl", "PredictFunctionName", "EndpointName"} <= set(template.find_outputs("*"))
    # And the ingestion stack is there too: POST /v1/ingest reaches its API function, the permission in serving
    assert "ingestion" in stacks
    assert assembly.get_stack_by_name(stacks["ingestion"].stack_name)
    paths = [r["Properties"]["PathPart"] for r in template.find_resources("AWS::ApiGateway::Resource").values()]
    assert "ingest" in paths
    assert (
        len(
            template.find_resources(
                "AWS::Lambda::Permission",
                {
                    "Properties": {
                        "Principal": "apigateway.amazonaws.com",
                        "FunctionName": {"Fn::ImportValue": assertions.Match.any_value()},
                    }
                },
            )
        )
        >= 1
    )
