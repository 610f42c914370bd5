"""Each fact has one owner: where SQL must state a fact again (dbt cannot import Python), these
tests fail the moment the two disagree. And the loader stays light: training code that imports
it never loads the warehouse, and packaging lets it install without the pipeline."""

from __future__ import annotations

import csv
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from lakehouse.contracts import (
    INGEST_LOG,
    INGESTED,
    LINEAGE_PREFIX,
    bronze_tables,
    data_tables,
    embedding_dim,
    event_types,
)
from lakehouse.engines import ENV_TARGET, SPARK_TARGET, SPARK_TARGETS
from lakehouse.ingest import sources
from lakehouse.ingest.schemas import _TYPES as BRONZE_TYPES
from lakehouse.ingest.schemas import INGEST_LOG_SCHEMA, INGESTION_COLUMNS
from lakehouse.layout import Layout, bronze_uri
from lakehouse.warehouse.spark import (
    ENV_SPARK_DIR,
    ENV_SPARK_SCHEMA,
    REWRITE_MARKS,
    VIEW_COMMENT,
)
from lakehouse.warehouse.spark_cluster import ENV_THRIFT_HOST, ENV_THRIFT_PORT, SERVER_CONF

REPO = Path(__file__).resolve().parents[1]
PIPELINE = ("duckdb", "deltalake", "dbt", "great_expectations", "pandas", "sqlalchemy")


