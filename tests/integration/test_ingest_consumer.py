"""The Kinesis consumer Lambda against moto: outcomes, dedup, partial failures, and the invariant.

Invariant checked everywhere: records in = curated + quarantined + duplicates + failed (and failed ones,
retried, end curated or quarantined exactly once).
"""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from aws_lambda_powertools.utilities.batch import process_partial_response
from botocore.exceptions import ClientError

from cnai.ingest.consumer import BatchReport, CuratingProcessor, LakeWriter
from cnai.ingest.curate import MAX_PAYLOAD_BYTES
from cnai.local.context import LocalContext
from tests.integration import ingest_env
from tests.integration.ingest_env import Lake, b64, event, payload

# Fixtures shared with the end-to-end test (a module, not a conftest: other teams own tests/integration).
aws_env = ingest_env.aws_env
lake = ingest_env.lake

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def invoke(lake: Lake, evt: dict[str, Any]) -> tuple[list[str], BatchReport]:
    reports: list[BatchReport] = []
    original = lake.module.emit_report

    def capture(report: BatchReport) -> None:
        reports.append(report)
        original(report)

    lake.module.emit_report = capture
    try:
        response = lake.module.handler(evt, LocalContext())
    finally:
        lake.module.emit_report = original
    failures = [f["itemIdentifier"] for f in response["batchItemFailures"]]
    assert reports[0].balanced
    assert sorted(failures) == sorted(reports[0].failed_sequence_numbers)
    return failures, reports[0]


class FlakyS3:
    """The real (moto) S3 client, except PutObject fails for keys containing `fail_on`."""

    def __init__(self, s3: Any, fail_on: str) -> None:
        self.s3 = s3
        self.fail_on = fail_on
        self.calls = 0

    def put_object(self, **kwargs: Any) -> Any:
        self.calls += 1
        if self.fail_on in kwargs["Key"]:
            raise ClientError({"Error": {"Code": "SlowDown", "Message": "injected"}}, "PutObject")
        return self.s3.put_object(**kwargs)


def test_mixed_batch_curates_redacts_and_quarantines_with_reasons(lake: Lake, capsys) -> None:
    # Given a batch with clean, PII-bearing, malformed-base64, bad-JSON, invalid and oversize records
    evt = event(
        payload("I lost my card", label="lost_card"),
        payload("mail me at jane@example.com or call +44 20 7946 0958, card 4111 1111 1111 1111"),
        "%%% not base64 %%%",
        b"{not json",
        payload("   "),
        payload("x", tenant="bad tenant!"),
        b64(b"x" * (MAX_PAYLOAD_BYTES + 10)),
    )
    # When the consumer handles it
    failures, report = invoke(lake, evt)
    # Then nothing failed, 2 are curated (PII replaced by typed placeholders), 5 quarantined with reasons
    assert failures == []
    assert (report.records_in, report.curated, report.quarantined, report.duplicates) == (7, 2, 5, 0)
    curated = lake.lines("curated/")
    assert [c["text"] for c in curated] == [
        "I lost my card",
        "mail me at [EMAIL] or call [PHONE], card [CARD]",
    ]
    assert curated[1]["redactions"] == {"email": 1, "phone": 1, "card": 1}
    assert all(k.startswith("curated/dt=2026-01-02/") and k.endswith(".jsonl.gz") for k in lake.objects("curated/"))
    assert curated[0]["timestamp"] == "2026-01-02T03:04:05Z"  # defaulted at arrival
    quarantined = lake.lines("quarantine/dt=2026-01-02/")
    reasons = [q["reason"] for q in quarantined]
    assert reasons[0] == "payload: not valid base64"
    assert reasons[1].startswith("payload: not valid JSON")
    assert reasons[2] == "text: is empty after normalization"
    assert reasons[3].startswith("tenant: does not match")
    assert reasons[4].startswith("payload: about") and "more than" in reasons[4]
    assert quarantined[0]["payload"] == "%%% not base64 %%%"  # the original payload, as it came
    # And the metrics were emitted in EMF, redactions by type
    emf = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    assert emf[-1]["RecordsIn"] == [7.0] and emf[-1]["RecordsQuarantined"] == [5.0]
    assert emf[-1]["Redacted_card"] == [1.0]


