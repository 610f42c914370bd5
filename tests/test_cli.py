"""The command line explains itself and runs the main job end to end."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from lakehouse.cli import main
from tests.helpers import bronze


@pytest.mark.parametrize("command", ["generate", "ingest", "train", "demo"])
def test_help_explains_each_command(command: str) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "lakehouse.cli", command, "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert f"usage: lakehouse {command}" in out
    assert "--help" in out and len(out.splitlines()) > 6


def test_bad_arguments_are_refused_with_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["generate", "--dirty-rate", "2"])
    assert exit_info.value.code == 2
    assert "must be between 0 and 1" in capsys.readouterr().err


def test_missing_landing_folder_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["ingest", str(tmp_path / "nope"), "--lake", str(tmp_path / "lake")])
    assert code == 1
    err = capsys.readouterr().err
    assert "does not exist" in err and "lakehouse generate" in err


def test_generate_then_ingest_from_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    landing, lake = tmp_path / "landing", tmp_path / "lake"
    assert (
        main(
            [
                "generate",
                "--out",
                str(landing),
                "--users",
                "50",
                "--photos",
                "300",
                "--days",
                "5",
                "--events",
                "3000",
                "--dirty-rate",
                "0.02",
            ]
        )
        == 0
    )
    assert main(["ingest", str(landing), "--lake", str(lake)]) == 0
    out = capsys.readouterr().out
    assert "quarantined by reason" in out
    assert bronze(lake, "photos").num_rows == 300
    assert bronze(lake, "users").num_rows == 50


def test_demo_runs_every_step_and_the_model_beats_the_baseline(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "lakehouse.cli",
            "demo",
            "--workdir",
            str(tmp_path),
            "--today",
            "2026-11-24",  # a fixed day: the same sample and clock whenever it runs
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert bronze(tmp_path / "lake", "events").num_rows > 500_000
    assert "quarantine at" in result.stdout and "nightly job done" in result.stdout
    assert (tmp_path / "shards" / "photo_popularity_training" / "v1" / "manifest.json").exists()
    trained = re.search(r"model ([\d.]+) beats the constant baseline ([\d.]+)", result.stdout)
    assert trained, result.stdout[-2000:]
    assert float(trained.group(1)) < 0.8 * float(trained.group(2))
    assert re.search(r"on (cpu|cuda\S*): [\d,]+ samples/s", result.stdout)


def test_demo_starts_over_when_its_sample_is_from_another_day(tmp_path: Path) -> None:
    import json
    from datetime import UTC, datetime

    from lakehouse.job import discard_stale_demo

    today = datetime(2026, 11, 24, tzinfo=UTC)
    # the demo's history ends the day before its last night
    for end, kept in (("2026-11-23 00:00:00+00:00", True), ("2026-11-22 00:00:00+00:00", False)):
        (tmp_path / "landing").mkdir(exist_ok=True)
        (tmp_path / "lake" / "bronze").mkdir(parents=True, exist_ok=True)
        (tmp_path / "warehouse.duckdb").write_bytes(b"x")
        (tmp_path / "landing" / "_generator.json").write_text(
            json.dumps({"config": {"end": end, "nights": 1}})
        )
        assert discard_stale_demo(tmp_path, today) is not kept
        assert (tmp_path / "lake").exists() is kept
        assert (tmp_path / "warehouse.duckdb").exists() is kept
        assert (tmp_path / "landing").exists() is kept
