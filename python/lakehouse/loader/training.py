"""A short training run on exported shards: proof that the batches are usable and learnable.

A small MLP predicts log1p(likes in the first 7 days) of a photo from its owner's
point-in-time features, caption statistics, size and the image embedding. It must beat the
constant predictor (the train mean) on the validation split; the demo reports both.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader

from lakehouse.loader.dataset import PADDING_KEY, ShardDataset
from lakehouse.loader.prefetch import GPUPrefetcher

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

    @property
    def beats_baseline(self) -> bool:
        return self.val_mse < self.baseline_mse


def features(batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Model inputs and target of a batch, as float32 on the batch's device."""
    counts = torch.stack([batch[c].float() for c in COUNTS], dim=1).clamp_min(0).log1p()
    plain = torch.stack([batch[c].float() for c in PLAIN], dim=1)
    x = torch.cat([counts, plain, batch[EMBEDDING].float()], dim=1)
    return x, batch[TARGET].float().log1p()


def train_popularity_model(
    shards: str | Path,
    *,
    epochs: int = 4,
    batch_size: int = 512,
    workers: int = 2,
    device: str = "cuda",
    seed: int = 0,
    on_step: Callable[[str, int, int], None] = lambda step, done, total: None,
) -> TrainingReport:
    torch.manual_seed(seed)
    train = ShardDataset(
        shards, "train", batch_size=batch_size, shuffle=True, seed=seed, columns=COLUMNS
    )
    batches = GPUPrefetcher(DataLoader(train, batch_size=None, num_workers=workers), device)
    width = len(COUNTS) + len(PLAIN) + train.width(EMBEDDING)
    model = nn.Sequential(
        nn.BatchNorm1d(width), nn.Linear(width, 64), nn.ReLU(), nn.Linear(64, 1)
    ).to(batches.device)
    optimiser = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    target_sum, seen, started = 0.0, 0, time.perf_counter()
    for epoch in range(epochs):
        train.set_epoch(epoch)
        model.train()
        for step, batch in enumerate(batches, start=1):
            x, y = features(batch)
            keep = ~batch[PADDING_KEY]
            loss = (model(x).squeeze(1) - y)[keep].pow(2).mean()
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            if epoch == 0:
                target_sum += float(y[keep].sum())
            seen += int(keep.sum())
            on_step(f"epoch {epoch + 1}/{epochs}", step, len(batches))
    elapsed = time.perf_counter() - started
    val_mse, baseline_mse = _evaluate(shards, model, batches.device, target_sum / train.num_samples)
    return TrainingReport(
        epochs=epochs,
        train_samples=train.num_samples,
        samples_per_second=seen / elapsed,
        val_mse=val_mse,
        baseline_mse=baseline_mse,
        device=str(batches.device),
    )


@torch.no_grad()
def _evaluate(shards, model: nn.Module, device: torch.device, mean: float) -> tuple[float, float]:
    val = ShardDataset(shards, "val", batch_size=4096, columns=COLUMNS)
    model.eval()
    error = baseline = 0.0
    for batch in GPUPrefetcher(val, device):
        x, y = features(batch)
        error += float((model(x).squeeze(1) - y).pow(2).sum())
        baseline += float((y - mean).pow(2).sum())
    return error / val.num_samples, baseline / val.num_samples
