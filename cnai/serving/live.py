"""What serves, as AWS says it: the Lambda alias's routing and the registry's record of the served version.

Two readers share this module. `cnai serve --follow` (cnai.local.alias) reads the alias to decide what to load;
the predict Lambda (functions/predict) reads its own alias and the model package it serves to answer
GET /v1/models/{model} with the canary state and the approval. Only that GET route calls here (never predict),
lazily, and each answer is kept `ttl_s` seconds per process: a page of GETs costs at most one GetAlias and one
DescribeModelPackage per TTL, and a package approved or rejected shows up within one TTL.

Why errors are answered, not raised: the detail route describes the model this process serves, which it knows
without AWS; a registry or Lambda API failure (throttling, a missing permission) leaves that answer whole and
adds a `registry_error` / `routing_error` string saying what could not be read.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from datetime import UTC
from typing import Any, Generic, TypeVar

from cnai.audit.trail import now_iso
from cnai.errors import CnaiError
from cnai.serving.schema import AliasRouting, ModelDetail, RegistryEntry, RoutedVersion
from cnai.settings import ModelSource, load_env, variable

ALIAS_NAME = re.compile(r"^[a-zA-Z][a-zA-Z0-9_-]{0,127}$")  # Lambda's alias name rule (a version is all digits)
URI_VARIABLE = variable(ModelSource, "model_uri")
TTL_S = 60.0

T = TypeVar("T")


class FollowError(CnaiError):
    """The alias cannot be followed: no such alias, a version that pins no model, an artifact that fails to load."""


@dataclass(frozen=True)
class AliasRef:
    """The alias to follow: a function (name or ARN) and an alias name."""

    function: str
    alias: str = "live"

    @classmethod
    def parse(cls, text: str) -> AliasRef:
        """`FUNCTION[:ALIAS]`, FUNCTION a name or an unqualified ARN; a qualified ARN's qualifier is the alias."""
        text = text.strip()
        if text.startswith("arn:"):
            parts = text.split(":")
            if len(parts) not in (7, 8) or parts[5] != "function":
                raise FollowError(
                    f"--follow {text!r}: not a Lambda function ARN (arn:aws:lambda:REGION:ACCOUNT:function:NAME)"
                )
            ref = cls(":".join(parts[:7]), parts[7] if len(parts) == 8 else "live")
        else:
            function, _, alias = text.partition(":")
            ref = cls(function, alias or "live")
        if not ref.function:
            raise FollowError(f"--follow {text!r}: name the predict function (FUNCTION[:ALIAS])")
        if not ALIAS_NAME.match(ref.alias):
            raise FollowError(f"--follow {text!r}: {ref.alias!r} is not an alias name (a version cannot be followed)")
        return ref

    def __str__(self) -> str:
        return f"{self.function}:{self.alias}"


@dataclass(frozen=True)
class Route:
    """One function version of the alias, its share of requests and the model its environment pins."""

    function_version: str
    weight: float
    source: ModelSource


@dataclass(frozen=True)
class Routing:
    """The alias as GetAlias answers it: the stable version first, then the canary (weighted) versions."""

    ref: AliasRef
    routes: tuple[Route, ...]

    def describe(self) -> str:
        return ", ".join(
            f"version {r.function_version} (registry {r.source.model_package_version or '-'}) {r.weight:.0%}"
            for r in self.routes
        )


