"""`dbt build` through dbt's programmatic runner, with the bronze versions pinned.

Pinning: before dbt starts, the current Delta version of every bronze table is read with
deltalake and passed as the ``bronze_versions`` var, so every model of the run reads the same
snapshot, and the on-run-end hook records exactly those versions for the exporter.
"""

from __future__ import annotations

import functools
import json
import os
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from lakehouse.contracts import bronze_tables
from lakehouse.engines import ENGINES, SPARK_TARGETS, is_spark
from lakehouse.layout import ENV_WAREHOUSE, bronze_uri
from lakehouse.sql import embeddable
from lakehouse.storage import delta_exists, normalize_uri, open_delta
from lakehouse.warehouse.duckdb_env import (
    EXTENSIONS_VARIABLE,
    WarehouseError,
    connect_config,
    ensure_extensions,
    ensure_writable,
)
from lakehouse.warehouse.pii import ENV_SALT, pii_key
from lakehouse.warehouse.spark import (
    attach_spark_tables,
    spark_dir_env,
    spark_unavailable,
    write_bronze_record,
)
from lakehouse.warehouse.spark_cluster import tolerating_session_close_failures


@dataclass
class NodeResult:
    name: str
    resource_type: str
    status: str
    message: str | None
    seconds: float


@dataclass
class BuildResult:
    success: bool
    exit_code: int
    invocation_id: str | None
    bronze_versions: dict[str, int]
    nodes: list[NodeResult] = field(default_factory=list)
    error: str | None = None
    # how dbt read the project: "partial" (its saved parse, the files that changed parsed
    # again) or "full: <dbt's reason>"; None when dbt said neither
    parse: str | None = None
    # Thrift sessions the Spark server failed to close after their node's work
    # (spark_cluster.tolerating_session_close_failures): not failures, reported
    unclosed_sessions: list[str] = field(default_factory=list)

    def counts(self) -> Counter[tuple[str, str]]:
        return Counter((n.resource_type, n.status) for n in self.nodes)

    @property
    def failures(self) -> list[NodeResult]:
        return [n for n in self.nodes if n.status in ("error", "fail")]


def bronze_versions(
    lake: str, tables: list[str] | None = None, *, missing_ok: bool = False
) -> dict[str, int]:
    """Current Delta version of each bronze table (or of ``tables``); a missing table is a
    clear error, or left out with ``missing_ok``."""
    versions = {}
    for table in bronze_tables() if tables is None else tables:
        uri = bronze_uri(lake, table)
        if not delta_exists(uri):
            if missing_ok:
                continue
            raise WarehouseError(
                f"no bronze Delta table at {uri}. Ingest first: `lakehouse ingest <landing> "
                f"--lake {lake}` (or `make demo` for sample data)."
            )
        versions[table] = open_delta(uri).version()
    return versions


# the pins `lakehouse build` hands a DuckDB build (JSON: table -> Delta version); the profile's
# plugin sets them as PINS_VARIABLE, which dbt_project.yml's source template and
# macros/bronze.sql read (a test keeps the three spellings equal)
ENV_BRONZE_VERSIONS = "LAKEHOUSE_BRONZE_VERSIONS"
PINS_VARIABLE = "lakehouse_bronze_versions"
# the job's clock, which serving features are evaluated at (macros/features.sql
# serving_as_of): in the environment for the plugin to set in DuckDB's session, like the pins,
# so a new night changes no parsed SQL; the `as_of` var on Spark
ENV_AS_OF = "LAKEHOUSE_AS_OF"
AS_OF_VARIABLE = "lakehouse_as_of"


def session_pins(lake: str, given: dict[str, int]) -> dict[str, int]:
    """The Delta version a dbt session on DuckDB reads of each bronze table: ``given``
    (refused when not a bronze table at a whole-number version), and every other table of
    the lake at its current version, so one invocation reads one snapshot whatever runs
    while it does. A table not in the lake yet is left out (the build's first hook names
    it)."""
    _refuse_unsafe_vars(lake, given)
    unpinned = [t for t in bronze_tables() if t not in given]
    return {**bronze_versions(lake, unpinned, missing_ok=True), **given}


def pin_bronze_versions(lake: str, overrides: dict[str, int]) -> dict[str, int]:
    """Every bronze table at its current Delta version, except the ones ``overrides`` sets
    (reading the past by time travel). :func:`run_dbt` refuses an unknown table or a version
    that is not a whole number, whatever built the pins."""
    return {**bronze_versions(normalize_uri(lake)), **overrides}


