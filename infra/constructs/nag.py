"""Acknowledge cdk-nag findings next to the resource they concern, each with its own reason.

cdk-nag v3 reads CDK's native `Validations.of(scope).acknowledge(...)`. It matches one finding at a time
(`AwsSolutions-IAM5[Resource::*]` and `AwsSolutions-IAM5[Action::s3:*]` are two acknowledgments), so
this helper takes the rule and, where the rule reports several findings, the finding id; a reason is
mandatory and must say why the finding is acceptable here, not just restate the rule.
"""

from __future__ import annotations

from collections.abc import Iterable

import aws_cdk as cdk
from constructs import IConstruct

MIN_REASON_CHARS = 20


def rule_id(rule: str, finding: str | None = None) -> str:
    """`AwsSolutions-IAM5` or `AwsSolutions-IAM5[Resource::*]`: the id cdk-nag v3 matches."""
    if not rule.startswith("AwsSolutions-"):
        raise ValueError(f"rule {rule!r}: expected an AwsSolutions-XX rule id")
    return f"{rule}[{finding}]" if finding else rule


def acknowledge(scope: IConstruct, rule: str, reason: str, *, findings: Iterable[str] = ()) -> None:
    """Acknowledge `rule` on `scope` (and its children); one acknowledgment per finding when given.

    Raises ValueError on a reason shorter than MIN_REASON_CHARS: an acknowledgment without a real reason
    is a silenced alarm.
    """
    if len(reason.strip()) < MIN_REASON_CHARS:
        raise ValueError(f"acknowledging {rule} needs a specific reason (>= {MIN_REASON_CHARS} characters)")
    ids = [rule_id(rule, f) for f in findings] or [rule_id(rule)]
    cdk.Validations.of(scope).acknowledge(*(cdk.Acknowledgment(id=i, reason=reason) for i in ids))
