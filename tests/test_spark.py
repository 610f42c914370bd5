"""The same dbt project on Apache Spark equals DuckDB, row by row (issues 15 and 32), on a
Spark standalone cluster as teams deploy it.

One cluster for the module (`lakehouse.warehouse.spark_cluster`: a master, two one-core
workers in their own JVMs and the Spark Thrift Server on 127.0.0.1). The nightly job runs
once with its transforms on it, `lakehouse run --engine spark-thrift` in a subprocess (ingest
of a dirty landing folder: duplicates, retries, quarantined rows; dbt build through
dbt-spark's thrift method; the gate; export). The lake it ingested is then built with DuckDB
in this process. The training mart is compared row by row, every column; fct_events by
counts; every dbt data test and unit test passes on both; the gate and the exporter ran
unchanged on the Spark build and exported the same rows as DuckDB's. The master's JSON and the
application's REST API show the work spread over both workers.

Then the job's lake gets a night (late events, re-sent files, edited captions) built
incrementally on the cluster, its build killed inside a table's write and run again, and every
model equals a --full-refresh of the same lake on the cluster. dbt-spark's session method (a
SparkSession in dbt's process) is covered by the analyst's plain `dbt build --target spark` and
the older-warehouse upgrade.

Skipped, saying why, where Java or the [spark] extra is missing (`make test` says so too).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import duckdb
import pytest
import yaml

from lakehouse.export import export_model
from lakehouse.ingest import ingest
from lakehouse.synth import GenerateConfig, generate
from lakehouse.warehouse import BuildResult, bronze_versions, run_dbt
from lakehouse.warehouse.spark import spark_unavailable
from lakehouse.warehouse.spark_cluster import THRIFT_APP, Cluster, spark_cluster
from tests.conftest import NIGHT, PROJECT, small_config
from tests.helpers import project_models, project_unit_tests
from tests.test_nights import INTERMEDIATE_AND_STAGING, MARTS, SERVING, _differences

UNAVAILABLE = spark_unavailable()
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(UNAVAILABLE is not None, reason=f"Spark tests skipped: {UNAVAILABLE}"),
]
MART = "photo_popularity_training"


@dataclass(frozen=True)
class TwoBuilds:
    lake: Path  # ingested by the job
    shards: Path  # the job's export
    duckdb: Path  # the DuckDB-built warehouse
    duckdb_result: BuildResult
    spark: Path  # the warehouse file serving the Spark-built tables
    spark_run: subprocess.CompletedProcess  # the nightly job, transforms on the cluster
    spark_results: dict  # dbt's run_results.json of the Spark build
    work: Path


def _lakehouse(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lakehouse.cli", *args],
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Iterator[Cluster]:
    """The module's cluster, its tables and metastore in ``<work>/spark/spark`` (the folder
    the job's warehouse ``<work>/spark/warehouse.duckdb`` keeps them in). Before it starts,
    that metastore gets lineage tables from before build numbers and night-scoped tests
    (test_an_older_spark_warehouse_gets_the_lineage_columns_declared_since), written with a
    SparkSession: Derby admits one JVM at a time."""
    work = tmp_path_factory.mktemp("spark")
    spark_dir = work / "spark" / "spark"
    spark_dir.mkdir(parents=True)
    older = subprocess.run(
        [sys.executable, "-c", OLDER_LINEAGE.format(spark_dir=str(spark_dir))],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert older.returncode == 0, older.stderr[-3000:]
    with spark_cluster(spark_dir) as running:
        yield running


@pytest.fixture(scope="module")
def builds(landing: Path, cluster: Cluster) -> TwoBuilds:
    spark_dir = Path(cluster.spark_dir)
    work = spark_dir.parent.parent
    lake, shards = work / "lake", work / "shards"
    spark = spark_dir.parent / "warehouse.duckdb"
    target = work / "spark-target"  # this build's dbt artifacts, read below
    mine = work / "landing"  # a copy: the nights below add to it
    shutil.copytree(landing, mine)
    run = _lakehouse(
        "run",
        "--engine",
        "spark-thrift",
        "--landing",
        str(mine),
        "--lake",
        str(lake),
        "--out",
        str(shards),
        "--warehouse",
        str(spark),
        "--as-of",
        NIGHT.isoformat(),
        env={"DBT_TARGET_PATH": str(target)},
    )
    assert run.returncode == 0, run.stdout[-3000:]
    results = json.loads((target / "run_results.json").read_text())
    duck = work / "duckdb" / "warehouse.duckdb"
    duck.parent.mkdir()
    duckdb_result = run_dbt(str(lake), duck, project=PROJECT, quiet=True, as_of=NIGHT)
    return TwoBuilds(lake, shards, duck, duckdb_result, spark, run, results, work)


def _both(builds: TwoBuilds) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute(f"attach '{builds.duckdb}' as d (read_only)")
    con.execute(f"attach '{builds.spark}' as s (read_only)")
    return con


def test_spark_build_passes_every_model_data_test_and_unit_test(builds: TwoBuilds) -> None:
    # the job's build step said where it ran
    assert "on Spark (spark-thrift); bronze" in " ".join(builds.spark_run.stdout.split())
    assert builds.duckdb_result.success
    # exposures are documentation (dbt reports them as no-op)
    spark = {
        r["unique_id"]: r["status"]
        for r in builds.spark_results["results"]
        if not r["unique_id"].startswith("exposure.")
    }
    duck = {
        f"{n.resource_type}:{n.name}": n.status
        for n in builds.duckdb_result.nodes
        if n.resource_type != "exposure"
    }
    kinds = {
        kind: [uid for uid in spark if uid.startswith(kind + ".")]
        for kind in ("model", "test", "unit_test", "seed", "operation")
    }
    assert len(kinds["model"]) == len(project_models()) and len(kinds["seed"]) == 2
    # the project's dbt unit tests, run on Spark
    assert len(kinds["unit_test"]) == len(project_unit_tests())
    assert len(kinds["test"]) > 60
    # the project's hooks ran, Spark's own implementations
    hooks = yaml.safe_load((PROJECT / "dbt_project.yml").read_text())
    assert len(kinds["operation"]) == len(hooks["on-run-start"]) + len(hooks["on-run-end"]) == 7
    assert sum(len(ids) for ids in kinds.values()) == len(spark)
    failed = {uid: status for uid, status in spark.items() if status not in ("success", "pass")}
    assert failed == {}
    # the same nodes ran, and passed, on DuckDB
    assert len(duck) == len(spark)
    assert {status for status in duck.values()} <= {"success", "pass"}


def test_training_mart_equals_duckdbs_row_by_row(builds: TwoBuilds) -> None:
    con = _both(builds)
    columns = [
        name
        for name, *_ in con.execute(f"describe d.main.{MART}").fetchall()
        if name not in ("_build_seq",)  # which invocation of each engine wrote the row
    ]
    # the contract's columns, same names and types on both sides (Parquet has no NOT NULL)
    described = "select column_name, column_type from (describe {}.main.{})"
    assert (
        con.execute(described.format("s", MART)).fetchall()
        == con.execute(described.format("d", MART)).fetchall()
    )
    for expected in (
        "split",
        "is_popular",
        "weak_label",
        "owner_likes_received",
        "features_as_of",
        "embedding",
        "likes_7d",
    ):
        assert expected in columns
    rows = con.execute(f"select count(*) from d.main.{MART}").fetchone()[0]
    assert rows > 500
    assert con.execute(f"select count(*) from s.main.{MART}").fetchone()[0] == rows
    exact = [c for c in columns if c not in ("photo_id", "embedding")]
    differing = {
        column: con.execute(
            f"select count(*) from d.main.{MART} d join s.main.{MART} s using (photo_id) "
            f"where d.{column} is distinct from s.{column}"
        ).fetchone()[0]
        for column in exact
    }
    assert differing == dict.fromkeys(exact, 0)
    joined = con.execute(
        f"select count(*) from d.main.{MART} d join s.main.{MART} s using (photo_id)"
    ).fetchone()[0]
    assert joined == rows  # every photo_id on both sides
    # embeddings: equal within float tolerance, element by element
    worst = con.execute(
        f"select max(list_max(list_transform(list_zip(d.embedding, s.embedding), "
        f"p -> abs(p[1] - p[2])))), count(*) filter (where len(d.embedding) <> 64) "
        f"from d.main.{MART} d join s.main.{MART} s using (photo_id)"
    ).fetchone()
    assert worst[1] == 0 and worst[0] is not None and math.isclose(worst[0], 0.0, abs_tol=1e-6)
    # splits and labels are not all one value: the comparison above had something to compare
    splits = dict(con.execute(f"select split, count(*) from s.main.{MART} group by 1").fetchall())
    assert set(splits) == {"train", "val", "test"}
    assert con.execute(f"select count(distinct is_popular) from s.main.{MART}").fetchone()[0] == 2


def test_the_serving_views_equal_duckdbs_and_the_job_served_them(builds: TwoBuilds) -> None:
    """The online feature views, evaluated at the job's as_of on Spark, equal DuckDB's at the
    same instant row by row; the job's last step filled the online store from them."""
    from lakehouse.features import open_store

    con = _both(builds)
    described = "select column_name, column_type from (describe {}.main.{})"
    store = open_store(str(builds.spark.parent / "online" / "features.sqlite"))
    try:
        fills = {f.view: f for f in store.views()}
    finally:
        store.close()
    for model, view in (("online_owner_features", "owner"), ("online_photo_features", "photo")):
        types = con.execute(described.format("d", model)).fetchall()
        assert con.execute(described.format("s", model)).fetchall() == types
        exact = ", ".join(name for name, _ in types if name != "embedding")
        rows = con.execute(f"select count(*) from d.main.{model}").fetchone()[0]
        assert rows > 50
        assert con.execute(f"select count(*) from s.main.{model}").fetchone()[0] == rows
        only_one = con.execute(
            f"select count(*) from ((select {exact} from d.main.{model} except all "
            f"select {exact} from s.main.{model}) union all (select {exact} from "
            f"s.main.{model} except all select {exact} from d.main.{model}))"
        ).fetchone()[0]
        assert only_one == 0, model
        assert con.execute(f"select count(distinct as_of) from s.main.{model}").fetchone()[0] == 1
        assert fills[view].rows == rows and fills[view].as_of == NIGHT.isoformat()
        assert fills[view].invocation_id == builds.spark_results["metadata"]["invocation_id"]


