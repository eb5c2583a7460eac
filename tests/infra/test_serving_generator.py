"""The opt-in generator endpoint (cnai:serving.generator.model_key), synthesized under cdk-nag: a SageMaker
Serverless Model and endpoint on the generator's model.tar.gz (the classifier's construct: KMS, the same image
and isolation), the predict function pointed at it with least privilege, the generate route on the API (and on
the Cognito predict group's role). Without the setting nothing of it exists."""

from __future__ import annotations

from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import assertions

from cnai.settings import load_env
from functions.predict.settings import PredictSettings
from infra.config import ApiSettings, EndpointSettings, GeneratorSettings, ServingSettings, Settings
from infra.constructs.nag import nag_packs
from infra.stacks.serving import ServingStack

CONTEXT = {"aws:cdk:bundling-stacks": []}
ENV = cdk.Environment(account="111111111111", region="eu-west-1")
KEY = "models/generator/smollm2-int4.tar.gz"
ENDPOINT = "cnai-dev-generate"
IMAGE = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/cnai-serving:1"


def synth(settings: Settings) -> assertions.Template:
    app = cdk.App(context=CONTEXT)
    stack = ServingStack(app, "Serving", settings=settings, env=ENV)
    cdk.Validations.of(app).add_plugins(*nag_packs(app))
    app.synth()  # an unacknowledged cdk-nag error fails here
    return assertions.Template.from_stack(stack)


@pytest.fixture(scope="module")
def default() -> assertions.Template:
    return synth(Settings(serving=ServingSettings(model_bucket="acme-models")))


@pytest.fixture(scope="module")
def generating() -> assertions.Template:
    # Given a generator package in the model bucket
    serving = ServingSettings(
        model_bucket="acme-models",
        generator=GeneratorSettings(model_key=KEY, memory_mb=4096, max_new_tokens=128, deadline_s=15),
    )
    # When the stack synthesizes under cdk-nag
    return synth(Settings(serving=serving))


@pytest.fixture(scope="module")
def cognito_isolated() -> assertions.Template:
    serving = ServingSettings(
        endpoint=EndpointSettings(image_uri=IMAGE), generator=GeneratorSettings(model_key=KEY)
    )  # a custom image: network isolation on, for both endpoints
    return synth(Settings(api=ApiSettings(auth="cognito"), serving=serving))


def predict_function(template: assertions.Template) -> dict[str, Any]:
    [fn] = template.find_resources(
        "AWS::Lambda::Function", {"Properties": {"Handler": "functions.predict.handler.handler"}}
    ).values()
    return fn["Properties"]


def generator_model(template: assertions.Template) -> dict[str, Any]:
    found = [
        m["Properties"]
        for m in template.find_resources("AWS::SageMaker::Model").values()
        if resolved(m["Properties"]["PrimaryContainer"]["ModelDataUrl"]).endswith(KEY)
    ]
    assert len(found) == 1, found
    return found[0]


def invoke_resources(template: assertions.Template) -> list[Any]:
    """Every resource a predict-role statement allows sagemaker:InvokeEndpoint on."""
    role = predict_function(template)["Role"]["Fn::GetAtt"][0]
    found = []
    for policy in template.find_resources("AWS::IAM::Policy").values():
        if {"Ref": role} not in policy["Properties"]["Roles"]:
            continue
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            if any(a.startswith("sagemaker:Invoke") or a in ("sagemaker:*", "*") for a in actions):
                found.append(statement["Resource"])
    return found


def resolved(value: Any) -> str:
    """An ARN written as Fn::Join of pseudo parameters, as text."""
    if isinstance(value, dict) and "Fn::Join" in value:
        return "".join(p if isinstance(p, str) else next(iter(p.values())) for p in value["Fn::Join"][1])
    return str(value)


def generate_methods(template: assertions.Template) -> list[dict[str, Any]]:
    resources = template.find_resources("AWS::ApiGateway::Resource", {"Properties": {"PathPart": "generate"}})
    return [
        m["Properties"]
        for m in template.find_resources("AWS::ApiGateway::Method").values()
        if m["Properties"].get("ResourceId", {}).get("Ref") in resources
    ]