def test_redelivered_batch_writes_nothing_twice(lake: Lake) -> None:
    # Given a batch already processed
    evt = event(payload("one"), payload("two"), b"{bad")
    invoke(lake, evt)
    before = lake.objects("")
    # When Lambda delivers the same batch again
    failures, report = invoke(lake, evt)
    # Then every record is a duplicate and no object is added
    assert failures == [] and report.duplicates == 3 and report.curated == report.quarantined == 0
    assert lake.objects("") == before


def test_duplicates_across_batches_and_within_a_batch_are_skipped(lake: Lake) -> None:
    # Given record "two" sent in two batches, and "three" twice in the second
    invoke(lake, event(payload("one"), payload("two"), start=1))
    _, report = invoke(lake, event(payload("two"), payload("three"), payload("three"), start=10))
    # Then the second batch curates only "three", once
    assert (report.curated, report.duplicates) == (1, 2)
    assert sorted(c["text"] for c in lake.lines("curated/")) == ["one", "three", "two"]


def test_s3_failure_mid_batch_names_exactly_the_failed_records_then_retry_completes(lake: Lake) -> None:
    # Given a batch whose records fall in two date partitions, and S3 failing for the second one
    evt = event(
        payload("a", timestamp="2026-01-01T10:00:00Z"),
        payload("b", timestamp="2026-01-05T10:00:00Z"),
        payload("c", timestamp="2026-01-01T11:00:00Z"),
        payload("d", timestamp="2026-01-05T11:00:00Z"),
        b"{bad",
    )
    lake.module.writer.s3 = FlakyS3(lake.s3, fail_on="dt=2026-01-05")
    # When the consumer handles it
    failures, report = invoke(lake, evt)
    # Then the partial batch response names exactly the records of the failed partition
    sequences = [r["kinesis"]["sequenceNumber"] for r in evt["Records"]]
    assert sorted(failures) == [sequences[1], sequences[3]]
    assert (report.curated, report.quarantined, report.failed) == (2, 1, 2)
    assert sorted(c["text"] for c in lake.lines("curated/")) == ["a", "c"]
    # When Lambda retries from the lowest failed sequence number with S3 healthy again
    lake.module.writer.s3 = lake.s3
    retry = {"Records": evt["Records"][1:]}
    failures, report = invoke(lake, retry)
    # Then the failed records are curated (their claims were released) and the rest are duplicates
    assert failures == [] and (report.curated, report.duplicates) == (2, 2)
    assert sorted(c["text"] for c in lake.lines("curated/")) == ["a", "b", "c", "d"]
    assert len(lake.lines("quarantine/")) == 1


def test_quarantine_write_failure_fails_only_the_quarantined_records(lake: Lake) -> None:
    lake.module.writer.s3 = FlakyS3(lake.s3, fail_on="quarantine/")
    evt = event(payload("good"), b"{bad", "@@@")
    failures, report = invoke(lake, evt)
    assert sorted(failures) == sorted(r["kinesis"]["sequenceNumber"] for r in evt["Records"][1:])
    assert (report.curated, report.failed) == (1, 2)


def test_whole_batch_failure_is_a_partial_response_naming_every_record(lake: Lake) -> None:
    lake.module.writer.s3 = FlakyS3(lake.s3, fail_on="")
    evt = event(payload("x"), payload("y"))
    failures, report = invoke(lake, evt)
    assert sorted(failures) == sorted(r["kinesis"]["sequenceNumber"] for r in evt["Records"])
    assert report.failed == 2 and lake.objects("") == []


