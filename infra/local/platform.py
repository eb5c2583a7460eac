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
import random
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
STAGE = "local"


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


def synthesize() -> dict[str, dict[str, Any]]:
    """The CDK app's templates (no bundling: the local platform runs code from this checkout)."""
    import aws_cdk as cdk

    from infra.application import build

    app = cdk.App(context={"aws:cdk:bundling-stacks": [], "cnai:stage": STAGE})
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
    parser.add_argument("--profile", default="quick", help="models/train.py recipe profile")
    parser.add_argument("--min-accuracy", type=float, default=0.5, help="the quality gate's accuracy bar")
    parser.add_argument("--serve", action="store_true", help="keep serving after the run until Ctrl-C")
    parser.add_argument("--report", type=Path, default=None, help="write the run's figures as JSON here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.workdir.exists():
        shutil.rmtree(args.workdir)
    args.workdir.mkdir(parents=True)
    raise SystemExit("not wired yet")


if __name__ == "__main__":
    sys.exit(main())
