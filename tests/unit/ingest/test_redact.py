"""PII redaction: typed placeholders, checksums that spare plain numbers, and no match left behind."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cnai.redact import PLACEHOLDERS, find_pii, iban_ok, luhn_ok, redact


@pytest.mark.parametrize(
    ("text", "expected", "kind"),
    [
        ("write to jane.doe+bank@mail.example.co.uk today", "write to [EMAIL] today", "email"),
        ("card 4111 1111 1111 1111 please", "card [CARD] please", "card"),
        ("card 5500-0000-0000-0004.", "card [CARD].", "card"),
        ("iban GB82 WEST 1234 5698 7654 32 ok", "iban [IBAN] ok", "iban"),
        ("DE89370400440532013000", "[IBAN]", "iban"),
        ("my ssn is 123-45-6789", "my ssn is [SSN]", "ssn"),
        ("from 192.168.10.254.", "from [IP].", "ip"),
        ("host 2001:db8::8a2e:370:7334 down", "host [IP] down", "ip"),
        ("call +44 20 7946 0958 now", "call [PHONE] now", "phone"),
        ("call (555) 123-4567", "call [PHONE]", "phone"),
    ],
)
def test_each_pii_type_is_replaced_by_its_placeholder(text: str, expected: str, kind: str) -> None:
    # When redacted / Then the span becomes the typed placeholder and is counted once under its type
    result = redact(text)
    assert result.text == expected
    assert result.counts == {kind: 1}


@pytest.mark.parametrize(
    "text",
    [
        "card 4111 1111 1111 1112 fails Luhn",
        "paid on 2024-01-15 at 10:30:00",
        "I need 100 dollars for 3 days",
        "version 1.2.3 and 300.1.1.1",
        "GB00 WEST ABCD EFGH IJKL bad checksum",
    ],
)
def test_lookalikes_that_fail_checks_are_kept(text: str) -> None:
    assert redact(text).text == text


@pytest.mark.parametrize(("text", "not_kind"), [("000-12-3456", "ssn"), ("GB00 WEST 1234 5698 7654 32", "iban")])
def test_failed_checks_do_not_count_as_that_type(text: str, not_kind: str) -> None:
    # Digits that fail the SSN / IBAN rules may still be phone-shaped: over-redacting beats leaking
    assert not_kind not in redact(text).counts


def test_checksums() -> None:
    assert luhn_ok("4111111111111111") and not luhn_ok("4111111111111112")
    assert iban_ok("GB82 WEST 1234 5698 7654 32") and not iban_ok("GB83 WEST 1234 5698 7654 32")


def test_counts_add_up_over_several_types() -> None:
    result = redact("a@b.io, c@d.io, 4111111111111111, 10.0.0.1")
    assert result.counts == {"email": 2, "card": 1, "ip": 1}
    assert result.total == 4


PII_SAMPLES = st.sampled_from(
    [
        "x@y.com",
        "4111 1111 1111 1111",
        "5500000000000004",
        "GB82WEST12345698765432",
        "123-45-6789",
        "10.1.2.3",
        "fe80::1ff:fe23:4567:890a",
        "+1 415 555 2671",
        "(555) 123-4567",
    ]
)
TEXTS = st.lists(st.one_of(st.text(max_size=20), PII_SAMPLES, st.sampled_from([" ", "-", ".", "@", ":", "1"])))


@settings(max_examples=400)
@given(TEXTS.map("".join))
def test_redaction_never_leaves_a_detected_pattern_behind(text: str) -> None:
    # Given any text, PII glued to noise, separators and digits / When redacted
    result = redact(text)
    # Then no detector matches the output, and nothing but placeholders was added
    assert find_pii(result.text) == []
    assert result.total == 0 or any(p in result.text for p in PLACEHOLDERS.values())


@given(st.text())
def test_redaction_never_raises_and_is_a_fixed_point(text: str) -> None:
    once = redact(text)
    assert redact(once.text).text == once.text
