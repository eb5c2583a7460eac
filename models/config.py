"""Hyperparameters and the SageMaker training contract, resolved the same way on SageMaker and a laptop.

Order (later wins): defaults < --profile < SM_HPS (SageMaker's JSON) < command-line flags. Paths come
from flags or the SM_* variables, so `python models/train.py` runs unchanged inside a training job.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from cnai.errors import CnaiError

PROFILES: dict[str, dict[str, Any]] = {
    # The default recipe: what `make bench-distill` runs on all of BANKING77.
    "default": {},
    # A few minutes on a laptop: enough to see the whole pipeline work, not to hit the accuracy targets.
    "quick": {
        "teacher_epochs": 2,
        "student_epochs": 3,
        "train_limit": 3000,
        "test_limit": 770,
        "latency_samples": 100,
    },
    # Seconds: tests. Tiny slices, one layer, few steps.
    "tiny": {
        "teacher_epochs": 2,
        "student_epochs": 3,
        "student_layers": 1,
        "batch_size": 16,
        "latency_samples": 10,
        "latency_batches": 2,
        "dev_fraction": 0.1,
        "checkpoint_every": 5,
    },
}


class HyperParameters(BaseModel):
    """Everything that changes the model. Recorded in the model card as lineage."""

    model_config = ConfigDict(extra="forbid")

    # data
    text_column: str = "text"
    label_column: str = "category"
    train_limit: int | None = Field(None, ge=1, description="stratified subset of train (None: all)")
    test_limit: int | None = Field(None, ge=1, description="stratified subset of test (None: all)")
    dev_fraction: float = Field(0.05, ge=0.0, lt=0.5, description="held out of train for calibration")
    seed: int = 42
    # teacher
    teacher: str = Field("default", description="hub id, local path, s3:// URI, or 'default' (offline MiniLM)")
    teacher_finetune: Literal["auto", "always", "never"] = "auto"
    teacher_epochs: int = Field(6, ge=0)
    teacher_lr: float = Field(1e-4, gt=0)
    teacher_head_lr: float = Field(2e-3, gt=0)
    teacher_max_length: int = Field(128, ge=8)
    # student
    student_layers: int = Field(2, ge=1)
    student_layer_map: str = Field("", description="teacher layers to copy, e.g. '0,5' (default: spread)")
    student_intermediate_size: int = Field(
        384, ge=0, description="feed-forward width of the student (0: the teacher's); keeps the most important neurons"
    )
    student_epochs: int = Field(12, ge=1)
    student_lr: float = Field(2e-4, gt=0)
    student_head_lr: float = Field(2e-3, gt=0)
    student_max_length: int = Field(128, ge=8)
    prune_vocab: bool = True
    kd_temperature: float = Field(2.0, gt=0)
    kd_alpha: float = Field(0.8, ge=0, le=1, description="weight of soft targets (1 - alpha: hard labels)")
    kd_hidden_weight: float = Field(1.0, ge=0, description="weight of pooled hidden-state transfer (MSE)")
    # synthetic rows (models/augment.py): generated after the teacher's fine-tune, judged by it, distilled on
    augment_per_label: int = Field(0, ge=0, description="generated utterances asked per label (0: no augmentation)")
    augment_generator: str = Field(
        "onnx:bundled", description="cnai.generate URI (default: the bundled SmolLM2 as int4 ONNX, fast on CPU)"
    )
    augment_per_prompt: int = Field(2, ge=1, description="utterances asked of one generation (one per line)")
    augment_examples: int = Field(4, ge=1, description="real utterances of the label shown in each prompt")
    augment_temperature: float = Field(0.8, gt=0)
    augment_top_p: float = Field(0.95, gt=0, le=1)
    augment_max_new_tokens: int = Field(48, ge=1, description="per generation; a cut last line is dropped")
    augment_min_chars: int = Field(10, ge=1)
    augment_max_chars: int = Field(160, ge=1)
    augment_near_duplicate: float = Field(0.85, gt=0, le=1, description="char 3-gram Jaccard that is a duplicate")
    augment_test_ngram: int = Field(8, ge=1, description="a shared word n-gram of this length with test: dropped")
    augment_min_confidence: float = Field(0.5, ge=0, le=1, description="teacher probability of the intended label")
    augment_disagreeing: Literal["drop", "soft"] = Field("soft", description="rows the teacher labels otherwise")
    augment_refit_epochs: int = Field(
        0, ge=0, description="self-training: epochs of a second teacher fine-tune on real + judged rows (0: off)"
    )
    augment_refit_rows: Literal["agreeing", "kept"] = Field(
        "agreeing", description="generated rows of the refit: those the teacher agreed with, or all kept"
    )
    # optimisation
    batch_size: int = Field(32, ge=1, description="per process")
    warmup_ratio: float = Field(0.06, ge=0, lt=1)
    weight_decay: float = Field(0.01, ge=0)
    label_smoothing: float = Field(0.1, ge=0, lt=1)
    grad_clip: float = Field(1.0, gt=0)
    freeze_embeddings: bool = Field(True, description="keep the teacher's word embeddings fixed")
    precision: Literal["fp32", "bf16"] = "fp32"
    checkpoint_every: int = Field(100, ge=1, description="optimizer steps between checkpoints")
    # export and evaluation
    per_channel: bool = True
    max_abs_logit_diff: float = 1e-3
    min_int8_agreement: float = 0.99
    abstain_threshold: float | None = Field(None, gt=0, lt=1)
    eval_teacher: bool = Field(True, description="also evaluate the teacher in PyTorch and int8 ONNX")
    latency_samples: int = Field(1000, ge=1)
    latency_batches: int = Field(20, ge=1)
    model_name: str = "intent-classifier"

    @model_validator(mode="after")
    def _layers(self) -> HyperParameters:
        if self.student_layer_map:
            layers = [x for x in self.student_layer_map.split(",") if x.strip()]
            if len(layers) != self.student_layers:
                raise ValueError(
                    f"student_layer_map names {len(layers)} layers but student_layers is {self.student_layers}"
                )
        if self.augment_min_chars > self.augment_max_chars:
            raise ValueError(
                f"augment_min_chars ({self.augment_min_chars}) is above augment_max_chars ({self.augment_max_chars})"
            )
        return self


class RunPaths(BaseModel):
    train: Path
    test: Path
    model_dir: Path
    output_data_dir: Path
    checkpoint_dir: Path
    # generated candidates made ahead by models/augment.py (the workflow's `candidates` channel), or None
    candidates: Path | None = None


class RunConfig(BaseModel):
    hp: HyperParameters
    paths: RunPaths
    profile: str = "default"


class ConfigError(CnaiError):
    """Bad hyperparameters or paths; the message names the field."""


def _coerce(value: Any) -> Any:
    # SageMaker passes every hyperparameter as a string; JSON-decode what looks like JSON ("5", "true").
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def parse(argv: list[str] | None = None, env: dict[str, str] | None = None) -> RunConfig:
    env = dict(os.environ) if env is None else env
    parser = argparse.ArgumentParser(
        prog="models/train.py",
        description="Distill a Hugging Face teacher into an int8 ONNX student (SageMaker entry point).",
    )
    parser.add_argument("--profile", choices=sorted(PROFILES), default=None)
    parser.add_argument("--train", default=env.get("SM_CHANNEL_TRAIN"), help="file or dir ($SM_CHANNEL_TRAIN)")
    parser.add_argument("--test", default=env.get("SM_CHANNEL_TEST"), help="file or dir ($SM_CHANNEL_TEST)")
    parser.add_argument("--model-dir", default=env.get("SM_MODEL_DIR", "/opt/ml/model"))
    parser.add_argument("--output-data-dir", default=env.get("SM_OUTPUT_DATA_DIR", "/opt/ml/output/data"))
    parser.add_argument("--checkpoint-dir", default=env.get("SM_CHECKPOINT_DIR", "/opt/ml/checkpoints"))
    parser.add_argument(
        "--candidates",
        default=env.get("SM_CHANNEL_CANDIDATES"),
        help="folder of models/augment.py's candidates file: filtered and judged instead of generating "
        "($SM_CHANNEL_CANDIDATES)",
    )
    for name, field in HyperParameters.model_fields.items():
        flags = sorted({f"--{name}", f"--{name.replace('_', '-')}"})
        parser.add_argument(*flags, dest=name, default=None, help=field.description)
    args = parser.parse_args(argv)

    try:
        hps_env = json.loads(env.get("SM_HPS", "{}") or "{}")
    except json.JSONDecodeError as exc:
        raise ConfigError(f"SM_HPS: not valid JSON ({exc.msg})") from None
    # SageMaker's toolkit passes every hyperparameter twice (SM_HPS and --key value): take `profile` out of
    # the JSON first, whichever source wins, or it would reach HyperParameters as an unknown field.
    env_profile = hps_env.pop("profile", None)
    profile = args.profile or str(env_profile or "default")
    if profile not in PROFILES:
        raise ConfigError(f"profile: unknown {profile!r} (choose from {', '.join(sorted(PROFILES))})")
    values: dict[str, Any] = dict(PROFILES[profile])
    values.update({k.replace("-", "_"): _coerce(v) for k, v in hps_env.items()})
    values.update({k: _coerce(v) for k, v in vars(args).items() if k in HyperParameters.model_fields and v is not None})
    try:
        hp = HyperParameters.model_validate(values)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'hyperparameters'}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"hyperparameters: {problems}") from None
    for name in ("train", "test"):
        if not getattr(args, name):
            raise ConfigError(f"--{name}: required (or set SM_CHANNEL_{name.upper()})")
    paths = RunPaths(
        train=Path(args.train),
        test=Path(args.test),
        model_dir=Path(args.model_dir),
        output_data_dir=Path(args.output_data_dir),
        checkpoint_dir=Path(args.checkpoint_dir),
        candidates=Path(args.candidates) if args.candidates else None,
    )
    return RunConfig(hp=hp, paths=paths, profile=profile)
