"""The deploy steps on moto's Lambda, CloudWatch, S3 and SageMaker registry: release pins the package in a new
version and gives it the canary share; check reads its alarms; promote and rollback move the alias."""

from __future__ import annotations

import pytest

from cnai.deploy import canary
from cnai.deploy.canary import DeployError, Policy
from tests.unit.deploy.world import BUCKET, FUNCTION, World

TOPIC = "arn:aws:sns:us-east-1:123456789012:cnai-dev-serving-alarms"
POLICY = Policy(percent=10, canary_s=600, interval_s=30, p99_ms=2500, topic_arn=TOPIC, namespace="cnai")


def test_release_pins_the_package_in_a_new_version_and_gives_it_the_canary_share(world: World) -> None:
    # Given an approved package whose tar is in a versioned bucket
    v = world.register("job-1", approved=True)
    object_version = world.clients.s3.head_object(Bucket=BUCKET, Key="training/job-1/output/model.tar.gz")["VersionId"]
    # When it is released
    state = canary.release(world.clients, world.target, POLICY, v.arn, clock=lambda: 1000.0)
    # Then a new version serves exactly that artifact, object version and registry version ...
    assert (state["action"], state["previous_version"], state["version"]) == ("canary", "1", "2")
    env = world.env("2")
    assert env["CNAI_MODEL_URI"] == v.model_data
    assert env["CNAI_MODEL_VERSION_ID"] == object_version
    assert env["CNAI_MODEL_PACKAGE_VERSION"] == str(v.version)
    assert env["CNAI_MAX_INPUTS"] == "64"  # the rest of the configuration is cdk deploy's, kept
    # ... the alias still serves version 1 and gives version 2 its 10%
    alias = world.alias()
    assert alias["FunctionVersion"] == "1"
    assert alias["RoutingConfig"]["AdditionalVersionWeights"] == {"2": 0.1}
    # ... and the canary's four alarms watch version 2 and notify the serving topic
    alarms = world.clients.cloudwatch.describe_alarms(AlarmNames=state["alarms"])["MetricAlarms"]
    assert len(alarms) == 4 and all(a["AlarmActions"] == [TOPIC] for a in alarms)
    errors = next(a for a in alarms if a["AlarmName"].endswith("-errors"))
    assert {"Name": "ExecutedVersion", "Value": "2"} in errors["Dimensions"]
    assert {"Name": "Resource", "Value": f"{FUNCTION}:live"} in errors["Dimensions"]
    p99 = next(a for a in alarms if a["AlarmName"].endswith("-p99"))
    assert (p99["ExtendedStatistic"], p99["Threshold"]) == ("p99", 2500)


def test_a_quiet_canary_is_promoted_when_its_time_is_over(world: World) -> None:
    # Given a running canary
    v = world.register("job-1", approved=True)
    state = canary.release(world.clients, world.target, POLICY, v.arn, clock=lambda: 1000.0)
    # When it is checked before and after its 10 minutes
    early = canary.check(world.clients, state, clock=lambda: 1300.0)
    late = canary.check(world.clients, state, clock=lambda: 1600.0)
    # Then it waits, then is done, with no alarm
    assert (early["alarm"], early["done"], early["superseded"]) == (False, False, False)
    assert (late["alarm"], late["done"]) == (False, True)
    # When it is promoted: all traffic to version 2, the canary alarms removed
    canary.promote(world.clients, state)
    alias = world.alias()
    assert alias["FunctionVersion"] == "2" and not (alias.get("RoutingConfig") or {}).get("AdditionalVersionWeights")
    assert world.clients.cloudwatch.describe_alarms(AlarmNames=state["alarms"])["MetricAlarms"] == []
    assert world.registry.version("banking77", v.version).approval == "Approved"


def test_an_alarm_during_the_canary_rolls_back_and_marks_the_package(world: World) -> None:
    # Given a running canary whose error alarm fires
    v = world.register("job-1", approved=True)
    state = canary.release(world.clients, world.target, POLICY, v.arn, clock=lambda: 1000.0)
    errors = next(n for n in state["alarms"] if n.endswith("-errors"))
    world.clients.cloudwatch.set_alarm_state(AlarmName=errors, StateValue="ALARM", StateReason="3 errors in 1 minute")
    # When it is checked
    checked = canary.check(world.clients, state, clock=lambda: 1001.0)
    # Then the verdict is an alarm, naming it and CloudWatch's reason
    assert checked["alarm"] is True and checked["firing"] == [f"{errors}: 3 errors in 1 minute"]
    # When it is rolled back with that reason
    result = canary.rollback(world.clients, state, canary.rollback_reason(checked, None))
    # Then version 1 serves everything again and the package is Rejected with the reason
    alias = world.alias()
    assert alias["FunctionVersion"] == "1" and not (alias.get("RoutingConfig") or {}).get("AdditionalVersionWeights")
    marked = world.clients.registry.sm.describe_model_package(ModelPackageName=v.arn)
    assert marked["ModelApprovalStatus"] == "Rejected"
    assert errors in marked["ApprovalDescription"] and "3 errors" in marked["ApprovalDescription"]
    assert result["serving"] == "1"


