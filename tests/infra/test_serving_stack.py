"""The serving stack, synthesized under cdk-nag (an unacknowledged error fails synthesis): key properties of the
API, the predict Lambda, the audit trail, SageMaker Serverless and the outputs. Two configurations, each
synthesized once per module: the default (IAM auth, ingest route) and a variant (API keys, provisioned
concurrency, the model routed to SageMaker)."""

from __future__ import annotations

import json
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import assertions

from infra.config import ApiSettings, AuditSettings, EndpointSettings, ServingSettings, Settings
from infra.constructs.nag import nag_packs
from infra.stacks.serving import ServingStack

CONTEXT = {"aws:cdk:bundling-stacks": []}
ENV = cdk.Environment(account="111111111111", region="eu-west-1")
INGEST_ARN = "arn:aws:lambda:eu-west-1:111111111111:function:cnai-dev-ingest-api"


STACKS: dict[int, ServingStack] = {}


def synth(settings: Settings, ingest_function_arn: str | None = None) -> assertions.Template:
    app = cdk.App(context=CONTEXT)
    stack = ServingStack(app, "Serving", settings=settings, ingest_function_arn=ingest_function_arn, env=ENV)
    cdk.Validations.of(app).add_plugins(*nag_packs(app))
    app.synth()
    template = assertions.Template.from_stack(stack)
    STACKS[id(template)] = stack
    return template


def warnings(template: assertions.Template) -> list[str]:
    stack = STACKS[id(template)]
    found = assertions.Annotations.from_stack(stack).find_warning("*", assertions.Match.any_value())
    return [str(w.entry.data) for w in found]


@pytest.fixture(scope="module")
def default() -> assertions.Template:
    # Given the default settings with a pinned artifact in an existing bucket, and the ingest API function
    settings = Settings(serving=ServingSettings(model_bucket="acme-models", model_version_id="v3.abc"))
    # When the stack synthesizes under cdk-nag
    return synth(settings, INGEST_ARN)


@pytest.fixture(scope="module")
def variant() -> assertions.Template:
    settings = Settings(
        api=ApiSettings(keys=True),
        serving=ServingSettings(
            provisioned_concurrency=2,
            endpoint=EndpointSettings(route=True, memory_mb=4096, max_concurrency=9),
        ),
        audit=AuditSettings(retention_days=2555, lock_mode="COMPLIANCE", store_text=True),
    )
    return synth(settings)


def only(template: assertions.Template, kind: str, props: dict[str, Any] | None = None) -> dict[str, Any]:
    found = template.find_resources(kind, {"Properties": props} if props else None)
    assert len(found) == 1, f"{kind}: {len(found)} found"
    return next(iter(found.values()))["Properties"]


def predict_function(template: assertions.Template) -> dict[str, Any]:
    return only(template, "AWS::Lambda::Function", {"Handler": "functions.predict.handler.handler"})


# ---- REST API


def test_api_is_regional_with_tls12_and_a_traced_throttled_logged_stage(default: assertions.Template) -> None:
    api = only(default, "AWS::ApiGateway::RestApi")
    assert api["EndpointConfiguration"] == {"Types": ["REGIONAL"]}
    assert api["SecurityPolicy"] == "TLS_1_2"
    stage = only(default, "AWS::ApiGateway::Stage")
    assert stage["StageName"] == "dev"
    assert stage["TracingEnabled"] is True
    assert "DestinationArn" in stage["AccessLogSetting"]
    assert '"caller":"$context.identity.caller"' in stage["AccessLogSetting"]["Format"]
    [settings] = stage["MethodSettings"]
    assert settings["ThrottlingRateLimit"] == 100
    assert settings["ThrottlingBurstLimit"] == 200
    assert settings["LoggingLevel"] == "ERROR"
    assert settings["DataTraceEnabled"] is False


