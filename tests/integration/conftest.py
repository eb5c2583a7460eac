"""Integration fixtures shared across files."""

from __future__ import annotations

import platform
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

SITE = Path(next(p for p in sys.path if p.endswith("site-packages")))


@dataclass(frozen=True)
class HostLayer:
    report: dict[str, Any]  # what layers/build.py reported (sizes)
    python: Path  # the layer's python/ folder, as Lambda mounts it under /opt/python
    runtime: Path  # a folder playing the Lambda runtime: only the packages it provides (boto3, botocore, ...)


@pytest.fixture(scope="session")
def host_layer(tmp_path_factory: pytest.TempPathFactory) -> HostLayer:
    """The runtime layer recipe built for THIS host's CPython (a twin of the arm64 layer: same pins, same
    pruning), built once per session: pip is the slow part."""
    if platform.machine() != "x86_64" or sys.platform != "linux":
        pytest.skip("the host twin of the layer is built for x86_64 Linux")
    from layers.build import RUNTIME_PROVIDED, build

    root = tmp_path_factory.mktemp("host-layer")
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    platforms = ("manylinux_2_34_x86_64", "manylinux_2_28_x86_64", "manylinux2014_x86_64")
    report = build("runtime", out=root / "layers", platforms=platforms, python_version=version, budget_mb=1000)
    runtime = root / "var-runtime"
    runtime.mkdir()
    for name in [*RUNTIME_PROVIDED, "dateutil"]:
        for source in (SITE / name.replace("-", "_"), SITE / f"{name}.py"):
            if source.exists():
                (runtime / source.name).symlink_to(source)
    return HostLayer(dict(report), root / "layers" / "runtime" / "python", runtime)
