"""Cognito groups: reading them from a token's claims, and which group each API route needs (decided in the
handler).

With `cnai:api.auth=cognito` the API Gateway authorizer only proves that the token is valid and was issued by
the deployment's user pool; it does not look at the groups. The handlers do: predict and model routes need the
`predict` group, POST /v1/ingest the `ingest` group (`model-approvers` is enforced by IAM, through the role the
identity pool maps that group to). A call without Cognito claims (IAM SigV4, an API key, `cnai serve` on a
laptop) was authorized by the gateway or runs locally, and is never refused here: under IAM nothing changes.
"""

from __future__ import annotations

from typing import Any

PREDICT = "predict"
INGEST = "ingest"
APPROVERS = "model-approvers"
GROUPS = (PREDICT, INGEST, APPROVERS)

FORBIDDEN = "forbidden"  # the error code of a refused group, in the one error shape (cnai.errors.error_body)


MAX_GROUPS = 50  # bounds what a record stores of a caller-influenced claim (a user pool caps a user at 100)


def groups_of(claims: dict[str, Any]) -> list[str]:
    """The `cognito:groups` claim as a list. A REST API's Cognito authorizer hands every claim to the Lambda as a
    string: `predict,ingest`, or `[predict ingest]` (the token's JSON array printed by API Gateway); a test
    or another front end may pass the array itself. Sorted and de-duplicated, so equal rights read the same."""
    value = claims.get("cognito:groups")
    if isinstance(value, list):
        items = [v for v in value if isinstance(v, str)]
    elif isinstance(value, str):
        items = value.strip().removeprefix("[").removesuffix("]").replace(",", " ").split()
    else:
        return []
    bounded = (item.strip()[:128].encode("utf-8", "backslashreplace").decode("utf-8") for item in items)
    return sorted(set(bounded) - {""})[:MAX_GROUPS]


def route_group(path: str) -> str | None:
    """The group a route needs: `predict` for /v1/models and below, `ingest` for /v1/ingest, None for the
    routes any signed-in caller may read (/v1/health, /v1/openapi.json) and for unknown paths (answered 404)."""
    path = path.rstrip("/")
    if path == "/v1/models" or path.startswith("/v1/models/"):
        return PREDICT
    if path == "/v1/ingest":
        return INGEST
    return None


def group_refusal(request_context: Any, group: str | None) -> str | None:
    """None when the call may go on; otherwise the 403 message, naming the group required and the groups the
    token carried. Only a Cognito call (claims with a subject) is judged."""
    if group is None or not isinstance(request_context, dict):
        return None
    authorizer = request_context.get("authorizer")
    claims = authorizer.get("claims") if isinstance(authorizer, dict) else None
    if not isinstance(claims, dict) or not claims.get("sub"):
        return None
    held = groups_of(claims)
    if group in held:
        return None
    shown = ", ".join(held) if held else "none"
    return f"this route needs Cognito group {group!r}; the token's groups: {shown}"


def refusal_fields(message: str) -> list[dict[str, str]]:
    """The `fields` entry of a group refusal: the claim to fix (the user's group membership, not the request)."""
    return [{"field": "cognito:groups", "message": message}]
