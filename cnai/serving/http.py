"""HTTP pieces every cnai API shares (predict and ingest): the one error body, proxy responses, and reading an
API Gateway REST proxy event's headers, body and request id.

One error shape for the whole API (cnai.errors.error_body): `{"error": {"code", "message", "fields"?},
"request_id"}`, where `fields` lists `{"field", "message"}` for each part of the request to fix.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from cnai.errors import error_body

JSON_TYPE = "application/json"
# `curl -d` sends application/x-www-form-urlencoded unless told otherwise; these APIs only speak JSON, so such a
# body is read as JSON (a real form body then fails as invalid JSON, with a 400 that says so).
CURL_DEFAULT = "application/x-www-form-urlencoded"


class BodyError(ValueError):
    """The request body cannot be read as text (bad base64, not UTF-8): a 400 naming `body`."""


def proxy_response(
    status: int | HTTPStatus, body: Mapping[str, Any] | str, headers: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """An API Gateway REST proxy response carrying a JSON body."""
    return {
        "statusCode": int(status),
        "headers": {"Content-Type": JSON_TYPE, **(headers or {})},
        "multiValueHeaders": {},
        "body": body if isinstance(body, str) else json.dumps(body),
        "isBase64Encoded": False,
    }


def error_response(
    status: HTTPStatus,
    code: str,
    message: str,
    request_id: str | None,
    fields: list[dict[str, str]] | None = None,
    headers: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    return proxy_response(status, error_body(code, message, request_id, fields), headers)


def header(event: Mapping[str, Any], name: str) -> str | None:
    """A request header, case-insensitively (API Gateway keeps the client's spelling)."""
    headers = event.get("headers")
    if not isinstance(headers, dict):
        return None
    wanted = name.lower()
    for key, value in headers.items():
        if isinstance(key, str) and key.lower() == wanted and isinstance(value, str):
            return value
    return None


def request_id(event: Mapping[str, Any]) -> str:
    """API Gateway's request id (what its access log and the caller's x-amzn-requestid show), else a new one."""
    context = event.get("requestContext")
    rid = context.get("requestId") if isinstance(context, dict) else None
    return rid if isinstance(rid, str) and rid else uuid.uuid4().hex


def body_text(event: Mapping[str, Any]) -> str | None:
    """The body as text, base64 decoded where API Gateway encoded it. Raises BodyError naming what is wrong
    (bad base64, bytes that are not UTF-8) instead of letting a decoder fail as a 500 further in."""
    body = event.get("body")
    if body is None or not isinstance(body, str):
        return None
    if not event.get("isBase64Encoded"):
        return body
    try:
        raw = base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        raise BodyError("not valid base64 (isBase64Encoded is true)") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BodyError(
            f"not valid UTF-8 (byte {exc.start}: {raw[exc.start : exc.start + 1]!r}); send UTF-8 JSON"
        ) from None


def body_is_json(content_type: str | None) -> bool:
    """Whether a request body declared with this Content-Type is read as JSON (else: 415)."""
    media = (content_type or "").split(";")[0].strip().lower()
    return (
        not media
        or media in (JSON_TYPE, CURL_DEFAULT)
        or (media.startswith("application/") and media.endswith("+json"))
    )