@dataclass(frozen=True)
class DbtInvocation:
    """What one dbt command on this project needs, whichever runner starts it (dbt's
    ``dbtRunner`` in :func:`run_dbt`, dagster-dbt's ``DbtCliResource`` in
    ``lakehouse.orchestrate``): the flags after the command, the environment, and the bronze
    versions pinned for the run. Built by :func:`prepare_dbt`; whichever runner ran dbt then
    calls :meth:`finish`, the one place for what follows a dbt command."""

    project: Path
    warehouse: Path
    versions: dict[str, int]
    flags: tuple[str, ...]  # --vars with the lake (and the pins' record on Spark), --target
    env: dict[str, str]
    spark_dir: Path | None = None  # the spark engine's warehouse and metastore
    engine: str = "duckdb"
    # the job's clock (the night this build serves), recorded with its lineage for people;
    # None for a build outside a job. The models read no clock (identities decide "new").
    as_of: datetime | None = None

    @property
    def vars(self) -> str:
        """The --vars this invocation passes, as JSON (`lakehouse dbt-vars`)."""
        return self.flags[self.flags.index("--vars") + 1]

    def finish(
        self, command: str, invocation_id: str | None, manifest: Path, *, succeeded: bool
    ) -> None:
        """After dbt ran ``command`` with these flags and wrote ``manifest``: a Spark
        build's tables become views in the warehouse file (and, when it succeeded, the
        folders a killed build left go), and a build or run records the manifest it parsed,
        and the job's ``as_of``, next to its lineage. Call it only when dbt ran nodes."""
        if is_spark(self.engine) and command in ("build", "run", "seed"):
            assert self.spark_dir is not None
            attach_spark_tables(
                self.warehouse, self.spark_dir, manifest, remove_leftovers=succeeded
            )
        if invocation_id and command in ("build", "run"):
            record_dbt_manifest(
                self.warehouse, manifest, invocation_id, self.as_of, project=self.project
            )

    @contextmanager
    def environment(self) -> Iterator[None]:
        """The process environment dbt needs (the warehouse, the extensions, the PII key),
        restored afterwards."""
        with _environment(**self.env):
            yield


def prepare_dbt(
    lake: str,
    warehouse: str | Path,
    *,
    versions: dict[str, int] | None = None,
    project: Path,
    pii_salt: str | None = None,
    engine: str = "duckdb",
    spark_dir: Path | None = None,
    as_of: datetime | None = None,
) -> DbtInvocation:
    """Check the lake and the pins, make sure the warehouse can be written and the DuckDB
    extensions are installed, and say how dbt must be invoked. ``versions`` pins the bronze
    Delta versions read; by default every table's current one. ``pii_salt`` is the PII key
    when the environment has none (the demo); otherwise ``LAKEHOUSE_PII_SALT`` is used
    (``dbt_plugin``). ``engine="spark"`` (``"spark-thrift"``) runs the project's ``spark``
    (``spark_thrift``) target with its warehouse in ``spark_dir``, reading each bronze table's
    files at its pinned version from a record it writes there (:func:`write_bronze_record`).
    ``as_of`` is the job's clock, recorded with the build's lineage
    (:meth:`DbtInvocation.finish`)."""
    if engine not in ENGINES:
        raise WarehouseError(f"unknown engine {engine!r}: expected one of {', '.join(ENGINES)}")
    if is_spark(engine):
        reason = spark_unavailable()
        if reason:
            raise WarehouseError(f"cannot build on Spark: {reason}")
        if spark_dir is None:
            raise WarehouseError("the spark engine needs a folder for its warehouse (spark_dir)")
    lake = normalize_uri(lake)
    _refuse_unsafe_vars(lake, versions or {})
    pinned = versions if versions is not None else bronze_versions(lake)
    # the vars stay the same night after night (dbt parses partially when they do): on
    # DuckDB the pins travel in the environment, for the profile's plugin to set in the
    # session (session_pins); on Spark, in a record of each pinned version's files whose path
    # is the var (the same file, rewritten, each night)
    dbt_vars: dict = {"lake_root": lake}
    target: tuple[str, ...] = ()
    engine_env: dict[str, str] = {ENV_BRONZE_VERSIONS: json.dumps(pinned, sort_keys=True)}
    if as_of is not None:
        engine_env[ENV_AS_OF] = as_of.isoformat()
    if is_spark(engine):
        assert spark_dir is not None
        dbt_vars["bronze_record"] = str(write_bronze_record(spark_dir, lake, pinned, as_of))
        target = ("--target", SPARK_TARGETS[engine])
        engine_env = spark_dir_env(spark_dir)
        if engine == "spark-thrift":
            engine_env.update(thrift_server_env(spark_dir))
    extensions = ensure_extensions(project)
    warehouse = Path(warehouse).resolve()
    warehouse.parent.mkdir(parents=True, exist_ok=True)
    ensure_writable(warehouse)
    salt = {} if os.environ.get(ENV_SALT) or not pii_salt else {ENV_SALT: pii_salt}
    if is_spark(engine) and not os.environ.get(ENV_SALT) and not pii_salt:
        # DuckDB's plugin applies this rule itself; Spark reads the key from the profile
        try:
            salt = {ENV_SALT: pii_key(warehouse).decode()}
        except RuntimeError as error:
            raise WarehouseError(str(error)) from None
    return DbtInvocation(
        project=project,
        warehouse=warehouse,
        versions=pinned,
        flags=(*target, "--vars", json.dumps(dbt_vars)),
        env={
            **salt,
            **engine_env,
            ENV_WAREHOUSE: str(warehouse),
            # absolute: profiles.yml's default is relative to dbt's working directory
            EXTENSIONS_VARIABLE: str(extensions.resolve()),
            "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
        },
        spark_dir=spark_dir.resolve() if spark_dir is not None else None,
        engine=engine,
        as_of=as_of,
    )


