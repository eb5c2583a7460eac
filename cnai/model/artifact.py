"""The model artifact: one directory (tarred as SageMaker's model.tar.gz) that every serving place loads.

Layout: model.onnx (int8), tokenizer.json, labels.json, model_card.json. The card lists the sha256 of
every other file, so a partial download or a tampered file is refused before it can answer a request.
"""

from __future__ import annotations

import hashlib
import json
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from cnai.errors import ArtifactError

MODEL_FILE = "model.onnx"
TOKENIZER_FILE = "tokenizer.json"
LABELS_FILE = "labels.json"
CARD_FILE = "model_card.json"
PAYLOAD_FILES = (MODEL_FILE, TOKENIZER_FILE, LABELS_FILE)
FORMAT_VERSION = 1


class FileEntry(BaseModel):
    sha256: str
    bytes: int


class Lineage(BaseModel):
    """Where the model came from: enough to rebuild it, or to know it must not be trusted."""

    dataset: dict[str, Any] = Field(default_factory=dict)
    teacher: str = ""
    student: dict[str, Any] = Field(default_factory=dict)
    hyperparameters: dict[str, Any] = Field(default_factory=dict)
    code_version: str = ""


class ModelCard(BaseModel):
    format_version: int = FORMAT_VERSION
    name: str
    version: str
    created_at: str
    task: str = "text-classification"
    num_labels: int
    max_length: int
    temperature: float = 1.0  # softmax temperature fitted on held-out data: calibrated probabilities
    abstain_threshold: float | None = None  # below this top probability the answer is "no label"
    metrics: dict[str, Any] = Field(default_factory=dict)
    parity: dict[str, Any] = Field(default_factory=dict)
    lineage: Lineage = Field(default_factory=Lineage)
    files: dict[str, FileEntry] = Field(default_factory=dict)


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def write_card(directory: Path, card: ModelCard) -> ModelCard:
    """Hash the payload files into the card and write it last: a card on disk means a complete artifact."""
    files = {}
    for name in PAYLOAD_FILES:
        path = directory / name
        if not path.is_file():
            raise ArtifactError(f"{path}: cannot write the model card, the file is missing")
        files[name] = FileEntry(sha256=sha256_file(path), bytes=path.stat().st_size)
    card = card.model_copy(update={"files": files})
    (directory / CARD_FILE).write_text(card.model_dump_json(indent=2) + "\n", encoding="utf-8")
    return card


def pack(directory: Path, tar_path: Path) -> Path:
    """model.tar.gz with the files at its root, as SageMaker hosting and the registry expect."""
    with tarfile.open(tar_path, "w:gz") as tar:
        for name in (*PAYLOAD_FILES, CARD_FILE):
            tar.add(directory / name, arcname=name)
    return tar_path


@dataclass(frozen=True)
class Artifact:
    """A verified artifact on local disk."""

    directory: Path
    card: ModelCard
    labels: list[str]

    @property
    def model_path(self) -> Path:
        return self.directory / MODEL_FILE

    @property
    def tokenizer_path(self) -> Path:
        return self.directory / TOKENIZER_FILE


def load_artifact(directory: str | Path, verify: bool = True) -> Artifact:
    """Read and check an artifact directory. Raises ArtifactError naming the file and what is wrong."""
    root = Path(directory)
    card_path = root / CARD_FILE
    if not card_path.is_file():
        raise ArtifactError(f"{card_path}: missing; not a model artifact (or an unfinished one)")
    try:
        card = ModelCard.model_validate_json(card_path.read_text(encoding="utf-8"))
    except (ValidationError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{card_path}: not a valid model card ({exc})") from None
    if card.format_version != FORMAT_VERSION:
        raise ArtifactError(f"{card_path}: format_version {card.format_version} is not {FORMAT_VERSION}")
    for name in PAYLOAD_FILES:
        path = root / name
        entry = card.files.get(name)
        if entry is None:
            raise ArtifactError(f"{card_path}: lists no sha256 for {name}")
        if not path.is_file():
            raise ArtifactError(f"{path}: missing")
        if verify:
            size = path.stat().st_size
            if size != entry.bytes:
                raise ArtifactError(f"{path}: {size} bytes, the model card says {entry.bytes} (partial copy?)")
            if sha256_file(path) != entry.sha256:
                raise ArtifactError(f"{path}: sha256 differs from the model card (corrupt or modified)")
    try:
        labels = json.loads((root / LABELS_FILE).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{root / LABELS_FILE}: not valid JSON ({exc})") from None
    if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
        raise ArtifactError(f"{root / LABELS_FILE}: must be a JSON list of label names")
    if len(labels) != card.num_labels:
        raise ArtifactError(f"{root / LABELS_FILE}: {len(labels)} labels, the model card says {card.num_labels}")
    return Artifact(root, card, labels)
