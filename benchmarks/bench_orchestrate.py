"""The nightly job under Dagster against the same job as `lakehouse run`, on the same data.

    python benchmarks/bench_orchestrate.py --events 1000000 [--workdir /tmp/lakehouse-bench]

One landing folder (a history of ``--events`` events, then one night's dump) is copied into
two deployments. Each runs two nights: the history's first (full) build, then the next
night (incremental). Each night is a fresh process: one runs ``lakehouse.job.run_job`` (what
``lakehouse run`` calls), the other the Dagster job ``nightly`` in process
(``lakehouse.orchestrate``: dbt as a dagster-dbt subprocess, the gate as asset checks,
every event stored in a SQLite Dagster instance, as ``dagster dev`` keeps them).
Target: Dagster adds <= 15% to a night's wall time (missed at 1M: see benchmarks/README.md).

Results: benchmarks/results/orchestrate-<events>.json; figures in benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
os.environ.setdefault("LAKEHOUSE_PII_SALT", "bench-orchestrate-salt")

from bench_job import save_results
from bench_nights import END, _config

# each night is one fresh process, as cron starts `lakehouse run` and Dagster a run worker
PLAIN = """
import sys
from datetime import datetime
from lakehouse.job import Layout, run_job
report = run_job(Layout.from_root(sys.argv[1], env={}), as_of=datetime.fromisoformat(sys.argv[2]))
assert report.ok, report.failure
"""
DAGSTER = """
import sys
from dagster import DagsterInstance
from lakehouse.orchestrate import LakehouseResource, build_definitions
config = LakehouseResource(root=sys.argv[1], as_of=sys.argv[2]).run_config()
result = build_definitions().resolve_job_def("nightly").execute_in_process(
    run_config=config, instance=DagsterInstance.get()
)
assert result.success
"""


def _night(code: str, root: Path, as_of: str) -> float:
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-c", code, str(root), as_of],
        check=True,
        stdout=subprocess.DEVNULL,
        env={
            **os.environ,
            "DAGSTER_HOME": str(root.parent / "dagster-home"),
            # each deployment its own dbt artifacts, as on a machine that runs one: two
            # deployments sharing the checkout's target/ would each find the other's parse
            # state (another warehouse, other vars) and parse in full every night
            "DBT_TARGET_PATH": str(root / "dbt-target"),
            "DBT_LOG_PATH": str(root / "dbt-logs"),
        },
    )
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/lakehouse-bench"))
    args = parser.parse_args()
    from lakehouse.synth import generate

    work = args.workdir / f"orchestrate-{args.events}"
    shutil.rmtree(work, ignore_errors=True)
    landing = work / "landing"
    history = _config(landing, args.events, 60, 0)
    generate(history)
    (work / "dagster-home").mkdir()
    (work / "dagster-home" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
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
            code = DAGSTER if name == "dagster" else PLAIN
            figures[name] = _night(code, root, clock.isoformat())
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