def read_routing(lambda_client: Any, ref: AliasRef, sources: dict[str, ModelSource] | None = None) -> Routing:
    """The alias's routing and what each routed version pins. `sources` caches the environments of published
    versions (immutable, so read once); `$LATEST` is read every time."""
    from botocore.exceptions import BotoCoreError, ClientError

    cache = {} if sources is None else sources
    try:
        alias = lambda_client.get_alias(FunctionName=ref.function, Name=ref.alias)
        stable = str(alias["FunctionVersion"])
        extra = (alias.get("RoutingConfig") or {}).get("AdditionalVersionWeights") or {}
        shares = {str(version): float(weight) for version, weight in extra.items()}
        versions = [(stable, max(0.0, 1.0 - sum(shares.values()))), *sorted(shares.items())]
        routes = []
        for version, weight in versions:
            source = cache.get(version)
            if source is None:
                config = lambda_client.get_function_configuration(FunctionName=ref.function, Qualifier=version)
                variables = (config.get("Environment") or {}).get("Variables") or {}
                source = load_env(ModelSource, f"{ref.function} version {version}'s environment", variables)
                if version != "$LATEST":
                    cache[version] = source
            if not source.model_uri:
                raise FollowError(f"{ref} routes to version {version}, whose {URI_VARIABLE} is empty: it pins no model")
            routes.append(Route(version, weight, source))
    except (ClientError, BotoCoreError) as exc:
        raise FollowError(f"{ref}: cannot read the alias's routing ({exc})") from None
    routed = {r.function_version for r in routes}
    for version in [v for v in cache if v not in routed]:  # bounded by what the alias routes to now
        del cache[version]
    return Routing(ref, tuple(routes))


class TtlCache(Generic[T]):
    """Values kept `ttl_s` seconds per key (errors too: a failing API is not called on every GET)."""

    def __init__(self, ttl_s: float = TTL_S, clock: Callable[[], float] = time.monotonic) -> None:
        if ttl_s < 0:
            raise ValueError(f"ttl_s {ttl_s}: must be >= 0 seconds")
        self.ttl_s, self.clock = ttl_s, clock
        self._items: dict[Hashable, tuple[float, T]] = {}
        self._lock = threading.Lock()

    def get(self, key: Hashable, load: Callable[[], T]) -> T:
        now = self.clock()
        with self._lock:
            hit = self._items.get(key)
        if hit is not None and now < hit[0]:
            return hit[1]
        value = load()
        with self._lock:
            # expired entries go on every write: a warm container that lives through many deploys would otherwise
            # keep one entry per registry version it was ever asked about
            for stale in [k for k, (expires, _) in self._items.items() if expires <= now]:
                del self._items[stale]
            self._items[key] = (now + self.ttl_s, value)
        return value

    def __len__(self) -> int:
        return len(self._items)


def package_arn(function_arn: str, region: str, group: str, version: str) -> str:
    """A model package version's ARN, in the function's partition and account (SageMaker lower-cases names)."""
    parts = function_arn.split(":")
    if len(parts) < 7 or parts[2] != "lambda":
        raise ValueError(f"{function_arn!r} is not a Lambda function ARN")
    return f"arn:{parts[1]}:sagemaker:{region}:{parts[4]}:model-package/{group.lower()}/{version}"


def registry_entry(sagemaker: Any, arn: str) -> RegistryEntry:
    """DescribeModelPackage, reduced to what the detail route shows. Raises CnaiError (RegistryError)."""
    from cnai.registry.packages import RegistryError

    try:
        d = sagemaker.describe_model_package(ModelPackageName=arn)
    except Exception as exc:  # botocore's ClientError / BotoCoreError: answered as registry_error
        raise RegistryError(f"{arn}: {exc}") from None
    created = d.get("CreationTime")
    return RegistryEntry(
        group=str(d.get("ModelPackageGroupName", "")),
        version=str(d.get("ModelPackageVersion", "")),
        approval=d.get("ModelApprovalStatus", "PendingManualApproval"),
        approval_description=d.get("ApprovalDescription") or None,
        registered_at=created.astimezone(UTC).isoformat().replace("+00:00", "Z") if created else None,
    )


