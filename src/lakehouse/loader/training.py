"""A short training run on exported shards: proof that the batches are usable and learnable.

A small MLP predicts log1p(likes in the first 7 days) of a photo from its owner's
point-in-time features, caption statistics, size and the image embedding. It must beat the
constant predictor (the train mean) on the validation split; the demo reports both.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import pickle
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from lakehouse.loader.dataset import PADDING_KEY, ShardDataset
from lakehouse.loader.prefetch import GPUPrefetcher
from lakehouse.loader.shards import LoaderError, open_version
from lakehouse.storage import write_atomic

COUNTS = [  # non-negative counts, fed as log1p
    "owner_account_age_days",
    "owner_prior_photos",
    "owner_likes_received",
    "owner_followers",
    "owner_events_30d",
    "caption_length",
    "hashtag_count",
    "width",
    "height",
]
PLAIN = ["owner_is_verified", "aspect_ratio"]
EMBEDDING = "embedding"
TARGET = "likes_7d"
COLUMNS = [*COUNTS, *PLAIN, EMBEDDING, TARGET]


@dataclass(frozen=True)
class TrainingReport:
    epochs: int
    train_samples: int
    samples_per_second: float
    val_mse: float
    baseline_mse: float  # the constant predictor: the train mean of the target
    device: str
    world_size: int = 1  # processes that trained together (torchrun)
    rank: int = 0
    steps: int = 0  # optimiser steps this run took
    resumed_at: str | None = None  # "epoch E, batch B" when it continued a checkpoint
    stopped_early: bool = False  # --max-steps ended it before the last epoch

    @property
    def beats_baseline(self) -> bool:
        return self.val_mse < self.baseline_mse


def inputs(batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The model's inputs from a batch (a shard batch, or served features), float32."""
    counts = torch.stack([batch[c].float() for c in COUNTS], dim=1).clamp_min(0).log1p()
    plain = torch.stack([batch[c].float() for c in PLAIN], dim=1)
    return torch.cat([counts, plain, batch[EMBEDDING].float()], dim=1)


