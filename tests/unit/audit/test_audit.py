"""Audit records: identity from the request context, hash chain, sinks, fail-closed, queries."""

from __future__ import annotations

import gzip
import io
import json
from pathlib import Path

import pytest

from cnai.audit.trail import (
    GENESIS,
    Auditor,
    AuditRecord,
    AuditUnavailableError,
    Caller,
    FileSink,
    S3Sink,
    StdoutSink,
    _parse_lines,
    caller_from_request_context,
    digest_inputs,
    read_records,
    sink_from_uri,
    verify_chain,
)
from cnai.errors import CnaiError


def record(request_id: str = "r1", caller: str = "arn:aws:iam::1:user/a", time: str = "2026-11-29T10:00:00.000Z"):
    return AuditRecord(
        request_id=request_id,
        time=time,
        caller=Caller(kind="iam", id=caller),
        inputs=digest_inputs(["I lost my card"]),
        status=200,
        latency_ms=1.5,
    )


class Broken:
    def write(self, line: str, record: AuditRecord) -> None:
        raise OSError("disk full")


# ---- identity ----


def test_iam_principal_is_the_caller() -> None:
    context = {"identity": {"userArn": "arn:aws:sts::1:assumed-role/app/x", "sourceIp": "10.0.0.1", "apiKeyId": "k"}}
    caller, ip, _ = caller_from_request_context(context)
    assert caller.kind == "iam" and caller.id == "arn:aws:sts::1:assumed-role/app/x"
    assert ip == "10.0.0.1"


def test_api_key_id_when_no_iam_principal() -> None:
    caller, _, _ = caller_from_request_context({"identity": {"apiKeyId": "abc123", "userArn": None}})
    assert caller.kind == "api_key" and caller.id == "abc123"


def test_cognito_subject() -> None:
    caller, _, _ = caller_from_request_context({"authorizer": {"claims": {"sub": "u-1"}}, "identity": {}})
    assert caller.kind == "cognito" and caller.id == "u-1"


def test_local_identity_is_never_taken_for_iam() -> None:
    caller, _, _ = caller_from_request_context({"identity": {"userArn": "local:me@laptop"}})
    assert caller.kind == "local"


@pytest.mark.parametrize("context", [None, {}, {"identity": "x"}, {"identity": {"userArn": 5}}, []])
def test_missing_or_odd_context_is_anonymous(context: object) -> None:
    caller, ip, agent = caller_from_request_context(context)  # type: ignore[arg-type]
    assert caller.kind == "anonymous" and caller.id is None and ip is None and agent is None


def test_inputs_are_hashed_not_stored() -> None:
    (digest,) = digest_inputs(["I lost my card"])
    assert digest.sha256 == "32e8c8f54ea0a9f8e387438174cb697b6b9c513110fbae85fedfe381b0758420"
    assert digest.chars == 14
    assert "lost" not in record().model_dump_json()


# ---- chain ----


def test_chain_of_intact_records_verifies(tmp_path: Path) -> None:
    # Given an auditor writing three records to a file
    auditor = Auditor(FileSink(tmp_path / "a.jsonl"))
    for i in range(3):
        auditor.write(record(f"r{i}"))
    # When the file is read back
    records = list(read_records(tmp_path / "a.jsonl"))
    # Then they link one to the next, starting at the genesis hash, and verify
    assert [r.chain.seq for r in records if r.chain] == [0, 1, 2]
    assert records[0].chain and records[0].chain.prev == GENESIS
    assert verify_chain(records) == []


