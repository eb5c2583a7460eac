"""PrepareDataset's environment (the lake, the job-name prefix, the Athena switch), validated at cold start.

infra builds the function's environment from this model (cnai.settings.environment_for)."""

from __future__ import annotations

from pydantic import Field, model_validator

from cnai.pipeline.prepare import Limits
from cnai.settings import EnvSettings, Lake


class PrepareSettings(Lake, EnvSettings):
    WHAT = "prepare_dataset function environment"

    job_prefix: str = Field(alias="CNAI_JOB_PREFIX", pattern=r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,39}$")
    datasets_prefix: str = Field("datasets", alias="CNAI_DATASETS_PREFIX", pattern=r"^[A-Za-z0-9_\-/]+$")
    # Where one Lambda stops and Athena takes over (cnai.pipeline.prepare.Limits: the measured figures behind
    # the defaults, sized for a 4 GB function).
    max_objects: int = Field(Limits.max_objects, alias="CNAI_SNAPSHOT_MAX_OBJECTS", ge=1)
    max_bytes: int = Field(Limits.max_bytes, alias="CNAI_SNAPSHOT_MAX_BYTES", ge=1)
    # Athena over the curated Glue table: all three or none (none: the local platform, Lambda path only).
    athena_workgroup: str | None = Field(None, alias="CNAI_ATHENA_WORKGROUP", pattern=r"^[A-Za-z0-9._-]{1,128}$")
    glue_database: str | None = Field(None, alias="CNAI_GLUE_DATABASE", pattern=r"^[a-z_][a-z0-9_]{0,254}$")
    glue_table: str | None = Field(None, alias="CNAI_GLUE_TABLE", pattern=r"^[a-z_][a-z0-9_]{0,254}$")

    @model_validator(mode="after")
    def _athena_whole(self) -> PrepareSettings:
        given = [self.athena_workgroup, self.glue_database, self.glue_table]
        if any(given) and not all(given):
            raise ValueError("CNAI_ATHENA_WORKGROUP, CNAI_GLUE_DATABASE and CNAI_GLUE_TABLE: set all three or none")
        return self
