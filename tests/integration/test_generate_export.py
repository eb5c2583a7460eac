"""The generator path end to end on a tiny random Llama (tests/generate_tiny.py), in seconds: the exporter
(ONNX with KV cache, int8, fp32 greedy parity against PyTorch, perplexity ratio, card), the ONNX runtime behind
load_generator, the generate route on that real model with its audit record, and `cnai generate`.

The export runs once per session into a folder keyed by onnxruntime-genai's version (the builder is what
could change the graph). The bundled SmolLM2's own export, parity and perplexity are measured by
`make bench-generate` (minutes, not a test)."""

from __future__ import annotations

import copy
import importlib.metadata
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from typer.testing import CliRunner

from cnai.audit.trail import Auditor, FileSink, read_records
from cnai.cli import app as cli
from cnai.errors import ArtifactError
from cnai.generate import GenerationParams, load_generator
from cnai.generate.artifact import read_generator_card
from cnai.generate.decode import TextCodec, render_chat
from cnai.generate.hf import TransformersGenerator
from cnai.local.context import LocalContext
from cnai.model.identity import ModelId
from cnai.serving.api import PredictApi
from cnai.serving.generate_api import GenerateRoute
from cnai.serving.service import ModelService
from tests.generate_tiny import write_tiny_llama

EVENT = json.loads((Path(__file__).parents[1] / "events" / "apigw_rest_predict.json").read_text())
PROMPTS = ("hello card", "lost card reply", "customer thanks")


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Any]:
    """(source folder, exported int8 artifact, its card)."""
    from models.export_generator import export

    root = tmp_path_factory.mktemp(f"generator-{importlib.metadata.version('onnxruntime-genai')}")
    source = write_tiny_llama(root / "src")
    card = export("int8", root / "tiny-int8", source=source)
    return source, root / "tiny-int8", card


def test_the_export_is_checked_and_carded(exported: tuple[Path, Path, Any]) -> None:
    # Given the tiny model exported to int8
    _, folder, card = exported
    # Then fp32 ONNX greedy matched PyTorch token for token on the fixed prompts (or the export would have failed)
    assert card.parity["greedy_identical"] is True and card.parity["prompts"] == 5
    # And the int8 perplexity is within 10% of fp32's on the held-out text
    assert 0.9 < card.metrics["perplexity_ratio"]["int8"] <= 1.10
    assert card.metrics["perplexity"]["fp32"] == pytest.approx(card.metrics["perplexity"]["torch"], rel=1e-3)
    # And the card hashes the runtime's files, names the builder and the code version
    assert {"genai_config.json", "model.onnx", "tokenizer.json"} <= set(card.files)
    assert card.precision == "int8" and card.lineage.hyperparameters["builder"].startswith("onnxruntime-genai==")
    assert card.lineage.code_version.startswith("0.") and read_generator_card(folder).version == card.version


def test_the_onnx_runtime_generates_like_pytorch_on_its_own_fp32_twin(exported: tuple[Path, Path, Any]) -> None:
    # Given the exported int8 artifact loaded by URI, and the PyTorch source
    source, folder, card = exported
    ours = load_generator(f"onnx:{folder}", threads=1)
    reference = TransformersGenerator(source, ModelId("ref", "torch"), threads=1)
    assert ours.identity == ModelId(card.name, card.version)
    params = GenerationParams(max_new_tokens=12)
    for prompt in PROMPTS:
        # When both decode greedily
        a, b = ours.generate(prompt, params), reference.generate(prompt, params)
        # Then the same prompt tokens go in; int8 may pick other tokens than fp32, but the loop's accounting holds
        assert a.tokens_in == b.tokens_in
        assert a.tokens_out == len(a.token_ids) <= 12 and a.finish_reason in ("stop", "length")
        # And greedy decoding is deterministic
        assert ours.generate(prompt, params).token_ids == a.token_ids


