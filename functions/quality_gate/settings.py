"""QualityGate's environment, validated once at cold start (a bad value names the variable)."""

from __future__ import annotations

from pydantic import Field

from cnai.registry.packages import GROUP_PREFIX
from cnai.settings import ArtifactStore, EnvSettings


class QualityGateSettings(ArtifactStore, EnvSettings):
    WHAT = "quality_gate function environment"

    # The evaluation report goes to s3://<artifact bucket>/<reports prefix>/<job name>/evaluation.json
    reports_prefix: str = Field("evaluations", alias="CNAI_REPORTS_PREFIX", pattern=r"^[A-Za-z0-9_\-/]+$")
    group_prefix: str = Field(alias="CNAI_MODEL_PACKAGE_GROUP_PREFIX", pattern=GROUP_PREFIX)