def test_an_alarm_that_disappeared_counts_as_firing(world: World) -> None:
    # Given a canary one of whose alarms was deleted
    v = world.register("job-1", approved=True)
    state = canary.release(world.clients, world.target, POLICY, v.arn, clock=lambda: 0.0)
    world.clients.cloudwatch.delete_alarms(AlarmNames=state["alarms"][:1])
    # Then it cannot be watched: the verdict is an alarm
    checked = canary.check(world.clients, state, clock=lambda: 1.0)
    assert checked["alarm"] is True and checked["firing"] == [f"{state['alarms'][0]}: alarm missing"]


def test_a_repeated_approval_of_the_serving_package_changes_nothing(world: World) -> None:
    # Given a promoted package
    v = world.register("job-1", approved=True)
    canary.promote(world.clients, canary.release(world.clients, world.target, POLICY, v.arn))
    # When its Approved event comes again (SageMaker sends one per change of the package)
    again = canary.release(world.clients, world.target, POLICY, v.arn)
    # Then nothing is published and the alias stays
    assert again["action"] == "none"
    versions = world.clients.lambda_.list_versions_by_function(FunctionName=FUNCTION)["Versions"]
    assert [c["Version"] for c in versions] == ["$LATEST", "1", "2"]
    assert world.alias()["FunctionVersion"] == "2"


def test_a_second_release_during_a_canary_is_refused(world: World) -> None:
    # Given a running canary  When another approved package is released
    first, second = world.register("job-1", approved=True), world.register("job-2", approved=True)
    canary.release(world.clients, world.target, POLICY, first.arn)
    # Then it is refused, naming the running canary
    with pytest.raises(DeployError, match="a canary is already running"):
        canary.release(world.clients, world.target, POLICY, second.arn)


def test_a_package_that_is_not_approved_or_not_ours_is_refused(world: World) -> None:
    pending = world.register("job-1")
    with pytest.raises(DeployError, match="not Approved"):
        canary.release(world.clients, world.target, POLICY, pending.arn)
    world.registry.ensure_group("other")
    other = world.registry.create_version(
        "other", image="i", model_data=f"s3://{BUCKET}/x.tar.gz", report_uri="s3://b/r.json", metrics={},
        lineage={}, approved=True,
    )  # fmt: skip
    with pytest.raises(DeployError, match="not the served model's"):
        canary.release(world.clients, world.target, POLICY, other.arn)


def test_a_person_moving_the_alias_supersedes_the_canary(world: World) -> None:
    # Given a promoted version 2 (package 1) and a canary of version 3 (package 2)
    first, second = world.register("job-1", approved=True), world.register("job-2", approved=True)
    canary.promote(world.clients, canary.release(world.clients, world.target, POLICY, first.arn))
    state = canary.release(world.clients, world.target, POLICY, second.arn, clock=lambda: 0.0)
    # When a person rolls back to package 1
    served = canary.rollback_to(world.clients, world.target, first.version)
    # Then version 2 serves all traffic, the canary's alarms are gone, and the workflow's next check leaves it be
    assert served == "2" and world.alias()["FunctionVersion"] == "2"
    assert world.clients.cloudwatch.describe_alarms(AlarmNames=state["alarms"])["MetricAlarms"] == []
    assert canary.check(world.clients, state, clock=lambda: 10_000.0)["superseded"] is True


def test_rollback_to_a_package_never_released_names_the_released_ones(world: World) -> None:
    v = world.register("job-1", approved=True)
    canary.promote(world.clients, canary.release(world.clients, world.target, POLICY, v.arn))
    with pytest.raises(
        DeployError, match=rf"no published version serves package version 9 .*{v.version} \(function version 2\)"
    ):
        canary.rollback_to(world.clients, world.target, 9)
    # ... and a rollback naming another model finds no version of it on this function (none is moved)
    other = canary.Target(function=world.target.function, model="other-model", alias=world.target.alias)
    with pytest.raises(DeployError, match=r"no published version serves package version \d+ \(released: none\)"):
        canary.rollback_to(world.clients, other, v.version)
    assert world.alias()["FunctionVersion"] == "2"


