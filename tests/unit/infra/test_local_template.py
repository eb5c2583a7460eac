"""The local platform's deployment of synthesized templates: intrinsic functions resolved, resources made in moto."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from moto import mock_aws

from infra.local.functions import InProcessFunctions
from infra.local.template import ACCOUNT, REGION, LocalDeployment, TemplateError

pytestmark = pytest.mark.unit

PRODUCER: dict[str, Any] = {
    "Conditions": {"IsProd": {"Fn::Equals": [{"Ref": "Stage"}, "prod"]}},
    "Parameters": {"Stage": {"Type": "String", "Default": "dev"}},
    "Resources": {
        "LakeBucket0A1B2C3D": {
            "Type": "AWS::S3::Bucket",
            "Properties": {"VersioningConfiguration": {"Status": "Enabled"}},
        },
        "Topic1234ABCD": {"Type": "AWS::SNS::Topic"},
        "Fn": {
            "Type": "AWS::Lambda::Function",
            "Properties": {
                "Handler": "tests.unit.infra.test_local_template.echo_handler",
                "Timeout": 30,
                "Environment": {
                    "Variables": {
                        "CNAI_LAKE_BUCKET": {"Ref": "LakeBucket0A1B2C3D"},
                        "CNAI_TOPIC_ARN": {"Ref": "Topic1234ABCD"},
                        "MODE": {"Fn::If": ["IsProd", "strict", "relaxed"]},
                        "WHERE": {"Fn::Sub": "${AWS::Region}/${LakeBucket0A1B2C3D.Arn}/${!Literal}"},
                    }
                },
            },
        },
        "Machine": {
            "Type": "AWS::StepFunctions::StateMachine",
            "Properties": {
                "RoleArn": {"Fn::GetAtt": ["Role", "Arn"]},
                "DefinitionString": {
                    "Fn::Join": [
                        "",
                        [
                            '{"StartAt":"A","States":{"A":{"Type":"Pass","Result":"',
                            {"Fn::GetAtt": ["Fn", "Arn"]},
                            '","End":true}}}',
                        ],
                    ]
                },
            },
        },
        "Role": {"Type": "AWS::IAM::Role"},
    },
    "Outputs": {
        "LakeName": {"Value": {"Ref": "LakeBucket0A1B2C3D"}, "Export": {"Name": "lake-name"}},
    },
}
CONSUMER: dict[str, Any] = {
    "Resources": {
        "Queue": {
            "Type": "AWS::SQS::Queue",
            "Properties": {"QueueName": {"Fn::Join": ["-", [{"Fn::ImportValue": "lake-name"}, "q"]]}},
        }
    },
    "Outputs": {"QueueUrl": {"Value": {"Ref": "Queue"}}, "Az": {"Value": {"Fn::Select": [1, {"Fn::GetAZs": ""}]}}},
}


def echo_handler(event: Any, context: Any) -> dict[str, Any]:
    import os

    return {"event": event, "bucket": os.environ["CNAI_LAKE_BUCKET"], "function": context.function_name}


def test_intrinsics_resolve_across_stacks_and_conditions() -> None:
    # Given two stacks, one importing the other's export
    deployment = LocalDeployment({"producer": PRODUCER, "consumer": CONSUMER})
    # When outputs are read
    lake = deployment.output("producer", "LakeName")
    # Then names are stable, lower-case for buckets, and the import resolves through the export
    assert lake == "producer-lakebucket"
    assert deployment.output("consumer", "QueueUrl") == f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/{lake}-q"
    assert deployment.output("consumer", "Az") == f"{REGION}b"
    with pytest.raises(TemplateError, match="no output Nope"):
        deployment.output("consumer", "Nope")


def test_unknown_reference_names_the_stack_and_resource() -> None:
    broken = {"Resources": {"A": {"Type": "AWS::SNS::Topic", "Properties": {"TopicName": {"Ref": "Missing"}}}}}
    with pytest.raises(TemplateError, match="broken: Ref/GetAtt to unknown resource Missing"):
        LocalDeployment({"broken": broken}).physical("broken", "A")


@mock_aws
def test_create_makes_the_resources_and_runs_functions_in_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    # Given the two stacks deployed into moto
    deployment = LocalDeployment({"producer": PRODUCER, "consumer": CONSUMER})
    deployment.create(boto3.Session(region_name=REGION))
    # Then the bucket exists with versioning, the queue by its imported name, the state machine with its definition
    s3 = boto3.client("s3", region_name=REGION)
    assert s3.get_bucket_versioning(Bucket="producer-lakebucket")["Status"] == "Enabled"
    boto3.client("sqs", region_name=REGION).get_queue_url(QueueName="producer-lakebucket-q")
    machine = boto3.client("stepfunctions", region_name=REGION).describe_state_machine(
        stateMachineArn=deployment.state_machines["Machine"]
    )
    function = deployment.functions["producer-Fn"]
    assert json.loads(machine["definition"])["States"]["A"]["Result"] == function.arn
    assert function.environment["MODE"] == "relaxed"
    assert function.environment["WHERE"] == f"{REGION}/arn:aws:s3:::producer-lakebucket/${{Literal}}"
    # And the function runs in process under its own environment, by name or ARN, leaving os.environ as it was
    functions = InProcessFunctions(deployment.functions)
    result = functions.callables()[function.arn]({"x": 1})
    assert result == {"event": {"x": 1}, "bucket": "producer-lakebucket", "function": "producer-Fn"}
    import os

    assert "CNAI_LAKE_BUCKET" not in os.environ
    with pytest.raises(KeyError, match="no function 'nope'"):
        functions.invoke("nope", {})
