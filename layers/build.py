"""Build a Lambda layer from a pinned recipe with pip for the target platform: no Docker.

    python layers/build.py runtime            # -> build/layers/runtime/python (+ build/layers/runtime.json)

pip downloads the manylinux aarch64 / cp312 wheels (`--only-binary=:all:`: nothing is compiled here, so
the host's OS and CPU do not matter) into the layer's `python/` folder. The accepted platform tags run from
manylinux2014 (glibc 2.17) up to manylinux_2_34: the Lambda Python 3.12 runtime is Amazon Linux 2023, glibc
2.34, and onnxruntime >= 1.2x publishes aarch64 wheels only as manylinux_2_28. Then:

1. every distribution's own requirements (for the target's markers) must be met by the recipe or by the
   Lambda Python runtime (boto3 and friends), or be named in ALLOWED_MISSING with a reason: the recipe is
   installed with --no-deps, so this check is what proves the pin list complete;
2. tests, caches, type stubs and bytecode are stripped;
3. the unzipped size of the layer plus the predict function's code (functions/<fn> + cnai) is measured and
   checked against the budget (Lambda's hard limit is 250 MB; ours is 120 MB, the serving issue's target).

`--platform/--python-version` build a twin for another platform (the host's, to import-test the recipe).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from collections.abc import Iterable, Sequence
from email.parser import Parser
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
BUDGET_MB = 120.0
PLATFORMS = ("manylinux_2_34_aarch64", "manylinux_2_28_aarch64", "manylinux2014_aarch64")
# The Lambda Python 3.12 runtime ships boto3; shipping our own botocore would add ~25 MB for nothing.
RUNTIME_PROVIDED = {"boto3", "botocore", "s3transfer", "jmespath", "python-dateutil", "six", "urllib3"}
ALLOWED_MISSING = {
    "huggingface-hub": "tokenizers needs it only for Tokenizer.from_pretrained (a Hub download); "
    "serving loads tokenizer.json from the artifact with Tokenizer.from_file",
}
STRIP_DIRS = {"tests", "test", "__pycache__", "testing"}
STRIP_SUFFIXES = {".pyc", ".pyo", ".pyi", ".pxd", ".pyx", ".h", ".c", ".cpp"}
# Not stripped: numpy/_core/tests is imported by nothing, but `numpy.testing` is public API some code imports.
KEEP_DIRS = {"numpy/testing"}
# Whole paths (globs under python/) no serving code path loads, each with the reason it is safe to drop.
DROP = {
    "onnxruntime/capi/libonnxruntime.so.*": "the C API library for non-Python hosts (26 MB); the Python binding "
    "onnxruntime_pybind11_state is self-contained (no DT_NEEDED on it), checked by the host-twin import test",
    "onnxruntime/transformers": "offline graph-optimisation tooling for transformer exports, never imported",
    "onnxruntime/quantization": "quantization happens in the model factory, not at serving time",
    "onnxruntime/tools": "model conversion/inspection CLIs",
    "onnxruntime/datasets": "sample models for onnxruntime's own examples",
    "numpy/f2py": "the Fortran wrapper generator (lazily imported by numpy, never by us)",
    "numpy/_core/include": "C headers for building numpy extensions",
}


def target_environment(python_version: str, platforms: Sequence[str]) -> dict[str, str]:
    """The PEP 508 marker values of the Lambda runtime the layer is built for."""
    env: dict[str, str] = {k: str(v) for k, v in default_environment().items()}
    tags = " ".join(platforms)
    machine = "aarch64" if "aarch64" in tags else "x86_64" if "x86_64" in tags else env["platform_machine"]
    env.update(
        python_version=python_version,
        python_full_version=f"{python_version}.0",
        implementation_name="cpython",
        platform_python_implementation="CPython",
        sys_platform="linux",
        platform_system="Linux",
        os_name="posix",
        platform_machine=machine,
    )
    return env


def pip_install(requirements: Path, target: Path, *, platforms: Sequence[str], python_version: str) -> None:
    """Install the pinned wheels for the target platform into `target` (network: PyPI or a mirror)."""
    command = [
        sys.executable, "-m", "pip", "install", "-qq", "--disable-pip-version-check",
        "--requirement", str(requirements), "--target", str(target), "--no-deps",
        "--python-version", python_version, "--implementation", "cp",
        "--only-binary=:all:", "--no-compile", "--upgrade",
    ]  # fmt: skip
    for platform in platforms:
        command += ["--platform", platform]
    subprocess.run(command, check=True)


def installed(target: Path) -> dict[str, dict[str, list[str]]]:
    """{canonical name: METADATA headers (multi-valued)} of every distribution in `target`."""
    found: dict[str, dict[str, list[str]]] = {}
    for meta in target.glob("*.dist-info/METADATA"):
        message = Parser().parsestr(meta.read_text(encoding="utf-8"), headersonly=True)
        headers: dict[str, list[str]] = {}
        for key, value in message.items():
            headers.setdefault(key, []).append(value)
        found[canonicalize_name(headers["Name"][0])] = headers
    return found


def unmet_requirements(dists: dict[str, dict[str, list[str]]], env: dict[str, str]) -> list[str]:
    """'<dist> needs <requirement>' for each requirement neither in the layer, the runtime, nor allowed."""
    unmet = []
    for name, headers in sorted(dists.items()):
        for line in headers.get("Requires-Dist", []):
            req = Requirement(line)
            if req.marker is not None and not req.marker.evaluate({**env, "extra": ""}):
                continue
            wanted = canonicalize_name(req.name)
            if wanted in dists or wanted in RUNTIME_PROVIDED or wanted in ALLOWED_MISSING:
                continue
            unmet.append(f"{name} needs {line}")
    return unmet


def strip(target: Path) -> int:
    """Delete DROP, tests, caches, stubs, sources and bytecode from the layer. Returns the bytes removed."""
    removed = 0
    for pattern in DROP:
        for path in target.glob(pattern):
            removed += tree_bytes([path])
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    for path in sorted(target.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        relative = path.relative_to(target).as_posix()
        if relative in KEEP_DIRS or not path.exists():
            continue
        if path.is_dir() and path.name in STRIP_DIRS:
            removed += tree_bytes([path])
            shutil.rmtree(path)
        elif path.is_file() and path.suffix in STRIP_SUFFIXES:
            removed += path.stat().st_size
            path.unlink()
    return removed


def tree_bytes(paths: Iterable[Path]) -> int:
    """Unzipped size of files under `paths`, without caches (what Lambda counts against 250 MB)."""
    total = 0
    for root in paths:
        for path in [root] if root.is_file() else root.rglob("*"):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
                total += path.stat().st_size
    return total


def largest(target: Path, count: int = 8) -> dict[str, float]:
    """The biggest top-level entries of the layer in MB, to see where a budget goes."""
    sizes = {p.name: tree_bytes([p]) / 1e6 for p in target.iterdir() if not p.name.endswith(".dist-info")}
    return {k: round(v, 2) for k, v in sorted(sizes.items(), key=lambda kv: -kv[1])[:count]}


def build(
    layer: str,
    *,
    out: Path,
    function: str = "predict",
    platforms: Sequence[str] = PLATFORMS,
    python_version: str = "3.12",
    budget_mb: float = BUDGET_MB,
) -> dict[str, object]:
    """Build `layers/<layer>/requirements.txt` into `out/<layer>/python`; returns the size report.

    Raises SystemExit with the reason when a requirement is unmet or the budget is exceeded.
    """
    requirements = ROOT / "layers" / layer / "requirements.txt"
    if not requirements.is_file():
        raise SystemExit(f"layer recipe {requirements} does not exist")
    target = out / layer / "python"
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    pip_install(requirements, target, platforms=platforms, python_version=python_version)
    dists = installed(target)
    unmet = unmet_requirements(dists, target_environment(python_version, platforms))
    if unmet:
        raise SystemExit("layer requirements not met (add them to the recipe):\n  " + "\n  ".join(unmet))
    stripped = strip(target)
    layer_mb = tree_bytes([target]) / 1e6
    code = [ROOT / "functions" / function, ROOT / "cnai"]
    function_mb = tree_bytes([p for p in code if p.exists()]) / 1e6
    report: dict[str, object] = {
        "layer": layer,
        "platforms": list(platforms),
        "python_version": python_version,
        "distributions": sorted(dists),
        "layer_unzipped_mb": round(layer_mb, 2),
        "function_unzipped_mb": round(function_mb, 2),
        "package_unzipped_mb": round(layer_mb + function_mb, 2),
        "stripped_mb": round(stripped / 1e6, 2),
        "budget_mb": budget_mb,
        "largest_mb": largest(target),
    }
    (out / f"{layer}.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    if layer_mb + function_mb > budget_mb:
        raise SystemExit(f"layer {layer} + functions/{function}: {layer_mb + function_mb:.1f} MB > {budget_mb} MB")
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("layer", nargs="?", default="runtime", help="folder under layers/ with requirements.txt")
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "layers")
    parser.add_argument("--function", default="predict", help="function whose code counts against the budget")
    parser.add_argument("--platform", action="append", help=f"wheel platform tag, repeatable (default {PLATFORMS})")
    parser.add_argument("--python-version", default="3.12")
    parser.add_argument("--budget-mb", type=float, default=BUDGET_MB)
    args = parser.parse_args(argv)
    report = build(
        args.layer,
        out=args.out,
        function=args.function,
        platforms=args.platform or PLATFORMS,
        python_version=args.python_version,
        budget_mb=args.budget_mb,
    )
    print(
        f"layer {report['layer']} ({(args.platform or PLATFORMS)[0]}, cp{args.python_version.replace('.', '')}): "
        f"{report['layer_unzipped_mb']} MB + function {report['function_unzipped_mb']} MB "
        f"= {report['package_unzipped_mb']} MB unzipped (budget {report['budget_mb']} MB; "
        f"stripped {report['stripped_mb']} MB)"
    )
    print("largest:", ", ".join(f"{k} {v} MB" for k, v in report["largest_mb"].items()))  # type: ignore[attr-defined]
    return 0


if __name__ == "__main__":
    sys.exit(main())