def test_fct_events_counts_and_hashed_pii_equal(builds: TwoBuilds) -> None:
    con = _both(builds)
    per_type = (
        "select event_type, count(*), count(distinct event_id), count(photo_owner_user_id) "
        "from {}.main.fct_events group by 1 order by 1"
    )
    duck = con.execute(per_type.format("d")).fetchall()
    assert len(duck) == 6 and sum(row[1] for row in duck) > 20_000
    assert con.execute(per_type.format("s")).fetchall() == duck
    # the PII key reached Spark outside SQL text, and its HMAC is DuckDB's
    hashes = "select user_id, email_hash, display_name_hash from {}.main.stg_app__users order by 1"
    duck_hashes = con.execute(hashes.format("d")).fetchall()
    assert duck_hashes and all(len(h[1]) == 64 for h in duck_hashes if h[1])
    assert con.execute(hashes.format("s")).fetchall() == duck_hashes


def test_the_jobs_gate_and_export_read_the_spark_build(builds: TwoBuilds) -> None:
    """The rest of the job is unchanged: the gate passed on the Spark-built warehouse, and
    the job exported the same rows as an export of DuckDB's, with the Spark build's lineage."""
    lake = str(builds.lake)
    gate = json.loads((builds.spark.parent / "quality" / "result.json").read_text())
    assert gate["passed"] is True
    assert MART in {table["table"] for table in gate["tables"]}
    duck_out = builds.work / "shards-duckdb"
    _, from_duckdb = export_model(builds.duckdb, MART, duck_out, project=PROJECT, force=True)
    manifest = json.loads((builds.shards / MART / "latest" / "manifest.json").read_text())
    assert manifest["content_fingerprint"] == from_duckdb.content_fingerprint
    assert sum(s["rows"] for s in manifest["shards"]) == sum(s.rows for s in from_duckdb.shards)
    assert manifest["lineage"]["bronze_versions"] == bronze_versions(lake)
    assert (
        manifest["lineage"]["dbt_invocation_id"]
        == builds.spark_results["metadata"]["invocation_id"]
    )
    assert manifest["quality_gate"]["passed"] is True


