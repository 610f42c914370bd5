"""The data-quality gate passes a good warehouse and blocks each injected fault, naming
exactly the expectations that caught it."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from datetime import timedelta
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

import duckdb
import pytest
import yaml

from lakehouse.cli import main
from lakehouse.quality import datadocs, validate
from lakehouse.quality.datadocs import missing_assets
from lakehouse.quality.reports import describe, junit
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
    return {f"{r.table}.{r.name}" for r in report.blocking_failures}


def _project_with(tmp_path: Path, suite: str, *expectations: dict[str, Any]) -> Path:
    """A project whose ``suite`` also holds ``expectations``: the gate's machinery tried on
    rules this project leaves to dbt's tests (uniqueness, ranges)."""
    project = tmp_path / "project"
    for folder in ("expectations", "models", "seeds", "macros"):
        shutil.copytree(PROJECT / folder, project / folder)
    shutil.copy(PROJECT / "dbt_project.yml", project / "dbt_project.yml")
    (project / ".duckdb").symlink_to(PROJECT / ".duckdb")  # the installed extensions
    path = project / "expectations" / f"{suite}.json"
    data = json.loads(path.read_text())
    data["expectations"] += list(expectations)
    path.write_text(json.dumps(data))
    return project


TRAINING_TESTS = "photo_popularity_training.dbt_tests_pass"


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
    results = {r.name: r for r in training.results}
    assert results["rows_are_the_mature_photos"].observed_value == 0
    share = results["train_share"]
    assert (
        0.75 <= share.observed_value <= 0.85 and share.expected == "share of 'train': 0.75 … 0.85"
    )
    assert training.versions["bronze_versions"]["events"] >= 0
    assert "dbt_invocation_id" in training.versions
    # bronze is validated at the version that build pinned: version 0 creates the table
    # empty, then 20 daily files, one commit each
    assert next(t for t in report.tables if t.table == "bronze_events").versions == {
        "delta_version": 20,
        "pinned": True,
        "pinned_by": training.versions["dbt_invocation_id"],
    }
    # every metric was computed in DuckDB, none is missing
    assert all(r.error is None for t in report.tables for r in t.results)
    # and each model's dbt tests, as its build ran them, are part of the verdict
    dbt_tests = {t.table: r for t in report.tables for r in t.results if r.type == "dbt_tests_pass"}
    # (bronze's are its sources' tests, as the build that pinned the version ran them)
    assert set(dbt_tests) == {t.table for t in report.tables}
    assert all(r.success and r.element_count >= 2 for r in dbt_tests.values())
    assert dbt_tests["bronze_events"].element_count == 7  # 5 not_null, 2 relationships
    assert dbt_tests["photo_popularity_training"].element_count >= 10
    assert results["dbt_tests_pass"].observed_value == (
        f"{results['dbt_tests_pass'].element_count} of "
        f"{results['dbt_tests_pass'].element_count} passed"
    )
    assert (tmp_path / "data_docs" / "index.html").exists()


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
            {  # the not_null test dbt ran passed other content: the gate does not trust it
                TRAINING_TESTS,
                "photo_popularity_training.rows_are_the_mature_photos",
            },
        ),
        (
            "feature computed after posting",
            [
                "update photo_popularity_training set features_as_of = posted_at + interval 1 hour "
                "where photo_id % 20 = 0"
            ],
            {TRAINING_TESTS},  # dbt's expression_is_true owns the rule
        ),
        (
            "shifted label distribution",
            ["update photo_popularity_training set likes_7d = likes_7d * 20 + 40"],
            {
                "photo_popularity_training.expect_column_mean_to_be_between(likes_7d)",
                TRAINING_TESTS,
            },
        ),
        (
            "changed column type",
            [
                "create or replace table photo_popularity_training as select * replace ("
                "cast(likes_7d as double) as likes_7d) from photo_popularity_training"
            ],
            {"photo_popularity_training.column_types", TRAINING_TESTS},
        ),
        (
            "missing column",
            ["alter table photo_popularity_training drop column embedding"],
            {
                "photo_popularity_training.expect_table_columns_to_match_ordered_list",
                "photo_popularity_training.column_types",
                "photo_popularity_training.embedding_is_finite",
                TRAINING_TESTS,
            },
        ),
        (
            "events lost between staging and the fact table",
            [
                "delete from fct_events where event_id in "
                "(select event_id from fct_events order by event_id limit 100)"
            ],
            {"fct_events.expect_table_row_count_to_equal_other_table"},
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
    if TRAINING_TESTS in expected:  # an edit outside dbt: its tests' verdict is void
        (tests,) = [r for r in report.blocking_failures if r.type == "dbt_tests_pass"]
        assert "changed outside dbt" in tests.observed_value, tests.observed_value
        assert "dbt build --select photo_popularity_training" in tests.observed_value


def test_stale_data_blocks_on_freshness(good) -> None:
    lake, warehouse = good
    report, _ = validate(warehouse, str(lake), as_of=AS_OF + timedelta(days=5), project=PROJECT)
    assert _failed(report) == {
        "bronze_events.expect_column_max_to_be_recent(ts)",
        "fct_events.expect_column_max_to_be_recent(occurred_at)",
    }
    stale = next(r for r in report.blocking_failures if r.table == "fct_events")
    assert 5 * 24 < stale.observed_value < 5 * 24 + 48 and stale.expected == "at most 48 h old"
    said = describe(dataclasses.asdict(stale))  # the unit on the observed value too
    assert re.fullmatch(r"observed 1\d\d(\.\d+)? h old; expected at most 48 h old", said), said


def test_the_gate_prints_nothing_on_stderr_and_imports_nothing_it_does_not_use(good) -> None:
    """GX imports pyspark when it is installed, scipy.stats for expectations the gate has
    none of, and altair for its profilers' charts; the gate runs on DuckDB, so ``lakehouse
    validate`` imports GX without pyspark (none of its FutureWarnings, 1.3 s less) and leaves
    scipy.stats and altair to be imported on first use (about 1 s and 0.75 s less): after a
    whole gate run, Data Docs included, neither is, and then each serves as itself."""
    lake, warehouse = good
    script = (
        "import sys\n"
        "from lakehouse.cli import main\n"
        f"code = main(['validate', '--warehouse', {str(warehouse)!r}, '--lake', {str(lake)!r}, "
        f"'--as-of', {AS_OF.isoformat()!r}])\n"
        "unloaded = all(type(sys.modules[m]).__name__ == '_LoadedOnFirstUse' "
        "for m in ('scipy.stats', 'altair'))\n"
        "from great_expectations.expectations.core import "
        "expect_column_kl_divergence_to_be_less_than as kl\n"
        "from scipy import stats\n"
        "import altair\n"
        "served = round(float(kl.stats.entropy([0.5, 0.5], [0.9, 0.1])), 4), stats.norm.cdf(0)\n"
        "chart = altair.Chart(altair.Data(values=[{'a': 1}])).mark_bar().to_dict()['mark']\n"
        "print('pyspark' in sys.modules, unloaded, *served, chart['type'], code)\n"
    )
    done = subprocess.run(
        [sys.executable, "-W", "default", "-c", script],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "GX_ANALYTICS_ENABLED": "false"},
    )
    result = done.stdout.split()[-6:]
    assert result == ["False", "True", "0.5108", "0.5", "bar", "0"], (
        done.stdout[-2000:] + done.stderr
    )
    assert done.stderr == ""


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
    printed = " ".join(printed.split())
    assert "BLOCKING photo_popularity_training: expect_column_mean_to_be_between(likes_7d)" in (
        printed
    )
    assert "; expected 1 … 30" in printed  # observed vs expected, floats rounded
    result = json.loads((out / "result.json").read_text())
    # the mean, and the dbt tests' verdict an edit outside dbt voids
    assert result["passed"] is False and result["blocking_failures"] == 2
    failed = [
        r
        for t in result["tables"]
        for r in t["results"]
        if not r["success"] and r["severity"] == "critical" and r["type"] != "dbt_tests_pass"
    ]
    assert failed[0]["name"] == "expect_column_mean_to_be_between(likes_7d)"
    assert failed[0]["observed_value"] > 30
    assert failed[0]["parameters"] == {
        "min_value": "training_mean_likes_7d_min",
        "max_value": "training_mean_likes_7d_max",
    }
    junit = ET.parse(out / "junit.xml").getroot()
    assert junit.tag == "testsuites" and junit.get("failures") == "2"
    failures = junit.findall(".//failure")
    (message,) = [f.get("message") for f in failures if "dbt tests" not in f.get("message")]
    assert len(failures) == 2 and "likes_7d" in message and "expected 1 … 30" in message
    observed = round(failed[0]["observed_value"], 2)
    assert (
        f"observed {observed}" in message
        or f"observed {failed[0]['observed_value']:.4g}" in message
    )


