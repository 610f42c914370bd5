"""A DuckDB datasource for Great Expectations 1.x, through GX's public plugin points.

GX's fluent datasources are pydantic models registered by their ``type``: subclassing
:class:`~great_expectations.datasource.fluent.SQLDatasource` with ``type: Literal["duckdb"]``
adds ``context.data_sources.add_duckdb(...)``, and its ``execution_engine_type`` names the
engine that computes metrics. The engine is GX's own
:class:`~great_expectations.execution_engine.SqlAlchemyExecutionEngine` (every metric is SQL
that DuckDB runs; nothing is pulled into pandas) with two differences DuckDB needs:

- **one connection, kept open.** DuckDB frees a query's result when its connection closes,
  and GX reads some results after leaving its ``with engine.connect()`` block (the "list
  index out of range" that GX's own dialects avoid with ``_PERSISTED_CONNECTION_DIALECTS``).
  The engine uses a ``StaticPool`` and keeps the connection for its lifetime.
- **statements on connect.** ``init_sql`` runs once on the connection (``load delta``, the
  time zone, an S3 secret read from the environment), so query assets can scan Delta tables.

Usage::

    ds = context.data_sources.add_duckdb(
        "warehouse", connection_string="duckdb:///warehouse.duckdb",
        read_only=True, extension_directory=".duckdb/extensions", init_sql=["load delta"])
    ds.add_table_asset("fct_events", table_name="fct_events")

Regex expectations are not in GX's DuckDB dialect map (there is none): suites express them
as ``unexpected_rows_expectation`` with ``regexp_matches``.
"""

from __future__ import annotations

from collections.abc import Generator
from contextlib import contextmanager
from typing import Any, ClassVar, Literal

import lakehouse.quality.gxsetup  # noqa: F401  (first: GX without pyspark, analytics off)

import sqlalchemy as sa
from great_expectations.compatibility import pydantic
from great_expectations.datasource.fluent import SQLDatasource
from great_expectations.execution_engine import SqlAlchemyExecutionEngine

DIALECT = "duckdb"


def create_duckdb_engine(
    connection_string: str,
    *,
    read_only: bool = True,
    extension_directory: str | None = None,
    init_sql: list[str] | tuple[str, ...] = (),
) -> sa.Engine:
    """A SQLAlchemy engine (duckdb-engine) on one DuckDB connection that ran ``init_sql``."""
    config: dict[str, Any] = {}
    if extension_directory:
        config["extension_directory"] = extension_directory
    engine = sa.create_engine(
        connection_string,
        poolclass=sa.StaticPool,
        connect_args={"read_only": read_only, "config": config},
    )
    statements = list(init_sql)

    @sa.event.listens_for(engine, "connect")
    def _initialise(dbapi_connection: Any, _record: Any) -> None:
        for statement in statements:
            dbapi_connection.execute(statement)

    return engine


class DuckDBExecutionEngine(SqlAlchemyExecutionEngine):
    """GX's SQL execution engine on one persisted DuckDB connection."""

    def __init__(
        self,
        *args: Any,
        connection_string: str | None = None,
        read_only: bool = True,
        extension_directory: str | None = None,
        init_sql: list[str] | tuple[str, ...] = (),
        engine: sa.Engine | None = None,
        create_temp_table: bool = False,
        kwargs: dict[str, Any] | None = None,
        **rest: Any,
    ) -> None:
        if engine is None and connection_string is not None:
            engine = create_duckdb_engine(
                connection_string,
                read_only=read_only,
                extension_directory=extension_directory,
                init_sql=init_sql,
            )
        super().__init__(*args, engine=engine, create_temp_table=create_temp_table, **rest)

    @contextmanager
    def get_connection(self) -> Generator[sa.Connection, None, None]:
        if self._connection is None:
            self._connection = self.engine.connect()
        yield self._connection

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None
        self.engine.dispose()


class DuckDBDatasource(SQLDatasource):
    """A DuckDB database file (``duckdb:///path``) as a GX SQL datasource."""

    type: Literal["duckdb"] = "duckdb"  # type: ignore[assignment]
    read_only: bool = True
    extension_directory: str | None = None
    init_sql: list[str] = pydantic.Field(default_factory=list)

    # the datasource's own engine (asset checks) is made the same way as the metrics' engine
    _EXTRA_EXCLUDED_EXEC_ENG_ARGS: ClassVar[set[str]] = set()

    @property
    def execution_engine_type(self) -> type[SqlAlchemyExecutionEngine]:
        return DuckDBExecutionEngine

    def _create_engine(self) -> sa.Engine:
        return create_duckdb_engine(
            str(self.connection_string),
            read_only=self.read_only,
            extension_directory=self.extension_directory,
            init_sql=self.init_sql,
        )