def test_the_pii_key_is_in_no_file_the_spark_build_writes(builds: TwoBuilds) -> None:
    """The key reaches Spark as a conf the SQL only names: dbt's artifacts and logs, Spark's
    tables, metastore and Derby log, and the warehouse file serving them never hold it."""
    key = os.environ["LAKEHOUSE_PII_SALT"].encode()
    folders = [builds.work / "spark-target", Path(os.environ["DBT_LOG_PATH"]), builds.spark.parent]
    files = [p for folder in folders for p in folder.rglob("*") if p.is_file()]
    assert any(p.name == "manifest.json" for p in files) and any(p.suffix == ".log" for p in files)
    assert any(p.suffix == ".parquet" for p in files) and builds.spark in files
    # the model, compiled and run (a unit test's fixture of the same name hashes nothing):
    # what dbt records as run is the swap of the table written aside, and dbt's log holds the
    # statement that wrote it (macros/spark/incremental.sql)
    model = [p for p in files if p.name == "stg_app__users.sql" and p.parent.name == "app"]
    compiled = [p for p in model if "compiled" in p.parts]
    ran = [p for p in model if "run" in p.parts]
    assert compiled and all(b"${spark.lakehouse.pii_key}" in p.read_bytes() for p in compiled)
    assert ran and all(b"__dbt_next_" in p.read_bytes() for p in ran)
    # dbt.log and the files it rotated into (dbt.log.1, ...) once it grew past 10 MB
    logs = b"".join(p.read_bytes() for p in files if ".log" in p.suffixes)
    assert b"${spark.lakehouse.pii_key}" in logs
    for path in files:
        assert key not in path.read_bytes(), f"the PII salt is in {path}"