def run_dbt(
    lake: str,
    warehouse: str | Path,
    *,
    command: str = "build",
    select: list[str] | None = None,
    versions: dict[str, int] | None = None,
    full_refresh: bool = False,
    project: Path,
    quiet: bool = False,
    pii_salt: str | None = None,
    engine: str = "duckdb",
    spark_dir: Path | None = None,
    as_of: datetime | None = None,
) -> BuildResult:
    """Run ``dbt <command>`` on the project against ``lake`` in this process; the exit code
    follows dbt. ``versions``, ``pii_salt``, ``engine``, ``spark_dir`` and ``as_of``: see
    :func:`prepare_dbt`; after a Spark build its tables are views in ``warehouse``
    (:func:`attach_spark_tables`). Relative paths are relative to the working directory, as
    everywhere in the CLI."""
    from dbt.cli.main import dbtRunner

    invocation = prepare_dbt(
        lake,
        warehouse,
        versions=versions,
        project=project,
        pii_salt=pii_salt,
        engine=engine,
        spark_dir=spark_dir,
        as_of=as_of,
    )
    args = [
        command,
        "--project-dir",
        str(project),
        "--profiles-dir",
        str(project),
        *invocation.flags,
    ]
    if select:
        # cautious: a test runs only when everything it reads is selected too
        args += ["--select", *select, "--indirect-selection", "cautious"]
    if full_refresh:
        args.append("--full-refresh")
    if quiet:
        args += ["--quiet"]
    parse: list[str] = []

    def on_event(event) -> None:  # dbt's own account of its parse
        name = event.info.name
        if name == "UnableToPartialParse":
            parse.append(f"full: {event.data.reason}")
        elif name in ("PartialParsingEnabled", "PartialParsingSkipParsing"):
            parse.append("partial")

    with invocation.environment(), ExitStack() as stack:
        unclosed: list[str] = []
        if engine == "spark-thrift":
            unclosed = stack.enter_context(tolerating_session_close_failures())
        try:
            outcome = dbtRunner(callbacks=[on_event]).invoke(args)
        finally:
            _release_duckdb(warehouse)
            if engine == "spark":  # the session method's SparkSession, in this process
                _stop_spark()
    from dbt_common.invocation import get_invocation_id

    invocation_id = get_invocation_id()  # the id dbt stamped on this run's artifacts
    nodes = []
    results = outcome.result
    if results is not None and hasattr(results, "results"):
        for r in results.results:
            nodes.append(
                NodeResult(
                    r.node.name,
                    str(r.node.resource_type),
                    str(r.status),
                    r.message,
                    float(r.execution_time or 0.0),
                )
            )
    error = str(outcome.exception) if outcome.exception else None
    code = 0 if outcome.success else (2 if outcome.exception else 1)
    if nodes:
        invocation.finish(
            command,
            invocation_id,
            dbt_artifacts(project) / "manifest.json",
            succeeded=outcome.success,
        )
    return BuildResult(
        outcome.success,
        code,
        invocation_id,
        invocation.versions,
        nodes,
        error,
        parse[0] if parse else None,
        unclosed,
    )