def test_access_logs_are_kms_encrypted(default: assertions.Template) -> None:
    groups = default.find_resources("AWS::Logs::LogGroup")
    assert groups
    assert all("KmsKeyId" in g["Properties"] for g in groups.values())


def test_every_route_requires_iam_and_a_validator(default: assertions.Template) -> None:
    methods = default.find_resources("AWS::ApiGateway::Method")
    verbs = sorted(m["Properties"]["HttpMethod"] for m in methods.values())
    assert verbs == ["GET", "GET", "GET", "GET", "POST", "POST"]  # models, model, health, openapi; predict, ingest
    for method in methods.values():
        assert method["Properties"]["AuthorizationType"] == "AWS_IAM"
        assert method["Properties"]["ApiKeyRequired"] is False
        assert "RequestValidatorId" in method["Properties"]
    paths = sorted(r["Properties"]["PathPart"] for r in default.find_resources("AWS::ApiGateway::Resource").values())
    assert paths == ["health", "ingest", "models", "openapi.json", "predict", "v1", "{model}"]


def test_predict_body_reaches_the_handler_unvalidated_so_every_call_is_audited(
    default: assertions.Template, variant: assertions.Template
) -> None:
    # A gateway 400 (e.g. {"top_k": 0}, no "inputs") would answer before the Lambda and leave no audit record:
    # the validator checks the request parameters only, and no method carries a body model.
    for template in (default, variant):
        validator = only(template, "AWS::ApiGateway::RequestValidator")
        assert validator["ValidateRequestParameters"] is True
        assert validator["ValidateRequestBody"] is False
        assert not template.find_resources("AWS::ApiGateway::Model")
        methods = template.find_resources("AWS::ApiGateway::Method").values()
        assert not [m for m in methods if m["Properties"].get("RequestModels")]
        # POST /v1/models/{model}/predict (the POST with the path parameter; ingest has none) keeps its validator
        [predict] = [
            m["Properties"]
            for m in methods
            if m["Properties"]["HttpMethod"] == "POST" and m["Properties"].get("RequestParameters")
        ]
        assert predict["RequestParameters"] == {"method.request.path.model": True}
        assert "RequestValidatorId" in predict


def test_ingest_route_invokes_the_imported_ingest_function(default: assertions.Template) -> None:
    default.has_resource_properties(
        "AWS::Lambda::Permission", {"FunctionName": INGEST_ARN, "Principal": "apigateway.amazonaws.com"}
    )


def test_api_keys_variant_requires_keys_under_a_usage_plan_with_quota(variant: assertions.Template) -> None:
    for method in variant.find_resources("AWS::ApiGateway::Method").values():
        assert method["Properties"]["ApiKeyRequired"] is True
    plan = only(variant, "AWS::ApiGateway::UsagePlan")
    assert plan["Quota"] == {"Limit": 100000, "Period": "DAY"}
    assert plan["Throttle"] == {"BurstLimit": 200, "RateLimit": 100}
    only(variant, "AWS::ApiGateway::ApiKey")
    only(variant, "AWS::ApiGateway::UsagePlanKey")


# ---- predict Lambda


def test_predict_function_environment_is_the_handlers_contract(default: assertions.Template) -> None:
    from functions.predict.settings import load_settings

    env = predict_function(default)["Environment"]["Variables"]
    assert env["CNAI_MODEL_URI"] == "s3://acme-models/models/banking77/model.tar.gz"
    assert env["CNAI_MODEL_VERSION_ID"] == "v3.abc"
    assert env["CNAI_AUDIT_SINK"] == "stdout"
    assert "CNAI_SAGEMAKER_ENDPOINTS" not in env
    # The predict handler's own settings model accepts exactly what the stack deploys
    loaded = load_settings(env)
    assert loaded.model_name == "banking77"
    assert loaded.audit_store_text is False
    assert loaded.max_inputs == 64


