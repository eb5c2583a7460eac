"""The whole platform on one machine: the README's first command (`make run`).

No AWS account, no Docker. A moto server on 127.0.0.1 plays AWS; the CDK app is synthesized and its
templates "deployed" into it (infra/local/template.py); then, as a user would on AWS:

1. ingest: `cnai ingest` puts a slice of BANKING77 on the stream; the consumer function (in process, through
   the local event source mapping) curates it into the lake;
2. train: `cnai train start` starts the synthesized `train` state machine, executed by moto's ASL interpreter
   with our extension (cnai/local/stepfunctions.py): Lambda tasks reach our handlers in process, the SageMaker
   training job runs models/train.py as a local process; progress is shown state by state;
3. register + approve: the workflow registers a model package version (auto-approved here);
4. serve: `cnai serve --model NAME` serves the approved registry version over HTTP; one prediction is made,
   and its audit record is checked to name the registry version.

It ends by printing the URL, the version and its metrics (and, with --serve, keeps serving until Ctrl-C).
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import random
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from infra.local.functions import InProcessFunctions

ROOT = Path(__file__).resolve().parents[2]
STAGE = "local"
REGION = "us-east-1"


@dataclass
class Timings:
    """Seconds per phase and per state, for the summary and `make bench-pipeline`."""

    phases: dict[str, float] = field(default_factory=dict)
    states: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        say(f"▶ {name}")
        try:
            yield
        finally:
            self.phases[name] = round(time.perf_counter() - started, 2)
            say(f"  {name}: {self.phases[name]:.1f} s")


def say(message: str) -> None:
    print(message, flush=True)


def write_slice(source: Path, target: Path, *, per_label: int, labels: int | None, seed: int = 7) -> int:
    """A stratified slice of a BANKING77 CSV as JSON lines with today's timestamp (what producers send)."""
    by_label: dict[str, list[str]] = {}
    with source.open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            by_label.setdefault(row["category"], []).append(row["text"])
    chosen = sorted(by_label)[:labels] if labels else sorted(by_label)
    rng = random.Random(seed)
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    rows = []
    for label in chosen:
        texts = by_label[label]
        for text in rng.sample(texts, min(per_label, len(texts))):
            rows.append({"text": text, "label": label, "timestamp": now, "source": "banking77"})
    rng.shuffle(rows)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return len(rows)


