"""The layer build's own logic: requirement completeness, marker evaluation, stripping, size accounting."""

from __future__ import annotations

from pathlib import Path

from layers.build import PLATFORMS, strip, target_environment, tree_bytes, unmet_requirements

ENV = target_environment("3.12", PLATFORMS)


def meta(*requires: str) -> dict[str, list[str]]:
    return {"Requires-Dist": list(requires)}


def test_target_environment_describes_lambda_arm64_python312() -> None:
    assert ENV["platform_machine"] == "aarch64"
    assert ENV["python_version"] == "3.12"
    assert ENV["sys_platform"] == "linux"


def test_requirements_met_by_the_layer_or_the_lambda_runtime_pass() -> None:
    # Given pydantic needing pydantic-core (in the layer) and xray needing botocore (the runtime's)
    dists = {"pydantic": meta("pydantic-core==2.50.5"), "pydantic-core": {}, "aws-xray-sdk": meta("botocore>=1.11")}
    # Then nothing is unmet
    assert unmet_requirements(dists, ENV) == []


def test_a_missing_requirement_is_reported_with_who_needs_it() -> None:
    dists = {"onnxruntime": meta("flatbuffers", "protobuf")}
    assert unmet_requirements(dists, ENV) == ["onnxruntime needs flatbuffers", "onnxruntime needs protobuf"]


def test_requirements_for_other_pythons_platforms_or_extras_are_ignored() -> None:
    dists = {
        "x": meta(
            'tomli; python_version < "3.11"',
            'pywin32; sys_platform == "win32"',
            'pytest; extra == "test"',
            'uvloop; platform_machine == "aarch64"',
        )
    }
    assert unmet_requirements(dists, ENV) == ['x needs uvloop; platform_machine == "aarch64"']


def test_strip_drops_tests_caches_sources_and_the_listed_paths_but_keeps_runtime_files(tmp_path: Path) -> None:
    # Given a layer folder with runtime files and droppable ones
    files = {
        "numpy/__init__.py": 10,
        "numpy/_core/tests/test_a.py": 100,
        "numpy/_core/include/numpy/ndarraytypes.h": 50,
        "numpy/testing/__init__.py": 5,
        "numpy/testing/tests/test_utils.py": 9,
        "numpy/f2py/__init__.py": 40,
        "onnxruntime/capi/onnxruntime_pybind11_state.so": 300,
        "onnxruntime/capi/libonnxruntime.so.1.32.0": 200,
        "onnxruntime/transformers/x.py": 30,
        "pkg/__pycache__/m.cpython-312.pyc": 20,
        "pkg/m.pyi": 7,
    }
    for name, size in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x" * size)
    # When it is stripped
    removed = strip(tmp_path)
    # Then only runtime files are left and the removed bytes add up
    left = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert left == ["numpy/__init__.py", "numpy/testing/__init__.py", "onnxruntime/capi/onnxruntime_pybind11_state.so"]
    assert removed == sum(files.values()) - 315
    assert tree_bytes([tmp_path]) == 315
