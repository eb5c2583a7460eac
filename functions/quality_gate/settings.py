"""QualityGate's environment, validated once at cold start (a bad value names the variable)."""

from __future__ import annotations

from pydantic import Field

from cnai.registry.packages import PackageGroupPrefix
from cnai.settings import ArtifactStore, EnvSettings


class QualityGateSettings(PackageGroupPrefix, ArtifactStore, EnvSettings):
    WHAT = "quality_gate function environment"

    # The evaluation report goes to s3://<artifact bucket>/<reports prefix>/<job name>/evaluation.json
    reports_prefix: str = Field("evaluations", alias="CNAI_REPORTS_PREFIX", pattern=r"^[A-Za-z0-9_\-/]+$")
