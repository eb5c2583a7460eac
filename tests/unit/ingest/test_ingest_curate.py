"""Curating one stream payload: decode, validate, normalize, redact. Pure functions, hypothesis-checked."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from cnai.ingest.curate import MAX_PAYLOAD_BYTES, Curated, Quarantined, curate, jsonl_gz, read_jsonl_gz
from cnai.redact import find_pii

ARRIVAL = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def b64(obj: object) -> str:
    raw = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
    return base64.b64encode(raw).decode()


def test_valid_payload_is_curated_stamped_and_redacted_including_metadata() -> None:
    data = b64({"text": "ring me on +1 415 555 2671", "source": "s", "tenant": "t", "metadata": {"note": "a@b.io"}})
    outcome = curate(data, ARRIVAL)
    assert isinstance(outcome, Curated)
    assert outcome.record.text == "ring me on [PHONE]"
    assert outcome.record.metadata == {"note": "[EMAIL]"}
    assert outcome.redactions == {"phone": 1, "email": 1}
    assert outcome.record.timestamp == ARRIVAL


def test_each_kind_of_bad_payload_is_quarantined_with_its_reason() -> None:
    cases = {
        "!!!": "payload: not valid base64",
        b64(b"\xff\xfe"): "payload: not valid UTF-8",
        b64(b"[1, 2]"): "payload: expected a JSON object, got list",
        b64({"text": "x", "source": "s"}): "tenant: is required",
        b64(b"x" * (MAX_PAYLOAD_BYTES + 1)): f"payload: {MAX_PAYLOAD_BYTES + 1} bytes, more than",
        b64(b"x" * (MAX_PAYLOAD_BYTES + 9)): "payload: about",
        b64(b"[" * 20000): "payload: JSON nested too deeply",
        b64(b'{"a":' * 10000): "payload: JSON nested too deeply",
    }
    for data, reason in cases.items():
        outcome = curate(data, ARRIVAL)
        assert isinstance(outcome, Quarantined) and outcome.reason.startswith(reason), (data[:20], outcome)
        assert outcome.payload == data


# Deeply nested JSON that stays under the size limit: the decoder's recursion must not escape curate.
NESTED = st.builds(
    lambda opener, depth: base64.b64encode((opener * depth).encode()).decode(),
    st.sampled_from(["[", '{"a":', '[{"k":']),
    st.integers(min_value=1, max_value=20000),
)


@settings(max_examples=300)
@given(st.one_of(st.text(), st.binary().map(lambda b: base64.b64encode(b).decode()), NESTED))
def test_decoder_never_raises_on_arbitrary_data(data: str) -> None:
    assert isinstance(curate(data, ARRIVAL), Curated | Quarantined)


RECORDS = st.fixed_dictionaries(
    {"text": st.text(min_size=1, max_size=200), "source": st.just("s"), "tenant": st.just("t")},
    optional={"label": st.text(max_size=10), "metadata": st.dictionaries(st.text(max_size=5), st.text(max_size=30))},
)


@settings(max_examples=300)
@given(RECORDS)
def test_any_json_record_is_either_curated_without_pii_or_quarantined_with_a_field(record: dict) -> None:
    outcome = curate(b64(record), ARRIVAL)
    if isinstance(outcome, Curated):
        assert find_pii(outcome.record.text) == []
        assert outcome.record.text.strip() == outcome.record.text != ""
    else:
        assert outcome.reason.split(":", 1)[0] in {"text", "label", "metadata", "payload"}


def test_jsonl_gz_is_deterministic_and_round_trips() -> None:
    lines = [{"a": 1, "t": "é"}, {"b": [1, 2]}]
    assert jsonl_gz(lines) == jsonl_gz(lines)
    assert read_jsonl_gz(jsonl_gz(lines)) == lines
