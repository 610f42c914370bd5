"""One contract per mart, owned by dbt's YAML: a column an analyst adds to a mart (its SQL
and its YAML, nothing else) is checked by the gate, exported to the shards and their
manifest, and read by the loader. The gate's schema checks of a contracted model come from
dbt's manifest; no suite restates the column list or the types."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pyarrow.compute as pc
import pytest
import torch
from deltalake import DeltaTable

from lakehouse.export import export_model
from lakehouse.loader import ShardDataset
from lakehouse.quality import validate
from lakehouse.warehouse import run_dbt
from tests.conftest import NIGHT, BuiltWarehouse

REPO = Path(__file__).resolve().parents[1]
MODEL = "photo_popularity_training"
COLUMN = """      - name: is_popular
        data_type: boolean
        description: likes_7d >= var popular_likes_threshold (label).
        data_tests: [not_null]
"""


def _project_copy(target: Path) -> Path:
    target.mkdir()
    for name in ("dbt_project.yml", "profiles.yml"):
        shutil.copy(REPO / name, target / name)
    for folder in ("models", "macros", "seeds", "expectations", "tests/dbt"):
        shutil.copytree(REPO / folder, target / folder)
    (target / ".duckdb").symlink_to(REPO / ".duckdb")  # the installed DuckDB extensions
    return target


def test_a_column_an_analyst_adds_to_a_mart_reaches_the_gate_shards_and_loader(
    built_warehouse: BuiltWarehouse, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = _project_copy(tmp_path / "project")
    # the copy's own dbt artifacts, not the session's (conftest points every build there)
    monkeypatch.setenv("DBT_TARGET_PATH", str(tmp_path / "target"))
    sql = project / "models" / "marts" / f"{MODEL}.sql"  # the analyst's two edits
    sql.write_text(
        sql.read_text().replace(
            "        labels.is_popular,\n",
            "        labels.is_popular,\n        photos.width = photos.height as is_square,\n",
        )
    )
    yaml = project / "models" / "marts" / "_marts__models.yml"
    assert COLUMN in yaml.read_text()
    yaml.write_text(
        yaml.read_text().replace(
            COLUMN,
            COLUMN + "      - name: is_square\n        data_type: boolean\n"
            "        description: A square photo (width = height).\n",
        )
    )
    warehouse, lake = tmp_path / "warehouse.duckdb", str(built_warehouse.lake)
    built = run_dbt(lake, warehouse, project=project, quiet=True)
    assert built.success, (built.error, built.failures)

    report, _ = validate(warehouse, lake, out=tmp_path / "quality", project=project, as_of=NIGHT)
    assert report.passed, [(r.table, r.name, r.observed_value) for r in report.blocking_failures]
    (mart,) = [t for t in report.tables if t.table == MODEL]
    checked = {r.name: r for r in mart.results}
    assert checked["column_types"].success  # derived from dbt's manifest, with the new column
    listed = checked["expect_table_columns_to_match_ordered_list"]
    assert listed.success and "is_square" in str(listed.kwargs)

    folder, manifest = export_model(
        warehouse, MODEL, tmp_path / "shards", quality_dir=tmp_path / "quality",
        project=project, lake=lake,
    )  # fmt: skip
    assert "is_square" in manifest.columns
    ds = ShardDataset(folder, "train", batch_size=256, columns=["photo_id", "is_square"])
    squares = torch.cat([batch["is_square"] for batch in ds])
    assert len(squares) == ds.num_samples and squares.any() and not squares.all()


def test_a_dbt_test_the_build_failed_or_never_ran_blocks_the_gate_and_export(
    built_warehouse: BuiltWarehouse, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One verdict: structural rules live in the model's dbt YAML only (no suite restates
    them), so the gate passes a model only when every data test its build's project wrote
    for it passed: a test the build failed blocks, and so does a test no invocation ran
    (`dbt run`) until a later `dbt test` passes it."""
    from lakehouse.export import ExportError

    project = _project_copy(tmp_path / "project")
    monkeypatch.setenv("DBT_TARGET_PATH", str(tmp_path / "target"))
    yaml = project / "models" / "marts" / "_marts__models.yml"
    likes = (
        "          - accepted_range:\n              arguments: {min_value: 0, max_value: 1000000}\n"
    )
    assert likes in yaml.read_text()
    yaml.write_text(  # the analyst's new rule, which the data breaks
        yaml.read_text().replace(likes, likes.replace("1000000", "5"))
    )
    warehouse, lake = tmp_path / "warehouse.duckdb", str(built_warehouse.lake)
    quality = tmp_path / "quality"
    built = run_dbt(lake, warehouse, project=project, quiet=True)
    assert not built.success  # the test failed; dbt built the table before testing it
    report, _ = validate(warehouse, lake, out=quality, project=project, as_of=NIGHT)
    blocked = {(r.table, r.type): r for r in report.blocking_failures}
    assert set(blocked) == {(MODEL, "dbt_tests_pass")}, blocked
    verdict = blocked[(MODEL, "dbt_tests_pass")]
    observed = str(verdict.observed_value)
    assert re.search(
        r"accepted_range_photo_popularity_training_likes_7d\w*: fail \(\d+ rows\)", observed
    )
    with pytest.raises(ExportError, match="dbt_tests_pass"):
        export_model(
            warehouse, MODEL, tmp_path / "shards", quality_dir=quality, project=project,
            lake=lake,
        )  # fmt: skip

    # the rule as it was; `dbt run` builds without testing: nothing vouches for the content
    yaml.write_text(yaml.read_text().replace(likes.replace("1000000", "5"), likes))
    assert run_dbt(lake, warehouse, command="run", project=project, quiet=True).success
    report, _ = validate(warehouse, lake, out=quality, project=project, as_of=NIGHT)
    (untested,) = [r for r in report.blocking_failures if r.table == MODEL]
    assert untested.type == "dbt_tests_pass"
    assert untested.unexpected_count == untested.element_count >= 10  # every one not run
    assert str(untested.observed_value).startswith(f"0 of {untested.element_count} passed; ")
    assert ": not run" in str(untested.observed_value)
    # a later `dbt test` of the same content is the verdict the gate needed
    assert run_dbt(lake, warehouse, command="test", project=project, quiet=True).success
    report, _ = validate(warehouse, lake, out=quality, project=project, as_of=NIGHT)
    assert report.passed, [(r.table, r.name, r.observed_value) for r in report.blocking_failures]
    _, manifest = export_model(
        warehouse, MODEL, tmp_path / "shards", quality_dir=quality, project=project, lake=lake
    )
    assert sum(s.rows for s in manifest.shards) > 0


