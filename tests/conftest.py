"""Shared fixtures: a small generated landing folder with every kind of dirty row, and a
lake it was ingested into. Session-scoped because generating and ingesting take seconds;
tests that change a lake make their own."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from lakehouse.ingest import IngestReport, ingest
from lakehouse.synth import MANIFEST, GenerateConfig, generate

END = datetime(2026, 11, 1, tzinfo=UTC)


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
    report = ingest(str(landing), str(lake))
    return lake, report