def test_a_tampered_artifact_is_not_loaded(exported: tuple[Path, Path, Any], tmp_path: Path) -> None:
    import shutil

    _, folder, _ = exported
    copy_ = shutil.copytree(folder, tmp_path / "copy")
    (copy_ / "tokenizer.json").write_text((copy_ / "tokenizer.json").read_text().replace("hello", "jello"))
    with pytest.raises(ArtifactError, match=r"tokenizer\.json: .*sha256 differs|tokenizer\.json: \d+ bytes"):
        load_generator(f"onnx:{copy_}")


def test_the_route_serves_the_real_model_and_audits_it(exported: tuple[Path, Path, Any], tmp_path: Path) -> None:
    # Given the predict API serving the exported generator
    _, folder, card = exported
    api = PredictApi(
        ModelService({}),
        Auditor(FileSink(tmp_path / "audit.jsonl")),
        generate=GenerateRoute(load_generator(f"onnx:{folder}", threads=1)),
    )
    event = copy.deepcopy(EVENT)
    event["path"] = f"/v1/models/{card.name}/generate"
    event["body"] = json.dumps({"prompt": "hello card", "max_new_tokens": 8, "stop": ["zzz"]})
    # When a caller posts a prompt
    response = api.handle(event, LocalContext())
    # Then tokens come back under the card's identity, and one audit record counts them
    assert response["statusCode"] == 200, response["body"]
    body = json.loads(response["body"])
    assert body["version"] == card.version and 1 <= body["usage"]["tokens_out"] <= 8
    (record,) = read_records(tmp_path / "audit.jsonl")
    assert record.generation is not None and record.generation.tokens_out == body["usage"]["tokens_out"]
    assert record.model_version == card.version and record.backend == "generate:OnnxGenerator"


def test_cnai_generate_prints_the_generation(exported: tuple[Path, Path, Any]) -> None:
    _, folder, card = exported
    result = CliRunner().invoke(
        cli, ["generate", "hello card", "--generator", f"onnx:{folder}", "--max-new-tokens", "5", "--json"]
    )
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    assert answer["model"] == f"{card.name}:{card.version}" and 1 <= answer["tokens_out"] <= 5
    # And a generator that does not exist is a clear error, exit 2
    missing = CliRunner().invoke(cli, ["generate", "hi", "--generator", "onnx:/nonexistent/gen"])
    assert missing.exit_code == 2 and "no such generator folder" in missing.output


