"""Served traffic for drift tests: audit records of BANKING77 texts, as the predict API writes them.

The outputs are scripted, not predicted: in-domain, a model as good as its registered accuracy (right label
with high calibrated confidence, otherwise a wrong trained label with low confidence); off-domain (texts of
intents the model was never trained on), what a softmax classifier does with inputs outside its labels: it
still answers one of its labels, concentrated on a few look-alike intents, with low confidence, and abstains
below its threshold. What is under test is the monitor reading such records, not a classifier.
"""

from __future__ import annotations

import csv
import random
from datetime import datetime, timedelta
from pathlib import Path

from cnai.audit.trail import AuditRecord, Caller, OutputRecord, digest_inputs

ROOT = Path(__file__).resolve().parents[3]
BANKING77 = ROOT.parent / "shared" / "datasets" / "banking77"
MODEL = "banking77"


def banking_rows(split: str) -> list[tuple[str, str]]:
    """(text, intent) of a BANKING77 split."""
    with (BANKING77 / f"{split}.csv").open(newline="", encoding="utf-8") as handle:
        return [(row["text"], row["category"]) for row in csv.DictReader(handle)]


def intents(split: str = "train") -> list[str]:
    return sorted({label for _, label in banking_rows(split)})


def record(
    text: str,
    label: str | None,
    score: float,
    when: datetime,
    *,
    package_version: str = "1",
    store_text: bool = False,
    status: int = 200,
) -> AuditRecord:
    return AuditRecord(
        request_id=f"r{abs(hash((text, when.isoformat()))):x}",
        time=when.isoformat().replace("+00:00", "Z"),
        caller=Caller(kind="local", id="local:test"),
        path=f"/v1/models/{MODEL}/predict",
        model=MODEL,
        model_version="abc123",
        package_version=package_version,
        backend="local",
        inputs=digest_inputs([text]),
        texts=[text] if store_text else None,
        outputs=[OutputRecord(label=label, score=score)] if status == 200 else None,
        status=status,
        latency_ms=3.0,
    )


def in_domain(
    rows: list[tuple[str, str]], trained: list[str], end: datetime, *, accuracy: float = 0.9, seed: int = 1,
    store_text: bool = False,
) -> list[AuditRecord]:  # fmt: skip
    """A calibrated model as good as `accuracy` answering texts of the intents it was trained on."""
    rng = random.Random(seed)
    out = []
    for i, (text, label) in enumerate(rows):
        when = end - timedelta(minutes=1 + i % (20 * 60))
        if rng.random() < accuracy:
            out.append(record(text, label, rng.uniform(0.8, 0.99), when, store_text=store_text))
        else:
            wrong = rng.choice([t for t in trained if t != label])
            out.append(record(text, wrong, rng.uniform(0.3, 0.6), when, store_text=store_text))
    return out


def off_domain(
    rows: list[tuple[str, str]], trained: list[str], end: datetime, *, seed: int = 2, store_text: bool = False
) -> list[AuditRecord]:
    """The same model answering texts of intents it never saw: a few look-alike labels, low confidence,
    abstentions below 0.25."""
    rng = random.Random(seed)
    look_alikes = trained[:3]
    out = []
    for i, (text, _) in enumerate(rows):
        when = end - timedelta(minutes=1 + i % (20 * 60))
        score = rng.uniform(0.15, 0.55)
        label = None if score < 0.25 else rng.choice(look_alikes)
        out.append(record(text, label, score, when, store_text=store_text))
    return out
