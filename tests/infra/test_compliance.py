"""Compliance fixes across the whole synthesized app (both configurations of tests/infra/conftest.py, which
synthesize under all four cdk-nag packs): a concurrency cap on every function, the WAF on the API stage (and its
absence when switched off), KMS on the SageMaker endpoint configuration, network isolation only where the image
allows it. Settings checks that need no synthesis are here too."""

from __future__ import annotations

from typing import Any

import pytest
from aws_cdk import assertions
from pydantic import ValidationError

from infra.config import EndpointSettings, IngestionSettings, Settings

# predict 20 + ingest API 10 + consumer 20 + drift 1 + five Step Functions tasks x 5 (docs/compliance.md)
DEFAULT_CAPS = 76

Templates = dict[str, dict[str, assertions.Template]]


def functions(templates: dict[str, assertions.Template]) -> dict[str, dict[str, Any]]:
    """`<concern>/<logical id>` -> properties of every Lambda function of the app."""
    return {
        f"{concern}/{logical}": resource["Properties"]
        for concern, template in templates.items()
        for logical, resource in template.find_resources("AWS::Lambda::Function").items()
    }


@pytest.mark.parametrize("config", ["default", "variant"])
def test_every_function_of_the_app_has_a_reserved_concurrency(app_templates: Templates, config: str) -> None:
    # Given the synthesized app / Then every function carries a cap of at least 1
    found = functions(app_templates[config])
    assert len(found) >= 9
    uncapped = [name for name, props in found.items() if not props.get("ReservedConcurrentExecutions")]
    assert not uncapped, f"functions without reserved concurrency: {uncapped}"


def test_caps_come_from_the_settings_where_a_person_tunes_them(app_templates: Templates) -> None:
    # Given the default configuration / Then the API and stream functions take their caps from their settings
    caps = {
        name.split("/")[1]: p["ReservedConcurrentExecutions"] for name, p in functions(app_templates["default"]).items()
    }
    settings = Settings()
    by_prefix = {
        "PredictFunction": settings.serving.reserved_concurrency,
        "ApiFunction": settings.ingestion.api_reserved_concurrency,
        "ConsumerFunction": settings.ingestion.consumer_reserved_concurrency,
        "DriftFunction": 1,
    }
    for prefix, expected in by_prefix.items():
        [cap] = [v for k, v in caps.items() if k.startswith(prefix)]
        assert cap == expected, prefix
    # And the defaults reserve what docs/compliance.md says (the account keeps >= 100 unreserved)
    assert sum(caps.values()) == DEFAULT_CAPS


def test_the_api_stage_sits_behind_a_logged_waf_with_a_rate_limit(app_templates: Templates) -> None:
    # Given the default configuration's serving stack
    serving = app_templates["default"]["serving"]
    [(acl_id, acl)] = serving.find_resources("AWS::WAFv2::WebACL").items()
    rules = {r["Name"]: r for r in acl["Properties"]["Rules"]}
    # Then an IP above the rate limit is blocked first, then the managed groups apply
    assert rules["RateLimitPerIp"]["Statement"]["RateBasedStatement"] == {"Limit": 2000, "AggregateKeyType": "IP"}
    assert rules["RateLimitPerIp"]["Priority"] == 0
    assert {"AWSManagedRulesCommonRuleSet", "AWSManagedRulesKnownBadInputsRuleSet"} <= set(rules)
    # And the 8 KB body rule only counts (predict bodies are larger; the handler bounds them)
    common = rules["AWSManagedRulesCommonRuleSet"]["Statement"]["ManagedRuleGroupStatement"]
    assert common["RuleActionOverrides"] == [{"Name": "SizeRestrictions_BODY", "ActionToUse": {"Count": {}}}]
    # And the ACL guards the stage and logs with the API key redacted
    [association] = serving.find_resources("AWS::WAFv2::WebACLAssociation").values()
    assert association["Properties"]["WebACLArn"] == {"Fn::GetAtt": [acl_id, "Arn"]}
    assert "Stage" in str(association["Properties"]["ResourceArn"])
    [logging] = serving.find_resources("AWS::WAFv2::LoggingConfiguration").values()
    assert logging["Properties"]["RedactedFields"] == [{"SingleHeader": {"Name": "x-api-key"}}]
    serving.has_resource_properties(
        "AWS::Logs::LogGroup", {"LogGroupName": assertions.Match.string_like_regexp("^aws-waf-logs-")}
    )


def test_switching_the_waf_off_removes_it_and_still_synthesizes_under_the_packs(app_templates: Templates) -> None:
    # Given the variant configuration (cnai:api.waf=false), which synthesized under the four packs
    serving = app_templates["variant"]["serving"]
    # Then there is no web ACL (its finding is acknowledged with that setting as the reason)
    assert serving.find_resources("AWS::WAFv2::WebACL") == {}


def test_the_endpoint_configuration_is_kms_encrypted_and_isolation_follows_the_image(app_templates: Templates) -> None:
    # Given the default serving stack (default PyTorch image)
    serving = app_templates["default"]["serving"]
    [config] = serving.find_resources("AWS::SageMaker::EndpointConfig").values()
    # Then the configuration names a customer-managed key of the stack
    assert "Fn::GetAtt" in config["Properties"]["KmsKeyId"]
    # And the Model is not isolated: that image installs its requirements from PyPI at start
    [model] = serving.find_resources("AWS::SageMaker::Model").values()
    assert model["Properties"]["EnableNetworkIsolation"] is False


def test_network_isolation_resolves_from_the_image_and_is_refused_without_one() -> None:
    # Given endpoint settings with and without a custom image
    image = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/cnai-serving:1"
    assert EndpointSettings().isolated is False
    assert EndpointSettings(image_uri=image).isolated is True
    assert EndpointSettings(image_uri=image, network_isolation=False).isolated is False
    # When isolation is asked for with the default image / Then it is refused, saying why
    with pytest.raises(ValidationError, match=r"requirements\.txt"):
        EndpointSettings(network_isolation=True)


def test_a_consumer_cap_below_the_streams_parallel_batches_is_refused() -> None:
    # Given a provisioned stream of 4 shards x 5 batches per shard / Then a cap of 10 is refused, naming the floor
    with pytest.raises(ValidationError, match="at least 20"):
        IngestionSettings(stream_mode="provisioned", shards=4, parallelization=5, consumer_reserved_concurrency=10)
    assert IngestionSettings(stream_mode="provisioned", shards=4, parallelization=5, consumer_reserved_concurrency=20)


def test_the_approval_rule_keeps_undelivered_events_in_an_alarmed_encrypted_queue(app_templates: Templates) -> None:
    # Given the default configuration's deploy stack
    deploy = app_templates["default"]["deploy"]
    [rule] = deploy.find_resources("AWS::Events::Rule").values()
    [target] = rule["Properties"]["Targets"]
    # Then the workflow target sends what it cannot deliver to a queue of the stack, which is KMS encrypted
    queue_id, attribute = target["DeadLetterConfig"]["Arn"]["Fn::GetAtt"]
    assert attribute == "Arn"
    queue = deploy.find_resources("AWS::SQS::Queue")[queue_id]
    assert "KmsMasterKeyId" in queue["Properties"]
    # And an alarm watches its depth
    alarms = deploy.find_resources("AWS::CloudWatch::Alarm")
    watched = [a for a in alarms.values() if queue_id in str(a["Properties"].get("Dimensions", ""))]
    assert [a["Properties"]["MetricName"] for a in watched] == ["ApproximateNumberOfMessagesVisible"]
