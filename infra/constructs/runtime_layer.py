"""The Lambda runtime layer (onnxruntime, tokenizers, numpy, pydantic, powertools) for arm64 / Python 3.12.

Built without Docker by `make layers` (layers/build.py: pip for manylinux aarch64 cp312 wheels) into
build/layers/<name>/python. When that folder exists, it is the asset as is. When it does not, the asset is
the recipe folder and the same build runs as CDK local bundling at synth time; with bundling skipped
(tests: `aws:cdk:bundling-stacks: []`) nothing is built at all.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import jsii
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from infra.constructs.python_function import ARCHITECTURE, ROOT, RUNTIME

BUILD_DIR = ROOT / "build" / "layers"


@jsii.implements(cdk.ILocalBundling)
class _LayerBundler:
    """Local bundling: run layers/build.py into a scratch folder and move its python/ into the asset."""

    def __init__(self, layer: str) -> None:
        self.layer = layer

    def try_bundle(self, output_dir: str, *_options: Any, **_kw_options: Any) -> bool:
        from layers.build import build  # the repository's build script; imported only when bundling runs

        with tempfile.TemporaryDirectory() as scratch:
            build(self.layer, out=Path(scratch))
            shutil.move(str(Path(scratch) / self.layer / "python"), str(Path(output_dir) / "python"))
        return True


def layer_code(layer: str = "runtime", *, build_dir: Path = BUILD_DIR) -> lambda_.Code:
    """The prebuilt folder when `make layers` ran, else the recipe bundled by the same build at synth."""
    prebuilt = build_dir / layer
    if (prebuilt / "python").is_dir():
        return lambda_.Code.from_asset(str(prebuilt))
    recipe = ROOT / "layers" / layer
    if not (recipe / "requirements.txt").is_file():
        raise FileNotFoundError(f"layer recipe {recipe}/requirements.txt does not exist")
    return lambda_.Code.from_asset(
        str(recipe),
        asset_hash_type=cdk.AssetHashType.SOURCE,  # the pinned recipe decides the content
        bundling=cdk.BundlingOptions(
            image=cdk.DockerImage.from_registry("cnai/local-bundling-only"), local=_LayerBundler(layer)
        ),
    )


class RuntimeLayer(Construct):
    """`layer`: the runtime dependencies of the predict (and ingest) functions. `code=` overrides the asset."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        layer: str = "runtime",
        code: lambda_.Code | None = None,
        removal_policy: cdk.RemovalPolicy = cdk.RemovalPolicy.RETAIN,
    ) -> None:
        super().__init__(scope, construct_id)
        self.layer = lambda_.LayerVersion(
            self,
            "Layer",
            code=code or layer_code(layer),
            compatible_runtimes=[RUNTIME],
            compatible_architectures=[ARCHITECTURE],
            description=f"cnai {layer}: onnxruntime, tokenizers, numpy, pydantic, powertools (cp312 aarch64)",
            removal_policy=removal_policy,
        )
