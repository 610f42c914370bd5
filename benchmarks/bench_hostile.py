"""Hostile input that used to cost superlinear time (issue 26), measured against a baseline
of the same size in the same run.

    python benchmarks/bench_hostile.py

1. A remote manifest naming N shards (N = 10k, 100k, 1M) on a real S3 API (moto on
   127.0.0.1), opened by ``ShardDataset``; baseline: ``json.loads`` of the same text.
   Before the fix each shard path was resolved on the file system as the manifest was
   read (and the manifest parsed twice): 60k shards took 38 s, a million never opened.
2. A users CSV whose header has N extra columns (N = 5k ... 100k), ingested; baseline:
   ``csv.reader`` of the header line. Before, a count over the header per name made 100k
   columns take 386 s.

Results: benchmarks/results/hostile.json.
"""

from __future__ import annotations

import csv
import json
import os
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.object_store: the moto server the tests use
RESULTS = Path(__file__).parent / "results"
USERS = "user_id,signup_at,country,email,display_name,birth_year,is_verified"


def _manifests(sizes: list[int]) -> list[dict]:
    from lakehouse.loader import ShardDataset
    from tests.loader_fixtures import write_shards
    from tests.object_store import client_for, s3_server

    work = Path(tempfile.mkdtemp())
    latest = write_shards(work)
    data = json.loads((latest / "manifest.json").read_text())
    first = data["shards"][0]
    rows = []
    with s3_server(["shards"]) as env:
        os.environ.update(env)
        client = client_for(env)
        for n in sizes:
            os.environ["LAKEHOUSE_CACHE"] = str(work / f"cache-{n}")
            data["shards"] = [
                {**first, "path": f"{first['split']}/part-{i:07d}.arrow"} for i in range(n)
            ]
            text = json.dumps(data)
            client.put_object(Bucket="shards", Key=f"m{n}/v1/manifest.json", Body=text.encode())
            started = time.perf_counter()
            json.loads(text)
            baseline = time.perf_counter() - started
            started = time.perf_counter()
            ShardDataset(f"s3://shards/m{n}/v1", first["split"], batch_size=64)
            opened = time.perf_counter() - started
            rows.append(
                {"shards": n, "mb": round(len(text) / 1e6, 1), "open_s": round(opened, 3),
                 "json_loads_s": round(baseline, 3), "ratio": round(opened / baseline, 1)}
            )  # fmt: skip
            print(rows[-1], flush=True)
    return rows


def _headers(widths: list[int]) -> list[dict]:
    from lakehouse.ingest import ingest

    rows = []
    for width in widths:
        with tempfile.TemporaryDirectory() as tmp:
            landing = Path(tmp) / "landing" / "users"
            landing.mkdir(parents=True)
            extra = ",".join(f"x{i}" for i in range(width))
            header = f"{USERS},{extra}"
            body = f"{header}\n1,2025-04-05T09:39:19Z{',' * (5 + width)}\n"
            (landing / "u.csv").write_text(body)
            started = time.perf_counter()
            next(csv.reader([header]))
            baseline = time.perf_counter() - started
            started = time.perf_counter()
            report = ingest(str(landing.parent), str(Path(tmp) / "lake"), now=datetime.now(UTC))
            seconds = time.perf_counter() - started
            assert report.ok, report.failed
            rows.append(
                {"extra_columns": width, "ingest_s": round(seconds, 3),
                 "csv_reader_s": round(baseline, 4)}
            )  # fmt: skip
            print(rows[-1], flush=True)
    return rows


def main() -> None:
    result = {
        "manifests": _manifests([10_000, 100_000, 1_000_000]),
        "csv_headers": _headers([5_000, 10_000, 20_000, 40_000, 100_000]),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "hostile.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
