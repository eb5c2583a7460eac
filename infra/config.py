"""Typed deployment settings. Read from CDK context (cdk.json / -c key=value) with the defaults below,
so `python app.py` synthesizes with no AWS account, no credentials and no git."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

CONTEXT_PREFIX = "cnai:"


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    stage: str = Field("dev", pattern=r"^[a-z][a-z0-9-]{1,15}$")
    project: str = Field("cnai", pattern=r"^[a-z][a-z0-9-]{1,15}$")

    @property
    def prefix(self) -> str:
        return f"{self.project}-{self.stage}"


def settings_from_context(get: Any) -> Settings:
    """Collect `cnai:<field>` context values (get = app.node.try_get_context)."""
    values = {name: get(CONTEXT_PREFIX + name) for name in Settings.model_fields}
    return Settings.model_validate({k: v for k, v in values.items() if v is not None})
