"""The same dbt project on Apache Spark (dbt-spark's ``session`` method: a SparkSession in
dbt's own process), and how the tables it builds reach the rest of lakehouse.

Bronze: Spark has no Delta reader here (the connector's jars come from Maven), so each bronze
table is read as exactly the Parquet files its pinned Delta version lists, as deltalake
reports them (:func:`bronze_files`, the ``bronze_files`` dbt var; ``macros/bronze.sql`` turns
each into a view). Append-only tables written by delta-rs have no deletion vectors or column
mapping, so those files are the version's rows.

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
from pathlib import Path
from urllib.parse import unquote, urlparse

import duckdb

from lakehouse.layout import bronze_uri
from lakehouse.sql import identifier, string
from lakehouse.storage import is_remote, open_delta
from lakehouse.warehouse.duckdb_env import WarehouseError

# where the spark output keeps its warehouse
ENV_SPARK_DIR = "LAKEHOUSE_SPARK_DIR"
# marks the views attach_spark_tables makes, so a DuckDB build can take their names back
# (macros/bronze.sql, release_spark_tables, drops the views that carry it)
VIEW_COMMENT = "lakehouse: a table of a Spark build"
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


def bronze_files(lake: str, versions: dict[str, int]) -> dict[str, str]:
    """Per bronze table, a glob that matches exactly the data files of its pinned Delta
    version, for Spark's ``parquet.`<glob>``` (``bronze_files`` var)."""
    if is_remote(lake):
        raise WarehouseError(
            "the spark engine reads a local lake here: Spark's S3 connector (hadoop-aws) "
            "comes from Maven, which this machine cannot reach (docs/decisions/0011-spark.md)"
        )
    globs = {}
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
        names = sorted(p.name for p in paths)
        globs[table] = str(folder / ("{" + ",".join(names) + "}"))
    return globs


def spark_dir_env(spark_dir: Path) -> dict[str, str]:
    """The environment profiles.yml's spark target reads (absolute: dbt's working directory
    is not the user's)."""
    return {ENV_SPARK_DIR: str(spark_dir.resolve())}


def schema_folder(spark_dir: Path, schema: str) -> Path:
    """Where Spark keeps the managed tables of a schema, one folder each:
    ``<warehouse>/<schema>.db/`` (Hive's layout; ``spark.sql.warehouse.dir`` is
    ``<spark_dir>/warehouse`` in profiles.yml)."""
    return spark_dir / "warehouse" / f"{schema}.db"


def attach_spark_tables(warehouse: Path, spark_dir: Path, manifest: Path) -> list[str]:
    """Make every table of the Spark build a view in the DuckDB ``warehouse`` file over its
    Parquet files, each contracted column cast to the type its dbt contract states (Spark has
    no fixed-size arrays; DuckDB's loader-facing type is ``float[64]``). A DuckDB table of the
    same name, from an earlier DuckDB build, is replaced. All in one transaction: a failure
    leaves the file as it was. Returns the views' names."""
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
    tables = sorted(p.name for p in folder.iterdir() if p.is_dir())
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