def test_an_unpinned_model_artifact_is_a_synth_warning(
    default: assertions.Template, variant: assertions.Template
) -> None:
    assert not [w for w in warnings(default) if "not pinned" in w]
    assert [w for w in warnings(variant) if "not pinned" in w and "cnai:serving.model_version_id" in w]


def test_predict_function_is_arm64_py312_with_the_layer_and_reserved_concurrency(default: assertions.Template) -> None:
    fn = predict_function(default)
    assert fn["Architectures"] == ["arm64"]
    assert fn["Runtime"] == "python3.12"
    assert fn["MemorySize"] == 2048
    assert fn["ReservedConcurrentExecutions"] == 20
    assert fn["Timeout"] == 29
    assert len(fn["Layers"]) == 1
    layer = only(default, "AWS::Lambda::LayerVersion")
    assert layer["CompatibleArchitectures"] == ["arm64"]
    assert layer["CompatibleRuntimes"] == ["python3.12"]


def test_predict_role_reads_only_the_pinned_model_object(default: assertions.Template) -> None:
    statements = [
        s
        for p in default.find_resources("AWS::IAM::Policy").values()
        for s in p["Properties"]["PolicyDocument"]["Statement"]
        if "s3:GetObjectVersion" in s["Action"]
    ]
    resources = [json.dumps(s["Resource"]) for s in statements]
    assert resources
    assert all("acme-models/models/banking77/model.tar.gz" in r for r in resources)


def test_predict_role_describes_its_package_group_and_its_own_alias_only(default: assertions.Template) -> None:
    # Given the default stack (served model banking77, package group cnai-dev-banking77)
    predict_role = next(
        k for k, r in default.find_resources("AWS::IAM::Role").items() if "Predict" in k and "lambda" in json.dumps(r)
    )
    statements = {
        s.get("Sid"): (s, p["Properties"]["Roles"])
        for p in default.find_resources("AWS::IAM::Policy").values()
        for s in p["Properties"]["PolicyDocument"]["Statement"]
    }
    # Then DescribeModelPackage is granted on that group's versions and nothing else
    package, roles = statements["DescribeServedPackage"]
    assert package["Action"] == "sagemaker:DescribeModelPackage" and {"Ref": predict_role} in roles
    assert json.dumps(package["Resource"]).endswith(':111111111111:model-package/cnai-dev-banking77/*"]]}')
    # And GetAlias/GetFunctionConfiguration on the predict function itself and its qualified ARNs, read-only
    own, roles = statements["ReadOwnAlias"]
    assert own["Action"] == ["lambda:GetAlias", "lambda:GetFunctionConfiguration"] and {"Ref": predict_role} in roles
    function = next(iter(default.find_resources("AWS::Lambda::Function", {"Properties": {
        "Handler": "functions.predict.handler.handler"}})))  # fmt: skip
    assert own["Resource"][0] == {"Fn::GetAtt": [function, "Arn"]}
    assert own["Resource"][1] == {"Fn::Join": ["", [{"Fn::GetAtt": [function, "Arn"]}, ":*"]]}
    # And the function learns its group through its settings model
    assert predict_function(default)["Environment"]["Variables"]["CNAI_MODEL_PACKAGE_GROUP"] == "cnai-dev-banking77"


def test_api_integrates_the_live_alias(default: assertions.Template) -> None:
    alias = only(default, "AWS::Lambda::Alias")
    assert alias["Name"] == "live"
    assert "ProvisionedConcurrencyConfig" not in alias
    uris = [
        json.dumps(m["Properties"]["Integration"]["Uri"])
        for m in default.find_resources("AWS::ApiGateway::Method").values()
    ]
    alias_id = next(iter(default.find_resources("AWS::Lambda::Alias")))
    assert sum(alias_id in u for u in uris) == 5  # every route but ingest