def test_without_a_generator_nothing_of_it_exists(default: assertions.Template) -> None:
    env = predict_function(default)["Environment"]["Variables"]
    assert not {"CNAI_GENERATOR_URI", "CNAI_MAX_NEW_TOKENS", "CNAI_GENERATE_DEADLINE_S"} & set(env)
    assert not generate_methods(default)
    assert "GeneratorEndpointName" not in default.find_outputs("*")
    assert not [r for r in invoke_resources(default) if "generate" in resolved(r)]


def test_the_generator_runs_on_its_own_serverless_endpoint_with_kms(generating: assertions.Template) -> None:
    # Then a SageMaker Model reads the generator's tar from the model bucket
    model = generator_model(generating)
    assert model["PrimaryContainer"]["ModelDataUrl"] == f"s3://acme-models/{KEY}"
    assert model["PrimaryContainer"]["Environment"]["SAGEMAKER_PROGRAM"] == "inference.py"
    assert model["EnableNetworkIsolation"] is False  # the default image pip-installs code/requirements.txt
    # And a serverless endpoint configuration with the memory asked for (>= 3072 MB) and the serving CMK
    configs = [
        c["Properties"]
        for c in generating.find_resources("AWS::SageMaker::EndpointConfig").values()
        if c["Properties"]["ProductionVariants"][0]["ServerlessConfig"]["MemorySizeInMB"] == 4096
    ]
    [config] = configs
    assert config["ProductionVariants"][0]["ServerlessConfig"]["MaxConcurrency"] == 5
    assert "Fn::GetAtt" in config["KmsKeyId"]
    generating.has_resource_properties("AWS::SageMaker::Endpoint", {"EndpointName": ENDPOINT})
    assert generating.find_outputs("GeneratorEndpointName")["GeneratorEndpointName"]["Value"] == ENDPOINT
    # And its 5xx reach the alarm topic
    generating.has_resource_properties(
        "AWS::CloudWatch::Alarm",
        {
            "MetricName": "Invocation5XXErrors",
            "Dimensions": assertions.Match.array_with([{"Name": "EndpointName", "Value": ENDPOINT}]),
        },
    )


def test_the_predict_function_generates_through_it_with_least_privilege(generating: assertions.Template) -> None:
    fn = predict_function(generating)
    env = fn["Environment"]["Variables"]
    # Then the function's environment names the endpoint and the deployment's bounds, valid for its settings
    assert env["CNAI_GENERATOR_URI"] == f"sagemaker:{ENDPOINT}"
    settings = load_env(PredictSettings, "predict", {k: v for k, v in env.items() if isinstance(v, str)})
    assert (settings.max_new_tokens, settings.generate_deadline_s) == (128, 15.0)
    # And its timeout is above the generate deadline
    assert fn["Timeout"] > settings.generate_deadline_s
    # And it may invoke that one endpoint and no other (the classifier's is not routed here)
    [resource] = invoke_resources(generating)
    assert resolved(resource).endswith(f":endpoint/{ENDPOINT}")


def test_the_api_declares_the_generate_route_like_predict(generating: assertions.Template) -> None:
    [method] = generate_methods(generating)
    assert method["HttpMethod"] == "POST" and method["AuthorizationType"] == "AWS_IAM"
    assert method["RequestParameters"] == {"method.request.path.model": True}
    assert method["Integration"]["Type"] == "AWS_PROXY"


def test_with_cognito_the_predict_group_may_call_generate_and_isolation_follows_the_image(
    cognito_isolated: assertions.Template,
) -> None:
    [method] = generate_methods(cognito_isolated)
    assert method["AuthorizationType"] == "COGNITO_USER_POOLS"
    invoke = [
        s
        for p in cognito_isolated.find_resources("AWS::IAM::Policy").values()
        for s in p["Properties"]["PolicyDocument"]["Statement"]
        if s.get("Action") == "execute-api:Invoke" or s.get("Sid") == "InvokeRoutes"
    ]
    paths = [
        resolved(r) for s in invoke for r in (s["Resource"] if isinstance(s["Resource"], list) else [s["Resource"]])
    ]
    assert any(p.endswith("/POST/v1/models/*/generate") for p in paths), paths
    assert generator_model(cognito_isolated)["EnableNetworkIsolation"] is True