REPORTS_SOURCE = """
      - name: reports
        description: Photos users reported, with the reason they chose.
        meta:
          lakehouse: {landing_dir: reports, formats: [.csv], key: [report_id], order: 4}
        columns:
          - name: report_id
            data_type: bigint
            description: The report's id.
            data_tests: [not_null]
          - name: photo_id
            data_type: bigint
            description: The photo reported.
            data_tests:
              - not_null
              - relationships:
                  arguments:
                    to: source('app', 'photos')
                    field: photo_id
          - name: reason
            data_type: varchar
            description: What the user chose.
            meta: {max_length: 16}
          - name: reported_at
            data_type: timestamp with time zone
            description: When, UTC.
            data_tests: [not_null]
"""
REPORTS_MODEL = """{{ config(incremental_strategy='append') }}

with

source as (
    select * from {{ source('app', 'reports') }}
),

committed as (
    {{ committed_rows('source', 'reports') }}
),

deduplicated as (
    {{ first_ingested('committed', 'report_id') }}
),

new_reports as (
    {{ not_loaded_yet('deduplicated', 'report_id') }}
)

select
    report_id,
    photo_id,
    reason,
    reported_at,
    _batch_id as batch_id,
    {{ build_seq() }} as _build_seq
from new_reports
"""
REPORTS_YAML = """
  - name: stg_app__reports
    description: Reported photos from committed ingest batches, one row per report_id.
    columns:
      - name: report_id
        description: The report's id.
        data_tests: [unique, not_null]
      - name: photo_id
        description: The photo reported.
        data_tests: [not_null]
"""


