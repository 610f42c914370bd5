"""The loader delivers every sample of an epoch exactly once across workers and ranks, in an
order fixed by (seed, epoch), resumes mid-epoch without replay, and names a broken shard."""

from __future__ import annotations

import json
import os
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc
import pytest
import torch
import torch.multiprocessing as mp
from torch.utils.data import DataLoader

from lakehouse.loader import GPUPrefetcher, LoaderError, ShardDataset
from lakehouse.loader import shards as shards_module
from lakehouse.loader.plan import EpochOrder, RankPlan, Rows
from lakehouse.loader.rowmajor import evict
from lakehouse.loader.shards import ShardCache
from lakehouse.shardformat import Manifest, sha256_of
from tests.loader_fixtures import ROWS, SHARD_ROWS, rank_job, write_shards

TRAIN_IDS = [i for i in range(ROWS) if i % 10 < 8]


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_shards(tmp_path_factory.mktemp("loader"))


def _ids(batches) -> list[int]:
    return [i for batch in batches for i in batch["photo_id"].tolist()]


def _real_ids(batches) -> list[int]:
    return [
        i
        for batch in batches
        for i, pad in zip(batch["photo_id"].tolist(), batch["is_padding"].tolist(), strict=True)
        if not pad
    ]


@pytest.mark.parametrize(("shuffle", "buffer"), [(False, 0), (True, 0), (True, 250), (True, 10**6)])
def test_every_stream_position_is_a_distinct_row(shuffle: bool, buffer: int) -> None:
    sizes = [97] * 8 + [24]
    order = EpochOrder(
        sizes, block_rows=40, shuffle=shuffle, shuffle_buffer=buffer, seed=1, epoch=2
    )
    shard, row = order.rows(np.arange(order.total))
    pairs = set(zip(shard.tolist(), row.tolist(), strict=True))
    assert order.total == sum(sizes) == len(pairs)
    assert all(0 <= r < sizes[s] for s, r in pairs)
    if not shuffle:  # natural order: shard by shard, row by row
        assert shard.tolist() == sorted(shard.tolist())
        assert row[:97].tolist() == list(range(97))


