"""Generated (synthetic) training rows: their schema, their provenance and their file, apart from real rows.

Why a file of their own: a model trained on text an LLM wrote must say so, row by row. Each generated row
names the generator that wrote it, the sha256 of the exact prompt (instructions, examples shown, sampling)
and the seed, so any row can be regenerated or traced back; the teacher's verdict on it is kept too. The
rows live in `generated.jsonl.gz` beside the real snapshot's `train.jsonl.gz` and are never written into
it: `read_labeled` refuses a row marked `"origin": "generated"` in a real-data file, so they cannot be
mixed in silently by pointing a channel at the wrong folder. The summary (`summarize`) is what the model
card's lineage records: how many were generated, why each rejected one was dropped, how many were kept.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import zlib
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from cnai.errors import DataError, describe

GENERATED_FILE = "generated.jsonl.gz"
SCHEMA = "cnai.generated/1"
ORIGIN = "generated"


class Provenance(BaseModel):
    """Who wrote a row and from what: enough to regenerate it with the same generator."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    generator: str = Field(min_length=1, description="the generator's identity (name and weights sha256)")
    prompt_sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="sha256 of the canonical prompt JSON")
    seed: int


class GeneratedRow(BaseModel):
    """One kept synthetic utterance. `label` is the intent it was written for; `train_label` what the
    student's hard-label term sees (the teacher's own label for a soft-labelled transfer example)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^gen-[0-9a-f]{16}$")
    origin: Literal["generated"] = "generated"
    text: str = Field(min_length=1)
    label: str = Field(min_length=1)
    train_label: str = Field(min_length=1)
    verdict: Literal["agrees", "soft"]
    teacher_confidence: float = Field(ge=0.0, le=1.0, description="teacher probability of `label`")
    provenance: Provenance


def row_id(provenance: Provenance, text: str) -> str:
    """Stable id: the same generator, prompt, seed and text always give the same id."""
    key = json.dumps([provenance.generator, provenance.prompt_sha256, provenance.seed, text], ensure_ascii=False)
    return "gen-" + hashlib.sha256(key.encode("utf-8")).hexdigest()[:16]


def encode_rows(rows: Sequence[GeneratedRow]) -> bytes:
    """JSON Lines, gzip with a fixed mtime: the same rows give the same bytes (and sha256) every time."""
    lines = "".join(json.dumps(r.model_dump(), ensure_ascii=False, sort_keys=True) + "\n" for r in rows)
    return gzip.compress(lines.encode("utf-8"), mtime=0)


def write_generated(path: Path, rows: Sequence[GeneratedRow]) -> str:
    """Write the rows atomically; return the file's sha256 (the lineage records it)."""
    data = encode_rows(rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
    return hashlib.sha256(data).hexdigest()


def read_generated(path: Path) -> tuple[list[GeneratedRow], str]:
    """The rows of a generated file and its sha256. DataError naming the file, line and field otherwise."""
    if not path.is_file():
        raise DataError(str(path), "file not found")
    raw = path.read_bytes()
    try:
        text = gzip.decompress(raw).decode("utf-8")
    except (OSError, EOFError, zlib.error, UnicodeDecodeError) as exc:  # zlib.error: corrupt deflate data
        raise DataError(str(path), f"not a gzip file of UTF-8 JSON Lines ({exc})") from None
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append(GeneratedRow.model_validate_json(line))
        except ValidationError as exc:
            raise DataError(str(path), describe(exc), number) from None
    ids = Counter(r.id for r in rows)
    repeated = [i for i, n in ids.items() if n > 1]
    if repeated:
        raise DataError(str(path), f"row id {repeated[0]!r} occurs {ids[repeated[0]]} times")
    return rows, hashlib.sha256(raw).hexdigest()


def summarize(
    rows: Iterable[GeneratedRow], generated: int, dropped: dict[str, int], sha256: str, generator: str
) -> dict[str, Any]:
    """What the model card's lineage says about the synthetic part of the training data."""
    kept = list(rows)
    verdicts = Counter(r.verdict for r in kept)
    return {
        "schema": SCHEMA,
        "file": GENERATED_FILE,
        "sha256": sha256,
        "generator": generator,
        "generated_texts": generated,
        "kept_texts": len(kept),
        "kept_agreeing": verdicts.get("agrees", 0),
        "kept_soft": verdicts.get("soft", 0),
        "dropped": dict(sorted(dropped.items())),
        "label_counts": dict(sorted(Counter(r.label for r in kept).items())),
    }
