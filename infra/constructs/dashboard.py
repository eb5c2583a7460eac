"""One CloudWatch dashboard per deployment: the API, every function, ingestion, training, drift, the cache.

Why one dashboard and not one per stack: a person on call opens one page and sees the whole path of a
request and of a model (ingest -> train -> serve -> drift) on one time axis. Why explicit metrics of the
other stacks' resources (cross-stack references) rather than metric SEARCH expressions: the widgets name
exactly the resources of this deployment, also when dev and prod share an account (the functions' Powertools
metrics carry only the `service` dimension and the project's namespace; a search would mix stages).

Rows, top to bottom: API (requests, 4xx/5xx, p50/p99 latency), predict (p50/p99 duration, cache hit rate,
abstentions, audit failures), every function's errors and throttles, ingestion (records in / curated /
quarantined, quarantine rate, iterator age, DLQ depth), training (runs by outcome, cost per run), drift scores
per model (the values the monitor publishes, with their thresholds as horizontal lines).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import aws_cdk as cdk
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

PERIOD = cdk.Duration.minutes(5)
HOUR = cdk.Duration.hours(1)
DAY = cdk.Duration.days(1)
WIDTH = 24  # the dashboard grid's width


@dataclass(frozen=True)
class Service:
    """A function and the Powertools `service` its custom metrics carry."""

    function: lambda_.IFunction
    service: str


@dataclass
class DashboardSources:
    """What the dashboard watches, from each stack of the deployment (absent stacks leave their rows out)."""

    namespace: str  # the Powertools metrics namespace (the project)
    functions: Mapping[str, lambda_.IFunction]  # label -> function: errors and throttles of each
    api: apigw.RestApi | None = None
    predict: Service | None = None
    consumer: Service | None = None
    queues: Mapping[str, sqs.IQueue] = field(default_factory=dict)  # label -> dead-letter queue
    train: sfn.IStateMachine | None = None
    notify: Service | None = None
    drift: Service | None = None
    models: Sequence[str] = ()
    drift_thresholds: Mapping[str, float] = field(default_factory=dict)  # score name -> threshold


class Dashboard(Construct):
    """`dashboard`: the CloudWatch dashboard named `<prefix>` (one per deployment)."""

    def __init__(self, scope: Construct, construct_id: str, *, name: str, sources: DashboardSources) -> None:
        super().__init__(scope, construct_id)
        self.sources = sources
        self.dashboard = cloudwatch.Dashboard(
            self,
            "Dashboard",
            dashboard_name=name,
            default_interval=cdk.Duration.hours(3),
            period_override=cloudwatch.PeriodOverride.AUTO,
        )
        for row in (
            self._api(),
            self._predict(),
            self._functions(),
            self._ingestion(),
            self._training(),
            self._drift(),
        ):
            if row:
                self.dashboard.add_widgets(*row)

    # -- helpers --

    def _custom(
        self, name: str, service: Service, statistic: str = "Sum", period: cdk.Duration = PERIOD
    ) -> cloudwatch.Metric:
        return cloudwatch.Metric(
            namespace=self.sources.namespace,
            metric_name=name,
            dimensions_map={"service": service.service},
            statistic=statistic,
            period=period,
            label=name,
        )

    @staticmethod
    def _graph(title: str, left: Sequence[cloudwatch.IMetric], width: int, **more: object) -> cloudwatch.GraphWidget:
        return cloudwatch.GraphWidget(title=title, left=list(left), width=width, height=6, **more)  # type: ignore[arg-type]

    # -- rows --

    def _api(self) -> list[cloudwatch.IWidget]:
        api = self.sources.api
        if api is None:
            return []
        return [
            cloudwatch.TextWidget(markdown=f"## API `{api.rest_api_name}`", width=WIDTH, height=1),
            self._graph("Requests", [api.metric_count(statistic="Sum", period=PERIOD)], 8),
            self._graph(
                "4xx / 5xx",
                [
                    api.metric_client_error(statistic="Sum", period=PERIOD, label="4xx"),
                    api.metric_server_error(statistic="Sum", period=PERIOD, label="5xx"),
                ],
                8,
            ),
            self._graph(
                "Latency (ms)",
                [
                    api.metric_latency(statistic="p50", period=PERIOD, label="p50"),
                    api.metric_latency(statistic="p99", period=PERIOD, label="p99"),
                ],
                8,
            ),
        ]

    def _predict(self) -> list[cloudwatch.IWidget]:
        predict = self.sources.predict
        if predict is None:
            return []
        function = predict.function
        return [
            self._graph(
                "Predict duration (ms)",
                [
                    function.metric_duration(statistic="p50", period=PERIOD, label="p50"),
                    function.metric_duration(statistic="p99", period=PERIOD, label="p99"),
                ],
                8,
            ),
            self._graph(
                "Cache hit rate (%)",
                [self._custom("CacheHitRate", predict, statistic="Average")],
                8,
                left_y_axis=cloudwatch.YAxisProps(min=0, max=100),
            ),
            self._graph(
                "Inputs, abstentions, audit failures",
                [self._custom(n, predict) for n in ("Inputs", "Abstentions", "AuditFailures")],
                8,
            ),
        ]

    def _functions(self) -> list[cloudwatch.IWidget]:
        functions = self.sources.functions
        if not functions:
            return []
        return [
            self._graph(
                "Lambda errors",
                [f.metric_errors(statistic="Sum", period=PERIOD, label=label) for label, f in functions.items()],
                12,
            ),
            self._graph(
                "Lambda throttles",
                [f.metric_throttles(statistic="Sum", period=PERIOD, label=label) for label, f in functions.items()],
                12,
            ),
        ]

    def _ingestion(self) -> list[cloudwatch.IWidget]:
        consumer = self.sources.consumer
        widgets: list[cloudwatch.IWidget] = []
        if consumer is not None:
            records = {n: self._custom(n, consumer) for n in ("RecordsIn", "RecordsCurated", "RecordsQuarantined")}
            widgets += [
                self._graph("Ingested records", list(records.values()), 6),
                self._graph(
                    "Quarantine rate (%)",
                    [
                        cloudwatch.MathExpression(
                            expression="IF(records > 0, 100 * quarantined / records, 0)",
                            using_metrics={
                                "records": records["RecordsIn"],
                                "quarantined": records["RecordsQuarantined"],
                            },
                            label="quarantined / in",
                            period=PERIOD,
                        )
                    ],
                    6,
                ),
                self._graph(
                    "Consumer iterator age (ms)",
                    [
                        cloudwatch.Metric(
                            namespace="AWS/Lambda",
                            metric_name="IteratorAge",
                            dimensions_map={"FunctionName": consumer.function.function_name},
                            statistic="Maximum",
                            period=PERIOD,
                            label="max",
                        )
                    ],
                    6,
                ),
            ]
        if self.sources.queues:
            widgets.append(
                self._graph(
                    "Dead-letter queues (messages)",
                    [
                        q.metric_approximate_number_of_messages_visible(statistic="Maximum", period=PERIOD, label=label)
                        for label, q in self.sources.queues.items()
                    ],
                    6,
                )
            )
        return widgets

    def _training(self) -> list[cloudwatch.IWidget]:
        train = self.sources.train
        widgets: list[cloudwatch.IWidget] = []
        if train is not None:
            widgets.append(
                self._graph(
                    "Training runs",
                    [
                        train.metric_started(statistic="Sum", period=DAY, label="started"),
                        train.metric_succeeded(statistic="Sum", period=DAY, label="succeeded"),
                        train.metric_failed(statistic="Sum", period=DAY, label="failed"),
                    ],
                    12,
                )
            )
        if self.sources.notify is not None:
            widgets.append(
                self._graph(
                    "Training cost per day (USD, billed seconds x on-demand price; spot saving beside)",
                    [
                        self._custom("TrainingCost", self.sources.notify, period=DAY),
                        self._custom("TrainingSpotSaving", self.sources.notify, period=DAY),
                    ],
                    12,
                )
            )
        return widgets

    def _drift(self) -> list[cloudwatch.IWidget]:
        drift = self.sources.drift
        if drift is None or not self.sources.models:
            return []
        widgets: list[cloudwatch.IWidget] = []
        for model in self.sources.models:
            scores = [
                cloudwatch.Metric(
                    namespace=self.sources.namespace,
                    metric_name=f"Drift.{score}",
                    dimensions_map={"service": drift.service, "model": model},
                    statistic="Maximum",
                    period=HOUR,
                    label=score,
                )
                for score in self.sources.drift_thresholds
            ]
            lines = [
                cloudwatch.HorizontalAnnotation(value=value, label=f"{score} threshold")
                for score, value in self.sources.drift_thresholds.items()
            ]
            widgets.append(
                self._graph(
                    f"Drift scores: {model}", scores, WIDTH // max(1, len(self.sources.models)), left_annotations=lines
                )
            )
        return widgets
