"""The nightly job under Dagster against the same job as `lakehouse run`, on the same data.

    python benchmarks/bench_orchestrate.py --events 1000000 [--workdir /tmp/lakehouse-bench]

One landing folder (a history of ``--events`` events, then one night's dump) is copied into
two deployments. Each runs two nights: the history's first (full) build, then the next
night (incremental). One runs ``lakehouse.job.run_job`` (what ``lakehouse run`` calls), the
other the Dagster job ``nightly`` in process (``lakehouse.orchestrate``: dbt as a dagster-dbt
subprocess, the gate as asset checks, every event recorded in an ephemeral instance).
Target: Dagster adds <= 15% to a night's wall time.

Results: benchmarks/results/orchestrate-<events>.json; figures in benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
os.environ.setdefault("LAKEHOUSE_PII_SALT", "bench-orchestrate-salt")

from bench_job import save_results
from bench_nights import END, _config


def _plain(root: Path, as_of) -> float:
    from lakehouse.job import Layout, run_job

    started = time.perf_counter()
    report = run_job(Layout.from_root(root, env={}), as_of=as_of)
    assert report.ok, report.failure
    return time.perf_counter() - started


def _dagster(defs, instance, root: Path, as_of) -> float:
    from lakehouse.orchestrate import LakehouseResource

    config = LakehouseResource(root=str(root), as_of=as_of.isoformat()).run_config()
    started = time.perf_counter()
    result = defs.resolve_job_def("nightly").execute_in_process(
        run_config=config, instance=instance
    )
    assert result.success
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/lakehouse-bench"))
    args = parser.parse_args()
    from dagster import DagsterInstance

    from lakehouse.orchestrate import build_definitions
    from lakehouse.synth import generate

    work = args.workdir / f"orchestrate-{args.events}"
    shutil.rmtree(work, ignore_errors=True)
    landing = work / "landing"
    history = _config(landing, args.events, 60, 0)
    generate(history)
    defs, instance = build_definitions(), DagsterInstance.ephemeral()
    results: dict = {"events": args.events, "nights": []}
    for night in range(2):
        if night:
            generate(replace(history, nights=1))
        clock = END + timedelta(days=night, hours=6)
        figures = {}
        for name in ("lakehouse run", "dagster"):
            root = work / name.replace(" ", "-")
            shutil.rmtree(root / "landing", ignore_errors=True)
            shutil.copytree(landing, root / "landing")
            if name == "dagster":
                figures[name] = _dagster(defs, instance, root, clock)
            else:
                figures[name] = _plain(root, clock)
        figures["ratio"] = figures["dagster"] / figures["lakehouse run"]
        results["nights"].append(figures)
        print(
            f"night {night + 1}: lakehouse run {figures['lakehouse run']:.1f} s, "
            f"dagster {figures['dagster']:.1f} s ({figures['ratio']:.2f}x)",
            flush=True,
        )
    save_results(f"orchestrate-{args.events}", results)


if __name__ == "__main__":
    main()
