"""What a deployment costs, read from the synthesized CloudFormation templates and one file of unit prices.

Why from the templates: they are what `cdk deploy` creates, so the estimate follows every setting (memory
sizes, tracing, stream mode, the alarms and keys each stack adds) without a second description of the
platform that could drift from it. Why one price file (cnai/pipeline/prices.json, source and date inside):
the training notification and this estimate must not disagree about a price.

Three questions, each answered as lines (item, quantity, cost, how it was computed):

- idle: what the deployment costs per month with no traffic and no training (keys, alarms, the stream,
  dashboards, a web ACL, provisioned concurrency, the scheduled drift monitor);
- a million predictions through the REST API + predict Lambda, and through the same API with the Lambda routing
  to the SageMaker Serverless endpoint: requests, compute at the measured (or given) duration, the audit and
  metric log lines, tracing;
- one training run on spot and on demand (the run's instance type, an assumed duration, the spot saving assumed
  in the price file, since the real one is only known after the run).

Assumptions are parameters with defaults, and each line says which it used; nothing here calls AWS.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cnai.errors import CnaiError
from cnai.pipeline.input import TrainingRunInput
from cnai.pipeline.notify import price_table

SECONDS_PER_MONTH = 730 * 3600


def prices() -> dict[str, Any]:
    """The one price file, as the training notification reads it (cnai.pipeline.notify.price_table)."""
    return price_table()


@dataclass(frozen=True)
class Line:
    """One priced item: what, how much of it, what it costs, and how that was computed."""

    item: str
    quantity: str
    cost: float
    basis: str


@dataclass(frozen=True)
class Estimate:
    """Every answer of `cnai cost`, in the price file's currency."""

    currency: str
    as_of: str
    region: str
    idle_month: list[Line]
    per_predictions: dict[str, list[Line]]
    predictions: int
    training: dict[str, list[Line]]
    assumptions: dict[str, Any] = field(default_factory=dict)

    @staticmethod
    def total(lines: Iterable[Line]) -> float:
        return sum(line.cost for line in lines)

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["idle_month_total"] = self.total(self.idle_month)
        out["per_predictions_total"] = {k: self.total(v) for k, v in self.per_predictions.items()}
        out["training_total"] = {k: self.total(v) for k, v in self.training.items()}
        return out


@dataclass(frozen=True)
class Assumptions:
    """What the templates cannot say. Defaults: `make bench-serve` on this project's 2-core host (handler p50
    ~1.2 ms, billed per started ms; the endpoint adds SageMaker's own invocation path), and a training run
    about as long as the default profile's on a g5.xlarge."""

    predictions: int = 1_000_000
    lambda_ms: float = 2.0
    endpoint_ms: float = 15.0
    request_kb: float = 0.5
    log_kb_per_request: float = 1.5  # the audit record, the EMF metrics line, Lambda's REPORT line
    training_hours: float = 1.0
    instance_type: str | None = None  # default: the training workflow's (TrainingRunInput)
    drift_run_s: float = 10.0


# -- reading the synthesized app --


