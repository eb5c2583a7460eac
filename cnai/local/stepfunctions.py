"""The state machines CDK synthesizes, executed on this machine: moto's ASL interpreter, extended at two points.

moto (5.2.x) runs Amazon States Language in process (its parser is LocalStack's interpreter): Choice, Map,
Parallel, Retry/Catch, intrinsic functions and the SNS, DynamoDB, EventBridge and aws-sdk integrations, all
against its own backends. Two things it cannot do without Docker or at all, and that `LocalStepFunctions` adds
while it is active:

1. **Lambda tasks.** moto would run a function's code in a container. Both Lambda resource forms
   (`arn:aws:states:::lambda:invoke` and a bare function ARN) end in ONE module function,
   `lambda_eval_utils._invoke_lambda_function`; we replace it so the call reaches an injected Python callable
   in this process and answers with Lambda's Invoke response (an exception becomes `FunctionError` with the
   Python runtime's error payload, so moto's own error mapping gives the Error/Cause AWS gives).
2. **SageMaker training jobs.** moto maps the `sagemaker` service to a pass-through without `.sync`, and its
   CreateTrainingJob marks a job Completed at once without running anything. We replace the factory function
   `state_task_factory.state_task_service_for` for `sagemaker` only: `createTrainingJob` records the job in
   moto's SageMaker backend (so DescribeTrainingJob works for everyone) and hands it to `LocalTrainingRunner`,
   which runs the entry point as a local process under SageMaker's environment contract; `.sync` polls
   DescribeTrainingJob as Step Functions does. Other SageMaker actions keep moto's pass-through.

Both patches are module attributes swapped on `__enter__` and restored on `__exit__`; the module refuses a
moto minor version other than the one these seams were read from (`MOTO_SERIES`). See docs/local-platform.md.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import logging
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Final

from cnai.local.context import LocalContext

log = logging.getLogger("cnai.local.stepfunctions")

MOTO_SERIES: Final = "5.2"  # the moto minor whose interpreter seams this module patches
LambdaHandler = Callable[[dict[str, Any], Any], Any]
Progress = Callable[[str, str], None]  # (training job name, log line)

_TERMINAL = frozenset({"Completed", "Failed", "Stopped"})
_HOST = "algo-1"  # SageMaker's name for the first (here: only) host of a training job


def check_moto_version(version: str | None = None) -> str:
    """The patched functions are private to moto: a different minor may have moved them. Refuse it loudly."""
    if version is None:
        import moto

        version = str(moto.__version__)
    if not (version == MOTO_SERIES or version.startswith(MOTO_SERIES + ".")):
        raise RuntimeError(
            f"cnai.local.stepfunctions patches moto {MOTO_SERIES}.x's Step Functions interpreter, found moto "
            f"{version}: pin moto to {MOTO_SERIES}.* in constraints.txt or re-read the seams in "
            "moto/stepfunctions/parser/ and update this module"
        )
    return version


# --------------------------------------------------------------------------------------------- Lambda


def function_name_of(name_or_arn: str) -> str:
    """The function name in any form Lambda's Invoke accepts: name, name:qualifier, full or partial ARN."""
    parts = name_or_arn.split(":")
    if name_or_arn.startswith("arn:"):
        if len(parts) < 7 or parts[2] != "lambda" or parts[5] != "function":
            raise ValueError(f"FunctionName: not a Lambda function ARN: {name_or_arn!r}")
        return parts[6]
    if len(parts) >= 3 and parts[1] == "function":  # partial ARN: 123456789012:function:name[:qualifier]
        return parts[2]
    return parts[0]


def invoke_in_process(handler: LambdaHandler, name: str, payload: bytes | None, *, timeout_s: float) -> dict[str, Any]:
    """Lambda's synchronous Invoke response for `handler(event, context)`, run here.

    An unhandled exception answers as Lambda's Python runtime does: StatusCode 200, FunctionError "Unhandled"
    and a payload {errorMessage, errorType, requestId, stackTrace}; a result that is not JSON is the runtime's
    Runtime.MarshalError. moto's interpreter turns FunctionError into the task error named by errorType with the
    payload as Cause, the way Step Functions does, so Retry/Catch on it behave as in AWS."""
    context = LocalContext(function_name=name, timeout_s=timeout_s)
    event = json.loads(payload) if payload else {}
    try:
        result = handler(event, context)
        try:
            body: Any = json.loads(json.dumps(result))
        except (TypeError, ValueError) as exc:
            body = _error_payload("Runtime.MarshalError", f"Unable to marshal response: {exc}", context, [])
            return {"StatusCode": 200, "FunctionError": "Unhandled", "ExecutedVersion": "$LATEST", "Payload": body}
    except Exception as exc:
        stack = traceback.format_list(traceback.extract_tb(exc.__traceback__)[1:])  # drop this frame
        body = _error_payload(type(exc).__name__, str(exc), context, stack)
        log.info("lambda %s raised %s: %s", name, type(exc).__name__, exc)
        return {"StatusCode": 200, "FunctionError": "Unhandled", "ExecutedVersion": "$LATEST", "Payload": body}
    return {"StatusCode": 200, "ExecutedVersion": "$LATEST", "Payload": body}


