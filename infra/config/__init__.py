"""Typed deployment settings grouped by concern, read from CDK context (cdk.json / `-c key=value`) with the
defaults in `infra/config/groups.py`, so `python app.py` synthesizes with no AWS account, no credentials and no git.

Context keys mirror the model: `cnai:stage`, `cnai:project`, one key per setting `cnai:<group>.<field>`
(`cnai:serving.memory_mb=4096`, `cnai:serving.endpoint.route=true`), or a whole group as one JSON object
(`"cnai:training": {"spot": false}` in cdk.json). A leaf key wins over its group's object. A `cnai:` key that
names no setting fails the synth with the nearest valid key: a typo must not deploy a default silently.

Stages: `cnai:stages` in cdk.json holds one typed profile per stage (`{"prod": {"audit": {"lock_mode":
"COMPLIANCE"}, ...}}`, validated against the same model); `cdk synth -c stage=prod` (or `-c cnai:stage=prod`)
selects one. Precedence, lowest first: the defaults, the stage's profile, `cnai:<group>` objects, leaf keys. So
two stages differ only by configuration, and a stage without a profile is refused (a typo such as `prdo` must
not deploy dev's settings under a production name).
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterator, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from infra.config.groups import (
    ApiSettings,
    AuditSettings,
    DeploySettings,
    DriftSettings,
    EndpointSettings,
    GeneratorSettings,
    IngestionSettings,
    MonitoringSettings,
    ServingSettings,
    TrainingSettings,
)

__all__ = [
    "CONTEXT_PREFIX",
    "ApiSettings",
    "AuditSettings",
    "ContextError",
    "DeploySettings",
    "DriftSettings",
    "EndpointSettings",
    "GeneratorSettings",
    "IngestionSettings",
    "MonitoringSettings",
    "ServingSettings",
    "Settings",
    "TrainingSettings",
    "context_keys",
    "settings_from_context",
]

CONTEXT_PREFIX = "cnai:"
STAGES_KEY = "cnai:stages"  # {stage: profile}: not a setting itself, the source of each stage's values
STAGE_SHORTHAND = "stage"  # `cdk synth -c stage=prod`


class Settings(BaseModel):
    """One deployment (`<project>-<stage>`): the groups each stack reads."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    stage: str = Field("dev", pattern=r"^[a-z][a-z0-9-]{1,15}$")
    project: str = Field("cnai", pattern=r"^[a-z][a-z0-9-]{1,15}$")
    ingestion: IngestionSettings = Field(default_factory=IngestionSettings)
    serving: ServingSettings = Field(default_factory=ServingSettings)
    audit: AuditSettings = Field(default_factory=AuditSettings)
    api: ApiSettings = Field(default_factory=ApiSettings)
    monitoring: MonitoringSettings = Field(default_factory=MonitoringSettings)
    drift: DriftSettings = Field(default_factory=DriftSettings)
    training: TrainingSettings = Field(default_factory=TrainingSettings)
    deploy: DeploySettings = Field(default_factory=DeploySettings)

    @property
    def prefix(self) -> str:
        return f"{self.project}-{self.stage}"

    def package_group(self, model: str) -> str:
        """The SageMaker ModelPackageGroup of `model` in this deployment (one group per model)."""
        if model not in self.training.models:
            raise ValueError(f"model {model!r} is not in training.models ({', '.join(self.training.models)})")
        return f"{self.prefix}-{model}"


class ContextError(ValueError):
    """CDK context names an unknown setting or holds a bad value; the message names each `cnai:` key."""


def _paths(model: type[BaseModel], parent: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], bool]]:
    for name, field in model.model_fields.items():
        path = (*parent, name)
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            yield path, True
            yield from _paths(annotation, path)
        else:
            yield path, False


def context_keys() -> dict[str, tuple[tuple[str, ...], bool]]:
    """Every accepted context key -> (its path in Settings, whether it is a whole group)."""
    return {CONTEXT_PREFIX + ".".join(path): (path, group) for path, group in _paths(Settings)}


