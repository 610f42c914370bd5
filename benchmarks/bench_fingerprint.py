"""What binding the gate's verdict to the data costs: the fingerprint of the exported mart.

    python benchmarks/bench_fingerprint.py [--events 10000000 100000000]

A night fingerprints ``photo_popularity_training`` four times: before and after the build
writes it (dbt hooks, macros/fingerprint.sql), once in the gate and once in the export
(lakehouse.warehouse.fingerprint). Building a lake of 100M events to measure one aggregate
would take an hour here, so the mart is made directly in DuckDB with its real schema
(``describe`` of a warehouse the tests build) and as many rows as the generator's world
gives it at that size: one photo per 40 events, of which about 87% have a mature label and
an embedding. Baseline in the same run: one scan that sums every column's length (the bytes
a fingerprint must read anyway). Results: benchmarks/results/fingerprint.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import duckdb

from lakehouse.warehouse import fingerprint

RESULTS = Path(__file__).parent / "results"
MATURE = 0.87  # share of a world's photos in the training mart (the generator, 60 days)


def _mart(con: duckdb.DuckDBPyConnection, rows: int) -> None:
    con.execute(
        f"""create or replace table photo_popularity_training as
        select i::bigint as photo_id, ['train','val','test'][1 + i % 3] as split,
            timestamptz '2026-09-01' + to_seconds(i % 5000000) as posted_at,
            (i % 900)::integer as owner_account_age_days, i % 7 = 0 as owner_is_verified,
            ['BR','DE','US','JP'][1 + i % 4] as owner_country_code,
            (i % 50)::integer as owner_prior_photos, (i % 300)::integer as owner_likes_received,
            (i % 1000)::integer as owner_followers, (i % 40)::integer as owner_events_30d,
            timestamptz '2026-09-01' + to_seconds(i % 4000000) as features_as_of,
            ['en','pt','de'][1 + i % 3] as caption_lang, (i % 120)::integer as caption_length,
            (i % 5)::integer as hashtag_count, 1920 as width, 1080 as height,
            1.777::float as aspect_ratio,
            list_transform(range(64), x -> ((i * 31 + x) % 997 / 997.0)::float)::float[64]
                as embedding,
            ['popular','not_popular', null][1 + i % 3] as weak_label,
            (i % 20)::integer as likes_24h, (i % 60)::integer as likes_7d,
            (i % 200)::integer as engagement_score_7d, i % 9 = 0 as is_popular,
            (i % 30)::bigint as _build_seq
        from range({rows}) as r(i)"""
    )


def _timed(call, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - started)
    return best


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, nargs="+", default=[10_000_000, 100_000_000])
    parser.add_argument("--memory-limit", default="4GB")
    args = parser.parse_args()
    results = []
    for events in args.events:
        rows = int(events / 40 * MATURE)
        with duckdb.connect(config={"memory_limit": args.memory_limit}) as con:
            _mart(con, rows)
            seconds = _timed(lambda con=con: fingerprint(con, "photo_popularity_training"))
            scan = _timed(
                lambda con=con: con.execute(
                    "select sum(len(split) + len(caption_lang) + len(embedding) + photo_id) "
                    "from photo_popularity_training"
                ).fetchone()
            )
        row = {
            "events": events,
            "mart_rows": rows,
            "fingerprint_s": round(seconds, 3),
            "per_night_s": round(4 * seconds, 3),
            "scan_s": round(scan, 3),
            "vs_scan": round(seconds / scan, 2),
        }
        results.append(row)
        print(json.dumps(row), flush=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "fingerprint.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
