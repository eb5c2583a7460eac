"""A DynamoDB table with the guarantees every cnai table needs, in one place.

On-demand billing, point-in-time recovery, encryption with the caller's customer-managed key, a TTL attribute
that removes spent items, and RETAIN on stack deletion.
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_kms as kms
from constructs import Construct

from infra.constructs.nag import acknowledge, in_packs


def secure_table(
    scope: Construct, construct_id: str, *, partition_key: str, ttl_attribute: str, key: kms.IKey
) -> dynamodb.Table:
    """A table keyed by the string `partition_key`, items expiring at the epoch seconds in `ttl_attribute`."""
    table = dynamodb.Table(
        scope,
        construct_id,
        partition_key=dynamodb.Attribute(name=partition_key, type=dynamodb.AttributeType.STRING),
        billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
        time_to_live_attribute=ttl_attribute,
        point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
            point_in_time_recovery_enabled=True
        ),
        encryption=dynamodb.TableEncryption.CUSTOMER_MANAGED,
        encryption_key=key,
        removal_policy=cdk.RemovalPolicy.RETAIN,
    )
    acknowledge(
        table,
        in_packs("DynamoDBInBackupPlan", ("HIPAA.Security", "NIST.800.53.R5")),
        "Point-in-time recovery (35 days, to the second) is on; the items are short-lived by design (TTL: record "
        "ids for dedup, drift cool-downs) and rebuilt by the platform, so an AWS Backup plan adds no recovery point "
        "that PITR lacks.",
    )
    return table