def load_templates(app_dir: Path) -> dict[str, dict[str, Any]]:
    """stack name -> template, from the cloud assembly's manifest (what `cdk deploy --app cdk.out` deploys)."""
    manifest_path = app_dir / "manifest.json"
    if not manifest_path.is_file():
        raise CnaiError(f"{manifest_path}: no cloud assembly here; run `make synth` first (or pass --app DIR)")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise CnaiError(f"{manifest_path}: not a readable cloud assembly manifest ({exc})") from None
    templates: dict[str, dict[str, Any]] = {}
    for name, artifact in (manifest.get("artifacts") or {}).items():
        if artifact.get("type") != "aws:cloudformation:stack":
            continue
        template_file = app_dir / artifact.get("properties", {}).get("templateFile", "")
        try:
            template = json.loads(template_file.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise CnaiError(f"{template_file}: stack {name}'s template is unreadable ({exc})") from None
        if not isinstance(template, dict) or not isinstance(template.get("Resources", {}), dict):
            raise CnaiError(f"{template_file}: stack {name}'s template is not a CloudFormation template object")
        templates[name] = template
    if not templates:
        raise CnaiError(f"{manifest_path}: the assembly holds no CloudFormation stack")
    return templates


def resources(templates: Mapping[str, Mapping[str, Any]], kind: str) -> list[tuple[str, str, dict[str, Any]]]:
    """(stack, logical id, properties) of every resource of CloudFormation type `kind`."""
    return [
        (stack, logical_id, dict(resource.get("Properties") or {}))
        for stack, template in sorted(templates.items())
        for logical_id, resource in sorted((template.get("Resources") or {}).items())
        if resource.get("Type") == kind
    ]


def _ref(value: Any) -> str | None:
    if isinstance(value, dict):
        if "Ref" in value:
            return str(value["Ref"])
        if "Fn::GetAtt" in value:
            return str(value["Fn::GetAtt"][0])
    return None


@dataclass(frozen=True)
class FunctionSpec:
    stack: str
    logical_id: str
    memory_mb: int
    architecture: str
    traced: bool


def _function(stack: str, logical_id: str, props: Mapping[str, Any]) -> FunctionSpec:
    return FunctionSpec(
        stack=stack,
        logical_id=logical_id,
        memory_mb=int(props.get("MemorySize", 128)),
        architecture=str((props.get("Architectures") or ["x86_64"])[0]),
        traced=(props.get("TracingConfig") or {}).get("Mode") == "Active",
    )


def predict_function(templates: Mapping[str, Mapping[str, Any]]) -> FunctionSpec:
    """The function behind the `live` alias (the one API Gateway invokes)."""
    for stack, _, alias in resources(templates, "AWS::Lambda::Alias"):
        if alias.get("Name") != "live":
            continue
        target = _ref(alias.get("FunctionName"))
        props = (templates[stack].get("Resources") or {}).get(target or "", {}).get("Properties")
        if props is not None:
            return _function(stack, str(target), props)
    raise CnaiError("no Lambda alias named `live` in the templates: is the serving stack part of this app?")


# -- the three answers --


def _lambda_gb_s_price(architecture: str, provisioned: bool = False) -> float:
    serving = prices()["serving"]
    arch = "arm64" if architecture == "arm64" else "x86_64"
    return float(serving[f"lambda_{arch}_{'provisioned_' if provisioned else ''}per_gb_second"])


def _hours(expression: str) -> float | None:
    """Hours between runs of `rate(N unit)`; None for cron expressions (not estimated)."""
    match = re.fullmatch(r"rate\((\d+) (minute|minutes|hour|hours|day|days)\)", expression.strip())
    if not match:
        return None
    n, unit = int(match.group(1)), match.group(2)
    return n / 60 if unit.startswith("minute") else n * 24 if unit.startswith("day") else float(n)


def idle_month(templates: Mapping[str, Mapping[str, Any]], assume: Assumptions) -> list[Line]:
    monthly = prices()["monthly"]
    hours = float(monthly["hours_per_month"])
    lines: list[Line] = []
    keys = resources(templates, "AWS::KMS::Key")
    if keys:
        lines.append(
            Line("KMS customer-managed keys", f"{len(keys)} keys", len(keys) * monthly["kms_key"], "per key-month")
        )
    alarms = resources(templates, "AWS::CloudWatch::Alarm")
    if alarms:
        lines.append(
            Line(
                "CloudWatch alarms",
                f"{len(alarms)} alarms",
                len(alarms) * monthly["cloudwatch_alarm_standard"],
                "standard resolution, per alarm-month",
            )
        )
    dashboards = resources(templates, "AWS::CloudWatch::Dashboard")
    if dashboards:
        lines.append(
            Line(
                "CloudWatch dashboards",
                f"{len(dashboards)}",
                len(dashboards) * monthly["cloudwatch_dashboard"],
                "per dashboard-month (3 free per account not deducted)",
            )
        )
    for stack, logical_id, props in resources(templates, "AWS::Kinesis::Stream"):
        mode = (props.get("StreamModeDetails") or {}).get("StreamMode", "PROVISIONED")
        if mode == "ON_DEMAND":
            cost = hours * monthly["kinesis_on_demand_stream_hour"]
            lines.append(
                Line(
                    f"Kinesis stream {stack}/{logical_id}",
                    "on-demand, 730 h",
                    cost,
                    "per stream-hour; data ingested is extra",
                )
            )
        else:
            shards = int(props.get("ShardCount", 1))
            cost = shards * hours * monthly["kinesis_provisioned_shard_hour"]
            lines.append(
                Line(f"Kinesis stream {stack}/{logical_id}", f"{shards} shards, 730 h", cost, "per shard-hour")
            )
    for stack, logical_id, props in resources(templates, "AWS::WAFv2::WebACL"):
        rules = len(props.get("Rules") or [])
        cost = monthly["waf_web_acl"] + rules * monthly["waf_rule"]
        lines.append(
            Line(f"WAF web ACL {stack}/{logical_id}", f"1 ACL, {rules} rules", cost, "per ACL-month + per rule-month")
        )
    for stack, logical_id, alias in resources(templates, "AWS::Lambda::Alias"):
        provisioned = (alias.get("ProvisionedConcurrencyConfig") or {}).get("ProvisionedConcurrentExecutions")
        if not provisioned:
            continue
        function_id = _ref(alias.get("FunctionName")) or ""
        spec = _function(
            stack, function_id, (templates[stack]["Resources"].get(function_id) or {}).get("Properties") or {}
        )
        gb_s = int(provisioned) * spec.memory_mb / 1024 * SECONDS_PER_MONTH
        lines.append(
            Line(
                f"Lambda provisioned concurrency {stack}/{logical_id}",
                f"{provisioned} x {spec.memory_mb} MB, 730 h",
                gb_s * _lambda_gb_s_price(spec.architecture, provisioned=True),
                "per GB-second provisioned",
            )
        )
    for stack, logical_id, props in resources(templates, "AWS::Scheduler::Schedule"):
        every_h = _hours(str(props.get("ScheduleExpression", "")))
        target = _ref((props.get("Target") or {}).get("Arn"))
        function = (templates[stack].get("Resources") or {}).get(target or "", {})
        if every_h is None or function.get("Type") != "AWS::Lambda::Function":
            continue
        spec = _function(stack, str(target), function.get("Properties") or {})
        runs = hours / every_h
        gb_s = runs * assume.drift_run_s * spec.memory_mb / 1024
        cost = (
            gb_s * _lambda_gb_s_price(spec.architecture)
            + runs / 1e6 * prices()["serving"]["lambda_per_million_requests"]
        )
        lines.append(
            Line(
                f"scheduled function {stack}/{logical_id}",
                f"{runs:.0f} runs x {assume.drift_run_s:g} s",
                cost,
                f"every {every_h:g} h, {spec.memory_mb} MB",
            )
        )
    return lines


def _traces(predictions: int) -> float:
    """Traces X-Ray records for `predictions` spread evenly over a month under Lambda's default sampling rule
    (a reservoir of 1 request per second, then 5%): at low rates nearly every request is traced."""
    reservoir = min(predictions, SECONDS_PER_MONTH)
    return reservoir + 0.05 * (predictions - reservoir)


def per_predictions(templates: Mapping[str, Mapping[str, Any]], assume: Assumptions) -> dict[str, list[Line]]:
    serving = prices()["serving"]
    n = assume.predictions
    millions = n / 1e6
    predict = predict_function(templates)
    granularity = float(serving["lambda_billing_granularity_ms"])
    billed_ms = math.ceil(assume.lambda_ms / granularity) * granularity
    gb_s = n * billed_ms / 1000 * predict.memory_mb / 1024
    log_gb = n * assume.log_kb_per_request / 1024 / 1024
    common = [
        Line(
            "API Gateway REST requests",
            f"{n:,}",
            millions * serving["api_gateway_rest_per_million_requests"],
            "per million requests",
        ),
        Line(
            "Lambda requests (predict)",
            f"{n:,}",
            millions * serving["lambda_per_million_requests"],
            "per million requests",
        ),
        Line(
            "CloudWatch Logs ingestion (audit record, metrics, REPORT)",
            f"{log_gb:.2f} GB",
            log_gb * serving["cloudwatch_logs_per_gb_ingested"],
            f"{assume.log_kb_per_request:g} KB per request",
        ),
        Line(
            "Data Firehose (audit records to S3)",
            f"{n * 1.0 / 1024 / 1024:.2f} GB",
            n * 1.0 / 1024 / 1024 * serving["firehose_per_gb_ingested"],
            "about 1 KB per audit record, batched by the log subscription",
        ),
    ]
    if predict.traced:
        traces = _traces(n)
        billable = max(0.0, traces - float(serving["xray_free_traces_per_month"]))
        common.append(
            Line(
                "X-Ray traces",
                f"{traces:,.0f} traced",
                billable / 1e6 * serving["xray_per_million_traces"],
                "default sampling (1/s reservoir + 5%), requests spread over a month, 100k free",
            )
        )
    if resources(templates, "AWS::WAFv2::WebACLAssociation"):
        common.append(
            Line(
                "WAF requests",
                f"{n:,}",
                millions * serving["waf_per_million_requests"],
                "per million requests inspected",
            )
        )
    lambda_route = [
        *common,
        Line(
            f"Lambda compute ({predict.memory_mb} MB {predict.architecture})",
            f"{billed_ms:g} ms billed x {n:,}",
            gb_s * _lambda_gb_s_price(predict.architecture),
            f"{assume.lambda_ms:g} ms per request (model + handler), per GB-second",
        ),
    ]
    out = {"rest_api_lambda": lambda_route}
    configs = [p for _, _, p in resources(templates, "AWS::SageMaker::EndpointConfig")]
    serverless = [
        v["ServerlessConfig"] for p in configs for v in p.get("ProductionVariants") or [] if v.get("ServerlessConfig")
    ]
    if serverless:
        memory_mb = int(serverless[0].get("MemorySizeInMB", 2048))
        endpoint_gb_s = n * assume.endpoint_ms / 1000 * memory_mb / 1024
        # The predict Lambda stays in the path (it routes to the endpoint and audits): it now waits for the endpoint.
        routing_ms = math.ceil((assume.lambda_ms + assume.endpoint_ms) / granularity) * granularity
        routing_gb_s = n * routing_ms / 1000 * predict.memory_mb / 1024
        processed_gb = n * 2 * assume.request_kb / 1024 / 1024
        out["rest_api_sagemaker_serverless"] = [
            *common,
            Line(
                f"Lambda compute while it waits for the endpoint ({predict.memory_mb} MB)",
                f"{routing_ms:g} ms billed x {n:,}",
                routing_gb_s * _lambda_gb_s_price(predict.architecture),
                "the predict function routes, audits and waits",
            ),
            Line(
                f"SageMaker Serverless compute ({memory_mb} MB)",
                f"{assume.endpoint_ms:g} ms x {n:,}",
                endpoint_gb_s * serving["sagemaker_serverless_per_gb_second"],
                "per GB-second of inference",
            ),
            Line(
                "SageMaker Serverless data processed",
                f"{processed_gb:.2f} GB",
                processed_gb * serving["sagemaker_serverless_per_gb_processed"],
                f"{assume.request_kb:g} KB in + out per request",
            ),
        ]
    return out


def training_run(assume: Assumptions) -> dict[str, list[Line]]:
    table = prices()
    run_defaults = TrainingRunInput.model_fields
    instance_type = assume.instance_type or str(run_defaults["instance_type"].default)
    hourly = table["training_on_demand"].get(instance_type)
    if hourly is None:
        raise CnaiError(
            f"--instance-type {instance_type}: no price on file (cnai/pipeline/prices.json training_on_demand)"
        )
    saving = float(table["training_spot_saving_assumed"]["value"])
    on_demand = assume.training_hours * float(hourly)
    quantity = f"{assume.training_hours:g} h x {instance_type}"
    return {
        "on_demand": [Line("SageMaker training", quantity, on_demand, f"{hourly} per instance-hour")],
        "spot": [
            Line(
                "SageMaker training (managed spot)",
                quantity,
                on_demand * (1 - saving),
                f"{saving:.0%} spot saving assumed",
            )
        ],
    }


def estimate(app_dir: Path, assume: Assumptions | None = None) -> Estimate:
    assume = assume or Assumptions()
    templates = load_templates(app_dir)
    table = prices()
    return Estimate(
        currency=str(table["currency"]),
        as_of=str(table["as_of"]),
        region=str(table["region"]),
        idle_month=idle_month(templates, assume),
        per_predictions=per_predictions(templates, assume),
        predictions=assume.predictions,
        training=training_run(assume),
        assumptions=asdict(assume),
    )
