"""The wheel as a new user gets it: `pip install .` (not editable) into a fresh venv, outside the repository, then
`cnai serve --model-dir ...` answers a prediction over HTTP and writes its audit record.

The install copies only what an sdist holds (pyproject.toml, README.md, cnai/) into a temporary folder, so the
build cannot pick up anything else of the repository, and the server runs from a folder outside it with no
PYTHONPATH: only the venv's site-packages can supply code.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.serving_toy import build_toy_artifact

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
SDIST = ("pyproject.toml", "README.md", "cnai")


@dataclass(frozen=True)
class Installed:
    venv: Path
    site: Path
    seconds: float

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"


def clean_env(home: Path) -> dict[str, str]:
    """No PYTHONPATH, no AWS, no proxy settings of the test run: what a fresh shell would have."""
    return {"PATH": "/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8"}


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    root = tmp_path_factory.mktemp("wheel")
    source = root / "src"
    source.mkdir()
    for name in SDIST:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(ROOT / name, source / name)
    venv = root / "venv"
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60)
    # This venv's pip installs into the fresh one (--python): no ensurepip, same indexes and pins as `make setup`
    install = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "-q",
         "-c", str(ROOT / "constraints.txt"), str(source)],
        capture_output=True, text=True, timeout=600, check=False, cwd=root,
    )  # fmt: skip
    seconds = time.perf_counter() - started
    assert install.returncode == 0, install.stderr[-3000:]
    print(f"\npip install . into a fresh venv: {seconds:.1f} s")
    site = subprocess.run(
        [str(venv / "bin" / "python"), "-I", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout.strip()  # fmt: skip
    return Installed(venv, Path(site), seconds)


def test_the_wheel_installs_the_library_only(installed: Installed, tmp_path: Path) -> None:
    # Given the installed wheel's record of its files
    [record] = installed.site.glob("cnai-*.dist-info/RECORD")
    tops = {line.split(",")[0].split("/")[0] for line in record.read_text().splitlines() if line}
    # Then it put only `cnai` (and its metadata, its console script) into site-packages: no `models`,
    # no `functions`, `infra` or `tests`
    assert {t for t in tops if not t.endswith(".dist-info") and t != ".."} == {"cnai"}
    assert not (installed.site / "models").exists()
    # And `cnai` is whole: every file of the source package, data files included (the pipeline's price list)
    recorded = {line.split(",")[0] for line in record.read_text().splitlines() if line.startswith("cnai/")}
    source = {
        p.relative_to(ROOT).as_posix()
        for p in (ROOT / "cnai").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    }
    assert {r for r in recorded if "__pycache__" not in r} == source
    # And the installed cnai imports from site-packages, with `models` unreachable
    probe = "import cnai, cnai.cli; print(cnai.__file__)\ntry:\n import models\nexcept ImportError: print('no models')"
    run = subprocess.run(
        [str(installed.python), "-I", "-c", probe], capture_output=True, text=True, timeout=120, check=False,
        cwd=tmp_path, env=clean_env(tmp_path),
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.splitlines() == [str(installed.site / "cnai" / "__init__.py"), "no models"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def served(installed: Installed, tmp_path: Path) -> Iterator[tuple[str, Path, subprocess.Popen[str]]]:
    artifact = build_toy_artifact(tmp_path / "model", name="toy")
    audit = tmp_path / "audit.jsonl"
    port = free_port()
    work = tmp_path / "elsewhere"  # not the repository: nothing on the path but the venv
    work.mkdir()
    process = subprocess.Popen(
        [str(installed.venv / "bin" / "cnai"), "serve", "--model-dir", str(artifact), "--port", str(port),
         "--audit", f"file:{audit}"],
        cwd=work, env=clean_env(work), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                output = process.stdout.read() if process.stdout else ""
                pytest.fail(f"cnai serve exited {process.returncode} before serving:\n{output[-3000:]}")
            try:
                with urllib.request.urlopen(f"{url}/v1/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            assert time.monotonic() < deadline, "cnai serve did not answer /v1/health within 60 s"
            time.sleep(0.2)
        yield url, audit, process
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def test_cnai_serve_from_the_wheel_answers_a_prediction(served: tuple[str, Path, subprocess.Popen[str]]) -> None:
    url, audit, _ = served
    # When a client posts two texts to the served model
    request = urllib.request.Request(
        f"{url}/v1/models/toy/predict",
        data=json.dumps({"inputs": ["I lost my card", "refund my money please"], "top_k": 2}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        status, body = response.status, json.loads(response.read())
    # Then it answers 200 with the toy model's known labels ...
    assert status == 200, body
    assert body["model"] == "toy"
    assert [p["label"] for p in body["predictions"]] == ["card_lost", "refund"]
    # ... and the call left one audit record in the file sink
    records = [json.loads(line) for line in audit.read_text().splitlines() if line.strip()]
    assert [r["model"] for r in records] == ["toy"]
    assert records[0]["status"] == 200
