"""`cnai serve --follow FUNCTION[:ALIAS]`: serve what a Lambda alias serves, and follow it as it moves.

The deploy workflow (cnai.deploy.canary) publishes function versions whose environment pins one model
(cnai.settings.ModelSource: artifact URI, S3 object version, registry version) and moves the alias's routing
(FunctionVersion, plus RoutingConfig.AdditionalVersionWeights during a canary). The follower reads that routing
through the Lambda API (boto3: moto on the local platform through AWS_ENDPOINT_URL, Lambda on AWS), loads the
artifact each routed version pins, splits requests by the weights and polls the alias every `interval_s`.

Why a switch drops nothing: the new routing's predictors are loaded first, on the poll thread, while the old
routing keeps serving; then one reference is replaced. A request takes the routing current when it starts and
finishes on it, so a request in flight ends on the old predictor. A routing that cannot be loaded (artifact
missing, a version that pins no model) is reported and the old one keeps serving; the next poll tries again.

Why the split is deterministic: each request goes to the version furthest behind its share (smooth weighted
round robin), so a 10% canary answers exactly every tenth request of a worker. Lambda splits at random per
invocation; exact shares make local runs and their tests reproducible.

Workers: the follower is built in each worker after the fork (cnai.local.server.serve_forever calls the factory
there), so each worker polls on its own; for up to one interval two workers may serve different routings, as
two Lambda execution environments do during a switch.

Reading the alias (AliasRef, read_routing) is cnai.serving.live's, shared with the predict Lambda's GET route.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cnai.audit.trail import Auditor, now_iso, sink_from_uri
from cnai.errors import CnaiError
from cnai.model.predictor import Predictor
from cnai.serving.api import PREDICT_PATH, PredictApi, ServingOptions
from cnai.serving.backends import LocalBackend
from cnai.serving.live import URI_VARIABLE as URI_VARIABLE  # re-exported: the follower's names, tests use them
from cnai.serving.live import AliasRef as AliasRef
from cnai.serving.live import FollowError as FollowError
from cnai.serving.live import Routing, read_routing
from cnai.serving.schema import AliasRouting, RoutedVersion
from cnai.serving.service import Limits, ModelService
from cnai.settings import ModelSource


@dataclass
class Served:
    """One routing, loaded: an API per routed version (stable first) and the state of the split."""

    routing: Routing
    apis: tuple[PredictApi, ...]
    view: AliasRouting
    _credit: list[float] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def pick(self) -> PredictApi:
        """The version furthest behind its share answers (smooth weighted round robin)."""
        if len(self.apis) == 1:
            return self.apis[0]
        with self._lock:
            if not self._credit:
                self._credit = [0.0] * len(self.apis)
            for i, route in enumerate(self.routing.routes):
                self._credit[i] += route.weight
            chosen = max(range(len(self.apis)), key=lambda i: self._credit[i])
            self._credit[chosen] -= sum(r.weight for r in self.routing.routes)
            return self.apis[chosen]


class AliasFollower:
    """What `cnai serve --follow` serves (an EventHandler of cnai.serving.asgi): the alias's versions, each
    through the predict API itself, one audit chain for all of them (the record names the version that
    answered: its model version and registry version)."""

    def __init__(
        self,
        ref: AliasRef,
        options: ServingOptions,
        *,
        lambda_client: Any = None,
        interval_s: float = 5.0,
        report: Callable[[str], None] | None = None,
    ) -> None:
        if interval_s <= 0:
            raise FollowError(f"follow interval {interval_s}: must be > 0 seconds")
        if lambda_client is None:
            import boto3

            lambda_client = boto3.client("lambda")
        self.ref, self.options, self.lambda_ = ref, options, lambda_client
        self.interval_s = interval_s
        self.report = report or _to_stderr
        self.auditor = Auditor(sink_from_uri(options.audit_sink), store_text=options.audit_store_text)
        self.limits = Limits(
            max_inputs=options.max_inputs,
            max_input_chars=options.max_input_chars,
            max_explain_inputs=options.max_explain_inputs,
            max_explain_words=options.max_explain_words,
        )
        self.switches = 0
        self._sources: dict[str, ModelSource] = {}
        self._predictors: dict[tuple[str, str | None], Predictor] = {}
        self._apis: dict[tuple[str, str | None, str | None], PredictApi] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        routing = read_routing(self.lambda_, ref, self._sources)
        self.name = options.model_name or routing.routes[0].source.model_name
        self.served = self._load(routing)  # a server that cannot serve the alias does not start
        self.report(f"following {ref}: {routing.describe()}")

    # -- loading and switching --

    def _api(self, source: ModelSource) -> PredictApi:
        key = (source.model_uri, source.model_version_id, source.model_package_version)
        api = self._apis.get(key)
        if api is not None:
            return api
        artifact = (source.model_uri, source.model_version_id)
        predictor = self._predictors.get(artifact)
        if predictor is None:
            try:
                predictor = Predictor.from_uri(
                    source.model_uri, source.model_version_id, threads=self.options.threads,
                    cache_size=self.options.cache_size,
                )  # fmt: skip
            except CnaiError as exc:
                raise FollowError(f"{self.ref}: the model at {source.model_uri} does not load ({exc})") from exc
        if not self.name:  # neither --name nor the version's environment names the route: the model card does
            self.name = predictor.name
        backend = LocalBackend(predictor, self.name, source.model_package_version)
        api = PredictApi(ModelService({self.name: backend}, self.limits), self.auditor, routing=self._routing_of)
        self._predictors[artifact], self._apis[key] = predictor, api
        return api

    def _load(self, routing: Routing) -> Served:
        apis = tuple(self._api(route.source) for route in routing.routes)
        versions = [
            RoutedVersion(
                function_version=route.function_version,
                version=api.service.get(self.name).identity.version,
                package_version=route.source.model_package_version,
                weight=round(route.weight, 6),
            )
            for route, api in zip(routing.routes, apis, strict=True)
        ]
        view = AliasRouting(
            function=self.ref.function, alias=self.ref.alias, stable=versions[0],
            canary=versions[1] if len(versions) > 1 else None, since=now_iso(),
        )  # fmt: skip
        return Served(routing, apis, view)

    def poll(self) -> bool:
        """Read the alias; on a change load the new routing, then swap it in. True when it switched."""
        routing = read_routing(self.lambda_, self.ref, self._sources)
        if routing == self.served.routing:
            return False
        served = self._load(routing)  # may raise: the old routing keeps serving
        self.served = served  # the switch: one reference; requests in flight keep the one they took
        self.switches += 1
        keep = {(r.source.model_uri, r.source.model_version_id, r.source.model_package_version) for r in routing.routes}
        for key in [k for k in self._apis if k not in keep]:  # versions no longer routed: freed once idle
            del self._apis[key]
        for artifact in [a for a in self._predictors if a not in {k[:2] for k in keep}]:
            del self._predictors[artifact]
        self.report(f"{self.ref} moved: {routing.describe()}")
        return True

    def start(self) -> AliasFollower:
        """Poll on a daemon thread until close()."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._watch, name=f"cnai-follow-{self.ref.alias}", daemon=True)
            self._thread.start()
        return self

    def _watch(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.poll()
            except Exception as exc:  # the alias or an artifact is unreachable for now: keep serving, retry
                self.report(f"{self.ref}: still serving {self.served.routing.describe()}; {exc}")

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.interval_s + 30)

    def _routing_of(self, name: str) -> AliasRouting | None:
        return self.served.view if name == self.name else None

    # -- the EventHandler of cnai.serving.asgi --

    def handle(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        """A predict call goes to the version the split picks; every other route is the stable version's."""
        served = self.served  # taken once: this request finishes on this routing, whatever a poll swaps in
        is_predict = event.get("httpMethod") == "POST" and PREDICT_PATH.match(str(event.get("path", "")))
        api = served.pick() if is_predict else served.apis[0]
        return api.handle(event, context)

    def refuse(
        self,
        event: dict[str, Any],
        status: Any,
        code: str,
        message: str,
        fields: list[dict[str, str]] | None = None,
    ) -> dict[str, Any]:
        """A call stopped before routing is refused (and audited) under the stable version."""
        return self.served.apis[0].refuse(event, status, code, message, fields)


def _to_stderr(line: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {line}", file=sys.stderr, flush=True)


def follow_forever(
    ref: AliasRef,
    options: ServingOptions,
    *,
    interval_s: float = 5.0,
    host: str = "127.0.0.1",
    port: int = 8080,
    workers: int = 1,
    ready: Callable[[Any], None] | None = None,
    **limits: Any,
) -> None:
    """Serve the alias with `workers` processes (cnai.local.server.serve_forever), each following it on its own.
    `limits`: max_body, body_timeout_s."""
    from cnai.local.server import serve_forever

    def factory() -> AliasFollower:
        return AliasFollower(ref, options, interval_s=interval_s).start()

    serve_forever(factory, host, port, workers, ready, **limits)
