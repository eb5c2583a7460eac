"""The local deployment creates the templates' Lambda functions, their versions and aliases in moto's Lambda,
so the deploy workflow's Lambda calls (configuration, PublishVersion, routing on the alias) answer locally."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from moto import mock_aws

from infra.local.template import REGION, LocalDeployment

SERVING: dict[str, Any] = {
    "Resources": {
        "PredictRoleA1B2C3D4": {"Type": "AWS::IAM::Role", "Properties": {}},
        "PredictFunctionA1B2C3D4": {
            "Type": "AWS::Lambda::Function",
            "Properties": {
                "Handler": "functions.predict.handler.handler",
                "Runtime": "python3.12",
                "Role": {"Fn::GetAtt": ["PredictRoleA1B2C3D4", "Arn"]},
                "Environment": {"Variables": {"CNAI_MODEL_NAME": "banking77", "CNAI_MODEL_URI": "s3://m/model.tar.gz"}},
                "Timeout": 29,
                "MemorySize": 2048,
            },
        },
        "Bootstrap0A1B2C3D": {"Type": "AWS::Lambda::Version",
                              "Properties": {"FunctionName": {"Ref": "PredictFunctionA1B2C3D4"}}},
        "Live0A1B2C3D": {
            "Type": "AWS::Lambda::Alias",
            "Properties": {"FunctionName": {"Ref": "PredictFunctionA1B2C3D4"}, "Name": "live",
                           "FunctionVersion": {"Fn::GetAtt": ["Bootstrap0A1B2C3D", "Version"]}},
        },
    }
}  # fmt: skip


@mock_aws
def test_functions_versions_and_aliases_exist_in_motos_lambda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    # Given a serving template with the predict function, its bootstrap version and the live alias
    deployment = LocalDeployment({"serving": SERVING})
    # When it is deployed into moto
    deployment.create(boto3.Session(region_name=REGION))
    # Then the function exists with its template environment, version 1 is published and `live` points at it
    lam = boto3.client("lambda", region_name=REGION)
    name = deployment.physical("serving", "PredictFunctionA1B2C3D4").ref
    config = lam.get_function_configuration(FunctionName=name)
    assert config["Environment"]["Variables"]["CNAI_MODEL_URI"] == "s3://m/model.tar.gz"
    assert config["Handler"] == "functions.predict.handler.handler"
    assert lam.get_alias(FunctionName=name, Name="live")["FunctionVersion"] == "1"
    assert deployment.physical("serving", "Bootstrap0A1B2C3D").attrs["Version"] == "1"
    # And the function is still the in-process one the platform runs
    assert deployment.functions[name].handler == "functions.predict.handler.handler"
