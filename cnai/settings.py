"""One loader for every Lambda function's environment: a pydantic model validated once at cold start.

A bad value stops the container at init with one line naming each variable and its problem, instead of
answering requests half-configured.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from cnai.errors import CnaiError, describe

M = TypeVar("M", bound=BaseModel)


class SettingsError(CnaiError):
    """The function's environment is wrong; the message names each variable and its problem."""


def load_env(model: type[M], what: str, env: Mapping[str, str] | None = None) -> M:
    """Validate the CNAI_* variables of `env` (default: os.environ) against `model`, whose fields carry the
    variable names as aliases (only CNAI_* are passed, so an unrelated variable named like a field never
    leaks in through populate_by_name)."""
    source = os.environ if env is None else env
    try:
        return model.model_validate({k: v for k, v in source.items() if k.startswith("CNAI_")})
    except ValidationError as exc:
        raise SettingsError(f"{what}: {describe(exc, whole='environment')}") from None
