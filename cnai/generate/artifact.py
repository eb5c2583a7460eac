"""The generator artifact: one folder (tarred as SageMaker's model.tar.gz) holding the exported decoder
(genai_config.json, model.onnx, model.onnx.data), tokenizer.json and model_card.json.

Same rules as the classifier's artifact (cnai.model.artifact): the card lists the sha256 and size of every
other file and is written last, so a card on disk means a complete artifact; a load re-hashes each file and
refuses a partial or modified one. The card's lineage says where the weights came from (the GGUF package and
its sha256, the recipe, the code version), its parity and metrics what the export was checked against.
The file list is the folder's content (ship folders, never hand-kept lists), not a fixed tuple: the
exporter decides how many weight files the model needs.
"""

from __future__ import annotations

import hashlib
import shutil
import tarfile
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from cnai.errors import ArtifactError
from cnai.model.artifact import FileEntry, Lineage, sha256_file
from cnai.model.identity import ModelId

CARD_FILE = "model_card.json"
REQUIRED_FILES = ("genai_config.json", "tokenizer.json")
FORMAT_VERSION = 1
TASK = "text-generation"
SAGEMAKER_CODE = "code"  # the inference toolkit's folder in a SageMaker model.tar.gz


class GeneratorCard(BaseModel):
    format_version: int = FORMAT_VERSION
    name: str
    version: str = ""
    created_at: str = Field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    task: str = TASK
    precision: str  # int4 | int8 | fp32: the ONNX weights' precision
    context_length: int
    metrics: dict[str, Any] = Field(default_factory=dict)  # perplexity of this and the fp32 model, tokens/s
    parity: dict[str, Any] = Field(default_factory=dict)  # greedy fp32 ONNX vs PyTorch on the fixed prompts
    lineage: Lineage = Field(default_factory=Lineage)
    files: dict[str, FileEntry] = Field(default_factory=dict)


def _payload(directory: Path) -> list[Path]:
    files = sorted(p for p in directory.iterdir() if p.name != CARD_FILE and not p.name.startswith("."))
    for path in files:
        if not path.is_file() or path.is_symlink():
            raise ArtifactError(f"{path}: a generator artifact holds only plain files, flat")
    return files


def write_generator_card(directory: Path, card: GeneratorCard) -> GeneratorCard:
    """Hash every file of the folder into the card, derive the version from the content (same bytes, same
    version wherever they are deployed) and write the card last."""
    files = {p.name: FileEntry(sha256=sha256_file(p), bytes=p.stat().st_size) for p in _payload(directory)}
    for name in REQUIRED_FILES:
        if name not in files:
            raise ArtifactError(f"{directory / name}: cannot write the model card, the file is missing")
    digest = hashlib.sha256("".join(f"{n}\0{e.sha256}\n" for n, e in sorted(files.items())).encode())
    card = card.model_copy(update={"files": files, "version": card.version or digest.hexdigest()[:12]})
    (directory / CARD_FILE).write_text(card.model_dump_json(indent=2) + "\n", encoding="utf-8")
    return card


def read_generator_card(directory: str | Path, verify: bool = True) -> GeneratorCard:
    """The card of a complete, unmodified artifact. Raises ArtifactError naming the file and the problem."""
    root = Path(directory)
    card_path = root / CARD_FILE
    if not card_path.is_file():
        raise ArtifactError(f"{card_path}: missing; not a generator artifact (or an unfinished one)")
    try:
        card = GeneratorCard.model_validate_json(card_path.read_text(encoding="utf-8"))
    except (ValidationError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{card_path}: not a valid generator card ({exc})") from None
    if card.format_version != FORMAT_VERSION or card.task != TASK:
        raise ArtifactError(f"{card_path}: expected format_version {FORMAT_VERSION} and task {TASK}")
    for name in REQUIRED_FILES:
        if name not in card.files:
            raise ArtifactError(f"{card_path}: lists no sha256 for {name}")
    for name, entry in card.files.items():
        path = root / name
        if not path.is_file():
            raise ArtifactError(f"{path}: missing")
        if verify:
            if path.stat().st_size != entry.bytes:
                raise ArtifactError(f"{path}: {path.stat().st_size} bytes, the card says {entry.bytes} (partial?)")
            if sha256_file(path) != entry.sha256:
                raise ArtifactError(f"{path}: sha256 differs from the model card (corrupt or modified)")
    return card


def identity_of(directory: Path, verify: bool = True) -> ModelId:
    card = read_generator_card(directory, verify=verify)
    return ModelId(card.name, card.version)


def pack_generator(directory: Path, tar_path: Path) -> Path:
    """model.tar.gz with every file at its root (the card last, as it was written)."""
    read_generator_card(directory, verify=False)
    with tarfile.open(tar_path, "w:gz") as tar:
        for path in _payload(directory):
            tar.add(path, arcname=path.name)
        tar.add(directory / CARD_FILE, arcname=CARD_FILE)
    return tar_path


def unpack_generator(tar_path: Path, target: Path) -> GeneratorCard:
    """Extract a generator model.tar.gz flat into `target` (plain files only, no paths) and verify it.

    A SageMaker package (cnai.serving.sagemaker.package_generator) holds the endpoint's inference code under
    `code/` beside the artifact: that folder is not the model and is skipped, so one tar serves both places."""
    try:
        with tarfile.open(tar_path, "r:*") as tar:
            for member in tar.getmembers():
                name = member.name.removeprefix("./")
                if name == SAGEMAKER_CODE or name.startswith(f"{SAGEMAKER_CODE}/"):
                    continue
                if not member.isfile() or "/" in name or name.startswith("."):
                    raise ArtifactError(f"{tar_path}: {member.name!r} is not a plain top-level file")
                handle = tar.extractfile(member)
                if handle is None:  # pragma: no cover - isfile() members always have data
                    raise ArtifactError(f"{tar_path}: {name} cannot be read")
                with handle, (target / name).open("wb") as out:
                    shutil.copyfileobj(handle, out)
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise ArtifactError(f"{tar_path}: not a readable model.tar.gz ({exc})") from None
    return read_generator_card(target)


def fetch_generator(uri: str, cache_dir: Path, s3_client: Any = None) -> Path:
    """An s3:// generator model.tar.gz, downloaded once into `cache_dir` (keyed by URI and ETag), verified
    before it is renamed into place, so a broken download is never served."""
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, _, key = uri.removeprefix("s3://").partition("/")
    if not bucket or not key.endswith((".tar.gz", ".tgz")):
        raise ArtifactError(f"{uri}: a generator on S3 is a model.tar.gz (s3://bucket/key.tar.gz)")
    client = s3_client or boto3.client("s3")
    try:
        etag = str(client.head_object(Bucket=bucket, Key=key).get("ETag", "")).strip('"')
        final = cache_dir / hashlib.sha256(f"{uri}\0{etag}".encode()).hexdigest()[:24]
        if final.is_dir():
            try:
                read_generator_card(final)  # re-verified: /tmp outlives invocations and could be damaged
                return final
            except ArtifactError:
                shutil.rmtree(final, ignore_errors=True)
        cache_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".fetch-", dir=cache_dir))
        tar = staging.parent / f"{staging.name}.tar.gz"
        try:
            client.download_file(bucket, key, str(tar))
            unpack_generator(tar, staging)
            tar.unlink()
            try:
                staging.rename(final)
            except OSError:  # another process won the race: use its copy once it verifies
                read_generator_card(final)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
            tar.unlink(missing_ok=True)
    except (ClientError, BotoCoreError) as exc:
        raise ArtifactError(f"{uri}: S3 refused the download ({exc})") from None
    return final