def test_row_checks_read_the_rows_written_since_the_last_pass(good, tmp_path: Path) -> None:
    """After a passing run, row-by-row checks of a model read only rows of a later build (a
    higher _build_seq); table checks still read the whole table; --all-rows reads every row
    again. dim_photos is never exported, so a change made outside dbt that keeps the build
    number is not found by a nightly run (decision 0004)."""
    lake, _ = good
    warehouse = _faulty(good, tmp_path)
    out = tmp_path / "quality"
    table = ["dim_photos"]
    project = _project_with(
        tmp_path,
        "dim_photos",
        {"type": "expect_column_values_to_be_unique", "kwargs": {"column": "photo_id"}},
        {
            "type": "expect_column_values_to_be_between",
            "kwargs": {"column": "aspect_ratio", "min_value": 0.1, "max_value": 10},
        },
    )
    first, _ = validate(warehouse, str(lake), out=out, as_of=AS_OF, project=project, tables=table)
    assert first.passed and first.tables[0].new_rows is None  # no passing run before: all rows
    con = duckdb.connect(str(warehouse))
    con.execute(  # a later build's 3 bad rows ...
        "update dim_photos set aspect_ratio = 50, _build_seq = _build_seq + 1 "
        "where photo_id in (select photo_id from dim_photos order by 1 limit 3)"
    )
    con.execute(  # ... and 2 bad rows changed outside dbt, keeping their build number
        "update dim_photos set aspect_ratio = 0.01 "
        "where photo_id in (select photo_id from dim_photos order by 1 desc limit 2)"
    )
    con.close()
    night, _ = validate(warehouse, str(lake), out=out, as_of=AS_OF, project=project, tables=table)
    (photos,) = night.tables
    assert photos.new_rows == 3 and photos.rows == first.tables[0].rows
    results = {r.name: r for r in photos.results}
    ratio = results["expect_column_values_to_be_between(aspect_ratio)"]
    assert (ratio.rows, ratio.element_count, ratio.unexpected_count) == ("new", 3, 3)
    assert results["expect_column_values_to_be_unique(photo_id)"].rows == "all"
    assert results["expect_column_values_to_be_unique(photo_id)"].element_count == photos.rows
    every, _ = validate(
        warehouse, str(lake), out=out, as_of=AS_OF, project=project, tables=table, all_rows=True
    )
    ratio = next(
        r for r in every.tables[0].results
        if r.name == "expect_column_values_to_be_between(aspect_ratio)"
    )  # fmt: skip
    assert every.tables[0].new_rows is None and ratio.unexpected_count == 5