def test_plain_dbt_on_spark_without_the_bronze_record_says_what_to_run(
    builds: TwoBuilds, tmp_path: Path
) -> None:
    """An analyst's `dbt build --target spark` with no bronze_record var: one clear error
    naming the command that writes the record and passes it, and nothing built."""
    run = subprocess.run(
        [
            str(Path(sys.executable).parent / "dbt"),
            "build",
            "--target",
            "spark",
            "--vars",
            json.dumps({"lake_root": str(builds.lake)}),
        ],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        timeout=600,
        env={
            **os.environ,
            "LAKEHOUSE_SPARK_DIR": str(tmp_path / "spark"),
            "DBT_TARGET_PATH": str(tmp_path / "target"),
        },
    )
    assert run.returncode != 0
    assert "no `bronze_record` var was given" in run.stdout
    assert "lakehouse dbt-vars --engine spark" in run.stdout
    assert not (tmp_path / "spark" / "warehouse" / "lakehouse.db" / "fct_events").exists()


def test_a_duckdb_build_into_the_spark_builds_warehouse_takes_its_tables_back(
    builds: TwoBuilds,
) -> None:
    """Switching engines on one warehouse file: the Spark build's views give way, and the
    DuckDB build writes its own tables and lineage there (runs last: it changes the file)."""
    result = run_dbt(str(builds.lake), builds.spark, project=PROJECT, quiet=True)
    assert result.success, result.failures or result.error
    con = _both(builds)
    kinds = dict(
        con.execute(
            "select table_name, table_type from information_schema.tables "
            "where table_catalog = 's' and table_name in (?, ?)",
            [MART, "lakehouse_dbt_runs"],
        ).fetchall()
    )
    assert kinds == {MART: "BASE TABLE", "lakehouse_dbt_runs": "BASE TABLE"}
    assert (
        con.execute(f"select count(*) from s.main.{MART}").fetchone()[0]
        == con.execute(f"select count(*) from d.main.{MART}").fetchone()[0]
    )


