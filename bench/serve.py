"""`make bench-serve`: serving figures, printed and written to reports/bench-serve.json.

1. The predict Lambda handler in process, with real API Gateway REST events (tests/events/), 1 thread,
   audit on stdout and metrics on, as deployed: p50/p99 for one text, p50 for a batch of 32, beside the
   model alone (one text p50, batch of 32 per text) measured in the same run; cold init (imports + model
   load) in fresh interpreters, min/median/max, plain and with the X-Ray SDK loaded as in Lambda with
   tracing on; layer + function unzipped size (INF's `make layers`).
2. `cnai serve` under wrk (a compiled load generator: the Python one in bench/loadgen.py shares the
   cores and caps what it measures, so it is used only with --python-loadgen; bounded in requests and
   seconds, loopback only), beside two peers behind the same HTTP server and worker count: the teacher
   through a transformers pipeline on PyTorch (bench/serve_peer.py), and the teacher's int8 ONNX run with
   an onnxruntime session and the Hugging Face tokenizer as ONNX Runtime's examples do
   (bench/serve_ort_peer.py).

The model: reports/bench-distill/model (the full BANKING77 student) if it exists, else the tiny profile
trained here into reports/bench-serve/model. The in-memory cache is off for every timing (each request a
different BANKING77 test text, and CNAI_CACHE_SIZE=0), so the figures measure the model, not the cache.
Benchmarks print; they assert nothing about time.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import contextlib
import copy
import csv
import io
import json
import os
import re
import shutil
import statistics
import subprocess
import tempfile
import time
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
EVENT = ROOT / "tests" / "events" / "apigw_rest_predict.json"
KEYS = (
    "handler_p50_ms", "handler_p99_ms", "handler_batch32_ms", "model_p50_ms", "model_batch32_per_text_ms",
    "handler_cpu_ms", "model_cpu_ms", "model_batch32_per_text_cpu_ms",
    "cold_init_ms", "cold_init_traced_ms", "package_unzipped_mb",
    "serve_rps", "serve_p99_ms", "serve_errors", "peer_rps", "peer_p99_ms", "ort_peer_rps", "ort_peer_p99_ms",
    "ort_peer_errors", "load_generator",
)  # fmt: skip


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def read_texts(path: Path) -> list[str]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(dict.fromkeys(row["text"] for row in csv.DictReader(handle)))


def find_artifact(out: Path, data: Path) -> tuple[Path, Path | None, Path | None]:
    """(student artifact, fine-tuned teacher weights or None, the teacher's int8 ONNX or None)."""
    full = out / "bench-distill" / "model"
    if (full / "model_card.json").is_file():
        teacher = out / "bench-distill" / "data" / "teacher" / "model.safetensors"
        onnx = out / "bench-distill" / "data" / "onnx" / "teacher.int8.onnx"
        return full, teacher if teacher.is_file() else None, onnx if onnx.is_file() else None
    work = out / "bench-serve"
    model = work / "model"
    if not (model / "model_card.json").is_file():
        print("no reports/bench-distill/model: training the tiny profile into reports/bench-serve/model", flush=True)
        slices = work / "data"
        slices.mkdir(parents=True, exist_ok=True)
        for split, per_label in (("train", 40), ("test", 15)):
            with (data / f"{split}.csv").open(newline="", encoding="utf-8") as handle:
                rows = list(csv.DictReader(handle))
            keep = sorted({r["category"] for r in rows})[:12]
            chosen = [r for label in keep for r in [x for x in rows if x["category"] == label][:per_label]]
            with (slices / f"{split}.csv").open("w", newline="", encoding="utf-8") as handle:
                writer = csv.DictWriter(handle, fieldnames=["text", "category"])
                writer.writeheader()
                writer.writerows({"text": r["text"], "category": r["category"]} for r in chosen)
        command = [
            sys.executable, "-m", "models.train", "--profile", "tiny",
            "--train", str(slices / "train.csv"), "--test", str(slices / "test.csv"),
            "--model-dir", str(model), "--output-data-dir", str(work / "train"), "--checkpoint-dir", str(work / "ckpt"),
        ]  # fmt: skip
        subprocess.run(command, cwd=ROOT, check=True)
    teacher = work / "train" / "teacher" / "model.safetensors"
    onnx = work / "train" / "onnx" / "teacher.int8.onnx"
    return model, teacher if teacher.is_file() else None, onnx if onnx.is_file() else None


# ---- 1. the handler in process ----


def bench_handler(model: Path, texts: list[str], calls: int, batches: int) -> dict[str, float]:
    env = {
        "CNAI_MODEL_URI": str(model),
        "CNAI_AUDIT_SINK": "stdout",
        "CNAI_THREADS": "1",
        "CNAI_CACHE_SIZE": "0",
        "CNAI_MAX_INPUTS": "64",
        "POWERTOOLS_SERVICE_NAME": "cnai-predict",
    }
    os.environ.update(env)
    from cnai.local.context import LocalContext
    from cnai.serving.api import ServingOptions, build_api
    from cnai.serving.backends import LocalBackend
    from functions.predict import handler as module
    from functions.predict.settings import load_settings

    module.API = build_api(ServingOptions.of(load_settings(env)))
    name = next(iter(module.API.service.backends))
    base = json.loads(EVENT.read_text(encoding="utf-8"))
    base["path"] = f"/v1/models/{name}/predict"
    base["pathParameters"] = {"model": name}

    backend = module.API.service.backends[name]
    assert isinstance(backend, LocalBackend)
    predictor = backend.predictor

    def run(requests: list[list[str]]) -> dict[str, list[float]]:
        """Each request through the handler, then the same texts through the model alone (one text:
        `probabilities`, the model's own p50; a batch: the serving path, `served_probabilities`), call by
        call, so the host's noise (other processes preempting this one) hits both alike. Wall ms and this
        thread's CPU ms of each."""
        events = []
        for texts_of in requests:
            event = copy.deepcopy(base)
            event["body"] = json.dumps({"inputs": texts_of[0] if len(texts_of) == 1 else texts_of})
            events.append(event)
        out: dict[str, list[float]] = {"handler": [], "handler_cpu": [], "model": [], "model_cpu": []}
        sink = io.StringIO()
        with contextlib.redirect_stdout(sink):  # audit lines and EMF metrics, as on Lambda's stdout
            for event, texts_of in zip(events, requests, strict=True):
                context = LocalContext()
                started, cpu = time.perf_counter(), time.thread_time()
                response = module.handler(event, context)
                out["handler"].append((time.perf_counter() - started) * 1000)
                out["handler_cpu"].append((time.thread_time() - cpu) * 1000)
                if response["statusCode"] != 200:
                    raise SystemExit(f"handler answered {response['statusCode']}: {response['body'][:300]}")
                sink.seek(0)
                sink.truncate()
                started, cpu = time.perf_counter(), time.thread_time()
                if len(texts_of) == 1:
                    predictor.probabilities(texts_of)
                else:
                    predictor.served_probabilities(texts_of)
                out["model"].append((time.perf_counter() - started) * 1000)
                out["model_cpu"].append((time.thread_time() - cpu) * 1000)
        return out

    singles = [[texts[i % len(texts)]] for i in range(calls)]
    run(singles[:50])  # warm-up: first-call allocations, lazily built objects
    single = run(singles)
    groups = [[texts[(i * 32 + j) % len(texts)] for j in range(32)] for i in range(batches)]
    batch = run(groups)
    mean = statistics.mean
    return {
        "model_p50_ms": statistics.median(single["model"]),
        "model_p99_ms": percentile(single["model"], 99),
        "model_batch32_per_text_ms": statistics.median(batch["model"]) / 32,
        "handler_p50_ms": statistics.median(single["handler"]),
        "handler_p99_ms": percentile(single["handler"], 99),
        "handler_batch32_ms": statistics.median(batch["handler"]),
        "handler_batch32_p99_ms": percentile(batch["handler"], 99),
        # CPU time per call (means): what each costs, whatever the host's load
        "handler_cpu_ms": mean(single["handler_cpu"]),
        "model_cpu_ms": mean(single["model_cpu"]),
        "model_batch32_per_text_cpu_ms": mean(batch["model_cpu"]) / 32,
    }


def bench_cold_init(model: Path, runs: int, traced: bool = False) -> list[float]:
    """`runs` fresh interpreters, each importing the handler module (which loads the model), timed."""
    script = (
        "import time; t = time.perf_counter(); import functions.predict.handler as h; "
        "print('COLD', (time.perf_counter() - t) * 1000)"
    )
    env = {
        **os.environ,
        "CNAI_MODEL_URI": str(model),
        "CNAI_AUDIT_SINK": "stdout",
        "PYTHONPATH": str(ROOT),
        "POWERTOOLS_LOG_LEVEL": "WARNING",
    }
    env.pop("LAMBDA_TASK_ROOT", None)
    if traced:  # as in Lambda with tracing on: the X-Ray SDK recorder is built (nothing is sent at import)
        env["LAMBDA_TASK_ROOT"] = str(ROOT)
        env["AWS_XRAY_CONTEXT_MISSING"] = "IGNORE_ERROR"
    figures = []
    for _ in range(runs):
        result = subprocess.run(
            [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
        )
        match = re.search(r"COLD ([\d.]+)", result.stdout)
        if not match:
            raise SystemExit(f"cold init run failed: {result.stderr[-1500:]}")
        figures.append(float(match.group(1)))
    return figures


def tree_mb(paths: list[Path]) -> float:
    """Unzipped bytes as Lambda counts them (no caches), in MB; the rule of layers/build.py."""
    total = 0
    for root in paths:
        for path in [root] if root.is_file() else root.rglob("*"):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
                total += path.stat().st_size
    return total / 1e6


def package_size() -> tuple[float | None, str]:
    layer = ROOT / "build" / "layers" / "runtime" / "python"
    if not layer.is_dir():
        return None, "build/layers/runtime/python missing: run `make layers` (INF's layer build) first"
    function = [ROOT / "functions" / "__init__.py", ROOT / "functions" / "predict", ROOT / "cnai"]
    layer_mb, function_mb = tree_mb([layer]), tree_mb(function)
    return layer_mb + function_mb, f"layer {layer_mb:.1f} MB + function {function_mb:.2f} MB"


# ---- 2. HTTP: cnai serve vs the peer ----


def start(command: list[str], env: dict[str, str], ready_s: float = 300) -> tuple[subprocess.Popen[str], str, str]:
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert process.stdout is not None
    deadline = time.monotonic() + ready_s
    seen = []
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        seen.append(line)
        match = re.search(r"serving on (http://127\.0\.0\.1:\d+)", line)
        if match:
            return process, match.group(1), line.strip()
    process.kill()
    raise SystemExit("server did not start:\n" + "".join(seen[-30:]))


def stop(process: subprocess.Popen[str]) -> None:
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()


WRK_SCRIPT = """
local bodies = {%(bodies)s}
local counter = 0
local limit = %(limit)d
request = function()
  counter = counter + 1
  return wrk.format("POST", "%(path)s", {["Content-Type"] = "application/json"}, bodies[(counter %% #bodies) + 1])
end
response = function(status, headers, body)
  if counter >= limit then wrk.thread:stop() end
end
done = function(summary, latency, requests)
  io.write(string.format('WRKJSON {"requests": %%d, "duration_us": %%d, "p50_us": %%d, "p99_us": %%d, ' ..
    '"connect": %%d, "read": %%d, "write": %%d, "status": %%d, "timeout": %%d}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    summary.errors.connect, summary.errors.read, summary.errors.write, summary.errors.status, summary.errors.timeout))
end
"""


def find_wrk(python_loadgen: bool) -> str | None:
    """wrk's path, or None when the caller chose the Python generator; stops with what to do otherwise."""
    wrk = shutil.which("wrk")
    if wrk or python_loadgen:
        return wrk
    raise SystemExit(
        "bench-serve needs wrk, a compiled HTTP load generator (the Python one shares the server's cores and caps"
        " what it can measure on a small host): install it (`apt-get install wrk`, `brew install wrk`), or pass"
        " --python-loadgen to use bench/loadgen.py and report its figures as such"
    )


def load(
    url: str, path: str, texts: list[str], connections: int, seconds: float, max_requests: int, wrk: str | None
) -> dict[str, Any]:
    """Drive the server; returns rps, p50_ms, p99_ms, errors, requests, tool."""
    bodies = [json.dumps({"inputs": t}) for t in texts]
    if not url.startswith("http://127.0.0.1:"):
        raise SystemExit(f"refusing to load anything but loopback: {url}")
    if wrk:
        threads = min(2, connections)
        with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
            quoted = ",".join("[==[" + b + "]==]" for b in bodies if "]==]" not in b)
            script.write(WRK_SCRIPT % {"bodies": quoted, "limit": max(1, max_requests // threads), "path": path})
        try:
            result = subprocess.run(
                [wrk, f"-t{threads}", f"-c{connections}", f"-d{int(seconds)}s", "--timeout", "10s", "-s", script.name,
                 url],
                capture_output=True, text=True, timeout=seconds + 60,
            )  # fmt: skip
        finally:
            Path(script.name).unlink()
        match = re.search(r"WRKJSON (\{.*\})", result.stdout)
        if not match:
            raise SystemExit(f"wrk failed: {result.stdout[-800:]} {result.stderr[-800:]}")
        data = json.loads(match.group(1))
        errors = sum(data[k] for k in ("connect", "read", "write", "status", "timeout"))
        return {
            "rps": data["requests"] / (data["duration_us"] / 1e6),
            "p50_ms": data["p50_us"] / 1000,
            "p99_ms": data["p99_us"] / 1000,
            "errors": errors,
            "requests": data["requests"],
            "tool": f"{wrk_version(wrk)} -t{threads} -c{connections} -d{int(seconds)}s",
        }
    from bench.loadgen import run as loadgen

    return loadgen(url, path, bodies, connections, seconds, max_requests)


def wrk_version(wrk: str) -> str:
    """e.g. "wrk 4.1.0" (wrk prints its version with its usage, and exits 1)."""
    result = subprocess.run([wrk, "-v"], capture_output=True, text=True, timeout=10)
    match = re.search(r"wrk\s+(?:\S+/)?(\d[\w.+-]*)", result.stdout + result.stderr)
    return f"wrk {match.group(1)}" if match else "wrk"


def bench_http(
    model: Path,
    teacher: Path | None,
    teacher_onnx: Path | None,
    texts: list[str],
    connections: int,
    seconds: float,
    max_requests: int,
    workers: int,
    wrk: str | None,
) -> dict[str, Any]:
    """cnai serve with one worker per core; the peer in both sensible setups (one process with PyTorch's
    threads, or one worker per core with one thread each), keeping the peer's better throughput."""
    env = {**os.environ, "CNAI_CACHE_SIZE": "0", "PYTHONPATH": str(ROOT), "TOKENIZERS_PARALLELISM": "false"}
    env.pop("LAMBDA_TASK_ROOT", None)
    figures: dict[str, Any] = {}
    audit = ROOT / "reports" / "bench-serve" / "audit.jsonl"
    audit.parent.mkdir(parents=True, exist_ok=True)
    audit.unlink(missing_ok=True)

    def measure(command: list[str], path: str, warm: int) -> tuple[dict[str, Any], str]:
        process, url, line = start(command, env)
        try:
            load(url, path, texts[:200], connections, 2, warm, wrk)  # warm-up: first requests, lazy allocations
            return load(url, path, texts, connections, seconds, max_requests, wrk), line
        finally:
            stop(process)

    ours = [sys.executable, "-m", "cnai", "serve", "--model-dir", str(model), "--port", "0", "--name", "bench",
            "--audit", f"file:{audit}", "--workers", str(workers)]  # fmt: skip
    result, _ = measure(ours, "/v1/models/bench/predict", 2000)
    figures.update({f"serve_{k}": result[k] for k in ("rps", "p50_ms", "p99_ms", "errors", "requests")})
    figures["load_tool"], figures["serve_setup"] = result["tool"], f"{workers} worker(s) x 1 onnxruntime thread"
    audited = sum(1 for _ in audit.open(encoding="utf-8")) if audit.exists() else 0
    figures["serve_audited"] = audited

    def best_setup(key: str, title: str, command: list[str], name: str, threads_flag: str, warm: int) -> None:
        """Run a peer in both setups (one process with its library's threads; one worker per core with one
        thread each) and record the faster under `key`_*."""
        setups = [[], ["--workers", str(workers), threads_flag, "1"]] if workers > 1 else [[]]
        runs = []
        for extra in setups:
            result, line = measure(command + extra, f"/v1/models/{name}/predict", warm)
            runs.append((result, line.split(" (", 1)[-1].removesuffix(")")))
            print(f"  {title} {runs[-1][1]}: {result['rps']:.0f} req/s, p99 {result['p99_ms']:.1f} ms", flush=True)
        result, described = max(runs, key=lambda r: r[0]["rps"])
        figures.update({f"{key}_{k}": result[k] for k in ("rps", "p50_ms", "p99_ms", "errors", "requests")})
        figures[f"{key}_model"] = described

    peer = [sys.executable, str(ROOT / "bench" / "serve_peer.py"), "--labels", str(model / "labels.json"),
            "--port", "0"] + (["--teacher", str(teacher)] if teacher is not None else [])  # fmt: skip
    best_setup("peer", "peer", peer, "peer", "--torch-threads", 200)

    if teacher_onnx is None:
        print("  ORT peer skipped: no teacher int8 ONNX (make bench-distill writes it)", flush=True)
        return figures
    ort_peer = [sys.executable, str(ROOT / "bench" / "serve_ort_peer.py"), "--model", str(teacher_onnx),
                "--labels", str(model / "labels.json"), "--port", "0"]  # fmt: skip
    best_setup("ort_peer", "ORT peer", ort_peer, "ortpeer", "--threads", 500)
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="serving benchmark: prints figures, writes reports/bench-serve.json")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "datasets" / "banking77")
    parser.add_argument("--out", type=Path, default=ROOT / "reports")
    parser.add_argument("--calls", type=int, default=2000, help="one-text handler calls")
    parser.add_argument("--batches", type=int, default=200, help="32-text handler calls")
    parser.add_argument("--cold-runs", type=int, default=10, help="fresh interpreters per cold-init figure")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10.0, help="each HTTP run is bounded by this ...")
    parser.add_argument("--max-requests", type=int, default=50_000, help="... and by this many requests")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="server processes (default: CPUs)")
    parser.add_argument("--skip-http", action="store_true")
    parser.add_argument("--python-loadgen", action="store_true", help="without wrk: bench/loadgen.py (asyncio)")
    args = parser.parse_args(argv)
    wrk = None if args.skip_http else find_wrk(args.python_loadgen)

    model, teacher, teacher_onnx = find_artifact(args.out, args.data)
    texts = read_texts(args.data / "test.csv")
    card = json.loads((model / "model_card.json").read_text(encoding="utf-8"))
    print(f"model {card['name']} {card['version']} from {model} ({(model / 'model.onnx').stat().st_size / 1e6:.1f} "
          f"MB onnx, {card['num_labels']} labels); {len(texts)} distinct test texts", flush=True)  # fmt: skip

    figures: dict[str, Any] = {}
    plain = bench_cold_init(model, args.cold_runs)
    traced = bench_cold_init(model, args.cold_runs, traced=True)
    figures["cold_init_ms"], figures["cold_init_traced_ms"] = statistics.median(plain), statistics.median(traced)
    figures["package_unzipped_mb"], size_note = package_size()
    figures.update(bench_handler(model, texts, args.calls, args.batches))
    if not args.skip_http:
        figures.update(
            bench_http(
                model, teacher, teacher_onnx, texts, args.connections, args.seconds, args.max_requests, args.workers,
                wrk,
            )
        )  # fmt: skip
        figures["load_generator"] = figures["load_tool"]

    report = {k: figures.get(k) for k in KEYS}
    report = {k: (round(v, 3) if isinstance(v, float) else v) for k, v in report.items()}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench-serve.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")

    def show(value: Any, unit: str = "") -> str:
        return "n/a" if value is None else (f"{value:.2f}{unit}" if isinstance(value, float) else f"{value}{unit}")

    def spread(values: list[float]) -> str:
        return f"{min(values):.0f} / {statistics.median(values):.0f} / {max(values):.0f} ms"

    handler_p50, model_p50 = figures.get("handler_p50_ms"), figures.get("model_p50_ms")
    overhead = f"{handler_p50 / model_p50:.2f}x the model's p50" if handler_p50 and model_p50 else ""
    per_text = figures.get("model_batch32_per_text_ms")
    batch_ratio = f"{per_text / model_p50:.2f}x one text's p50" if per_text and model_p50 else ""
    h_cpu, m_cpu, b_cpu = (figures.get(k) for k in ("handler_cpu_ms", "model_cpu_ms", "model_batch32_per_text_cpu_ms"))
    cpu_note = (
        f"handler {h_cpu / m_cpu:.2f}x the model; batch of 32 {b_cpu / m_cpu:.2f}x one text, per text"
        if h_cpu and m_cpu and b_cpu
        else ""
    )
    rows = [
        ("handler one text p50 (1 thread)", show(handler_p50, " ms"), f"{overhead} (<= 1.5x)"),
        ("handler one text p99", show(figures.get("handler_p99_ms"), " ms"), "<= 4 ms"),
        (
            "  the ONNX model alone, p50 / p99",
            f"{show(model_p50)} / {show(figures.get('model_p99_ms'))} ms",
            "",
        ),
        ("handler batch of 32, p50", show(figures.get("handler_batch32_ms"), " ms"), ""),
        ("  the model alone, batch of 32, per text", show(per_text, " ms"), f"{batch_ratio} (<= 0.5x)"),
        (
            "CPU ms per call: handler / model, one text",
            f"{show(figures.get('handler_cpu_ms'))} / {show(figures.get('model_cpu_ms'))}",
            cpu_note,
        ),
        (f"cold init, {len(plain)} fresh interpreters", spread(plain), "min / median / max"),
        ("  with the X-Ray SDK (Lambda, tracing on)", spread(traced), "median <= 150 ms"),
        ("layer + function unzipped", show(figures.get("package_unzipped_mb"), " MB"), f"<= 120 MB ({size_note})"),
    ]
    if not args.skip_http:
        ratio = figures["serve_rps"] / figures["peer_rps"] if figures.get("peer_rps") else float("nan")
        rows += [
            (f"cnai serve ({figures['load_tool']})", f"{figures['serve_rps']:.0f} req/s", figures["serve_setup"]),
            ("  p50 / p99", f"{figures['serve_p50_ms']:.2f} / {figures['serve_p99_ms']:.2f} ms", ""),
            ("  errors", show(figures["serve_errors"]), f"0 (audit records written: {figures['serve_audited']})"),
            ("peer: teacher, transformers pipeline", f"{figures['peer_rps']:.0f} req/s", figures["peer_model"]),
            ("  p50 / p99", f"{figures['peer_p50_ms']:.2f} / {figures['peer_p99_ms']:.2f} ms", ""),
            ("  errors", show(figures["peer_errors"]), "0"),
            ("throughput cnai / peer", f"{ratio:.1f}x", ">= 10x at lower p99"),
        ]
        if figures.get("ort_peer_rps"):
            ort_ratio = figures["serve_rps"] / figures["ort_peer_rps"]
            rows += [
                ("ORT peer: teacher int8 ONNX + HF tokenizer", f"{figures['ort_peer_rps']:.0f} req/s",
                 figures["ort_peer_model"]),
                ("  p50 / p99", f"{figures['ort_peer_p50_ms']:.2f} / {figures['ort_peer_p99_ms']:.2f} ms", ""),
                ("  errors", show(figures["ort_peer_errors"]), "0"),
                ("throughput cnai / ORT peer", f"{ort_ratio:.1f}x", ">= 3x at lower p99"),
            ]  # fmt: skip
    width = max(len(r[0]) for r in rows)
    for label, value, target in rows:
        print(f"{label:<{width}}  {value:>18}  {target}")
    load = os.getloadavg()
    print(f"host: {os.cpu_count()} CPUs, load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (1/5/15 min)")
    print(f"figures: {args.out / 'bench-serve.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
