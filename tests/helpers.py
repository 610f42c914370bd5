"""Independent readings of landing files and lake tables, for asserting against ingest."""

from __future__ import annotations

import gzip
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from lakehouse.storage import delta_exists, open_delta, read_delta

# generator dirty kind -> what ingest must do with it (a reason code, or landed/duplicate)
EXPECTED_OUTCOME = {
    "malformed_json": "malformed_record",
    "missing_field": "missing_field",
    "wrong_type": "wrong_type",
    "bad_timestamp_format": "bad_timestamp",
    "future_timestamp": "future_timestamp",
    "oversized_string": "oversized_value",
    "invalid_utf8": "invalid_utf8",
    "unknown_photo": "unknown_reference",
    "unknown_event_type": "unaccepted_value",
    "wrong_column_count": "wrong_column_count",
    "wrong_length": "bad_embedding",
    "non_finite": "bad_embedding",
    "duplicate_id": "duplicate",
    "timezone_offset": "landed",
}


def count_input_rows(path: Path) -> int:
    """Rows in a landing file counted without the project's readers."""
    if path.suffix == ".parquet":
        return pq.ParquetFile(path).metadata.num_rows
    data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    lines = [line for line in data.split(b"\n") if line.strip()]
    return len(lines) - (1 if ".csv" in path.name else 0)


def bronze(lake: Path, table: str) -> pa.Table:
    return read_delta(str(lake / "bronze" / table))


def delta_versions(lake: Path) -> dict[str, int]:
    """Version of every Delta table under bronze/ (folders without a commit are not tables)."""
    root = lake / "bronze"
    return {
        p.name: open_delta(str(p)).version()
        for p in sorted(root.iterdir())
        if p.is_dir() and delta_exists(str(p))
    }


def project_models() -> list[str]:
    """The dbt project's models, read from its folder (one .sql file each), as the tests
    that count what a build ran expect them."""
    from lakehouse.warehouse import project_dir

    return sorted(p.stem for p in (project_dir() / "models").rglob("*.sql"))


def project_unit_tests() -> list[str]:
    """The dbt unit tests the project's YAML declares."""
    import yaml

    from lakehouse.warehouse import project_dir

    names = []
    for path in (project_dir() / "models").rglob("*.yml"):
        names += [t["name"] for t in (yaml.safe_load(path.read_text()) or {}).get("unit_tests", [])]
    return sorted(names)