def test_an_analysts_own_spark_build_is_attached_for_the_gate_and_export(
    builds: TwoBuilds, tmp_path: Path
) -> None:
    """After a `dbt build --target spark` run by hand, `lakehouse attach` serves its tables
    from a warehouse file: the same rows as the job's Spark build, its manifest recorded, and
    the gate passes on it. A DuckDB build's manifest is refused in one line."""
    warehouse = tmp_path / "analyst" / "warehouse.duckdb"
    warehouse.parent.mkdir()
    env = {
        "LAKEHOUSE_SPARK_DIR": str(builds.spark.parent / "spark"),
        "DBT_TARGET_PATH": str(builds.work / "spark-target"),
    }
    early = _lakehouse("validate", "--warehouse", str(warehouse), "--lake", str(builds.lake))
    assert early.returncode != 0  # before the attach: one line naming it
    assert "`lakehouse attach` serves its tables" in " ".join(early.stderr.split())
    attached = _lakehouse("attach", "--warehouse", str(warehouse), env=env)
    assert attached.returncode == 0, attached.stdout[-2000:] + attached.stderr[-2000:]
    assert MART in attached.stdout
    con = duckdb.connect()
    con.execute(f"attach '{warehouse}' as a (read_only)")
    con.execute(f"attach '{builds.spark}' as s (read_only)")
    # (the job's Spark warehouse began with an older lineage row: test_an_older_spark_...)
    for table, where in (
        (MART, ""),
        ("fct_events", ""),
        ("lakehouse_test_results", " where invocation_id <> 'older'"),
    ):
        mine, jobs = (
            con.sql(f"select count(*) from {db}.{table}{where}").fetchone() for db in "as"
        )
        assert mine == jobs and mine[0] > 0, table
    invocation = builds.spark_results["metadata"]["invocation_id"]
    recorded = con.sql("select invocation_id from a.lakehouse_dbt_manifests").fetchall()
    assert (invocation,) in recorded
    con.close()
    gate = _lakehouse(
        "validate", "--warehouse", str(warehouse), "--lake", str(builds.lake),
        "--as-of", NIGHT.isoformat(), env=env,
    )  # fmt: skip
    assert gate.returncode == 0, gate.stdout[-3000:]
    duck_target = tmp_path / "duckdb-target"
    duck_target.mkdir()
    (duck_target / "manifest.json").write_text(
        json.dumps({"metadata": {"adapter_type": "duckdb", "invocation_id": "x"}})
    )
    refused = _lakehouse(
        "attach", "--warehouse", str(warehouse), env={**env, "DBT_TARGET_PATH": str(duck_target)}
    )
    assert refused.returncode == 1
    assert "manifest of a duckdb build, not a Spark one" in " ".join(refused.stderr.split())


OLDER_LINEAGE = """
from pyspark.sql import SparkSession

spark_dir = {spark_dir!r}
spark = (
    SparkSession.builder.master("local[1]")
    .config("spark.sql.warehouse.dir", spark_dir + "/warehouse")
    .config("spark.hadoop.javax.jdo.option.ConnectionURL",
            "jdbc:derby:;databaseName=" + spark_dir + "/metastore_db;create=true")
    .config("spark.driver.extraJavaOptions", "-Dderby.system.home=" + spark_dir)
    .config("spark.ui.enabled", "false")
    .enableHiveSupport()
    .getOrCreate()
)
spark.sql("create database lakehouse")
# the lineage tables as a warehouse built before build numbers and night-scoped tests has them
spark.sql("create table lakehouse.lakehouse_dbt_runs (invocation_id string, started_at timestamp)")
spark.sql(
    "insert into lakehouse.lakehouse_dbt_runs values ('older', timestamp'2026-01-01 00:00:00')"
)
spark.sql(
    "create table lakehouse.lakehouse_test_results (invocation_id string, model string, "
    "test_name string, status string, failures bigint, recorded_at timestamp)"
)
spark.sql(
    "insert into lakehouse.lakehouse_test_results values "
    "('older', 'stg_app__users', 'an_older_test', 'pass', 0, timestamp'2026-01-01 00:00:00')"
)
spark.stop()
"""


