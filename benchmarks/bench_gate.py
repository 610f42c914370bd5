"""The data-quality gate on a warehouse already built: a first run, then the next night's.

    python benchmarks/bench_gate.py --workdir /tmp/lakehouse-bench/job-100000000 \
        [--as-of 2026-11-01T06:00:00+00:00] [--memory-limit 4GB]

The workdir holds ``lake/`` and ``warehouse.duckdb`` (what ``bench_job.py`` leaves for a
size). Each run is one subprocess (``bench_job.STEP``: time and peak RSS):

1. **first run**: a fresh quality folder, so every row is checked row by row;
2. **the next night**: the same folder, so row-by-row checks read only the rows loaded since
   the first run (none here: the warehouse did not change) and table-level checks read whole
   tables (a bronze table's counts, max, min and value counts: the first run's totals plus
   the rows appended since, none here). This is the gate's fixed nightly cost at that size;
   target at 100M events: <= 60 s.

Results: benchmarks/results/gate-<workdir name>.json; figures in BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path

from bench_job import AS_OF, run_step, save_results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--as-of", default=AS_OF)
    parser.add_argument("--memory-limit", default=None, help="DuckDB memory_limit, e.g. 4GB")
    args = parser.parse_args()
    if args.memory_limit:
        os.environ["LAKEHOUSE_DUCKDB_MEMORY_LIMIT"] = args.memory_limit
    lake, warehouse = str(args.workdir / "lake"), str(args.workdir / "warehouse.duckdb")
    quality = args.workdir / "quality-bench"
    shutil.rmtree(quality, ignore_errors=True)
    results = {"workdir": str(args.workdir), "memory_limit": args.memory_limit}
    for run in ("first run", "next night"):
        step = run_step("quality gate", lake, warehouse, str(quality), args.as_of)
        results[run] = step
        print(f"{run}: {step['seconds']:.1f} s, {step['peak_rss_mb']:,.0f} MB", flush=True)
    save_results(f"gate-{args.workdir.name}", results)


if __name__ == "__main__":
    main()
