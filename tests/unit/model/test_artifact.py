"""The artifact reader refuses anything partial, corrupt or inconsistent."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest

from cnai.errors import ArtifactError
from cnai.model.artifact import ModelCard, load_artifact, pack, write_card


def make_artifact(root: Path, labels: list[str] | None = None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "model.onnx").write_bytes(b"\x08\x07onnx-bytes")
    (root / "tokenizer.json").write_text("{}")
    (root / "labels.json").write_text(json.dumps(labels or ["a", "b"]))
    write_card(root, ModelCard(name="m", version="v1", created_at="2026-01-01T00:00:00Z", num_labels=2, max_length=32))
    return root


def test_round_trip(tmp_path: Path) -> None:
    artifact = load_artifact(make_artifact(tmp_path / "a"))
    assert artifact.labels == ["a", "b"]
    assert set(artifact.card.files) == {"model.onnx", "tokenizer.json", "labels.json"}
    assert artifact.card.files["model.onnx"].bytes == 12


def test_modified_file_is_refused(tmp_path: Path) -> None:
    root = make_artifact(tmp_path / "a")
    (root / "model.onnx").write_bytes(b"\x08\x07onnx-bytez")
    with pytest.raises(ArtifactError, match=r"model\.onnx: sha256 differs"):
        load_artifact(root)


def test_truncated_file_is_refused(tmp_path: Path) -> None:
    root = make_artifact(tmp_path / "a")
    (root / "model.onnx").write_bytes(b"\x08")
    with pytest.raises(ArtifactError, match="partial"):
        load_artifact(root)


@pytest.mark.parametrize("missing", ["model_card.json", "tokenizer.json"])
def test_missing_file_is_refused(tmp_path: Path, missing: str) -> None:
    root = make_artifact(tmp_path / "a")
    (root / missing).unlink()
    with pytest.raises(ArtifactError, match="missing"):
        load_artifact(root)


def test_card_label_count_must_match(tmp_path: Path) -> None:
    root = make_artifact(tmp_path / "a", labels=["a", "b", "c"])
    with pytest.raises(ArtifactError, match="3 labels"):
        load_artifact(root)


def test_garbage_card_is_refused(tmp_path: Path) -> None:
    root = make_artifact(tmp_path / "a")
    (root / "model_card.json").write_text('{"name": 1}')
    with pytest.raises(ArtifactError, match="not a valid model card"):
        load_artifact(root)


def test_pack_puts_files_at_the_root(tmp_path: Path) -> None:
    root = make_artifact(tmp_path / "a")
    tar = pack(root, tmp_path / "model.tar.gz")
    with tarfile.open(tar) as handle:
        assert sorted(handle.getnames()) == ["labels.json", "model.onnx", "model_card.json", "tokenizer.json"]
