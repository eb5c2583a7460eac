"""The README's first command end to end, on a small slice: the whole platform on moto, as `make run` runs it.

A separate process (as a person runs it): synthesize the app, deploy it into a moto server, ingest through the
stream and consumer, execute the synthesized `train` state machine (the training job is models/train.py with the
quick recipe, a local process under SageMaker's contract), register and auto-approve, release it on the alias,
`cnai serve --follow`, predict, and check that the audit record names the registry version; then approve a
second version and watch the deploy workflow's canary reach 100% while a client calls, roll back by command, and
inject off-domain traffic for the drift monitor. Takes a few minutes on 2 cores.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared" / "datasets" / "banking77"

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.mark.skipif(not (DATA / "train.csv").exists(), reason="needs ../shared/datasets/banking77")
def test_make_run_flow_ingests_trains_registers_and_serves_an_audited_prediction(tmp_path: Path) -> None:
    # Given a fresh work folder, a slice of 20 intents x 20 texts and the tiny recipe without the teacher's int8
    # reference or mid-phase checkpoints (each teacher checkpoint is 177 MB, synced to S3 while the job runs). The
    # flow is `make run`'s; its 77 x 40 rows and quick recipe cost minutes of training that prove nothing more
    # about the platform (recipes: tests/integration/test_factory.py; checkpoints: the spot interruption test)
    report = tmp_path / "bench-pipeline.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    # When the platform runs as `make run` does (the timeout only guards against a hang; CI's own limit is the budget)
    result = subprocess.run(
        [sys.executable, "-m", "infra.local.platform", "--data", str(DATA), "--labels", "20", "--per-label", "20",
         "--profile", "tiny", "--hyperparameter", "eval_teacher=false", "--hyperparameter", "min_int8_agreement=0.95",
         "--hyperparameter", "checkpoint_every=1000",
         "--min-accuracy", "0.3", "--workdir", str(tmp_path / "platform"), "--report", str(report)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    # Then it ends well, state by state, with the figures bench-pipeline reports
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    figures = json.loads(report.read_text())
    assert figures["execution_status"] == "SUCCEEDED"
    assert list(figures["states_s"]) == [
        "PrepareDataset", "Synthetic data?", "TrainAndDistill", "QualityGate", "Passed?", "Register", "NotifySuccess"
    ]  # fmt: skip
    assert figures["records_in"] == figures["records_sent"] == 20 * 20 and figures["dead_lettered"] == 0
    assert figures["model_package_version"] == "1" and figures["approval"] == "Approved"
    assert 0.0 < figures["accuracy"] <= 1.0
    assert figures["predictions_ok"] == 3  # answered, and audited under the registry version
    assert figures["model_detail"]["package_version"] == "1"
    assert figures["model_detail"]["routing"]["stable"]["package_version"] == "1"  # served by following the alias
    for line in ("> PrepareDataset", "> TrainAndDistill", "= execution SUCCEEDED", "served at http://127.0.0.1:"):
        assert line in result.stdout
    # And the approved second version went through the synthesized deploy workflow's canary to 100%, then back
    # by command, while a client kept calling: nothing failed, and both versions answered
    assert figures["deploy_execution_status"] == "SUCCEEDED"
    states = iter(figures["deploy_states"])
    assert all(state in states for state in ("Release", "WaitCanary", "Check", "Promote", "Deployed"))  # in order
    assert any("(canary)" in move for _, move in figures["alias_moves"])
    assert figures["failed_during_switch"] == 0 and figures["requests_during_switch"] > 0
    assert set(figures["answers_by_package_version"]) == {"1", "2"}
    assert figures["approval_to_full_traffic_s"] > 0  # measured (bench-pipeline prints it); its bound is the run's
    # And off-domain traffic made the drift monitor start a retrain
    assert figures["drift_decision"] == "drift" and figures["drift_retrain_started"] is True
