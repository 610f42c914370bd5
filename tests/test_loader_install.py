"""A loader-only install, as a training job has it: `pip install "lakehouse[loader]"` into a
venv of its own (from the wheels pip already has on this machine, with the project's pins).
The CLI works there for what needs only the loader (`--help`, `shards inspect/verify`,
`train`) and names the extra to install for the rest; no pipeline package is installed."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lakehouse.export import export_model
from tests.conftest import BuiltWarehouse
from tests.loader_fixtures import write_shards

REPO = Path(__file__).resolve().parents[1]
PIPELINE = ("duckdb", "deltalake", "dbt", "great_expectations", "sqlalchemy", "yaml")


@pytest.fixture(scope="module")
def loader_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    venv = tmp_path_factory.mktemp("loader-only") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    # the source without the checkout's virtual environment and data (what pip would copy)
    source = tmp_path_factory.mktemp("source") / "lakehouse"
    shutil.copytree(
        REPO,
        source,
        ignore=shutil.ignore_patterns(".venv", "data", ".git", "target", "logs", "*.egg-info"),
    )
    installed = subprocess.run(
        [
            str(venv / "bin" / "pip"),
            "install",
            "--quiet",
            "--constraint",
            str(REPO / "constraints.txt"),
            f"{source}[loader]",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=1200,
    )
    if installed.returncode != 0 and "No matching distribution" in installed.stderr:
        pytest.skip(f"pip cannot reach the loader's wheels here: {installed.stderr[-300:]}")
    assert installed.returncode == 0, installed.stderr[-3000:]
    return venv


def _lakehouse(venv: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    return subprocess.run(
        [str(venv / "bin" / "lakehouse"), *args],
        capture_output=True,
        text=True,
        check=False,
        cwd=cwd,
        env=env,
        timeout=600,
    )


def test_the_loader_extra_installs_no_pipeline_package(loader_venv: Path) -> None:
    probe = f"import importlib.util as u; print([m for m in {PIPELINE!r} if u.find_spec(m)])"
    out = subprocess.run(
        [str(loader_venv / "bin" / "python"), "-c", probe],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "[]"


def test_the_cli_runs_what_needs_only_the_loader(
    loader_venv: Path, built_warehouse: BuiltWarehouse, tmp_path: Path
) -> None:
    shards = write_shards(tmp_path)  # written by this checkout's exporter
    for args in (["--help"], ["train", "--help"], ["shards", "--help"]):
        out = _lakehouse(loader_venv, *args, cwd=tmp_path)
        assert out.returncode == 0, out.stderr
        assert "usage: lakehouse" in out.stdout
    inspected = _lakehouse(loader_venv, "shards", "inspect", str(shards), cwd=tmp_path)
    assert inspected.returncode == 0, inspected.stderr
    assert "loader_fixture" in inspected.stdout
    said = " ".join(inspected.stdout.split())  # however the console wrapped it
    assert "posted_at timestamp[us, tz=UTC]" in said and "orientation category (2 values)" in said
    verified = _lakehouse(loader_venv, "shards", "verify", str(shards), cwd=tmp_path)
    assert verified.returncode == 0 and "every shard matches" in verified.stdout
    training, _ = export_model(
        built_warehouse.warehouse, "photo_popularity_training", tmp_path / "out", force=True
    )
    trained = _lakehouse(
        loader_venv, "train", str(training), "--epochs", "1", "--device", "cpu",
        "--workers", "1", "--batch-size", "64", "--max-steps", "3", cwd=tmp_path,
    )  # fmt: skip
    assert trained.returncode == 0, trained.stderr[-2000:]
    assert "steps" in trained.stdout


@pytest.mark.parametrize(
    "command",
    [
        ["build"],
        ["validate"],
        ["ingest", "landing"],
        ["run", "--landing", "l", "--lake", "k", "--out", "o"],
    ],
)
def test_the_rest_names_the_extra_to_install(
    loader_venv: Path, tmp_path: Path, command: list[str]
) -> None:
    out = _lakehouse(loader_venv, *command, cwd=tmp_path)
    assert out.returncode == 2
    said = " ".join(out.stderr.split())
    assert f"`lakehouse {command[0]}` needs the [pipeline] extra" in said, out.stderr
    assert "is not installed: pip install 'lakehouse[pipeline]'" in said
    assert "Traceback" not in out.stderr
