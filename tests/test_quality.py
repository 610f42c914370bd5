"""The data-quality gate passes a good warehouse and blocks each injected fault, naming
exactly the expectations that caught it."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import textwrap
from datetime import timedelta
from pathlib import Path
from xml.etree import ElementTree as ET

import duckdb
import pytest

from lakehouse.cli import main
from lakehouse.quality import validate
from lakehouse.quality.suites import SuiteError, load_suite
from lakehouse.warehouse import project_dir
from tests.conftest import NIGHT, BuiltWarehouse

PROJECT = project_dir(Path(__file__).parent)
AS_OF = NIGHT  # the morning after the last day of data


@pytest.fixture(scope="module")
def good(built_warehouse: BuiltWarehouse) -> tuple[Path, Path]:
    return built_warehouse.lake, built_warehouse.warehouse


def _faulty(good: tuple[Path, Path], tmp_path: Path, *statements: str) -> Path:
    copy = tmp_path / "warehouse.duckdb"
    shutil.copy(good[1], copy)
    con = duckdb.connect(str(copy))
    for statement in statements:
        con.execute(statement)
    con.close()
    return copy


def _failed(report) -> set[str]:
    return {
        f"{r.table}.{r.kwargs.get('column') or r.kwargs.get('column_A') or r.type}"
        for r in report.blocking_failures
    }


def test_a_good_warehouse_passes(good, tmp_path: Path) -> None:
    lake, warehouse = good
    report, _ = validate(warehouse, str(lake), out=tmp_path, as_of=AS_OF, project=PROJECT)
    assert report.passed, [
        (r.table, r.name, r.observed_value, r.error) for r in report.blocking_failures
    ]
    assert {t.table for t in report.tables} == {
        "bronze_events",
        "bronze_photos",
        "bronze_users",
        "bronze_photo_embeddings",
        "fct_events",
        "dim_photos",
        "photo_popularity_training",
    }
    training = next(t for t in report.tables if t.table == "photo_popularity_training")
    assert training.profile["rows_per_mature_photo"] == 1
    assert 0.75 <= training.profile["train_share"] <= 0.85
    assert training.versions["bronze_versions"]["events"] >= 0
    assert "dbt_invocation_id" in training.versions
    assert next(t for t in report.tables if t.table == "bronze_events").versions == {
        "delta_version": 20
    }  # version 0 creates the table empty, then 20 daily files, one commit each


@pytest.mark.parametrize(
    ("fault", "statements", "expected"),
    [
        (
            "null keys",
            [
                "create or replace table photo_popularity_training as select * replace ("
                "case when photo_id % 50 = 0 then null else photo_id end as photo_id) "
                "from photo_popularity_training"
            ],
            {"photo_popularity_training.photo_id", "photo_popularity_training.duplicate_photo_ids"},
        ),
        (
            "feature computed after posting",
            [
                "update photo_popularity_training set features_as_of = posted_at + interval 1 hour "
                "where photo_id % 20 = 0"
            ],
            {"photo_popularity_training.posted_at"},
        ),
        (
            "shifted label distribution",
            ["update photo_popularity_training set likes_7d = likes_7d * 20 + 40"],
            {"photo_popularity_training.mean_likes_7d"},
        ),
        (
            "changed column type",
            [
                "create or replace table photo_popularity_training as select * replace ("
                "cast(likes_7d as double) as likes_7d) from photo_popularity_training"
            ],
            {"photo_popularity_training.column_types"},
        ),
        (
            "missing column",
            ["alter table photo_popularity_training drop column embedding"],
            {"photo_popularity_training.table_is_readable"},
        ),
        (
            "events lost between staging and the fact table",
            [
                "delete from fct_events where event_id in "
                "(select event_id from fct_events order by event_id limit 100)"
            ],
            {"fct_events.rows_per_staged_event"},
        ),
    ],
)
def test_each_fault_is_blocked_by_exactly_the_expected_expectations(
    good, tmp_path: Path, fault: str, statements: list[str], expected: set[str]
) -> None:
    lake, _ = good
    warehouse = _faulty(good, tmp_path, *statements)
    report, _ = validate(warehouse, str(lake), as_of=AS_OF, project=PROJECT)
    assert not report.passed, fault
    assert _failed(report) == expected, fault


def test_stale_data_blocks_on_freshness(good) -> None:
    lake, warehouse = good
    report, _ = validate(warehouse, str(lake), as_of=AS_OF + timedelta(days=5), project=PROJECT)
    assert _failed(report) == {
        "bronze_events.newest_event_age_hours",
        "fct_events.newest_event_age_hours",
    }
    stale = next(r for r in report.blocking_failures if r.table == "fct_events")
    assert stale.observed_value > 48


def test_cli_writes_json_junit_html_and_exits_non_zero_when_blocked(
    good, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lake, _ = good
    warehouse = _faulty(
        good, tmp_path, "update photo_popularity_training set likes_7d = likes_7d * 20 + 40"
    )
    out = tmp_path / "quality"
    code = main(
        [
            "validate",
            "--warehouse",
            str(warehouse),
            "--lake",
            str(lake),
            "--out",
            str(out),
            "--as-of",
            AS_OF.isoformat(),
        ]
    )
    assert code == 1
    printed = capsys.readouterr().out
    assert "BLOCKING photo_popularity_training" in printed and "mean_likes_7d" in printed
    result = json.loads((out / "result.json").read_text())
    assert result["passed"] is False and result["blocking_failures"] == 1
    failed = [
        r
        for t in result["tables"]
        for r in t["results"]
        if not r["success"] and r["severity"] == "blocking"
    ]
    assert failed[0]["name"] == "expect_column_values_to_be_between(mean_likes_7d)"
    assert failed[0]["observed_value"] > 30
    junit = ET.parse(out / "junit.xml").getroot()
    assert junit.tag == "testsuites" and junit.get("failures") == "1"
    failures = junit.findall(".//failure")
    assert len(failures) == 1 and "mean_likes_7d" in failures[0].get("message")
    assert "BLOCKED" in (out / "report.html").read_text()


def test_row_checks_stream_in_chunks_with_the_same_result(good, tmp_path: Path) -> None:
    lake, _ = good
    warehouse = _faulty(
        good,
        tmp_path,
        "update photo_popularity_training set features_as_of = posted_at "
        "+ interval 1 hour where photo_id % 20 = 0",
    )
    whole, _ = validate(
        warehouse, str(lake), as_of=AS_OF, project=PROJECT, tables=["photo_popularity_training"]
    )
    chunked, _ = validate(
        warehouse,
        str(lake),
        as_of=AS_OF,
        project=PROJECT,
        tables=["photo_popularity_training"],
        chunk_rows=97,
    )

    def counts(report) -> dict[str, tuple[bool, int, int]]:
        return {
            r.name: (r.success, r.element_count, r.unexpected_count)
            for t in report.tables
            for r in t.results
        }

    assert counts(chunked) == counts(whole)
    pit = next(r for t in chunked.tables for r in t.results if r.kwargs.get("column_A"))
    assert pit.unexpected_count > 0 and len(pit.examples) == 5


def test_the_next_run_reports_what_changed(good, tmp_path: Path) -> None:
    lake, warehouse = good
    out = tmp_path / "quality"
    validate(warehouse, str(lake), out=out, as_of=AS_OF, project=PROJECT)
    shifted = _faulty(
        good, tmp_path, "update photo_popularity_training set likes_7d = likes_7d * 20 + 40"
    )
    _, data = validate(shifted, str(lake), out=out, as_of=AS_OF, project=PROJECT)
    moved = {(c["table"], c["metric"]) for c in data["changes"]}
    assert ("photo_popularity_training", "mean_likes_7d") in moved
    assert len(list((out / "runs").iterdir())) == 2


def test_a_suite_with_a_table_level_check_on_chunks_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text(
        json.dumps(
            {
                "name": "bad",
                "meta": {"lakehouse": {"relation": "fct_events"}},
                "expectations": [
                    {
                        "type": "expect_column_values_to_be_unique",
                        "kwargs": {"column": "event_id"},
                        "severity": "blocking",
                    }
                ],
            }
        )
    )
    with pytest.raises(SuiteError, match="profile"):
        load_suite(path)


def test_kill_9_while_writing_the_reports_keeps_the_previous_result_whole(
    good, tmp_path: Path
) -> None:
    lake, warehouse = good
    out = tmp_path / "quality"
    validate(warehouse, str(lake), out=out, as_of=AS_OF, project=PROJECT, tables=["dim_photos"])
    before = (out / "result.json").read_text()
    script = textwrap.dedent(f"""
        import os, signal
        from datetime import datetime
        from pathlib import Path
        real = os.replace
        def die_at_the_result(source, target):
            if str(target).endswith("quality/result.json"):
                os.kill(os.getpid(), signal.SIGKILL)
            real(source, target)
        os.replace = die_at_the_result
        from lakehouse.quality import validate
        validate({str(warehouse)!r}, {str(lake)!r}, out=Path({str(out)!r}),
                 as_of=datetime.fromisoformat({AS_OF.isoformat()!r}), tables=["fct_events"])
    """)
    killed = subprocess.run([sys.executable, "-c", script], cwd=PROJECT, check=False)
    assert killed.returncode == -signal.SIGKILL
    assert (out / "result.json").read_text() == before  # the old verdict, whole
    assert json.loads(before)["tables"][0]["table"] == "dim_photos"


def test_an_unreadable_result_is_named_by_export_and_replaced_by_the_next_run(
    good, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lake, warehouse = good
    out = tmp_path / "quality"
    out.mkdir()
    (out / "result.json").write_bytes(b"")  # what a killed in-place write used to leave
    args = ["--warehouse", str(warehouse), "--lake", str(lake)]
    code = main(["export", "photo_popularity_training", "--out", str(tmp_path / "s"), *args,
                 "--quality-dir", str(out)])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err and "JSONDecodeError" in err
    assert f"the gate result {out}/result.json cannot be read" in err.replace("\n", "")
    code = main(["validate", *args, "--out", str(out), "--as-of", AS_OF.isoformat(),
                 "--table", "photo_popularity_training"])  # fmt: skip
    assert code == 0
    assert json.loads((out / "result.json").read_text())["passed"] is True


def test_a_lake_argument_never_reaches_the_gates_sql_as_code(
    good, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lake, warehouse = good
    pwned = tmp_path / "PWNED.csv"
    # the scan before it is valid, so a lake pasted into SQL would run the COPY
    crafted = (
        f"{lake}/bronze/events'); COPY (select 1 as x) TO '{pwned}'; "
        f"select * from delta_scan('{lake}"
    )
    code = main(["validate", "--warehouse", str(warehouse), "--lake", crafted,
                 "--out", str(tmp_path / "quality"), "--table", "bronze_events"])  # fmt: skip
    assert code == 1 and "Traceback" not in capsys.readouterr().err
    assert not pwned.exists()  # the lake was a (missing) path, never a statement
