"""At most one drift retrain per model per cool-down: a conditional write in DynamoDB.

One item per model: `{model, run_id, started_at, until, expires_at, execution_arn}`. A run claims the model
with PutItem on the condition "no item, or its cool-down has passed"; DynamoDB evaluates the condition and the
write atomically, so two monitor runs racing (a retried invocation, an overlapping schedule) cannot both win.
`expires_at` is the table's TTL attribute (DynamoDB deletes the item some time after `until`); the condition
reads `until`, never the TTL, because TTL deletion may lag by a day or more.

A retry of the run that holds the claim (same run id: a Lambda retry of the same scheduled instant) is granted
again, with the execution the first attempt recorded (if it got that far), so it reports that execution instead
of starting another; StartExecution with the same name covers a first attempt that died in between.
If StartExecution fails, the run releases its own claim (condition: run_id is still its own).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any


@dataclass(frozen=True)
class Claim:
    granted: bool
    run_id: str  # the holder's run id (ours when granted)
    until: datetime
    execution_arn: str | None = None


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class CoolDown:
    def __init__(self, dynamodb: Any, table: str) -> None:
        self.db = dynamodb
        self.table = table

    def claim(self, model: str, run_id: str, now: datetime, period: timedelta) -> Claim:
        """Take the model's cool-down for `period` from `now`, unless another run holds it."""
        until = now + period
        item = {
            "model": {"S": model},
            "run_id": {"S": run_id},
            "started_at": {"S": _iso(now)},
            "until": {"N": str(int(until.timestamp()))},
            "expires_at": {"N": str(int(until.timestamp()))},
        }
        try:
            self.db.put_item(
                TableName=self.table,
                Item=item,
                ConditionExpression="attribute_not_exists(#m) OR #u <= :now",
                ExpressionAttributeNames={"#m": "model", "#u": "until"},
                ExpressionAttributeValues={":now": {"N": str(int(now.timestamp()))}},
            )
        except self.db.exceptions.ConditionalCheckFailedException:
            held = self.db.get_item(TableName=self.table, Key={"model": {"S": model}}, ConsistentRead=True)
            current = held.get("Item") or {}
            holder = current.get("run_id", {}).get("S", "?")
            return Claim(
                granted=holder == run_id,  # a retry of the holding run: granted, with what it started
                run_id=holder,
                until=datetime.fromtimestamp(int(current.get("until", {}).get("N", "0")), UTC),
                execution_arn=current.get("execution_arn", {}).get("S"),
            )
        return Claim(granted=True, run_id=run_id, until=until)

    def started(self, model: str, run_id: str, execution_arn: str) -> None:
        """Record the execution on our claim (what a later run's report names as the cool-down's cause)."""
        self.db.update_item(
            TableName=self.table,
            Key={"model": {"S": model}},
            UpdateExpression="SET execution_arn = :arn",
            ConditionExpression="run_id = :run",
            ExpressionAttributeValues={":arn": {"S": execution_arn}, ":run": {"S": run_id}},
        )

    def release(self, model: str, run_id: str) -> None:
        """Give our claim back (nothing was started); another run's claim is left alone."""
        with contextlib.suppress(self.db.exceptions.ConditionalCheckFailedException):
            self.db.delete_item(
                TableName=self.table,
                Key={"model": {"S": model}},
                ConditionExpression="run_id = :run",
                ExpressionAttributeValues={":run": {"S": run_id}},
            )


def until_text(claim: Claim) -> str:
    return _iso(claim.until)