def test_an_exportable_mart_changed_outside_dbt_is_checked_whole(good, tmp_path: Path) -> None:
    """The training mart can be exported, so the gate binds its verdict to the content: rows
    changed outside dbt, whatever build number they carry, make every row new again."""
    lake, _ = good
    warehouse = _faulty(good, tmp_path)
    out = tmp_path / "quality"
    table = ["photo_popularity_training"]
    project = _project_with(
        tmp_path,
        "photo_popularity_training",
        {
            "type": "expect_column_values_to_be_between",
            "kwargs": {"column": "owner_account_age_days", "min_value": 0},
        },
    )
    first, _ = validate(warehouse, str(lake), out=out, as_of=AS_OF, project=project, tables=table)
    assert first.passed and first.tables[0].cursor["fingerprint"]
    with duckdb.connect(str(warehouse)) as con:
        con.execute(  # 2 bad rows changed outside dbt, keeping their build number
            "update photo_popularity_training set owner_account_age_days = -5 where photo_id in "
            "(select photo_id from photo_popularity_training order by 1 desc limit 2)"
        )
    night, _ = validate(warehouse, str(lake), out=out, as_of=AS_OF, project=project, tables=table)
    (training,) = night.tables
    assert training.changed_outside_dbt and training.new_rows is None
    age = next(
        r for r in training.results
        if r.name == "expect_column_values_to_be_between(owner_account_age_days)"
    )  # fmt: skip
    assert age.unexpected_count == 2 and not night.passed
    # dbt's own accepted_range ran on the content before the edit: its pass no longer counts
    assert _failed(night) == {
        "photo_popularity_training.expect_column_values_to_be_between(owner_account_age_days)",
        TRAINING_TESTS,
    }
    # blocked: the cursor stays the last pass's, so the next run reads every row again too
    again, _ = validate(warehouse, str(lake), out=out, as_of=AS_OF, project=project, tables=table)
    assert again.tables[0].changed_outside_dbt and not again.passed


def test_the_next_run_reports_what_changed(good, tmp_path: Path) -> None:
    lake, warehouse = good
    out = tmp_path / "quality"
    validate(warehouse, str(lake), out=out, as_of=AS_OF, project=PROJECT)
    shifted = _faulty(
        good, tmp_path, "update photo_popularity_training set likes_7d = likes_7d * 20 + 40"
    )
    _, data = validate(shifted, str(lake), out=out, as_of=AS_OF, project=PROJECT)
    moved = {(c["table"], c["metric"]) for c in data["changes"]}
    assert ("photo_popularity_training", "expect_column_mean_to_be_between(likes_7d)") in moved
    assert ("photo_popularity_training", "rows") not in moved  # only what moved past 5%
    assert len(list((out / "runs").iterdir())) == 2


def test_great_expectations_loads_every_suite_with_its_own_api() -> None:
    import great_expectations as gx
    from great_expectations.core.expectation_suite import ExpectationSuiteSchema

    import lakehouse.quality.expectations  # noqa: F401  (the two custom expectation classes)

    for path in sorted((PROJECT / "expectations").glob("*.json")):
        data = json.loads(path.read_text())
        suite = gx.ExpectationSuite(**data)
        assert len(suite.expectations) == len(data["expectations"]) > 0, path.name
        assert {e.severity.value for e in suite.expectations} <= {"critical", "warning", "info"}
        ExpectationSuiteSchema().load(data)  # GX's schema accepts the file as it is
        # only GX's keys at the top; the project's extras live under meta
        assert set(data) <= {"name", "expectations", "meta", "notes", "id"}, path.name


