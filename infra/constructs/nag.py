"""Acknowledge cdk-nag findings next to the resource they concern, each with its own reason.

The app runs four cdk-nag packs (`PACKS`: AwsSolutions, HIPAA Security, NIST 800-53 rev 5, Serverless). cdk-nag
v3 reads CDK's native `Validations.of(scope).acknowledge(...)` and matches one finding at a time: the id is the
pack's name, a dash and the rule (`HIPAA.Security-LambdaDLQ`), plus `[finding]` where a rule reports several
(`AwsSolutions-IAM5[Resource::*]` and `AwsSolutions-IAM5[Action::s3:*]` are two acknowledgments).

An acknowledgment names the rule, the resource (the construct it is attached to, and whatever that construct
contains) and a reason that says why the finding is acceptable *there*. This module refuses the rest: an id of no
pack, a reason too short to say anything, a reason that only restates the rule, and a scope that is an App, a
Stage or a Stack (a blanket suppression over every resource of a deployment is a silenced alarm, not a review).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import aws_cdk as cdk
from cdk_nag import AwsSolutionsChecks, HIPAASecurityChecks, NagPack, NIST80053R5Checks, ServerlessChecks
from constructs import Construct, IConstruct

MIN_REASON_CHARS = 20

# Pack name (the rule id's prefix) -> the pack. The order is the order reports list them in.
PACKS: dict[str, type[NagPack]] = {
    "AwsSolutions": AwsSolutionsChecks,
    "HIPAA.Security": HIPAASecurityChecks,
    "NIST.800.53.R5": NIST80053R5Checks,
    "Serverless": ServerlessChecks,
}


def nag_packs(scope: Construct) -> list[NagPack]:
    """One instance of every pack, verbose (the report then says why each rule exists)."""
    return [pack(scope, verbose=True) for pack in PACKS.values()]


def rule_id(rule: str, finding: str | None = None) -> str:
    """`HIPAA.Security-LambdaDLQ` or `AwsSolutions-IAM5[Resource::*]`: the id cdk-nag v3 matches.

    Raises ValueError when `rule` is not `<pack>-<rule>` for one of `PACKS` (a typo would acknowledge nothing and
    the finding would fail synthesis anyway, but with a message that hides the typo).
    """
    pack, _, name = rule.partition("-")
    if pack not in PACKS or not name or not name.replace(".", "").isalnum():
        raise ValueError(f"rule {rule!r}: expected <pack>-<rule> with a pack among {', '.join(PACKS)}")
    return f"{rule}[{finding}]" if finding else rule


def in_packs(name: str, packs: Sequence[str]) -> list[str]:
    """`LambdaDLQ` in ("HIPAA.Security", "Serverless") -> the two rule ids, for a rule several packs share."""
    unknown = [p for p in packs if p not in PACKS]
    if unknown:
        raise ValueError(f"unknown cdk-nag pack(s) {', '.join(unknown)}; known: {', '.join(PACKS)}")
    return [f"{pack}-{name}" for pack in packs]


def _check_scope(scope: IConstruct, rules: Sequence[str]) -> None:
    if isinstance(scope, cdk.App | cdk.Stage) or cdk.Stack.is_stack(scope):
        kind = "a Stack" if cdk.Stack.is_stack(scope) else "an App or Stage"
        raise ValueError(
            f"acknowledging {', '.join(rules)} on {scope.node.path or 'the app'} ({kind}) would silence it for every "
            "resource under it: acknowledge it on the resource (or the construct that builds it) instead"
        )


def _check_reason(rules: Sequence[str], reason: str) -> str:
    text = reason.strip()
    if len(text) < MIN_REASON_CHARS:
        raise ValueError(
            f"acknowledging {', '.join(rules)} needs a specific reason (>= {MIN_REASON_CHARS} characters), got {text!r}"
        )
    bare = {r.rpartition("-")[2].lower() for r in rules} | {r.lower() for r in rules}
    if text.lower().rstrip(".") in bare:
        raise ValueError(f"acknowledging {', '.join(rules)}: the reason only restates the rule; say why it is fine")
    return text


def acknowledge(scope: IConstruct, rule: str | Sequence[str], reason: str, *, findings: Iterable[str] = ()) -> None:
    """Acknowledge `rule` (one id, or several: the same reason for the same rule in several packs) on `scope` and
    its children; one acknowledgment per finding when `findings` are given.

    Raises ValueError on an unknown pack or malformed rule id, on a reason shorter than MIN_REASON_CHARS or equal
    to the rule's name, and on an App, Stage or Stack scope.
    """
    rules = [rule] if isinstance(rule, str) else list(rule)
    if not rules:
        raise ValueError("acknowledge: name at least one rule")
    _check_scope(scope, rules)
    text = _check_reason(rules, reason)
    wanted = list(findings)
    ids = [rule_id(r, f) for r in rules for f in wanted] if wanted else [rule_id(r) for r in rules]
    cdk.Validations.of(scope).acknowledge(*(cdk.Acknowledgment(id=i, reason=text) for i in ids))


def acknowledge_inline_policy(role: IConstruct, reason: str | None = None) -> None:
    """HIPAA/NIST IAMNoInlinePolicy on a role built here (its DefaultPolicy is a child, so it is covered).

    CDK's grants write each role's statements into that role's own policy; a customer-managed policy per role
    would be the same statements under another resource type, attachable to other principals by mistake.
    """
    acknowledge(
        role,
        in_packs("IAMNoInlinePolicy", ("HIPAA.Security", "NIST.800.53.R5")),
        reason
        or f"{role.node.path}: its statements are CDK grants scoped to the named resources this role alone uses; "
        "a managed policy would hold the same statements and could be attached to other principals.",
    )
