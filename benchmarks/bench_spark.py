"""`dbt build` of the whole project on Spark (`local[2]`) against DuckDB, same lake, same run.

    python benchmarks/bench_spark.py --events 1000000 10000000 [--workdir /tmp/lakehouse-bench]

For each size: the lake of bench_warehouse.py (generated and ingested once, reused), then
`lakehouse build --engine duckdb` and `lakehouse build --engine spark` (seeds, models, data and
unit tests), each in its own subprocess. Peak memory is the whole process tree's resident
memory (the Python process plus, for Spark, its JVM), sampled every 100 ms from /proc. The two
training tables are checked equal (rows and label/feature sums) before the times count.
Results go to benchmarks/results/spark.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_warehouse import CHECK, REPO, RESULTS, _prepare, _run


def _tree_rss_mb(root: int) -> float:
    """Resident memory of ``root`` and all its descendants, in MB."""
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        try:
            status = Path(f"/proc/{pid}/status").read_text()
            total += int(
                next(ln for ln in status.splitlines() if ln.startswith("VmRSS:")).split()[1]
            )
            for task in Path(f"/proc/{pid}/task").iterdir():
                stack += [int(c) for c in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError, StopIteration):
            continue
    return total / 1024


def _build(engine: str, lake: Path, warehouse: Path, driver_memory: str) -> dict:
    """One `lakehouse build` in a subprocess: seconds, peak tree RSS, exit code."""
    env = {
        **os.environ,
        "LAKEHOUSE_SPARK_MASTER": "local[2]",
        "LAKEHOUSE_SPARK_DRIVER_MEMORY": driver_memory,
        "LAKEHOUSE_PII_SALT": "bench-key",
    }
    command = [
        sys.executable,
        "-m",
        "lakehouse.cli",
        "build",
        "--engine",
        engine,
        "--lake",
        str(lake),
        "--warehouse",
        str(warehouse),
    ]
    start = time.perf_counter()
    process = subprocess.Popen(
        command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    peak = 0.0
    output: list[str] = []
    reader = threading.Thread(target=lambda: output.extend(process.stdout), daemon=True)
    reader.start()
    while process.poll() is None:
        peak = max(peak, _tree_rss_mb(process.pid))
        time.sleep(0.1)
    reader.join()
    seconds = time.perf_counter() - start
    if process.returncode:
        raise RuntimeError(f"{engine} build failed:\n{''.join(output)[-3000:]}")
    return {"seconds": round(seconds, 1), "peak_rss_mb": round(peak)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/lakehouse-bench"))
    parser.add_argument("--driver-memory", default="8g", help="Spark's JVM heap (local mode)")
    args = parser.parse_args()
    results = []
    for events in args.events:
        lake = _prepare(events, args.workdir)
        runs = {}
        checks = {}
        for engine in ("duckdb", "spark"):
            folder = args.workdir / f"engine-{engine}-{events}"
            subprocess.run(["rm", "-rf", str(folder)], check=True)
            folder.mkdir(parents=True)
            warehouse = folder / "warehouse.duckdb"
            runs[engine] = _build(engine, lake, warehouse, args.driver_memory)
            checks[engine] = _run(CHECK, str(warehouse))
        if checks["spark"] != checks["duckdb"]:
            raise SystemExit(f"Spark and DuckDB disagree: {checks}")
        results.append(
            {
                "events": events,
                "duckdb": runs["duckdb"],
                "spark_local_2": runs["spark"],
                "spark_over_duckdb_seconds": round(
                    runs["spark"]["seconds"] / runs["duckdb"]["seconds"], 2
                ),
                "spark_over_duckdb_peak_rss": round(
                    runs["spark"]["peak_rss_mb"] / runs["duckdb"]["peak_rss_mb"], 2
                ),
                "training_table": checks["duckdb"],
                "equal": True,
            }
        )
        print(json.dumps(results[-1], indent=2), flush=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "spark.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
