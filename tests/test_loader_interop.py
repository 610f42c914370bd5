"""What ML engineers bring from other loaders: torchdata's StatefulDataLoader, persistent
workers, a clear error for DataLoader(batch_size=N), map-style access, category names, and
several datasets mixed by weight."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from torch.utils.data import DataLoader
from torchdata.stateful_dataloader import StatefulDataLoader

from lakehouse.loader import (
    PADDING_KEY,
    SOURCE_KEY,
    GPUPrefetcher,
    LoaderError,
    MixedDataset,
    ShardDataset,
    ShardSamples,
    decode,
)
from tests.loader_fixtures import ROWS, write_shards

TRAIN_IDS = [i for i in range(ROWS) if i % 10 < 8]


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_shards(tmp_path_factory.mktemp("interop"))


def _ids(batches) -> list[int]:
    return [i for batch in batches for i in batch["photo_id"].tolist()]


def _dataset(shards: Path, **kw) -> ShardDataset:
    return ShardDataset(shards, "train", batch_size=32, shuffle=True, seed=4, **kw)


@pytest.mark.parametrize("workers", [0, 2])
def test_stateful_dataloader_resumes_mid_epoch_exactly(shards: Path, workers: int) -> None:
    ds = _dataset(shards)
    ds.set_epoch(1)
    whole = _ids(StatefulDataLoader(ds, batch_size=None, num_workers=workers))
    assert sorted(whole) == TRAIN_IDS

    ds = _dataset(shards)
    ds.set_epoch(1)
    loader = StatefulDataLoader(ds, batch_size=None, num_workers=workers)
    head, state = [], None
    for step, batch in enumerate(loader, start=1):
        head += batch["photo_id"].tolist()
        if step == 7:
            state = loader.state_dict()  # the loader's checkpoint, not the dataset's
            break
    assert state is not None

    again = _dataset(shards)
    again.set_epoch(1)
    resumed = StatefulDataLoader(again, batch_size=None, num_workers=workers)
    resumed.load_state_dict(state)
    tail = _ids(resumed)
    assert head + tail == whole  # no sample twice, none lost, same order


def test_a_stateful_dataloader_state_resumes_with_another_number_of_workers(
    shards: Path,
) -> None:
    whole = _ids(DataLoader(_dataset(shards), batch_size=None))
    loader = StatefulDataLoader(_dataset(shards), batch_size=None, num_workers=2)
    head = []
    for step, batch in enumerate(loader, start=1):
        head += batch["photo_id"].tolist()
        if step == 5:
            state = loader.state_dict()
            break
    for workers in (0, 3):  # the whole loader state, given to the dataset
        ds = _dataset(shards)
        ds.load_state_dict(state)
        assert head + _ids(DataLoader(ds, batch_size=None, num_workers=workers)) == whole
    # one worker's part of the state cannot be resumed on its own, and says what to do
    part = state["_snapshot"]["_worker_snapshots"]["worker_0"]["dataset_state"]
    with pytest.raises(LoaderError, match=r"worker 0 of 2's part of a pass.*whole loader state"):
        _dataset(shards).load_state_dict(part)


def test_gpu_prefetcher_state_matches_the_stateful_dataloader(shards: Path) -> None:
    ds = _dataset(shards)
    prefetched = GPUPrefetcher(StatefulDataLoader(ds, batch_size=None), "cpu")
    for step, _ in enumerate(prefetched, start=1):
        if step == 6:
            assert prefetched.state_dict() == ds.state_dict()
            assert prefetched.state_dict()["position"] == 6 * 32
            break


def test_persistent_workers_follow_the_epoch(shards: Path) -> None:
    ds = _dataset(shards)
    loader = DataLoader(ds, batch_size=None, num_workers=2, persistent_workers=True)
    epochs = []
    for epoch in range(3):
        ds.set_epoch(epoch)
        epochs.append(_ids(loader))
    for epoch, ids in enumerate(epochs):
        fresh = _dataset(shards)
        fresh.set_epoch(epoch)
        assert ids == _ids(fresh), epoch  # the epoch's own order, not epoch 0's again
    assert epochs[0] != epochs[1] != epochs[2]


@pytest.mark.parametrize("workers", [0, 2])
def test_dataloader_batch_size_is_refused_with_the_fix(shards: Path, workers: int) -> None:
    loader = DataLoader(_dataset(shards), batch_size=8, num_workers=workers)
    with pytest.raises(LoaderError, match=r"DataLoader\(batch_size=8\).*batch_size=None"):
        next(iter(loader))


def test_samples_are_a_map_style_dataset_in_export_order(shards: Path) -> None:
    samples = ShardSamples(shards, "train")
    assert len(samples) == len(TRAIN_IDS)  # samples, not batches
    assert samples[0]["photo_id"].item() == TRAIN_IDS[0]
    assert samples[-1]["photo_id"].item() == TRAIN_IDS[-1]
    one = samples[100]
    assert one["photo_id"].item() == TRAIN_IDS[100] and one["embedding"].shape == (4,)
    assert one["feature"].item() == TRAIN_IDS[100] * 0.5
    window = samples[95:105]  # crosses a shard boundary (97 rows a shard)
    assert window["photo_id"].tolist() == TRAIN_IDS[95:105]
    assert window["embedding"][:, 2].tolist() == [-float(i) for i in TRAIN_IDS[95:105]]
    picked = samples[[500, 3, 97]]
    assert picked["photo_id"].tolist() == [TRAIN_IDS[500], TRAIN_IDS[3], TRAIN_IDS[97]]
    with pytest.raises(IndexError, match=f"sample {len(TRAIN_IDS)} is out of range.*has 800"):
        samples[len(TRAIN_IDS)]
    # the usual map-style recipe: any sampler, default collate, workers
    loader = DataLoader(samples, batch_size=32, shuffle=True, num_workers=2)
    ids = [i for batch in loader for i in batch["photo_id"].tolist()]
    assert sorted(ids) == TRAIN_IDS
    ds = _dataset(shards)
    assert len(ds.samples) == ds.num_samples == len(TRAIN_IDS)
    assert len(ds) == -(-len(TRAIN_IDS) // 32)  # the iterable counts batches (documented)


def test_category_codes_decode_to_their_names(shards: Path) -> None:
    ds = ShardDataset(shards, "train", batch_size=50)
    assert ds.vocabularies["orientation"] == ["landscape", "portrait"]
    batch = next(iter(ds))
    names = ds.decode("orientation", batch["orientation"])
    expected = [{0: "portrait", 1: "landscape"}.get(i % 3) for i in batch["photo_id"].tolist()]
    assert names == expected and None in names
    assert decode(ds.manifest, "orientation", [1, -1, 0]) == ["portrait", None, "landscape"]
    with pytest.raises(LoaderError, match=r"'feature' is not a coded category.*orientation"):
        ds.decode("feature", [0])
    with pytest.raises(LoaderError, match="code 2 is not in orientation's vocabulary of 2"):
        ds.decode("orientation", [2])


def _mix(shards: Path, **kw) -> MixedDataset:
    a = ShardDataset(shards, "train", batch_size=32, shuffle=True, seed=1)
    b = ShardDataset(shards, "val", batch_size=16, shuffle=True, seed=2)
    return MixedDataset([a, b], [3.0, 1.0], seed=9, **kw)


def test_a_mix_delivers_every_source_exactly_once_in_a_seeded_order(shards: Path) -> None:
    val_ids = sorted(i for i in range(ROWS) if i % 10 == 8)
    mixed = _mix(shards)
    batches = list(mixed)
    by_source: dict[int, list[int]] = {0: [], 1: []}
    for batch in batches:
        (source,) = set(batch[SOURCE_KEY].tolist())
        by_source[source] += batch["photo_id"].tolist()
    assert sorted(by_source[0]) == TRAIN_IDS and sorted(by_source[1]) == val_ids
    assert _ids(_mix(shards)) == _ids(batches)  # same seed, same order
    mixed.set_epoch(1)
    assert _ids(mixed) != _ids(batches)
    # weight 3:1 while both have batches: the first half is mostly the heavy source
    sources = [int(b[SOURCE_KEY][0]) for b in batches]
    first = Counter(sources[: len(sources) // 2])
    assert first[0] > 2 * first[1]
    # each source's own order is kept inside the mix
    alone = _ids(ShardDataset(shards, "train", batch_size=32, shuffle=True, seed=1))
    assert by_source[0] == alone


def test_a_mix_over_two_ranks_and_workers_is_exactly_once_and_resumes(shards: Path) -> None:
    whole = _ids(_mix(shards))
    per_rank = []
    for rank in range(2):
        ds = _mix(shards, rank=rank, world_size=2)
        per_rank.append(list(DataLoader(ds, batch_size=None, num_workers=2)))
    assert len(per_rank[0]) == len(per_rank[1])
    real = [
        i
        for batches in per_rank
        for b in batches
        for i, pad in zip(b["photo_id"].tolist(), b[PADDING_KEY].tolist(), strict=True)
        if not pad
    ]
    assert sorted(real) == sorted(whole)
    # resume after 3 batches on each of 2 ranks, on one rank with workers
    ds = _mix(shards, rank=0, world_size=2)
    state = ds.state_dict(batches_seen=3)
    assert state["position"] == 6
    one = _mix(shards)
    one.load_state_dict(state)
    rest = _ids(DataLoader(one, batch_size=None, num_workers=2))
    first_six = [i for b in list(_mix(shards))[:6] for i in b["photo_id"].tolist()]
    assert first_six + rest == whole


def test_a_mix_refuses_sources_that_do_not_match(shards: Path) -> None:
    a = ShardDataset(shards, "train", columns=["photo_id", "feature"])
    b = ShardDataset(shards, "val", columns=["photo_id"])
    with pytest.raises(LoaderError, match="same columns"):
        MixedDataset([a, b], [1, 1])
    with pytest.raises(ValueError, match="one weight per source"):
        MixedDataset([a], [1, 2])
    with pytest.raises(ValueError, match="positive"):
        MixedDataset([a, a], [1, 0])
    assert np.isclose(sum(MixedDataset([a, a], [1, 3]).weights), 4)