def test_a_broken_expectation_is_its_own_error_and_the_rest_still_report(
    good, tmp_path: Path
) -> None:
    project = tmp_path / "project"
    shutil.copytree(PROJECT / "expectations", project / "expectations")
    (project / ".duckdb").symlink_to(PROJECT / ".duckdb")  # the installed extensions
    path = project / "expectations" / "dim_photos.json"
    suite = json.loads(path.read_text())
    suite["expectations"] += [
        {  # a warning on a column that is not there
            "type": "expect_column_values_to_not_be_null",
            "kwargs": {"column": "no_such_column"},
            "severity": "warning",
        },
        {  # kwargs GX refuses
            "type": "expect_column_values_to_be_between",
            "kwargs": {"column": "aspect_ratio", "min_value": "wide"},
            "severity": "info",
        },
    ]
    path.write_text(json.dumps(suite))
    lake, warehouse = good
    report, _ = validate(warehouse, str(lake), as_of=AS_OF, project=project, tables=["dim_photos"])
    assert report.passed  # neither is critical
    results = report.tables[0].results
    # the other results are all there, and the model's dbt tests
    assert len(results) == len(suite["expectations"]) + 1
    assert [r.type for r in results].count("dbt_tests_pass") == 1
    broken = {r.name: r for r in results if r.error}
    assert set(broken) == {
        "expect_column_values_to_not_be_null(no_such_column)",
        "expect_column_values_to_be_between(aspect_ratio)",
    }
    assert "no_such_column" in broken["expect_column_values_to_not_be_null(no_such_column)"].error
    assert "min_value" in broken["expect_column_values_to_be_between(aspect_ratio)"].error
    assert sum(r.success for r in results) == len(results) - 2
    assert {r.severity for r in report.warnings + report.infos} == {"warning", "info"}
    # in JUnit neither is a pass: each is a skipped case typed by its severity, none a failure
    xml = ET.fromstring(junit(report))
    assert xml.get("failures") == "0" and xml.get("skipped") == "2"
    skipped = {case.get("name"): case.find("skipped") for case in xml.iter("testcase")}
    shown = {name: s.get("type") for name, s in skipped.items() if s is not None}
    assert shown == {
        "expect_column_values_to_not_be_null(no_such_column)": "warning",
        "expect_column_values_to_be_between(aspect_ratio)": "info",
    }
    assert "no_such_column" in skipped["expect_column_values_to_not_be_null(no_such_column)"].get(
        "message"
    )


def test_a_suite_with_a_severity_gx_does_not_have_is_refused(tmp_path: Path) -> None:
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
    with pytest.raises(SuiteError, match=r"bad.json expectation 0 .* critical, warning, info"):
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


def test_bounds_come_from_the_environment_section_and_a_parameters_file(
    good, tmp_path: Path
) -> None:
    lake, warehouse = good
    table = ["photo_popularity_training"]
    prod, _ = validate(warehouse, str(lake), as_of=AS_OF, project=PROJECT, tables=table, env="prod")
    (blocked,) = prod.blocking_failures  # prod expects a training set of 10,000 rows or more
    assert blocked.name == "expect_table_row_count_to_be_between"
    assert blocked.expected == "≥ 10,000" and blocked.observed_value < 10_000
    assert prod.env == "prod" and prod.parameters["training_min_rows"] == 10_000
    override = tmp_path / "gate.yml"
    override.write_text("training_min_rows: 50\ntraining_mean_likes_7d_max: 2\n")
    mine, _ = validate(
        warehouse, str(lake), as_of=AS_OF, project=PROJECT, tables=table, env="prod",
        parameters_file=override,
    )  # fmt: skip
    assert _failed(mine) == {"photo_popularity_training.expect_column_mean_to_be_between(likes_7d)"}
    with pytest.raises(SuiteError, match="no section for environment 'staging'"):
        validate(warehouse, str(lake), project=PROJECT, tables=table, env="staging")


