"""The four cdk-nag packs and the acknowledgment helper: a planted finding fails synthesis, an acknowledgment
clears exactly the finding it names, and the helper refuses what would make acknowledgments meaningless (no reason,
a reason that restates the rule, an unknown pack, a blanket scope). One bare stack per test, a few seconds each."""

from __future__ import annotations

import json
from pathlib import Path

import aws_cdk as cdk
import pytest
from aws_cdk import aws_sqs as sqs

from infra.constructs.nag import PACKS, acknowledge, in_packs, nag_packs, rule_id

CONTEXT: dict[str, object] = {"aws:cdk:bundling-stacks": []}
# An encrypted, TLS-only queue with no redrive policy: AwsSolutions-SQS3 and Serverless-SQSRedrivePolicy, nothing else.
PLANTED = {"AwsSolutions-SQS3", "Serverless-SQSRedrivePolicy"}


def synth_queue(acknowledged: tuple[str, ...]) -> set[str]:
    """Synthesize a bare stack with the planted queue under every pack; the rule ids that failed (empty: passed)."""
    app = cdk.App(context=CONTEXT)
    queue = sqs.Queue(cdk.Stack(app, "S"), "Q", enforce_ssl=True, encryption=sqs.QueueEncryption.KMS_MANAGED)
    if acknowledged:
        acknowledge(queue, list(acknowledged), "test queue: a dead-letter queue whose messages a person replays")
    cdk.Validations.of(app).add_plugins(*nag_packs(app))
    try:
        app.synth()
    except Exception:  # jsii surfaces CDK's ValidationError as a plain Exception
        report = json.loads((Path(app.outdir) / "validation-report.json").read_text(encoding="utf-8"))
        return {v["ruleName"] for plugin in report["pluginReports"] for v in plugin["violations"]}
    return set()


def test_every_pack_runs_and_an_unacknowledged_finding_fails_synthesis() -> None:
    # Given the planted queue and no acknowledgment / When the app synthesizes under the four packs
    failed = synth_queue(())
    # Then synthesis fails on the AwsSolutions finding and on the Serverless pack's own finding
    assert failed == PLANTED


def test_an_acknowledgment_clears_only_the_finding_it_names() -> None:
    # Given the planted queue with one of its two findings acknowledged
    failed = synth_queue(("Serverless-SQSRedrivePolicy",))
    # Then the other one still fails synthesis
    assert failed == {"AwsSolutions-SQS3"}
    # And acknowledging both lets it synthesize
    assert synth_queue(tuple(sorted(PLANTED))) == set()


def test_rule_ids_of_every_pack_are_accepted_and_others_refused() -> None:
    # Given one rule of each pack / Then each is a valid id, with the finding suffix where given
    assert [rule_id(f"{pack}-LambdaDLQ") for pack in PACKS] == [
        "AwsSolutions-LambdaDLQ",
        "HIPAA.Security-LambdaDLQ",
        "NIST.800.53.R5-LambdaDLQ",
        "Serverless-LambdaDLQ",
    ]
    assert rule_id("AwsSolutions-IAM5", "Resource::*") == "AwsSolutions-IAM5[Resource::*]"
    assert in_packs("IAMNoInlinePolicy", ("HIPAA.Security", "NIST.800.53.R5")) == [
        "HIPAA.Security-IAMNoInlinePolicy",
        "NIST.800.53.R5-IAMNoInlinePolicy",
    ]
    # When the pack is missing or unknown / Then the id is refused, naming the known packs
    for bad in ("SQS3", "PCI.DSS.321-SQS3", "HIPAA.Security-"):
        with pytest.raises(ValueError, match=r"HIPAA\.Security"):
            rule_id(bad)
    with pytest.raises(ValueError, match="unknown cdk-nag pack"):
        in_packs("LambdaDLQ", ("HIPAA",))


def test_an_acknowledgment_without_a_real_reason_or_on_a_whole_stack_is_refused() -> None:
    # Given a queue in a stack in an app
    app = cdk.App(context=CONTEXT)
    stack = cdk.Stack(app, "S")
    queue = sqs.Queue(stack, "Q")
    # Then a missing, short or rule-restating reason is refused
    for reason in ("", "ok", "   fine fine   ", "Serverless-SQSRedrivePolicy", "SQSRedrivePolicy."):
        with pytest.raises(ValueError, match="reason"):
            acknowledge(queue, "Serverless-SQSRedrivePolicy", reason)
    # And a blanket acknowledgment on the stack or the app is refused even with a reason
    for scope in (stack, app):
        with pytest.raises(ValueError, match="every resource under it"):
            acknowledge(scope, "Serverless-SQSRedrivePolicy", "queues here are dead-letter queues of mappings")