def test_variant_has_provisioned_concurrency_and_routes_the_model_to_sagemaker(variant: assertions.Template) -> None:
    from functions.predict.settings import load_settings

    assert only(variant, "AWS::Lambda::Alias")["ProvisionedConcurrencyConfig"] == {"ProvisionedConcurrentExecutions": 2}
    env = predict_function(variant)["Environment"]["Variables"]
    assert json.loads(env["CNAI_SAGEMAKER_ENDPOINTS"]) == {"banking77": "cnai-dev-banking77"}
    assert env["CNAI_AUDIT_STORE_TEXT"] == "true"
    assert "CNAI_MODEL_VERSION_ID" not in env
    assert load_settings({**env, "CNAI_MODEL_URI": "s3://b/k"}).sagemaker_endpoints == {
        "banking77": "cnai-dev-banking77"
    }
    invoke = [
        s
        for p in variant.find_resources("AWS::IAM::Policy").values()
        for s in p["Properties"]["PolicyDocument"]["Statement"]
        if s["Action"] == "sagemaker:InvokeEndpoint"
    ]
    assert len(invoke) == 1
    assert "endpoint/cnai-dev-banking77" in json.dumps(invoke[0]["Resource"])


# ---- audit trail


def test_audit_lines_flow_from_the_predict_log_group_to_firehose(default: assertions.Template) -> None:
    sub = only(default, "AWS::Logs::SubscriptionFilter")
    assert sub["FilterPattern"] == "{ $.cnai_audit IS TRUE }"
    fn = predict_function(default)
    assert sub["LogGroupName"] == {"Ref": fn["LoggingConfig"]["LogGroup"]["Ref"]}
    stream = only(default, "AWS::KinesisFirehose::DeliveryStream")
    assert stream["DeliveryStreamEncryptionConfigurationInput"]["KeyType"] == "CUSTOMER_MANAGED_CMK"
    s3 = stream["ExtendedS3DestinationConfiguration"]
    assert s3["Prefix"].startswith("audit/year=!{timestamp:yyyy}/month=!{timestamp:MM}/day=!{timestamp:dd}/")
    assert s3["ErrorOutputPrefix"].startswith("errors/")
    assert "AWSKMSKeyARN" in s3["EncryptionConfiguration"]["KMSEncryptionConfig"]
    assert [p["Type"] for p in s3["ProcessingConfiguration"]["Processors"]] == [
        "Decompression",
        "CloudWatchLogProcessing",
        "AppendDelimiterToRecord",
    ]
    assert s3["CloudWatchLoggingOptions"]["Enabled"] is True


def test_audit_bucket_is_object_locked_for_the_retention_period(
    default: assertions.Template, variant: assertions.Template
) -> None:
    locked = only(default, "AWS::S3::Bucket", {"ObjectLockEnabled": True})
    assert locked["ObjectLockConfiguration"]["Rule"]["DefaultRetention"] == {"Days": 365, "Mode": "GOVERNANCE"}
    assert locked["VersioningConfiguration"] == {"Status": "Enabled"}
    assert (
        locked["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"][
            "SSEAlgorithm"
        ]
        == "aws:kms"
    )
    expiry = [r for r in locked["LifecycleConfiguration"]["Rules"] if r["Id"] == "expire-after-retention"]
    assert expiry[0]["ExpirationInDays"] == 366
    strict = only(variant, "AWS::S3::Bucket", {"ObjectLockEnabled": True})
    assert strict["ObjectLockConfiguration"]["Rule"]["DefaultRetention"] == {"Days": 2555, "Mode": "COMPLIANCE"}


def test_a_stuck_or_failing_audit_sink_raises_alarms(default: assertions.Template) -> None:
    alarms = {
        a["Properties"]["MetricName"]: a["Properties"]
        for a in default.find_resources("AWS::CloudWatch::Alarm").values()
    }
    assert alarms["DeliveryToS3.DataFreshness"]["Threshold"] == 900
    assert alarms["DeliveryToS3.DataFreshness"]["Namespace"] == "AWS/Firehose"
    errors = alarms["DeliveryErrors"]
    assert errors["Namespace"] == "AWS/Logs"
    assert errors["Threshold"] == 0
    assert {d["Name"] for d in errors["Dimensions"]} == {"LogGroupName", "DestinationType", "FilterName"}