def _error_payload(error_type: str, message: str, context: LocalContext, stack: list[str]) -> dict[str, Any]:
    return {"errorMessage": message, "errorType": error_type, "requestId": context.aws_request_id, "stackTrace": stack}


# ------------------------------------------------------------------------------------------ training


@dataclass
class TrainingFaults:
    """Faults to inject, consumed as they fire (tests and demos; empty by default).

    create_errors: error codes raised by the next CreateTrainingJob calls, one per call, as SageMaker's API
        would (e.g. "ResourceLimitExceeded" for an instance quota, "ThrottlingException").
    spot_interruptions: how many times to interrupt managed-spot jobs: once the process has written a
        checkpoint, it gets SIGTERM (SIGKILL after the grace period), the checkpoints are synced to S3, the local
        ones wiped (a new instance), synced back, and the entry point restarted within the same job."""

    create_errors: list[str] = field(default_factory=list)
    spot_interruptions: int = 0


@dataclass
class LocalTrainingRunner:
    """Runs training jobs as local processes under SageMaker's training environment contract.

    source_dir: the code directory (SageMaker extracts sagemaker_submit_directory there; locally, the
        repository); the entry point HyperParameters["sagemaker_program"] runs from it, as the cwd.
    work_dir: one folder per job playing /opt/ml (input/data/<channel>, model, output/data, checkpoints).
    python: the interpreter for the entry point; args: extra command-line arguments after the hyperparameters
        (e.g. ["--profile", "quick"]); env: extra environment variables.
    progress: called with (job name, line) for each line the process prints; every line also goes to
        <work_dir>/<job>/training.log.
    """

    source_dir: Path
    work_dir: Path
    python: str = sys.executable
    args: Sequence[str] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    progress: Progress | None = None
    checkpoint_sync_s: float = 2.0  # how often checkpoints are pushed to CheckpointConfig.S3Uri while running
    stop_grace_s: float = 30.0  # SIGTERM -> SIGKILL (SageMaker gives 120 s; shorter here)
    spot_restart_delay_s: float = 0.0  # simulated wait for spot capacity after an interruption
    faults: TrainingFaults = field(default_factory=TrainingFaults)
    _jobs: dict[str, _Job] = field(default_factory=dict, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def take_create_fault(self) -> str | None:
        with self._lock:
            return self.faults.create_errors.pop(0) if self.faults.create_errors else None

    def _take_interruption(self) -> bool:
        with self._lock:
            if self.faults.spot_interruptions <= 0:
                return False
            self.faults.spot_interruptions -= 1
            return True

    def start(self, record: Any, request: Mapping[str, Any], s3: Any) -> None:
        """Run the job described by `request` (CreateTrainingJob's parameters) in a thread, keeping `record`
        (moto's FakeTrainingJob) current: what DescribeTrainingJob answers is what the runner writes there."""
        name = str(request["TrainingJobName"])
        job = _Job(self, record, dict(request), s3, self.work_dir / name)
        with self._lock:
            self._jobs[name] = job
        job.thread.start()

    def wait(self, name: str, timeout_s: float | None = None) -> str:
        """Block until the job ends; its final TrainingJobStatus."""
        job = self._jobs[name]
        job.thread.join(timeout_s)
        return str(job.record.training_job_status)

    def close(self) -> None:
        """Stop every job still running (end of a session): SIGKILL, no upload."""
        for job in list(self._jobs.values()):
            job.abandon()
        for job in list(self._jobs.values()):
            job.thread.join(10)


class _Job:
    """One training job: download channels, run (and maybe restart) the entry point, upload, record status."""

    def __init__(self, runner: LocalTrainingRunner, record: Any, request: dict[str, Any], s3: Any, root: Path):
        self.runner, self.record, self.request, self.s3, self.root = runner, record, request, s3, root
        self.name = str(request["TrainingJobName"])
        self.spot = bool(request.get("EnableManagedSpotTraining"))
        stopping = request.get("StoppingCondition") or {}
        self.max_runtime = float(stopping.get("MaxRuntimeInSeconds") or 86400)
        self.max_wait = float(stopping.get("MaxWaitTimeInSeconds") or 0) or None
        self.metrics = [
            (str(m["Name"]), re.compile(str(m["Regex"])))
            for m in (request.get("AlgorithmSpecification") or {}).get("MetricDefinitions") or []
        ]
        self.process: subprocess.Popen[str] | None = None
        self.tail: list[str] = []  # the last lines printed, for FailureReason
        self.started = time.monotonic()
        self.waited = 0.0  # seconds spent waiting for spot capacity: not billed
        self.abandoned = False
        self.log_lock = threading.Lock()
        self.thread = threading.Thread(target=self._main, name=f"training-{self.name}", daemon=True)

    # ---- status, as DescribeTrainingJob shows it
    def _status(self, status: str, secondary: str, message: str) -> None:
        now = dt.datetime.now(dt.UTC)
        transitions = list(self.record.secondary_status_transitions or [])
        if transitions and "EndTime" not in transitions[-1]:
            transitions[-1] = {**transitions[-1], "EndTime": now}
        transitions.append({"Status": secondary, "StartTime": now, "StatusMessage": message})
        if status in _TERMINAL:
            transitions[-1]["EndTime"] = now
        self.record.secondary_status_transitions = transitions
        self.record.training_job_status, self.record.secondary_status = status, secondary
        self.record.last_modified_time = now
        self._log(f"[{self.name}] {status}/{secondary}: {message}")

    def _log(self, line: str) -> None:
        with self.log_lock:
            self.root.mkdir(parents=True, exist_ok=True)
            with (self.root / "training.log").open("a", encoding="utf-8") as handle:
                handle.write(line + "\n")
        for metric, pattern in self.metrics:
            match = pattern.search(line)
            if match:
                with contextlib.suppress(ValueError, IndexError):
                    self._metric(metric, float(match.group(1)))
        if self.runner.progress is not None:
            self.runner.progress(self.name, line)

    def _metric(self, metric: str, value: float) -> None:
        kept = [m for m in self.record.final_metric_data_list or [] if m["MetricName"] != metric]
        now = dt.datetime.now(dt.UTC)
        self.record.final_metric_data_list = [*kept, {"MetricName": metric, "Value": value, "Timestamp": now}]

    # ---- the job
    def _main(self) -> None:
        if self.root.exists():  # a job name is unique in SageMaker; a leftover dir is from an earlier session
            shutil.rmtree(self.root)
        self.started = time.monotonic()
        self.record.model_artifacts = None  # moto pre-fills it; SageMaker shows it once the model is uploaded
        self.record.final_metric_data_list = []
        self.record.secondary_status_transitions = []
        self.record.training_start_time = dt.datetime.now(dt.UTC)
        try:
            status, secondary, reason = self._run()
        except Exception as exc:
            log.exception("training job %s failed outside the entry point", self.name)
            status, secondary, reason = "Failed", "Failed", f"ClientError: {exc}"
        wall = time.monotonic() - self.started
        training = max(1, math.ceil(wall))
        self.record.training_end_time = dt.datetime.now(dt.UTC)
        self.record.training_time_in_seconds = training
        self.record.billable_time_in_seconds = max(1, training - int(self.waited)) if self.spot else training
        if reason is not None:
            self.record.failure_reason = reason
        self._status(status, secondary, reason or "Training job completed")

    def _run(self) -> tuple[str, str, str | None]:
        self._status("InProgress", "Starting", "Preparing the instances for training")
        paths = self._layout()
        self._status("InProgress", "Downloading", "Downloading input data")
        channels = self._download_channels(paths["data"])
        self._sync_checkpoints_down(paths["checkpoints"])
        runtime = 0.0
        while True:
            self._status("InProgress", "Training", "Training image download completed. Training in progress.")
            interrupt = self.spot and self.runner.faults.spot_interruptions > 0
            code, ran, why = self._run_process(
                paths, channels, interrupt=interrupt, runtime_left=self.max_runtime - runtime
            )
            runtime += ran
            self._sync_checkpoints_up(paths["checkpoints"])
            if self.abandoned:
                return "Stopped", "Stopped", "Stopped with the local session"
            if why == "interrupted":
                self._status("InProgress", "Interrupted", "Spot interruption: the job will resume from its checkpoints")
                time.sleep(self.runner.spot_restart_delay_s)
                self.waited += self.runner.spot_restart_delay_s
                for name in ("checkpoints", "model", "output_data"):  # a new instance starts empty
                    shutil.rmtree(paths[name], ignore_errors=True)
                    paths[name].mkdir(parents=True)
                self._status("InProgress", "Restarting", "Restarting training with the synced checkpoints")
                self._sync_checkpoints_down(paths["checkpoints"])
                continue
            if why == "max_runtime":
                return "Stopped", "MaxRuntimeExceeded", None
            if why == "max_wait":
                return "Stopped", "MaxWaitTimeExceeded", None
            if code != 0:
                return "Failed", "Failed", self._failure_reason(paths, code)
            self._status("InProgress", "Uploading", "Uploading generated training model")
            self._upload_outputs(paths)
            return "Completed", "Completed", None

    def _layout(self) -> dict[str, Path]:
        paths = {
            "data": self.root / "input" / "data",
            "config": self.root / "input" / "config",
            "model": self.root / "model",
            "output": self.root / "output",
            "output_data": self.root / "output" / "data",
            "checkpoints": self.root / "checkpoints",
        }
        for path in paths.values():
            path.mkdir(parents=True, exist_ok=True)
        hps = self.request.get("HyperParameters") or {}
        (paths["config"] / "hyperparameters.json").write_text(json.dumps(hps), encoding="utf-8")
        (paths["config"] / "inputdataconfig.json").write_text(
            json.dumps({c["ChannelName"]: {k: v for k, v in c.items() if k != "DataSource"}
                        for c in self.request.get("InputDataConfig") or []}), encoding="utf-8",
        )  # fmt: skip
        (paths["config"] / "resourceconfig.json").write_text(
            json.dumps({"current_host": _HOST, "hosts": [_HOST]}), encoding="utf-8"
        )
        return paths

    def _download_channels(self, data: Path) -> dict[str, Path]:
        channels: dict[str, Path] = {}
        for channel in self.request.get("InputDataConfig") or []:
            name = str(channel["ChannelName"])
            source = (channel.get("DataSource") or {}).get("S3DataSource")
            if not source:
                raise ValueError(f"InputDataConfig[{name}]: only S3DataSource channels run locally")
            if source.get("S3DataType", "S3Prefix") != "S3Prefix":
                raise ValueError(f"InputDataConfig[{name}].S3DataType: only S3Prefix runs locally")
            target = data / name
            target.mkdir(parents=True, exist_ok=True)
            if not self._download_prefix(str(source["S3Uri"]), target):
                raise ValueError(f"No S3 objects found under S3 URL {source['S3Uri']!r} given in input data source")
            channels[name] = target
        return channels

    def _download_prefix(self, uri: str, target: Path) -> int:
        bucket, prefix = split_s3_uri(uri)
        count = 0
        for key in _list_keys(self.s3, bucket, prefix):
            relative = key[len(prefix) :].lstrip("/") or key.rsplit("/", 1)[-1]
            if not relative or key.endswith("/"):
                continue
            path = target / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            self.s3.download_file(bucket, key, str(path))
            count += 1
        return count

    def _checkpoint_uri(self) -> str | None:
        config = self.request.get("CheckpointConfig") or {}
        uri = config.get("S3Uri")
        return None if not uri else str(uri).rstrip("/") + "/"

    def _sync_checkpoints_down(self, local: Path) -> None:
        uri = self._checkpoint_uri()
        if uri:
            count = self._download_prefix(uri, local)
            if count:
                self._log(f"[{self.name}] restored {count} checkpoint file(s) from {uri}")

    def _sync_checkpoints_up(self, local: Path, seen: dict[Path, tuple[int, int]] | None = None) -> None:
        uri = self._checkpoint_uri()
        if not uri:
            return
        bucket, prefix = split_s3_uri(uri)
        for path in sorted(p for p in local.rglob("*") if p.is_file()):
            try:
                stat = path.stat()
            except FileNotFoundError:  # the trainer replaced it meanwhile; the next pass takes the new one
                continue
            mark = (stat.st_size, stat.st_mtime_ns)
            if seen is not None and seen.get(path) == mark:
                continue
            # Upload a copy: the trainer may still be writing the file (a .tmp before its rename), and a file that
            # grows or shrinks during a multipart upload fails it (EntityTooSmall). A partial copy is replaced on
            # the next pass (its size/mtime mark differs); the final state is synced after the process exits.
            staged = self.root / "checkpoint-upload.tmp"
            try:
                shutil.copyfile(path, staged)
            except FileNotFoundError:  # renamed away between listing and copy (tmp file -> checkpoint)
                continue
            try:
                self.s3.upload_file(str(staged), bucket, prefix + path.relative_to(local).as_posix())
            finally:
                staged.unlink(missing_ok=True)
            if seen is not None:
                seen[path] = mark

    def _environment(self, paths: dict[str, Path], channels: dict[str, Path]) -> tuple[dict[str, str], list[str]]:
        raw = {str(k): str(v) for k, v in (self.request.get("HyperParameters") or {}).items()}
        user = {k: _decode_hp(v) for k, v in raw.items() if not k.startswith("sagemaker_")}
        cli = [part for k, v in user.items() for part in (f"--{k}", v if isinstance(v, str) else json.dumps(v))]
        resource = self.request.get("ResourceConfig") or {}
        env = {**os.environ, **self.runner.env}
        env.update({
            "PYTHONUNBUFFERED": "1",
            "TRAINING_JOB_NAME": self.name,
            "TRAINING_JOB_ARN": str(self.record.arn),
            "SM_CURRENT_HOST": _HOST,
            "SM_HOSTS": json.dumps([_HOST]),
            "SM_CURRENT_INSTANCE_TYPE": str(resource.get("InstanceType", "local")),
            "SM_NUM_CPUS": str(os.cpu_count() or 1),
            "SM_NUM_GPUS": "0",
            "SM_MODEL_DIR": str(paths["model"]),
            "SM_INPUT_DIR": str(paths["data"].parent),
            "SM_INPUT_DATA_DIR": str(paths["data"]),
            "SM_INPUT_CONFIG_DIR": str(paths["config"]),
            "SM_OUTPUT_DIR": str(paths["output"]),
            "SM_OUTPUT_DATA_DIR": str(paths["output_data"]),
            "SM_CHECKPOINT_DIR": str(paths["checkpoints"]),  # ours: /opt/ml/checkpoints does not exist here
            "SM_CHANNELS": json.dumps(sorted(channels)),
            "SM_HPS": json.dumps(user),
            "SM_USER_ARGS": json.dumps(cli),
            "SM_USER_ENTRY_POINT": _decode_hp(raw.get("sagemaker_program", "")),
            "SM_MODULE_DIR": _decode_hp(raw.get("sagemaker_submit_directory", "")),
        })  # fmt: skip
        for name, path in channels.items():
            env[f"SM_CHANNEL_{name.upper()}"] = str(path)
        for key, value in user.items():
            env[f"SM_HP_{key.upper().replace('-', '_')}"] = value if isinstance(value, str) else json.dumps(value)
        return env, cli

    def _command(self, cli: list[str]) -> list[str]:
        program = _decode_hp(str((self.request.get("HyperParameters") or {}).get("sagemaker_program", "")))
        if not isinstance(program, str) or not program:
            raise ValueError("HyperParameters.sagemaker_program: required (the entry point, e.g. models/train.py)")
        entry = (self.runner.source_dir / program).resolve()
        if not entry.is_file():
            raise ValueError(f"HyperParameters.sagemaker_program: {program!r} not found in {self.runner.source_dir}")
        return [self.runner.python, str(entry), *cli, *self.runner.args]

    def _run_process(
        self, paths: dict[str, Path], channels: dict[str, Path], *, interrupt: bool, runtime_left: float
    ) -> tuple[int, float, str | None]:
        """Run the entry point once: (exit code, seconds it ran, why it was stopped or None)."""
        env, cli = self._environment(paths, channels)
        command = self._command(cli)
        self._log(f"[{self.name}] $ {' '.join(command)}")
        started = time.monotonic()
        self.process = subprocess.Popen(
            command, cwd=self.runner.source_dir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, bufsize=1, start_new_session=True,
        )  # fmt: skip
        self.tail = []
        reader = threading.Thread(target=self._read, args=(self.process,), daemon=True)
        reader.start()
        seen: dict[Path, tuple[int, int]] = {}
        before = {p: p.stat().st_mtime_ns for p in paths["checkpoints"].rglob("*") if p.is_file()}
        last_sync, why = started, None
        try:
            while self.process.poll() is None:
                time.sleep(0.1)
                now = time.monotonic()
                if self.abandoned:
                    self._signal(signal.SIGKILL)
                    break
                if now - started > runtime_left:
                    why = "max_runtime"
                elif self.max_wait is not None and now - self.started > self.max_wait:
                    why = "max_wait"
                elif interrupt and self._checkpoint_written(paths["checkpoints"], before):
                    if not self.runner._take_interruption():  # another job took the last one
                        interrupt = False
                        continue
                    self._sync_checkpoints_up(paths["checkpoints"], seen)
                    self._log(f"[{self.name}] spot interruption: SIGTERM to the training process")
                    why = "interrupted"
                if why is not None:
                    self._stop()
                    break
                if now - last_sync >= self.runner.checkpoint_sync_s:
                    self._sync_checkpoints_up(paths["checkpoints"], seen)
                    last_sync = now
        except BaseException:  # the job fails on our side (S3, disk): the process must not outlive it
            self._signal(signal.SIGKILL)
            raise
        code = self.process.wait()
        reader.join(5)
        ran = time.monotonic() - started
        self._log(f"[{self.name}] entry point exited with {code} after {ran:.1f}s")
        return code, ran, why

    def _checkpoint_written(self, local: Path, before: dict[Path, int]) -> bool:
        """A checkpoint file written in this run. It may still be in the writing: the entry point answers
        SIGTERM by finishing its checkpoint, and the sync after it exits uploads the final state."""
        for path in local.rglob("*"):
            with contextlib.suppress(FileNotFoundError):
                if path.is_file() and before.get(path) != path.stat().st_mtime_ns:
                    return True
        return False

    def _read(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        for raw in process.stdout:
            line = raw.rstrip("\n")
            self.tail = [*self.tail[-19:], line]
            self._log(line)

    def _signal(self, sig: signal.Signals) -> None:
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, sig)

    def _stop(self) -> None:
        """SIGTERM to the process group (torchrun and its workers), SIGKILL after the grace period."""
        self._signal(signal.SIGTERM)
        assert self.process is not None
        try:
            self.process.wait(self.runner.stop_grace_s)
        except subprocess.TimeoutExpired:
            self._signal(signal.SIGKILL)

    def abandon(self) -> None:
        self.abandoned = True
        self._signal(signal.SIGKILL)

    def _failure_reason(self, paths: dict[str, Path], code: int) -> str:
        """SageMaker's FailureReason: the entry point's /opt/ml/output/failure file if it wrote one, else
        AlgorithmError with the exit code and the last lines it printed."""
        failure = paths["output"] / "failure"
        if failure.is_file():
            return failure.read_text(encoding="utf-8", errors="replace")[:1024]
        tail = "\n".join(self.tail[-5:])
        return f"AlgorithmError: ExecuteUserScriptError:\nExitCode {code}\nErrorMessage {tail!r}"[:1024]

    def _upload_outputs(self, paths: dict[str, Path]) -> None:
        output = self.request.get("OutputDataConfig") or {}
        base = str(output["S3OutputPath"]).rstrip("/") + f"/{self.name}/output/"
        bucket, prefix = split_s3_uri(base)
        for folder, name in ((paths["model"], "model.tar.gz"), (paths["output_data"], "output.tar.gz")):
            self.s3.upload_fileobj(io.BytesIO(_targz(folder)), bucket, prefix + name)
        self.record.model_artifacts = {"S3ModelArtifacts": base + "model.tar.gz"}


def _targz(folder: Path) -> bytes:
    """The folder's contents at the archive's top level, as SageMaker tars /opt/ml/model."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for child in sorted(folder.iterdir()):
            archive.add(child, arcname=child.name)
    return buffer.getvalue()


def _decode_hp(value: str) -> Any:
    """The training toolkit JSON-decodes each hyperparameter string it can (the SDK JSON-encodes them)."""
    try:
        return json.loads(value)
    except (TypeError, ValueError):
        return value


def split_s3_uri(uri: str) -> tuple[str, str]:
    bucket, _, key = uri[5:].partition("/")
    if not uri.startswith("s3://") or not bucket:
        raise ValueError(f"not an S3 URI: {uri!r}")
    return bucket, key


def _list_keys(s3: Any, bucket: str, prefix: str) -> Iterator[str]:
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            yield str(item["Key"])


# ------------------------------------------------------------------------------- the interpreter seams


def _jsonable(value: Any) -> Any:
    """DescribeTrainingJob as Step Functions hands it on: timestamps as epoch milliseconds."""
    if isinstance(value, dt.datetime):
        return int(value.timestamp() * 1000)
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value


def sagemaker_error_name(code: str) -> str:
    """The Step Functions error name for a SageMaker API error code (the optimized integration names errors
    after the service SDK's exception classes): modeled errors (ResourceLimitExceeded, ResourceInUse,
    ResourceNotFound, ConflictException) get their own name, e.g. "SageMaker.ResourceLimitExceededException";
    every other code (ValidationException, ThrottlingException, ...) is "SageMaker.AmazonSageMakerException",
    with the code in the Cause."""
    modeled = {"ConflictException", "ResourceInUse", "ResourceLimitExceeded", "ResourceNotFound"}
    if code in modeled:
        return f"SageMaker.{code}" + ("" if code.endswith("Exception") else "Exception")
    return "SageMaker.AmazonSageMakerException"


def _sagemaker_task_class() -> type:
    """Built lazily: importing moto's interpreter takes a while and the library imports no AWS code at import."""
    from botocore.exceptions import ClientError
    from moto.sagemaker.models import sagemaker_backends
    from moto.stepfunctions.parser.api import HistoryEventType, TaskFailedEventDetails
    from moto.stepfunctions.parser.asl.component.common.error_name.custom_error_name import CustomErrorName
    from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import (
        FailureEvent,
        FailureEventException,
    )
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import StatesErrorName
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name_type import (
        StatesErrorNameType,
    )
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.resource import ResourceCondition
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_callback import (
        StateTaskServiceCallback,
    )
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_unsupported import (
        StateTaskServiceUnsupported,
    )
    from moto.stepfunctions.parser.asl.utils.boto_client import boto_client_for
    from moto.stepfunctions.parser.asl.utils.encoding import to_json_str

    # moto's callback base sets up (and always releases) a callback endpoint only when WaitForTaskToken is in
    # this set, so .sync needs both, as in moto's own ECS/Batch tasks; SageMaker's .waitForTaskToken is refused.
    patterns: Any = {ResourceCondition.Sync, ResourceCondition.WaitForTaskToken}

    def client_error(code: str, message: str, operation: str) -> ClientError:
        meta = {"HTTPStatusCode": 400, "RequestId": str(uuid.uuid4())}
        return ClientError({"Error": {"Code": code, "Message": message}, "ResponseMetadata": meta}, operation)

    class LocalSageMakerTask(StateTaskServiceUnsupported):
        """`arn:aws:states:::sagemaker:createTrainingJob[.sync]` run by a LocalTrainingRunner; every other
        SageMaker action keeps moto's pass-through (StateTaskServiceUnsupported forwards it to moto)."""

        runner: LocalTrainingRunner

        def __init__(self) -> None:
            StateTaskServiceCallback.__init__(self, supported_integration_patterns=patterns)

        def _training(self) -> bool:
            return bool(self.resource.api_action.lower() == "createtrainingjob")

        def _validate_service_integration_is_supported(self) -> None:
            if not self._training():
                super()._validate_service_integration_is_supported()
            elif self.resource.condition == ResourceCondition.WaitForTaskToken:
                raise ValueError(f"{self.resource.resource_arn}: SageMaker does not support .waitForTaskToken")

        def _task_failed(self, env: Any, error_name: Any, error: str, cause: str) -> Any:
            details: Any = {
                "taskFailedEventDetails": TaskFailedEventDetails(
                    error=error, cause=cause, resource=self._get_sfn_resource(),
                    resourceType=self._get_sfn_resource_type(),
                )
            }  # fmt: skip
            return FailureEvent(
                env=env, error_name=error_name, event_type=HistoryEventType.TaskFailed, event_details=details
            )

        def _from_error(self, env: Any, ex: Exception) -> Any:
            """CreateTrainingJob's API errors, named and worded as Step Functions reports them."""
            if not (isinstance(ex, ClientError) and self._training()):
                return super()._from_error(env=env, ex=ex)
            error, meta = ex.response.get("Error", {}), ex.response.get("ResponseMetadata", {})
            code, message = str(error.get("Code", "Unknown")), str(error.get("Message", ""))
            name = sagemaker_error_name(code)
            cause = (
                f"{message} (Service: AmazonSageMaker; Status Code: {meta.get('HTTPStatusCode', 400)}; "
                f"Error Code: {code}; Request ID: {meta.get('RequestId', '')}; Proxy: null)"
            )
            return self._task_failed(env, CustomErrorName(name), name, cause)

        def _eval_service_task(
            self, env: Any, resource_runtime_part: Any, normalised_parameters: dict[str, Any], state_credentials: Any
        ) -> None:
            if not self._training():
                super()._eval_service_task(env, resource_runtime_part, normalised_parameters, state_credentials)
                return
            region = resource_runtime_part.region
            name = str(normalised_parameters.get("TrainingJobName", ""))
            fault = self.runner.take_create_fault()
            if fault is not None:
                raise client_error(fault, f"Injected fault: {fault} (cnai.local.stepfunctions)", "CreateTrainingJob")
            sagemaker = boto_client_for(region=region, service="sagemaker", state_credentials=state_credentials)
            try:
                sagemaker.describe_training_job(TrainingJobName=name)
            except ClientError:
                pass  # unknown name: the only one SageMaker accepts (moto does not check it)
            else:
                raise client_error(
                    "ValidationException",
                    "Training job names must be unique within an AWS account and region, and a training job "
                    f"with this name already exists ({name})",
                    "CreateTrainingJob",
                )
            response = sagemaker.create_training_job(**normalised_parameters)
            arn = str(response["TrainingJobArn"])  # arn:aws:sagemaker:<region>:<account>:training-job/<name>
            _, _, _, arn_region, account, _ = arn.split(":", 5)
            record = sagemaker_backends[account][arn_region].training_jobs[name]
            record.training_job_status, record.secondary_status = "InProgress", "Starting"
            # moto overwrites the request's MetricDefinitions with a sample of its own; keep the caller's
            record.algorithm_specification = dict(normalised_parameters.get("AlgorithmSpecification") or {})
            s3 = boto_client_for(region=region, service="s3", state_credentials=state_credentials)
            self.runner.start(record, normalised_parameters, s3)
            env.stack.append({"TrainingJobArn": arn})

        def _build_sync_resolver(
            self, env: Any, resource_runtime_part: Any, normalised_parameters: dict[str, Any], state_credentials: Any
        ) -> Callable[[], Any] | None:
            """Polls DescribeTrainingJob (moto's record, kept by the runner) until the job ends."""
            if not self._training():
                return super()._build_sync_resolver(
                    env, resource_runtime_part, normalised_parameters, state_credentials
                )
            env.stack.pop()  # CreateTrainingJob's own output; .sync answers with DescribeTrainingJob instead
            name = str(normalised_parameters["TrainingJobName"])
            sagemaker = boto_client_for(
                region=resource_runtime_part.region, service="sagemaker", state_credentials=state_credentials
            )

            def resolve() -> Any:
                described = sagemaker.describe_training_job(TrainingJobName=name)
                described.pop("ResponseMetadata", None)
                if described["TrainingJobStatus"] not in _TERMINAL:
                    return None
                output = _jsonable(described)
                if described["TrainingJobStatus"] == "Completed":
                    return output
                # A job that ends Failed/Stopped fails the .sync task as States.TaskFailed with the job's
                # description (FailureReason, SecondaryStatus) as the Cause, as Step Functions' .sync does.
                error = StatesErrorNameType.StatesTaskFailed
                raise FailureEventException(
                    self._task_failed(env, StatesErrorName(typ=error), error.to_name(), to_json_str(output))
                )

            return resolve

    return LocalSageMakerTask


_ACTIVE = threading.Lock()  # the seams are module globals of moto: one extension active per process


class LocalStepFunctions:
    """While active (a context manager), moto's interpreter runs Lambda tasks and SageMaker training jobs here.

    lambdas: function name (or full ARN) -> handler(event, context); a task naming a function not in it fails
        with Lambda.ResourceNotFoundException, as Invoke would.
    training: the runner for createTrainingJob; without one, SageMaker tasks keep moto's behaviour.
    server_port: the port of a moto server in this process (ThreadedMotoServer); moto's interpreter sends its
        own service calls to localhost:$MOTO_PORT when no in-process mock is active, so it is set while active.
    """

    def __init__(
        self,
        lambdas: Mapping[str, LambdaHandler],
        training: LocalTrainingRunner | None = None,
        *,
        lambda_timeout_s: float = 900.0,
        server_port: int | None = None,
    ) -> None:
        self.lambdas = {function_name_of(k): v for k, v in lambdas.items()}
        self.training = training
        self.lambda_timeout_s = lambda_timeout_s
        self.server_port = server_port
        self._restore: list[Callable[[], None]] = []

    def _invoke(self, parameters: dict[str, Any], region: str, state_credentials: Any) -> dict[str, Any]:
        """Replaces moto's `lambda_eval_utils._invoke_lambda_function` (the one call both Lambda task forms
        make): the function's handler runs in this process instead of a container."""
        from botocore.exceptions import ClientError

        target = str(parameters.get("FunctionName", ""))
        name = function_name_of(target)
        handler = self.lambdas.get(name)
        if handler is None:
            known = ", ".join(sorted(self.lambdas))
            error = {"Code": "ResourceNotFoundException", "Message": f"Function not found: {target} (local: {known})"}
            meta = {"HTTPStatusCode": 404, "RequestId": str(uuid.uuid4())}
            raise ClientError({"Error": error, "ResponseMetadata": meta}, "Invoke")
        if parameters.get("InvocationType", "RequestResponse") != "RequestResponse":
            raise ValueError(f"{name}: only RequestResponse invocations run locally")
        return invoke_in_process(handler, name, parameters.get("Payload"), timeout_s=self.lambda_timeout_s)

    def __enter__(self) -> LocalStepFunctions:
        check_moto_version()
        if not _ACTIVE.acquire(blocking=False):
            raise RuntimeError("a LocalStepFunctions is already active in this process (the seams are global)")
        try:
            self._install()
        except BaseException:
            self._uninstall()
            raise
        return self

    def _install(self) -> None:
        from moto.stepfunctions.parser.asl.component.state.exec.state_task import (
            lambda_eval_utils,
            state_task_factory,
        )

        original_invoke = lambda_eval_utils._invoke_lambda_function
        lambda_eval_utils._invoke_lambda_function = self._invoke
        self._restore.append(lambda: setattr(lambda_eval_utils, "_invoke_lambda_function", original_invoke))

        if self.training is not None:
            runner = self.training
            task_class = _sagemaker_task_class()
            original_factory = state_task_factory.state_task_service_for

            def service_for(service_name: str) -> Any:
                """Replaces moto's `state_task_service_for` for "sagemaker" only."""
                if service_name != "sagemaker":
                    return original_factory(service_name=service_name)
                task = task_class()
                task.runner = runner
                return task

            state_task_factory.state_task_service_for = service_for
            self._restore.append(lambda: setattr(state_task_factory, "state_task_service_for", original_factory))
            self._restore.append(runner.close)

        self._allow_rethrown_states_errors()

        if self.server_port is not None:
            previous = os.environ.get("MOTO_PORT")
            os.environ["MOTO_PORT"] = str(self.server_port)

            def restore_port() -> None:
                if previous is None:
                    os.environ.pop("MOTO_PORT", None)
                else:
                    os.environ["MOTO_PORT"] = previous

            self._restore.append(restore_port)

    def _allow_rethrown_states_errors(self) -> None:
        """A Fail state whose ErrorPath resolves to a caught "States.*" error (the usual re-throw after a Catch
        to a notify step: ErrorPath "$.error.Error") fails the execution with that error in AWS; moto builds
        the name with CustomErrorName, which refuses the "States." prefix, and ends in States.Runtime instead.
        Only the Fail state's name class is swapped (moto's Catch/Retry matching is untouched)."""
        from moto.stepfunctions.parser.asl.component.common.error_name.error_name import ErrorName
        from moto.stepfunctions.parser.asl.component.state.fail import state_fail

        class FailStateErrorName(ErrorName):
            pass

        original = state_fail.CustomErrorName
        state_fail.CustomErrorName = FailStateErrorName  # type: ignore[misc,assignment]
        self._restore.append(lambda: setattr(state_fail, "CustomErrorName", original))

    def _uninstall(self) -> None:
        try:
            while self._restore:
                self._restore.pop()()
        finally:
            _ACTIVE.release()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._uninstall()
