"""Fixtures: moto with the predict function as a fresh `cdk deploy` leaves it (see world.py)."""

from __future__ import annotations

from collections.abc import Iterator

import boto3
import pytest
from moto import mock_aws

from cnai.deploy.canary import Clients, Target
from cnai.registry.packages import Registry
from tests.unit.deploy.world import BOOT_ENV, BUCKET, FUNCTION, MODEL, PREFIX, TRUST, World, dummy_zip


@pytest.fixture
def world(fake_aws_env: None) -> Iterator[World]:
    """As a fresh `cdk deploy` leaves it: the function, its bootstrap version 1 and `live` on it."""
    with mock_aws():
        iam = boto3.client("iam")
        role = iam.create_role(RoleName="predict", AssumeRolePolicyDocument=TRUST)
        lam = boto3.client("lambda")
        lam.create_function(FunctionName=FUNCTION, Runtime="python3.12", Role=role["Role"]["Arn"],
                            Handler="handler.handler", Code={"ZipFile": dummy_zip()},
                            Environment={"Variables": dict(BOOT_ENV)})  # fmt: skip
        boot = lam.publish_version(FunctionName=FUNCTION)["Version"]
        lam.create_alias(FunctionName=FUNCTION, Name="live", FunctionVersion=boot)
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket=BUCKET)
        s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        registry = Registry(boto3.client("sagemaker"), PREFIX)
        registry.ensure_group(MODEL)
        clients = Clients(lam, boto3.client("cloudwatch"), s3, registry)
        yield World(clients, Target(function=FUNCTION, model=MODEL), registry)
