"""Wires the stacks of one deployment. `app.py` calls this; tests call it once per session."""

from __future__ import annotations

import os
from typing import Any

import aws_cdk as cdk

from infra.config import Settings, settings_from_context
from infra.constructs.dashboard import DashboardSources, Service
from infra.constructs.nag import nag_packs
from infra.stacks.dashboard import DashboardStack
from infra.stacks.deploy import DeployStack
from infra.stacks.ingestion import IngestionStack
from infra.stacks.monitoring import MonitoringStack
from infra.stacks.serving import ServingStack
from infra.stacks.training import TrainingStack


def build(app: cdk.App, settings: Settings | None = None) -> dict[str, cdk.Stack]:
    """Create every stack on `app` and attach cdk-nag. Returns the stacks by concern."""
    settings = settings or settings_from_context(app.node.get_all_context())
    env = cdk.Environment(
        account=os.environ.get("CDK_DEFAULT_ACCOUNT"),
        region=os.environ.get("CDK_DEFAULT_REGION", "us-east-1"),
    )
    stacks: dict[str, cdk.Stack] = {}
    stacks["ingestion"] = IngestionStack(
        app,
        f"{settings.prefix}-ingestion",
        settings=settings,
        env=env,
        description="cnai ingestion: Kinesis stream, consumer Lambda, idempotency table, DLQ, data lake",
    )
    # Serving imports the ingestion stack's API function by ARN (no cross-stack cycle): the REST API routes
    # POST /v1/ingest to it and the invoke permission lives in the serving stack.
    ingest_api = getattr(stacks.get("ingestion"), "api_function", None)
    stacks["serving"] = ServingStack(
        app,
        f"{settings.prefix}-serving",
        settings=settings,
        ingest_function_arn=ingest_api.function_arn if ingest_api is not None else None,
        env=env,
        description="cnai serving: REST API, predict Lambda, audit trail, SageMaker Serverless",
    )
    # Training reads curated records and writes snapshots in the ingestion stack's lake (imported explicitly).
    ingestion = stacks["ingestion"]
    stacks["training"] = TrainingStack(
        app,
        f"{settings.prefix}-training",
        settings=settings,
        lake=ingestion.lake,  # type: ignore[attr-defined]
        lake_key=ingestion.lake_key,  # type: ignore[attr-defined]
        capacity_retry_s=settings.training.capacity_retry_s,
        env=env,
        description="cnai training: the train workflow (dataset, SageMaker GPU training, quality gate, registry)",
    )
    if settings.deploy.enabled:
        # Approval -> deploy workflow -> a new predict version on the `live` alias (docs/deploy.md).
        serving, training = stacks["serving"], stacks["training"]
        stacks["deploy"] = DeployStack(
            app,
            f"{settings.prefix}-deploy",
            settings=settings,
            predict=serving.predict.function,  # type: ignore[attr-defined]
            predict_role=serving.predict.role,  # type: ignore[attr-defined]
            predict_key=serving.key,  # type: ignore[attr-defined]
            predict_service=serving.predict.service,  # type: ignore[attr-defined]
            alias=serving.alias.alias_name,  # type: ignore[attr-defined]
            serving_topic=serving.monitoring.topic,  # type: ignore[attr-defined]
            artifacts=training.artifacts,  # type: ignore[attr-defined]
            artifacts_key=training.key,  # type: ignore[attr-defined]
            # A model routed to SageMaker Serverless is released to its endpoint instead of the alias.
            endpoint=serving.endpoint if settings.serving.endpoint.route else None,  # type: ignore[attr-defined]
            env=env,
            description="cnai deploy: approval rule, deploy workflow (canary on the predict alias, rollback)",
        )
    if settings.drift.enabled:
        # Drift monitor: reads serving's audit trail and the lake's manifests, may start training (docs/drift.md).
        serving, training = stacks["serving"], stacks["training"]
        stacks["monitoring"] = MonitoringStack(
            app,
            f"{settings.prefix}-monitoring",
            settings=settings,
            audit_bucket=serving.audit.bucket,  # type: ignore[attr-defined]
            audit_key=serving.key,  # type: ignore[attr-defined]
            lake=ingestion.lake,  # type: ignore[attr-defined]
            lake_key=ingestion.lake_key,  # type: ignore[attr-defined]
            state_machine_arn=training.state_machine.state_machine_arn,  # type: ignore[attr-defined]
            state_machine_owner=training.state_machine,  # type: ignore[attr-defined]
            env=env,
            description="cnai monitoring: scheduled drift monitor (audit trail vs dataset profile -> train)",
        )
    stacks["dashboard"] = DashboardStack(
        app,
        f"{settings.prefix}-dashboard",
        name=settings.prefix,
        sources=dashboard_sources(settings, stacks),
        env=env,
        description="cnai dashboard: API, functions, ingestion, training runs and cost, drift scores, cache",
    )
    cdk.Tags.of(app).add("project", settings.project)
    cdk.Tags.of(app).add("stage", settings.stage)
    # cdk-nag v3 is a policy-validation plugin: synthesis fails on any unacknowledged finding of any of the four
    # packs (AwsSolutions, HIPAA Security, NIST 800-53 rev 5, Serverless). Acknowledge a finding on its resource,
    # with a specific reason, through infra.constructs.nag.acknowledge (docs/compliance.md).
    cdk.Validations.of(app).add_plugins(*nag_packs(app))
    return stacks


def dashboard_sources(settings: Settings, stacks: dict[str, Any]) -> DashboardSources:
    """What the dashboard watches, from the stacks this deployment has."""
    ingestion, serving, training = stacks["ingestion"], stacks["serving"], stacks["training"]
    functions = {
        "predict": serving.predict.function,
        "ingest consumer": ingestion.consumer.function,
        "ingest API": ingestion.api.function,
        **{name.replace("_", " "): f.function for name, f in training.functions.items()},
    }
    deploy, monitoring = stacks.get("deploy"), stacks.get("monitoring")
    if deploy is not None:
        functions["deploy"] = deploy.function.function
    if monitoring is not None:
        functions["drift monitor"] = monitoring.drift.monitor.function
    notify = training.functions["notify"]
    return DashboardSources(
        namespace=settings.project,
        functions=functions,
        api=serving.api.api,
        predict=Service(serving.predict.function, serving.predict.service),
        consumer=Service(ingestion.consumer.function, ingestion.consumer.service),
        queues={"ingest DLQ": ingestion.dlq},
        train=training.state_machine,
        notify=Service(notify.function, notify.service),
        drift=None if monitoring is None else Service(monitoring.drift.function, monitoring.drift.monitor.service),
        models=settings.training.models,
        drift_thresholds=settings.drift.thresholds(),
    )
