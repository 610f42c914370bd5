"""Shards for the loader tests, written by the real exporter from a small DuckDB table, and
the per-rank job the distributed test spawns (it must live in an importable module)."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import duckdb
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader

from lakehouse.export import ExportSpec, export_model
from lakehouse.loader import ShardDataset
from lakehouse.warehouse import project_dir

MODEL = "loader_fixture"
ROWS = 1_000  # split by id: 80% train, 10% val, 10% test
SHARD_ROWS = 97  # does not divide the batch sizes the tests use, on purpose


def write_shards(work: Path, *, compression: str | None = None) -> Path:
    """``<work>/shards/loader_fixture/latest``: photo_id, a float feature, a 4-wide embedding,
    a label, a timestamp and a category (a third of them missing), all derived from photo_id
    so any row can be checked from its id alone."""
    warehouse = work / "warehouse.duckdb"
    con = duckdb.connect(str(warehouse))
    con.execute(
        f"""
        create or replace table {MODEL} as
        select id as photo_id,
               case when id % 10 = 8 then 'val' when id % 10 = 9 then 'test' else 'train' end
                 as split,
               cast(id * 0.5 as double) as feature,
               [cast(id as float), cast(id + 1 as float), cast(-id as float), 1.0]::float[4]
                 as embedding,
               id % 7 = 0 as is_popular,
               case id % 3 when 0 then 'portrait' when 1 then 'landscape' end as orientation,
               timestamp '2026-01-01' + to_seconds(id) as posted_at
        from range({ROWS}) t(id)
        """
    )
    con.execute(
        "create table lakehouse_bronze_reads (invocation_id varchar, table_name varchar, "
        "delta_version bigint, recorded_at timestamp)"
    )
    con.close()
    folder, _ = export_model(
        warehouse,
        MODEL,
        work / "shards",
        shard_rows=SHARD_ROWS,
        compression=compression,
        force=True,
        project=project_dir(Path(__file__).parent),
        spec=ExportSpec(key="photo_id"),  # a table of its own, not a dbt model with meta
    )
    return folder.parent / "latest"


def rank_job(rank: int, shards: str, out: str, epochs: int, batch_size: int) -> None:
    """One rank of the exactly-once test: gloo process group, 2 DataLoader workers, an
    all_reduce per batch (a rank with fewer batches would hang it), ids per epoch to a file."""
    dist.init_process_group(
        "gloo",
        init_method=f"file://{out}/store",
        rank=rank,
        world_size=2,
        timeout=timedelta(seconds=60),
    )
    dataset = ShardDataset(shards, "train", batch_size=batch_size, shuffle=True, seed=5)
    loader = DataLoader(dataset, batch_size=None, num_workers=2)
    seen = []
    for epoch in range(epochs):
        dataset.set_epoch(epoch)
        ids, padding, batches = [], [], 0
        for batch in loader:
            batches += 1
            step = torch.ones(1)
            dist.all_reduce(step)
            assert step.item() == 2
            ids += batch["photo_id"].tolist()
            padding += batch["is_padding"].tolist()
        seen.append({"ids": ids, "padding": padding, "batches": batches})
    Path(out, f"rank{rank}.json").write_text(json.dumps(seen))
    dist.destroy_process_group()
