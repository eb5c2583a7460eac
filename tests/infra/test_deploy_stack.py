"""The deploy stack as the app synthesizes it: the approval rule (Approved, our group, nothing else) starts the
deploy state machine (STANDARD, JSONPath, logs ALL with data, KMS, X-Ray); the deploy function may touch the
predict function's versions and alias, its canary alarms and our packages only; and `cdk deploy` owns no
version-pinned alias target that a redeploy after a promotion would put back."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aws_cdk import assertions

from cnai.deploy.events import approval_pattern, package_state_change
from cnai.local.events import matches

GROUP = "cnai-dev-banking77"


def only(template: assertions.Template, kind: str) -> tuple[str, dict[str, Any]]:
    found = template.find_resources(kind)
    assert len(found) == 1, f"{kind}: {sorted(found)}"
    [(logical_id, resource)] = found.items()
    return logical_id, resource["Properties"]


@pytest.fixture(scope="module")
def deploy(app_templates: dict[str, dict[str, assertions.Template]]) -> assertions.Template:
    return app_templates["default"]["deploy"]


def event(group: str, status: str) -> dict[str, Any]:
    arn = f"arn:aws:sagemaker:us-east-1:123456789012:model-package/{group}/2"
    description = {"ModelPackageGroupName": group, "ModelPackageVersion": 2, "ModelPackageArn": arn,
                   "ModelApprovalStatus": status}  # fmt: skip
    return package_state_change(description, account="123456789012", region="us-east-1")


def test_the_rule_matches_only_approvals_of_the_served_models_group(deploy: assertions.Template) -> None:
    # Given the synthesized rule
    _, rule = only(deploy, "AWS::Events::Rule")
    pattern = rule["EventPattern"]
    # Then its pattern is the one cnai.deploy writes, and SageMaker's events match it only when Approved in our group
    assert pattern == approval_pattern([GROUP])
    assert matches(pattern, event(GROUP, "Approved"))
    for group, status in ((GROUP, "PendingManualApproval"), (GROUP, "Rejected"), ("cnai-prod-banking77", "Approved")):
        assert not matches(pattern, event(group, status)), (group, status)


def test_the_rule_starts_the_deploy_state_machine(deploy: assertions.Template) -> None:
    machine_id, machine = only(deploy, "AWS::StepFunctions::StateMachine")
    _, rule = only(deploy, "AWS::Events::Rule")
    [target] = rule["Targets"]
    assert target["Arn"] == {"Ref": machine_id}
    assert target["RetryPolicy"]["MaximumRetryAttempts"] == 8
    assert machine["StateMachineName"] == "cnai-dev-deploy"
    # And an approval the rule cannot deliver is kept in an encrypted dead-letter queue that an alarm watches
    queue_id, queue = only(deploy, "AWS::SQS::Queue")
    assert target["DeadLetterConfig"]["Arn"] == {"Fn::GetAtt": [queue_id, "Arn"]}
    assert "KmsMasterKeyId" in queue
    dimension = {"Name": "QueueName", "Value": {"Fn::GetAtt": [queue_id, "QueueName"]}}
    alarms = deploy.find_resources("AWS::CloudWatch::Alarm").values()
    watched = [a for a in alarms if dimension in a["Properties"].get("Dimensions", [])]
    assert len(watched) == 1 and watched[0]["Properties"]["AlarmActions"]


def test_the_state_machine_is_standard_logged_traced_and_jsonpath(deploy: assertions.Template) -> None:
    _, machine = only(deploy, "AWS::StepFunctions::StateMachine")
    assert machine["StateMachineType"] == "STANDARD"
    assert machine["TracingConfiguration"] == {"Enabled": True}
    logging = machine["LoggingConfiguration"]
    assert (logging["Level"], logging["IncludeExecutionData"]) == ("ALL", True)
    groups = deploy.find_resources("AWS::Logs::LogGroup")
    state_logs = [g for g in groups.values() if "/aws/vendedlogs/states/cnai-dev-deploy" in json.dumps(g)]
    assert state_logs and all("KmsKeyId" in g["Properties"] for g in state_logs)
    definition = json.dumps(machine["DefinitionString"])
    assert "JSONata" not in definition
    for state in ("Release", "WaitCanary", "Check", "Verdict", "Promote", "Rollback", "RolledBack", "Superseded"):
        assert f'\\"{state}\\"' in definition, state


def statements(template: assertions.Template, role_fragment: str) -> list[dict[str, Any]]:
    found = []
    for policy in template.find_resources("AWS::IAM::Policy").values():
        props = policy["Properties"]
        if role_fragment in json.dumps(props.get("Roles", [])) or role_fragment in json.dumps(props["PolicyName"]):
            found += props["PolicyDocument"]["Statement"]
    return found


def test_the_deploy_function_may_touch_only_the_predict_function_its_alarms_and_our_packages(
    deploy: assertions.Template,
) -> None:
    by_sid = {s.get("Sid"): s for s in statements(deploy, "DeployRole")}
    assert {"PredictVersionsAndAlias", "CanaryAlarms", "ModelPackages", "ReadArtifactVersion"} <= set(by_sid)
    assert "lambda:UpdateAlias" in by_sid["PredictVersionsAndAlias"]["Action"]
    assert "-live-canary-*" in json.dumps(by_sid["CanaryAlarms"]["Resource"])
    assert f"model-package/{GROUP}/*" in json.dumps(by_sid["ModelPackages"]["Resource"])
    assert "sagemaker:ListModelPackages" not in json.dumps(by_sid["ModelPackages"])


def test_the_predict_role_may_read_registered_artifacts(deploy: assertions.Template) -> None:
    by_sid = {s.get("Sid"): s for s in statements(deploy, "PredictReadsRegisteredModels")}
    assert "training/*" in json.dumps(by_sid["ReadRegisteredModels"]["Resource"])
    assert by_sid["DecryptRegisteredModels"]["Action"] == "kms:Decrypt"


def test_the_deploy_function_env_carries_the_canary_policy(deploy: assertions.Template) -> None:
    functions = deploy.find_resources("AWS::Lambda::Function")
    [env] = [f["Properties"]["Environment"]["Variables"] for f in functions.values()
             if f["Properties"]["Handler"] == "functions.deploy_model.handler.handler"]  # fmt: skip
    assert env["CNAI_CANARY_PERCENT"] == "10" and env["CNAI_CANARY_SECONDS"] == "600"
    assert env["CNAI_PREDICT_ALIAS"] == "live" and env["CNAI_MODEL_NAME"] == "banking77"


def test_a_redeploy_cannot_move_the_alias(app_templates: dict[str, dict[str, assertions.Template]]) -> None:
    # Given the serving stack synthesized twice with different settings (another model pin, provisioned
    # concurrency, endpoint routing: a later `cdk deploy` after the workflow promoted a version)
    first, second = app_templates["default"]["serving"], app_templates["variant"]["serving"]
    # Then each has exactly one published version, the same fixed bootstrap with the same properties ...
    versions = [t.find_resources("AWS::Lambda::Version") for t in (first, second)]
    assert all(len(v) == 1 for v in versions)
    assert versions[0] == versions[1]
    (bootstrap_id,) = versions[0]
    # ... and the alias targets it in both, with no routing config: the template never changes the alias's
    # target, so CloudFormation has nothing to update and leaves the workflow's version and weights alone
    aliases = [only(t, "AWS::Lambda::Alias")[1] for t in (first, second)]
    for alias in aliases:
        assert alias["FunctionVersion"] == {"Fn::GetAtt": [bootstrap_id, "Version"]}
        assert "RoutingConfig" not in alias
    assert first.to_json()["Resources"][bootstrap_id]["Properties"] != {} and "CodeSha256" not in json.dumps(
        versions[0]
    )


# ---- a model routed to SageMaker Serverless (the "variant" app: cnai:serving.endpoint.route=true)

ENDPOINT = "cnai-dev-banking77"


def deploy_env(template: assertions.Template) -> dict[str, Any]:
    functions = template.find_resources("AWS::Lambda::Function")
    [env] = [f["Properties"]["Environment"]["Variables"] for f in functions.values()
             if f["Properties"]["Handler"] == "functions.deploy_model.handler.handler"]  # fmt: skip
    return dict(env)


def test_the_state_machine_has_the_endpoint_branch(deploy: assertions.Template) -> None:
    # Given the synthesized deploy state machine  Then the endpoint path's states are in it, waits included
    _, machine = only(deploy, "AWS::StepFunctions::StateMachine")
    definition = json.dumps(machine["DefinitionString"])
    for state in ("WaitInService", "CheckEndpoint", "InService?", "HealthCheck", "Finish", "EndpointRollback",
                  "WaitRestored", "CheckRestored", "EndpointRolledBack", "EndpointRollbackFailed"):  # fmt: skip
        assert f'\\"{state}\\"' in definition, state
    assert "EndpointBusyError" in definition  # an update in progress is retried by the state, not slept on


def test_a_routed_model_releases_to_its_endpoint_with_the_bootstrap_image_role_and_capacity(
    app_templates: dict[str, dict[str, assertions.Template]],
) -> None:
    # Given the app with the model routed to the endpoint, and the default app
    routed, plain = (deploy_env(app_templates[name]["deploy"]) for name in ("variant", "default"))
    # Then only the routed one names the endpoint, with what a released Model is made of
    assert "CNAI_DEPLOY_ENDPOINT" not in plain
    assert routed["CNAI_DEPLOY_ENDPOINT"] == ENDPOINT
    assert "pytorch-inference" in json.dumps(routed["CNAI_ENDPOINT_IMAGE"])
    assert "Fn::ImportValue" in json.dumps(routed["CNAI_ENDPOINT_ROLE_ARN"])
    assert (routed["CNAI_ENDPOINT_MEMORY_MB"], routed["CNAI_ENDPOINT_MAX_CONCURRENCY"]) == ("2048", "5")
    assert json.loads(routed["CNAI_ENDPOINT_CONTAINER_ENV"])["SAGEMAKER_PROGRAM"] == "inference.py"
    # ... encrypted with the bootstrap configuration's key and isolated as its Model is (default image: not)
    assert "Fn::ImportValue" in json.dumps(routed["CNAI_ENDPOINT_KMS_KEY_ARN"])
    assert routed["CNAI_ENDPOINT_NETWORK_ISOLATION"] == "false"
    # ... and how its updates are watched (cnai:deploy.endpoint_*): 30 minutes, every 30 s, 2 configurations kept
    watched = ("CNAI_ENDPOINT_UPDATE_TIMEOUT_SECONDS", "CNAI_ENDPOINT_CHECK_SECONDS", "CNAI_ENDPOINT_KEEP_CONFIGS")
    assert [routed[name] for name in watched] == ["1800", "30", "2"]


def test_the_endpoint_path_may_touch_only_its_endpoint_our_models_and_configs_and_pass_one_role(
    app_templates: dict[str, dict[str, assertions.Template]],
) -> None:
    routed, plain = app_templates["variant"]["deploy"], app_templates["default"]["deploy"]
    by_sid = {s.get("Sid"): s for s in statements(routed, "DeployRole")}
    # The endpoint itself (lower case: SageMaker's ARNs), for describe, update and the health check
    endpoint = by_sid["ServedEndpoint"]
    assert f"endpoint/{ENDPOINT}" in json.dumps(endpoint["Resource"]) and "*" not in json.dumps(endpoint["Resource"])
    assert "sagemaker:InvokeEndpoint" in endpoint["Action"] and "sagemaker:UpdateEndpoint" in endpoint["Action"]
    # Models and configurations named <endpoint>-p* only
    assert f"model/{ENDPOINT}-p*" in json.dumps(by_sid["ReleasedModels"]["Resource"])
    assert f"endpoint-config/{ENDPOINT}-p*" in json.dumps(by_sid["ReleasedEndpointConfigs"]["Resource"])
    # PassRole: the endpoint's execution role, to SageMaker only
    passing = by_sid["PassEndpointRole"]
    assert passing["Condition"] == {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}
    assert "Fn::ImportValue" in json.dumps(passing["Resource"])
    assert not any("sagemaker:*" in json.dumps(s["Action"]) for s in by_sid.values())
    # ... and the execution role reads registered artifacts; the alias-only app grants none of this
    reads = {s.get("Sid"): s for s in statements(routed, "EndpointReadsRegisteredModels")}
    assert "training/*" in json.dumps(reads["ReadRegisteredModels"]["Resource"])
    assert not {"ServedEndpoint", "PassEndpointRole"} & {s.get("Sid") for s in statements(plain, "DeployRole")}
