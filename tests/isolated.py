"""Run code the way a shipped thing runs it: a separate, isolated interpreter with nothing of the repository on
its path.

`python -I` drops PYTHONPATH, the user site and the current directory; the interpreter used is a throwaway
venv (created without pip, in well under a second) whose site-packages holds only the distributions a shipped
requirements list resolves to, linked from this venv's site-packages (offline, no download). So the editable
install of cnai (a .pth finder in .venv's site-packages) can never leak in, which is how the SageMaker package
passed its old test while missing modules.
"""

from __future__ import annotations

import json
import os
import subprocess
import venv
from collections.abc import Iterable, Sequence
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]


def closure(requirements: Iterable[str]) -> dict[str, metadata.Distribution]:
    """The installed distributions `requirements` resolve to, with their own (non-extra) requirements."""
    found: dict[str, metadata.Distribution] = {}
    todo = [Requirement(r) for r in requirements]
    while todo:
        req = todo.pop()
        name = canonicalize_name(req.name)
        if name in found or (req.marker is not None and not req.marker.evaluate({"extra": ""})):
            continue
        try:
            found[name] = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            raise AssertionError(f"requirement {req} is not installed in this venv to link from") from None
        todo.extend(Requirement(r) for r in found[name].requires or [])
    return found


def top_level(dist: metadata.Distribution) -> set[str]:
    """Top-level files and folders a distribution installed into site-packages (no metadata, no scripts)."""
    skip = (".dist-info", ".data", ".pth")
    return {
        f.parts[0]
        for f in dist.files or []
        if f.parts[0] not in ("..", "__pycache__") and not f.parts[0].endswith(skip)
    }


def requirements_venv(target: Path, requirements: Iterable[str]) -> Path:
    """A venv at `target` whose site-packages holds only `requirements` and their dependencies; its python."""
    venv.EnvBuilder(with_pip=False, symlinks=True).create(target)
    python = target / "bin" / "python"
    site = Path(
        subprocess.run(
            [str(python), "-I", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True, text=True, check=True, timeout=60,
        ).stdout.strip()
    )  # fmt: skip
    for dist in closure(requirements).values():
        base = Path(str(dist.locate_file("")))
        for name in top_level(dist):
            if not (site / name).exists():
                (site / name).symlink_to(base / name)
    return python


def run_isolated(
    python: Path | str, script: str, path: Sequence[Path], *, env: dict[str, str] | None = None, cwd: Path
) -> subprocess.CompletedProcess[str]:
    """`python -I` running `script` with `path` first on sys.path (as the platform's runtime puts it there).

    -I ignores PYTHON* variables, so the path travels as JSON in CNAI_PROBE_PATH. `cwd` should be a folder
    outside the repository: a probe run from the repository root would find `cnai` there by accident.
    """
    prelude = (
        "import json as _j, os as _o, sys as _s, pathlib as _p\n"
        "_s.path[:0] = _j.loads(_o.environ['CNAI_PROBE_PATH'])\n"
        f"assert _p.Path({str(ROOT)!r}) not in [_p.Path(e).resolve() for e in _s.path], _s.path\n"
    )
    full_env = {"PATH": os.environ["PATH"], "HOME": str(cwd), **(env or {})}
    full_env["CNAI_PROBE_PATH"] = json.dumps([str(p) for p in path])
    return subprocess.run(
        [str(python), "-I", "-c", prelude + script],
        env=full_env, cwd=cwd, capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
