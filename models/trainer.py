"""One training loop for teacher and student: seeded, checkpointed, interruptible, data-parallel.

- Resumable: a checkpoint holds model, optimizer, scheduler, RNG state and the position inside the
  epoch; batch order is a pure function of (seed, epoch), so a resumed run replays the same steps.
- Interruptible: SIGTERM (a spot reclaim, `docker stop`) is noted, the step in flight finishes, a
  checkpoint is written and the run stops with Interrupted; SageMaker restarts it and it resumes.
- Data-parallel: under torchrun each process takes every world_size-th batch and DDP averages the
  gradients (gloo on CPU, nccl on GPU), as SageMaker launches multi-GPU and multi-instance jobs.
"""

from __future__ import annotations

import logging
import math
import os
import random
import signal
import sys
import time
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from tqdm.auto import tqdm
from transformers import get_linear_schedule_with_warmup

from models.data import Encoded, collate, epoch_batches, eval_batches

log = logging.getLogger(__name__)


class Interrupted(Exception):  # noqa: N818 - it is not an error: the run stopped on request
    """SIGTERM arrived; a checkpoint was written and the run should exit for a restart."""


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world_size > 1:
            dist.barrier()


def setup_distributed() -> DistInfo:
    """Read torchrun's variables (RANK, WORLD_SIZE, LOCAL_RANK); one process when they are absent."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available()
    device = torch.device(f"cuda:{local_rank}") if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if cuda else "gloo")
    rank = dist.get_rank() if world > 1 else 0
    return DistInfo(rank=rank, world_size=world, local_rank=local_rank, device=device)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class StopFlag:
    """Set by SIGTERM. Checked between steps, agreed across processes so all stop at the same step."""

    def __init__(self) -> None:
        self.set = False
        self._previous: Any = None

    def install(self) -> StopFlag:
        def handler(signum: int, frame: object) -> None:
            self.set = True
            log.warning("SIGTERM received: finishing this step, then checkpointing")

        self._previous = signal.signal(signal.SIGTERM, handler)
        return self

    def agreed(self, info: DistInfo) -> bool:
        if info.world_size == 1:
            return self.set
        flag = torch.tensor([1 if self.set else 0], dtype=torch.int32)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())


STOP = StopFlag()

LossFn = Callable[[nn.Module, list[int], torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class Phase:
    """What to train and how. The same loop runs the teacher fine-tune and the student distillation."""

    name: str
    model: nn.Module
    param_groups: list[dict[str, Any]]
    train: Encoded
    dev: Encoded | None
    loss_fn: LossFn
    epochs: int
    batch_size: int
    warmup_ratio: float
    weight_decay: float
    grad_clip: float
    checkpoint_every: int
    seed: int
    precision: str = "fp32"
    # What the phase was configured with (hyperparameters, data hash). A checkpoint written under another
    # fingerprint is not resumed: a reused checkpoint dir must never hand back a model of another recipe.
    fingerprint: str = ""


def _autocast(info: DistInfo, precision: str) -> AbstractContextManager[Any]:
    if precision == "bf16":
        return torch.autocast(device_type=info.device.type, dtype=torch.bfloat16)
    return nullcontext()


def predict_logits(model: nn.Module, data: Encoded, info: DistInfo, batch_size: int = 128) -> np.ndarray:
    """Logits for every row, in row order (batches sorted by length for speed, scattered back)."""
    return predict_outputs(model, data, info, batch_size)[0]


def predict_outputs(
    model: nn.Module, data: Encoded, info: DistInfo, batch_size: int = 128
) -> tuple[np.ndarray, np.ndarray]:
    """(logits, pooled features) for every row, in row order."""
    model.eval()
    logits: np.ndarray | None = None
    feats: np.ndarray | None = None
    with torch.inference_mode():
        for batch in eval_batches([len(x) for x in data.ids], batch_size):
            ids, mask = collate([data.ids[i] for i in batch])
            out, pooled = model(ids.to(info.device), mask.to(info.device), return_features=True)
            if logits is None or feats is None:
                logits = np.zeros((len(data), out.shape[-1]), dtype=np.float32)
                feats = np.zeros((len(data), pooled.shape[-1]), dtype=np.float32)
            logits[batch] = out.float().cpu().numpy()
            feats[batch] = pooled.float().cpu().numpy()
    assert logits is not None and feats is not None
    return logits, feats


def _save_atomic(obj: dict[str, Any], path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(obj, tmp)
    tmp.replace(path)  # a reclaim mid-write leaves the previous checkpoint intact


def _metric_line(values: dict[str, float]) -> None:
    # `key=value` pairs: what SageMaker metric definitions (regexes over the job log) pick up.
    print(" ".join(f"{k}={v:.6g}" for k, v in values.items()), flush=True)


def run_phase(phase: Phase, info: DistInfo, checkpoint_dir: Path) -> list[dict[str, float]]:
    """Train (or resume, or skip when already finished) one phase. Returns per-epoch history."""
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    path = checkpoint_dir / f"{phase.name}.pt"
    model = phase.model.to(info.device)
    lengths = [len(x) for x in phase.train.ids]
    steps_per_epoch = len(epoch_batches(lengths, phase.batch_size, phase.seed, 0)) // info.world_size
    if steps_per_epoch == 0:
        raise ValueError(f"{phase.name}: fewer training rows than processes x batch size")
    total = steps_per_epoch * phase.epochs
    optimizer = torch.optim.AdamW(phase.param_groups, weight_decay=phase.weight_decay)
    scheduler = get_linear_schedule_with_warmup(optimizer, math.ceil(total * phase.warmup_ratio), total)
    state: dict[str, Any] = {"epoch": 0, "step": 0, "global_step": 0, "history": [], "done": False}

    saved = torch.load(path, map_location=info.device, weights_only=False) if path.is_file() else None
    if saved is not None and saved.get("fingerprint", "") != phase.fingerprint:
        if info.is_main:
            log.warning(
                "%s: %s was written by another configuration (fingerprint %s, this run %s); training afresh",
                phase.name,
                path,
                str(saved.get("fingerprint", ""))[:12] or "none",
                phase.fingerprint[:12] or "none",
            )
        saved = None
    if saved is not None:
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        torch.set_rng_state(saved["rng"]["torch"])
        state = saved["state"]
        if info.is_main:
            what = "finished" if state["done"] else f"epoch {state['epoch'] + 1}, step {state['step']}"
            log.info("%s: resuming from %s (%s)", phase.name, path, what)
    if state["done"]:
        return list(state["history"])

    trained: nn.Module = model
    if info.world_size > 1:
        trained = nn.parallel.DistributedDataParallel(model)

    def save() -> None:
        if info.is_main:
            _save_atomic(
                {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "rng": {"torch": torch.get_rng_state()},
                    "state": state,
                    "fingerprint": phase.fingerprint,
                },
                path,
            )
        info.barrier()

    started = time.perf_counter()
    for epoch in range(state["epoch"], phase.epochs):
        batches = epoch_batches(lengths, phase.batch_size, phase.seed, epoch)
        mine = batches[info.rank :: info.world_size][:steps_per_epoch]
        if state["step"] == 0:
            # Reseed dropout per epoch: resuming at an epoch boundary then needs no saved RNG.
            torch.manual_seed(phase.seed * 1000 + epoch)
        trained.train()
        bar = _progress(mine, state["step"], f"{phase.name} {epoch + 1}/{phase.epochs}", info)
        running, seen = 0.0, 0
        epoch_started = time.perf_counter()
        for index, batch in bar:
            ids, mask = collate([phase.train.ids[i] for i in batch])
            with _autocast(info, phase.precision):
                loss = phase.loss_fn(trained, batch, ids.to(info.device), mask.to(info.device))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), phase.grad_clip)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            running += float(loss.detach())
            seen += 1
            state["step"] = index + 1
            state["global_step"] += 1
            if hasattr(bar, "set_postfix"):
                bar.set_postfix(loss=f"{running / seen:.4f}")
            if STOP.agreed(info):
                save()
                raise Interrupted(f"{phase.name}: stopped at epoch {epoch + 1}, step {index + 1}; checkpoint {path}")
            if state["global_step"] % phase.checkpoint_every == 0:
                save()
        record = {
            "epoch": epoch + 1,
            "train_loss": running / max(seen, 1),
            "seconds": time.perf_counter() - epoch_started,
        }
        if phase.dev is not None and info.is_main:
            record.update(_dev_metrics(model, phase.dev, info))
        state["history"].append(record)
        state["epoch"], state["step"] = epoch + 1, 0
        if info.is_main:
            log.info(
                "%s epoch %d/%d: train_loss %.4f%s (%.0f s)",
                phase.name,
                epoch + 1,
                phase.epochs,
                record["train_loss"],
                f", dev_accuracy {record['dev_accuracy']:.4f}" if "dev_accuracy" in record else "",
                record["seconds"],
            )
            _metric_line({f"{phase.name}_{k}": v for k, v in record.items()})
        save()
    state["done"] = True
    save()
    if info.is_main:
        log.info("%s: trained in %.0f s", phase.name, time.perf_counter() - started)
    return list(state["history"])


def _progress(batches: list[list[int]], start: int, desc: str, info: DistInfo) -> Iterable[tuple[int, list[int]]]:
    items = list(enumerate(batches))[start:]
    if not info.is_main:
        return items
    # A bar on a terminal; on SageMaker (no TTY) tqdm stays quiet and the epoch lines tell the story.
    return tqdm(items, desc=desc, total=len(batches), initial=start, disable=None, file=sys.stderr, leave=False)


def _dev_metrics(model: nn.Module, dev: Encoded, info: DistInfo) -> dict[str, float]:
    logits = predict_logits(model, dev, info)
    log_probs = torch.log_softmax(torch.from_numpy(logits), dim=-1)
    labels = torch.from_numpy(dev.labels)
    return {
        "dev_accuracy": float((logits.argmax(-1) == dev.labels).mean()),
        "dev_loss": float(torch.nn.functional.nll_loss(log_probs, labels)),
    }