class LiveStatus:
    """The predict Lambda's view of itself for GET /v1/models/{model}: its alias's routing and the registry
    record of the package version it serves, each read on demand and cached `ttl_s` seconds.

    `bind(context)` (each invocation, cheap: a string split) takes the function ARN and the alias from the
    Lambda context: invoked through `live`, the ARN's qualifier is the alias; invoked unqualified or by
    version number, there is no alias to describe and `routing` stays null."""

    def __init__(
        self,
        *,
        package_group: str = "",
        lambda_client: Any = None,
        sagemaker_client: Any = None,
        ttl_s: float = TTL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.package_group = package_group
        self._lambda, self._sagemaker = lambda_client, sagemaker_client
        self.function_arn = ""
        self.alias: str | None = None
        self._routing: TtlCache[tuple[AliasRouting | None, str | None]] = TtlCache(ttl_s, clock)
        self._registry: TtlCache[tuple[RegistryEntry | None, str | None]] = TtlCache(ttl_s, clock)
        self._sources: dict[str, ModelSource] = {}
        # the routing last seen and since when it holds (a routing seen again after another starts a new "since")
        self._since: tuple[tuple[tuple[str, float], ...], str] | None = None

    def bind(self, context: Any) -> None:
        arn = str(getattr(context, "invoked_function_arn", "") or "")
        parts = arn.split(":")
        if len(parts) < 7 or parts[2] != "lambda":
            return
        self.function_arn = ":".join(parts[:7])
        qualifier = parts[7] if len(parts) == 8 else None
        self.alias = qualifier if qualifier and ALIAS_NAME.match(qualifier) else None

    # -- clients, created on the first GET that needs them (never at init: no cold-start cost) --

    def _lambda_client(self) -> Any:
        if self._lambda is None:
            import boto3

            self._lambda = boto3.client("lambda")
        return self._lambda

    def _sagemaker_client(self) -> Any:
        if self._sagemaker is None:
            import boto3

            self._sagemaker = boto3.client("sagemaker")
        return self._sagemaker

    # -- the two reads --

    def routing(self, detail: ModelDetail) -> tuple[AliasRouting | None, str | None]:
        """(routing, None), (None, problem), or (None, None) when not invoked through an alias."""
        if not self.function_arn or self.alias is None:
            return None, None
        ref = AliasRef(self.function_arn, self.alias)
        return self._routing.get((ref, detail.name), lambda: self._read_routing(ref, detail))

    def _read_routing(self, ref: AliasRef, detail: ModelDetail) -> tuple[AliasRouting | None, str | None]:
        try:
            routing = read_routing(self._lambda_client(), ref, self._sources)
        except CnaiError as exc:
            return None, str(exc)
        key = tuple((r.function_version, round(r.weight, 6)) for r in routing.routes)
        if self._since is None or self._since[0] != key:
            self._since = (key, now_iso())
        since = self._since[1]
        versions = [
            RoutedVersion(
                function_version=r.function_version,
                # only this process's own artifact is known here: the other version's card is not loaded
                version=detail.version if r.source.model_package_version == detail.package_version else None,
                package_version=r.source.model_package_version,
                weight=round(r.weight, 6),
            )
            for r in routing.routes
        ]
        view = AliasRouting(
            function=ref.function, alias=ref.alias, stable=versions[0],
            canary=versions[1] if len(versions) > 1 else None, since=since,
        )  # fmt: skip
        return view, None

    def registry(self, detail: ModelDetail) -> tuple[RegistryEntry | None, str | None]:
        """(entry, None), (None, problem), or (None, None) when the model has no package version or group."""
        version = detail.package_version
        if not version or not self.package_group or not self.function_arn:
            return None, None
        return self._registry.get((self.package_group, version), lambda: self._read_registry(version))

    def _read_registry(self, version: str) -> tuple[RegistryEntry | None, str | None]:
        try:
            client = self._sagemaker_client()
            region = str(client.meta.region_name)
            return registry_entry(client, package_arn(self.function_arn, region, self.package_group, version)), None
        except (CnaiError, ValueError) as exc:
            return None, str(exc)

    def describe(self, detail: ModelDetail) -> ModelDetail:
        """The detail with what AWS says added: routing and registry, or the error strings."""
        routing, routing_error = self.routing(detail)
        entry, registry_error = self.registry(detail)
        return detail.model_copy(
            update={
                "routing": routing or detail.routing,
                "routing_error": routing_error,
                "registry": entry,
                "registry_error": registry_error,
            }
        )
