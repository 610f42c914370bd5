"""Shared fixtures, session-scoped because generating, ingesting and building take seconds:
a small landing folder with every kind of dirty row and the lake it was ingested into, and a
clean sample built into a warehouse once for every module that only reads it. Tests that
change a lake or a warehouse copy it first (or make their own).

Every fixture runs on a fixed clock (``NIGHT``), never the wall clock: the data ends at
``END`` and the job runs the morning after.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from lakehouse.ingest import IngestReport, ingest
from lakehouse.synth import MANIFEST, GenerateConfig, generate
from lakehouse.warehouse import BuildResult, dbt_artifacts, project_dir, run_dbt

END = datetime(2026, 11, 1, tzinfo=UTC)
NIGHT = END + timedelta(hours=6)  # the morning after the last day of data: the fixtures' clock
PROJECT = project_dir(Path(__file__).parent)


def pytest_configure(config: pytest.Config) -> None:
    """dbt's artifacts and logs go to a folder of this test process (one per xdist worker),
    not the repo's target/ and logs/: parallel workers never share them, and the tests
    never overwrite an analyst's artifacts. Subprocesses inherit the setting."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    scratch = Path(tempfile.mkdtemp(prefix=f"lakehouse-dbt-{worker}-"))
    os.environ["DBT_TARGET_PATH"] = str(scratch / "target")
    os.environ["DBT_LOG_PATH"] = str(scratch / "logs")
    os.environ["LAKEHOUSE_CACHE"] = str(scratch / "cache")  # never the user's ~/.cache
    # the PII key of every build in the tests: random, so no test can pass by knowing it
    os.environ.setdefault("LAKEHOUSE_PII_SALT", f"test-key-{uuid.uuid4().hex}")


def small_config(out: Path, dirty_rate: float = 0.04, seed: int = 11) -> GenerateConfig:
    return GenerateConfig(
        out=out,
        users=1_000,
        photos=3_000,
        days=12,
        events=36_000,
        seed=seed,
        dirty_rate=dirty_rate,
        end=END,
        rows_per_file=2_000,
    )


@pytest.fixture(scope="session")
def landing(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("landing")
    generate(small_config(out))
    return out


@pytest.fixture(scope="session")
def generator_manifest(landing: Path) -> dict:
    return json.loads((landing / MANIFEST).read_text())


@pytest.fixture(scope="session")
def ingested(landing: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, IngestReport]:
    lake = tmp_path_factory.mktemp("lake")
    report = ingest(str(landing), str(lake), now=NIGHT)
    return lake, report


@dataclass(frozen=True)
class BuiltWarehouse:
    """A clean 20-day sample (300 users, 2,000 photos, 40,000 events), its lake and the
    warehouse `dbt build` made of it. Read it; copy it before changing anything."""

    landing: Path
    lake: Path
    warehouse: Path
    result: BuildResult
    manifest_sha256: str  # of the dbt manifest.json this build parsed, taken right after it


@pytest.fixture(scope="session")
def built_warehouse(tmp_path_factory: pytest.TempPathFactory) -> BuiltWarehouse:
    work = tmp_path_factory.mktemp("built")
    landing, lake, warehouse = work / "landing", work / "lake", work / "warehouse.duckdb"
    generate(
        GenerateConfig(
            out=landing, users=300, photos=2_000, days=20, events=40_000, seed=21, end=END
        )
    )
    assert ingest(str(landing), str(lake), now=NIGHT).ok
    # the fixtures' clock: the serving features are evaluated at NIGHT (the models read no clock)
    result = run_dbt(str(lake), warehouse, project=PROJECT, quiet=True, as_of=NIGHT)
    assert result.success, result.failures or result.error
    manifest = hashlib.sha256((dbt_artifacts(PROJECT) / "manifest.json").read_bytes())
    return BuiltWarehouse(landing, lake, warehouse, result, manifest.hexdigest())
