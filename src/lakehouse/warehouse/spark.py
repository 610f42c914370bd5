"""The same dbt project on Apache Spark (dbt-spark's ``session`` method: a SparkSession in
dbt's own process), and how the tables it builds reach the rest of lakehouse.

Bronze: Spark has no Delta reader here (the connector's jars come from Maven), so each bronze
table is read as exactly the Parquet files its pinned Delta version lists, as deltalake
reports them (:func:`bronze_files`). The build records them in a file
(:func:`write_bronze_record`, named by the ``bronze_record`` dbt var, the same path every
night); ``macros/bronze.sql`` reads it with Spark and makes each table a view over its files.
Append-only tables written by delta-rs have no deletion vectors or column mapping, so those
files are the version's rows.

Marts: Spark writes Parquet tables under ``<spark_dir>/warehouse/<schema>.db/<table>``
(Hive's layout for managed tables). :func:`attach_spark_tables` makes each a view in the
DuckDB warehouse file, cast to the types of the model's dbt contract, so the data-quality
gate, the exporter and the lineage read a Spark build exactly as they read a DuckDB one.

docs/decisions/0011-spark.md says why, and what changes on a cluster.
"""

from __future__ import annotations

import json
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import unquote, urlparse

import duckdb

from lakehouse.layout import bronze_uri
from lakehouse.sql import identifier, string
from lakehouse.storage import is_remote, open_delta
from lakehouse.warehouse.duckdb_env import WarehouseError

# where the spark output keeps its warehouse
ENV_SPARK_DIR = "LAKEHOUSE_SPARK_DIR"
# the schema (database) a Spark build writes its tables to, profiles.yml's (default lakehouse):
# builds sharing a cluster keep apart by it
ENV_SPARK_SCHEMA = "LAKEHOUSE_SPARK_SCHEMA"
# marks the views attach_spark_tables makes, so a DuckDB build can take their names back
# (macros/bronze.sql, release_spark_tables, drops the views that carry it)
VIEW_COMMENT = "lakehouse: a table of a Spark build"
# in the names of the versions a Spark build writes aside or swaps out
# (macros/spark/incremental.sql, ``<model>__dbt_next_<invocation>``), and of dbt-spark's temp
# relations: never a model's table
REWRITE_MARKS = ("__dbt_next", "__dbt_old", "__dbt_tmp")
# characters a Hadoop glob or a Spark SQL path literal would read as syntax
_GLOB_SYNTAX = set("{}[]*?\\,`'")


def spark_unavailable() -> str | None:
    """Why Spark cannot run on this machine (no Java, no pyspark), or None when it can."""
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        return (
            "Spark needs Java 17 (Debian: `apt-get install openjdk-17-jre-headless`), and "
            "`java` is not on PATH"
        )
    try:
        import dbt.adapters.spark  # noqa: F401
        import pyspark  # noqa: F401
    except ImportError:
        return 'Spark is an optional extra: `pip install -e ".[spark]"` (pyspark, dbt-spark)'
    return None


def bronze_files(lake: str, versions: dict[str, int]) -> dict[str, list[str]]:
    """Per bronze table, the absolute paths of exactly the data files of its pinned Delta
    version, as deltalake lists them."""
    if is_remote(lake):
        raise WarehouseError(
            "the spark engine reads a local lake here: Spark's S3 connector (hadoop-aws) "
            "comes from Maven, which this machine cannot reach (docs/decisions/0011-spark.md)"
        )
    files = {}
    for table, version in versions.items():
        uri = bronze_uri(lake, table)
        paths = [Path(unquote(urlparse(u).path)) for u in open_delta(uri, version).file_uris()]
        if not paths:
            raise WarehouseError(f"bronze {table} has no data files at version {version}")
        folder = paths[0].parent
        odd = [p for p in paths if p.parent != folder or _GLOB_SYNTAX & set(p.name)]
        if odd or _GLOB_SYNTAX & set(str(folder)):
            raise WarehouseError(
                f"bronze {table}: {odd[0] if odd else folder} cannot be read by Spark as a "
                "file list (partitioned folders, or a path holding glob syntax)"
            )
        files[table] = sorted(str(p) for p in paths)
    return files


def bronze_record_path(spark_dir: Path) -> Path:
    """Where a Spark build's pins are recorded: one file per Spark warehouse, rewritten by
    each build, so the dbt var that names it stays the same night after night."""
    return spark_dir.resolve() / "bronze_pins.json"


def write_bronze_record(
    spark_dir: Path, lake: str, versions: dict[str, int], as_of: datetime | None
) -> Path:
    """Record what a Spark build reads, for its first hook to read with Spark
    (``macros/bronze.sql``): JSON lines of ``table_name``, ``version`` and ``file``, one per
    data file of each pinned Delta version, and the night's ``as_of`` on every line (null:
    now). Replaced whole (written aside, then renamed). Returns its path, the
    ``bronze_record`` var."""
    as_of_text = as_of.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f") if as_of else None
    lines = [
        json.dumps({"table_name": table, "version": versions[table], "file": path,
                    "as_of": as_of_text})
        for table, paths in sorted(bronze_files(lake, versions).items())
        for path in paths
    ]  # fmt: skip
    record = bronze_record_path(spark_dir)
    if _GLOB_SYNTAX & set(str(record)):  # Spark reads it as a glob, inside backticks
        raise WarehouseError(
            f"{record}: Spark cannot read the bronze record from a path holding glob syntax, "
            "a quote or a backtick; keep the warehouse in a folder without them"
        )
    record.parent.mkdir(parents=True, exist_ok=True)
    aside = record.with_name(f".{record.name}.{os.getpid()}")
    aside.write_text("\n".join(lines) + "\n")
    aside.replace(record)
    return record


