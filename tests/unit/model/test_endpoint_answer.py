"""invoke_json's reading of an endpoint's answer: what every caller of a SageMaker-served model (the classifier
route, the `sagemaker:` generator) gets from a body that is too large, not JSON, or nested past the parser's
stack: an EndpointError naming the endpoint (a 502 at the API), never a MemoryError, RecursionError or a stack."""

from __future__ import annotations

import io
from typing import Any

import pytest
from botocore.response import StreamingBody

from cnai.model.endpoint import MAX_ANSWER_BYTES, EndpointError, invoke_json

pytestmark = pytest.mark.unit


class OneAnswer:
    """A sagemaker-runtime client whose InvokeEndpoint answers `raw` (botocore's StreamingBody, as boto3 gives)."""

    def __init__(self, raw: bytes) -> None:
        self.raw = raw
        self.body: StreamingBody | None = None

    def invoke_endpoint(self, **kwargs: Any) -> dict[str, Any]:
        self.body = StreamingBody(io.BytesIO(self.raw), len(self.raw))
        return {"Body": self.body, "ContentType": "application/json"}


def test_a_json_answer_is_decoded() -> None:
    assert invoke_json(OneAnswer(b'{"ok": [1, 2]}'), "ep", {"inputs": "x"}) == {"ok": [1, 2]}


def test_an_answer_at_the_bound_is_read() -> None:
    raw = b'"' + b"a" * (MAX_ANSWER_BYTES - 2) + b'"'
    assert len(invoke_json(OneAnswer(raw), "ep", {})) == MAX_ANSWER_BYTES - 2


def test_an_answer_over_the_bound_is_refused_without_reading_it_all() -> None:
    client = OneAnswer(b'"' + b"a" * (2 * MAX_ANSWER_BYTES) + b'"')
    with pytest.raises(EndpointError, match=rf"SageMaker endpoint ep: answer over {MAX_ANSWER_BYTES} bytes"):
        invoke_json(client, "ep", {})
    assert client.body is not None and client.body.tell() == MAX_ANSWER_BYTES + 1  # read one byte past, no more


@pytest.mark.parametrize(
    ("raw", "kind"),
    [(b"<html>502 Bad Gateway</html>", "JSONDecodeError"), (b"\xff\xfe{", "UnicodeDecodeError"),
     (b"[" * 200_000 + b"]" * 200_000, "RecursionError")],
)  # fmt: skip
def test_an_answer_that_is_not_json_names_the_endpoint(raw: bytes, kind: str) -> None:
    with pytest.raises(EndpointError, match=rf"^SageMaker endpoint ep: {kind}$"):
        invoke_json(OneAnswer(raw), "ep", {})
