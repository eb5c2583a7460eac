"""The generator artifact: its card hashes every file, a changed or missing file is refused, the tarball
round-trips flat and refuses paths, and an S3 copy is fetched once and verified (moto)."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from cnai.errors import ArtifactError
from cnai.generate.artifact import (
    GeneratorCard,
    fetch_generator,
    identity_of,
    pack_generator,
    read_generator_card,
    unpack_generator,
    write_generator_card,
)


def artifact(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "genai_config.json").write_text(json.dumps({"model": {"context_length": 256}}))
    (folder / "tokenizer.json").write_text("{}")
    (folder / "model.onnx").write_bytes(b"graph")
    (folder / "model.onnx.data").write_bytes(b"\0" * 1000)
    write_generator_card(folder, GeneratorCard(name="tiny", precision="int4", context_length=256))
    return folder


def test_the_card_lists_every_file_and_a_content_version(tmp_path: Path) -> None:
    # Given an exported folder / When its card is written / Then every file is hashed, the version is content-derived
    card = read_generator_card(artifact(tmp_path / "a"))
    assert sorted(card.files) == ["genai_config.json", "model.onnx", "model.onnx.data", "tokenizer.json"]
    same = read_generator_card(artifact(tmp_path / "b"))
    assert card.version == same.version and len(card.version) == 12
    assert identity_of(tmp_path / "a").name == "tiny"


def test_a_modified_or_missing_file_is_refused(tmp_path: Path) -> None:
    folder = artifact(tmp_path / "a")
    (folder / "model.onnx.data").write_bytes(b"\1" * 1000)  # same size, other bytes
    with pytest.raises(ArtifactError, match=r"model\.onnx\.data: sha256 differs"):
        read_generator_card(folder)
    (folder / "model.onnx").unlink()
    with pytest.raises(ArtifactError, match=r"model\.onnx: missing"):
        read_generator_card(folder, verify=False)


def test_no_card_without_the_runtime_config(tmp_path: Path) -> None:
    folder = tmp_path / "a"
    folder.mkdir()
    (folder / "tokenizer.json").write_text("{}")
    with pytest.raises(ArtifactError, match=r"genai_config\.json: cannot write the model card"):
        write_generator_card(folder, GeneratorCard(name="x", precision="int4", context_length=1))


def test_tarball_round_trip_and_refused_paths(tmp_path: Path) -> None:
    # Given a packed artifact / When unpacked elsewhere / Then the same card verifies
    tar = pack_generator(artifact(tmp_path / "a"), tmp_path / "model.tar.gz")
    (tmp_path / "b").mkdir()
    assert unpack_generator(tar, tmp_path / "b").version == read_generator_card(tmp_path / "a").version
    # And an archive with a nested path is refused, naming it
    evil = tmp_path / "evil.tar.gz"
    with tarfile.open(evil, "w:gz") as archive:
        info = tarfile.TarInfo("../escape.txt")
        info.size = 1
        archive.addfile(info, io.BytesIO(b"x"))
    (tmp_path / "c").mkdir()
    with pytest.raises(ArtifactError, match=r"'\.\./escape\.txt' is not a plain top-level file"):
        unpack_generator(evil, tmp_path / "c")


@mock_aws
def test_an_s3_generator_is_fetched_once_and_verified(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    s3 = boto3.client("s3", region_name="eu-west-1")
    s3.create_bucket(Bucket="models", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    tar = pack_generator(artifact(tmp_path / "a"), tmp_path / "model.tar.gz")
    s3.upload_file(str(tar), "models", "gen/model.tar.gz")
    # When fetched twice / Then one verified cache folder
    first = fetch_generator("s3://models/gen/model.tar.gz", tmp_path / "cache", s3)
    second = fetch_generator("s3://models/gen/model.tar.gz", tmp_path / "cache", s3)
    assert first == second and read_generator_card(first).name == "tiny"
    # A damaged cached copy is fetched again, not served and not a permanent error
    (first / "tokenizer.json").write_text("damaged", encoding="utf-8")
    third = fetch_generator("s3://models/gen/model.tar.gz", tmp_path / "cache", s3)
    assert third == first and read_generator_card(third).name == "tiny"
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == [first.name]
    with pytest.raises(ArtifactError, match=r"a generator on S3 is a model\.tar\.gz"):
        fetch_generator("s3://models/gen/", tmp_path / "cache", s3)