def synthesize(context: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """The CDK app's templates (no bundling: the local platform runs code from this checkout); `context`: more
    `cnai:` settings (the local run's short canary)."""
    os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")  # jsii's banner, not ours to act on
    import aws_cdk as cdk

    from infra.application import build

    app = cdk.App(context={"aws:cdk:bundling-stacks": [], "cnai:stage": STAGE, **(context or {})})
    build(app)
    assembly = app.synth()
    return {stack.stack_name: stack.template for stack in assembly.stacks}


def cli(*args: str, env: dict[str, str], check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run the `cnai` command as a user would (a separate process, reaching moto through AWS_ENDPOINT_URL)."""
    result = subprocess.run(
        [sys.executable, "-m", "cnai", *args], env=env, cwd=ROOT, capture_output=True, text=True, check=False
    )
    if check and result.returncode != 0:
        raise RuntimeError(f"cnai {' '.join(args)} exited {result.returncode}: {result.stderr.strip()[-2000:]}")
    return result


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "datasets" / "banking77")
    parser.add_argument("--workdir", type=Path, default=ROOT / ".local" / "platform")
    parser.add_argument("--per-label", type=int, default=40, help="training rows per intent in the slice")
    parser.add_argument("--labels", type=int, default=None, help="intents in the slice (default: all 77)")
    parser.add_argument("--model", default="banking77", help="model name (one of the deployment's models)")
    parser.add_argument("--profile", default="quick", help="models/train.py recipe profile")
    parser.add_argument(
        "--hyperparameter",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a recipe override for models/train.py, as the console's input takes it (repeatable)",
    )
    parser.add_argument("--min-accuracy", type=float, default=0.5, help="the quality gate's accuracy bar")
    parser.add_argument(
        "--canary-s",
        type=int,
        default=3,
        help="how long the local canary serves (the deploy workflow's check interval; its minutes: 0)",
    )
    parser.add_argument("--canary-percent", type=int, default=20, help="the canary's share of the alias")
    parser.add_argument("--drift-texts", type=int, default=240, help="off-domain texts sent for the drift phase")
    parser.add_argument("--serve", action="store_true", help="keep serving after the run until Ctrl-C")
    parser.add_argument("--report", type=Path, default=None, help="write the run's figures as JSON here")
    args = parser.parse_args(argv)
    for item in args.hyperparameter:
        if "=" not in item or not item.split("=", 1)[0]:
            parser.error(f"--hyperparameter {item!r}: expected KEY=VALUE")
    return args


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def moto_server() -> Iterator[tuple[int, dict[str, str]]]:
    """A moto server on 127.0.0.1 in this process (the Step Functions extension patches it in place), with
    execution of state machines switched on; yields its port and the environment that points boto3 at it."""
    import urllib.request

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per AWS call would drown the progress
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    config = json.dumps({"stepfunctions": {"execute_state_machine": True}}).encode()
    request = urllib.request.Request(f"{endpoint}/moto-api/config", data=config, method="POST")
    urllib.request.urlopen(request, timeout=10).close()
    env = {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
        "AWS_SESSION_TOKEN": "local",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield port, env
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        server.stop()


def training_line(job: str, line: str) -> None:
    """The training job's log, indented under its state; progress-bar redraws are left to the log file."""
    if "\r" in line or "it/s]" in line:
        return
    say(f"    {job[-14:]} | {line.rstrip()}")


def http_json(method: str, url: str, body: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
    import urllib.error
    import urllib.request

    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def echo(stream: Iterator[str]) -> None:
    for line in stream:
        say(f"    serve | {line.rstrip()}")


def start_server(function: str, audit: Path, env: dict[str, str]) -> tuple[subprocess.Popen[str], str]:
    """`cnai serve --follow FUNCTION:live`: what the alias routes to (each version's pinned model, fetched from
    local S3), followed every 0.5 s; texts kept (redacted) in the audit records, for the drift phase. Its later
    lines (a switch of the alias, as the server saw it) are echoed as `serve |` lines."""
    process = subprocess.Popen(
        [sys.executable, "-m", "cnai", "serve", "--follow", f"{function}:live", "--follow-interval", "0.5",
         "--port", "0", "--audit", f"file:{audit}", "--store-text"],
        env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    assert process.stdout is not None
    deadline = time.monotonic() + 120
    for line in process.stdout:
        if line.startswith("serving on "):
            threading.Thread(target=echo, args=(process.stdout,), daemon=True).start()
            return process, line.split()[2]
        say(f"    serve | {line.rstrip()}")
        if time.monotonic() > deadline:
            break
    process.kill()
    raise RuntimeError(f"cnai serve did not start (exit {process.wait()})")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from cnai.local.kinesis import LocalEventSourceMapping
    from cnai.local.stepfunctions import LocalStepFunctions, LocalTrainingRunner
    from cnai.pipeline.progress import history, state_rows
    from infra.local.functions import InProcessFunctions
    from infra.local.rollout import describe_alias
    from infra.local.template import LocalDeployment

    if args.workdir.exists():
        shutil.rmtree(args.workdir)
    args.workdir.mkdir(parents=True)
    timings = Timings()
    started = time.perf_counter()
    result: dict[str, Any] = {"execution_status": "NOT_STARTED", "predictions_ok": 0}
    with timings.phase("synthesize the CDK app"):
        # The local canary is short: canary minutes 0, so the first check after `canary_s` promotes it.
        templates = synthesize({"cnai:deploy.canary_minutes": 0, "cnai:deploy.check_interval_s": args.canary_s,
                                "cnai:deploy.canary_percent": args.canary_percent})  # fmt: skip
    ingestion = next(name for name in templates if name.endswith("-ingestion"))
    prefix = ingestion.removesuffix("-ingestion")
    with moto_server() as (port, aws_env):
        import boto3

        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        with timings.phase("deploy the templates to the local platform (moto)"):
            deployment = LocalDeployment(templates)
            deployment.create(boto3.Session(region_name=REGION))
            # Function logs and EMF metrics would drown the progress lines: warnings only, no metrics locally.
            quiet = {"POWERTOOLS_LOG_LEVEL": "WARNING", "POWERTOOLS_METRICS_DISABLED": "true"}
            functions = InProcessFunctions(deployment.functions, extra_env=quiet)
            machines = deployment.resources("AWS::StepFunctions::StateMachine")
            say(f"  {len(deployment.functions)} functions, {len(machines)} state machines, "
                f"AWS at {aws_env['AWS_ENDPOINT_URL']}")  # fmt: skip
        runner = LocalTrainingRunner(
            source_dir=ROOT,
            work_dir=args.workdir / "jobs",
            python=sys.executable,
            env={"PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": str(os.cpu_count() or 1)},
            progress=training_line,
        )
        with LocalStepFunctions(functions.callables(), runner, server_port=port):
            stream = deployment.output(ingestion, "StreamName")
            with timings.phase(f"ingest a BANKING77 slice through {stream}"):
                records = write_slice(
                    args.data / "train.csv", args.workdir / "records.jsonl", per_label=args.per_label,
                    labels=args.labels,
                )  # fmt: skip
                sent = json.loads(cli("ingest", str(args.workdir / "records.jsonl"), "--stream", stream,
                                      "--tenant", "local", "--json", env=env).stdout)  # fmt: skip
                consumer = deployment.output(ingestion, "ConsumerFunction")
                mapping = LocalEventSourceMapping(
                    boto3.client("kinesis"), stream, functions.callables()[consumer], batch_size=500
                )
                drained = mapping.drain()
                say(f"  {records} records written, {sent['sent']} sent, {drained.invocations} consumer batches, "
                    f"{drained.dead_lettered} dead-lettered")  # fmt: skip
            result["records_in"] = records
            result["records_sent"], result["dead_lettered"] = sent["sent"], drained.dead_lettered
            lake = boto3.client("s3")
            bucket = deployment.output(ingestion, "LakeBucket")
            result["curated_objects"] = sum(
                page.get("KeyCount", 0)
                for page in lake.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="curated/")
            )
            if sent["sent"] != records or drained.dead_lettered or not result["curated_objects"]:
                # nothing may be lost on the way in: a short count stops the run before training hides it
                say(f"ingestion lost records: {records} written, {sent['sent']} sent, "
                    f"{drained.dead_lettered} dead-lettered, {result['curated_objects']} curated objects")  # fmt: skip
                return finish(result, timings, started, args.report, code=1)
            today = datetime.now(UTC).strftime("%Y-%m-%d")
            run_input = {
                "model": args.model,
                "dataset": {"from": today, "to": today},
                "profile": args.profile,
                # The quick recipe trains 2 + 3 epochs: its int8 student agrees with fp32 on ~98.5-99% of a small
                # test split, so the local run's parity bar is 0.98 (the default recipe keeps 0.99).
                "hyperparameters": {
                    "min_int8_agreement": "0.98",
                    **dict(item.split("=", 1) for item in args.hyperparameter),
                },
                "auto_approve": True,
                "thresholds": {"accuracy": args.min_accuracy, "macro_f1": args.min_accuracy / 2, "tolerance": 1.0},
            }
            (args.workdir / "input.json").write_text(json.dumps(run_input, indent=2))
            with timings.phase("train: the synthesized state machine, executed by moto + cnai.local.stepfunctions"):
                printed = cli("train", "start", "--input", str(args.workdir / "input.json"), env=env).stdout
                execution = next(line.strip() for line in printed.splitlines() if line.startswith("arn:"))
                follower = subprocess.Popen(
                    [sys.executable, "-m", "cnai", "train", "logs", execution], env=env, cwd=ROOT,
                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                )  # fmt: skip
                assert follower.stdout is not None
                for line in follower.stdout:
                    say(f"  {line.rstrip()}")
                follower.wait()
                sfn = boto3.client("stepfunctions")
                described = sfn.describe_execution(executionArn=execution)
                result["execution_status"] = described["status"]
                events, _ = history(sfn, execution)
                result["states_s"] = {row.name: row.seconds for row in state_rows(events) if row.seconds is not None}
            if described["status"] != "SUCCEEDED":
                say(f"training workflow {described['status']}: {described.get('error')}: {described.get('cause')}")
                return finish(result, timings, started, args.report, code=1)
            predict = deployment.output(next(n for n in templates if n.endswith("-serving")), "PredictFunctionName")
            models_audit = f"file:{args.workdir / 'models-audit.jsonl'}"
            with timings.phase(f"release version 1 on {predict}:live (cnai models promote)"):
                # The alias sits on the bootstrap version CloudFormation published (the stack's default artifact,
                # never uploaded locally): the first release goes to 100% at once, as docs/deploy.md describes.
                cli("models", "promote", args.model, "--function", predict, "--prefix", prefix, "--audit",
                    models_audit, "--reason", "first release on the local platform", env=env)  # fmt: skip
                alias = boto3.client("lambda").get_alias(FunctionName=predict, Name="live")
                say(f"  alias live: {describe_alias(alias)}")
            audit = args.workdir / "audit.jsonl"
            server, url = start_server(predict, audit, env)
            try:
                with timings.phase(f"serve {predict}:live with cnai serve --follow"):
                    shown = json.loads(cli("models", "show", args.model, "--prefix", prefix, "--json", env=env).stdout)
                    texts = ["I lost my card", "how do I top up by bank transfer?", "my card payment was declined"]
                    status, answer = http_json("POST", f"{url}/v1/models/{args.model}/predict", {"inputs": texts})
                    _, detail = http_json("GET", f"{url}/v1/models/{args.model}")
                    records_audited = [json.loads(line) for line in audit.read_text().splitlines() if line.strip()]
                    version = str(shown["version"])
                    # The served, audited identity is the registry's: the answer, the model detail and the
                    # audit record of this call all name the package version that was approved.
                    named = [r for r in records_audited if r.get("package_version") == version and r["status"] == 200]
                    ok = status == 200 and detail.get("package_version") == version and len(named) == 1
                    result["predictions_ok"] = len(answer.get("predictions", [])) if ok else 0
                    if not ok:
                        say(f"  ! predict {status}, detail version {detail.get('package_version')}, "
                            f"audit records naming version {version}: {len(named)}")  # fmt: skip
                    for text, prediction in zip(texts, answer.get("predictions", []), strict=False):
                        say(f"  {text!r} -> {prediction.get('label')} ({prediction.get('score', 0):.2f})")
                result.update(
                    model_package_version=version,
                    accuracy=shown.get("metrics", {}).get("accuracy"),
                    macro_f1=shown.get("metrics", {}).get("macro_f1"),
                    url=url,
                    approval=shown.get("approval"),
                    model_detail={k: v for k, v in detail.items() if k != "labels"},
                )
                if ok:
                    ok = roll_out(args, result, timings, deployment, templates, prefix, predict, url, models_audit, env)
                    inject_drift(args, result, timings, deployment, templates, url, audit, functions)
                if args.serve:
                    say(f"serving on {url} until Ctrl-C")
                    with contextlib_suppress_interrupt():
                        server.wait()
            finally:
                server.terminate()
                server.wait(10)
            training_job = json.loads(described.get("output") or "{}").get("training") or {}
            result["training_job"] = {k: training_job.get(k) for k in ("TrainingJobName", "TrainingTimeInSeconds",
                                                                       "BillableTimeInSeconds")}  # fmt: skip
    say(f"model {args.model} version {result['model_package_version']} ({result['approval']}): "
        f"accuracy {result['accuracy']}, macro-F1 {result['macro_f1']}; served at {result['url']} "
        f"(audited: {result['predictions_ok']} predictions)")  # fmt: skip
    if "approval_to_full_traffic_s" in result:
        say(f"version 2 approved -> 100% of the alias, as served, in {result['approval_to_full_traffic_s']} s; "
            f"{result['requests_during_switch']} requests during the switches, "
            f"{result['failed_during_switch']} failed; rolled back to version 1 by command; "
            f"drift retrain started: {result.get('drift_retrain_started')}")  # fmt: skip
    good = result["predictions_ok"] and result.get("rollout_ok")
    return finish(result, timings, started, args.report, code=0 if good else 1)


LOAD_TEXTS = ["I lost my card", "how do I top up by bank transfer?", "my card payment was declined",
              "what is the exchange rate", "I want to close my account", "where is my new card?"]  # fmt: skip


def roll_out(
    args: argparse.Namespace, result: dict[str, Any], timings: Timings, deployment: Any,
    templates: dict[str, dict[str, Any]], prefix: str, predict: str, url: str, models_audit: str, env: dict[str, str],
) -> bool:  # fmt: skip
    """A second version approved while a client keeps calling: the approval bridge starts the synthesized deploy
    state machine, the canary shows on the alias and in the server's answers, 100%, then a rollback by command.
    Fills approval_to_full_traffic_s, requests_during_switch, failed_during_switch; False when a step failed."""
    import boto3

    from cnai.local.events import ApprovalBridge, rules_from_template
    from cnai.pipeline.progress import history, state_rows
    from cnai.registry.packages import Registry
    from infra.local.rollout import AliasWatch, Load, wait_for
    from infra.local.template import ACCOUNT

    deploy_stack = next((n for n in templates if n.endswith("-deploy")), None)
    if deploy_stack is None:
        say("  no deploy stack in the app (cnai:deploy.enabled=false): no canary to show")
        return False
    registry = Registry.from_env(prefix)
    lambda_, sfn = boto3.client("lambda"), boto3.client("stepfunctions")

    def served() -> tuple[str | None, bool]:
        """(the registry version at 100%, whether a canary runs) as the server reports it."""
        _, detail = http_json("GET", f"{url}/v1/models/{args.model}")
        routing = detail.get("routing") or {}
        return (routing.get("stable") or {}).get("package_version"), routing.get("canary") is not None

    with timings.phase("register a second version (version 1's artifact, registered again)"):
        first = registry.version(args.model, 1)
        second = registry.create_version(
            args.model, image=first.image, model_data=first.model_data, report_uri=first.report_uri,
            metrics=first.metrics, lineage=first.lineage, approved=False,
            description="local platform: the artifact of version 1 registered again (a second training takes minutes)",
        )  # fmt: skip
        say(f"  version {second.version} ({second.approval}): {second.model_data}, the same artifact as version 1")
    rules = rules_from_template(templates[deploy_stack], lambda value: deployment.resolve(deploy_stack, value))
    bridge = ApprovalBridge(rules, boto3.client("sagemaker"), sfn, account=ACCOUNT, region=REGION)
    stop_bridge = bridge.watch(0.5)
    load = Load(url, args.model, LOAD_TEXTS).start()
    watch = AliasWatch(lambda_, predict, say)
    approved_at = time.monotonic()
    try:
        with timings.phase(
            f"approve version {second.version}: the deploy workflow's canary on {predict}:live, then 100%"
        ):
            wait_for(lambda: len(load.answers) >= 10, 30, "the client's first answers")
            watch.start()
            approved_at = watch.started = time.monotonic()
            cli("models", "approve", args.model, str(second.version), "--prefix", prefix, "--audit", models_audit,
                "--reason", "local platform: the second version", env=env)  # fmt: skip
            wait_for(lambda: bool(bridge.delivered), 30, "the approval event reaching the deploy rule")
            execution = bridge.delivered[0].execution_arn
            say(f"  approval -> rule {bridge.delivered[0].rule} -> {execution.rsplit(':', 1)[-1]}")
            wait_for(lambda: served() == (str(second.version), False), 120, "version 2 at 100% of the alias, as served")
            result["approval_to_full_traffic_s"] = round(time.monotonic() - approved_at, 2)
            wait_for(lambda: sfn.describe_execution(executionArn=execution)["status"] != "RUNNING", 60, "the deploy")
            result["deploy_execution_status"] = sfn.describe_execution(executionArn=execution)["status"]
            result["deploy_states"] = [row.name for row in state_rows(history(sfn, execution)[0])]
            answered, failed = load.since(approved_at)
            say(f"  deploy {result['deploy_execution_status']}: {' > '.join(result['deploy_states'])}; "
                f"answers by registry version {dict(answered)}, {failed} failed")  # fmt: skip
        with timings.phase("roll back to version 1 by command (cnai models rollback)"):
            rolled_at = time.monotonic()
            cli("models", "rollback", args.model, "--to", "1", "--function", predict, "--prefix", prefix,
                "--audit", models_audit, "--reason", "local platform: rollback by command", env=env)  # fmt: skip
            wait_for(lambda: served() == ("1", False), 60, "version 1 back at 100% of the alias, as served")
            result["rollback_to_served_s"] = round(time.monotonic() - rolled_at, 2)
            count = len(load.answers)
            wait_for(lambda: len(load.answers) >= count + 10, 30, "answers after the rollback")
    except (TimeoutError, RuntimeError) as exc:
        say(f"  ! {exc}")
        result["rollout_error"] = str(exc)
    finally:
        load.finish()
        watch.stop.set()
        stop_bridge()
    answered, failed = load.since(approved_at)
    result["requests_during_switch"] = sum(answered.values()) + failed
    result["failed_during_switch"] = failed
    result["answers_by_package_version"] = dict(answered)
    result["alias_moves"] = watch.seen
    if failed:
        say(f"  ! failed during the switch: {[f for _, f in load.failures[:5]]}")
    result["rollout_ok"] = (
        "rollout_error" not in result and failed == 0 and result.get("deploy_execution_status") == "SUCCEEDED"
        and set(answered) == {"1", str(second.version)}
    )  # fmt: skip
    return bool(result["rollout_ok"])


def inject_drift(
    args: argparse.Namespace, result: dict[str, Any], timings: Timings, deployment: Any,
    templates: dict[str, dict[str, Any]], url: str, audit: Path, functions: InProcessFunctions,
) -> None:  # fmt: skip
    """Texts of other domains sent to the server, then the drift monitor run once over them, as its scheduled
    function would (its environment from the template), with the audit source pointed at the records this phase
    added to the server's audit file (the canary's client traffic before it is left out: it is in-domain by
    construction). A retrain it starts is stopped at once: the run shows the decision, not a second training."""
    import dataclasses

    import boto3

    from cnai.monitoring.monitor import Clients, run_monitor_once
    from functions.drift_monitor.settings import DriftMonitorSettings
    from infra.local.rollout import off_domain_texts

    result["drift_retrain_started"] = False
    monitoring = next((n for n in templates if n.endswith("-monitoring")), None)
    if monitoring is None:
        say("  no monitoring stack in the app (cnai:drift.enabled=false): drift not run")
        return
    with timings.phase(f"inject drift: {args.drift_texts} off-domain texts, then the drift monitor once"):
        offset = audit.stat().st_size
        texts = off_domain_texts(args.drift_texts)
        refused = 0
        for i in range(0, len(texts), 8):
            status, _ = http_json("POST", f"{url}/v1/models/{args.model}/predict", {"inputs": texts[i : i + 8]})
            refused += status != 200
        window = args.workdir / "drift-window.jsonl"
        window.write_bytes(audit.read_bytes()[offset:])
        time.sleep(1.0)  # the monitor's window ends at `now` cut to the second: these records must be before it
        function = deployment.output(monitoring, "DriftMonitorFunction")
        settings = DriftMonitorSettings.from_env(deployment.functions[function].environment)
        config = dataclasses.replace(settings.config(args.model), audit_source=f"file:{window}")
        sfn = boto3.client("stepfunctions")
        clients = Clients(s3=boto3.client("s3"), sfn=sfn, dynamodb=boto3.client("dynamodb"),
                          sagemaker=boto3.client("sagemaker"))  # fmt: skip
        calls_before = functions.calls()
        report = run_monitor_once(config, clients)
        started = report.action.kind == "retrain_started"
        result.update(drift_retrain_started=started, drift_decision=report.decision, drift_reasons=report.reasons,
                      drift_predictions=report.window.predictions, drift_refused_calls=refused)  # fmt: skip
        say(f"  {report.window.predictions} predictions scored: {report.decision} ({'; '.join(report.reasons)[:300]})"
            f" -> {report.action.kind}")  # fmt: skip
        if started and report.action.execution_arn:
            # moto's interpreter sets an execution's worker up on its own thread: a stop that arrives before the
            # first state has begun fails inside moto (a server-side traceback). Wait for that state, then stop.
            arn = report.action.execution_arn
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and len(sfn.get_execution_history(executionArn=arn)["events"]) < 2:
                time.sleep(0.2)
            sfn.stop_execution(executionArn=arn,
                               error="LocalPlatform", cause="the drift retrain is shown started, not run")  # fmt: skip
            # The stop does not interrupt a state already running (PrepareDataset snapshots the lake): let it end
            # before the server goes, or its S3 calls fail against a stopped server and moto prints the trace.
            functions.settle(calls_before)
            say(f"  retrain execution {report.action.execution_arn.rsplit(':', 1)[-1]} started (stopped: not run here)")


@contextmanager
def contextlib_suppress_interrupt() -> Iterator[None]:
    try:
        yield
    except KeyboardInterrupt:
        say("stopping")


def finish(result: dict[str, Any], timings: Timings, started: float, report: Path | None, code: int) -> int:
    result["e2e_s"] = round(time.perf_counter() - started - timings.phases.get("synthesize the CDK app", 0.0), 1)
    result["phases_s"] = timings.phases
    say(f"end to end {result['e2e_s']} s after synthesis ({timings.phases.get('synthesize the CDK app', 0):.0f} s)")
    if report is not None:
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text(json.dumps(result, indent=2, default=str) + "\n")
        say(f"figures: {report}")
    return code


if __name__ == "__main__":
    sys.exit(main())
