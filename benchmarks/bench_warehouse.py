"""`dbt build` time at 1M and 10M events, the training table in DuckDB vs pandas, and the
data-quality gate's time as a ratio of `dbt build` on the same warehouse.

    python benchmarks/bench_warehouse.py --events 1000000 10000000 [--workdir /tmp/bench]

For each size: generate and ingest a landing folder (reused when the workdir already has one
with the same settings), then, each in its own subprocess (peak RSS from VmHWM):
  1. `dbt build` of the whole project (seeds, models, data and unit tests);
  2. `dbt run --select +photo_popularity_training` (the training table and what it needs);
  3. the same training table computed with pandas from the same bronze Delta tables;
  4. `lakehouse validate` (all suites) on the warehouse built in 1.
The pandas result is checked against DuckDB's (rows and label/feature sums) before its time
counts. Results go to benchmarks/results/warehouse.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
REPO = Path(__file__).resolve().parents[1]

PEAK = """
def PEAK():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
"""

DBT = (
    PEAK
    + """
import json, sys, time
from lakehouse.warehouse import run_dbt, project_dir
lake, warehouse, command, select = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
start = time.perf_counter()
result = run_dbt(lake, warehouse, command=command, select=select or None,
                 project=project_dir(), quiet=True)
assert result.success, result.failures
print(json.dumps({"seconds": time.perf_counter() - start, "peak_rss_mb": PEAK(),
                  "nodes": len(result.nodes),
                  "sql_seconds": sum(n.seconds for n in result.nodes)}))
"""
)

PANDAS = (
    PEAK
    + """
import json, sys, time
sys.path.insert(0, sys.argv[2])
from pandas_training import training_table
start = time.perf_counter()
table = training_table(sys.argv[1])
seconds = time.perf_counter() - start
print(json.dumps({"seconds": seconds, "peak_rss_mb": PEAK(), "rows": len(table),
                  "likes_7d": int(table.likes_7d.sum()),
                  "owner_likes_received": int(table.owner_likes_received.sum()),
                  "owner_events_30d": int(table.owner_events_30d.sum()),
                  "popular": int(table.is_popular.sum())}))
"""
)

GATE = (
    PEAK
    + """
import json, sys, time
from datetime import datetime, timedelta
from lakehouse.quality import validate
lake, warehouse = sys.argv[1], sys.argv[2]
start = time.perf_counter()
report, _ = validate(warehouse, lake, as_of=datetime.fromisoformat(sys.argv[3]))
print(json.dumps({"seconds": time.perf_counter() - start, "peak_rss_mb": PEAK(),
                  "passed": report.passed,
                  "expectations": sum(len(t.results) for t in report.tables)}))
"""
)

CHECK = """
import json, sys
from lakehouse.warehouse import connect, project_dir
con = connect(sys.argv[1], project_dir())
rows, likes, received, recent, popular = con.sql(
    "select count(*), sum(likes_7d), sum(owner_likes_received), sum(owner_events_30d), "
    "count(*) filter (where is_popular) from photo_popularity_training").fetchone()
print(json.dumps({"rows": rows, "likes_7d": int(likes), "owner_likes_received": int(received),
                  "owner_events_30d": int(recent), "popular": popular}))
"""


def _run(code: str, *args: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=REPO
    )
    if out.returncode:
        raise RuntimeError(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def _prepare(events: int, work: Path) -> Path:
    from lakehouse.ingest import ingest
    from lakehouse.synth import MANIFEST, GenerateConfig, generate

    photos = max(1_000, events // 40)
    landing, lake = work / f"landing-{events}", work / f"lake-{events}"
    config = GenerateConfig(
        out=landing, users=max(500, photos // 10), photos=photos, days=60, events=events
    )
    manifest = landing / MANIFEST
    if not (manifest.exists() and json.loads(manifest.read_text())["config"]["events"] == events):
        generate(config)
    if not (lake / "bronze" / "_ingest_log").exists():
        assert ingest(str(landing), str(lake)).ok
    return lake


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/lakehouse-bench"))
    args = parser.parse_args()
    results = []
    for events in args.events:
        lake = _prepare(events, args.workdir)
        warehouse = args.workdir / f"warehouse-{events}.duckdb"
        warehouse.unlink(missing_ok=True)
        build = _run(DBT, str(lake), str(warehouse), "build")
        training = _run(DBT, str(lake), str(warehouse), "run", "+photo_popularity_training")
        duck = _run(CHECK, str(warehouse))
        gate = _run(GATE, str(lake), str(warehouse), "2026-11-01T06:00:00+00:00")
        pandas = _run(PANDAS, str(lake), str(Path(__file__).parent))
        same = {k: pandas[k] for k in duck} == duck
        results.append(
            {
                "events": events,
                "dbt_build": build,
                "dbt_run_training_table": training,
                "pandas_training_table": pandas,
                "pandas_equals_duckdb": same,
                "quality_gate": gate,
                "gate_over_dbt_build_seconds": round(gate["seconds"] / build["seconds"], 3),
                "duckdb_checks": duck,
                "pandas_over_duckdb_seconds": round(pandas["seconds"] / training["seconds"], 2),
                "pandas_over_duckdb_peak_rss": round(
                    pandas["peak_rss_mb"] / training["peak_rss_mb"], 2
                ),
            }
        )
        print(json.dumps(results[-1], indent=2), flush=True)
        if not same:
            raise SystemExit(f"pandas and DuckDB disagree: {pandas} vs {duck}")
    if len(results) > 1:
        small, big = results[0], results[-1]
        growth = big["dbt_build"]["seconds"] / small["dbt_build"]["seconds"]
        print(f"dbt build grows {growth:.1f}x for {big['events'] / small['events']:.0f}x events")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "warehouse.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