def test_a_bronze_table_is_its_declaration_plus_its_staging_model(
    built_warehouse: BuiltWarehouse, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Adding a bronze table is one declaration in the sources YAML and a staging model (its
    SQL and YAML): ingest lands it against the declaration (quarantining a row that breaks
    it, the column named), dbt reads and tests it, and the gate records the verdict of its
    source tests. No Python, suite or list elsewhere is edited."""
    from lakehouse.ingest import ingest
    from lakehouse.warehouse import connect

    project = _project_copy(tmp_path / "project")
    monkeypatch.setenv("DBT_TARGET_PATH", str(tmp_path / "target"))
    monkeypatch.chdir(project)  # ingest reads the declarations of the project it runs in
    sources = project / "models" / "staging" / "app" / "_app__sources.yml"
    declared = sources.read_text()
    sources.write_text(declared.rstrip("\n") + "\n" + REPORTS_SOURCE.lstrip("\n"))
    (project / "models" / "staging" / "app" / "stg_app__reports.sql").write_text(REPORTS_MODEL)
    models = project / "models" / "staging" / "app" / "_app__models.yml"
    models.write_text(models.read_text().rstrip("\n") + "\n" + REPORTS_YAML)

    lake = tmp_path / "lake"
    shutil.copytree(built_warehouse.lake, lake)
    photo = pc.min(DeltaTable(str(lake / "bronze" / "photos")).to_pyarrow_table()["photo_id"])
    photo = photo.as_py()
    landing = tmp_path / "landing" / "reports"
    landing.mkdir(parents=True)
    (landing / "reports-1.csv").write_text(
        "report_id,photo_id,reason,reported_at\n"
        f"1,{photo},spam,2026-10-30T10:00:00Z\n"
        f"2,{photo},,2026-10-30T11:00:00Z\n"
        f"3,{photo},nudity,\n"  # reported_at is required
        "4,999999999,spam,2026-10-30T12:00:00Z\n"  # no such photo
    )
    report = ingest(str(tmp_path / "landing"), str(lake), now=NIGHT)
    (landed,) = report.files
    assert (landed.table, landed.rows_landed, landed.rows_quarantined) == ("reports", 2, 2)
    quarantined = DeltaTable(str(lake / "bronze" / "_quarantine")).to_pyarrow_table()
    mine = quarantined.filter(pc.match_substring(quarantined["source_file"], "reports-1.csv"))
    assert sorted(
        zip(mine["line_number"].to_pylist(), mine["column"].to_pylist(), strict=True)
    ) == [
        (4, "reported_at"),
        (5, "photo_id"),
    ]

    warehouse = tmp_path / "warehouse.duckdb"
    built = run_dbt(str(lake), warehouse, project=project, quiet=True)
    assert built.success, (built.error, built.failures)
    assert (
        built.bronze_versions["reports"] == DeltaTable(str(lake / "bronze" / "reports")).version()
    )
    con = connect(warehouse, project)
    try:
        rows = con.sql("select report_id, reason from stg_app__reports order by 1").fetchall()
        verdicts = con.sql(
            "select test_name, status from lakehouse_test_results "
            "where model = 'source:reports' and invocation_id = ?",
            params=[built.invocation_id],
        ).fetchall()
    finally:
        con.close()
    assert rows == [(1, "spam"), (2, None)]
    assert len(verdicts) == 4 and {s for _, s in verdicts} == {"pass"}, verdicts

    report, _ = validate(
        warehouse, str(lake), out=tmp_path / "quality", project=project, as_of=NIGHT
    )
    assert report.passed, [(r.table, r.name, r.observed_value) for r in report.blocking_failures]
