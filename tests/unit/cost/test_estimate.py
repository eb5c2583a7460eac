"""`cnai cost` on a crafted cloud assembly: every figure follows from the template and the price file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from cnai.cli import app
from cnai.cost.estimate import SECONDS_PER_MONTH, Assumptions, estimate, prices
from cnai.errors import CnaiError

pytestmark = pytest.mark.unit


def _function(memory: int, traced: bool = True) -> dict[str, Any]:
    props: dict[str, Any] = {"MemorySize": memory, "Architectures": ["arm64"], "Runtime": "python3.12"}
    if traced:
        props["TracingConfig"] = {"Mode": "Active"}
    return {"Type": "AWS::Lambda::Function", "Properties": props}


def assembly(tmp_path: Path, *, provisioned: int | None = None, serverless_mb: int | None = 2048) -> Path:
    """Two stacks as `cdk synth` writes them: manifest.json naming each template file."""
    alias: dict[str, Any] = {"FunctionName": {"Ref": "Predict"}, "FunctionVersion": "1", "Name": "live"}
    if provisioned:
        alias["ProvisionedConcurrencyConfig"] = {"ProvisionedConcurrentExecutions": provisioned}
    serving: dict[str, Any] = {
        "Key": {"Type": "AWS::KMS::Key"},
        "Errors": {"Type": "AWS::CloudWatch::Alarm"},
        "Latency": {"Type": "AWS::CloudWatch::Alarm"},
        "Predict": _function(2048),
        "Live": {"Type": "AWS::Lambda::Alias", "Properties": alias},
    }
    if serverless_mb:
        serving["Config"] = {
            "Type": "AWS::SageMaker::EndpointConfig",
            "Properties": {"ProductionVariants": [{"ServerlessConfig": {"MemorySizeInMB": serverless_mb}}]},
        }
    ingestion = {
        "Key": {"Type": "AWS::KMS::Key"},
        "Stream": {"Type": "AWS::Kinesis::Stream", "Properties": {"StreamModeDetails": {"StreamMode": "ON_DEMAND"}}},
        "Drift": _function(1024, traced=False),
        "Schedule": {
            "Type": "AWS::Scheduler::Schedule",
            "Properties": {"ScheduleExpression": "rate(1 hour)", "Target": {"Arn": {"Fn::GetAtt": ["Drift", "Arn"]}}},
        },
    }
    artifacts: dict[str, Any] = {"Tree": {"type": "cdk:tree"}}
    for name, resources in (("serving", serving), ("ingestion", ingestion)):
        (tmp_path / f"{name}.template.json").write_text(json.dumps({"Resources": resources}))
        artifacts[name] = {"type": "aws:cloudformation:stack", "properties": {"templateFile": f"{name}.template.json"}}
    (tmp_path / "manifest.json").write_text(json.dumps({"artifacts": artifacts}))
    return tmp_path


def by_item(lines: list[Any]) -> dict[str, float]:
    return {line.item.split(" (")[0]: line.cost for line in lines}


def test_idle_month_counts_what_the_templates_create(tmp_path: Path) -> None:
    # Given two stacks with 2 keys, 2 alarms, an on-demand stream and an hourly 1 GB function
    monthly = prices()["monthly"]
    # When the deployment is priced
    idle = by_item(estimate(assembly(tmp_path)).idle_month)
    # Then each line is count x unit price, and the stream is billed per hour of the month
    assert idle["KMS customer-managed keys"] == pytest.approx(2 * monthly["kms_key"])
    assert idle["CloudWatch alarms"] == pytest.approx(2 * monthly["cloudwatch_alarm_standard"])
    assert idle["Kinesis stream ingestion/Stream"] == pytest.approx(730 * monthly["kinesis_on_demand_stream_hour"])
    gb_s = 730 * 10.0 * 1.0  # runs x assumed seconds x GB
    expected = gb_s * prices()["serving"]["lambda_arm64_per_gb_second"] + 730 / 1e6 * 0.2
    assert idle["scheduled function ingestion/Schedule"] == pytest.approx(expected)


def test_provisioned_concurrency_is_an_idle_cost(tmp_path: Path) -> None:
    idle = by_item(estimate(assembly(tmp_path, provisioned=2)).idle_month)
    price = prices()["serving"]["lambda_arm64_provisioned_per_gb_second"]
    assert idle["Lambda provisioned concurrency serving/Live"] == pytest.approx(2 * 2.0 * SECONDS_PER_MONTH * price)


def test_a_million_predictions_on_lambda_and_on_the_serverless_endpoint(tmp_path: Path) -> None:
    serving = prices()["serving"]
    # When a million predictions are priced at 2 ms (Lambda) and 15 ms (endpoint)
    result = estimate(assembly(tmp_path), Assumptions(lambda_ms=2.0, endpoint_ms=15.0))
    lam = by_item(result.per_predictions["rest_api_lambda"])
    sm = by_item(result.per_predictions["rest_api_sagemaker_serverless"])
    # Then the request charges are per million and compute is GB-seconds at the function's memory
    assert lam["API Gateway REST requests"] == pytest.approx(serving["api_gateway_rest_per_million_requests"])
    assert lam["Lambda compute"] == pytest.approx(1e6 * 0.002 * 2.0 * serving["lambda_arm64_per_gb_second"])
    # And the endpoint route still pays the Lambda (it waits 17 ms billed) plus the endpoint's GB-seconds
    assert sm["Lambda compute while it waits for the endpoint"] == pytest.approx(
        1e6 * 0.017 * 2.0 * serving["lambda_arm64_per_gb_second"]
    )
    assert sm["SageMaker Serverless compute"] == pytest.approx(
        1e6 * 0.015 * 2.0 * serving["sagemaker_serverless_per_gb_second"]
    )
    assert result.total(result.per_predictions["rest_api_sagemaker_serverless"]) > result.total(
        result.per_predictions["rest_api_lambda"]
    )


def test_tracing_follows_the_default_sampling_rule(tmp_path: Path) -> None:
    # At 1M a month (0.4/s) the 1/s reservoir traces every request; at 100M the 5% rule dominates
    small = by_item(estimate(assembly(tmp_path)).per_predictions["rest_api_lambda"])
    big = by_item(estimate(assembly(tmp_path), Assumptions(predictions=100_000_000)).per_predictions["rest_api_lambda"])
    assert small["X-Ray traces"] == pytest.approx((1e6 - 1e5) / 1e6 * 5.0)
    traced = SECONDS_PER_MONTH + 0.05 * (100_000_000 - SECONDS_PER_MONTH)
    assert big["X-Ray traces"] == pytest.approx((traced - 1e5) / 1e6 * 5.0)


def test_no_endpoint_means_no_serverless_route(tmp_path: Path) -> None:
    assert set(estimate(assembly(tmp_path, serverless_mb=None)).per_predictions) == {"rest_api_lambda"}


def test_training_spot_versus_on_demand(tmp_path: Path) -> None:
    table = prices()
    result = estimate(assembly(tmp_path), Assumptions(training_hours=2.0, instance_type="ml.g4dn.xlarge"))
    hourly = table["training_on_demand"]["ml.g4dn.xlarge"]
    saving = table["training_spot_saving_assumed"]["value"]
    assert result.total(result.training["on_demand"]) == pytest.approx(2 * hourly)
    assert result.total(result.training["spot"]) == pytest.approx(2 * hourly * (1 - saving))


def test_bad_inputs_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(CnaiError, match="make synth"):
        estimate(tmp_path / "missing")
    with pytest.raises(CnaiError, match=r"ml\.z9\.huge: no price"):
        estimate(assembly(tmp_path), Assumptions(instance_type="ml.z9.huge"))
    (tmp_path / "broken").mkdir()
    broken = assembly(tmp_path / "broken")
    (broken / "serving.template.json").write_text("[1, 2]")
    with pytest.raises(CnaiError, match="not a CloudFormation template object"):
        estimate(broken)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(CnaiError, match=r"manifest\.json: not a readable"):
        estimate(tmp_path)


def test_the_command_prints_tables_or_json(tmp_path: Path) -> None:
    runner = CliRunner()
    app_dir = assembly(tmp_path)
    shown = runner.invoke(app, ["cost", "--app", str(app_dir)])
    assert shown.exit_code == 0, shown.output
    assert "idle deployment, per month" in shown.output and "SageMaker" in shown.output
    as_json = runner.invoke(app, ["cost", "--app", str(app_dir), "--json", "--predictions", "2000000"])
    figures = json.loads(as_json.output)
    assert figures["predictions"] == 2_000_000
    assert figures["per_predictions_total"]["rest_api_lambda"] > 0
    missing = runner.invoke(app, ["cost", "--app", str(tmp_path / "nope")])
    assert missing.exit_code == 2 and "make synth" in missing.output and "Traceback" not in missing.output
