"""Night after night: the next night incrementally against a full rebuild, and 30 nights in a row.

    python benchmarks/bench_nights.py --events 10000000 [100000000 ...] [--nights 5]
        [--series-events 1000000] [--series-nights 30] [--workdir DIR] [--skip-series]
        [--skip-night] [--skip-full] [--memory-limit 4GB] [--night-events 170000]
        [--continue [--baseline CHECKOUT] [--operation NAME]]

Part 1, the next night. A history of ``--events`` events over 60 days (the generator's
world: ``events / 40`` photos, ``events / 400`` users) is ingested, built, gated and
exported; then the next night's dump (about 1/60 of the history, with late events, a
retried upload and edited captions) goes through the job step by step:

- incremental: ingest of the new files into the same lake, ``dbt build`` (incremental
  models), the gate, export (publishes only a change);
- full rebuild of the same lake, in the same run: ingest of the whole landing folder into a
  fresh lake, ``dbt build --full-refresh`` into a fresh warehouse, the gate, export;
- then ``--nights`` - 1 more nights in a row, incrementally, on the first lake.

Each ``--events`` size runs in turn, in the same run (e.g. 10M and 100M: how a night grows
with the history). A night is the history's daily volume, so it grows with the history too;
``--night-events`` makes every night that many events (its new photos and users in the
world's proportions), the same night on every history. ``--memory-limit`` bounds DuckDB
(LAKEHOUSE_DUCKDB_MEMORY_LIMIT). ``--skip-full`` leaves the full rebuild out (at 100M it is
about 25 minutes of a 2-core machine), for runs about how the nights grow.

Each step runs in its own subprocess, so each gets its own peak RSS (VmHWM).

``--continue`` goes on with the lake, warehouse and nights a previous part 1 left in the
workdir: ``--nights`` more nights, without rebuilding the history (at 100M, 26 minutes).
``--baseline CHECKOUT`` (with ``--continue``) also runs each of those nights' ``dbt build``
with another checkout's code and dbt project (e.g. a ``git worktree`` of the commit before
a change) on a copy of the warehouse made before the first of them, over the same lake:
old and new models, the same nights, in the same run; the two builds take turns going
first. ``--operation NAME`` runs ``dbt run-operation NAME`` on the warehouse after that
copy, for a change that comes with one (``add_key_hashes``).

Part 2, the series. A smaller history of ``--series-nights`` days (``--series-events``
events), then ``--series-nights`` nights in a row, each a whole ``lakehouse run`` (the job
API in one subprocess per night): the history doubles, and the seconds per night and step
should not grow with it. Writes a PNG chart next to BENCHMARKS.md.

Results: benchmarks/results/nights-<events>[-night-<night events>].json; the method and
the figures in
BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench_job import run_step

RESULTS = Path(__file__).parent / "results"
REPO = Path(__file__).resolve().parents[1]
CHART = REPO / "docs" / "nights.png"
END = datetime(2026, 11, 1, tzinfo=UTC)
JOB_HOUR = timedelta(hours=6)


def _step(name: str, *args: str) -> dict:
    result = run_step(name, *args)
    print(f"  {name}: {result['seconds']:.1f} s, {result['peak_rss_mb']:,.0f} MB", flush=True)
    return result


def _build_gate_export(lake, warehouse, quality, shards, clock: datetime, build, export):
    """The job's steps after ingest, each in its own interpreter (``build``: incremental or
    full, ``export``: always or if-changed)."""
    return {
        "dbt build": _step("dbt build", lake, warehouse, build),
        "quality gate": _step("quality gate", lake, warehouse, quality, clock.isoformat()),
        "export": _step("export", warehouse, shards, quality, lake, export),
    }


def _config(landing: Path, events: int, days: int, nights: int, night_events: int | None = None):
    from lakehouse.synth import GenerateConfig

    photos = max(1_000, events // 40)
    return GenerateConfig(
        out=landing,
        users=max(500, photos // 10),
        photos=photos,
        days=days,
        events=events,
        seed=7,
        dirty_rate=0.001,
        end=END,
        nights=nights,
        night_events=night_events,
    )


def _generate(config) -> float:
    from lakehouse.synth import generate

    start = time.perf_counter()
    generate(config)
    return time.perf_counter() - start


def _nights_in(landing: Path) -> int | None:
    from lakehouse.synth import MANIFEST

    try:
        return int(json.loads((landing / MANIFEST).read_text())["config"].get("nights", 0))
    except (OSError, ValueError, KeyError):
        return None


def _incremental_night(
    root: Path, events: int, night: int, night_events: int | None, baseline: Path | None = None
) -> dict:
    """Night ``night``'s dump added to ``root``'s landing-1, then the job's steps on its
    lake and warehouse, incrementally (export if changed). ``baseline``: the night's `dbt
    build` also with that checkout, on ``root``'s baseline.duckdb; the two builds take turns
    going first, so neither always finds the night's files in the page cache."""
    with_night, lake = root / "landing-1", str(root / "lake")
    print(f"night {night}, incrementally", flush=True)
    _generate(_config(with_night, events, 60, night, night_events))
    clock = END + timedelta(days=night) + JOB_HOUR
    steps = {"ingest": _step("ingest", str(with_night), lake, clock.isoformat())}
    if baseline is not None and night % 2:
        steps["baseline dbt build"] = _baseline_build(root, baseline)
    steps.update(
        _build_gate_export(
            lake,
            str(root / "warehouse.duckdb"),
            str(root / "quality"),
            str(root / "shards"),
            clock,
            "incremental",
            "if-changed",
        )
    )
    if baseline is not None and not night % 2:
        steps["baseline dbt build"] = _baseline_build(root, baseline)
    return steps


def _baseline_build(root: Path, baseline: Path) -> dict:
    print(f"  baseline ({baseline}):", flush=True)
    result = run_step(
        "dbt build", str(root / "lake"), str(root / "baseline.duckdb"), "incremental",
        checkout=baseline,
    )  # fmt: skip
    print(f"  dbt build: {result['seconds']:.1f} s", flush=True)
    return result


def _operation(name: str, lake: str, warehouse: str) -> float:
    """``dbt run-operation <name>`` on the warehouse (this checkout's project); seconds."""
    started = time.perf_counter()
    subprocess.run(
        [str(Path(sys.executable).parent / "dbt"), "run-operation", name],
        cwd=REPO,
        env={**os.environ, "LAKEHOUSE_LAKE": lake, "LAKEHOUSE_DUCKDB": warehouse},
        check=True,
    )
    seconds = time.perf_counter() - started
    print(f"  dbt run-operation {name}: {seconds:.1f} s", flush=True)
    return seconds


def next_night(
    events: int,
    work: Path,
    nights: int = 1,
    night_events: int | None = None,
    full_rebuild: bool = True,
) -> dict:
    """Part 1: the next night, incremental against a full rebuild of the same lake.
    ``night_events``: each night's events (default: the history's volume of a day);
    ``full_rebuild``: False leaves the rebuild (and the ratios to it) out."""
    root = work / (f"night-{events}" + ("" if night_events is None else f"-{night_events}"))
    landing = root / "landing"
    parts = ("lake", "lake-full", "warehouse.duckdb", "full.duckdb", "quality", "shards")
    for part in (*parts, "quality-full", "shards-full"):
        target = root / part
        shutil.rmtree(target, ignore_errors=True) if target.is_dir() else target.unlink(
            missing_ok=True
        )
    print(f"history of {events:,} events", flush=True)
    if _nights_in(landing) not in (0, None):  # the history's folder holds the history only
        shutil.rmtree(landing)
    generated = _generate(_config(landing, events, 60, 0))
    # the night's dump: the same files (hard links) plus the first night's
    with_night = root / "landing-1"
    shutil.rmtree(with_night, ignore_errors=True)
    shutil.copytree(landing, with_night, copy_function=os.link)
    _generate(_config(with_night, events, 60, 1, night_events))
    lake, warehouse = str(root / "lake"), str(root / "warehouse.duckdb")
    quality, shards = str(root / "quality"), str(root / "shards")
    night0, night1 = END + JOB_HOUR, END + timedelta(days=1) + JOB_HOUR
    history = {
        "ingest": _step("ingest", str(landing), lake, night0.isoformat()),
        **_build_gate_export(lake, warehouse, quality, shards, night0, "incremental", "always"),
    }
    print("the next night, incrementally", flush=True)
    incremental = {
        "ingest": _step("ingest", str(with_night), lake, night1.isoformat()),
        **_build_gate_export(lake, warehouse, quality, shards, night1, "incremental", "if-changed"),
    }
    runs = {"history": history, "incremental": incremental}
    ratios = None
    if full_rebuild:
        print("the same lake, rebuilt in full", flush=True)
        # the whole landing folder into a fresh lake; dbt --full-refresh of the same lake
        full_wh, full_quality = str(root / "full.duckdb"), str(root / "quality-full")
        runs["full"] = full = {
            "ingest": _step("ingest", str(with_night), str(root / "lake-full"), night1.isoformat()),
            **_build_gate_export(
                lake, full_wh, full_quality, str(root / "shards-full"), night1, "full", "always"
            ),
        }
        ratios = {
            name: round(incremental[name]["seconds"] / full[name]["seconds"], 3) for name in full
        }
    # the gate against dbt build in the same run (target <= 0.15): every row on a first run and
    # on a rebuilt lake; the night's new rows (and whole-table checks) on the next night
    gate_over_dbt = {
        run: round(steps["quality gate"]["seconds"] / steps["dbt build"]["seconds"], 3)
        for run, steps in runs.items()
    }
    more = []
    for night in range(2, nights + 1):
        more.append(_incremental_night(root, events, night, night_events))
    rows_read = incremental["ingest"]["rows"]
    return {
        "history_events": events,
        "night_events": night_events,
        "night_rows_read": rows_read,
        "generate_seconds": generated,
        "history": history,
        "incremental": incremental,
        "full": runs.get("full"),
        "incremental_over_full": ratios,
        "more_nights": more,
        "gate_over_dbt_build": gate_over_dbt,
    }


def more_nights(
    events: int,
    work: Path,
    nights: int,
    night_events: int | None,
    baseline: Path | None,
    operation: str | None = None,
) -> dict:
    """``nights`` more nights on the lake and warehouse part 1 left; with ``baseline``,
    each night's ``dbt build`` also with that checkout, on its own copy of the warehouse;
    ``operation``: a dbt run-operation on the warehouse first (after the copy), for a change
    that comes with one (e.g. add_key_hashes)."""
    root = work / (f"night-{events}" + ("" if night_events is None else f"-{night_events}"))
    with_night = root / "landing-1"
    done = _nights_in(with_night)
    if not done or not (root / "warehouse.duckdb").exists():
        raise SystemExit(f"--continue: no nights of part 1 in {root}")
    lake, warehouse = str(root / "lake"), str(root / "warehouse.duckdb")
    baseline_wh = str(root / "baseline.duckdb")
    if baseline is not None:
        shutil.copyfile(warehouse, baseline_wh)
    operation_seconds = _operation(operation, lake, warehouse) if operation else None
    rows = []
    for night in range(done + 1, done + nights + 1):
        steps = _incremental_night(root, events, night, night_events, baseline)
        row = {"night": night, "steps": steps}
        if baseline is not None:
            row["baseline_dbt_build"] = steps.pop("baseline dbt build")
        rows.append(row)
    if baseline is not None:
        Path(baseline_wh).unlink()
    return {
        "history_events": events,
        "night_events": night_events,
        "baseline": str(baseline),
        "operation": operation,
        "operation_seconds": operation_seconds,
        "nights": rows,
    }


def series(events: int, nights: int, work: Path) -> list[dict]:
    """Part 2: ``nights`` whole nightly jobs in a row on a history of ``nights`` days."""
    import duckdb

    root = work / f"series-{events}"
    shutil.rmtree(root, ignore_errors=True)
    landing = root / "landing"
    rows = []
    for night in range(nights + 1):
        _generate(_config(landing, events, nights, night))
        clock = END + timedelta(days=night) + JOB_HOUR
        result = _step("night", str(root), clock.isoformat())
        with duckdb.connect(str(root / "warehouse.duckdb"), read_only=True) as con:
            history = con.sql("select count(*) from main.fct_events").fetchone()[0]
        rows.append(
            {
                "night": night,
                "history_events": history,
                "seconds": result["seconds"],
                "peak_rss_mb": result["peak_rss_mb"],
                "steps": result["rows"],
            }
        )
        print(f"night {night}: {history:,} events in the warehouse", flush=True)
    return rows


def chart(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    nights = [r for r in rows if r["night"] > 0]
    x = [r["history_events"] / 1e6 for r in nights]
    fig, ax = plt.subplots(figsize=(10, 4.2), dpi=110)
    bottom = [0.0] * len(nights)
    for step in ("ingest", "dbt build", "quality gate", "export"):
        values = [r["steps"].get(step, 0.0) for r in nights]
        ax.bar(x, values, bottom=bottom, width=(x[-1] - x[0]) / len(x) * 0.8, label=step)
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    first = rows[0]
    ax.axhline(
        sum(first["steps"].values()),
        color="black",
        linestyle="--",
        linewidth=1,
        label=f"first night: full build\nof {first['history_events'] / 1e6:.1f}M events",
    )
    ax.set_xlabel("events in the warehouse after the night (millions)")
    ax.set_ylabel("seconds per night (job steps)")
    ax.set_title("Each night's cost as the history doubles")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, nargs="+", default=[10_000_000])
    parser.add_argument("--nights", type=int, default=1, help="incremental nights in a row")
    parser.add_argument("--memory-limit", help="DuckDB's memory limit, e.g. 4GB")
    parser.add_argument(
        "--night-events",
        type=int,
        help="events of each night (default: the history's daily volume, which grows with "
        "--events); the same night on every history measures how a night grows with it",
    )
    parser.add_argument("--series-events", type=int, default=1_000_000)
    parser.add_argument("--series-nights", type=int, default=30)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/lakehouse-bench"))
    parser.add_argument("--skip-night", action="store_true")
    parser.add_argument("--skip-series", action="store_true")
    parser.add_argument("--skip-full", action="store_true", help="no full rebuild in part 1")
    parser.add_argument("--chart-only", action="store_true", help="redraw from the results")
    parser.add_argument(
        "--continue",
        dest="resume",
        action="store_true",
        help="--nights more nights on what part 1 left in the workdir (no new history)",
    )
    parser.add_argument(
        "--baseline",
        type=Path,
        help="with --continue: each night's dbt build also with this checkout's code",
    )
    parser.add_argument(
        "--operation",
        help="with --continue: a dbt run-operation on the warehouse before the nights "
        "(after the baseline's copy), e.g. add_key_hashes",
    )

    args = parser.parse_args()
    # warehouses outside data/demo need a PII key: a throwaway one for the benchmark
    os.environ.setdefault("LAKEHOUSE_PII_SALT", "benchmark-only-key-" + "0" * 32)
    if args.memory_limit:
        os.environ["LAKEHOUSE_DUCKDB_MEMORY_LIMIT"] = args.memory_limit
    RESULTS.mkdir(exist_ok=True)
    for events in args.events:
        fixed = "" if args.night_events is None else f"-night-{args.night_events}"
        out = RESULTS / f"nights-{events}{fixed}.json"
        results = json.loads(out.read_text()) if out.exists() else {}
        if args.chart_only:
            chart(results["series"], CHART)
            return
        if args.resume:
            results["continued"] = more_nights(
                events, args.workdir, args.nights, args.night_events, args.baseline,
                args.operation,
            )  # fmt: skip
            out.write_text(json.dumps(results, indent=2))
        elif not args.skip_night:
            results["next_night"] = next_night(
                events, args.workdir, args.nights, args.night_events, not args.skip_full
            )
            results["memory_limit"] = args.memory_limit
            print(json.dumps(results["next_night"]["incremental_over_full"], indent=2))
            print(json.dumps(results["next_night"]["gate_over_dbt_build"], indent=2))
            out.write_text(json.dumps(results, indent=2))
        if not args.skip_series:
            results["series"] = series(args.series_events, args.series_nights, args.workdir)
            out.write_text(json.dumps(results, indent=2))
            chart(results["series"], CHART)
            print(f"chart in {CHART}")
        print(f"results in {out}")


if __name__ == "__main__":
    main()