def features(batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Model inputs and target of a batch, as float32 on the batch's device."""
    return inputs(batch), batch[TARGET].float().log1p()


def _network(width: int) -> nn.Sequential:
    return nn.Sequential(nn.BatchNorm1d(width), nn.Linear(width, 64), nn.ReLU(), nn.Linear(64, 1))


def load_popularity_model(checkpoint: str | Path) -> nn.Module:
    """The model a training run saved in ``checkpoint`` (``train --checkpoint``), ready to
    predict on CPU."""
    try:
        state = torch.load(Path(checkpoint), map_location="cpu", weights_only=True)["model"]
        net = _network(int(state["0.weight"].shape[0]))
        net.load_state_dict(state)
    except (OSError, RuntimeError, KeyError, TypeError, pickle.UnpicklingError) as error:
        raise LoaderError(f"cannot load a model from {checkpoint}: {error}") from error
    return net.eval()


@torch.no_grad()
def predict_likes_7d(model: nn.Module, columns: dict[str, list[Any]]) -> list[float]:
    """The likes in the first 7 days ``model`` predicts for each row of ``columns`` (column
    name -> values: the model's inputs, as the online store serves them)."""
    missing = [c for c in (*COUNTS, *PLAIN, EMBEDDING) if c not in columns]
    if missing:
        raise LoaderError(f"cannot predict without the features {', '.join(missing)}")
    nulls = [c for c in (*COUNTS, *PLAIN, EMBEDDING) if any(v is None for v in columns[c])]
    if nulls:
        raise LoaderError(f"cannot predict with missing values in {', '.join(nulls)}")
    batch = {c: torch.tensor(columns[c], dtype=torch.float32) for c in (*COUNTS, *PLAIN)}
    batch[EMBEDDING] = torch.tensor(columns[EMBEDDING], dtype=torch.float32)
    return model(inputs(batch)).squeeze(1).expm1().clamp_min(0).tolist()


@dataclass
class _Progress:
    """What a checkpoint holds besides the model and the optimiser."""

    epoch: int = 0
    steps: int = 0  # optimiser steps over the whole run
    target_sum: float = 0.0  # of epoch 0's targets on this rank, for the baseline
    loader: dict | None = None  # the train loader's place inside ``epoch``
    # the shard version trained on (model, version, content fingerprint): a checkpoint
    # resumes on that version only, at an epoch's end as much as in its middle
    data: dict | None = None


def _data_identity(train: ShardDataset) -> dict[str, Any]:
    manifest = train.manifest
    return {
        "model": manifest.model,
        "version": manifest.version,
        "content_fingerprint": manifest.content_fingerprint,
    }


def train_popularity_model(
    shards: str | Path,
    *,
    epochs: int = 4,
    batch_size: int = 512,
    workers: int = 2,
    device: str = "cuda",
    seed: int = 0,
    checkpoint: str | Path | None = None,
    checkpoint_every: int = 0,
    max_steps: int | None = None,
    trace: str | Path | None = None,
    on_step: Callable[[str, int, int], None] = lambda step, done, total: None,
) -> TrainingReport:
    """Train the small model; under ``torchrun`` every process trains one rank of a
    DistributedDataParallel model (gloo on CPU, nccl on GPUs, one GPU per process).

    ``checkpoint``: a file the model, optimiser and loader state are saved to (by rank 0,
    atomically) at every epoch's end and every ``checkpoint_every`` steps; when it exists,
    training continues from it exactly where it stopped. ``max_steps`` stops after that many
    optimiser steps of the whole run (saving the checkpoint), as if interrupted. ``trace``:
    a folder where each rank writes the ids of the samples of every step it trained on
    (``rank<r>.jsonl``), to audit that an epoch saw each sample once.
    """
    group = _join_process_group(device)
    rank, world = (dist.get_rank(), dist.get_world_size()) if group else (0, 1)
    try:
        torch.manual_seed(seed)
        key = open_version(shards)[1].order_by[0]  # the sample id, for the trace
        columns = [*COLUMNS, key] if trace is not None else COLUMNS
        train = ShardDataset(
            shards, "train", batch_size=batch_size, shuffle=True, seed=seed, columns=columns
        )
        target = _device(device)
        loader = DataLoader(train, batch_size=None, num_workers=workers)
        batches = GPUPrefetcher(loader, target)
        width = len(COUNTS) + len(PLAIN) + train.width(EMBEDDING)
        net = _network(width).to(batches.device)
        model: nn.Module = net
        if group:
            ids = [batches.device.index] if batches.device.type == "cuda" else None
            model = DistributedDataParallel(net, device_ids=ids)
        optimiser = torch.optim.AdamW(net.parameters(), lr=3e-3, weight_decay=1e-4)
        progress, resumed_at = _Progress(data=_data_identity(train)), None
        if checkpoint is not None and Path(checkpoint).exists():
            progress = _load(Path(checkpoint), net, optimiser, train)
            resumed_at = f"epoch {progress.epoch + 1}, step {progress.steps}"
        traces = _open_trace(trace, rank)
        seen, stopped, steps_here, started = 0, False, 0, time.perf_counter()
        for epoch in range(progress.epoch, epochs):
            train.set_epoch(epoch)
            model.train()
            for step, batch in enumerate(batches, start=1):
                x, y = features(batch)
                keep = ~batch[PADDING_KEY]
                # a filler batch (ranks even out) counts nothing but still joins all-reduce
                squared = (model(x).squeeze(1) - y).pow(2) * keep
                loss = squared.sum() / keep.sum().clamp_min(1)
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                optimiser.step()
                if epoch == 0:
                    progress.target_sum += float((y * keep).sum())
                seen += int(keep.sum())
                progress.steps += 1
                steps_here += 1
                if traces is not None:
                    _trace(traces, epoch, progress.steps, batch[key][keep.cpu()])
                on_step(f"epoch {epoch + 1}/{epochs}", step, len(batches))
                progress.epoch, progress.loader = epoch, batches.state_dict()
                if max_steps is not None and progress.steps >= max_steps:
                    stopped = True
                    break
                if (
                    checkpoint is not None
                    and checkpoint_every
                    and not progress.steps % checkpoint_every
                ):
                    _save(Path(checkpoint), net, optimiser, progress, rank)
            if stopped:
                break
            progress.epoch, progress.loader = epoch + 1, None
            if checkpoint is not None:
                _save(Path(checkpoint), net, optimiser, progress, rank)
        if stopped and checkpoint is not None:
            _save(Path(checkpoint), net, optimiser, progress, rank)
        if traces is not None:
            traces.close()
        elapsed = time.perf_counter() - started
        total = torch.tensor([progress.target_sum])
        if group:
            dist.all_reduce(total)
            dist.barrier()  # rank 0's checkpoint is written before any rank leaves
        mean = float(total) / train.num_samples
        val_mse, baseline_mse = _evaluate(shards, net, batches.device, mean)
        return TrainingReport(
            epochs=epochs,
            train_samples=train.num_samples,
            samples_per_second=seen * world / elapsed if elapsed else 0.0,
            val_mse=val_mse,
            baseline_mse=baseline_mse,
            device=str(batches.device),
            world_size=world,
            rank=rank,
            steps=steps_here,
            resumed_at=resumed_at,
            stopped_early=stopped,
        )
    finally:
        if group:
            dist.destroy_process_group()


def _join_process_group(device: str) -> bool:
    """Under torchrun (WORLD_SIZE > 1): join its process group, nccl when this process
    trains on a GPU and gloo on CPU. True when this call created the group."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return False
    on_gpu = device.startswith("cuda") and torch.cuda.is_available()
    if on_gpu:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group("nccl" if on_gpu else "gloo")
    return True


def _device(device: str) -> str:
    """One GPU per process under torchrun (its LOCAL_RANK); cuda falls back to cpu."""
    if device == "cuda" and torch.cuda.is_available():
        return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    return device


def _save(path: Path, net: nn.Module, optimiser, progress: _Progress, rank: int) -> None:
    """Rank 0 writes the checkpoint whole or not at all (``storage.write_atomic``); the
    loader state is the same on every rank (a position in the epoch's global stream)."""
    if rank != 0:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        "model": net.state_dict(),
        "optimiser": optimiser.state_dict(),
        "progress": dataclasses.asdict(progress),
    }
    buffer = io.BytesIO()
    torch.save(state, buffer)
    write_atomic(path, buffer.getvalue())


def _load(path: Path, net: nn.Module, optimiser, train: ShardDataset) -> _Progress:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        net.load_state_dict(state["model"])
        optimiser.load_state_dict(state["optimiser"])
        progress = _Progress(**state["progress"])
    except (OSError, RuntimeError, KeyError, TypeError, pickle.UnpicklingError) as error:
        raise LoaderError(f"cannot resume from checkpoint {path}: {error}") from error
    now = _data_identity(train)
    if progress.data is None and progress.loader is None:
        raise LoaderError(
            f"cannot resume from checkpoint {path}: it does not say which shard version it "
            f"was trained on (saved before checkpoints recorded it); now {now['model']} "
            f"v{now['version']}. Start without it, or resume on the version it was saved on"
        )
    if progress.data is not None and progress.data != now:
        differ = "; ".join(
            f"{key}: saved {progress.data.get(key)!r}, now {value!r}"
            for key, value in now.items()
            if progress.data.get(key) != value
        )
        raise LoaderError(
            f"cannot resume from checkpoint {path}: it was trained on other shards "
            f"({differ}); resume on the version it was saved on, or start without it"
        )
    progress.data = now
    if progress.loader is not None:
        train.load_state_dict(progress.loader)
    return progress


def _open_trace(trace: str | Path | None, rank: int):
    if trace is None:
        return None
    folder = Path(trace)
    folder.mkdir(parents=True, exist_ok=True)
    return open(folder / f"rank{rank}.jsonl", "a")


def _trace(handle, epoch: int, step: int, ids: torch.Tensor) -> None:
    handle.write(json.dumps({"epoch": epoch, "step": step, "ids": ids.tolist()}) + "\n")


@torch.no_grad()
def _evaluate(shards, model: nn.Module, device: torch.device, mean: float) -> tuple[float, float]:
    # every rank scores the whole validation split (rank 0 of 1), so all report the same
    val = ShardDataset(shards, "val", batch_size=4096, columns=COLUMNS, rank=0, world_size=1)
    model.eval()
    error = baseline = 0.0
    for batch in GPUPrefetcher(val, device):
        x, y = features(batch)
        error += float((model(x).squeeze(1) - y).pow(2).sum())
        baseline += float((y - mean).pow(2).sum())
    return error / val.num_samples, baseline / val.num_samples