def test_the_card_registers_with_the_classifiers_lineage_keys(
    exported: tuple[Path, Path, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the exported card and a model registry (moto)
    import boto3
    from moto import mock_aws

    from cnai.generate.registration import registry_lineage
    from cnai.registry.packages import Registry

    _, _, card = exported
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    with mock_aws():
        registry = Registry(boto3.client("sagemaker", region_name="eu-west-1"), "cnai-test")
        registry.ensure_group(card.name)
        # When a version is created with the card's lineage
        version = registry.create_version(
            card.name,
            image="image",
            model_data="s3://models/generator/model.tar.gz",
            report_uri="s3://models/generator/report.json",
            metrics={"perplexity_ratio": card.metrics["perplexity_ratio"]["int8"]},
            lineage=registry_lineage(card),
            approved=False,
            task="TEXT_GENERATION",
        )
    # Then the registry keeps the artifact version, the source, the recipe and the code version
    assert version.lineage["artifact_version"] == card.version
    assert version.lineage["code_version"] == card.lineage.code_version
    assert version.lineage["recipe_fingerprint"] == card.lineage.hyperparameters["recipe_fingerprint"]
    assert "config_sha256" in version.lineage["teacher"] and version.task == "TEXT_GENERATION"


def test_cnai_generate_register_uploads_and_registers_the_real_export(
    exported: tuple[Path, Path, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the exported artifact, a versioned bucket and an empty registry (moto)
    import boto3
    from moto import mock_aws

    from cnai.generate.artifact import pack_generator, unpack_generator
    from cnai.registry.packages import Registry

    _, folder, card = exported
    tar = pack_generator(folder, tmp_path / "model.tar.gz")
    for key, value in {"AWS_DEFAULT_REGION": "eu-west-1", "AWS_ACCESS_KEY_ID": "testing",
                       "AWS_SECRET_ACCESS_KEY": "testing"}.items():  # fmt: skip
        monkeypatch.setenv(key, value)
    with mock_aws():
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket="art", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
        s3.put_bucket_versioning(Bucket="art", VersioningConfiguration={"Status": "Enabled"})
        # When its model.tar.gz is registered from the command line
        result = CliRunner().invoke(cli, ["generate", "register", str(tar), "--bucket", "art", "--image", "img",
                                          "--prefix", "cnai-test", "--model", "tiny",
                                          "--audit", f"file:{tmp_path / 'audit.jsonl'}"])  # fmt: skip
        assert result.exit_code == 0, result.output
        version = Registry(boto3.client("sagemaker"), "cnai-test").version("tiny")
        s3.download_file("art", version.model_data.split("/", 3)[3], str(tmp_path / "down.tar.gz"))
    # Then a pending TEXT_GENERATION version holds the real card's figures and lineage
    assert (version.task, version.approval) == ("TEXT_GENERATION", "PendingManualApproval")
    assert version.metrics["perplexity_ratio"] == card.metrics["perplexity_ratio"]["int8"]
    assert version.metrics["greedy_identical"] == 1.0 and version.lineage["artifact_version"] == card.version
    assert version.lineage["artifact_object_version"]
    # And what was uploaded is the artifact, verified file by file
    (tmp_path / "down").mkdir()
    assert unpack_generator(tmp_path / "down.tar.gz", tmp_path / "down").version == card.version


def test_the_real_generator_is_listed_and_described(exported: tuple[Path, Path, Any], tmp_path: Path) -> None:
    # Given the predict API serving the exported generator and no classifier
    _, folder, card = exported
    api = PredictApi(
        ModelService({}),
        Auditor(FileSink(tmp_path / "audit.jsonl")),
        generate=GenerateRoute(load_generator(f"onnx:{folder}", threads=1)),
    )

    def get(path: str) -> Any:
        event = copy.deepcopy(EVENT)
        event["path"], event["httpMethod"], event["body"] = path, "GET", None
        response = api.handle(event, LocalContext())
        assert response["statusCode"] == 200, response["body"]
        return json.loads(response["body"])

    # When a client lists the models / Then the generator is there with its task, so its route is known
    (listed,) = get("/v1/models")["models"]
    assert listed == {"name": card.name, "version": card.version, "package_version": None,
                      "backend": "generate:OnnxGenerator", "task": "text-generation"}  # fmt: skip
    # And its detail is the card's summary: perplexity, parity, lineage
    detail = get(f"/v1/models/{card.name}")
    assert detail["metrics"]["perplexity_ratio"] == card.metrics["perplexity_ratio"]
    assert detail["parity"] == card.parity and detail["precision"] == "int8"
    assert detail["lineage"]["code_version"] == card.lineage.code_version


def test_a_source_without_tokenizer_json_uses_the_fast_tokenizers_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a model folder whose tokenizer only transformers can load (as for a hub id: no tokenizer.json there)
    import transformers
    from tokenizers import Tokenizer

    source = write_tiny_llama(tmp_path / "src")
    backend = Tokenizer.from_file(str(source / "tokenizer.json"))
    (source / "tokenizer.json").unlink()
    asked: list[str] = []

    def from_pretrained(name: str, *args: Any, **kwargs: Any) -> Any:
        asked.append(name)
        return SimpleNamespace(backend_tokenizer=backend)

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", from_pretrained)
    # When it is loaded / Then it tokenizes with that tokenizer and generates
    generator = TransformersGenerator(source, ModelId("ref", "torch"), threads=1)
    assert asked == [str(source)]
    assert generator.prompt_ids(PROMPTS[0]) == TextCodec.of(backend).encode(render_chat(PROMPTS[0]))
    assert generator.generate(PROMPTS[0], GenerationParams(max_new_tokens=3)).tokens_out <= 3
