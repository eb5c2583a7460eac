"""bench/ingest.py: its books come from what a real run wrote and dead-lettered, not from constants."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench import ingest as bench
from cnai.ingest.consumer import LakeWriter

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION", "CNAI_LAKE_BUCKET",
       "CNAI_IDEMPOTENCY_TABLE", "POWERTOOLS_METRICS_DISABLED", "POWERTOOLS_LOG_LEVEL")  # fmt: skip


@pytest.fixture(autouse=True)
def _restore_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # The bench sets these for its in-process moto run; the test gives them back afterwards.
    for name in ENV:
        monkeypatch.setenv(name, "x")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)


def test_dead_lettered_is_what_the_mapping_sent_to_the_dlq(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a consumer whose curated writes always fail (quarantine writes succeed)
    original = LakeWriter.put

    def failing(self: LakeWriter, key: str, lines: list[dict[str, Any]]) -> None:
        if key.startswith("curated/"):
            raise RuntimeError("injected S3 outage")
        original(self, key, lines)

    monkeypatch.setattr(LakeWriter, "put", failing)
    payloads, kinds = bench.generate(60)
    # When the whole-path bench drains them through the local event source mapping
    _, counts = bench.bench_consumer_moto(payloads, batch=20)
    # Then the valid records are dead-lettered (counted by the mapping), the malformed ones quarantined
    assert counts["curated"] == 0
    assert counts["quarantined"] == kinds["malformed"]
    assert counts["dead_lettered"] == kinds["pii"] + kinds["clean"] > 0
    assert counts["failed"] > 0 and counts["invocations"] > 3  # retried before dead-lettering


@pytest.fixture
def _restore_affinity() -> Iterator[None]:
    # main() pins the process to one core; the rest of the test session gets its cores back.
    cores = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    yield
    if cores is not None:
        os.sched_setaffinity(0, cores)


@pytest.mark.usefixtures("_restore_affinity")
def test_report_balances_from_the_objects_read_back(tmp_path: Path) -> None:
    assert bench.main(["--records", "400", "--consumer-records", "100", "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "bench-ingest.json").read_text())
    assert result["records_in"] == 400 == result["curated"] + result["quarantined"]
    whole = result["consumer_moto"]
    assert whole["records_in"] == 100 == whole["curated"] + whole["quarantined"] + whole["dead_lettered"]
    assert result["dead_lettered"] == whole["dead_lettered"] == 0
    assert result["quarantined"] == result["generated"]["malformed"]