def _merge(target: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    for part in path[:-1]:
        target = target.setdefault(part, {})
    last = path[-1]
    if isinstance(value, dict) and isinstance(target.get(last), dict):
        for key, inner in value.items():
            _merge(target[last], (key,), inner)
    else:
        target[last] = value


def _key(loc: tuple[int | str, ...]) -> str:
    return CONTEXT_PREFIX + ".".join(str(part) for part in loc) if loc else "cnai context"


def settings_from_context(context: Mapping[str, Any]) -> Settings:
    """Settings from CDK context (`app.node.get_all_context()`); other keys than `cnai:` ones are ignored.

    Raises ContextError naming every unknown `cnai:` key (with the nearest valid one) or bad value.
    """
    known = context_keys()
    unknown = sorted(k for k in context if k.startswith(CONTEXT_PREFIX) and k not in known and k != STAGES_KEY)
    if unknown:
        hints = []
        for key in unknown:
            near = difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
            hints.append(f"{key} (did you mean {near[0]}?)" if near else key)
        raise ContextError(f"unknown CDK context setting: {'; '.join(hints)}; see docs/configuration.md")
    stage, values = _stage_profile(context)
    if stage is not None:
        values["stage"] = stage
    # Groups first, then leaves, shallow before deep: the most specific key wins.
    for key, (path, group) in sorted(known.items(), key=lambda item: (len(item[1][0]), not item[1][1])):
        value = context.get(key)
        if value is None:
            continue
        if group:
            if isinstance(value, str):
                try:
                    value = json.loads(value)
                except json.JSONDecodeError as exc:
                    raise ContextError(f"{key}: not JSON ({exc.msg}); expected an object of its settings") from None
            if not isinstance(value, dict):
                raise ContextError(f"{key}: expected an object of its settings, got {type(value).__name__}")
        _merge(values, path, value)
    try:
        return Settings.model_validate(values)
    except ValidationError as exc:
        problems = [f"{_key(e['loc'])}: {e['msg'].removeprefix('Value error, ')}" for e in exc.errors()]
        raise ContextError("; ".join(problems)) from None


def _stage_profile(context: Mapping[str, Any]) -> tuple[str | None, dict[str, Any]]:
    """(the selected stage, a copy of its profile) from `stage` / `cnai:stage` and `cnai:stages`."""
    shorthand, explicit = context.get(STAGE_SHORTHAND), context.get(CONTEXT_PREFIX + "stage")
    if shorthand is not None and explicit is not None and shorthand != explicit:
        raise ContextError(f"stage={shorthand} and cnai:stage={explicit} disagree: give one of them")
    stage = shorthand if shorthand is not None else explicit
    profiles = context.get(STAGES_KEY)
    if profiles is None:
        return (None if stage is None else str(stage)), {}
    if isinstance(profiles, str):
        try:
            profiles = json.loads(profiles)
        except json.JSONDecodeError as exc:
            raise ContextError(f"{STAGES_KEY}: not JSON ({exc.msg}); expected {{stage: profile}}") from None
    if not isinstance(profiles, dict) or not all(isinstance(p, dict) for p in profiles.values()):
        raise ContextError(f"{STAGES_KEY}: expected an object of stage -> object of settings")
    stage = str(stage if stage is not None else Settings.model_fields["stage"].default)
    if stage not in profiles:
        raise ContextError(
            f"stage {stage!r} has no profile in {STAGES_KEY} ({', '.join(sorted(profiles))}): add one to cdk.json"
        )
    profile = json.loads(json.dumps(profiles[stage]))  # a deep copy: merging must not change the context
    if "stage" in profile or "project" in profile:
        raise ContextError(f"{STAGES_KEY}.{stage}: a profile sets groups of settings, not stage or project")
    try:
        Settings.model_validate({**profile, "stage": stage})
    except ValidationError as exc:
        where = f"{STAGES_KEY}.{stage}"
        problems = [
            f"{where}.{'.'.join(map(str, e['loc']))}: {e['msg'].removeprefix('Value error, ')}" for e in exc.errors()
        ]
        raise ContextError("; ".join(problems)) from None
    return stage, profile
