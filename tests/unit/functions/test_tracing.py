"""Tracing on (as in Lambda): botocore is patched for X-Ray when a session is imported, not at init.

Each case runs in a fresh interpreter: what a cold start imports is the point, and this process has long
imported botocore.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
PROBE = """
import json, sys
import cnai.observability
at_init = "botocore.client" in sys.modules
import boto3
boto3.client("s3", region_name="us-east-1")  # builds a client; no call is made
import botocore.client
print(json.dumps({"at_init": at_init, "patched": hasattr(botocore.client, "_xray_enabled")}))
"""


def probe(traced: bool) -> dict[str, bool]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("POWERTOOLS_", "LAMBDA_TASK_ROOT"))}
    env.update({"PYTHONPATH": str(ROOT), "AWS_XRAY_CONTEXT_MISSING": "IGNORE_ERROR"})
    if traced:
        env["LAMBDA_TASK_ROOT"] = str(ROOT)
    result = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr[-2000:]
    answer: dict[str, bool] = json.loads(result.stdout.strip().splitlines()[-1])
    return answer


@pytest.mark.parametrize("traced", [True, False])
def test_botocore_is_patched_only_when_traced_and_only_once_a_session_exists(traced: bool) -> None:
    # Given a fresh interpreter, in Lambda with tracing on (or outside it)
    # When cnai's observability is imported, then a boto3 client is built
    answer = probe(traced)
    # Then botocore.client was not imported for tracing's sake, and the client is traced only with tracing on
    assert answer == {"at_init": False, "patched": traced}