def is_rewrite_leftover(name: str) -> bool:
    """Whether a table (folder) of a Spark schema is a version a build wrote aside or swapped
    out, or a temp relation of dbt-spark's, rather than a model's table."""
    return any(mark in name for mark in REWRITE_MARKS)


def clear_rewrite_leftovers(folder: Path) -> list[str]:
    """Remove from a Spark schema's ``folder`` the folders of the versions a killed build
    wrote aside or swapped out (macros/spark/incremental.sql); call it after a build that
    succeeded. Spark writes a table's files before the metastore lists it, so a build killed
    while it wrote leaves a folder no table owns; its name carries the killed invocation's
    id, so it never blocks a build, but it holds a copy of a model. The build's first hook
    dropped the ones the metastore listed, and each of its own it swapped in, so what is left
    is owned by nothing. Only one build writes a warehouse at a time. Returns the names
    removed."""
    stale = [p for p in folder.iterdir() if p.is_dir() and is_rewrite_leftover(p.name)]
    for path in stale:
        shutil.rmtree(path)
    return sorted(p.name for p in stale)


def spark_dir_env(spark_dir: Path) -> dict[str, str]:
    """The environment profiles.yml's spark target reads (absolute: dbt's working directory
    is not the user's)."""
    return {ENV_SPARK_DIR: str(spark_dir.resolve())}


def schema_folder(spark_dir: Path, schema: str) -> Path:
    """Where Spark keeps the managed tables of a schema, one folder each:
    ``<warehouse>/<schema>.db/`` (Hive's layout; ``spark.sql.warehouse.dir`` is
    ``<spark_dir>/warehouse`` in profiles.yml)."""
    return spark_dir / "warehouse" / f"{schema}.db"


def attach_spark_tables(
    warehouse: Path, spark_dir: Path, manifest: Path, *, remove_leftovers: bool = False
) -> list[str]:
    """Make every table of the Spark build a view in the DuckDB ``warehouse`` file over its
    Parquet files, each contracted column cast to the type its dbt contract states (Spark has
    no fixed-size arrays; DuckDB's loader-facing type is ``float[64]``). A DuckDB table of the
    same name, from an earlier DuckDB build, is replaced. All in one transaction: a failure
    leaves the file as it was. ``remove_leftovers``, after a build that succeeded: first
    :func:`clear_rewrite_leftovers` in the build's schema. Returns the views' names."""
    nodes = json.loads(manifest.read_text())["nodes"].values()
    built = [n for n in nodes if n["resource_type"] in ("model", "seed")]
    if not built:
        raise WarehouseError(f"{manifest} lists no models: nothing to attach")
    schema = built[0]["schema"]
    contracts = {
        n["name"]: {c["name"]: c.get("data_type") for c in n["columns"].values()}
        for n in built
        if n["config"].get("contract", {}).get("enforced")
    }
    folder = schema_folder(spark_dir, schema)
    if not folder.is_dir():
        raise WarehouseError(f"no Spark tables at {folder}: {manifest} is not a Spark build's")
    if remove_leftovers:
        clear_rewrite_leftovers(folder)
    # not the versions a build writes aside or swaps out, which a crash can leave behind
    # (macros/spark/incremental.sql)
    tables = sorted(
        p.name for p in folder.iterdir() if p.is_dir() and not is_rewrite_leftover(p.name)
    )
    con = duckdb.connect(str(warehouse))
    try:
        con.execute("begin")
        existing = dict(
            con.execute(
                "select table_name, table_type from information_schema.tables "
                "where table_schema = 'main'"
            ).fetchall()
        )
        for table in tables:
            # union_by_name: files written before a column was added (a lineage table of
            # an older warehouse, macros/lineage.sql) read it as null
            files = string(str(folder / table / "*.parquet")) + ", union_by_name = true"
            if existing.get(table) == "BASE TABLE":
                con.execute(f"drop table main.{identifier(table)}")
            types = contracts.get(table, {})
            described = con.execute(f"describe select * from read_parquet({files})").fetchall()
            select = ", ".join(
                f"cast({identifier(name)} as {types[name]}) as {identifier(name)}"
                if types.get(name)
                else identifier(name)
                for name, *_ in described
            )
            con.execute(
                f"create or replace view main.{identifier(table)} as "
                f"select {select} from read_parquet({files})"
            )
            con.execute(f"comment on view main.{identifier(table)} is {string(VIEW_COMMENT)}")
        con.execute("commit")
    finally:
        con.close()  # without a commit, DuckDB rolls back
    return tables
