"""Export throughput against DuckDB writing the same rows to Parquet, and what Arrow IPC
compression costs when the shards are loaded.

    python benchmarks/bench_export.py --warehouse /tmp/lakehouse-bench/warehouse-10000000.duckdb

Needs a built warehouse (bench_warehouse.py leaves one). For each compression (none, lz4,
zstd): export photo_popularity_training (forced: the benchmark is not a gate), then load every
shard back (memory-mapped, all columns materialised) and time it. The baseline in the same run
is DuckDB's COPY of the same select (same columns, same order) to one Parquet file.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.ipc as ipc

from lakehouse.export import export_model
from lakehouse.export.writer import ExportSpec, plan_columns
from lakehouse.warehouse import connect, model_meta, project_dir

MODEL = "photo_popularity_training"
RESULTS = Path(__file__).parent / "results"


def _load_all(folder: Path) -> tuple[float, int]:
    start, nbytes = time.perf_counter(), 0
    for path in sorted(folder.glob("*/part-*.arrow")):
        with pa.memory_map(str(path)) as source:
            table = ipc.open_file(source).read_all()
            nbytes += sum(
                b.size
                for c in table.columns
                for ch in c.chunks
                for b in ch.buffers()
                if b is not None
            )
    return time.perf_counter() - start, nbytes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--warehouse", type=Path, required=True)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    project = project_dir()
    con = connect(args.warehouse, project)
    spec = ExportSpec.from_meta(MODEL, model_meta(project, MODEL))
    select, _, _ = plan_columns(con, MODEL, spec, None)
    rows = con.execute(f"select count(*) from {MODEL}").fetchone()[0]
    results: dict[str, object] = {"rows": rows}
    with tempfile.TemporaryDirectory() as tmp:
        parquet = Path(tmp) / "same.parquet"
        start = time.perf_counter()
        con.execute(
            f"copy (select {', '.join(select)} from {MODEL} order by split, photo_id) "
            f"to '{parquet}' (format parquet)"
        )
        results["duckdb_parquet_seconds"] = time.perf_counter() - start
        con.close()
        for compression in (None, "lz4", "zstd"):
            out = Path(tmp) / (compression or "none")
            start = time.perf_counter()
            folder, manifest = export_model(
                args.warehouse, MODEL, out, force=True, compression=compression, project=project
            )
            seconds = time.perf_counter() - start
            size = sum(s.bytes for s in manifest.shards)
            loads = [_load_all(folder) for _ in range(args.repeat)]
            load_s = min(t for t, _ in loads)
            results[compression or "none"] = {
                "export_seconds": round(seconds, 3),
                "rows_per_s": round(rows / seconds),
                "mb_on_disk": round(size / 1e6, 1),
                "export_mb_per_s": round(size / 1e6 / seconds, 1),
                "export_over_parquet_seconds": round(
                    seconds / results["duckdb_parquet_seconds"], 2
                ),
                "load_seconds": round(load_s, 4),
                "load_gb_per_s": round(loads[0][1] / 1e9 / load_s, 2),
            }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "export.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
