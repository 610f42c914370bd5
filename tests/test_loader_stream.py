"""Shards on object storage (a real S3 API, moto on 127.0.0.1) are streamed on demand into a
bounded local cache that several processes share, each checked against its sha256."""

from __future__ import annotations

from pathlib import Path

import pytest
from torch.utils.data import DataLoader

from lakehouse.loader import LoaderError, ShardDataset
from lakehouse.loader.remote import CacheIndex, parse_size
from lakehouse.shardformat import Manifest
from tests.loader_fixtures import ROWS, write_shards
from tests.object_store import client_for, s3_server

TRAIN_IDS = [i for i in range(ROWS) if i % 10 < 8]


@pytest.fixture(scope="module")
def remote(tmp_path_factory: pytest.TempPathFactory):
    """The fixture version uploaded to s3://shards/fixture/v1 (13 shards of 97 rows)."""
    latest = write_shards(tmp_path_factory.mktemp("stream"))
    with s3_server(["shards"]) as env, pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        client = client_for(env)
        version = latest.resolve()
        for path in sorted(p for p in version.rglob("*") if p.is_file()):
            client.upload_file(str(path), "shards", f"fixture/v1/{path.relative_to(version)}")
        client.put_object(Bucket="shards", Key="fixture/latest", Body=b"v1\n")
        yield {
            "uri": "s3://shards/fixture/latest",
            "manifest": Manifest.read(version / "manifest.json"),
            "env": env,
        }


def _cached(cache: Path) -> list[Path]:
    return sorted(cache.rglob("*.arrow"))


def test_only_the_manifest_and_the_first_batchs_shard_come_before_the_first_batch(
    remote, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LAKEHOUSE_CACHE", str(tmp_path))
    ds = ShardDataset(remote["uri"], "train", batch_size=50, readahead=0)
    assert list(tmp_path.rglob("manifest.json")) and _cached(tmp_path) == []
    first = next(iter(ds))
    assert first["photo_id"].tolist() == TRAIN_IDS[:50]
    assert [p.name for p in _cached(tmp_path)] == ["part-00000.arrow"]  # one of 9 train shards
    # the same split as samples streams from the store too: its last shard on demand
    assert ds.samples[-1]["photo_id"].item() == TRAIN_IDS[-1]
    assert [i for b in ds for i in b["photo_id"].tolist()] == TRAIN_IDS
    assert len(_cached(tmp_path)) == sum(s.split == "train" for s in remote["manifest"].shards)


def test_read_ahead_fetches_the_next_batches_shards_in_the_background(
    remote, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LAKEHOUSE_CACHE", str(tmp_path))
    ds = ShardDataset(remote["uri"], "train", batch_size=97, readahead=3)
    batches = iter(ds)
    next(batches)
    ds.remote._threads().shutdown(wait=True)  # let the background fetches finish
    names = [p.name for p in _cached(tmp_path)]
    assert names == [f"part-{i:05d}.arrow" for i in range(4)]  # this batch's and 3 ahead


@pytest.mark.parametrize("workers", [0, 2])
def test_the_cache_stays_under_its_limit_and_evicts_the_least_recently_used(
    remote, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, workers: int
) -> None:
    monkeypatch.setenv("LAKEHOUSE_CACHE", str(tmp_path))
    shards = [s for s in remote["manifest"].shards if s.split == "train"]
    # what is read at once (each worker: a batch's shard and 1 ahead) fits: 4 of 9 shards
    limit = 5 * max(s.bytes for s in shards)
    for epoch in range(2):  # evicted shards are fetched again in the next epoch
        ds = ShardDataset(
            remote["uri"], "train", batch_size=97, shuffle=True, shuffle_buffer=0,
            cache_limit=limit, readahead=1,
        )  # fmt: skip
        ds.set_epoch(epoch)
        ids = [
            i
            for b in DataLoader(ds, batch_size=None, num_workers=workers)
            for i in b["photo_id"].tolist()
        ]
        assert sorted(ids) == TRAIN_IDS
        on_disk = sum(p.stat().st_size for p in _cached(tmp_path))
        assert 0 < on_disk <= limit
        assert len(_cached(tmp_path)) < len(shards)  # some were evicted
        assert CacheIndex(tmp_path / "shards", limit).total() == on_disk


def test_a_shard_larger_than_the_cache_is_refused_with_the_setting_to_change(
    remote, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LAKEHOUSE_CACHE", str(tmp_path))
    monkeypatch.setenv("LAKEHOUSE_CACHE_LIMIT", "1KB")
    ds = ShardDataset(remote["uri"], "train", batch_size=50)
    with pytest.raises(
        LoaderError,
        match=r"part-00000\.arrow is [\d,]+ bytes, more than the cache limit of 1,000; "
        r"raise LAKEHOUSE_CACHE_LIMIT",
    ):
        next(iter(ds))
    assert _cached(tmp_path) == []


def test_a_flipped_byte_on_the_store_never_reaches_a_batch_or_the_cache(
    remote, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LAKEHOUSE_CACHE", str(tmp_path))
    client = client_for(remote["env"])
    key = "fixture/v1/train/part-00002.arrow"
    original = client.get_object(Bucket="shards", Key=key)["Body"].read()
    body = bytearray(original)
    body[len(body) // 3] ^= 0x01
    client.put_object(Bucket="shards", Key=key, Body=bytes(body))
    try:
        ds = ShardDataset(remote["uri"], "train", batch_size=97)
        with pytest.raises(LoaderError, match=r"train/part-00002\.arrow fetched as .*corrupt"):
            for _ in ds:
                pass
        assert not list(tmp_path.rglob("part-00002.arrow"))
    finally:
        client.put_object(Bucket="shards", Key=key, Body=original)


def test_sizes_are_read_the_usual_ways() -> None:
    assert parse_size("50GB") == 50 * 10**9
    assert parse_size("512MiB") == 512 * 2**20
    assert parse_size("1500000") == 1_500_000
    assert parse_size(" 2.5 kb ") == 2500
    with pytest.raises(ValueError, match="not a size such as 20GB"):
        parse_size("lots")
