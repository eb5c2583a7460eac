"""Where a served model comes from: a local directory, an S3 prefix of an unpacked artifact, or an S3
model.tar.gz (optionally pinned to an S3 object version).

Remote artifacts are fetched once into a cache under /tmp (the only writable place in Lambda) and every
file is checked against the sha256 listed in model_card.json before the predictor sees it. A download
lands in a fresh temporary directory and is renamed into place only after it verifies, so a crash
mid-download, a truncated object or a tampered file never becomes a cached artifact that gets served.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnai.errors import ArtifactError
from cnai.model.artifact import CARD_FILE, PAYLOAD_FILES, Artifact, load_artifact


def default_cache() -> Path:
    """CNAI_MODEL_CACHE, else /tmp/cnai-models (Lambda's only writable place), read at call time."""
    return Path(os.environ.get("CNAI_MODEL_CACHE") or Path(tempfile.gettempdir()) / "cnai-models")


ARTIFACT_FILES = frozenset((*PAYLOAD_FILES, CARD_FILE))


@dataclass(frozen=True)
class ModelSource:
    """A parsed model URI. `version_id` pins the S3 object version of a tarball (ignored for prefixes)."""

    uri: str
    version_id: str | None = None
    etag: str | None = None  # the object's current ETag when no version is pinned: what the cache is keyed on

    @property
    def is_s3(self) -> bool:
        return self.uri.startswith("s3://")

    @property
    def is_tarball(self) -> bool:
        return self.uri.endswith((".tar.gz", ".tgz"))

    def bucket_key(self) -> tuple[str, str]:
        rest = self.uri.removeprefix("s3://")
        bucket, _, key = rest.partition("/")
        if not bucket:
            raise ArtifactError(f"{self.uri}: an S3 model URI needs a bucket (s3://bucket/prefix/)")
        return bucket, key

    def cache_key(self) -> str:
        """Same URI + same pinned version (or, unpinned, same ETag) -> same cache directory; anything else gets
        its own. Without the ETag a new model written over the same key would be answered from the old copy."""
        return hashlib.sha256(f"{self.uri}\0{self.version_id or ''}\0{self.etag or ''}".encode()).hexdigest()[:24]


def fetch_artifact(
    uri: str | Path,
    version_id: str | None = None,
    cache_dir: Path | None = None,
    s3_client: Any = None,
) -> Artifact:
    """A verified artifact on local disk. Raises ArtifactError (naming the file and problem) otherwise."""
    source = ModelSource(str(uri), version_id or None)
    if not source.is_s3:
        local = Path(source.uri).expanduser()
        if local.is_file() and source.is_tarball:
            return _from_cache_or(source, cache_dir, lambda target: _extract(local, target))
        return load_artifact(local)
    client = s3_client or _s3_client()
    bucket, key = source.bucket_key()
    if source.version_id is None:
        # Unpinned: key the cache on what the object is now (a tarball, or the card that lists every file's
        # sha256 for a prefix); a versioned bucket also gives the version, which then pins the download.
        probe = key if source.is_tarball else (key if key.endswith("/") or not key else key + "/") + CARD_FILE
        head: dict[str, Any] = {}
        _s3_call(source, lambda: head.update(client.head_object(Bucket=bucket, Key=probe)))
        pinned = head.get("VersionId") if source.is_tarball and head.get("VersionId") not in (None, "null") else None
        source = ModelSource(source.uri, pinned, str(head.get("ETag", "")).strip('"') or None)
    if source.is_tarball:

        def download(target: Path) -> None:
            tar = target / "model.tar.gz"
            extra = {"VersionId": source.version_id} if source.version_id else None
            _s3_call(source, lambda: client.download_file(bucket, key, str(tar), ExtraArgs=extra))
            _extract(tar, target)
            tar.unlink()

        return _from_cache_or(source, cache_dir, download)

    def download_prefix(target: Path) -> None:
        prefix = key if key.endswith("/") or not key else key + "/"
        for name in sorted(ARTIFACT_FILES):
            _s3_call(source, lambda name=name: client.download_file(bucket, prefix + name, str(target / name)))

    return _from_cache_or(source, cache_dir, download_prefix)


def _from_cache_or(source: ModelSource, cache_dir: Path | None, fill: Any) -> Artifact:
    root = (cache_dir or default_cache()).expanduser()
    final = root / source.cache_key()
    if final.is_dir():
        try:
            return load_artifact(final)  # re-verified: /tmp outlives invocations and could be damaged
        except ArtifactError:
            shutil.rmtree(final, ignore_errors=True)
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".fetch-", dir=root))
    try:
        fill(staging)
        load_artifact(staging)  # refuse before it is cached
        try:
            staging.rename(final)
        except OSError:  # another process won the race; its copy verified too
            shutil.rmtree(staging, ignore_errors=True)
        return load_artifact(final)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def _extract(tar_path: Path, target: Path) -> None:
    """Extract only the artifact's own files, flat, refusing links, directories outside and surprises."""
    try:
        with tarfile.open(tar_path, "r:*") as tar:
            found = set()
            for member in tar.getmembers():
                name = member.name.removeprefix("./")
                if name not in ARTIFACT_FILES:
                    continue  # e.g. code/inference.py of a SageMaker package: not ours to serve
                if not member.isfile():
                    raise ArtifactError(f"{tar_path}: {name} is not a regular file in the archive")
                handle = tar.extractfile(member)
                if handle is None:  # pragma: no cover - isfile() members always have data
                    raise ArtifactError(f"{tar_path}: {name} cannot be read")
                with handle, (target / name).open("wb") as out:
                    shutil.copyfileobj(handle, out)
                found.add(name)
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise ArtifactError(f"{tar_path}: not a readable model.tar.gz ({exc})") from None
    missing = sorted(ARTIFACT_FILES - found)
    if missing:
        raise ArtifactError(f"{tar_path}: the archive lacks {', '.join(missing)} (partial upload?)")


def _s3_call(source: ModelSource, call: Any) -> None:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        call()
    except ClientError as exc:
        error = exc.response.get("Error", {})
        raise ArtifactError(
            f"{source.uri}: S3 refused the download ({error.get('Code')}: {error.get('Message')})"
        ) from None
    except BotoCoreError as exc:
        raise ArtifactError(f"{source.uri}: S3 download failed ({exc})") from None


def _s3_client() -> Any:
    import boto3

    return boto3.client("s3")
