"""The online feature store: what filling it costs a night, and how fast it answers.

    python benchmarks/bench_features.py --events 1000000 10000000 [--night-events 170000]
        [--workdir /tmp/lakehouse-bench] [--memory-limit 4GB] [--lookups 2000] [--generated]

For each ``--events`` size: the lake of ``bench_nights.py`` in ``<workdir>/night-<events>-
<night events>`` (its history is generated and run first when the folder has none), then one
more night through the whole job in this process (``run_job``: ingest, dbt build, gate,
export, materialize). Measured in that one run:

- the ``materialize`` step (filling the embedded SQLite store) against the night's ``dbt
  build``, and the share of the build the two serving views and their tests take;
- filling a real Redis server (``redis-server`` on 127.0.0.1, started here) from the same
  build;
- lookup latency, p50 and p99, of 1 key and of 100 random keys of the ``owner`` view:
  ``get_online_features`` on an open store (embedded and Redis), and the HTTP endpoint
  (``POST /get-online-features``) on the embedded store.

Results: benchmarks/results/features-<events>.json; the figures are in BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import tempfile
import threading
import time
import urllib.request
from datetime import timedelta
from pathlib import Path

from bench_nights import END, JOB_HOUR, _config, _generate, _nights_in

RESULTS = Path(__file__).parent / "results"
SERVING = ("online_owner_features", "online_photo_features")


def _percentiles(seconds: list[float]) -> dict[str, float]:
    ordered = sorted(seconds)
    return {
        "p50_ms": round(statistics.median(ordered) * 1000, 3),
        "p99_ms": round(ordered[int(len(ordered) * 0.99) - 1] * 1000, 3),
        "calls": len(ordered),
    }


def _timed(call, times: int) -> dict[str, float]:
    seconds = []
    for _ in range(times):
        start = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - start)
    return _percentiles(seconds)


def _redis() -> tuple[subprocess.Popen, str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    folder = tempfile.mkdtemp(prefix="bench-redis-")
    server = subprocess.Popen(
        ["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--save", "",
         "--appendonly", "no", "--dir", folder],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"redis://127.0.0.1:{port}/0"
    from lakehouse.features import RedisStore, StoreError

    for _ in range(200):
        try:
            RedisStore(url).close()
            return server, url
        except StoreError:
            time.sleep(0.05)
    raise RuntimeError("redis-server did not start")


def _latencies(store, owners: list[int], lookups: int) -> dict[str, dict]:
    from lakehouse.features import get_online_features

    rng = random.Random(0)

    def one() -> None:
        get_online_features("owner", [rng.choice(owners)], store=store, max_age=None)

    def hundred() -> None:
        get_online_features("owner", rng.sample(owners, 100), store=store, max_age=None)

    return {"1 key": _timed(one, lookups), "100 keys": _timed(hundred, max(100, lookups // 4))}


def _http_latencies(store: str, owners: list[int], lookups: int) -> dict[str, dict]:
    from lakehouse.features.server import FeatureServer

    server = FeatureServer(("127.0.0.1", 0), store, max_age=None)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    rng = random.Random(1)

    def post(keys: list[int]) -> None:
        body = json.dumps({"view": "owner", "keys": keys}).encode()
        request = urllib.request.Request(f"{server.url}/get-online-features", data=body)
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200
            response.read()

    try:
        return {
            "1 key": _timed(lambda: post([rng.choice(owners)]), lookups),
            "100 keys": _timed(lambda: post(rng.sample(owners, 100)), max(100, lookups // 4)),
        }
    finally:
        server.shutdown()
        server.server_close()


def bench(
    events: int, night_events: int, work: Path, lookups: int, generated: bool = False
) -> dict:
    from lakehouse.features import fill_online_store, open_store
    from lakehouse.job import run_job
    from lakehouse.layout import Layout

    root = work / f"night-{events}-{night_events}"
    landing, with_night = root / "landing", root / "landing-1"
    layout = Layout.from_root(root, env={})
    if not (root / "lake").exists():
        print(f"history of {events:,} events (first run in {root})", flush=True)
        _generate(_config(landing, events, 60, 0))
        shutil.rmtree(with_night, ignore_errors=True)
        shutil.copytree(landing, with_night, copy_function=os.link)
        history = run_job(layout.override(landing=str(with_night)), as_of=END + JOB_HOUR)
        assert history.ok, history.failure
    night = (_nights_in(with_night) or 0) + (0 if generated else 1)
    print(f"{events:,} events: night {night} ({night_events:,} events)", flush=True)
    if not generated:
        _generate(_config(with_night, events, 60, night, night_events))
    clock = END + timedelta(days=night) + JOB_HOUR
    report = run_job(layout.override(landing=str(with_night)), as_of=clock)
    assert report.ok, report.failure
    steps = {step.name.value: step.seconds for step in report.steps}
    build = next(step.result for step in report.steps if step.name.value == "dbt build")
    serving = sum(n.seconds for n in build.nodes if any(model in n.name for model in SERVING))
    fills = {f.view: f.rows for f in report.steps[-1].result.fills}
    print(f"  steps {steps}; serving views in the build {serving:.1f} s; {fills}", flush=True)

    from lakehouse.warehouse import connect, project_dir

    con = connect(layout.resolved().warehouse, project_dir())
    try:
        found = con.execute("select owner_user_id from online_owner_features").fetchall()
        owners = [r[0] for r in found]
    finally:
        con.close()
    embedded = open_store(layout.resolved().online)
    server, url = _redis()
    try:
        start = time.perf_counter()
        fill_online_store(layout.resolved().warehouse, layout.resolved().quality, store=url)
        redis_fill = time.perf_counter() - start
        redis_store = open_store(url)
        latency = {
            "embedded": _latencies(embedded, owners, lookups),
            "redis": _latencies(redis_store, owners, lookups),
            "http (embedded)": _http_latencies(layout.resolved().online, owners, lookups),
        }
        redis_store.close()
    finally:
        embedded.close()
        server.terminate()
        server.wait(timeout=20)
    result = {
        "history_events": events,
        "night_events": night_events,
        "night": night,
        "steps_seconds": steps,
        "materialize_over_dbt_build": round(steps["materialize"] / steps["dbt build"], 3),
        "serving_views_in_build_seconds": round(serving, 2),
        "serving_views_over_dbt_build": round(serving / steps["dbt build"], 3),
        "redis_fill_seconds": round(redis_fill, 2),
        "rows": fills,
        "lookup": latency,
    }
    for where, kinds in latency.items():
        shown = "; ".join(
            f"{k} p50 {v['p50_ms']} ms, p99 {v['p99_ms']} ms" for k, v in kinds.items()
        )
        print(f"  {where}: {shown}", flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, nargs="+", default=[1_000_000])
    parser.add_argument("--night-events", type=int, default=170_000)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/lakehouse-bench"))
    parser.add_argument("--memory-limit", default="4GB")
    parser.add_argument("--lookups", type=int, default=2_000)
    parser.add_argument(
        "--generated",
        action="store_true",
        help="run the night the landing folder already holds (an interrupted run made it)",
    )
    args = parser.parse_args()
    os.environ["LAKEHOUSE_DUCKDB_MEMORY_LIMIT"] = args.memory_limit
    # the key bench_nights.py built its lakes with (a throwaway one for the benchmark)
    os.environ.setdefault("LAKEHOUSE_PII_SALT", "benchmark-only-key-" + "0" * 32)
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
    RESULTS.mkdir(exist_ok=True)
    for events in args.events:
        result = bench(events, args.night_events, args.workdir, args.lookups, args.generated)
        path = RESULTS / f"features-{events}.json"
        path.write_text(json.dumps(result, indent=2) + "\n")
        print(f"  -> {path}", flush=True)


if __name__ == "__main__":
    main()
