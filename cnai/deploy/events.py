"""The one event that deploys: SageMaker's "Model Package State Change" for a package of our groups whose
approval status is Approved.

`approval_pattern` is the EventBridge rule's pattern (infra writes it into the template; the local platform
reads it back from the synthesized template and matches with it), `package_state_change` builds the event
SageMaker sends, from a DescribeModelPackage answer (the event's `detail` is that description).

Why the pattern alone cannot tell a *transition* to Approved: SageMaker sends the event on every change of a
package (metadata included) and its detail carries the current status only, never the previous one. The
workflow's first step therefore does nothing when the alias already serves that package version (see
cnai.deploy.canary.release), which makes a repeated Approved event harmless.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

SOURCE = "aws.sagemaker"
DETAIL_TYPE = "SageMaker Model Package State Change"
APPROVED = "Approved"


def approval_pattern(groups: Iterable[str]) -> dict[str, Any]:
    """Approved packages of these model package groups, nothing else (Pending, Rejected, other groups)."""
    names = sorted(set(groups))
    if not names:
        raise ValueError("approval_pattern: no model package groups (the rule would match none of ours)")
    return {
        "source": [SOURCE],
        "detail-type": [DETAIL_TYPE],
        "detail": {"ModelPackageGroupName": names, "ModelApprovalStatus": [APPROVED]},
    }


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=lambda v: v.isoformat() if isinstance(v, datetime) else str(v)))


def package_state_change(
    description: Mapping[str, Any], *, account: str, region: str, time: datetime | None = None
) -> dict[str, Any]:
    """The EventBridge event SageMaker emits for a package whose description (DescribeModelPackage, without
    ResponseMetadata) is `description`."""
    if "ModelPackageArn" not in description:
        raise ValueError("package_state_change: the description has no ModelPackageArn")
    detail = {k: v for k, v in description.items() if k != "ResponseMetadata"}
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": DETAIL_TYPE,
        "source": SOURCE,
        "account": account,
        "time": (time or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": region,
        "resources": [str(description["ModelPackageArn"])],
        "detail": _jsonable(detail),
    }
