"""SecureBucket on a bare stack: the guarantees are in the template and cdk-nag finds nothing."""

from __future__ import annotations

import aws_cdk as cdk
import pytest
from aws_cdk import assertions
from aws_cdk import aws_s3 as s3

from infra.constructs.nag import nag_packs
from infra.constructs.secure_bucket import SecureBucket

CONTEXT = {"aws:cdk:bundling-stacks": []}


@pytest.fixture(scope="module")
def template() -> assertions.Template:
    # Given a bare stack holding one SecureBucket with an extra lifecycle rule, checked by cdk-nag
    app = cdk.App(context=CONTEXT)
    stack = cdk.Stack(app, "Bare")
    SecureBucket(
        stack,
        "Lake",
        lifecycle_rules=[
            s3.LifecycleRule(
                id="ia-after-30d",
                transitions=[
                    s3.Transition(
                        storage_class=s3.StorageClass.INFREQUENT_ACCESS, transition_after=cdk.Duration.days(30)
                    )
                ],
            )
        ],
    )
    cdk.Validations.of(app).add_plugins(*nag_packs(app))
    # When it synthesizes (policy validation fails synthesis on an unacknowledged error)
    app.synth()
    return assertions.Template.from_stack(stack)


def test_bucket_is_kms_encrypted_with_a_rotating_cmk(template: assertions.Template) -> None:
    # Then the data bucket uses SSE-KMS with a bucket key and the CMK rotates
    template.has_resource_properties(
        "AWS::S3::Bucket",
        {
            "BucketEncryption": {
                "ServerSideEncryptionConfiguration": [
                    assertions.Match.object_like(
                        {
                            "BucketKeyEnabled": True,
                            "ServerSideEncryptionByDefault": assertions.Match.object_like({"SSEAlgorithm": "aws:kms"}),
                        }
                    )
                ]
            },
            "VersioningConfiguration": {"Status": "Enabled"},
            "LoggingConfiguration": assertions.Match.object_like({"LogFilePrefix": "Lake/"}),
            "PublicAccessBlockConfiguration": {
                "BlockPublicAcls": True,
                "BlockPublicPolicy": True,
                "IgnorePublicAcls": True,
                "RestrictPublicBuckets": True,
            },
        },
    )
    template.has_resource_properties("AWS::KMS::Key", {"EnableKeyRotation": True})


def test_lifecycle_keeps_the_defaults_and_adds_the_callers_rules(template: assertions.Template) -> None:
    rules = template.find_resources(
        "AWS::S3::Bucket", {"Properties": {"BucketEncryption": assertions.Match.any_value()}}
    )
    data = [r for r in rules.values() if "LoggingConfiguration" in r["Properties"]]
    assert len(data) == 1
    ids = {rule["Id"] for rule in data[0]["Properties"]["LifecycleConfiguration"]["Rules"]}
    assert ids == {"abort-incomplete-uploads", "expire-noncurrent-versions", "ia-after-30d"}


def test_bucket_policies_deny_plain_http_and_old_tls(template: assertions.Template) -> None:
    policies = template.find_resources("AWS::S3::BucketPolicy")
    assert len(policies) == 2  # the data bucket and the access-log bucket
    for policy in policies.values():
        conditions = [s.get("Condition", {}) for s in policy["Properties"]["PolicyDocument"]["Statement"]]
        assert {"Bool": {"aws:SecureTransport": "false"}} in conditions
        assert {"NumericLessThan": {"s3:TlsVersion": 1.2}} in conditions
