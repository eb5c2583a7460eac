"""Contract fuzzing: schemathesis, with every check it has, against a real `cnai serve` and the OpenAPI document
that server itself serves at /v1/openapi.json. Zero failures: every answer is a documented status with the
documented body and content type, schema-valid requests are accepted, invalid ones refused, no 5xx, 405 with
`Allow` for other methods.

Bounded: a fixed seed (CNAI_FUZZ_SEED overrides it) and CNAI_FUZZ_EXAMPLES examples per operation (default 300)
keep it to about a minute on a small machine; the JUnit report goes to the test's temporary folder.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.serving_toy import build_toy_artifact

ROOT = Path(__file__).resolve().parents[2]
CONFIG = Path(__file__).with_name("schemathesis.toml")
SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
SEED = os.environ.get("CNAI_FUZZ_SEED", "20261201")
EXAMPLES = os.environ.get("CNAI_FUZZ_EXAMPLES", "300")

pytestmark = pytest.mark.skipif(not SCHEMATHESIS.exists(), reason="schemathesis is not installed (dev extra)")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`cnai serve` on a free port with the toy model; yields its base URL."""
    root = tmp_path_factory.mktemp("fuzz")
    model = build_toy_artifact(root / "model")
    command = [sys.executable, "-m", "cnai", "serve", "--model-dir", str(model), "--port", "0", "--name", "toy",
               "--audit", f"file:{root / 'audit.jsonl'}", "--workers", "1"]  # fmt: skip
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        match = re.search(r"serving on (http://127\.0\.0\.1:\d+)", line)
        assert match, line + (process.stdout.read()[-2000:] if process.poll() is not None else "")
        yield match.group(1)
    finally:
        process.terminate()
        process.wait(timeout=15)


def test_schemathesis_finds_nothing_against_cnai_serve(served: str, tmp_path: Path) -> None:
    # Given `cnai serve` and the OpenAPI document it serves
    report = tmp_path / "junit.xml"
    command = [
        str(SCHEMATHESIS), "--config-file", str(CONFIG), "--no-color", "run", f"{served}/v1/openapi.json",
        "--checks", "all", "--phases", "examples,coverage,fuzzing,stateful",
        "--max-examples", EXAMPLES, "--seed", SEED, "--workers", "1", "--request-timeout", "10",
        "--generation-database", "none", "--report", "junit", "--report-junit-path", str(report),
    ]  # fmt: skip
    # When schemathesis generates valid and invalid requests for every operation and runs all its checks
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False)
    # Then it finds nothing (the output names each failure and how to reproduce it)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-8000:]
    assert report.exists() and 'failures="0"' in report.read_text() and 'errors="0"' in report.read_text()
