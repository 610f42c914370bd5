"""A night on the Spark cluster against a full rebuild on the cluster, and against DuckDB.

    python benchmarks/bench_spark_cluster.py --events 1000000 [--night-events 170000]
        [--executor-memory 4g] [--workdir /tmp/lakehouse-bench]

The history and the next night of bench_nights.py (``night-<events>-<night events>/landing``
and ``landing-1``, generated when missing) are ingested into a fresh lake. A cluster starts
(`lakehouse.warehouse.spark_cluster`: a master, two one-core workers, the Thrift server),
then, each `lakehouse build` in its own subprocess:

1. the history, built on the cluster (``--engine spark-thrift``) and on DuckDB;
2. the night's files ingested; the night built incrementally on the cluster and on DuckDB;
3. the same lake rebuilt with ``--full-refresh`` on the cluster (another schema) and on DuckDB.

Ratios in the same run: the cluster's night over its full rebuild, and over DuckDB's night.
Where the cluster's time goes comes from dbt's run_results.json of each build: the hooks,
each layer's models, the tests, and what is outside dbt's nodes (starting dbt, parsing,
attaching the tables to the warehouse file). The two nights' training tables are checked
equal before the times count. Results: benchmarks/results/spark-cluster-<events>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_nights import _config, _generate
from bench_warehouse import CHECK, REPO, RESULTS, _run
from lakehouse.warehouse.spark import ENV_SPARK_SCHEMA
from lakehouse.warehouse.spark_cluster import spark_cluster


def _lakehouse(*args: str, env: dict[str, str] | None = None) -> float:
    start = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-m", "lakehouse.cli", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, "LAKEHOUSE_PII_SALT": "bench-key", **(env or {})},
    )
    if out.returncode:
        raise RuntimeError(f"lakehouse {' '.join(args)} failed:\n{out.stdout[-3000:]}")
    return time.perf_counter() - start


def _where(target: Path, wall: float) -> dict:
    """Seconds per kind of node from dbt's run_results.json (threads overlap, so the parts
    sum to more than dbt's elapsed time), and the wall time outside dbt's nodes."""
    results = json.loads((target / "run_results.json").read_text())
    nodes = json.loads((target / "manifest.json").read_text())["nodes"]
    parts: dict[str, float] = defaultdict(float)
    for r in results["results"]:
        uid = r["unique_id"]
        kind = uid.split(".")[0]
        if kind == "model":
            kind = "models " + nodes[uid]["original_file_path"].split("/")[1]
        parts[kind] += r["execution_time"]
    slowest = sorted(results["results"], key=lambda r: -r["execution_time"])[:5]
    return {
        "dbt_elapsed": round(results["elapsed_time"], 1),
        "outside_dbt": round(wall - results["elapsed_time"], 1),
        "node_seconds": {k: round(v, 1) for k, v in sorted(parts.items())},
        "slowest": {r["unique_id"].split(".")[-1]: round(r["execution_time"], 1) for r in slowest},
    }


def _build(engine: str, lake: Path, warehouse: Path, target: Path, *extra: str, env=None) -> dict:
    shutil.rmtree(target, ignore_errors=True)
    wall = _lakehouse(
        "build", "--engine", engine, "--lake", str(lake), "--warehouse", str(warehouse), *extra,
        env={"DBT_TARGET_PATH": str(target), **(env or {})},
    )  # fmt: skip
    print(f"  {engine} {' '.join(extra)}: {wall:.1f} s", flush=True)
    return {"seconds": round(wall, 1), **_where(target, wall)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--night-events", type=int, default=170_000)
    parser.add_argument("--executor-memory", default="4g")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/lakehouse-bench"))
    args = parser.parse_args()
    root = args.workdir / f"night-{args.events}-{args.night_events}"
    landing, with_night = root / "landing", root / "landing-1"
    if not (landing / "_generator.json").exists():
        _generate(_config(landing, args.events, 60, 0))
    if not (with_night / "_generator.json").exists():
        shutil.copytree(landing, with_night, copy_function=os.link, dirs_exist_ok=True)
        _generate(_config(with_night, args.events, 60, 1, args.night_events))
    work = root / "spark-cluster"
    shutil.rmtree(work, ignore_errors=True)
    lake, targets = work / "lake", work / "targets"
    print(f"history of {args.events:,} events", flush=True)
    _lakehouse("ingest", str(landing), "--lake", str(lake))
    cluster_wh, duck_wh = work / "warehouse.duckdb", work / "duckdb" / "warehouse.duckdb"
    started = time.perf_counter()
    with spark_cluster(work / "spark", executor_memory=args.executor_memory):
        startup = time.perf_counter() - started
        print(f"cluster up in {startup:.1f} s", flush=True)
        history = {
            "cluster": _build("spark-thrift", lake, cluster_wh, targets / "h-spark"),
            "duckdb": _build("duckdb", lake, duck_wh, targets / "h-duck"),
        }
        print("the next night", flush=True)
        _lakehouse("ingest", str(with_night), "--lake", str(lake))
        night = {
            "cluster": _build("spark-thrift", lake, cluster_wh, targets / "n-spark"),
            "duckdb": _build("duckdb", lake, duck_wh, targets / "n-duck"),
        }
        checks = {"cluster": _run(CHECK, str(cluster_wh)), "duckdb": _run(CHECK, str(duck_wh))}
        if checks["cluster"] != checks["duckdb"]:
            raise SystemExit(f"the cluster and DuckDB disagree: {checks}")
        print("the same lake, rebuilt in full", flush=True)
        full_wh, full_duck = work / "full.duckdb", work / "duckdb" / "full.duckdb"
        rebuild = {ENV_SPARK_SCHEMA: "lakehouse_full"}  # beside the nights' tables
        full = {
            "cluster": _build(
                "spark-thrift", lake, full_wh, targets / "f-spark", "--full-refresh", env=rebuild
            ),
            "duckdb": _build("duckdb", lake, full_duck, targets / "f-duck", "--full-refresh"),
        }
    result = {
        "history_events": args.events,
        "night_events": args.night_events,
        "executor_memory": args.executor_memory,
        "cluster_startup_seconds": round(startup, 1),
        "history": history,
        "night": night,
        "full": full,
        "night_over_full": {
            engine: round(night[engine]["seconds"] / full[engine]["seconds"], 3)
            for engine in ("cluster", "duckdb")
        },
        "cluster_over_duckdb": {
            run: round(steps["cluster"]["seconds"] / steps["duckdb"]["seconds"], 2)
            for run, steps in (("history", history), ("night", night), ("full", full))
        },
        "training_table": checks["duckdb"],
        "equal": True,
    }
    print(json.dumps(result, indent=2), flush=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"spark-cluster-{args.events}.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
