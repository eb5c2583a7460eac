"""Notify's environment, validated once at cold start (a bad value names the variable)."""

from __future__ import annotations

from pydantic import Field

from cnai.settings import EnvSettings


class NotifySettings(EnvSettings):
    WHAT = "notify function environment"

    topic_arn: str = Field(
        alias="CNAI_TOPIC_ARN", pattern=r"^arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,256}$"
    )
