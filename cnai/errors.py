"""Domain errors: each carries enough context (file, line, field) for a person to fix the input."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError


class CnaiError(Exception):
    """Base of every error cnai raises on purpose; anything else is a bug."""


class DataError(CnaiError):
    """A dataset file cannot be used. Names the file, the line (1-based, header = line 1) and the problem."""

    def __init__(self, path: str, problem: str, line: int | None = None) -> None:
        self.path = path
        self.line = line
        self.problem = problem
        where = f"{path}:{line}" if line is not None else path
        super().__init__(f"{where}: {problem}")


class ArtifactError(CnaiError):
    """A model artifact is missing, partial or corrupt; it must never be served."""


def describe(error: ValidationError, whole: str = "record") -> str:
    """One line naming each bad field and its problem: `text: is empty after normalization; tenant: ...`."""
    parts = []
    for item in error.errors(include_url=False):
        field = ".".join(str(p) for p in item["loc"]) or whole
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "missing":
            message = "is required"
        elif item["type"] == "extra_forbidden":
            message = "is not a known field"
        elif item["type"] == "string_pattern_mismatch":
            message = f"does not match {item['ctx']['pattern']}"
        parts.append(f"{field}: {message}")
    return "; ".join(parts)


def error_body(
    code: str, message: str, request_id: str | None, fields: list[dict[str, str]] | None = None
) -> dict[str, Any]:
    """The one error body of every cnai HTTP API (predict and ingest): `{"error": {"code", "message",
    "fields"?}, "request_id"}`; `fields` lists `{"field", "message"}` for each part of the request to fix.
    Here, at the bottom of the library, so every API can use it whatever its layer."""
    error: dict[str, Any] = {"code": code, "message": message}
    if fields:
        error["fields"] = fields
    return {"error": error, "request_id": request_id}
