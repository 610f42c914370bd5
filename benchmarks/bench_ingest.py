"""Ingest throughput and peak memory, as a ratio to pyarrow's raw read of the same files.

    python benchmarks/bench_ingest.py --events 10000000   # the figure in the issue notes
    python benchmarks/bench_ingest.py --events 500000     # a quick look

Each measured phase runs in its own subprocess and reports its VmHWM (peak RSS since its
exec; ru_maxrss would include the parent's peak, which Linux carries across exec). The baseline
reads every landing file with pyarrow (json/csv/parquet readers, types inferred, gzip
decoded) and does nothing else: the floor for any reader that has to parse the bytes.
Results go to benchmarks/results/ingest-<events>.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"

RAW_READ = """
import json, sys, time
from pathlib import Path
import pyarrow.csv as pcsv, pyarrow.json as pjson, pyarrow.parquet as pq
landing = Path(sys.argv[1])
start, rows = time.perf_counter(), 0
for path in sorted(p for p in landing.rglob("*") if p.is_file() and not p.name.startswith("_")):
    if path.suffix == ".parquet":
        rows += pq.read_table(path).num_rows
    elif ".csv" in path.name:
        rows += pcsv.read_csv(path).num_rows
    else:
        rows += pjson.read_json(path).num_rows
print(json.dumps({"seconds": time.perf_counter() - start, "rows": rows,
                  "peak_rss_mb": PEAK()}))
"""

INGEST = """
import json, sys, time
from lakehouse.ingest import ingest
start = time.perf_counter()
report = ingest(sys.argv[1], sys.argv[2])
assert report.ok and all(f.reconciles for f in report.files)
print(json.dumps({"seconds": time.perf_counter() - start, "rows": report.total("rows_read"),
                  "landed": report.total("rows_landed"),
                  "quarantined": report.total("rows_quarantined"),
                  "peak_rss_mb": PEAK()}))
"""


PEAK_RSS = """
def PEAK():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
"""


def _run(code: str, *args: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", PEAK_RSS + code, *args],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def _same_landing(landing: Path, config: object) -> bool:
    """A landing folder from an earlier run with the same generator settings."""
    from lakehouse.synth import MANIFEST

    manifest = landing / MANIFEST
    if not manifest.exists():
        return False
    wanted = {k: v for k, v in vars(config).items() if k != "out"}
    recorded = json.loads(manifest.read_text())["config"]
    return all(str(recorded.get(k)) == str(v) for k, v in wanted.items())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument(
        "--dirty-rate",
        type=float,
        default=0.001,
        help="dirty rate of the second landing folder (the first is clean)",
    )
    parser.add_argument(
        "--workdir", type=Path, default=None, help="keep data here (default: a temporary folder)"
    )
    args = parser.parse_args()

    from lakehouse.synth import GenerateConfig, generate

    with tempfile.TemporaryDirectory() as tmp:
        work = args.workdir or Path(tmp)
        photos = max(1_000, args.events // 40)
        result: dict[str, object] = {"events_requested": args.events}
        for label, rate in (("clean", 0.0), ("dirty", args.dirty_rate)):
            landing, lake = work / f"landing-{label}", work / f"lake-{label}"
            start = time.perf_counter()
            config = GenerateConfig(
                out=landing,
                users=max(500, photos // 10),
                photos=photos,
                days=60,
                events=args.events,
                dirty_rate=rate,
            )
            if not _same_landing(landing, config):
                generate(config)
            shutil.rmtree(lake, ignore_errors=True)
            files = [p for p in landing.rglob("*") if p.is_file() and not p.name.startswith("_")]
            input_mb = sum(p.stat().st_size for p in files) / 1e6
            ingested = _run(INGEST, str(landing), str(lake))
            result[label] = {
                "dirty_rate": rate,
                "generate_seconds": round(time.perf_counter() - start - ingested["seconds"], 1),
                "input_files": len(files),
                "input_mb_on_disk": round(input_mb, 1),
                "ingest": ingested,
                "ingest_rows_per_s": round(ingested["rows"] / ingested["seconds"]),
                "ingest_mb_per_s": round(input_mb / ingested["seconds"], 1),
            }
            if label == "clean":  # pyarrow cannot read the dirty files at all
                raw = _run(RAW_READ, str(landing))
                result["raw_read"] = {**raw, "rows_per_s": round(raw["rows"] / raw["seconds"])}
        raw = result["raw_read"]
        for label in ("clean", "dirty"):
            entry = result[label]
            entry["throughput_ratio_vs_raw_read"] = round(
                (entry["ingest"]["rows"] / entry["ingest"]["seconds"]) / raw["rows_per_s"], 3
            )
            entry["peak_rss_ratio_vs_raw_read"] = round(
                entry["ingest"]["peak_rss_mb"] / raw["peak_rss_mb"], 3
            )
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"ingest-{args.events}.json"
    path.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    print(f"written to {path}")


if __name__ == "__main__":
    main()