def test_an_older_spark_warehouse_gets_the_lineage_columns_declared_since(
    builds: TwoBuilds,
) -> None:
    """The job's Spark build ran on a warehouse whose lineage tables predate build numbers
    and night-scoped tests (OLDER_LINEAGE made them in the fixture, before the job): the
    build added the columns (null in the old rows) and recorded its own, and the attached
    views read old and new files together."""
    # read from the Spark tables' files as the attached views read them (other tests of
    # this module take the job's warehouse file over with a DuckDB build)
    tables = builds.spark.parent / "spark" / "warehouse" / "lakehouse.db"

    def files(table: str) -> str:
        return f"read_parquet('{tables / table}/*.parquet', union_by_name = true)"

    with duckdb.connect() as con:
        runs = con.sql(f"select invocation_id, build_seq from {files('lakehouse_dbt_runs')}")
        runs = runs.fetchall()
        assert sorted(runs, key=lambda r: r[0] != "older")[0] == ("older", None)
        assert [seq for invocation, seq in runs if invocation != "older"] == [1]
        tests = con.sql(
            "select invocation_id = 'older', count(tested_since), "
            "count(*) filter (status = 'pass'), "
            "count(*) filter (status not in ('pass', 'not run')) "
            f"from {files('lakehouse_test_results')} group by all order by all"
        ).fetchall()
    # the job's build's data tests of models and sources passed (the lineage records no
    # seed's), each on its whole table (Spark)
    nodes = json.loads((builds.work / "spark-target" / "manifest.json").read_text())["nodes"]
    ran = [
        r
        for r in builds.spark_results["results"]
        if r["unique_id"].startswith("test.")
        and not (nodes[r["unique_id"]].get("attached_node") or "").startswith("seed.")
    ]
    assert len(ran) > 100 and all(r["status"] == "pass" for r in ran)
    assert tests[0][0] is False and tests[0][1:] == (0, len(ran), 0)
    assert tests[1] == (True, 0, 1, 0)


def test_the_cluster_spread_the_jobs_build_over_both_workers(
    builds: TwoBuilds, cluster: Cluster
) -> None:
    """The master's own account: two workers alive, each running one executor (a core) of
    the Thrift server's application; and that application's REST API: each executor ran
    tasks of the build."""
    state = cluster.master_state()
    assert state["aliveworkers"] == 2 and state["cores"] == 2
    assert sorted(w["coresused"] for w in state["workers"]) == [1, 1]
    (app,) = [a for a in state["activeapps"] if a["name"] == THRIFT_APP]
    assert app["cores"] == 2 and app["state"] == "RUNNING"
    executors = cluster.executors()
    assert len(executors) == 2
    tasks = sorted(e["totalTasks"] for e in executors)
    assert tasks[0] > 100, tasks  # both did a real share, not one idling


# one night on the cluster, killed inside a table's write and run again (CI's time: a second
# night, killed half way, took about 120 s more; tests/test_nights.py kills DuckDB's nights
# half way)
SPARK_NIGHTS = 1


def _spark_night(lake: Path, warehouse: Path, spark_dir: Path, at, **options) -> None:
    result = run_dbt(
        str(lake), warehouse, project=PROJECT, quiet=True, engine="spark-thrift",
        spark_dir=spark_dir, as_of=at, **options,
    )  # fmt: skip
    assert result.success, (result.error, result.failures)


def _kill_spark_build_inside_a_write(lake: Path, warehouse: Path, spark_dir: Path, at) -> None:
    """Start a build on the cluster in another process and kill it (SIGKILL, dbt's process:
    the cluster goes on) as soon as Spark writes a version of a model aside: inside its
    `create table ... as`, where Spark has made the table's folder and the metastore does
    not list the table yet."""
    code = (
        "from datetime import datetime\n"
        "from pathlib import Path\n"
        "from lakehouse.warehouse import project_dir, run_dbt\n"
        f"run_dbt({str(lake)!r}, {str(warehouse)!r}, project=project_dir(), quiet=True, "
        f"engine='spark-thrift', spark_dir=Path({str(spark_dir)!r}), "
        f"as_of=datetime.fromisoformat({at.isoformat()!r}))\n"
    )
    tables = spark_dir / "warehouse" / "lakehouse.db"
    started = time.time()
    process = subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        if any("__dbt_next_" in p.name and p.stat().st_mtime > started for p in tables.iterdir()):
            break
        time.sleep(0.05)
    assert process.poll() is None, "the build ended before it could be killed"
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert any("__dbt_next_" in p.name for p in tables.iterdir())
    time.sleep(3)  # the server closes the dead client's session, cancelling what it ran