def test_suggest_proposes_bounds_from_the_kept_runs(good, tmp_path: Path) -> None:
    from lakehouse.quality import suggest

    lake, warehouse = good
    out = tmp_path / "quality"
    table = ["photo_popularity_training"]
    first, _ = validate(warehouse, str(lake), out=out, as_of=AS_OF, project=PROJECT, tables=table)
    shifted = _faulty(
        good, tmp_path, "update photo_popularity_training set likes_7d = likes_7d + 1"
    )
    validate(shifted, str(lake), out=out, as_of=AS_OF, project=PROJECT, tables=table)
    found, text = suggest(out, project=PROJECT)
    mean = first.tables[0].results
    observed = next(r for r in mean if r.name == "expect_column_mean_to_be_between(likes_7d)")
    low = next(s for s in found if s.name == "training_mean_likes_7d_min")
    high = next(s for s in found if s.name == "training_mean_likes_7d_max")
    assert low.runs == high.runs == 2 and low.current == 1 and high.current == 30
    assert low.observed_min == pytest.approx(observed.observed_value)
    assert high.observed_max == pytest.approx(observed.observed_value + 1)
    assert low.proposed < low.observed_min and high.proposed > high.observed_max
    assert high.proposed - high.observed_max == pytest.approx(1, rel=0.01)  # the range's width
    rows = next(s for s in found if s.name == "training_min_rows")  # a count: whole, below
    assert rows.proposed == int(rows.proposed) < rows.observed_min == first.tables[0].rows
    shares = [s for s in found if "share" in s.name or "non_null" in s.name]
    assert shares and all(0 <= s.proposed <= 1 for s in shares)  # fractions stay fractions
    section = yaml.safe_load(text)["suggested"]
    assert section["training_min_rows"] == rows.proposed
    assert section["training_mean_likes_7d_max"] == high.proposed
    assert "as_of" not in section


def test_validate_exit_codes_and_json_summary(
    good, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    lake, warehouse = good
    monkeypatch.chdir(  # the CLI's project is the working directory's
        _project_with(
            tmp_path,
            "dim_photos",
            {
                "type": "expect_column_values_to_be_between",
                "kwargs": {"column": "aspect_ratio", "min_value": 0.1, "max_value": 10},
            },
        )
    )
    args = ["validate", "--lake", str(lake), "--as-of", AS_OF.isoformat(), "--json",
            "--table", "dim_photos"]  # fmt: skip
    assert main([*args, "--warehouse", str(warehouse), "--out", str(tmp_path / "q")]) == 0
    passed = json.loads(capsys.readouterr().out)
    assert passed["passed"] is True and passed["tables"][0]["table"] == "dim_photos"
    assert passed["tables"][0]["rows"] > 0 and passed["tables"][0]["not_passed"] == []
    faulty = _faulty(good, tmp_path, "update dim_photos set aspect_ratio = 50 where photo_id < 10")
    assert main([*args, "--warehouse", str(faulty), "--out", str(tmp_path / "q2")]) == 1
    blocked = json.loads(capsys.readouterr().out)
    (failure,) = blocked["tables"][0]["not_passed"]
    assert failure["name"] == "expect_column_values_to_be_between(aspect_ratio)"
    assert failure["expected"] == "0.1 … 10" and failure["unexpected_count"] > 0
    missing = tmp_path / "nowhere.duckdb"
    assert main([*args, "--warehouse", str(missing)]) == 2  # could not run: not a verdict
    out = capsys.readouterr()
    assert json.loads(out.out) == {"passed": None, "error": out.err.split("error: ", 1)[1].strip()}
    assert f"no warehouse at {missing}" in out.err
    assert main([*args, "--warehouse", str(warehouse), "--env", "staging"]) == 2


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _screenshot(page: Path, png: Path, tmp_path: Path) -> Any:
    from PIL import Image

    subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", f"--user-data-dir={tmp_path / 'chromium'}", "--hide-scrollbars",
         "--window-size=1280,1400", f"--screenshot={png}", page.as_uri()],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    return Image.open(png).convert("RGB")


def _share(image: Any, box: tuple[int, int, int, int], color: tuple[int, int, int]) -> float:
    """The share of pixels in ``box`` within a small distance of ``color``."""
    region = image.crop(box)
    pixels = list(region.get_flattened_data())
    near = sum(all(abs(a - b) <= 24 for a, b in zip(p, color, strict=True)) for p in pixels)
    return near / len(pixels)


@pytest.mark.skipif(
    CHROMIUM is None,
    reason="Chromium is not installed (Debian: apt-get install chromium; .ci/run installs it)",
)
def test_the_report_renders_in_a_browser_with_verdict_and_trend_chart(good, tmp_path: Path) -> None:
    """Looks at the page as a person does: a screenshot from headless Chromium, then pixels:
    the verdict banner's colour, the trend lines, the highlighted failing row."""
    lake, warehouse = good
    out = tmp_path / "quality"
    validate(warehouse, str(lake), out=out, as_of=AS_OF, project=PROJECT)
    green = _screenshot(out / "report.html", tmp_path / "passed.png", tmp_path)
    shifted = _faulty(
        good, tmp_path, "update photo_popularity_training set likes_7d = likes_7d * 20 + 40"
    )
    validate(shifted, str(lake), out=out, as_of=AS_OF, project=PROJECT)
    red = _screenshot(out / "report.html", tmp_path / "blocked.png", tmp_path)
    banner = (20, 20, 600, 50)
    assert _share(green, banner, (46, 125, 50)) > 0.7  # PASSED: a green banner
    assert _share(red, banner, (198, 40, 40)) > 0.7  # BLOCKED: a red banner
    # the trend panels: a dot per metric after one run, a line through two dots after two
    blue = (31, 111, 178)
    dots, lines = _share(green, (0, 0, 1280, 1400), blue), _share(red, (0, 0, 1280, 1400), blue)
    assert dots > 0.0001 and lines > 5 * dots
    # the failing row is highlighted in the table below
    assert _share(red, (0, 0, 1280, 1400), (255, 221, 221)) > _share(
        green, (0, 0, 1280, 1400), (255, 221, 221)
    )


