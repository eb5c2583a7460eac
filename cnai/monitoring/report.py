"""The report of one monitor run, and where reports are kept.

A report holds everything the decision was made from (window, baseline, each score with its threshold and
allowance), the decision, the action taken and the reasons, as JSON. One object per run under
`<prefix>/<model>/<run id>.json`; run ids start with the UTC time (`20261201T230000Z-...`), so keys sort in time
order and `cnai monitor report --last N` needs one listing. The bucket's default encryption (a KMS key) covers
every object; the reports are written once and never rewritten.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from cnai.data.snapshot import LocalStore, Store, store_for
from cnai.errors import CnaiError
from cnai.monitoring.drift import Decision, Score, Thresholds

SCHEMA = "cnai.drift/1"
RUN_ID = re.compile(r"^\d{8}T\d{6}Z-[a-z0-9-]{1,60}$")


class ReportError(CnaiError):
    """A report is missing or not a report; names which."""


class WindowInfo(BaseModel):
    start: str
    end: str
    records: int = 0
    predictions: int = 0
    abstentions: int = 0
    with_text: int = 0
    sources: list[str] = Field(default_factory=list)
    package_versions: dict[str, int] = Field(default_factory=dict)  # served registry version -> records


class BaselineInfo(BaseModel):
    package_version: int | None = None
    manifest_uri: str | None = None
    dataset_version: str | None = None
    rows: int | None = None
    expected_confidence: float | None = None


class Action(BaseModel):
    kind: Literal["none", "retrain_started", "cooldown", "retrain_running", "retrain_disabled"] = "none"
    execution_arn: str | None = None
    execution_name: str | None = None
    input: dict[str, Any] | None = None
    cooldown_until: str | None = None
    detail: str = ""


class DriftReport(BaseModel):
    model_config = ConfigDict(extra="forbid")

    schema_: str = Field(SCHEMA, alias="schema")
    run_id: str
    model: str
    time: str
    window: WindowInfo
    baseline: BaselineInfo = Field(default_factory=BaselineInfo)
    thresholds: Thresholds
    min_predictions: int
    scores: list[Score] = Field(default_factory=list)
    decision: Decision
    action: Action = Field(default_factory=Action)
    reasons: list[str] = Field(default_factory=list)

    def to_json(self) -> str:
        return self.model_dump_json(by_alias=True, indent=2)

    def metrics(self) -> dict[str, float]:
        """CloudWatch metric name -> value: each computable score, the decision as 0/1 flags, the traffic."""
        values = {f"Drift.{s.name}": float(s.value) for s in self.scores if s.value is not None}
        values["DriftDetected"] = float(self.decision == "drift")
        values["DriftRetrainStarted"] = float(self.action.kind == "retrain_started")
        values["DriftBaselineMissing"] = float(self.decision == "no_baseline")
        values["DriftWindowPredictions"] = float(self.window.predictions)
        return values

    def explain(self) -> str:
        """The decision in sentences, as `cnai monitor report` prints it."""
        lines = [
            f"{self.run_id}  model {self.model}  {self.decision}  action {self.action.kind}",
            f"  window {self.window.start} .. {self.window.end}: {self.window.records} calls, "
            f"{self.window.predictions} predictions ({self.window.abstentions} abstained)",
        ]
        b = self.baseline
        if b.manifest_uri:
            lines.append(f"  baseline: registry version {b.package_version}, dataset {b.dataset_version} "
                         f"({b.rows} rows) {b.manifest_uri}")  # fmt: skip
        for s in self.scores:
            value = "n/a" if s.value is None else f"{s.value:.4f}"
            mark = "OVER" if s.exceeded else "ok" if s.value is not None else "--"
            lines.append(f"  {mark:>4} {s.name:<19} {value:>8}  limit {s.limit:.4f} "
                         f"(threshold {s.threshold:g} + allowance {s.allowance:.4f})  {s.detail}")  # fmt: skip
        lines += [f"  why: {reason}" for reason in self.reasons]
        if self.action.execution_arn:
            lines.append(f"  execution: {self.action.execution_arn}")
        if self.action.detail:
            lines.append(f"  action: {self.action.detail}")
        return "\n".join(lines)


def new_run_id(moment: datetime, model: str) -> str:
    """`YYYYMMDDTHHMMSSZ-<model>`: one run per model per scheduled instant, sortable by time."""
    return f"{moment.strftime('%Y%m%dT%H%M%SZ')}-{model}"[:77]


class ReportStore:
    """Reports under `<prefix>/<model>/` of a Store: s3://bucket/prefix or a local folder."""

    def __init__(self, store: Store, prefix: str = "drift") -> None:
        self.store = store
        self.prefix = prefix.strip("/")

    @classmethod
    def from_uri(cls, uri: str, s3: Any = None) -> ReportStore:
        """`s3://bucket[/prefix]` or a folder (prefix default: drift)."""
        if uri.startswith("s3://"):
            bucket, _, prefix = uri.removeprefix("s3://").partition("/")
            return cls(store_for(f"s3://{bucket}", s3), prefix or "drift")
        return cls(LocalStore(Path(uri.removeprefix("file:")).expanduser()), "drift")

    def key(self, model: str, run_id: str) -> str:
        return "/".join(p for p in (self.prefix, model, f"{run_id}.json") if p)

    def save(self, report: DriftReport) -> str:
        key = self.key(report.model, report.run_id)
        self.store.put(key, report.to_json().encode("utf-8"), "application/json")
        return key

    def run_ids(self, model: str) -> list[str]:
        """Oldest first."""
        head = self.key(model, "")[: -len(".json")]
        return sorted(k.removeprefix(head).removesuffix(".json") for k in self.store.list(head) if k.endswith(".json"))

    def load(self, model: str, run_id: str) -> DriftReport:
        key = self.key(model, run_id)
        try:
            data = json.loads(self.store.get(key))
        except (OSError, ValueError) as exc:
            raise ReportError(f"{key}: cannot read the report ({exc})") from None
        except Exception as exc:  # boto3's NoSuchKey and friends: named, not a traceback
            raise ReportError(f"{key}: {type(exc).__name__}: {exc}") from None
        try:
            return DriftReport.model_validate(data)
        except ValidationError as exc:
            raise ReportError(f"{key}: not a drift report ({str(exc).splitlines()[0]})") from None

    def last(self, model: str, count: int) -> list[DriftReport]:
        """The newest `count` reports, newest first."""
        return [self.load(model, run_id) for run_id in reversed(self.run_ids(model)[-count:])]