def test_nights_on_the_cluster_equal_a_full_refresh_of_the_same_lake(
    builds: TwoBuilds, cluster: Cluster, tmp_path: Path
) -> None:
    """The job's lake gets SPARK_NIGHTS nights (late events, a re-sent file, edited
    captions), each built incrementally on the cluster; each build is killed while Spark
    writes a table (its folder there, no table in the metastore yet), and run again; then
    the same lake is built with --full-refresh on DuckDB, the reference engine. Every model
    holds exactly the same rows (keys, labels, features, split, weak labels, embeddings, the
    serving views at the same as_of), and the nights wrote only some rows of the keyed
    models: they followed the new data rather than rebuilding. (A Spark full build equals
    DuckDB's: the module's first build, compared above. The full refresh on the cluster
    this compared with before took about 2 of CI's 30 minutes.)"""
    spark_dir = Path(cluster.spark_dir)
    landing = builds.work / "landing"
    nights = tmp_path / "nights" / "warehouse.duckdb"
    for night in range(1, SPARK_NIGHTS + 1):
        at = NIGHT + timedelta(days=night)
        generate(GenerateConfig(**{**vars(small_config(landing)), "nights": night}))
        report = ingest(str(landing), str(builds.lake), now=at)
        assert report.ok and report.total("rows_landed") > 0, [f.error for f in report.failed]
        _kill_spark_build_inside_a_write(builds.lake, nights, spark_dir, at)
        _spark_night(builds.lake, nights, spark_dir, at)
    with duckdb.connect(str(nights), read_only=True) as con:
        seqs = con.sql("select max(build_seq) from main.lakehouse_dbt_runs").fetchone()[0]
        photos, touched = con.sql(
            f"select count(*), count(*) filter (_build_seq = {seqs}) from main.dim_photos"
        ).fetchone()
    assert 0 < touched < photos  # the last night rewrote only the photos it touched
    rebuilt = tmp_path / "rebuilt" / "warehouse.duckdb"
    rebuilt.parent.mkdir()
    full = run_dbt(
        str(builds.lake), rebuilt, project=PROJECT, quiet=True, full_refresh=True, as_of=at
    )
    assert full.success, (full.error, full.failures)
    assert _differences(nights, rebuilt, MARTS + INTERMEDIATE_AND_STAGING + SERVING) == {}
    # no leftover of a swap is served
    tables = spark_dir / "warehouse" / "lakehouse.db"
    assert not [p.name for p in tables.iterdir() if "__dbt_" in p.name]


def test_spark_cluster_stop_stops_every_process_it_started(cluster: Cluster) -> None:
    """`lakehouse spark-cluster status` reports the module's cluster; `stop` (another
    process, as a user runs it) ends the master, both workers and the Thrift server, and the
    ports close (runs last: the module's fixture then has nothing left to stop)."""
    warehouse = str(Path(cluster.spark_dir).parent / "warehouse.duckdb")
    status = _lakehouse("spark-cluster", "status", "--warehouse", warehouse)
    assert status.returncode == 0, status.stderr
    assert f"LAKEHOUSE_SPARK_PORT={cluster.thrift_port}" in status.stdout
    assert "2 workers, 2 cores" in " ".join(status.stdout.split())
    stopped = _lakehouse("spark-cluster", "stop", "--warehouse", warehouse)
    assert stopped.returncode == 0 and "stopped" in stopped.stdout
    for pid in cluster.pids.values():  # this process started them: it reaps them
        assert os.waitpid(pid, 0)[0] == pid
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", cluster.thrift_port)) != 0
    again = _lakehouse("spark-cluster", "status", "--warehouse", warehouse)
    assert again.returncode == 1 and "no Spark cluster runs" in again.stdout
