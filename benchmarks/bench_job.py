"""The whole nightly job at growing sizes: time and peak memory of every step, and how they grow.

    python benchmarks/bench_job.py --events 1000000 10000000 100000000 [--workdir DIR]
        [--steps ingest "dbt build"] [--memory-limit 4GB]

For each size: generate a landing folder (reused when the workdir has one with the same
settings; generation is not part of the job), then run each step of `lakehouse run` in its
own subprocess on fresh outputs, so every step gets its own peak RSS (VmHWM):
ingest -> dbt build -> quality gate -> export, then one epoch of the loader over the train
split (ShardDataset, shuffled, in process). ``--steps`` runs only some steps (each needs
the ones before it); ``--memory-limit`` bounds DuckDB in dbt (LAKEHOUSE_DUCKDB_MEMORY_LIMIT).
Results: benchmarks/results/job-<sizes>.json; the table and the method are in BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
ALL_STEPS = ("ingest", "dbt build", "quality gate", "export", "loader epoch")
REPO = Path(__file__).resolve().parents[1]
AS_OF = "2026-11-01T06:00:00+00:00"  # the generator's default end: last night's dump

# one step of the job in a fresh interpreter: `python -c STEP <step> <args>` prints its time,
# peak RSS (VmHWM) and rows as JSON. bench_nights.py runs its steps through it too.
STEP = """
import json, sys, time
from datetime import datetime
from pathlib import Path
def peak():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
step, args = sys.argv[1], sys.argv[2:]
start = time.perf_counter()
rows = None
if step == "ingest":  # landing lake [now]
    from lakehouse.ingest import ingest
    now = datetime.fromisoformat(args[2]) if len(args) > 2 else None
    report = ingest(args[0], args[1], now=now)
    assert report.ok, [f.error for f in report.failed]
    rows = sum(f.rows_read for f in report.files if f.status == "ingested")
elif step == "dbt build":  # lake warehouse [incremental|full]
    from lakehouse.warehouse import project_dir, run_dbt
    result = run_dbt(args[0], args[1], project=project_dir(), quiet=True,
                     full_refresh=args[2:] == ["full"])
    assert result.success, (result.error, result.failures)
    rows = len(result.nodes)
elif step == "quality gate":  # lake warehouse quality as_of
    from lakehouse.quality import validate
    report, _ = validate(args[1], args[0], out=Path(args[2]), as_of=datetime.fromisoformat(args[3]))
    assert report.passed, [r.name for r in report.blocking_failures]
    rows = sum(t.rows for t in report.tables)
elif step == "export":  # warehouse shards quality lake [always|if-changed]
    from lakehouse.export import export_model
    folder, manifest = export_model(args[0], "photo_popularity_training", Path(args[1]),
                                    quality_dir=Path(args[2]), lake=args[3],
                                    if_changed=args[4:] == ["if-changed"])
    rows = sum(manifest.totals.values())
elif step == "loader epoch":  # shard version folder
    from lakehouse.loader import ShardDataset
    ds = ShardDataset(args[0], "train", batch_size=4096, shuffle=True)
    rows = sum(len(b["photo_id"]) for b in ds)
elif step == "night":  # root as_of: the whole job (lakehouse.job.run_job), seconds per step
    from lakehouse.job import Layout, run_job
    report = run_job(Layout.from_root(args[0], env={}), as_of=datetime.fromisoformat(args[1]))
    assert report.ok, report.failure
    rows = {s.name: s.seconds for s in report.steps}
print(json.dumps({"seconds": time.perf_counter() - start, "peak_rss_mb": peak(), "rows": rows}))
"""


def run_step(name: str, *args: str, checkout: Path = REPO) -> dict:
    """Run one step of STEP in its own interpreter; its time, peak RSS and rows.
    ``checkout``: another checkout's code and dbt project (a baseline commit to compare)."""
    env = None
    if checkout != REPO:
        env = {**os.environ, "PYTHONPATH": str(checkout / "src")}
    out = subprocess.run(
        [sys.executable, "-c", STEP, name, *args],
        capture_output=True,
        text=True,
        cwd=checkout,
        env=env,
    )
    if out.returncode:
        raise RuntimeError(f"{name} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _landing(events: int, work: Path) -> tuple[Path, float | None]:
    from lakehouse.synth import MANIFEST, GenerateConfig, generate

    photos = max(1_000, events // 40)
    landing = work / f"landing-{events}"
    manifest = landing / MANIFEST
    if manifest.exists() and json.loads(manifest.read_text())["config"]["events"] == events:
        return landing, None
    config = GenerateConfig(
        out=landing, users=max(500, photos // 10), photos=photos, days=60, events=events
    )
    start = time.perf_counter()
    generate(config)
    return landing, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/lakehouse-bench"))
    parser.add_argument("--steps", nargs="+", default=list(ALL_STEPS), choices=ALL_STEPS)
    parser.add_argument("--memory-limit", help="DuckDB memory_limit for dbt, e.g. 4GB")
    args = parser.parse_args()
    os.environ.setdefault("LAKEHOUSE_PII_SALT", "benchmark-only-key-" + "0" * 32)
    if args.memory_limit:
        os.environ["LAKEHOUSE_DUCKDB_MEMORY_LIMIT"] = args.memory_limit
    results = []
    for events in args.events:
        landing, generated = _landing(events, args.workdir)
        job = args.workdir / f"job-{events}"
        shutil.rmtree(job, ignore_errors=True)
        job.mkdir(parents=True)
        lake, warehouse = str(job / "lake"), str(job / "warehouse.duckdb")
        quality, shards = str(job / "quality"), str(job / "shards")
        arguments = {
            "ingest": (str(landing), lake),
            "dbt build": (lake, warehouse),
            "quality gate": (lake, warehouse, quality, AS_OF),
            "export": (warehouse, shards, quality, lake),
            "loader epoch": (str(job / "shards" / "photo_popularity_training" / "latest"),),
        }
        steps = {}
        for name in ALL_STEPS:
            if name in args.steps:
                steps[name] = run_step(name, *arguments[name])
                print(f"  {name}: {steps[name]}", flush=True)
        size = sum(p.stat().st_size for p in landing.rglob("*") if p.is_file())
        results.append(
            {
                "events": events,
                "landing_bytes": size,
                "generate_seconds": generated,
                "memory_limit": args.memory_limit,
                "steps": steps,
            }
        )
        print(json.dumps(results[-1], indent=2), flush=True)
        shutil.rmtree(job / "lake", ignore_errors=True)  # keep the disk for the next size
    for smaller, bigger in itertools.pairwise(results):
        factor = bigger["events"] / smaller["events"]
        for name, step in bigger["steps"].items():
            before = smaller["steps"].get(name)
            if before is None:
                continue
            print(
                f"{smaller['events']:,} -> {bigger['events']:,} ({factor:.0f}x events): {name} "
                f"time x{step['seconds'] / before['seconds']:.1f}, "
                f"peak RSS x{step['peak_rss_mb'] / before['peak_rss_mb']:.1f}"
            )
    bounded = f"-mem{args.memory_limit}" if args.memory_limit else ""
    save_results(f"job-{'-'.join(str(e) for e in args.events)}{bounded}", results)


def save_results(name: str, results: dict) -> Path:
    """``benchmarks/results/<name>.json``, the one place every benchmark's figures go."""
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"{name}.json"
    out.write_text(json.dumps(results, indent=2))
    print(f"results in {out}")
    return out


if __name__ == "__main__":
    main()
