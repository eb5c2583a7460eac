"""The approval rule's pattern: Approved packages of our groups start a deploy; Pending, Rejected and other
groups' packages do not. Matched with moto's EventBridge matcher on SageMaker's event shape."""

from __future__ import annotations

from typing import Any

import pytest

from cnai.deploy.events import DETAIL_TYPE, SOURCE, approval_pattern, package_state_change
from cnai.local.events import matches

OURS = "cnai-dev-banking77"
ARN = "arn:aws:sagemaker:us-east-1:123456789012:model-package/cnai-dev-banking77/3"


def description(group: str = OURS, status: str = "Approved") -> dict[str, Any]:
    return {
        "ModelPackageGroupName": group,
        "ModelPackageVersion": 3,
        "ModelPackageArn": ARN.replace(OURS, group.lower()),
        "ModelApprovalStatus": status,
        "ModelPackageStatus": "Completed",
        "InferenceSpecification": {"Containers": [{"Image": "img", "ModelDataUrl": "s3://a/training/j/model.tar.gz"}]},
        "ResponseMetadata": {"HTTPStatusCode": 200},
    }


def event(**kw: str) -> dict[str, Any]:
    return package_state_change(description(**kw), account="123456789012", region="us-east-1")


def test_the_event_has_sagemakers_shape_and_carries_the_description_as_detail() -> None:
    # Given a package description  When the event is built
    built = event()
    # Then it is SageMaker's envelope, the detail is the description without the response metadata
    assert (built["source"], built["detail-type"]) == (SOURCE, DETAIL_TYPE)
    assert built["resources"] == [ARN]
    assert built["detail"]["ModelApprovalStatus"] == "Approved" and "ResponseMetadata" not in built["detail"]


@pytest.mark.parametrize(
    ("group", "status", "deploys"),
    [
        (OURS, "Approved", True),
        (OURS, "PendingManualApproval", False),
        (OURS, "Rejected", False),
        ("someone-else-banking77", "Approved", False),
        ("cnai-prod-banking77", "Approved", False),
    ],
)
def test_only_an_approval_in_our_groups_matches(group: str, status: str, deploys: bool) -> None:
    # Given the rule's pattern for our group  When SageMaker's event for a package change arrives
    pattern = approval_pattern([OURS])
    # Then only Approved in our group matches
    assert matches(pattern, event(group=group, status=status)) is deploys


def test_other_sources_and_detail_types_do_not_match() -> None:
    # Given an approval event sent by someone else, or another SageMaker detail type
    pattern = approval_pattern([OURS])
    forged = {**event(), "source": "custom.sagemaker"}
    other = {**event(), "detail-type": "SageMaker Model Package Group State Change"}
    # Then neither matches
    assert not matches(pattern, forged)
    assert not matches(pattern, other)


def test_a_pattern_without_groups_is_refused() -> None:
    with pytest.raises(ValueError, match="no model package groups"):
        approval_pattern([])