@pytest.mark.parametrize(("shuffle", "buffer"), [(False, 0), (True, 0), (True, 250)])
def test_a_batch_is_its_stream_positions_rows_as_ascending_runs(shuffle: bool, buffer: int) -> None:
    sizes = [97] * 8 + [24]  # blocks of 40 rows: shards end in short blocks
    order = EpochOrder(
        sizes, block_rows=40, shuffle=shuffle, shuffle_buffer=buffer, seed=1, epoch=2, batch_size=32
    )
    everything = order.rows(np.arange(order.total))
    for start in (0, 7):  # batches on the deal's boundaries, and a resume off them
        for lo in range(start, order.total, 32):
            hi = min(lo + 32, order.total)
            rows = order.batch(lo, hi)
            assert rows.shard.tolist() == everything[0][lo:hi].tolist()
            assert rows.row.tolist() == everything[1][lo:hi].tolist()
            if rows.runs:  # what the copy relies on: few runs, each one shard, ascending
                breaks = (np.diff(rows.shard) != 0) | (np.diff(rows.row) <= 0)
                assert breaks.sum() < 8
            assert rows.runs == (not shuffle or buffer == 0 or start == 0)
    if shuffle and buffer:  # a dealt batch draws its rows from most of its window's blocks
        dealt = [order.batch(lo, lo + 32) for lo in range(0, 224, 32)]
        blocks = [
            len(set(zip(r.shard.tolist(), (r.row // 40).tolist(), strict=True))) for r in dealt
        ]
        assert min(blocks) >= 3


def test_a_rank_plan_gives_every_rank_the_same_number_of_batches() -> None:
    for total, batch, world in [(800, 64, 2), (800, 64, 3), (5, 64, 4), (1000, 1, 7)]:
        for uneven in ("pad", "drop"):
            plans = [RankPlan(total, 0, batch, r, world, uneven) for r in range(world)]
            assert len({p.batches for p in plans}) == 1
            real = Counter(
                int(i)
                for p in plans
                for j in range(p.batches)
                for i in p.positions(j)[0]
                if not p.positions(j)[1]
            )
            if uneven == "pad":
                assert sorted(real) == list(range(total)) and set(real.values()) == {1}
            else:
                kept = total // batch // world * world * batch
                assert sorted(real) == list(range(kept))


def test_unshuffled_batches_are_zero_copy_views_of_the_map(shards: Path) -> None:
    ds = ShardDataset(shards, "train", batch_size=32, shuffle_buffer=0, block_rows=32)
    cache = ShardCache(ds.folder, ds.manifest, ds.entries, ds.columns)
    batch = ds._tensors(cache, Rows(np.full(32, 2), np.arange(10, 42)))
    mapped = cache[2].columns["embedding"]
    assert batch["embedding"].data_ptr() == mapped.ctypes.data + 10 * mapped.strides[0]
    assert batch["embedding"].shape == (32, 4) and batch["embedding"].dtype == torch.float32


def test_writing_into_a_batch_never_changes_the_shard(shards: Path) -> None:
    ds = ShardDataset(shards, "train", batch_size=50, shuffle_buffer=0)
    before = {p: sha256_of(p) for p in Path(shards).rglob("*.arrow")}
    for batch in ds:
        batch["feature"].mul_(-1)  # a training loop normalising in place
        batch["embedding"].zero_()
    assert {p: sha256_of(p) for p in Path(shards).rglob("*.arrow")} == before
    again = next(iter(ds))
    assert again["feature"][:3].tolist() == [0.0, 0.5, 1.0]


@pytest.mark.parametrize("buffer", [0, 200])
def test_batches_carry_the_values_of_their_rows(shards: Path, buffer: int) -> None:
    ds = ShardDataset(shards, "train", batch_size=64, shuffle=True, seed=3, shuffle_buffer=buffer)
    for batch in ds:
        ids = batch["photo_id"].double()
        assert torch.equal(batch["feature"], (ids * 0.5).float())
        assert torch.equal(batch["embedding"][:, 0], ids.float())
        assert torch.equal(batch["embedding"][:, 2], -ids.float())
        assert torch.equal(batch["is_popular"], (batch["photo_id"] % 7 == 0).to(torch.uint8))
        assert torch.equal(batch["posted_at"], 1_767_225_600_000_000 + batch["photo_id"] * 10**6)


def test_an_epoch_is_every_sample_once_and_the_order_follows_seed_and_epoch(shards: Path) -> None:
    def order(seed: int, epoch: int, workers: int) -> list[int]:
        ds = ShardDataset(shards, "train", batch_size=64, shuffle=True, seed=seed)
        ds.set_epoch(epoch)
        return _ids(DataLoader(ds, batch_size=None, num_workers=workers))

    first = order(0, 0, 0)
    assert sorted(first) == TRAIN_IDS
    assert order(0, 0, 2) == first  # workers do not change the order
    assert order(0, 1, 0) != first and sorted(order(0, 1, 0)) == TRAIN_IDS
    assert order(1, 0, 0) != first
    unshuffled = _ids(ShardDataset(shards, "train", batch_size=64))
    assert unshuffled == TRAIN_IDS  # photo_id order, as exported


def test_shuffle_buffer_mixes_rows_across_blocks(shards: Path) -> None:
    whole = ShardDataset(shards, "train", batch_size=64, shuffle=True, shuffle_buffer=0)
    mixed = ShardDataset(shards, "train", batch_size=64, shuffle=True, shuffle_buffer=512)
    runs = [int((np.diff(b["photo_id"].numpy()) > 0).mean() * 100) for b in whole]
    assert min(runs) >= 90  # whole blocks: mostly runs of consecutive ids
    spread = [int(b["photo_id"].max() - b["photo_id"].min()) for b in mixed]
    assert np.median(spread) > 4 * 64  # rows come from several blocks


def test_exactly_once_over_two_ranks_times_two_workers(shards: Path, tmp_path: Path) -> None:
    epochs, batch_size = 3, 64
    mp.spawn(rank_job, args=(str(shards), str(tmp_path), epochs, batch_size), nprocs=2)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    orders = []
    for epoch in range(epochs):
        per_rank = [ranks[r][epoch] for r in range(2)]
        # 800 rows = 12 full batches + 32 rows: 13 batches, 7 per rank, one filler batch
        assert per_rank[0]["batches"] == per_rank[1]["batches"] == 7
        real = [
            i
            for seen in per_rank
            for i, pad in zip(seen["ids"], seen["padding"], strict=True)
            if not pad
        ]
        assert sorted(real) == TRAIN_IDS  # every sample once, none repeated
        assert sum(sum(seen["padding"]) for seen in per_rank) == 64
        orders.append(per_rank[0]["ids"])
    assert orders[0] != orders[1] != orders[2]


def test_drop_mode_gives_full_equal_batches_and_drops_only_the_remainder(shards: Path) -> None:
    seen = []
    for rank in range(3):
        ds = ShardDataset(
            shards, "train", batch_size=64, shuffle=True, uneven="drop", rank=rank, world_size=3
        )
        batches = list(ds)
        # 800 rows hold 12 full batches of 64: 4 per rank, the last 32 rows are dropped
        assert len(batches) == 4 and all(len(b["photo_id"]) == 64 for b in batches)
        assert "is_padding" not in batches[0]
        seen += _ids(batches)
    assert len(seen) == len(set(seen)) == 12 * 64


def test_resume_equals_an_uninterrupted_run_with_other_worker_counts(shards: Path) -> None:
    def loader(workers: int, state=None) -> GPUPrefetcher:
        ds = ShardDataset(shards, "train", batch_size=48, shuffle=True, seed=7)
        ds.set_epoch(4)
        prefetcher = GPUPrefetcher(DataLoader(ds, batch_size=None, num_workers=workers))
        if state is not None:
            prefetcher.load_state_dict(state)
            ds.set_epoch(4)  # the training loop's usual call keeps the resume position
        return prefetcher

    uninterrupted = _ids(loader(2))
    first = loader(2)
    taken = []
    for step, batch in enumerate(first, start=1):
        taken += batch["photo_id"].tolist()
        if step == 5:
            state = first.state_dict()
            break
    assert state["position"] == 5 * 48 and state["epoch"] == 4
    rest = _ids(loader(1, state))
    assert taken + rest == uninterrupted
    assert _ids(loader(0, state)) == rest


def test_resume_with_fewer_ranks_delivers_exactly_the_rest(shards: Path) -> None:
    def rank_ds(rank: int, world: int) -> ShardDataset:
        return ShardDataset(
            shards, "train", batch_size=40, shuffle=True, rank=rank, world_size=world
        )

    taken = []
    for rank in range(4):  # four ranks each consume 3 batches, then the job restarts on 1
        ds = rank_ds(rank, 4)
        for step, batch in enumerate(ds, start=1):
            taken += batch["photo_id"].tolist()
            if step == 3:
                break
    state = rank_ds(0, 4).state_dict(batches_seen=3)
    single = rank_ds(0, 1)
    single.load_state_dict(state)
    rest = _real_ids(single)
    assert sorted(taken + rest) == TRAIN_IDS


def test_a_state_from_another_order_is_refused(shards: Path) -> None:
    state = ShardDataset(shards, "train", shuffle=True, seed=1).state_dict(batches_seen=1)
    other = ShardDataset(shards, "train", shuffle=True, seed=2)
    with pytest.raises(LoaderError, match="seed: saved 1, now 2"):
        other.load_state_dict(state)
    # a state saved before the shuffle buffer dealt rows to batches: another order
    same = ShardDataset(shards, "train", shuffle=True, seed=1)
    with pytest.raises(LoaderError, match="saved with state format 1, now 2"):
        same.load_state_dict(state | {"format": 1})
    same.load_state_dict(state)


def test_a_missing_truncated_or_corrupt_shard_is_named(shards: Path, tmp_path: Path) -> None:
    def broken(damage) -> tuple[Path, Path]:
        copy = tmp_path / f"v{len(list(tmp_path.iterdir()))}"
        shutil.copytree(shards, copy)
        target = copy / "train" / "part-00003.arrow"
        damage(target)
        return copy, target

    def read_all(folder: Path, **options) -> None:
        for _ in ShardDataset(folder, "train", batch_size=100, **options):
            pass

    folder, target = broken(lambda p: p.unlink())
    with pytest.raises(LoaderError, match=rf"shard {target} is missing"):
        read_all(folder)
    folder, target = broken(lambda p: p.write_bytes(p.read_bytes()[:-200]))
    with pytest.raises(LoaderError, match=rf"shard {target} has \d+ bytes .* truncated"):
        read_all(folder)
    folder, target = broken(lambda p: p.write_bytes(p.read_bytes()[:-64] + b"\0" * 64))
    with pytest.raises(LoaderError, match=rf"shard {target} differs from its manifest's sha256"):
        read_all(folder)

    def flip_a_value(path: Path) -> None:
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))

    folder, target = broken(flip_a_value)  # a flipped value would parse: the checksum sees it
    with pytest.raises(LoaderError, match=rf"shard {target} differs from its manifest's sha256"):
        read_all(folder)
    with pytest.raises(LoaderError, match=r"part-00003.arrow: sha256 differs"):
        read_all(folder, verify=True)


def test_no_flipped_byte_of_a_shard_reaches_a_batch_or_escapes_as_another_error(
    shards: Path, tmp_path: Path
) -> None:
    original = (shards / "val" / "part-00000.arrow").read_bytes()
    for position in range(0, len(original), max(1, len(original) // 60)):
        copy = tmp_path / f"v{position}"
        shutil.copytree(shards, copy)
        data = bytearray(original)
        data[position] ^= 0x5A
        (copy / "val" / "part-00000.arrow").write_bytes(bytes(data))
        with pytest.raises(LoaderError, match="differs from its manifest's sha256"):
            for _ in ShardDataset(copy, "val", batch_size=50):
                pass
        shutil.rmtree(copy)


def test_unknown_split_or_column_and_a_folder_without_manifest_are_explained(
    shards: Path, tmp_path: Path
) -> None:
    with pytest.raises(LoaderError, match=r"no split 'dev'; it has \['test', 'train', 'val'\]"):
        ShardDataset(shards, "dev")
    with pytest.raises(LoaderError, match=r"no column.* likes; it has photo_id, feature"):
        ShardDataset(shards, "train", columns=["photo_id", "likes"])
    with pytest.raises(LoaderError, match=r"no manifest\.json in .*lakehouse export"):
        ShardDataset(tmp_path, "train")


def test_indexing_points_at_samples_and_repr_says_what_the_dataset_is(shards: Path) -> None:
    ds = ShardDataset(shards, "train", batch_size=64, shuffle=True, seed=3)
    with pytest.raises(TypeError, match=r"use ds\.samples\[5\] for one sample"):
        ds[5]
    assert int(ds.samples[5]["photo_id"]) >= 0  # where the message points
    text = repr(ds)
    assert text.startswith(f"ShardDataset(loader_fixture {ds.manifest.version}, split='train'")
    assert f"{ds.num_samples:,} rows, {len(ds)} batches of 64" in text
    assert "shuffle=True, seed=3, shuffle_buffer=512" in text
    assert "shuffle=False" in repr(ShardDataset(shards, "val", batch_size=10))


def test_compressed_shards_give_the_same_batches(shards: Path, tmp_path: Path) -> None:
    lz4 = write_shards(tmp_path, compression="lz4")
    plain = list(ShardDataset(shards, "val", batch_size=30, shuffle=True))
    packed = list(ShardDataset(lz4, "val", batch_size=30, shuffle=True))
    assert len(plain) == len(packed) == 4
    for a, b in zip(plain, packed, strict=True):
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_prefetcher_without_cuda_yields_cpu_tensors_and_never_pins(
    shards: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("pin_memory called on a machine without CUDA")

    monkeypatch.setattr(torch.Tensor, "pin_memory", refuse)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    ds = ShardDataset(shards, "val", batch_size=30)
    prefetcher = GPUPrefetcher(DataLoader(ds, batch_size=None, num_workers=1), device="cuda")
    batches = list(prefetcher)
    assert prefetcher.device == torch.device("cpu") and len(prefetcher) == 4
    assert all(t.device.type == "cpu" for b in batches for t in b.values())
    assert _ids(batches) == [i for i in range(ROWS) if i % 10 == 8]
    assert prefetcher.state_dict()["position"] == 100


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_prefetcher_delivers_the_same_batches_on_the_gpu(shards: Path) -> None:
    def run(device: str, depth: int = 3) -> list[dict[str, torch.Tensor]]:
        ds = ShardDataset(shards, "train", batch_size=64, shuffle=True, seed=2)
        loader = DataLoader(ds, batch_size=None, num_workers=2)
        prefetcher = GPUPrefetcher(loader, device=device, depth=depth)
        out = []
        for batch in prefetcher:
            assert all(t.device.type == device for t in batch.values())
            out.append({k: v.cpu() for k, v in batch.items()})  # syncs with the copy stream
            assert prefetcher.state_dict()["position"] == min(800, 64 * len(out))
        return out

    cpu, gpu = run("cpu"), run("cuda")
    assert len(cpu) == len(gpu) == 13
    for a, b in zip(cpu, gpu, strict=True):
        assert all(torch.equal(a[k], b[k]) for k in a)
    assert _ids(run("cuda", depth=1)) == _ids(cpu)


def test_shard_schema_must_match_the_manifest(shards: Path, tmp_path: Path) -> None:
    copy = tmp_path / "v"
    shutil.copytree(shards, copy)
    manifest = Manifest.read(copy / "manifest.json")
    target = copy / manifest.shards[0].path
    table = ipc.open_file(pa.memory_map(str(target))).read_all()
    table = table.set_column(1, "feature", table["feature"].cast(pa.float64()))
    with ipc.new_file(str(target), table.schema) as writer:
        writer.write_table(table)
    entry = manifest.shards[0]
    manifest.shards[0] = type(entry)(
        entry.split, entry.path, entry.rows, target.stat().st_size, sha256_of(target)
    )
    (copy / "manifest.json").write_text(manifest.to_json())
    with pytest.raises(LoaderError, match=rf"shard {target} has schema .*'feature', 'double'"):
        list(ShardDataset(copy, manifest.shards[0].split, batch_size=SHARD_ROWS))


def test_a_manifest_path_that_leaves_the_version_folder_is_refused(
    shards: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "v"
    shutil.copytree(shards, copy)
    data = json.loads((copy / "manifest.json").read_text())
    data["shards"][0]["path"] = "../../../etc/passwd"
    (copy / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(LoaderError, match="leaves the shard folder"):
        list(ShardDataset(copy, data["shards"][0]["split"], batch_size=SHARD_ROWS))


def test_a_shard_is_hashed_once_per_file_version_not_once_per_process(
    shards: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LAKEHOUSE_CACHE", str(tmp_path / "cache"))
    version = tmp_path / "v"
    shutil.copytree(shards, version)
    hashed = []
    real = shards_module.hashlib.sha256

    def counting(data):
        hashed.append(len(data))
        return real(data)

    monkeypatch.setattr(shards_module.hashlib, "sha256", counting)

    def read_all() -> int:
        return sum(len(b["photo_id"]) for b in ShardDataset(version, "val", batch_size=50))

    rows = read_all()
    first = len(hashed)
    assert first == len(list((version / "val").glob("*.arrow"))) > 1  # each shard once
    monkeypatch.setattr(shards_module, "_CHECKED", set())  # as a new process (a worker)
    assert read_all() == rows and len(hashed) == first  # the markers answered
    target = version / "val" / "part-00000.arrow"
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0x5A
    target.write_bytes(bytes(data))  # rewritten in place: a new file version
    with pytest.raises(LoaderError, match="differs from its manifest's sha256"):
        read_all()
    assert len(hashed) == first + 1


def _arrow_rows(version: Path, split: str) -> dict[int, dict[str, np.ndarray]]:
    """Every row of a split as pyarrow reads it, by photo_id, in the loader's tensor types:
    codes of the dictionary (-1 where null), microseconds of the timestamp, 0/1 of a bool."""
    table = pa.concat_tables(
        ipc.open_file(str(path)).read_all() for path in sorted((version / split).glob("*.arrow"))
    )
    columns = {}
    for name in table.column_names:
        array = table.column(name).combine_chunks()
        if pa.types.is_dictionary(array.type):
            array = pc.fill_null(array.indices, -1)
        elif pa.types.is_timestamp(array.type):
            array = array.cast(pa.int64())
        elif pa.types.is_boolean(array.type):
            array = array.cast(pa.uint8())
        elif pa.types.is_fixed_size_list(array.type):
            columns[name] = array.flatten().to_numpy().reshape(len(array), -1)
            continue
        columns[name] = array.to_numpy(zero_copy_only=False)
    return {
        int(photo_id): {name: values[i] for name, values in columns.items()}
        for i, photo_id in enumerate(columns["photo_id"])
    }


def test_a_shuffled_batch_copies_whole_rows_from_a_row_major_copy_the_loader_derives(
    shards: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Shards hold each column once; a shuffled pass derives each shard's row-major copy
    once into the cache (named by the shard's sha256 and the layout), gathers whole rows from
    it, and gives the values pyarrow reads from the shards themselves."""
    monkeypatch.setenv("LAKEHOUSE_CACHE", str(tmp_path / "cache"))
    version = Path(shards).resolve()
    manifest = Manifest.read(version / "manifest.json")
    assert "_rows" not in [c["name"] for c in manifest.schema]  # no duplicated bytes
    expected = _arrow_rows(version, "train")
    ds = ShardDataset(shards, "train", batch_size=64, shuffle=True, seed=2)
    layout = ds.layout
    assert layout.row_bytes % 8 == 0 and sorted(layout.fields) == sorted(manifest.columns)
    seen = 0
    for batch in ds:
        for i, photo_id in enumerate(batch["photo_id"].tolist()):
            for name in manifest.columns:
                assert np.array_equal(batch[name][i].numpy(), expected[photo_id][name]), name
            seen += 1
        # every column is a view of one buffer of whole rows
        storages = {batch[n].untyped_storage().data_ptr() for n in manifest.columns}
        assert len(storages) == 1
        assert batch["photo_id"].stride() == (layout.row_bytes // 8,)
        assert batch["embedding"].stride() == (layout.row_bytes // 4, 1)
    assert seen >= len(expected)  # padding repeats real rows
    copies = sorted((tmp_path / "cache" / "rows").glob("*.rows"))
    train = [s for s in manifest.shards if s.split == "train"]
    assert [c.name for c in copies] == sorted(f"{s.sha256}-{layout.digest}.rows" for s in train)
    assert [c.stat().st_size for c in copies] == [
        s.rows * layout.row_bytes for s in sorted(train, key=lambda s: s.sha256)
    ]
    # a later pass maps the same copies (not made again); a damaged one is made again
    made = {c: c.stat().st_ino for c in copies}
    copies[0].write_bytes(b"short")
    again = ShardDataset(shards, "train", batch_size=64, shuffle=True, seed=2)
    assert torch.equal(
        torch.cat([b["photo_id"] for b in again]), torch.cat([b["photo_id"] for b in ds])
    )
    damaged = next(s for s in train if copies[0].name.startswith(s.sha256))
    assert copies[0].stat().st_size == damaged.rows * layout.row_bytes  # made again, whole
    assert all(c.stat().st_ino == made[c] for c in copies[1:])


def test_the_row_major_cache_keeps_under_its_limit(
    shards: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The least recently used copies go first; a run whose cache cannot be written still
    reads every row (its copies in memory)."""
    monkeypatch.setenv("LAKEHOUSE_CACHE", str(tmp_path / "cache"))
    ds = ShardDataset(shards, "train", batch_size=64, shuffle=True, seed=2)
    ids = sorted(_real_ids(ds))
    copies = sorted((tmp_path / "cache" / "rows").glob("*.rows"))[::-1]
    for used, copy in enumerate(copies):  # last used in this order, oldest first
        os.utime(copy, ns=(10**18 + used, 10**18 + used))
    limit = sum(c.stat().st_size for c in copies[-3:])
    removed = evict(tmp_path / "cache" / "rows", limit=limit)
    assert removed == copies[: len(copies) - 3]
    assert sorted((tmp_path / "cache" / "rows").glob("*.rows")) == sorted(copies[-3:])
    (tmp_path / "readonly").write_text("a file where the cache folder would be")
    monkeypatch.setenv("LAKEHOUSE_CACHE", str(tmp_path / "readonly"))
    assert sorted(_real_ids(ShardDataset(shards, "train", batch_size=64, shuffle=True))) == ids


def test_a_category_keeps_its_code_across_versions_and_mixing_checks_the_codes(
    tmp_path: Path,
) -> None:
    """Codes never shift: the next version keeps the latest's vocabulary in its order (a value
    that left the table included) and appends new values, even one that sorts first; two
    versions of one history mix, an export with other codes does not."""
    import duckdb

    from lakehouse.export import ExportSpec, export_model
    from lakehouse.loader import MixedDataset
    from lakehouse.warehouse import project_dir

    warehouse = tmp_path / "w.duckdb"
    spec = ExportSpec(key="photo_id")
    project = project_dir(Path(__file__).parent)
    con = duckdb.connect(str(warehouse))
    con.execute(
        "create table cats as select id as photo_id, 'train' as split, "
        "case id % 2 when 0 then 'portrait' else 'landscape' end as orientation "
        "from range(40) t(id)"
    )
    con.execute(
        "create table lakehouse_bronze_reads (invocation_id varchar, table_name varchar, "
        "delta_version bigint, recorded_at timestamp)"
    )
    con.close()

    def export(out: Path) -> ShardDataset:
        folder, _ = export_model(
            warehouse, "cats", out, force=True, project=project, spec=spec, shard_rows=16
        )
        return ShardDataset(folder, "train", batch_size=8)

    def names(ds: ShardDataset) -> dict[int, str | None]:
        batch = next(iter(ShardDataset(ds.folder, "train", batch_size=40)))
        return dict(
            zip(
                batch["photo_id"].tolist(),
                ds.decode("orientation", batch["orientation"]),
                strict=True,
            )
        )

    first = export(tmp_path / "shards")
    assert first.vocabularies["orientation"] == ["landscape", "portrait"]
    con = duckdb.connect(str(warehouse))  # landscape leaves, a value sorting first arrives
    con.execute("update cats set orientation = 'aaa-square' where orientation = 'landscape'")
    con.close()
    second = export(tmp_path / "shards")
    assert second.manifest.version != first.manifest.version
    assert second.vocabularies["orientation"] == ["landscape", "portrait", "aaa-square"]
    decoded = names(second)
    assert {i: n for i, n in decoded.items() if i % 2 == 0} == {
        i: "portrait" for i in range(0, 40, 2)
    }
    assert {n for i, n in decoded.items() if i % 2} == {"aaa-square"}
    assert len(MixedDataset([first, second], [1, 1])) > 0  # one history: the codes agree

    other = export(tmp_path / "elsewhere")  # a fresh history codes by sorted value
    assert other.vocabularies["orientation"] == ["aaa-square", "portrait"]
    with pytest.raises(LoaderError, match=r"code 'orientation' differently \(code 0 is"):
        MixedDataset([first, other], [1, 1])


@pytest.mark.parametrize("workers", [0, 2])
def test_a_batch_the_caller_keeps_is_never_overwritten(shards: Path, workers: int) -> None:
    """Batch buffers are reused (in the trainer's process) and workers' ring slots too, but
    never while a tensor of a batch is alive: every kept batch still holds its own rows."""
    ds = ShardDataset(shards, "train", batch_size=16, shuffle=True, seed=1, shuffle_buffer=64)
    kept, seen = [], 0
    for i, batch in enumerate(DataLoader(ds, batch_size=None, num_workers=workers)):
        seen += len(batch["photo_id"])
        if i % 3 == 0:  # some kept, the others dropped (their buffers free again)
            kept.append((batch["photo_id"], batch["feature"], batch["photo_id"].clone()))
    assert seen == ds.num_samples and len(kept) > 5
    for ids, feature, copy in kept:
        assert torch.equal(ids, copy)
        assert torch.equal(feature, ids.to(torch.float32) * 0.5)  # the row's own value
