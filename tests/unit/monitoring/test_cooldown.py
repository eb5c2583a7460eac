"""The cool-down's conditional write (DynamoDB in moto)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from moto import mock_aws

from cnai.monitoring.cooldown import CoolDown

T0 = datetime(2026, 12, 1, 10, tzinfo=UTC)
DAY = timedelta(hours=24)


@pytest.fixture
def dynamodb(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": "us-east-1"}.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        client = boto3.client("dynamodb")
        client.create_table(
            TableName="cooldown",
            KeySchema=[{"AttributeName": "model", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "model", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        yield client


def test_one_claim_per_period_then_free_again(dynamodb: Any) -> None:
    cooldown = CoolDown(dynamodb, "cooldown")
    # Given a first run that takes the cool-down
    first = cooldown.claim("banking77", "run-1", T0, DAY)
    assert first.granted and first.until == T0 + DAY
    cooldown.started("banking77", "run-1", "arn:aws:states:us-east-1:123456789012:execution:train:drift-run-1")
    # When another run asks inside the period, Then it is refused and told who holds it and its execution
    second = cooldown.claim("banking77", "run-2", T0 + timedelta(hours=5), DAY)
    assert not second.granted and second.run_id == "run-1" and second.execution_arn.endswith("drift-run-1")
    # And another model is independent
    assert cooldown.claim("other", "run-2", T0 + timedelta(hours=5), DAY).granted
    # When the period has passed, Then the next run takes it
    assert cooldown.claim("banking77", "run-3", T0 + DAY, DAY).granted


def test_a_retry_of_the_holding_run_is_granted_and_release_only_frees_its_own(dynamodb: Any) -> None:
    cooldown = CoolDown(dynamodb, "cooldown")
    assert cooldown.claim("banking77", "run-1", T0, DAY).granted
    # A retried invocation of the same scheduled run may finish its work
    assert cooldown.claim("banking77", "run-1", T0, DAY).granted
    # Another run cannot release it
    cooldown.release("banking77", "run-2")
    assert not cooldown.claim("banking77", "run-2", T0 + timedelta(hours=1), DAY).granted
    # Its holder can (StartExecution failed: nothing was started)
    cooldown.release("banking77", "run-1")
    assert cooldown.claim("banking77", "run-2", T0 + timedelta(hours=1), DAY).granted