def test_a_tampered_cursor_is_not_sql_and_means_every_row(good, tmp_path: Path) -> None:
    lake, warehouse = good
    out = tmp_path / "quality"
    table = ["dim_photos"]
    validate(warehouse, str(lake), out=out, as_of=AS_OF, project=PROJECT, tables=table)
    result = json.loads((out / "result.json").read_text())
    assert result["tables"][0]["cursor"]["build_seq"] >= 1
    for tampered in ("1 or true --", 1.5, -1, True, {"build_seq": 1}):
        result["tables"][0]["cursor"]["build_seq"] = tampered
        (out / "result.json").write_text(json.dumps(result))
        again, _ = validate(
            warehouse, str(lake), out=out, as_of=AS_OF, project=PROJECT, tables=table
        )
        assert again.passed and again.tables[0].new_rows is None  # unreadable record: all rows
        result = json.loads((out / "result.json").read_text())


@pytest.mark.parametrize("run_id", ["6a4777003921", "5228471957ad", "202612030600"])
def test_gx_is_given_the_runs_start_and_never_parses_the_run_id_as_a_date(run_id: str) -> None:
    """A random hex run id once crashed the gate inside dateutil (OverflowError), and an id of
    digits would be read as a date: GX's run time is the run's start, whatever the id."""
    from lakehouse.quality.runner import RunReport, run_identifier

    report = RunReport(run_id, "2026-12-03T22:29:25.123456+00:00", NIGHT.isoformat())
    identifier = run_identifier(report)
    assert identifier.run_name == run_id
    assert identifier.run_time.isoformat() == "2026-12-03T22:29:25.123456+00:00"


_SITE_STATE = """(() => ({
  rows: document.querySelectorAll('table tbody tr').length,
  font: getComputedStyle(document.body).fontFamily,
  icons: [...document.fonts].some(f => f.family.includes('Font Awesome') && f.status === 'loaded'),
  text: document.body.innerText,
}))()"""