def test_import_lakehouse_loader_pulls_in_no_warehouse_package() -> None:
    code = (
        "import sys, lakehouse.loader, lakehouse.loader.training; "
        f"print(sorted(m for m in {PIPELINE!r} if m in sys.modules))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert loaded == "[]"


def test_the_cli_imports_the_layers_only_for_the_command_that_needs_them() -> None:
    code = f"import sys, lakehouse.cli; print(sorted(m for m in {PIPELINE!r} if m in sys.modules))"
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert loaded == "[]"


def test_the_loader_extra_installs_no_pipeline_package_and_nothing_is_pinned_exactly() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    loader = project["dependencies"] + extras["loader"]
    names = {re.split(r"[<>=!~\[; ]", r, maxsplit=1)[0].lower() for r in loader}
    assert names == {"pyarrow", "numpy", "rich", "torch"}
    everything = project["dependencies"] + [r for reqs in extras.values() for r in reqs]
    assert not [r for r in everything if "==" in r], "exact pins belong in constraints.txt"
    pipeline = {re.split(r"[<>=!~\[; ]", r, maxsplit=1)[0] for r in extras["pipeline"]}
    assert {"deltalake", "dbt-core", "duckdb", "great-expectations"} <= pipeline


def test_each_bronze_table_is_declared_once_and_ingest_reads_that_declaration() -> None:
    """The sources YAML is the bronze contract: ingest's specs, dbt's sources and the
    bookkeeping table come from it, and the one location template is dbt_project.yml's."""
    identifiers = []
    for path in (REPO / "models").rglob("_*__sources.yml"):
        for source in yaml.safe_load(path.read_text())["sources"]:
            assert "meta" not in source, f"{path}: the location template is dbt_project.yml's"
            for table in source["tables"]:
                assert "external_location" not in (table.get("meta") or {}), path
                identifiers.append(table.get("identifier", table["name"]))
    assert sorted(identifiers) == sorted(bronze_tables())  # each once
    assert INGEST_LOG in identifiers  # the bookkeeping dbt reads, named by Python's writer
    specs = sources()
    assert [s.table for s in specs] == list(data_tables())
    events = next(s for s in specs if s.table == "events")
    assert events.accepted_values == {"event_type": event_types()}  # from the seed
    assert events.column("photo_id").references == "photos.photo_id"  # a source reference
    assert events.column("event_id").max_length == 64 and events.column("event_id").required
    assert not events.column("session_id").required  # no not_null test
    embedding = next(s for s in specs if s.table == "photo_embeddings").column("embedding")
    assert embedding.fixed_size == embedding_dim() == 64


def test_the_yaml_documents_the_columns_ingest_adds_as_ingest_writes_them() -> None:
    """The sources' YAML lists, for the docs, the lineage columns ingest adds to every bronze
    row and the ingest log's columns; Python's schemas own them. Names, order and types
    agree, and no lineage column becomes part of a landing file's contract."""
    lineage = [(f.name, f.type) for f in INGESTION_COLUMNS]
    for path in (REPO / "models").rglob("_*__sources.yml"):
        for source in yaml.safe_load(path.read_text())["sources"]:
            for table in source["tables"]:
                declared = [
                    (c["name"], BRONZE_TYPES.get(c["data_type"])) for c in table.get("columns", [])
                ]
                if table.get("identifier") == INGEST_LOG:
                    assert declared == [(f.name, f.type) for f in INGEST_LOG_SCHEMA], path
                else:
                    added = [c for c in declared if c[0].startswith(LINEAGE_PREFIX)]
                    assert added == lineage, f"{path}: {table['name']}"
    for spec in sources():
        assert not [c.name for c in spec.columns if c.name.startswith(LINEAGE_PREFIX)]


def test_the_project_follows_the_evaluators_rules_or_waives_them_with_a_reason() -> None:
    """What dbt-project-evaluator checks, read from the project's YAML (the package itself
    comes from the dbt hub, out of reach here): every model has a primary-key test, every
    source declares freshness and lives in models/staging/<source>/, the exposure reads
    public models only, and every waiver in its exceptions seed names something that exists
    and says why."""
    models, sources, exposures = {}, set(), []
    for path in (REPO / "models").rglob("_*.yml"):
        document = yaml.safe_load(path.read_text())
        for model in document.get("models") or []:
            models[model["name"]] = model
        for source in document.get("sources") or []:
            assert path.parent.name == source["name"], f"{path}: source {source['name']}"
            for table in source["tables"]:
                sources.add(f"{source['name']}.{table['name']}")
                assert "freshness" in source or "freshness" in table, path
        exposures += document.get("exposures") or []

    def tests(node: dict) -> list[str]:
        return [t if isinstance(t, str) else next(iter(t)) for t in node.get("data_tests") or []]

    for name, model in models.items():
        keyed = "unique_combination_of_columns" in tests(model) or any(
            {"unique", "not_null"} <= set(tests(column)) for column in model.get("columns") or []
        )
        assert keyed, f"{name} has no primary-key test"
    for exposure in exposures:
        for parent in exposure["depends_on"]:
            model = models[re.fullmatch(r"ref\('(\w+)'\)", parent).group(1)]
            assert (model.get("config") or {}).get("access") == "public", parent
    with (REPO / "seeds" / "dbt_project_evaluator_exceptions.csv").open() as file:
        waivers = list(csv.DictReader(file))
    assert waivers
    for waiver in waivers:
        pattern = re.compile(waiver["id_to_exclude"].replace("%", ".*") + "$")
        assert any(pattern.match(n) for n in {*models, *sources}), waiver
        assert len(waiver["comment"]) > 40, waiver  # a reason, not a label


def test_the_pins_variable_the_sql_reads_is_the_one_the_plugin_sets() -> None:
    """SQL cannot import Python: the session variable that carries the bronze pins is named
    the same in the source template, the lineage macro and the profile's plugin."""
    from lakehouse.warehouse.dbt_build import PINS_VARIABLE

    template = yaml.safe_load((REPO / "dbt_project.yml").read_text())["sources"]["lakehouse"]
    assert f"getvariable('{PINS_VARIABLE}')['{{identifier}}']" in " ".join(
        template["+meta"]["external_location"].split()
    )
    assert f"getvariable('{PINS_VARIABLE}')" in (REPO / "macros" / "bronze.sql").read_text()


def test_the_batches_function_the_tests_call_is_the_one_the_plugin_registers() -> None:
    """SQL cannot import Python: the night-scoped source tests call the function the
    profile's plugin registers by the same name."""
    from lakehouse.warehouse.dbt_plugin import BATCHES_FUNCTION

    macro = (REPO / "macros" / "tests" / "night_scope.sql").read_text()
    assert f"{BATCHES_FUNCTION}(" in macro


def test_the_ingested_status_dbt_filters_on_is_the_one_ingest_writes() -> None:
    """SQL cannot import Python: the one status staging's macro compares with is guarded."""
    macro = (REPO / "macros" / "staging.sql").read_text()
    assert f"status = '{INGESTED}'" in macro


def test_dbt_defaults_match_the_layout_defaults() -> None:
    defaults = Layout.from_root(env={})
    profile = (REPO / "profiles.yml").read_text()
    assert f"env_var('LAKEHOUSE_DUCKDB', '{defaults.warehouse}')" in profile
    # the spark engine: the output lakehouse passes to --target, the variable that selects
    # it, and its folder (warehouse, metastore, Derby's log) where the layout puts it
    outputs = yaml.safe_load(profile)["lakehouse"]["outputs"]
    assert outputs[SPARK_TARGET]["type"] == "spark"
    assert outputs[SPARK_TARGET]["method"] == "session"
    # the thrift target: where the cluster's Thrift server is (what spark-cluster prints and
    # the spark-thrift engine sets), and the schema either target writes to
    thrift = outputs[SPARK_TARGETS["spark-thrift"]]
    assert thrift["type"] == "spark" and thrift["method"] == "thrift"
    assert f"env_var('{ENV_THRIFT_HOST}'" in thrift["host"]
    assert f"env_var('{ENV_THRIFT_PORT}'" in thrift["port"]
    for target in SPARK_TARGETS.values():
        assert f"env_var('{ENV_SPARK_SCHEMA}', 'lakehouse')" in outputs[target]["schema"]
    # the cluster's Thrift server runs with what the session target sets in its SparkSession
    session = outputs[SPARK_TARGET]["server_side_parameters"]
    for key in ("spark.sql.session.timeZone", "spark.sql.parquet.outputTimestampType"):
        assert SERVER_CONF[key] == session[key], key
    # the versions a Spark build writes aside or swaps out, never attached; the first hook
    # drops the ones a killed build left by the same marks
    rewrite = (REPO / "macros" / "spark" / "incremental.sql").read_text()
    assert all(f"'{mark}'" in rewrite for mark in REWRITE_MARKS if mark != "__dbt_tmp")
    assert "like '*__dbt_next_*|*__dbt_old_*'" in rewrite
    assert f"env_var('{ENV_TARGET}', 'dev')" in profile
    assert profile.count(f"env_var('{ENV_SPARK_DIR}', '{defaults.spark}')") == 3
    # a DuckDB build drops the views a Spark build left, found by the mark attach gives them
    assert f"comment = '{VIEW_COMMENT}'" in (REPO / "macros" / "bronze.sql").read_text()
    for path in (REPO / "dbt_project.yml", REPO / "macros" / "bronze.sql"):
        assert f"env_var('LAKEHOUSE_LAKE', '{defaults.lake}')" in path.read_text(), path


def test_a_layout_derives_every_path_from_one_root_and_the_environment(tmp_path: Path) -> None:
    layout = Layout.from_root(tmp_path, env={})
    assert layout.landing == str(tmp_path / "landing")
    assert layout.lake == str(tmp_path / "lake")
    assert layout.warehouse == tmp_path / "warehouse.duckdb"
    assert layout.quality == tmp_path / "quality"
    assert layout.shards == str(tmp_path / "shards")
    assert layout.spark == tmp_path / "spark"
    assert (
        layout.bronze("events")
        == f"{tmp_path}/lake/bronze/events"
        == bronze_uri(layout.lake, "events")
    )
    moved = Layout.from_root(
        tmp_path, env={"LAKEHOUSE_LAKE": "s3://b/lake", "LAKEHOUSE_DUCKDB": "/w/prod.duckdb"}
    )
    assert moved.lake == "s3://b/lake" and moved.bronze("users") == "s3://b/lake/bronze/users"
    assert moved.warehouse == Path("/w/prod.duckdb") and moved.quality == Path("/w/quality")
    other = layout.override(warehouse=tmp_path / "elsewhere" / "w.duckdb")
    assert other.quality == tmp_path / "elsewhere" / "quality"  # the reports follow
    assert other.spark == tmp_path / "elsewhere" / "spark"  # and the Spark engine's folder
    assert layout.override(quality=tmp_path / "q").quality == tmp_path / "q"
    assert Layout.from_root("rel", env={}).resolved().lake == str(Path("rel/lake").resolve())


def test_the_fingerprint_dbt_records_is_the_one_python_computes(built_warehouse) -> None:
    """macros/fingerprint.sql (the builds' record) and lakehouse.warehouse.fingerprint (the
    gate's and the exporter's reading) state one formula twice; they must agree, and only a
    model that declares meta.export is fingerprinted."""
    import duckdb

    from lakehouse.warehouse import fingerprint

    with duckdb.connect(str(built_warehouse.warehouse), read_only=True) as con:
        recorded = con.execute(
            "select model, phase, row_count, row_hash from lakehouse_model_fingerprints "
            "order by build_seq desc, phase"
        ).fetchall()
        now = fingerprint(con, "photo_popularity_training")
    assert {model for model, *_ in recorded} == {"photo_popularity_training"}
    after = next(f"{rows}:{total}" for _, phase, rows, total in recorded if phase == "after")
    assert after == now and not now.startswith("0:")


def test_the_ingest_log_records_its_own_delta_version_per_batch(ingested) -> None:
    """Staging's cursor is the ingest log's own Delta version, written into each log row:
    every ingested batch's log_version is the version whose commit names that batch."""
    from lakehouse.storage import open_delta

    lake, _ = ingested
    log = open_delta(bronze_uri(str(lake), "_ingest_log"))
    rows = log.to_pyarrow_table(columns=["batch_id", "log_version"]).to_pylist()
    committed = {
        e["lakehouse.batch_id"]: e["version"] for e in log.history() if "lakehouse.batch_id" in e
    }
    assert rows and all(r["log_version"] == committed[r["batch_id"]] for r in rows)
    assert len({r["log_version"] for r in rows}) == len(rows)  # one commit per batch


def test_ingest_names_the_declared_tables_when_asked_for_another(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from lakehouse.cli import main

    (tmp_path / "landing").mkdir()
    code = main(["ingest", str(tmp_path / "landing"), "--lake", str(tmp_path / "lake"),
                 "--table", "likes"])  # fmt: skip
    assert code == 1
    error = " ".join(capsys.readouterr().err.split())
    assert (
        "no bronze table likes: the sources YAML declares users, photos, photo_embeddings, events"
        in error
    )
    assert not (tmp_path / "lake").exists()  # refused before anything was written


def test_the_lineage_tables_python_reads_are_the_ones_the_hooks_declare() -> None:
    """SQL cannot import Python: the hooks declare each lineage table's columns once
    (macros/lineage.sql, lineage_columns), and no other macro creates one."""
    from lakehouse.warehouse import lineage

    declared = set(
        re.findall(r"'(lakehouse_\w+)': \[", (REPO / "macros" / "lineage.sql").read_text())
    )
    read = {
        lineage.RUNS_TABLE,
        lineage.READS_TABLE,
        lineage.MODELS_TABLE,
        lineage.TESTS_TABLE,
        lineage.FINGERPRINTS_TABLE,
    }
    assert declared == read
    for path in (REPO / "macros").rglob("*.sql"):
        if path.name != "lineage.sql":
            assert "create table if not exists" not in path.read_text(), path
