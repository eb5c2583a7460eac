"""PII redaction: each match is replaced by a typed placeholder (`[EMAIL]`, `[CARD]`, ...) and counted.

Detectors are regular expressions with a validator where a format has a checksum or a range, so plain
numbers are not mistaken for PII: payment cards pass Luhn, IBANs pass ISO 7064 mod 97, IPv6 parses,
US SSNs avoid the never-issued areas. Patterns are ASCII-only on purpose (digits of other scripts are not
card numbers and `int()` of them would be surprising).

Guarantee (tested with hypothesis): `find_pii(redact(text).text) == []` for every input, and redaction
never raises. It holds because redaction repeats until a pass replaces nothing, and every replacement
removes at least one digit, '@' or ':' without adding any, so the loop ends (usually after one pass).
"""

from __future__ import annotations

import ipaddress
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

PLACEHOLDERS = {
    "email": "[EMAIL]",
    "iban": "[IBAN]",
    "card": "[CARD]",
    "ssn": "[SSN]",
    "ip": "[IP]",
    "phone": "[PHONE]",
}
PII_TYPES = tuple(PLACEHOLDERS)

_A = re.ASCII
_EMAIL = re.compile(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,24}(?![A-Za-z0-9])", _A)
_IBAN = re.compile(r"(?<![A-Za-z0-9])[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?(?![A-Za-z0-9])", _A)
_CARD = re.compile(r"(?<![0-9])[0-9](?:[ \-]?[0-9]){12,18}(?![0-9])", _A)
_SSN = re.compile(r"(?<![0-9\-])(?!000|666|9[0-9]{2})[0-9]{3}([\- ])(?!00)[0-9]{2}\1(?!0000)[0-9]{4}(?![0-9\-])", _A)
_IPV4 = re.compile(r"(?<![0-9.])(?:(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])\.){3}"
                   r"(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])(?!\.?[0-9])", _A)  # fmt: skip
_IPV6 = re.compile(r"(?<![0-9A-Fa-f:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![0-9A-Fa-f:])", _A)
_PHONE = re.compile(
    r"(?<![A-Za-z0-9+(])(?:\+|00)?\(?[0-9]{1,4}\)?[ .\-]?"  # country or area code
    r"(?:\([0-9]{1,4}\)[ .\-]?)?[0-9]{2,4}(?:[ .\-]?[0-9]{2,4}){1,4}(?![A-Za-z0-9])",  # groups
    _A,
)
_DATE = re.compile(r"[0-9]{4}[\-./][0-9]{1,2}[\-./][0-9]{1,2}|[0-9]{1,2}[\-./][0-9]{1,2}[\-./][0-9]{2,4}", _A)
_TRIGGER = re.compile(r"[0-9@:]")


def luhn_ok(digits: str) -> bool:
    """Luhn checksum of a digit string (payment card numbers)."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def iban_ok(candidate: str) -> bool:
    """ISO 13616 IBAN: 15..34 characters, mod 97 of the rearranged number is 1."""
    iban = candidate.replace(" ", "")
    if not 15 <= len(iban) <= 34:
        return False
    moved = iban[4:] + iban[:4]
    return int("".join(str(int(ch, 36)) for ch in moved)) % 97 == 1


def _card(match: str) -> bool:
    digits = match.replace(" ", "").replace("-", "")
    return 13 <= len(digits) <= 19 and luhn_ok(digits)


def _phone(match: str) -> bool:
    digits = sum(ch.isdigit() for ch in match)
    if not 7 <= digits <= 15:
        return False
    # A date (2024-01-15, 15.01.2024) has phone-like groups; keep dates, they are not PII here.
    return _DATE.fullmatch(match) is None


def _ipv6(match: str) -> bool:
    if sum(1 for part in match.split(":") if part) < 2:
        return False
    try:
        ipaddress.IPv6Address(match)
    except ValueError:
        return False
    return True


# Order matters: a card or an SSN is also phone-shaped, an IBAN holds digit runs; specific detectors first.
_DETECTORS: tuple[tuple[str, re.Pattern[str], Callable[[str], bool] | None], ...] = (
    ("email", _EMAIL, None),
    ("iban", _IBAN, iban_ok),
    ("card", _CARD, _card),
    ("ssn", _SSN, None),
    ("ip", _IPV4, None),
    ("ip", _IPV6, _ipv6),
    ("phone", _PHONE, _phone),
)
# The fewest ASCII digits a match of each type holds (IPv6 "fe80::1" style addresses may hold none).
_MIN_DIGITS = {"email": 0, "iban": 2, "card": 13, "ssn": 9, "ip": 0, "phone": 7}
_NO_DIGITS = str.maketrans("", "", "0123456789")
_MAX_PASSES = 64  # never reached: each replacement strictly removes trigger characters


@dataclass(frozen=True)
class Redacted:
    """The redacted text and how many of each PII type were replaced."""

    text: str
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def _one_pass(text: str, counts: Counter[str]) -> tuple[str, int]:
    replaced = 0
    kind: str = ""
    valid: Callable[[str], bool] | None = None

    def sub(match: re.Match[str]) -> str:
        # Called synchronously by pattern.sub inside the loop below, so `kind` and `valid` are current.
        nonlocal replaced
        found = match.group(0)
        if valid is not None and not valid(found):
            return found
        counts[kind] += 1
        replaced += 1
        return PLACEHOLDERS[kind]

    digits = len(text) - len(text.translate(_NO_DIGITS))
    for kind, pattern, valid in _DETECTORS:  # noqa: B007 - read by `sub`
        # Cheap necessary conditions (C-speed counts) skip detectors that cannot match this text.
        if (
            digits < _MIN_DIGITS[kind]
            or (kind == "email" and "@" not in text)
            or (kind == "ip" and not ("." in text or ":" in text))
        ):
            continue
        text = pattern.sub(sub, text)
        if replaced:
            digits = len(text) - len(text.translate(_NO_DIGITS))
    return text, replaced


def redact(text: str) -> Redacted:
    """Replace every detected PII span by its typed placeholder; never raises."""
    if _TRIGGER.search(text) is None:  # fast path: no digit, '@' or ':' means no detector can match
        return Redacted(text)
    counts: Counter[str] = Counter()
    for _ in range(_MAX_PASSES):
        text, replaced = _one_pass(text, counts)
        if not replaced:
            break
    return Redacted(text, dict(counts))


def find_pii(text: str) -> list[tuple[str, str]]:
    """Every (type, matched text) the detectors find, without replacing: used by tests and audits."""
    found = []
    for kind, pattern, valid in _DETECTORS:
        for match in pattern.finditer(text):
            if valid is None or valid(match.group(0)):
                found.append((kind, match.group(0)))
    return found