def record_dbt_manifest(
    warehouse: Path,
    manifest: Path,
    invocation_id: str,
    as_of: datetime | None = None,
    project: Path | None = None,
) -> None:
    """Record the sha256 of the manifest a build or run invocation parsed, and the job's
    ``as_of``, next to its lineage in the warehouse (the exporter copies both into the shard
    manifest). Opened with the configuration dbt's session has (``connect_config``): should
    a cursor of the run still hold DuckDB's instance, the same configuration shares it where
    another one is refused."""
    import duckdb

    from lakehouse.shardformat import sha256_of
    from lakehouse.warehouse.lineage import record_manifest

    if not manifest.exists():
        return
    config = connect_config(project) if project is not None else {}
    con = duckdb.connect(str(warehouse), config=config)
    try:
        record_manifest(con, invocation_id, sha256_of(manifest), as_of)
    finally:
        con.close()


def attach_spark_build(warehouse: Path, spark_dir: Path, manifest: Path) -> list[str]:
    """After a `dbt build --target spark` run by hand (an analyst's): what
    ``lakehouse build --engine spark`` does after its own dbt build. Each Spark table becomes
    a view in ``warehouse`` (:func:`attach_spark_tables`) and the manifest the build parsed is
    recorded with its invocation, so the gate and export read the build as they read a DuckDB
    one. ``manifest`` is that build's ``manifest.json``; a manifest of a DuckDB build, or none,
    is refused with what to do. Returns the tables attached."""
    try:
        metadata = json.loads(manifest.read_text()).get("metadata") or {}
    except (OSError, ValueError) as exc:
        raise WarehouseError(
            f"cannot read dbt's manifest {manifest} ({exc}): run `dbt build --target spark` "
            "first, or point DBT_TARGET_PATH at the target folder it wrote"
        ) from None
    adapter = metadata.get("adapter_type")
    if adapter != "spark":
        raise WarehouseError(
            f"{manifest} is the manifest of a {adapter or 'unknown'} build, not a Spark one: "
            "a DuckDB build writes the warehouse itself, nothing to attach"
        )
    names = attach_spark_tables(warehouse, spark_dir, manifest)
    if metadata.get("invocation_id"):
        record_dbt_manifest(warehouse, manifest, metadata["invocation_id"])
    return names


def thrift_server_env(spark_dir: Path) -> dict[str, str]:
    """Where the spark-thrift engine's Thrift server is: the environment's
    ``LAKEHOUSE_SPARK_HOST``/``PORT`` (a cluster of your own), else the cluster
    ``lakehouse spark-cluster start`` runs for ``spark_dir``."""
    from lakehouse.warehouse.spark_cluster import ENV_THRIFT_PORT, running_cluster

    if os.environ.get(ENV_THRIFT_PORT):
        return {}
    cluster = running_cluster(spark_dir)
    if cluster is None:
        raise WarehouseError(
            f"no Spark Thrift Server for {spark_dir}: start one with `lakehouse spark-cluster "
            f"start`, or point LAKEHOUSE_SPARK_HOST and {ENV_THRIFT_PORT} at yours"
        )
    return cluster.env()


def _refuse_unsafe_vars(lake: str, versions: dict[str, int]) -> None:
    """The lake and the versions become dbt vars that SQL quotes or inlines: a quote or a
    control character in the lake, or a version that is not a whole number, is refused here
    whatever its origin (an argument, a manifest)."""
    if not embeddable(lake):
        raise WarehouseError(f"lake {lake!r} holds a quote or control character; refused")
    known = bronze_tables()
    for table, version in versions.items():
        if table not in known or not isinstance(version, int) or version < 0:
            raise WarehouseError(
                f"cannot read bronze {table!r} at version {version!r}: expected one of "
                f"{', '.join(known)} at a whole-number version"
            )


