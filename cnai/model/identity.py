"""One identity for a served model: the name routes use, the artifact's version, the registry's version.

Modelled on BentoML's `Tag(name, version)`. Before it, four loose "version" strings travelled separately
(the S3 object version that pins a tarball, the model card's content hash, the response's `version`, the
audit record's `model_version`) and each place picked one. Now the predict response, the audit record's
model fields, `GET /v1/models` and `GET /v1/models/{model}` all show one `ModelId`:

- `name`: what the API routes on (`/v1/models/{name}/predict`);
- `version`: the artifact's own version (the model card's, derived from its content), so two deployments of
  the same bytes report the same version wherever they were loaded from;
- `package_version`: the SageMaker Model Registry's package version once the model is registered
  (CNAI_MODEL_PACKAGE_VERSION in a deployment), else None.

The S3 object version that pins a tarball is where the bytes came from, not who the model is: it stays a
fetch option (cnai.model.fetch) and never appears as the model's version.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")


@dataclass(frozen=True, slots=True)
class ModelId:
    name: str
    version: str
    package_version: str | None = None

    def __str__(self) -> str:
        """`name:version`, plus `@package_version` when registered (as BentoML prints a Tag)."""
        text = f"{self.name}:{self.version}"
        return f"{text}@{self.package_version}" if self.package_version else text

    @classmethod
    def parse(cls, text: str) -> ModelId:
        """The inverse of str(): `name:version[@package_version]`. Raises ValueError naming the problem."""
        head, _, package = text.partition("@")
        name, sep, version = head.partition(":")
        if not sep or not version:
            raise ValueError(f"model id {text[:100]!r}: expected name:version[@package_version]")
        if not _NAME.match(name):
            raise ValueError(f"model id {text[:100]!r}: name must match {_NAME.pattern}")
        return cls(name, version, package or None)

    def renamed(self, name: str) -> ModelId:
        """The same model served under another route name (CNAI_MODEL_NAME / `cnai serve --name`)."""
        return ModelId(name, self.version, self.package_version)
