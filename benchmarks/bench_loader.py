"""Loader throughput: batches delivered as tensors, against the limits and the usual ways.

    python benchmarks/bench_loader.py [--rows 1000000] [--batch-size 4096] [--workdir DIR]

Writes a training-shaped table (photo_id, 14 int64 features, a float32 label, a 64-wide
float32 embedding: 400 bytes a row) with DuckDB and exports it with the real exporter.
Then, in the same run and on the same bytes (page cache warm for every contender):

- memcpy: ``np.copyto`` of every column buffer, the limit for delivering the bytes once;
- the random-row gather alone: ``index_select`` of a batch's worth of random rows from 8
  shards' row-major copies, the limit for a shuffled batch (it reads rows scattered over
  hundreds of MB, where memcpy streams);
- ShardDataset in the main process and with 2 DataLoader workers, unshuffled (zero-copy
  slices), shuffled by block only, and shuffled with an 8-batch shuffle buffer (a gather);
- Hugging Face ``datasets`` over the same Arrow data (memory-mapped IPC stream file) with
  ``with_format("torch")`` and ``DataLoader(batch_size=B, shuffle=True)``;
- a naive map-style Dataset over a pandas DataFrame read from Parquet, one row per
  ``__getitem__`` and the default collate (timed on a few batches, it is slow);
- the time to the first batch from S3 (moto's server on 127.0.0.1) with an empty cache,
  for this version and one a tenth of its size (streaming makes it independent of size);
- on a GPU: pinned host -> device ``copy_`` of the same bytes (the limit there) and the
  loader through GPUPrefetcher.

Reported: samples/s, GB/s of tensor bytes, ratio to memcpy, time to first batch, and RSS of
each DataLoader worker (private anonymous memory and shared file pages) at its first and
its last batch. Results: ``benchmarks/results/loader-<rows>.json`` (not committed).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc
import torch
from torch.utils.data import DataLoader, Dataset

from lakehouse.export import ExportSpec, export_model
from lakehouse.loader import GPUPrefetcher, ShardDataset
from lakehouse.shardformat import ROW_MAJOR
from lakehouse.warehouse import project_dir

RESULTS = Path(__file__).parent / "results"
MODEL = "bench_training"
FEATURES = 14


def _write_shards(work: Path, rows: int) -> Path:
    latest = work / "shards" / MODEL / "latest"
    if latest.exists():
        return latest
    work.mkdir(parents=True, exist_ok=True)
    warehouse = work / "warehouse.duckdb"
    con = duckdb.connect(str(warehouse))
    features = ", ".join(f"hash(id, {i}) % 1000 as f{i}" for i in range(FEATURES))
    con.execute(
        f"""
        create or replace table {MODEL} as
        select id as photo_id, 'train' as split, {features},
               cast(hash(id) % 100 as float) / 10 as label,
               list_transform(range(64), j -> cast((hash(id, j) % 2000) / 1000.0 - 1 as float))
                 ::float[64] as embedding
        from range({rows}) t(id)
        """
    )
    con.execute(
        "create table lakehouse_bronze_reads (invocation_id varchar, table_name varchar, "
        "delta_version bigint, recorded_at timestamp)"
    )
    con.close()
    export_model(
        warehouse,
        MODEL,
        work / "shards",
        force=True,
        project=project_dir(),
        spec=ExportSpec(key="photo_id"),
    )
    return latest


def _rss(pid: int) -> dict[str, int]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("RssAnon", "RssFile", "RssShmem"):
            fields[key] = int(value.split()[0]) * 1024
    return fields


def _drain(batches, *, limit: int | None = None, loader=None) -> dict:
    """Consume batches, timing the first apart; RSS of workers at the first and last batch."""
    start = time.perf_counter()
    iterator = iter(batches)
    first_at, count, samples, nbytes, workers_first, workers_last = None, 0, 0, 0, None, None
    after_first = 0  # bytes after the first batch: the steady rate, without worker start-up
    for batch in iterator:
        if first_at is None:
            first_at = time.perf_counter() - start
            workers_first = _worker_rss(iterator)
        else:
            after_first += sum(t.numel() * t.element_size() for t in batch.values())
        count += 1
        if count % 8 == 0:  # workers exit at the end: keep the latest reading while alive
            workers_last = _worker_rss(iterator) or workers_last
        samples += len(next(iter(batch.values())))
        nbytes += sum(t.numel() * t.element_size() for t in batch.values())
        if limit and count >= limit:
            break
    elapsed = time.perf_counter() - start
    steady = elapsed - (first_at or 0.0)
    return {
        "batches": count,
        "samples": samples,
        "seconds": elapsed,
        "first_batch_s": first_at,
        "samples_per_s": samples / elapsed,
        "gb_per_s": nbytes / elapsed / 1e9,
        # after the first batch (DataLoader's workers started, shards opened)
        "steady_gb_per_s": after_first / steady / 1e9 if steady > 0 else None,
        "bytes": nbytes,
        "worker_rss_first": workers_first,
        "worker_rss_last": workers_last,
    }


def _worker_rss(iterator) -> list[dict[str, int]] | None:
    inner = getattr(iterator, "_workers", None)  # torch's multiprocess iterator
    if inner is None:
        return None
    return [_rss(w.pid) for w in inner if w.is_alive()]


def _memcpy(latest: Path) -> dict:
    buffers = []
    for path in sorted(latest.glob("train/part-*.arrow")):
        table = _named(ipc.open_file(pa.memory_map(str(path))).read_all())
        for column in table.columns:
            array = column.chunk(0)
            if pa.types.is_fixed_size_list(array.type):
                array = array.flatten()
            buffers.append(array.to_numpy(zero_copy_only=True))
    total = sum(b.nbytes for b in buffers)
    out = np.empty(total, np.uint8)
    best = float("inf")
    for _ in range(3):
        start, offset = time.perf_counter(), 0
        for b in buffers:
            np.copyto(out[offset : offset + b.nbytes], b.view(np.uint8))
            offset += b.nbytes
        best = min(best, time.perf_counter() - start)
    return {"seconds": best, "bytes": total, "gb_per_s": total / best / 1e9}


def _gather_limit(ds: ShardDataset, batch_size: int) -> dict:
    """The hardware's rate for what a shuffled batch must do at least: copy ``batch_size``
    random rows (sorted within each shard, as the loader sorts them) out of 8 shards'
    row-major copies into one buffer, with torch's ``index_select`` on all threads. No
    ordering, no tensors per column, no Python per batch beyond the loop."""
    cache = ds.opened.cache(random_rows=True)
    shards = min(8, len(ds.entries))
    sources = [torch.from_numpy(cache[i].row_major) for i in range(shards)]
    per = batch_size // shards
    rng = np.random.default_rng(0)
    batches = [
        [torch.from_numpy(np.sort(rng.choice(len(s), per, replace=False))) for s in sources]
        for _ in range(50)
    ]
    out = torch.empty((per * shards, ds.layout.row_bytes), dtype=torch.uint8)
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for batch in batches:
            for i, (source, index) in enumerate(zip(sources, batch, strict=True)):
                torch.index_select(source, 0, index, out=out[i * per : (i + 1) * per])
        best = min(best, time.perf_counter() - start)
    nbytes = len(batches) * out.numel()
    return {"seconds": best, "bytes": nbytes, "gb_per_s": nbytes / best / 1e9}


def _train_table(latest: Path) -> pa.Table:
    """The train split as one table: the same rows the other contenders read."""
    return pa.concat_tables(
        _named(ipc.open_file(pa.memory_map(str(p))).read_all())
        for p in sorted(latest.glob("train/part-*.arrow"))
    )


def _named(table: pa.Table) -> pa.Table:
    """The data columns (shards of format 1 also held a row-major copy of them)."""
    return table.drop_columns([c for c in (ROW_MAJOR,) if c in table.column_names])


def _huggingface(latest: Path, work: Path, batch_size: int, workers: int) -> dict:
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import datasets

    stream = work / "hf" / "data.arrow"
    if not stream.exists():
        stream.parent.mkdir(parents=True, exist_ok=True)
        table = _train_table(latest)
        with pa.OSFile(str(stream), "wb") as sink, ipc.new_stream(sink, table.schema) as w:
            w.write_table(table)
    dataset = datasets.Dataset.from_file(str(stream)).with_format("torch")
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=workers)
    return _drain(loader)


class PandasRows(Dataset):
    """The naive way: one row per __getitem__, default collate."""

    def __init__(self, parquet: Path) -> None:
        import pandas as pd

        self.frame = pd.read_parquet(parquet)

    def __len__(self) -> int:
        return len(self.frame)

    def __getitem__(self, index: int) -> dict:
        row = self.frame.iloc[index]
        return {k: torch.as_tensor(np.asarray(v)) for k, v in row.items()}


def _pandas(latest: Path, work: Path, batch_size: int) -> dict:
    import pyarrow.parquet as pq

    parquet = work / "pandas" / "train.parquet"
    if not parquet.exists():
        parquet.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(_train_table(latest), parquet)
    loader = DataLoader(PandasRows(parquet), batch_size=batch_size, shuffle=True, num_workers=2)
    return _drain(loader, limit=5)


def _gpu(latest: Path, batch_size: int, limit_bytes: int) -> dict:
    host = torch.empty(limit_bytes, dtype=torch.uint8, pin_memory=True)
    device = torch.empty(limit_bytes, dtype=torch.uint8, device="cuda")
    best = float("inf")
    for _ in range(3):
        torch.cuda.synchronize()
        start = time.perf_counter()
        device.copy_(host, non_blocking=True)
        torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    h2d = {"seconds": best, "gb_per_s": limit_bytes / best / 1e9}
    ds = ShardDataset(latest, "train", batch_size=batch_size, shuffle=True, shuffle_buffer=0)
    prefetched = _drain(GPUPrefetcher(DataLoader(ds, batch_size=None, num_workers=2), "cuda"))
    torch.cuda.synchronize()
    return {"pinned_h2d": h2d, "shard_dataset_gpu_prefetcher": prefetched}


def _s3_first_batch(work: Path, versions: dict[int, Path], batch_size: int) -> dict:
    """Time to the first batch from object storage (moto's S3 server on 127.0.0.1), each
    version uploaded once and read with an empty cache: unshuffled (the first shard), and
    shuffled with an 8-batch buffer (the shards of the first window's blocks)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.object_store import client_for, s3_server

    out: dict[str, dict] = {}
    with s3_server(["shards"]) as env:
        os.environ.update(env)
        client = client_for(env)
        for rows, latest in versions.items():
            version = latest.resolve()
            files = sorted(p for p in version.rglob("*") if p.is_file())
            for path in files:
                client.upload_file(str(path), "shards", f"v{rows}/{path.relative_to(version)}")
            uri = f"s3://shards/v{rows}"
            size = sum(p.stat().st_size for p in files)
            for name, shuffle in (("unshuffled", False), ("8-batch shuffle buffer", True)):
                os.environ["LAKEHOUSE_CACHE"] = tempfile.mkdtemp(prefix="bench-s3-")
                start = time.perf_counter()
                ds = ShardDataset(uri, "train", batch_size=batch_size, shuffle=shuffle)
                next(iter(ds))
                first = time.perf_counter() - start
                fetched = sum(
                    p.stat().st_size for p in Path(os.environ["LAKEHOUSE_CACHE"]).rglob("*.arrow")
                )
                out[f"{rows} rows, {name}"] = {
                    "first_batch_s": first,
                    "version_bytes": size,
                    "shards": len(files) - 1,
                    "fetched_bytes_at_first_batch": fetched,
                }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--batch-size", type=int, default=4096)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/bench-loader"))
    args = parser.parse_args()
    work = args.workdir / str(args.rows)
    work.mkdir(parents=True, exist_ok=True)
    latest = _write_shards(work, args.rows)
    b = args.batch_size
    results: dict[str, object] = {
        "rows": args.rows,
        "batch_size": b,
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "torch": torch.__version__,
    }
    results["memcpy"] = limit = _memcpy(latest)  # also warms the page cache
    # A shard's sha256 is checked once per file version on a machine, at its first open,
    # and remembered in $LAKEHOUSE_CACHE: with a fresh cache the first pass pays for it
    # (its own row); the runs after it are what every later process and epoch sees.
    os.environ["LAKEHOUSE_CACHE"] = tempfile.mkdtemp(prefix="bench-loader-cache-")
    results["ShardDataset: first open (sha256 of each shard), main process"] = _drain(
        DataLoader(ShardDataset(latest, "train", batch_size=b), batch_size=None)
    )
    # the first shuffled pass over a shard version derives each shard's row-major copy
    # into the cache (lakehouse.loader.rowmajor); every later pass, worker and run maps it
    results["ShardDataset: first shuffled pass (derives row-major copies), main process"] = _drain(
        DataLoader(
            ShardDataset(latest, "train", batch_size=b, shuffle=True, seed=1), batch_size=None
        )
    )
    results["gather_limit"] = _gather_limit(
        ShardDataset(latest, "train", batch_size=b, shuffle=True), b
    )
    results["shard_bytes"] = sum(p.stat().st_size for p in latest.glob("train/part-*.arrow"))
    runs = {
        "unshuffled, main process": dict(shuffle=False, shuffle_buffer=0, workers=0),
        "block shuffle, main process": dict(shuffle=True, shuffle_buffer=0, workers=0),
        "8-batch shuffle buffer, main process": dict(shuffle=True, shuffle_buffer=8 * b, workers=0),
        "unshuffled, 2 workers": dict(shuffle=False, shuffle_buffer=0, workers=2),
        "8-batch shuffle buffer, 1 worker": dict(shuffle=True, shuffle_buffer=8 * b, workers=1),
        "8-batch shuffle buffer, 2 workers": dict(shuffle=True, shuffle_buffer=8 * b, workers=2),
    }
    for name, run in runs.items():
        workers = run.pop("workers")
        ds = ShardDataset(latest, "train", batch_size=b, **run)
        results[f"ShardDataset: {name}"] = _drain(
            DataLoader(ds, batch_size=None, num_workers=workers)
        )
    results["HF datasets with_format(torch), 2 workers"] = _huggingface(latest, work, b, 2)
    results["pandas row Dataset, 2 workers (5 batches)"] = _pandas(latest, work, b)
    small = _write_shards(args.workdir / str(args.rows // 10), args.rows // 10)
    results["s3_first_batch"] = _s3_first_batch(
        work, {args.rows // 10: small, args.rows: latest}, b
    )
    if torch.cuda.is_available():
        results["gpu"] = _gpu(latest, b, int(limit["bytes"]))
    _print(results)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"loader-{args.rows}.json"
    out.write_text(json.dumps(results, indent=2))
    print(f"results in {out}")


def _print(results: dict) -> None:
    limit = results["memcpy"]["gb_per_s"]
    print(f"memcpy of the same bytes: {limit:.2f} GB/s")
    values, stored = results["memcpy"]["bytes"], results["shard_bytes"]
    print(f"train shards: {stored / 1e6:,.1f} MB on disk for {values / 1e6:,.1f} MB of values")
    gather = results["gather_limit"]["gb_per_s"]
    print(
        f"random-row gather alone (index_select of sorted random rows, 8 shards): "
        f"{gather:.2f} GB/s ({gather / limit:.2f}x memcpy), the ceiling of a shuffled batch"
    )
    print(
        f"{'run':48} {'samples/s':>12} {'GB/s':>7} {'x memcpy':>9} {'1st batch':>10} "
        f"{'steady x memcpy':>16}"
    )
    for name, r in results.items():
        if isinstance(r, dict) and "samples_per_s" in r:
            steady = r.get("steady_gb_per_s")
            print(
                f"{name:48} {r['samples_per_s']:>12,.0f} {r['gb_per_s']:>7.2f} "
                f"{r['gb_per_s'] / limit:>9.3f} {r['first_batch_s']:>9.3f}s "
                f"{steady / limit if steady else float('nan'):>16.3f}"
            )
            for when in ("first", "last"):
                rss = r.get(f"worker_rss_{when}")
                if rss:
                    mb = ", ".join(
                        f"anon {w['RssAnon'] / 2**20:.0f} MB file {w['RssFile'] / 2**20:.0f} MB"
                        for w in rss
                    )
                    print(f"{'':48}   workers at {when} batch: {mb}")
    for name, r in results.get("s3_first_batch", {}).items():
        print(
            f"S3 first batch, {name}: {r['first_batch_s'] * 1000:,.0f} ms "
            f"({r['fetched_bytes_at_first_batch'] / 1e6:,.0f} of "
            f"{r['version_bytes'] / 1e6:,.0f} MB fetched)"
        )
    gpu = results.get("gpu")
    if gpu:
        print(f"pinned H2D copy: {gpu['pinned_h2d']['gb_per_s']:.2f} GB/s")
        r = gpu["shard_dataset_gpu_prefetcher"]
        print(f"GPUPrefetcher: {r['samples_per_s']:,.0f} samples/s, {r['gb_per_s']:.2f} GB/s")


if __name__ == "__main__":
    main()
