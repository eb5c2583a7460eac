"""The record contract: one schema, normalization before checks, rejections that name the field."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cnai.ingest.records import MAX_METADATA_BYTES, MAX_TEXT_CHARS, RecordError, parse_record
from cnai.text import normalize_text

BASE = {"text": "I lost my card", "source": "app", "tenant": "acme"}


def test_valid_record_gets_a_content_hash_id_and_keeps_fields() -> None:
    # Given a record without id / When parsed
    record = parse_record({**BASE, "label": "lost_card", "metadata": {"channel": "chat"}})
    # Then the id is derived from the content and is stable across whitespace variants
    assert record.id is not None and record.id.startswith("h-")
    again = parse_record({**BASE, "text": "  I   lost\tmy card\n", "label": "lost_card"})
    assert again.id == record.id
    assert parse_record({**BASE, "label": "other"}).id != record.id
    assert parse_record({**BASE, "id": "ext-1"}).id == "ext-1"


def test_normalization_nfc_controls_invisibles_whitespace() -> None:
    # Given decomposed é, a NUL, a zero-width space and mixed whitespace
    raw = "Cafe\u0301\x00bar  pass\u200bword\r\n\tend "
    # Then the text is NFC, the control is a space, the invisible is gone, whitespace collapsed
    assert normalize_text(raw) == "Café bar password end"


@pytest.mark.parametrize(
    ("change", "field", "problem"),
    [
        ({"text": 42}, "text", "valid string"),
        ({"text": " \u200b\t "}, "text", "empty after normalization"),
        ({"text": "x" * (MAX_TEXT_CHARS + 1)}, "text", f"more than {MAX_TEXT_CHARS}"),
        ({"text": "bad \ud800 surrogate"}, "text", "UTF-8"),
        ({"tenant": "has space"}, "tenant", "does not match"),
        ({"source": ""}, "source", "does not match"),
        ({"timestamp": "yesterday"}, "timestamp", "datetime"),
        ({"metadata": {"blob": "x" * MAX_METADATA_BYTES}}, "metadata", f"more than {MAX_METADATA_BYTES}"),
        ({"colour": "red"}, "colour", "not a known field"),
        ({"label": ""}, "label", "at least 1"),
        ({"id": "bad id!"}, "id", "does not match"),
    ],
)
def test_invalid_record_reason_names_the_field(change: dict, field: str, problem: str) -> None:
    data = {**BASE, **change}
    data = {k: v for k, v in data.items() if v is not None}
    # When parsed / Then the rejection names the field and the problem
    with pytest.raises(RecordError) as info:
        parse_record(data)
    assert info.value.reason.startswith(f"{field}: ") or f"; {field}: " in info.value.reason
    assert problem in info.value.reason


def test_missing_required_fields_are_all_named() -> None:
    with pytest.raises(RecordError) as info:
        parse_record({"label": "x"})
    assert info.value.reason == "text: is required; source: is required; tenant: is required"
    with pytest.raises(RecordError, match="record: expected a JSON object, got list"):
        parse_record([1, 2])


def test_timestamp_is_utc_and_defaulted_at_arrival() -> None:
    naive = parse_record({**BASE, "timestamp": "2026-01-02T03:04:05"})
    assert naive.timestamp == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    offset = parse_record({**BASE, "timestamp": "2026-01-02T03:04:05+02:00"})
    assert offset.to_json()["timestamp"] == "2026-01-02T01:04:05Z"
    arrival = datetime(2026, 5, 6, 7, 8, 9, tzinfo=UTC)
    assert parse_record(BASE).stamped(arrival).timestamp == arrival
    assert offset.stamped(arrival).timestamp == offset.timestamp


@given(st.dictionaries(st.sampled_from(["text", "label", "source", "tenant", "id", "metadata", "x"]), st.text()))
def test_parse_never_raises_anything_but_a_rejection(data: dict) -> None:
    try:
        record = parse_record(data)
    except RecordError as exc:
        assert exc.reason
    else:
        json.dumps(record.to_json())  # a valid record always serializes
        assert 1 <= len(record.text) <= MAX_TEXT_CHARS


@given(st.text())
def test_normalize_is_idempotent(text: str) -> None:
    once = normalize_text(text)
    assert normalize_text(once) == once
    assert once == once.strip()
    assert "  " not in once


# ---- numbers JSON cannot hold: refused by the contract, wherever the record comes from ----


@pytest.mark.parametrize(
    ("metadata", "where"),
    [
        ({"score": float("inf")}, "score"),
        ({"a": {"b": [1, float("nan")]}}, "a.b[1]"),
        (json.loads('{"x": 1e999}'), "x"),
        (json.loads('{"deep": [{"v": -Infinity}]}'), "deep[0].v"),
    ],
)
def test_non_finite_numbers_are_refused_naming_the_field(metadata: dict, where: str) -> None:
    # Given metadata holding NaN or an infinity (Python's json reads 1e999, NaN and Infinity without a word)
    # When parsed / Then the record is refused and the reason names the path to the number
    with pytest.raises(RecordError) as info:
        parse_record({**BASE, "metadata": metadata})
    assert info.value.reason.startswith(f"metadata: {where} is not a finite number")


json_leaves = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5)
json_values = st.recursive(
    json_leaves, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
    max_leaves=12,
)  # fmt: skip


@given(st.dictionaries(st.text(max_size=5), json_values, max_size=4))
def test_property_an_accepted_record_is_always_standard_json(metadata: dict) -> None:
    # Given any metadata, floats of every kind (nan, inf, -0.0, subnormals) included
    try:
        record = parse_record({**BASE, "metadata": metadata})
    except RecordError as exc:
        # Then it is refused naming the metadata ...
        assert exc.reason.startswith("metadata: ")
    else:
        # ... or it serializes as standard JSON (no NaN / Infinity token)
        json.dumps(record.to_json(), allow_nan=False)


@pytest.mark.parametrize("depth", [17, 1_000, 50_000])
def test_metadata_nested_too_deep_is_one_short_rejection(depth: int) -> None:
    # Given metadata nested deeper than the contract allows (and deeper than the interpreter's stack)
    value: object = 1
    for _ in range(depth):
        value = [value]
    # When parsed / Then one short reason names the field
    with pytest.raises(RecordError) as info:
        parse_record({**BASE, "metadata": {"v": value}})
    assert info.value.reason == f"metadata: is nested {depth + 1} levels deep, more than 16"


def test_the_consumer_and_the_api_refuse_infinity_too() -> None:
    import base64

    from cnai.ingest.api import ingest_request
    from cnai.ingest.curate import Quarantined, curate, encode_record, jsonl_gz
    from cnai.ingest.producer import Producer
    from tests.unit.ingest.test_producer import FakeKinesis

    raw = '{"text": "hello", "source": "s", "tenant": "t", "metadata": {"v": 1e999}}'
    # Given the stream consumer receives a payload holding 1e999 (put there by some other producer)
    # When curated / Then it is quarantined with the field named
    outcome = curate(base64.b64encode(raw.encode()).decode(), datetime(2026, 1, 1, tzinfo=UTC))
    assert isinstance(outcome, Quarantined) and outcome.reason.startswith("metadata: v is not a finite number")
    # Given POST /v1/ingest receives the same record
    kinesis = FakeKinesis()
    answer = ingest_request(f'{{"records": [{raw}]}}', Producer(kinesis, "s"))
    # Then that record is rejected by name and nothing is put on the stream
    assert answer["rejected"] == 1 and answer["results"][0]["reason"].startswith("metadata: v is not a finite")
    assert kinesis.calls == []
    # And what we serialize ourselves can never carry NaN or Infinity
    with pytest.raises(ValueError, match="not JSON compliant"):
        encode_record({"v": float("nan")})
    with pytest.raises(ValueError, match="not JSON compliant"):
        jsonl_gz([{"v": float("inf")}])