def test_record_claimed_by_another_invocation_is_retried_not_dropped(lake: Lake) -> None:
    # Given another invocation holds the claim on a record (in progress, not expired)
    from cnai.ingest.records import parse_record

    busy = parse_record({"text": "busy one", "source": "test", "tenant": "acme"})
    assert lake.module.ledger.claim(str(busy.id), 600_000) == "new"
    # When a batch with it arrives
    evt = event(payload("busy one"), payload("free one"))
    failures, report = invoke(lake, evt)
    # Then it fails (retried later) while the other record is curated
    assert failures == [evt["Records"][0]["kinesis"]["sequenceNumber"]]
    assert (report.curated, report.failed) == (1, 1)


def test_cold_start_names_a_missing_setting(lake: Lake, monkeypatch: pytest.MonkeyPatch) -> None:
    from functions.ingest.settings import IngestSettings, SettingsError

    with pytest.raises(SettingsError, match="CNAI_LAKE_BUCKET: is required"):
        IngestSettings.from_env({"CNAI_IDEMPOTENCY_TABLE": "t"})


def test_claim_errors_after_the_write_are_counted_logged_and_emitted(
    lake: Lake, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given an idempotency table that fails every completion (after the S3 write succeeded)
    def broken(key: str, where: str) -> None:
        raise ClientError({"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "x"}}, "PutItem")

    monkeypatch.setattr(lake.module.ledger, "complete", broken)
    evt = event(payload("one", id="rec-1"), payload("two", id="rec-2"))
    # When the consumer handles a batch
    with caplog.at_level(logging.WARNING, logger="cnai.ingest.consumer"):
        failures, report = invoke(lake, evt)
    # Then the records are curated (they are in S3) and the failed completions are counted, not dropped
    assert failures == [] and (report.curated, report.claim_errors) == (2, 2)
    warning = next(r.getMessage() for r in caplog.records if "complete failed" in r.getMessage())
    assert "rec-1" in warning and "rec-2" in warning
    emf = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    assert emf[-1]["ClaimErrors"] == [2.0]


def test_failed_release_is_counted_and_the_records_still_fail(lake: Lake, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(key: str, error: Exception) -> None:
        raise ClientError({"Error": {"Code": "InternalServerError", "Message": "x"}}, "DeleteItem")

    monkeypatch.setattr(lake.module.ledger, "release", broken)
    lake.module.writer.s3 = FlakyS3(lake.s3, fail_on="curated/")
    evt = event(payload("one"), payload("two"), b"{bad")
    failures, report = invoke(lake, evt)
    assert (report.failed, report.quarantined, report.claim_errors) == (2, 1, 2)
    assert sorted(failures) == sorted(r["kinesis"]["sequenceNumber"] for r in evt["Records"][:2])


def test_records_failed_after_staging_leave_the_success_list(lake: Lake) -> None:
    # Given a processor whose curated write fails (the records were staged, hence counted as successes)
    writer = LakeWriter(FlakyS3(lake.s3, fail_on="curated/"), ingest_env.BUCKET)
    processor = CuratingProcessor(lake.module.ledger, writer)
    evt = event(payload("one"), payload("two"), b"{bad")
    # When it processes the batch
    response = process_partial_response(
        event=evt, record_handler=processor.record_handler, processor=processor, context=LocalContext()
    )
    # Then the failed records are failures only, and the quarantined one is the only success
    sequences = [r["kinesis"]["sequenceNumber"] for r in evt["Records"]]
    assert sorted(f["itemIdentifier"] for f in response["batchItemFailures"]) == sequences[:2]
    assert [m["kinesis"]["sequenceNumber"] for m in processor.success_messages] == [sequences[2]]  # type: ignore[index]
    assert sorted(m.kinesis.sequence_number for m in processor.fail_messages) == sequences[:2]  # type: ignore[union-attr]
