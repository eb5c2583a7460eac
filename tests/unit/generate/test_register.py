"""`cnai generate register`: a generator artifact uploaded (versioned S3 object, evaluation report beside it) and
registered as a TEXT_GENERATION version with the card's perplexity, parity and lineage, audited like
`cnai models approve`; the same artifact twice answers the first version; a damaged one registers nothing.
`cnai generate PROMPT` still replies (the group's default command). All on moto."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws
from typer.testing import CliRunner

from cnai.audit.trail import read_records
from cnai.cli import app
from cnai.generate import Generation, GenerationParams, Messages
from cnai.generate.artifact import pack_generator, unpack_generator
from cnai.model.identity import ModelId
from cnai.registry.packages import Registry
from tests.generate_tiny import write_carded_artifact

PREFIX = "cnai-dev"
BUCKET = "cnai-artifacts"
IMAGE = "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-inference:2.6-cpu-py312"
runner = CliRunner()


@dataclass
class World:
    s3: Any
    registry: Registry
    audit: Path


@pytest.fixture
def world(fake_aws_env: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    # Given a versioned artifacts bucket and a registry with no generator group yet
    monkeypatch.delenv("CNAI_ARTIFACT_BUCKET", raising=False)
    monkeypatch.delenv("CNAI_SERVING_IMAGE", raising=False)
    with mock_aws():
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket=BUCKET)
        s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        yield World(s3, Registry(boto3.client("sagemaker"), PREFIX), tmp_path / "audit.jsonl")


def register(world: World, path: Path, *extra: str, bucket: str = BUCKET, image: str = IMAGE) -> tuple[int, str]:
    # an empty bucket or image leaves its option out: the command falls back to the setting's variable
    given = [*(["--bucket", bucket] if bucket else []), *(["--image", image] if image else [])]
    args = ["generate", "register", str(path), *given, "--prefix", PREFIX, "--audit", f"file:{world.audit}", *extra]
    result = runner.invoke(app, args)
    return result.exit_code, result.output


def test_a_folder_is_uploaded_and_registered_as_text_generation(world: World, tmp_path: Path) -> None:
    # Given an exported generator folder
    folder = write_carded_artifact(tmp_path / "tiny-gen")
    # When it is registered
    code, output = register(world, folder, "--reason", "first generator")
    assert code == 0, output
    # Then the group exists and holds one pending TEXT_GENERATION version with the serving image
    (version,) = world.registry.versions("tiny-gen")
    assert (version.group, version.version, version.approval) == ("cnai-dev-tiny-gen", 1, "PendingManualApproval")
    assert version.task == "TEXT_GENERATION" and version.image == IMAGE
    assert version.description.endswith(": first generator")  # the reason is kept in the registry too
    # And the card's figures are its metrics: perplexity of the shipped precision, its ratio to fp32, parity
    assert version.metrics == {"perplexity": 10.5, "perplexity_fp32": 10.0, "perplexity_ratio": 1.05,
                               "greedy_identical": 1.0, "parity_prompts": 5.0}  # fmt: skip
    # And the lineage under the classifier's keys, the tar's S3 VersionId as artifact_object_version
    card_version = json.loads((folder / "model_card.json").read_text())["version"]
    key = f"generators/tiny-gen/{card_version}/model.tar.gz"
    assert version.model_data == f"s3://{BUCKET}/{key}"
    head = world.s3.head_object(Bucket=BUCKET, Key=key)
    assert version.lineage["artifact_object_version"] == head["VersionId"]
    assert version.lineage["artifact_version"] == card_version
    assert version.lineage["recipe_fingerprint"] == "0123456789abcdef"
    assert version.lineage["code_version"] == "0.1.0+abc" and "config_sha256" in version.lineage["teacher"]
    # And the uploaded tar is the artifact, verified file by file when unpacked
    world.s3.download_file(BUCKET, key, str(tmp_path / "down.tar.gz"))
    (tmp_path / "down").mkdir()
    assert unpack_generator(tmp_path / "down.tar.gz", tmp_path / "down").version == card_version
    # And the evaluation report beside it carries the card's parity and metrics
    assert version.report_uri == f"s3://{BUCKET}/generators/tiny-gen/{card_version}/evaluation.json"
    report = json.loads(world.s3.get_object(Bucket=BUCKET, Key=version.report_uri.split("/", 3)[3])["Body"].read())
    assert report["task"] == "text-generation" and report["parity"]["greedy_identical"] is True
    assert report["registry_metrics"]["perplexity_ratio"] == 1.05 and "files" not in report
    # And one audit record names who registered what, why, and the package version
    (record,) = read_records(world.audit)
    assert record.method == "CLI" and record.path == "cnai generate register tiny-gen" and record.status == 200
    assert record.action is not None and (record.action.verb, record.action.reason) == ("register", "first generator")
    assert record.package_version == "1" and record.action.detail["task"] == "TEXT_GENERATION"
    assert record.action.detail["artifact_object_version"] == head["VersionId"]


def test_the_same_artifact_twice_answers_the_first_version_unless_again(world: World, tmp_path: Path) -> None:
    # Given a registered generator
    folder = write_carded_artifact(tmp_path / "tiny-gen")
    assert register(world, folder)[0] == 0
    # When the same artifact is registered again
    code, output = register(world, folder)
    # Then no second version and no second upload: the first is answered, and the answer is audited
    assert code == 0 and "already_registered=True" in output
    assert [v.version for v in world.registry.versions("tiny-gen")] == [1]
    versions = world.s3.list_object_versions(Bucket=BUCKET, Prefix="generators/")["Versions"]
    assert len([v for v in versions if v["Key"].endswith("model.tar.gz")]) == 1
    # When --again and --approve are given
    assert register(world, folder, "--again", "--approve")[0] == 0
    # Then a second version is registered, Approved, pointing at a new object version of the same key
    second, first = world.registry.versions("tiny-gen")
    assert (second.version, second.approval, second.task) == (2, "Approved", "TEXT_GENERATION")
    assert second.model_data == first.model_data
    assert second.lineage["artifact_object_version"] != first.lineage["artifact_object_version"]
    assert [r.package_version for r in read_records(world.audit)] == ["1", "1", "2"]


def test_a_tarball_registers_and_a_damaged_one_registers_nothing(world: World, tmp_path: Path) -> None:
    # Given the artifact's model.tar.gz, and a copy whose weights were changed after the card was written
    good = pack_generator(write_carded_artifact(tmp_path / "a"), tmp_path / "model.tar.gz")
    bad_folder = write_carded_artifact(tmp_path / "b", name="broken-gen")
    (bad_folder / "model.onnx.data").write_bytes(b"\1" * 1000)
    bad = pack_generator(bad_folder, tmp_path / "broken.tar.gz")
    # When the good one is registered under another model name
    code, output = register(world, good, "--model", "drafter")
    # Then it is the group `<prefix>-drafter`
    assert code == 0, output
    assert world.registry.version("drafter").task == "TEXT_GENERATION"
    # When the damaged one is registered
    code, output = register(world, bad)
    # Then it fails (exit 2) naming the file, nothing is uploaded or registered, and the failure is audited
    assert code == 2 and "model.onnx.data" in output and "sha256 differs" in output
    assert world.registry.models() == ["drafter"]
    assert "broken-gen" not in json.dumps(world.s3.list_objects_v2(Bucket=BUCKET).get("Contents", []), default=str)
    failed = list(read_records(world.audit))[-1]
    assert failed.status == 500 and failed.path == "cnai generate register broken-gen"
    assert failed.error is not None and "sha256 differs" in failed.error


def test_an_unversioned_bucket_records_no_object_version(world: World, tmp_path: Path) -> None:
    # Given a bucket without versioning
    world.s3.create_bucket(Bucket="plain")
    # When a generator is registered there
    assert register(world, write_carded_artifact(tmp_path / "tiny-gen"), bucket="plain")[0] == 0
    # Then the version has no artifact_object_version (a deploy pins the key alone, as for the classifier)
    version = world.registry.version("tiny-gen")
    assert "artifact_object_version" not in version.lineage and version.model_data.startswith("s3://plain/")


def test_without_an_image_or_a_bad_group_name_nothing_is_registered(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = write_carded_artifact(tmp_path / "tiny-gen")
    # Given no --image and no CNAI_SERVING_IMAGE / Then exit 2 naming both ways to give it, nothing audited
    code, output = register(world, folder, image="")
    assert code == 2 and "--image (or CNAI_SERVING_IMAGE" in output and not world.audit.exists()
    # Given the image from the environment, as the Register function has it, and a name no group may have
    monkeypatch.setenv("CNAI_SERVING_IMAGE", IMAGE)
    code, output = register(world, folder, "--model", "tiny_gen.v2", image="")
    # Then it is refused naming the group, and nothing is registered
    assert code == 2 and "cnai-dev-tiny_gen.v2" in output and world.registry.models() == []


class Scripted:
    identity = ModelId("scripted", "1")

    def generate(self, messages: Messages | str, params: GenerationParams | None = None) -> Generation:
        return Generation(f"echo: {messages}", 3, 2, "stop", 1.0, 2.0)


@pytest.mark.parametrize("args", [["hello there"], ["reply", "hello there"], ["--max-new-tokens", "4", "hello there"]])
def test_cnai_generate_prompt_still_replies(args: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a generator (scripted) / When `cnai generate PROMPT` (short or long form, options first or last)
    monkeypatch.setattr("cnai.generate.load_generator", lambda uri, threads=None: Scripted())
    result = runner.invoke(app, ["generate", *args])
    # Then the reply is printed
    assert result.exit_code == 0, result.output
    assert "echo: [{'role': 'user', 'content': 'hello there'}]" in result.output