@pytest.mark.skipif(
    CHROMIUM is None,
    reason="Chromium is not installed (Debian: apt-get install chromium; .ci/run installs it)",
)
@pytest.mark.skipif(
    bool(missing_assets(PROJECT)),
    reason="the Data Docs assets are not installed (`make setup` installs them with npm; "
    "Debian: apt-get install npm)",
)
def test_data_docs_render_offline_with_styles_lists_and_icons(
    good, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GX's Data Docs in a Chromium that resolves no host name: styled, the validation list
    filled in, the pass icons drawn from Font Awesome's font. The same site with the CDN
    addresses GX writes (no local assets) shows none of it."""
    from tests.browser import chromium

    lake, warehouse = good
    validate(warehouse, str(lake), out=tmp_path / "offline", as_of=AS_OF, project=PROJECT)
    monkeypatch.setattr(datadocs, "node_modules", lambda project: tmp_path / "no-modules")
    validate(warehouse, str(lake), out=tmp_path / "cdn", as_of=AS_OF, project=PROJECT)
    seen = {}
    with chromium(tmp_path / "chromium", 1400, 1000, offline=True) as page:
        for site in ("offline", "cdn"):
            page.open((tmp_path / site / "data_docs" / "index.html").as_uri())
            time.sleep(3)  # the table is filled in by script once the page loaded
            seen[site] = page.evaluate(_SITE_STATE)
            page.screenshot(tmp_path / f"{site}.png")
    offline, cdn = seen["offline"], seen["cdn"]
    assert offline["rows"] >= 7 and "photo_popularity_training" in offline["text"]
    # Bootstrap's font stack, not the browser's default serif
    assert offline["font"].startswith("-apple-system") and offline["icons"] is True
    assert cdn["rows"] == 0 and "Times" in cdn["font"] and cdn["icons"] is False
    pages = list((tmp_path / "offline" / "data_docs").rglob("*.html"))
    assert not [p for p in pages if "cdnjs.cloudflare.com" in p.read_text()]


def test_the_suites_load_and_run_in_a_plain_gx_session(good, tmp_path: Path) -> None:
    """GX alone, as a notebook runs it: without the project's plugins GX drops the custom
    expectations (logged, no exception); with `lakehouse.quality.plugins` imported every
    suite file loads whole by GX's own constructor, and the model suites run on the
    warehouse through `add_duckdb` with the bounds of parameters.yml, freshness as of now,
    no expectation raising. The gate's verdict on the same warehouse is the same."""
    lake, warehouse = good
    script = textwrap.dedent(f"""
        import json, sys
        from pathlib import Path
        import great_expectations as gx
        files = sorted(Path("expectations").glob("*.json"))
        raw = {{f.stem: json.loads(f.read_text()) for f in files}}
        plain = {{n: len(gx.ExpectationSuite(**d).expectations) for n, d in raw.items()}}
        from lakehouse.quality import plugins
        loaded = {{n: len(gx.ExpectationSuite(**d).expectations) for n, d in raw.items()}}
        context = gx.get_context(mode="ephemeral")
        source = context.data_sources.add_duckdb(
            "warehouse", connection_string="duckdb:///{warehouse}", read_only=True)
        runs = {{}}
        for name in ("fct_events", "dim_photos", "photo_popularity_training"):
            batch = source.add_table_asset(name, table_name=name)
            batch = batch.add_batch_definition_whole_table("whole")
            suite = context.suites.add(plugins.read_suite(f"expectations/{{name}}.json"))
            result = context.validation_definitions.add(
                gx.ValidationDefinition(name=name, data=batch, suite=suite)
            ).run(expectation_parameters=plugins.suite_parameters())
            runs[name] = [
                [r.expectation_config.type, r.success, r.exception_info.get("raised_exception"),
                 r.result.get("observed_value")]
                for r in result.results
            ]
        print(json.dumps({{"plain": plain, "loaded": loaded,
                          "written": {{n: len(d["expectations"]) for n, d in raw.items()}},
                          "runs": runs}}, default=str))
    """)
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=PROJECT, capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stderr[-3000:]
    data = json.loads(out.stdout.splitlines()[-1])
    assert data["loaded"] == data["written"]  # every expectation of every file
    assert data["plain"]["fct_events"] < data["written"]["fct_events"]  # what GX alone drops
    assert "expect_column_max_to_be_recent not found" in out.stderr
    for name, results in data["runs"].items():
        assert len(results) == data["written"][name]
        assert not [r for r in results if r[2]], f"{name}: {results}"
    fresh = next(r for r in data["runs"]["fct_events"] if r[0] == "expect_column_max_to_be_recent")
    assert fresh[3] > 24  # hours since the sample's last event, as of now (the sample is old)
    # the gate, as of the night after the sample: the same warehouse passes
    models = ["fct_events", "dim_photos", "photo_popularity_training"]
    report, _ = validate(warehouse, str(lake), as_of=AS_OF, project=PROJECT, tables=models)
    assert report.passed
    share = [r for r in data["runs"]["photo_popularity_training"] if "share" in r[0]]
    assert share and all(r[1] for r in share)


def test_a_suite_gx_would_silently_shorten_is_refused_by_name(tmp_path: Path) -> None:
    from lakehouse.quality.plugins import read_suite

    suite = json.loads((PROJECT / "expectations" / "fct_events.json").read_text())
    suite["expectations"].append({"type": "expect_column_to_be_purple", "kwargs": {}})
    path = tmp_path / "fct_events.json"
    path.write_text(json.dumps(suite))
    with pytest.raises(SuiteError, match=r"fct_events.json: .*expect_column_to_be_purple"):
        read_suite(path)


def _all_rows_results(report, table: str) -> dict[str, Any]:
    """What each whole-table expectation of ``table`` observed."""
    (found,) = [t for t in report.tables if t.table == table]
    return {r.name: (r.observed_value, r.success) for r in found.results if r.rows == "all"}


def test_whole_table_checks_of_bronze_are_running_totals_with_the_same_results(
    good, tmp_path: Path
) -> None:
    """A bronze table only grows by ingest appends, so its row count, non-null counts, max and
    value counts are the last pass's totals plus those of the rows appended since (issue 30):
    the same observed values as reading the whole table, and whole again after a commit that
    is not an ingest append, or when the rows appended are not what the commits say."""
    import pyarrow as pa
    from deltalake import CommitProperties, DeltaTable, write_deltalake

    from lakehouse.ingest.bronze import Bronze

    lake = tmp_path / "lake"
    shutil.copytree(good[0], lake)
    warehouse = good[1]
    uri = str(lake / "bronze" / "events")
    table = ["bronze_events"]
    out = tmp_path / "quality"

    def night(**kwargs: Any) -> Any:
        report, _ = validate(
            warehouse, str(lake), out=out, as_of=AS_OF, project=PROJECT, tables=table, **kwargs
        )
        whole, _ = validate(
            warehouse, str(lake), out=tmp_path / "whole", as_of=AS_OF, project=PROJECT,
            tables=table, all_rows=True,
        )  # fmt: skip
        assert report.passed and whole.tables[0].running_totals is None
        ours = _all_rows_results(report, "bronze_events")
        wholly = _all_rows_results(whole, "bronze_events")
        assert ours == {name: wholly[name] for name in ours}
        assert {
            "expect_table_row_count_to_be_between", "expect_column_max_to_be_recent(ts)",
            "expect_column_proportion_of_non_null_values_to_be_between(session_id)",
            "like_share",
        } <= set(ours)  # fmt: skip
        assert report.tables[0].rows == whole.tables[0].rows
        return report.tables[0]

    first = night()
    assert first.running_totals is None  # nothing kept yet: the whole table
    assert set(first.cursor["totals"]["values"]) >= {
        "table.row_count", "column.max(ts)", "column.non_null_count(session_id)",
        "column.value_counts(event_type)",
    }  # fmt: skip

    # an ingest append: 300 newer events, all likes, a third without a session
    rows = DeltaTable(uri).to_pyarrow_table().slice(0, 300)
    ids = pa.array([f"appended-{i}" for i in range(300)])
    session = pa.array([None if i % 3 == 0 else f"s{i}" for i in range(300)], pa.string())
    newest = AS_OF  # newer than any event of the history
    rows = (
        rows.set_column(rows.schema.get_field_index("event_id"), "event_id", ids)
        .set_column(rows.schema.get_field_index("session_id"), "session_id", session)
        .set_column(
            rows.schema.get_field_index("event_type"), "event_type", pa.array(["like"] * 300)
        )
        .set_column(
            rows.schema.get_field_index("ts"),
            "ts",
            pa.array([newest] * 300, rows.schema.field("ts").type),
        )
        .set_column(rows.schema.get_field_index("_batch_id"), "_batch_id", pa.array(["b-a"] * 300))
    )
    Bronze(str(lake)).append("events", rows, "b-a")
    second = night()
    assert second.running_totals is not None
    assert second.running_totals["since_delta_version"] == first.cursor["delta_version"]
    assert set(second.running_totals["served"]) == {
        "table.row_count", "column.value_counts(event_type)", "column.max(ts)",
        "column.non_null_count(session_id)",
    }  # fmt: skip
    assert second.rows == first.rows + 300 and second.new_rows == 300
    before = {r.name: r.observed_value for r in first.results}
    after = {r.name: r.observed_value for r in second.results}
    assert after["expect_column_max_to_be_recent(ts)"] == 0.0  # the appended events are the newest
    assert after["like_share"] > before["like_share"]
    assert (
        after["expect_column_proportion_of_non_null_values_to_be_between(session_id)"]
        < (before["expect_column_proportion_of_non_null_values_to_be_between(session_id)"])
    )

    # a commit that names an ingest batch already in the table: its rows are read twice by
    # the batch filter, which no longer matches what the commits added; the whole table
    write_deltalake(
        uri, rows.slice(0, 10), mode="append",
        commit_properties=CommitProperties(custom_metadata={"lakehouse.batch_id": "b-a"}),
    )  # fmt: skip
    assert night().running_totals is None
    third = night()
    assert third.running_totals is not None  # totals kept again by the whole read

    # a commit that is not an ingest append (a delete): the whole table
    DeltaTable(uri).delete("event_id = 'appended-7'")
    assert night().running_totals is None


def test_only_metrics_that_combine_exactly_are_kept_as_totals() -> None:
    from decimal import Decimal

    from lakehouse.quality.totals import (
        MAX_KEPT_VALUES,
        NotKept,
        RunningTotals,
        as_type_of,
        combine,
        encode,
        metric_key,
    )

    whole = {"batch_id": "warehouse-bronze_events", "column": "ts", "row_condition": None}
    assert metric_key("column.max", whole, {}) == "column.max(ts)"
    assert metric_key("table.row_count", {"batch_id": "b"}, {}) == "table.row_count"
    assert metric_key("column.mean", whole, {}) is None  # not a count, sum, max or min
    assert metric_key("column.max", {**whole, "row_condition": 'col("x")>1'}, {}) is None
    assert metric_key("column.value_counts", whole, {"sort": "count"}) is None
    assert metric_key("column.value_counts", whole, {"sort": "value", "collate": None})
    for value in (float("nan"), Decimal("1.5"), b"x"):
        with pytest.raises(NotKept):
            encode(value)
    assert combine("column.max", None, 3) == 3 and combine("column.min", 2, None) == 2
    assert combine("column.value_counts", {"a": 1}, {"a": 2, "b": 1}) == {"a": 3, "b": 1}
    kept = as_type_of("2026-11-01T06:00:00+00:00", NIGHT)  # GX returns a max as ISO text
    assert combine("column.max", kept, NIGHT) == max(kept, NIGHT)
    totals = RunningTotals("select 1")
    totals.record("column.value_counts(split)", {"train": 8, "val": 1})
    totals.record("column.value_counts(photo_id)", {i: 1 for i in range(MAX_KEPT_VALUES + 1)})
    assert totals.now == {"column.value_counts(split)": [["train", 8], ["val", 1]]}