def test_a_modified_record_is_detected(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    auditor = Auditor(FileSink(path))
    for i in range(3):
        auditor.write(record(f"r{i}"))
    lines = path.read_text().splitlines()
    lines[1] = lines[1].replace('"status":200', '"status":500')
    path.write_text("\n".join(lines) + "\n")
    problems = verify_chain(read_records(path))
    assert problems and "r1: hash does not match" in problems[0]


def test_a_removed_record_is_detected(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    auditor = Auditor(FileSink(path))
    for i in range(4):
        auditor.write(record(f"r{i}"))
    lines = path.read_text().splitlines()
    del lines[2]
    path.write_text("\n".join(lines) + "\n")
    problems = verify_chain(read_records(path))
    assert any("records 2..2 are missing" in p for p in problems)


def test_removing_the_head_of_a_chain_is_detected(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    auditor = Auditor(FileSink(path))
    for i in range(4):
        auditor.write(record(f"r{i}"))
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[2:]) + "\n")  # records 0 and 1 deleted
    assert any("records 0..1 are missing" in p for p in verify_chain(read_records(path)))


@pytest.mark.parametrize("damage", ["truncate", "bad_field", "garbage"])
def test_a_damaged_line_fails_verification_with_its_line_number(tmp_path: Path, damage: str) -> None:
    from typer.testing import CliRunner

    from cnai.cli import app

    # Given a store whose second line was damaged
    path = tmp_path / "a.jsonl"
    auditor = Auditor(FileSink(path))
    for i in range(3):
        auditor.write(record(f"r{i}"))
    lines = path.read_text().splitlines()
    lines[1] = {
        "truncate": lines[1][: len(lines[1]) // 2],
        "bad_field": lines[1].replace('"status":200', '"status":"x"'),
        "garbage": "rm -rf audit",
    }[damage]
    path.write_text("\n".join(lines) + "\n")
    # When it is verified from the CLI
    result = CliRunner().invoke(app, ["audit", str(path), "--verify"])
    # Then verification fails (exit 1) naming the line, without a stack trace
    assert result.exit_code == 1, result.output
    assert "line 2: not a valid audit record" in result.output and "Traceback" not in result.output


# ---- sinks and failure ----


def test_stdout_lines_match_the_subscription_filter() -> None:
    stream = io.StringIO()
    Auditor(StdoutSink(stream)).write(record())
    data = json.loads(stream.getvalue())
    assert data["cnai_audit"] is True  # CloudWatch filter: { $.cnai_audit IS TRUE }
    assert data["request_id"] == "r1"


def test_failing_sink_fails_closed_and_keeps_the_record_in_the_log(tmp_path: Path) -> None:
    # Given an auditor whose sink raises, and a log stream standing in for stderr
    log = io.StringIO()
    auditor = Auditor(Broken(), fallback=log)
    # When a record is written
    with pytest.raises(AuditUnavailableError, match="Broken failed: OSError"):
        auditor.write(record("lost-1"))
    # Then the record is in the log with the sink's error, not silently dropped
    logged = json.loads(log.getvalue())
    assert logged["request_id"] == "lost-1" and logged["cnai_audit"] is True
    assert logged["audit_sink_error"] == "OSError: disk full"
    assert logged["chain"] is None


def test_chain_continues_from_the_last_record_the_sink_took(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    good = FileSink(path)
    auditor = Auditor(good, fallback=io.StringIO())
    auditor.write(record("r0"))
    auditor.sink = Broken()
    with pytest.raises(AuditUnavailableError):
        auditor.write(record("r-lost"))
    auditor.sink = good
    auditor.write(record("r1"))
    assert verify_chain(read_records(path)) == []


def test_fallback_records_are_not_read_as_stored_ones() -> None:
    log = io.StringIO()
    with pytest.raises(AuditUnavailableError):
        Auditor(Broken(), fallback=log).write(record())
    assert list(_parse_lines(log.getvalue())) == []


def test_text_is_not_stored_unless_opted_in() -> None:
    assert Auditor(StdoutSink(io.StringIO())).texts_for_record(["mail me at a@b.com"]) is None


def test_opted_in_text_is_pii_redacted() -> None:
    auditor = Auditor(StdoutSink(io.StringIO()), store_text=True)
    (stored,) = auditor.texts_for_record(["mail me at jane.doe@example.com please"]) or []
    assert "jane.doe@example.com" not in stored
    assert stored.startswith("mail me at ") and stored.endswith(" please")


def test_sink_uris() -> None:
    assert isinstance(sink_from_uri("stdout"), StdoutSink)
    assert isinstance(sink_from_uri("file:/tmp/x.jsonl"), FileSink)
    for bad in ("file:", "s3://", "kafka://x", ""):
        with pytest.raises(CnaiError, match="CNAI_AUDIT_SINK"):
            sink_from_uri(bad)


def test_s3_keys_partition_by_day_and_hour() -> None:
    sink = S3Sink("bucket", "audit/", client=object())
    key = sink.key_for(record(time="2026-11-29T10:05:00.123Z"))
    assert key == "audit/dt=2026-11-29/hour=10/2026-11-29T100500.123Z-r1.json"


# ---- queries ----


def test_query_by_caller_and_time(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    auditor = Auditor(FileSink(path))
    auditor.write(record("a", caller="alice", time="2026-11-29T09:00:00.000Z"))
    auditor.write(record("b", caller="bob", time="2026-11-29T10:00:00.000Z"))
    auditor.write(record("c", caller="alice", time="2026-11-29T11:00:00.000Z"))
    found = read_records(f"file:{path}", caller="alice", start="2026-11-29T10:00:00Z")
    assert [r.request_id for r in found] == ["c"]
    window = read_records(path, start="2026-11-29T09:00:00Z", end="2026-11-29T11:00:00Z")
    assert [r.request_id for r in window] == ["a", "b"]


def test_firehose_cloudwatch_envelopes_are_opened() -> None:
    line = record("env").model_dump_json()
    envelope = {"messageType": "DATA_MESSAGE", "logEvents": [{"id": "1", "timestamp": 0, "message": line}]}
    other = {"messageType": "DATA_MESSAGE", "logEvents": [{"id": "2", "timestamp": 0, "message": "START RequestId"}]}
    text = json.dumps(envelope) + json.dumps(other)  # Firehose concatenates without newlines
    assert [r.request_id for r in _parse_lines(gzip.decompress(gzip.compress(text.encode())).decode())] == ["env"]


def test_query_time_must_be_iso(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    Auditor(FileSink(path)).write(record())
    with pytest.raises(CnaiError, match="start: 'yesterday' is not an ISO 8601 time"):
        list(read_records(path, start="yesterday"))


def test_cli_queries_and_verifies(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from cnai.cli import app

    path = tmp_path / "a.jsonl"
    auditor = Auditor(FileSink(path))
    auditor.write(record("a", caller="alice"))
    auditor.write(record("b", caller="bob"))
    result = CliRunner().invoke(app, ["audit", f"file:{path}", "--caller", "bob", "--verify"])
    assert result.exit_code == 0, result.output
    assert [json.loads(x)["request_id"] for x in result.output.splitlines() if x.startswith("{")] == ["b"]
    path.write_text(
        path.read_text().replace('"caller":{"kind":"iam","id":"alice"', '"caller":{"kind":"iam","id":"eve"')
    )
    result = CliRunner().invoke(app, ["audit", str(path), "--verify"])
    assert result.exit_code == 1 and "hash does not match" in result.output


def test_two_workers_share_one_file_with_one_chain_each(tmp_path: Path) -> None:
    # Given two auditors (two `cnai serve` workers) appending to the same file, interleaved
    path = tmp_path / "a.jsonl"
    first, second = Auditor(FileSink(path)), Auditor(FileSink(path))
    for i in range(5):
        first.write(record(f"a{i}"))
        second.write(record(f"b{i}"))
    # Then every line is a whole record and both chains verify
    records = list(read_records(path))
    assert len(records) == 10 and len({r.chain.id for r in records if r.chain}) == 2
    assert verify_chain(records) == []