def test_glue_table_has_a_column_for_every_audit_record_field_and_date_partitions(
    default: assertions.Template,
) -> None:
    from cnai.audit.trail import AuditRecord

    table = only(default, "AWS::Glue::Table")["TableInput"]
    columns = [c["Name"] for c in table["StorageDescriptor"]["Columns"]]
    assert columns == list(AuditRecord.model_fields)
    # And the nested records' fields are the structs' fields (a new optional field must be queryable too)
    from cnai.audit.trail import Caller, GenerationAudit

    types = {c["Name"]: c["Type"] for c in table["StorageDescriptor"]["Columns"]}
    for column, model in (("caller", Caller), ("generation", GenerationAudit)):
        fields = [part.split(":")[0] for part in types[column].removeprefix("struct<").split(",")]
        assert fields == list(model.model_fields), column
    assert [k["Name"] for k in table["PartitionKeys"]] == ["year", "month", "day"]
    assert table["Parameters"]["projection.enabled"] == "true"
    assert table["StorageDescriptor"]["SerdeInfo"]["SerializationLibrary"] == "org.openx.data.jsonserde.JsonSerDe"


def test_athena_workgroup_enforces_kms_encrypted_results(default: assertions.Template) -> None:
    workgroup = only(default, "AWS::Athena::WorkGroup")["WorkGroupConfiguration"]
    assert workgroup["EnforceWorkGroupConfiguration"] is True
    result = workgroup["ResultConfiguration"]
    assert result["EncryptionConfiguration"]["EncryptionOption"] == "SSE_KMS"
    assert "KmsKey" in result["EncryptionConfiguration"]
    assert "results/" in json.dumps(result["OutputLocation"])


# ---- SageMaker Serverless


def test_serverless_endpoint_serves_the_same_tar_with_its_code_folder(
    default: assertions.Template, variant: assertions.Template
) -> None:
    model = only(default, "AWS::SageMaker::Model")["PrimaryContainer"]
    assert model["ModelDataUrl"] == "s3://acme-models/models/banking77/model.tar.gz"
    # The tar's code/ folder (cnai.serving.sagemaker.package_model) is the inference code: no second bundle
    assert model["Environment"]["SAGEMAKER_PROGRAM"] == "inference.py"
    assert model["Environment"]["SAGEMAKER_SUBMIT_DIRECTORY"] == "/opt/ml/model/code"
    # A Python 3.12 image: the SageMaker SDK's regional DLC (cnai needs >= 3.11)
    assert model["Image"] == "763104351884.dkr.ecr.eu-west-1.amazonaws.com/pytorch-inference:2.6-cpu-py312"
    [variant_props] = only(default, "AWS::SageMaker::EndpointConfig")["ProductionVariants"]
    assert variant_props["ServerlessConfig"] == {"MaxConcurrency": 5, "MemorySizeInMB": 2048}
    assert only(default, "AWS::SageMaker::Endpoint")["EndpointName"] == "cnai-dev-banking77"
    [bigger] = only(variant, "AWS::SageMaker::EndpointConfig")["ProductionVariants"]
    assert bigger["ServerlessConfig"] == {"MaxConcurrency": 9, "MemorySizeInMB": 4096}


ECR_PULL = ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"]


def sagemaker_statements(template: assertions.Template) -> list[dict[str, Any]]:
    role_id = next(
        k
        for k, r in template.find_resources("AWS::IAM::Role").items()
        if "sagemaker.amazonaws.com" in json.dumps(r["Properties"]["AssumeRolePolicyDocument"])
    )
    return [
        s
        for p in template.find_resources("AWS::IAM::Policy").values()
        if {"Ref": role_id} in p["Properties"]["Roles"]
        for s in p["Properties"]["PolicyDocument"]["Statement"]
    ]


