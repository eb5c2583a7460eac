"""`cnai models approve | reject | rollback | promote`: each acts on the registry, the alias or a routed endpoint
and leaves one audit record (who, what, when, why), a failed action included."""

from __future__ import annotations

from pathlib import Path

import boto3
from typer.testing import CliRunner

from cnai.audit.trail import read_records, verify_chain
from cnai.cli import app
from cnai.deploy import canary, endpoint
from cnai.local.sagemaker import LocalEndpoints
from tests.unit.deploy.world import FUNCTION, PREFIX, World, container

runner = CliRunner()


def models(*args: str, audit: Path) -> tuple[int, str]:
    result = runner.invoke(app, ["models", *args, "--prefix", PREFIX, "--audit", f"file:{audit}"])
    return result.exit_code, result.output


def test_approve_and_reject_act_on_the_registry_and_are_audited(world: World, tmp_path: Path) -> None:
    # Given two pending versions
    audit = tmp_path / "audit.jsonl"
    first, second = world.register("job-1"), world.register("job-2")
    # When one is approved and the other rejected, each with a reason
    assert models("approve", "banking77", str(first.version), "--reason", "ticket 42", audit=audit)[0] == 0
    assert models("reject", "banking77", str(second.version), "--reason", "worse F1", audit=audit)[0] == 0
    # Then the registry says so, and the audit trail names who did what to which version, when and why
    assert world.registry.version("banking77", first.version).approval == "Approved"
    assert world.registry.version("banking77", second.version).approval == "Rejected"
    records = list(read_records(audit))
    assert [(r.action.verb, r.action.reason, r.package_version, r.status) for r in records if r.action] == [
        ("approve", "ticket 42", str(first.version), 200),
        ("reject", "worse F1", str(second.version), 200),
    ]
    assert all(r.caller.kind == "iam" and r.caller.id and r.time for r in records)  # moto's STS principal
    assert verify_chain(records) == []


def test_rollback_by_command_moves_the_alias_and_is_audited(world: World, tmp_path: Path) -> None:
    # Given package 1 promoted, then package 2 promoted
    audit = tmp_path / "audit.jsonl"
    first, second = world.register("job-1", approved=True), world.register("job-2", approved=True)
    for v in (first, second):
        canary.promote(world.clients, canary.release(world.clients, world.target, canary.Policy(), v.arn))
    assert world.alias()["FunctionVersion"] == "3"
    # When a person rolls back to package 1
    code, out = models("rollback", "banking77", "--to", str(first.version), "--function", FUNCTION,
                       "--reason", "complaints", audit=audit)  # fmt: skip
    # Then the alias serves the version pinned to package 1, and the record says from where to where and why
    assert code == 0, out
    assert world.alias()["FunctionVersion"] == "2"
    (record,) = read_records(audit)
    assert record.action is not None and record.action.verb == "rollback" and record.action.reason == "complaints"
    assert record.action.detail["function_version"] == "2" and record.action.detail["previous_function_version"] == "3"


def test_a_failed_action_is_audited_and_exits_2(world: World, tmp_path: Path) -> None:
    # Given one registered version and no version 7  When 7 is approved
    audit = tmp_path / "audit.jsonl"
    world.register("job-1")
    code, out = models("approve", "banking77", "7", audit=audit)
    # Then the command fails naming it, and the attempt is in the audit trail with its error
    assert code == 2 and "no version 7" in out
    (record,) = read_records(audit)
    assert record.status == 500 and "no version 7" in (record.error or "")


def test_promote_without_a_function_names_the_missing_option(world: World, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("CNAI_PREDICT_FUNCTION", raising=False)
    code, out = models("promote", "banking77", audit=tmp_path / "a.jsonl")
    assert code == 2 and "--function" in out


def test_rollback_by_command_moves_a_routed_endpoint_and_is_audited(world: World, tmp_path: Path) -> None:
    # Given packages 1 then 2 released to a serverless endpoint (the deploy workflow's steps, keep 2)
    sm, role = world.registry.sm, "arn:aws:iam::123456789012:role/serverless"
    sm.create_model(ModelName="boot", ExecutionRoleArn=role, PrimaryContainer={"Image": "img"})
    variant = {"VariantName": "AllTraffic", "ModelName": "boot",
               "ServerlessConfig": {"MemorySizeInMB": 2048, "MaxConcurrency": 1}}  # fmt: skip
    sm.create_endpoint_config(EndpointConfigName="boot", ProductionVariants=[variant])
    sm.create_endpoint(EndpointName="ep", EndpointConfigName="boot")
    clients = canary.Clients(world.clients.lambda_, world.clients.cloudwatch, world.clients.s3, world.registry,
                             boto3.client("sagemaker-runtime"))  # fmt: skip
    target = endpoint.EndpointTarget("ep", "banking77", endpoint.EndpointModel("img", role), interval_s=1)
    audit = tmp_path / "audit.jsonl"
    with LocalEndpoints(container, settle_after=0):
        released = []
        for job in ("job-1", "job-2"):
            version = world.register(job, approved=True)
            released.append(endpoint.release(clients, target, version.arn)["config"])
        # When a person rolls back to package 1
        code, out = models("rollback", "banking77", "--to", "1", "--endpoint", "ep", "--reason", "drift",
                           audit=audit)  # fmt: skip
        # Then the endpoint runs package 1's configuration again, and the record says from where to where
        assert code == 0, out
        assert sm.describe_endpoint(EndpointName="ep")["EndpointConfigName"] == released[0]
    (record,) = read_records(audit)
    assert record.action is not None and record.action.verb == "rollback" and record.action.reason == "drift"
    assert record.action.detail["endpoint_config"] == released[0]
    assert record.action.detail["previous_endpoint_config"] == released[1]