def test_promote_now_finishes_a_canary_or_releases_the_approved_version_without_one(world: World) -> None:
    # Given no canary and an approved package: promote releases it straight to 100%
    first = world.register("job-1", approved=True)
    done = canary.promote_now(world.clients, world.target)
    assert done["action"] == "promoted" and world.alias()["FunctionVersion"] == done["version"] == "2"
    # Given a running canary: promote moves it to 100% at once
    second = world.register("job-2", approved=True)
    canary.release(world.clients, world.target, POLICY, second.arn)
    finished = canary.promote_now(world.clients, world.target)
    assert finished["version"] == "3" and world.alias()["FunctionVersion"] == "3"
    assert world.env("3")["CNAI_MODEL_PACKAGE_VERSION"] == str(second.version) != str(first.version)


def test_a_duplicate_event_during_its_own_canary_changes_nothing(world: World) -> None:
    # Given a running canary  When the same approval is delivered again (EventBridge: at least once)
    v = world.register("job-1", approved=True)
    canary.release(world.clients, world.target, POLICY, v.arn)
    again = canary.release(world.clients, world.target, POLICY, v.arn)
    # Then the second release does nothing and the canary goes on
    assert (again["action"], again["version"]) == ("none", "2")
    assert world.alias()["RoutingConfig"]["AdditionalVersionWeights"] == {"2": 0.1}


def test_the_pinned_object_version_is_the_s3_one_registered_never_the_cards_version(world: World) -> None:
    # Given a package whose lineage holds both the model card's version and the S3 version of the judged tar,
    # and the tar overwritten since (a newer object version is current)
    key = "training/job-7/output/model.tar.gz"
    judged = world.clients.s3.put_object(Bucket=BUCKET, Key=key, Body=b"judged")["VersionId"]
    world.clients.s3.put_object(Bucket=BUCKET, Key=key, Body=b"later")
    v = world.registry.create_version(
        "banking77", image="img", model_data=f"s3://{BUCKET}/{key}", report_uri=f"s3://{BUCKET}/e/7.json",
        metrics={"accuracy": 0.9}, lineage={"artifact_version": "eaca3c59b450", "artifact_object_version": judged},
        approved=True,
    )  # fmt: skip
    # When it is released
    canary.release(world.clients, world.target, POLICY, v.arn, clock=lambda: 1000.0)
    # Then the new version downloads exactly the judged bytes (the card's version is no S3 version: a 404)
    assert world.env("2")["CNAI_MODEL_VERSION_ID"] == judged


@pytest.mark.parametrize(
    ("answers", "problem"),
    [
        ([{"LastUpdateStatus": "InProgress"}, {"LastUpdateStatus": "Successful"}], None),
        (
            [{"LastUpdateStatus": "Failed", "LastUpdateStatusReason": "KMS key is disabled"}],
            "configuration update failed (KMS key is disabled)",
        ),
        ([{"LastUpdateStatus": "InProgress"}] * 3, "configuration update still InProgress after 3s"),
    ],
)
def test_waiting_for_a_configuration_update_follows_lambdas_last_update_status(
    answers: list[dict[str, str]], problem: str | None
) -> None:
    # Given Lambda answering GetFunctionConfiguration with these statuses in turn (botocore's Stubber)
    import boto3
    from botocore.stub import Stubber

    client = boto3.client("lambda", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    stubber = Stubber(client)
    for answer in answers:
        stubber.add_response(
            "get_function_configuration", {"FunctionName": FUNCTION, **answer}, {"FunctionName": FUNCTION}
        )
    clients = canary.Clients(client, None, None, None)  # type: ignore[arg-type]
    # When the release waits for the update, polling every 0.01 s for at most len(answers) polls
    with stubber:
        if problem is None:
            canary.wait_updated(clients, FUNCTION, timeout_s=0.01 * len(answers), sleep=0.01)
            stubber.assert_no_pending_responses()
            return
        # Then a failed update stops it at once with Lambda's reason, and one still running stops it at the deadline
        with pytest.raises(DeployError) as raised:
            canary.wait_updated(clients, FUNCTION, timeout_s=len(answers), sleep=1)
    assert f"{FUNCTION}: {problem}" == str(raised.value)
