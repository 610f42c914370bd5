"""`lakehouse train` under torchrun: two processes, DistributedDataParallel on gloo, every
sample once an epoch across them, and a run stopped mid-epoch continues exactly."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from lakehouse.export import export_model
from lakehouse.loader import ShardSamples
from tests.conftest import BuiltWarehouse

MODEL = "photo_popularity_training"


@pytest.fixture(scope="module")
def shards(built_warehouse: BuiltWarehouse, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ddp") / "shards"
    folder, _ = export_model(built_warehouse.warehouse, MODEL, out, force=True)
    return Path(folder)


def _torchrun(shards: Path, work: Path, *extra: str) -> str:
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "lakehouse.cli", "train", str(shards), "--device", "cpu", "--workers", "1",
        "--epochs", "2", "--batch-size", "64", "--seed", "3", *extra,
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "LAKEHOUSE_CACHE": str(work / "cache")}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def _trace(folder: Path, rank: int) -> list[dict]:
    return [json.loads(line) for line in (folder / f"rank{rank}.jsonl").read_text().splitlines()]


def test_two_processes_see_every_sample_once_an_epoch(shards: Path, tmp_path: Path) -> None:
    out = _torchrun(shards, tmp_path, "--trace", str(tmp_path / "trace"))
    assert out.count("trained 2 epochs") == 1  # rank 0 reports, once
    assert "2 processes (DistributedDataParallel, cpu each)" in out
    assert "beats" in out
    samples = ShardSamples(shards, "train", columns=["photo_id"])
    train_ids = sorted(samples[:]["photo_id"].tolist())
    ranks = [_trace(tmp_path / "trace", rank) for rank in range(2)]
    assert len(ranks[0]) == len(ranks[1]) > 2  # DDP steps in lockstep
    for epoch in range(2):
        seen = [i for rank in ranks for step in rank if step["epoch"] == epoch for i in step["ids"]]
        assert sorted(seen) == train_ids, epoch  # each sample exactly once across ranks
    first = [i for step in ranks[0] if step["epoch"] == 0 for i in step["ids"]]
    second = [i for step in ranks[0] if step["epoch"] == 1 for i in step["ids"]]
    assert first != second  # reshuffled per epoch


def test_a_run_stopped_mid_epoch_continues_exactly(shards: Path, tmp_path: Path) -> None:
    whole = _torchrun(shards, tmp_path, "--trace", str(tmp_path / "whole"))
    checkpoint = str(tmp_path / "ckpt" / "train.pt")
    stopped = _torchrun(
        shards, tmp_path, "--trace", str(tmp_path / "resumed"), "--checkpoint", checkpoint,
        "--max-steps", "5",
    )  # fmt: skip
    assert "stopped by --max-steps" in stopped and Path(checkpoint).exists()
    steps_per_epoch = sum(1 for s in _trace(tmp_path / "whole", 0) if s["epoch"] == 0)
    assert steps_per_epoch > 5  # stopped inside the first epoch, workers mid-pass
    rest = _torchrun(
        shards, tmp_path, "--trace", str(tmp_path / "resumed"), "--checkpoint", checkpoint
    )
    assert "resumed at epoch 1, step 5" in rest
    for rank in range(2):  # the same steps, the same samples, in the same order
        assert _trace(tmp_path / "resumed", rank) == _trace(tmp_path / "whole", rank)
    mse = re.compile(r"model (\d+\.\d+)")
    assert mse.search(rest).group(1) == mse.search(whole).group(1)  # same weights at the end


def test_a_checkpoint_never_resumes_on_another_shard_version(
    shards: Path, built_warehouse: BuiltWarehouse, tmp_path: Path
) -> None:
    """Saved at an epoch's end on v1, a checkpoint used to resume "at epoch 2" on v2
    silently (only a mid-epoch state was refused): the version is checked at any position."""
    from lakehouse.loader import LoaderError
    from lakehouse.loader.training import train_popularity_model

    out = tmp_path / "versions"
    first, _ = export_model(built_warehouse.warehouse, MODEL, out, force=True)
    checkpoint = tmp_path / "train.pt"
    options = {"batch_size": 256, "workers": 0, "device": "cpu", "checkpoint": checkpoint}
    train_popularity_model(first, epochs=1, **options)  # saved at the end of epoch 1
    second, _ = export_model(built_warehouse.warehouse, MODEL, out, shard_rows=500, force=True)
    assert Path(second).name == "v2"
    with pytest.raises(LoaderError, match=r"other shards \(version: saved 1, now 2; "):
        train_popularity_model(second, epochs=2, **options)
    resumed = train_popularity_model(first, epochs=2, **options)  # its own version: fine
    assert resumed.resumed_at == "epoch 2, step " + resumed.resumed_at.rsplit(" ", 1)[-1]