def test_sagemaker_image_can_be_any_configured_uri() -> None:
    uri = "222222222222.dkr.ecr.eu-central-1.amazonaws.com/team/cnai-onnx-serving:1.0"
    template = synth(Settings(serving=ServingSettings(endpoint=EndpointSettings(image_uri=uri))))
    assert only(template, "AWS::SageMaker::Model")["PrimaryContainer"]["Image"] == uri
    # The pull is scoped to that URI's account, region and repository
    [pull] = [s for s in sagemaker_statements(template) if s["Action"] == ECR_PULL]
    assert pull["Resource"] == {
        "Fn::Join": [
            "",
            ["arn:", {"Ref": "AWS::Partition"}, ":ecr:eu-central-1:222222222222:repository/team/cnai-onnx-serving"],
        ]
    }


def test_sagemaker_role_pulls_only_the_mapped_dlc_repository(default: assertions.Template) -> None:
    statements = sagemaker_statements(default)
    [pull] = [s for s in statements if s["Action"] == ECR_PULL]
    # The DLC registry account of the region and the pytorch-inference repository: no other account's ECR
    assert pull["Resource"] == {
        "Fn::Join": [
            "",
            ["arn:", {"Ref": "AWS::Partition"}, ":ecr:eu-west-1:763104351884:repository/pytorch-inference"],
        ]
    }
    # '*' only where no resource-level permission exists: the registry login token
    wildcard = [s for s in statements if s["Resource"] == "*"]
    assert [s["Action"] for s in wildcard] == ["ecr:GetAuthorizationToken"]


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("111111111111.dkr.ecr.us-east-1.amazonaws.com/cnai:1.0", ("111111111111", "us-east-1", "cnai")),
        (
            "222222222222.dkr.ecr.eu-west-1.amazonaws.com/team/cnai@sha256:" + "a" * 64,
            ("222222222222", "eu-west-1", "team/cnai"),
        ),
        ("333333333333.dkr.ecr.cn-north-1.amazonaws.com.cn/cnai:v2", ("333333333333", "cn-north-1", "cnai")),
    ],
)
def test_image_uri_parses_into_account_region_repository(uri: str, expected: tuple[str, str, str]) -> None:
    from infra.constructs.sagemaker_serverless import parse_image_uri

    assert tuple(parse_image_uri(uri)) == expected


@pytest.mark.parametrize(
    "uri", ["docker.io/library/python:3.12", "111.dkr.ecr.eu-west-1.amazonaws.com/x:1", "nonsense"]
)
def test_a_non_ecr_image_uri_is_refused(uri: str) -> None:
    from infra.constructs.sagemaker_serverless import parse_image_uri

    with pytest.raises(ValueError, match="expected an ECR image"):
        parse_image_uri(uri)


def test_sagemaker_role_reads_the_model_object_not_the_bucket(default: assertions.Template) -> None:
    statements = sagemaker_statements(default)
    model_reads = [s for s in statements if s["Action"] == ["s3:GetObject", "s3:GetObjectVersion"]]
    assert len(model_reads) == 1
    assert "acme-models/models/banking77/model.tar.gz" in json.dumps(model_reads[0]["Resource"])


# ---- outputs


def test_outputs_have_stable_ids(default: assertions.Template) -> None:
    outputs = default.find_outputs("*")
    assert {"ApiUrl", "PredictFunctionName", "EndpointName", "AuditBucketName"} <= set(outputs)
    assert outputs["EndpointName"]["Value"] == "cnai-dev-banking77"


def test_endpoint_output_says_disabled_when_sagemaker_is_off() -> None:
    template = synth(Settings(serving=ServingSettings(endpoint=EndpointSettings(enabled=False))))
    assert template.find_outputs("EndpointName")["EndpointName"]["Value"] == "disabled"
    assert not template.find_resources("AWS::SageMaker::Endpoint")
