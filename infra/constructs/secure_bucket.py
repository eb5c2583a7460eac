"""An S3 bucket with the guarantees every cnai bucket needs, in one place.

KMS customer-managed key (rotation on, bucket key to cut KMS calls), versioning, TLS-only bucket policy
(TLS 1.2 minimum), all public access blocked, object ownership enforced (no ACLs), server access logs in a
separate log bucket, and lifecycle rules: incomplete multipart uploads are aborted, noncurrent versions
expire, plus whatever rules the caller adds (e.g. move old curated data to Infrequent Access).
Optional Object Lock for tamper-evident data (the audit trail).
"""

from __future__ import annotations

from collections.abc import Sequence

import aws_cdk as cdk
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from infra.constructs.nag import acknowledge, in_packs

REPLICATION = in_packs("S3BucketReplicationEnabled", ("HIPAA.Security", "NIST.800.53.R5"))


class SecureBucket(Construct):
    """`bucket`, its `key` and the `access_logs` bucket. Pass `key` to share one CMK between resources."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        key: kms.IKey | None = None,
        access_logs: s3.IBucket | None = None,
        lifecycle_rules: Sequence[s3.LifecycleRule] = (),
        noncurrent_version_days: int = 90,
        access_log_days: int = 365,
        object_lock_retention: s3.ObjectLockRetention | None = None,
        removal_policy: cdk.RemovalPolicy = cdk.RemovalPolicy.RETAIN,
        bucket_name: str | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        # Grant log delivery through the log bucket's policy, not the legacy LogDeliveryWrite ACL, so both
        # buckets can keep ACLs disabled (BucketOwnerEnforced). Set before any child exists.
        self.node.set_context("@aws-cdk/aws-s3:serverAccessLogsUseBucketPolicy", True)
        self.key: kms.IKey = key or kms.Key(
            self,
            "Key",
            description=f"{self.node.path}: encrypts the bucket objects",
            enable_key_rotation=True,
            removal_policy=removal_policy,
        )
        if access_logs is None:
            # Server access log delivery cannot write to SSE-KMS buckets: the log bucket uses SSE-S3.
            log_bucket = s3.Bucket(
                self,
                "AccessLogs",
                encryption=s3.BucketEncryption.S3_MANAGED,
                block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
                enforce_ssl=True,
                minimum_tls_version=1.2,
                versioned=True,
                object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
                lifecycle_rules=[
                    s3.LifecycleRule(
                        id="expire-access-logs",
                        expiration=cdk.Duration.days(access_log_days),
                        noncurrent_version_expiration=cdk.Duration.days(30),
                        abort_incomplete_multipart_upload_after=cdk.Duration.days(7),
                    )
                ],
                removal_policy=removal_policy,
            )
            acknowledge(
                log_bucket,
                "AwsSolutions-S1",
                "This is the server access log bucket itself; logging it to itself would loop.",
            )
            acknowledge(
                log_bucket,
                in_packs("S3DefaultEncryptionKMS", ("HIPAA.Security", "NIST.800.53.R5")),
                "Server access log delivery writes only to SSE-S3 target buckets (it cannot use a KMS key), so this "
                "log bucket is SSE-S3; it holds request metadata, never object contents.",
            )
            acknowledge(
                log_bucket,
                REPLICATION,
                "Access logs are diagnostic metadata kept for a year in this region; a replica would double their "
                "cost without protecting any data the platform needs to recover.",
            )
            access_logs = log_bucket
        self.access_logs = access_logs
        rules = [
            s3.LifecycleRule(
                id="abort-incomplete-uploads",
                abort_incomplete_multipart_upload_after=cdk.Duration.days(7),
            ),
            s3.LifecycleRule(
                id="expire-noncurrent-versions",
                noncurrent_version_expiration=cdk.Duration.days(noncurrent_version_days),
            ),
            *lifecycle_rules,
        ]
        self.bucket = s3.Bucket(
            self,
            "Bucket",
            bucket_name=bucket_name,
            encryption=s3.BucketEncryption.KMS,
            encryption_key=self.key,
            bucket_key_enabled=True,
            versioned=True,
            enforce_ssl=True,
            minimum_tls_version=1.2,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            server_access_logs_bucket=access_logs,
            server_access_logs_prefix=f"{construct_id}/",
            lifecycle_rules=rules,
            object_lock_enabled=object_lock_retention is not None or None,
            object_lock_default_retention=object_lock_retention,
            removal_policy=removal_policy,
        )
        acknowledge(
            self.bucket,
            REPLICATION,
            "Versioning with noncurrent-version retention (and Object Lock where set) protects the objects against "
            "deletion and overwrite; cross-region replication is a per-deployment disaster-recovery choice that "
            "needs a second region's bucket and key, outside this single-region stack (docs/compliance.md).",
        )
