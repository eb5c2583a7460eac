"""One JSON call to a SageMaker endpoint, for every caller that reaches a model served there (the classifier
route's SageMakerBackend, the generator's `sagemaker:` backend): the client, the JSON in and out, and the one
way a failure is named. Each caller turns EndpointError into its own error (502 at the API)."""

from __future__ import annotations

import json
from typing import Any

from cnai.errors import CnaiError

JSON = "application/json"
# SageMaker's own bound on an InvokeEndpoint answer (6 MB real-time, 4 MB serverless): a longer body is not an
# answer any of our containers writes, so it is refused before it is read into memory, not parsed.
MAX_ANSWER_BYTES = 6 * 1024 * 1024


class EndpointError(CnaiError):
    """The endpoint failed, was unreachable, or answered something that is not JSON."""


def runtime_client() -> Any:
    """The sagemaker-runtime client, created on first use by the caller (no AWS call at import or init)."""
    import boto3

    return boto3.client("sagemaker-runtime")


def invoke_json(client: Any, endpoint: str, payload: dict[str, Any]) -> Any:
    """InvokeEndpoint with `payload` as JSON; the decoded JSON answer. Raises EndpointError naming the endpoint
    and, for a service error, its code and (shortened) message; never the stack or the credentials."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        response = client.invoke_endpoint(
            EndpointName=endpoint, ContentType=JSON, Accept=JSON, Body=json.dumps(payload).encode("utf-8")
        )
        body = response["Body"].read(MAX_ANSWER_BYTES + 1)
    except ClientError as exc:
        error = exc.response.get("Error", {})
        raise EndpointError(
            f"SageMaker endpoint {endpoint}: {error.get('Code')}: {str(error.get('Message'))[:300]}"
        ) from None
    except (BotoCoreError, KeyError) as exc:  # no credentials, timeout, no body
        raise EndpointError(f"SageMaker endpoint {endpoint}: {type(exc).__name__}") from None
    if len(body) > MAX_ANSWER_BYTES:
        raise EndpointError(f"SageMaker endpoint {endpoint}: answer over {MAX_ANSWER_BYTES} bytes, not read")
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as exc:  # not JSON, not UTF-8, nested past the parser's stack
        raise EndpointError(f"SageMaker endpoint {endpoint}: {type(exc).__name__}") from None
