"""The caller's Cognito groups on the audit record: parsed as API Gateway hands them over, stored only when
present, so the records (and hash chains) written before the field existed are unchanged."""

from __future__ import annotations

import hashlib
import io
import json

import pytest

from cnai.audit.trail import (
    Auditor,
    AuditRecord,
    Caller,
    StdoutSink,
    _parse_lines,
    caller_from_request_context,
    canonical,
    digest_inputs,
    verify_chain,
)
from cnai.identity import group_refusal, route_group

# The sha256 of this record's canonical bytes, computed with cnai/audit/trail.py as it was before `groups`.
BEFORE_GROUPS = "acb449cc015860ef265530780f9327087f7a9d9cfef8c292f5515f7f3f33e0fb"


def cognito_context(groups: object) -> dict[str, object]:
    """A REST API request context behind a COGNITO_USER_POOLS authorizer: the ID token's claims, every value a
    string (API Gateway prints the token's JSON array `cognito:groups` as `[a b]`)."""
    claims = {
        "sub": "7d8e9f00-1111-2222-3333-444455556666",
        "cognito:username": "ana",
        "token_use": "id",
        "aud": "4n5o6p7q8r9s0t1u2v3w4x5y6z",
        "iss": "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_AbCdEf123",
        "auth_time": "1795946400",
        "exp": "Sun Nov 29 11:00:00 UTC 2026",
        "iat": "Sun Nov 29 10:00:00 UTC 2026",
    }
    if groups is not None:
        claims["cognito:groups"] = groups  # type: ignore[assignment]
    return {
        "accountId": "123456789012",
        "identity": {"sourceIp": "198.51.100.4", "userAgent": "curl/8.5.0", "userArn": None, "apiKeyId": None},
        "authorizer": {"claims": claims},
    }


@pytest.mark.parametrize(
    ("claim", "groups"),
    [
        ("[predict ingest]", ["ingest", "predict"]),  # API Gateway REST: the array, printed
        ("predict,ingest", ["ingest", "predict"]),  # comma-separated, as older front ends forward it
        ("predict", ["predict"]),
        (["model-approvers", "predict", "predict"], ["model-approvers", "predict"]),  # a JSON array
        ("[]", []),
        (None, []),
    ],
)
def test_groups_are_read_from_the_claim_as_api_gateway_sends_it(claim: object, groups: list[str]) -> None:
    # Given a Cognito-authorized request context with the groups claim in one of its forms
    # When the caller is read from it
    caller, ip, _ = caller_from_request_context(cognito_context(claim))
    # Then the subject is the id and the groups are a sorted, de-duplicated list
    assert caller.kind == "cognito" and caller.id == "7d8e9f00-1111-2222-3333-444455556666"
    assert caller.groups == groups
    assert ip == "198.51.100.4"


def test_an_iam_caller_has_no_groups() -> None:
    caller, _, _ = caller_from_request_context({"identity": {"userArn": "arn:aws:sts::1:assumed-role/app/x"}})
    assert caller.kind == "iam" and caller.groups == []


def test_a_record_without_groups_keeps_its_bytes_and_hash() -> None:
    # Given a Cognito record without groups, as every record before the field existed
    record = AuditRecord(
        request_id="r1",
        time="2026-11-29T10:00:00.000Z",
        caller=Caller(kind="cognito", id="sub-1", account_id="123456789012"),
        inputs=digest_inputs(["I lost my card"]),
        status=200,
        latency_ms=1.5,
    )
    # When its canonical bytes are computed
    data = canonical(record)
    # Then they hold no groups key and hash exactly as before the field was added
    assert b"groups" not in data
    assert hashlib.sha256(data).hexdigest() == BEFORE_GROUPS


def test_groups_are_stored_chained_and_verified() -> None:
    # Given an auditor writing a Cognito call with groups, then an IAM call
    out = io.StringIO()
    auditor = Auditor(StdoutSink(out))
    for caller in (Caller(kind="cognito", id="s", groups=["ingest", "predict"]), Caller(kind="iam", id="arn:x")):
        auditor.write(
            AuditRecord(request_id="r", time="2026-11-29T10:00:00.000Z", caller=caller, status=200, latency_ms=1)
        )
    # When the lines are read back
    first, second = (json.loads(line) for line in out.getvalue().splitlines())
    # Then the groups are in the first record only, and the chain verifies
    assert first["caller"]["groups"] == ["ingest", "predict"]
    assert "groups" not in second["caller"]
    assert verify_chain(_parse_lines(out.getvalue(), "stdout")) == []
    # And an edited group breaks the chain (the groups are covered by the hash)
    forged = out.getvalue().replace('"groups":["ingest","predict"]', '"groups":["model-approvers","predict"]')
    assert forged != out.getvalue()
    assert verify_chain(_parse_lines(forged, "stdout")) != []


@pytest.mark.parametrize(
    ("path", "group"),
    [
        ("/v1/models/banking77/predict", "predict"),
        ("/v1/models/banking77/generate", "predict"),
        ("/v1/models", "predict"),
        ("/v1/models/banking77/", "predict"),
        ("/v1/ingest", "ingest"),
        ("/v1/health", None),
        ("/v1/openapi.json", None),
    ],
)
def test_each_route_names_its_group(path: str, group: str | None) -> None:
    assert route_group(path) == group


def test_only_a_cognito_call_outside_the_group_is_refused() -> None:
    # Given a member of `ingest` only, a member of `predict`, and an IAM caller with no claims
    # Then predict refuses the first, naming the group required and the groups held, and admits the others
    refusal = group_refusal(cognito_context("[ingest]"), "predict")
    assert refusal == "this route needs Cognito group 'predict'; the token's groups: ingest"
    assert group_refusal(cognito_context(None), "predict") == (
        "this route needs Cognito group 'predict'; the token's groups: none"
    )
    assert group_refusal(cognito_context("[predict]"), "predict") is None
    assert group_refusal({"identity": {"userArn": "arn:aws:sts::1:assumed-role/app/x"}}, "predict") is None
    # And a route without a group admits every signed-in caller
    assert group_refusal(cognito_context(None), None) is None
