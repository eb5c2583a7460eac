"""The ONNX backend's decoder threads: what it asks onnxruntime-genai for, observed at the runtime's Config.

Left unset, onnxruntime-genai ran the decoder on one core of two (models/augment.py: 1.28 prompts/s, 1.80 with
both cores), so the backend asks for every CPU the process may use unless the caller names a number."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path
from typing import Any, ClassVar

import pytest

from cnai.host import host_threads
from cnai.model.identity import ModelId
from tests.generate_tiny import write_tokenizer


class RecordingConfig:
    overlays: ClassVar[list[dict[str, Any]]] = []

    def __init__(self, folder: str) -> None:
        self.folder = folder

    def clear_providers(self) -> None:
        pass

    def overlay(self, text: str) -> None:
        RecordingConfig.overlays.append(json.loads(text))


@pytest.fixture
def fake_genai(monkeypatch: pytest.MonkeyPatch) -> type[RecordingConfig]:
    module = types.ModuleType("onnxruntime_genai")
    module.Config = RecordingConfig  # type: ignore[attr-defined]
    module.Model = lambda config: ("model", config)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "onnxruntime_genai", module)
    RecordingConfig.overlays = []
    return RecordingConfig


def folder_with_config(tmp_path: Path) -> Path:
    (tmp_path / "genai_config.json").write_text(json.dumps({"model": {"context_length": 64}}))
    write_tokenizer(tmp_path)
    return tmp_path


def decoder_options(config: type[RecordingConfig]) -> dict[str, Any]:
    (overlay,) = config.overlays
    options: dict[str, Any] = overlay["model"]["decoder"]["session_options"]
    return options


@pytest.mark.parametrize(("asked", "expected"), [(None, host_threads()), (1, 1), (3, 3)])
def test_the_decoder_gets_every_cpu_unless_told(
    fake_genai: type[RecordingConfig], tmp_path: Path, asked: int | None, expected: int
) -> None:
    from cnai.generate.onnx import OnnxGenerator

    OnnxGenerator(folder_with_config(tmp_path), ModelId("tiny", "1"), threads=asked)
    assert decoder_options(fake_genai) == {"intra_op_num_threads": expected, "inter_op_num_threads": 1}
