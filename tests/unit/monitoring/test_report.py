"""Drift reports: JSON round trip, explanations, metrics, the store's order; audit sources per day."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from cnai.monitoring.drift import Score, Thresholds
from cnai.monitoring.monitor import MonitorError, window_sources
from cnai.monitoring.report import Action, DriftReport, ReportError, ReportStore, WindowInfo, new_run_id


def report(moment: datetime, decision: str = "drift") -> DriftReport:
    over = Score(name="label_psi", value=1.2, threshold=0.25, allowance=0.1, exceeded=True, detail="3 labels")
    return DriftReport(
        run_id=new_run_id(moment, "banking77"),
        model="banking77",
        time=moment.isoformat(),
        window=WindowInfo(start="a", end="b", records=300, predictions=300, abstentions=40),
        thresholds=Thresholds(),
        min_predictions=200,
        scores=[over, Score(name="unknown_token_rate", value=None, threshold=0.15, detail="no text")],
        decision=decision,  # type: ignore[arg-type]
        action=Action(kind="retrain_started", execution_arn="arn:aws:states:us-east-1:1:execution:m:x"),
        reasons=["label_psi 1.2000 > 0.3500"],
    )


def test_a_report_round_trips_as_json_and_explains_itself() -> None:
    original = report(datetime(2026, 12, 1, 10, tzinfo=UTC))
    again = DriftReport.model_validate_json(original.to_json())
    assert again == original
    text = again.explain()
    assert "OVER label_psi" in text and "n/a" in text and "why: label_psi" in text
    assert again.metrics() == {
        "Drift.label_psi": 1.2,
        "DriftDetected": 1.0,
        "DriftRetrainStarted": 1.0,
        "DriftBaselineMissing": 0.0,
        "DriftWindowPredictions": 300.0,
    }


def test_the_store_lists_runs_in_time_order_and_loads_the_newest_first(tmp_path: Path) -> None:
    store = ReportStore.from_uri(str(tmp_path))
    for hour in (9, 11, 10):
        store.save(report(datetime(2026, 12, 1, hour, tzinfo=UTC)))
    assert [r.time[11:13] for r in store.last("banking77", 2)] == ["11", "10"]
    assert (tmp_path / "drift" / "banking77" / "20261201T090000Z-banking77.json").is_file()


def test_a_missing_or_damaged_report_is_named(tmp_path: Path) -> None:
    store = ReportStore.from_uri(str(tmp_path))
    with pytest.raises(ReportError, match=re.escape("20990101T000000Z-banking77.json")):
        store.load("banking77", "20990101T000000Z-banking77")
    bad = tmp_path / "drift" / "banking77" / "x.json"
    bad.parent.mkdir(parents=True)
    bad.write_text('{"run_id": 1}')
    with pytest.raises(ReportError, match="not a drift report"):
        store.load("banking77", "x")


def test_day_placeholders_name_each_day_of_the_window_and_the_next() -> None:
    # Given Firehose's layout and a window crossing midnight
    template = "s3://audit/audit/year={yyyy}/month={MM}/day={dd}/"
    start, end = datetime(2026, 11, 30, 20, tzinfo=UTC), datetime(2026, 12, 1, 8, tzinfo=UTC)
    # Then each day is read, and the day after the end (records filed under their arrival time)
    assert window_sources(template, start, end) == [
        "s3://audit/audit/year=2026/month=11/day=30/",
        "s3://audit/audit/year=2026/month=12/day=01/",
        "s3://audit/audit/year=2026/month=12/day=02/",
    ]
    assert window_sources("file:/tmp/audit.jsonl", start, end) == ["file:/tmp/audit.jsonl"]
    with pytest.raises(MonitorError, match=re.escape("only {yyyy} {MM} {dd}")):
        window_sources("s3://audit/{hour}/", start, end)