def _release_duckdb(warehouse: str | Path) -> None:
    """dbt-duckdb keeps its database open in this process after a run; close it so the
    warehouse file can be opened again (read-only, or by the next run) without a conflict.
    Cursors of the run's threads and of its `run_query` results can keep DuckDB's instance
    alive until they are collected, and another configuration cannot open the file until
    then ("Can't open a connection to same database file with a different configuration"):
    collect them here rather than whenever the garbage collector gets to it, and wait (at
    most 5 s) until a read-only connection opens: CI once found the instance still alive
    right after one collection."""
    import gc
    import time

    import duckdb
    from dbt.adapters.duckdb.connections import DuckDBConnectionManager

    DuckDBConnectionManager.close_all_connections()
    gc.collect()
    if not Path(warehouse).exists():
        return
    for _ in range(50):
        try:
            duckdb.connect(str(warehouse), read_only=True).close()
            return
        except duckdb.ConnectionException as error:
            if "different configuration" not in str(error):
                return
        except duckdb.Error:
            return  # not this function's to report: the caller's next open names it
        time.sleep(0.1)
        gc.collect()


def _stop_spark() -> None:
    """dbt-spark's session method leaves its SparkSession running in this process; stop it,
    so its warehouse, metastore and memory are released (a later run starts its own)."""
    from pyspark.sql import SparkSession

    session = SparkSession.getActiveSession()
    if session is not None:
        session.stop()


@contextmanager
def _environment(**values: str) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


def dbt_artifacts(project: Path) -> Path:
    """Where dbt writes its artifacts (manifest.json, run_results.json): ``$DBT_TARGET_PATH``
    when set (dbt's own setting, relative to the project), else the project's ``target/``."""
    configured = Path(os.environ.get("DBT_TARGET_PATH") or "target")
    return configured if configured.is_absolute() else project / configured


def model_meta(project: Path, model: str) -> dict | None:
    """The ``meta`` a dbt model declares (in its folder's YAML), read from dbt's
    ``manifest.json``; None when dbt has not parsed a model of that name."""
    node = _model_nodes(project).get(model)
    return None if node is None else _meta(node)


def model_docs(project: Path, model: str) -> tuple[str, dict[str, dict[str, str]]]:
    """A model's description and, per column, what its dbt YAML says of it: ``description``
    and, where declared, ``unit`` (the column's ``config: {meta: {unit: ...}}``), as dbt's
    ``manifest.json`` holds them (doc blocks rendered). Empty when dbt has not parsed it."""
    node = _model_nodes(project).get(model) or {}
    columns = {}
    for name, column in (node.get("columns") or {}).items():
        said = {"description": str(column.get("description") or "").strip()}
        unit = _meta(column).get("unit")
        if unit:
            said["unit"] = str(unit)
        columns[name] = {key: value for key, value in said.items() if value}
    return str(node.get("description") or ""), columns


def exportable_models(project: Path) -> list[str]:
    """The models whose dbt YAML declares ``meta.export`` (what ``lakehouse export`` takes)."""
    nodes = _model_nodes(project)
    return sorted(name for name, node in nodes.items() if _meta(node).get("export"))


def online_models(manifest: Path) -> list[str]:
    """The models whose dbt YAML declares ``meta.online`` (the feature views ``lakehouse
    materialize`` copies into the online store), as dbt's ``manifest`` (a manifest.json)
    holds them."""
    nodes = _nodes_of(manifest)
    return sorted(name for name, node in nodes.items() if _meta(node).get("online"))


def model_contract(manifest: Path, model: str) -> list[tuple[str, str]] | None:
    """The columns and data types of a model whose dbt YAML enforces a contract, in order,
    as dbt's ``manifest`` (a manifest.json) holds them; None when it enforces none (or that
    manifest has no such model, or there is no manifest)."""
    node = _nodes_of(manifest).get(model)
    if node is None or not (node.get("config", {}).get("contract") or {}).get("enforced"):
        return None
    return [(c["name"], str(c.get("data_type"))) for c in node.get("columns", {}).values()]


def _meta(node: dict) -> dict:
    return {**node.get("meta", {}), **node.get("config", {}).get("meta", {})}


def _model_nodes(project: Path) -> dict[str, dict]:
    return _nodes_of(dbt_artifacts(project) / "manifest.json")


def _nodes_of(path: Path) -> dict[str, dict]:
    """The model nodes of a dbt manifest.json, by name (none when it does not exist). Parsed
    once per version of the file: a gate run reads it for every suite (its contract checks)
    and for every exportable model; dbt rewriting it changes its modification time."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        return {}
    return _parsed_nodes(str(path), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=4)
def _parsed_nodes(path: str, _mtime_ns: int, _size: int) -> dict[str, dict]:
    nodes = json.loads(Path(path).read_text()).get("nodes", {})
    return {
        n["name"]: n
        for n in nodes.values()
        if n.get("resource_type") == "model" and isinstance(n.get("name"), str)
    }
