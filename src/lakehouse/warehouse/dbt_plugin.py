"""A dbt-duckdb plugin (``profiles.yml`` -> ``plugins``): dbt's DuckDB session is set up by the
same code as every other connection to the warehouse (``duckdb_env``), and DuckDB is handed the
PII key.

The session: extensions from the project's folder (never downloaded), the delta extension
loaded, UTC days, ``LAKEHOUSE_DUCKDB_MEMORY_LIMIT`` (e.g. ``4GB``: DuckDB then spills to a
temporary folder next to the warehouse file instead of taking up to 80% of the machine's
memory) and, for a lake on S3, the secret whose keys come from the ``AWS_*`` environment. The
lake is dbt's: ``--vars '{lake_root: ...}'``, else ``LAKEHOUSE_LAKE``, else the demo's lake.

Personal data leaves staging only as HMAC-SHA256 keyed by ``LAKEHOUSE_PII_SALT``. The key must
never be in SQL text: dbt writes compiled SQL to ``target/`` and its logs, so a salt inside the
SQL would sit next to the hashes it protects. This plugin reads the key from the environment
and sets the two HMAC pads as DuckDB session variables on every connection and cursor dbt
uses, through prepared parameters; the SQL (``macros/pii.sql``) only names the variables.

It also registers ``lakehouse_bronze_batches_since(table, since, version)``: the ingest batches
that a bronze table's Delta commits after ``since`` up to ``version`` added, or null when one of
those commits is not an ingest append; Delta's history is read by deltalake, never from SQL.
A night's data tests of a source read only those batches (macros/tests/night_scope.sql).

Without ``LAKEHOUSE_PII_SALT`` it refuses the commands that compute models (``build``, ``run``,
...), except into a warehouse inside the demo folder (``data/demo``), which uses a fixed,
public demo key; commands that hash nothing (``test``, ``source freshness``, ``docs``,
``parse``, ...) run without one.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import duckdb
from dbt.adapters.duckdb.plugins import BasePlugin
from dbt_common.exceptions import DbtRuntimeError

from lakehouse.ingest.bronze import batches_committed
from lakehouse.layout import Layout, bronze_uri
from lakehouse.warehouse.dbt_build import (
    AS_OF_VARIABLE,
    ENV_AS_OF,
    ENV_BRONZE_VERSIONS,
    PINS_VARIABLE,
    session_pins,
)
from lakehouse.warehouse.duckdb_env import (
    WarehouseError,
    check_warehouse_path,
    connect_config,
    prepare,
    session_sql,
    settings_sql,
)
from lakehouse.warehouse.pii import INNER, OUTER, hmac_pads, pii_key

BATCHES_FUNCTION = "lakehouse_bronze_batches_since"
# dbt commands that compute models, so hash personal data: they need the key
COMPUTING = {"build", "run", "retry", "snapshot", "clone", "show", "run-operation"}


class Plugin(BasePlugin):
    def initialize(self, plugin_config: dict[str, Any]) -> None:
        flags = _flags()
        self._project = Path(getattr(flags, "PROJECT_DIR", None) or ".").resolve()
        _to_project_root(self._project)
        path = getattr(self.creds, "path", None) if self.creds is not None else None
        try:
            check_warehouse_path(path)
        except WarehouseError as error:  # dbt's own error type: one line, no traceback
            raise DbtRuntimeError(str(error)) from None
        dbt_vars = getattr(flags, "VARS", None) or {}
        self._lake = str(dbt_vars.get("lake_root") or Layout.from_root().lake).rstrip("/")
        self._given = _given_pins(dbt_vars)
        self._pins: dict[str, int] | None = None  # learned at the first connection
        # the job's clock for serving features (None outside a job: they use now)
        self._as_of = os.environ.get(ENV_AS_OF)
        self._pads: tuple[bytes, bytes] | None = None
        try:
            self._pads = hmac_pads(pii_key(path))
        except RuntimeError:
            if getattr(flags, "WHICH", None) in COMPUTING:
                raise  # nothing that hashes runs without the key

    def update_connection_config(self, creds: Any, config: dict[str, Any]) -> None:
        config.update(connect_config(self._project))

    def configure_connection(self, conn) -> None:
        self._prepare(conn, session_sql(self._lake))  # the lake's secret: first
        if self._pins is None:
            try:
                self._pins = session_pins(self._lake, self._given)
            except (WarehouseError, OSError) as error:  # one line, no traceback
                raise DbtRuntimeError(str(error)) from None
        self._register(conn)  # its cursors see it too
        self._set(conn)

    def configure_cursor(self, cursor) -> None:
        self._prepare(cursor, settings_sql())
        self._set(cursor)

    def _prepare(self, connection, statements: list[str]) -> None:
        try:
            prepare(connection, statements, self._project)
        except WarehouseError as error:  # dbt's own error type: one line, no traceback
            raise DbtRuntimeError(str(error)) from None

    def _set(self, connection) -> None:
        pins = self._pins or {}
        connection.execute(
            f"set variable {PINS_VARIABLE} = map(?::varchar[], ?::bigint[])",
            [list(pins), list(pins.values())],
        )
        connection.execute(f"set variable {AS_OF_VARIABLE} = ?::timestamptz", [self._as_of])
        if self._pads is None:  # a command that hashes nothing, run without a key
            return
        inner, outer = self._pads
        connection.execute(f"set variable {INNER} = ?", [inner])
        connection.execute(f"set variable {OUTER} = ?", [outer])

    def _register(self, connection) -> None:
        lake = self._lake

        def batches_since(table: str | None, since: int | None, version: int | None):
            if table is None or since is None or version is None:
                return None
            try:
                found = batches_committed(bronze_uri(lake, table), int(since), int(version))
            except Exception:  # a history deltalake cannot read: the caller reads every row
                return None
            return None if found is None else sorted(found)

        varchar, bigint = duckdb.sqltype("VARCHAR"), duckdb.sqltype("BIGINT")
        connection.create_function(
            BATCHES_FUNCTION,
            batches_since,
            [varchar, bigint, bigint],
            duckdb.list_type(varchar),
            null_handling="special",
            side_effects=True,
        )


def _given_pins(dbt_vars: dict[str, Any]) -> dict[str, int]:
    """The Delta versions this invocation was asked to read: what `lakehouse build` pinned
    ($LAKEHOUSE_BRONZE_VERSIONS), with an analyst's `--vars '{bronze_versions: ...}'` on
    top."""
    given: dict[str, int] = {}
    text = os.environ.get(ENV_BRONZE_VERSIONS)
    if text:
        try:
            given = dict(json.loads(text))
        except (ValueError, TypeError):
            raise DbtRuntimeError(
                f"{ENV_BRONZE_VERSIONS} is not a JSON object of bronze table -> Delta version: "
                f"{text[:200]!r}"
            ) from None
    return {**given, **(dbt_vars.get("bronze_versions") or {})}


def _to_project_root(project: Path) -> None:
    """`dbt build` typed in a folder inside the project (`cd models`): dbt finds
    dbt_project.yml upwards and keeps its own files (target/, logs/) in the project's root,
    but DuckDB resolves relative paths (profiles.yml's warehouse, the lake in each
    delta_scan) against the working directory. The dbt command works from the project's root
    then, as dbt's own `deps` and `clean` do, so a relative path means the same file from
    any folder of the project. Only the dbt command: a program that runs dbt in its own
    process (lakehouse build, Dagster) keeps its working directory."""
    here = Path.cwd()
    if project in here.parents and Path(sys.argv[0]).name == "dbt":
        os.chdir(project)


def _flags() -> Any:
    from dbt.flags import get_flags

    return get_flags()
