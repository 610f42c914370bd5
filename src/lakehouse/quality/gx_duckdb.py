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

The engine can also serve a batch's whole-table metrics from **running totals** (an
append-only table's row count, non-null counts, max, min and value counts at an earlier
version, combined with those of the rows appended since: :mod:`lakehouse.quality.totals`):
``engine.running_totals[batch_id] = RunningTotals(...)`` before the checkpoint runs. Every
other metric, and every metric the totals do not know yet, is GX's own computation; the
values GX computes for such metrics are recorded for the next run.

Regex expectations are not in GX's DuckDB dialect map (there is none): suites express them
as ``unexpected_rows_expectation`` with ``regexp_matches``.
"""

from __future__ import annotations

from collections.abc import Generator, Iterable
from contextlib import contextmanager
from typing import Any, ClassVar, Literal

import lakehouse.quality.gxsetup  # noqa: F401  (first: GX without pyspark, analytics off)

import pandas as pd
import sqlalchemy as sa
from great_expectations.compatibility import pydantic
from great_expectations.datasource.fluent import SQLDatasource
from great_expectations.execution_engine import SqlAlchemyExecutionEngine
from great_expectations.util import convert_to_json_serializable

from lakehouse.quality.totals import (
    VALUE_COUNTS,
    RunningTotals,
    added_counts_sql,
    added_sql,
    as_type_of,
    combine,
    metric_key,
)

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
        self.running_totals: dict[str, RunningTotals] = {}

    def resolve_metrics(
        self,
        metrics_to_resolve: Iterable[Any],
        metrics: dict[Any, Any] | None = None,
        runtime_configuration: dict | None = None,
    ) -> dict[Any, Any]:
        """GX's resolution, except whole-table metrics the running totals know: those are the
        kept value combined with the appended rows' (one query per batch, one more per value
        count). The values GX computes for metrics the totals could keep are recorded."""
        served: dict[str, list[tuple[Any, str]]] = {}
        rest = []
        for config in metrics_to_resolve:
            found = self._totals_of(config)
            if found is not None and found[0].knows(found[1]):
                served.setdefault(config.metric_domain_kwargs["batch_id"], []).append(
                    (config, found[1])
                )
            else:
                rest.append(config)
        resolved: dict[Any, Any] = {}
        for batch_id, wanted in served.items():
            values = self._from_totals(self.running_totals[batch_id], [k for _, k in wanted])
            if values is None:  # the kept values do not combine: GX reads the whole table
                rest.extend(config for config, _ in wanted)
                continue
            for config, key in wanted:
                resolved[config.id] = values[key]
        if rest:
            resolved.update(super().resolve_metrics(rest, metrics, runtime_configuration))
        for config in rest:
            found = self._totals_of(config)
            if found is not None and config.id in resolved:
                found[0].record(found[1], resolved[config.id])
        return resolved

    def _totals_of(self, config: Any) -> tuple[RunningTotals, str] | None:
        totals = self.running_totals.get(config.metric_domain_kwargs.get("batch_id"))
        if totals is None:
            return None
        key = metric_key(
            config.metric_name,
            dict(config.metric_domain_kwargs),
            dict(config.metric_value_kwargs or {}),
        )
        return None if key is None else (totals, key)

    def _from_totals(self, totals: RunningTotals, keys: list[str]) -> dict[str, Any] | None:
        scalars = [k for k in dict.fromkeys(keys) if not k.startswith(VALUE_COUNTS)]
        counted = [k for k in dict.fromkeys(keys) if k.startswith(VALUE_COUNTS)]
        added: dict[str, Any] = {}
        try:  # a query that fails here fails again, in GX's own words, over the whole table
            if scalars:
                row = self.execute_query(sa.text(added_sql(totals.rows_sql, scalars))).fetchone()
                added.update(zip(scalars, row, strict=True))
            for key in counted:
                rows = self.execute_query(sa.text(added_counts_sql(totals.rows_sql, key)))
                added[key] = {value: int(count) for value, count in rows.fetchall()}
        except sa.exc.SQLAlchemyError:
            return None
        values: dict[str, Any] = {}
        try:
            for key in scalars:  # as GX returns a bundled metric: JSON-serializable
                kept = as_type_of(totals.kept_value(key), added[key])
                combined = combine(key.split("(")[0], kept, added[key])
                values[key] = convert_to_json_serializable(combined)
            for key in counted:  # as GX's column.value_counts returns them: sorted by value
                ordered = sorted(
                    combine(VALUE_COUNTS, totals.kept_value(key), added[key]).items(),
                    key=lambda pair: pair[0],
                )
                values[key] = pd.Series(
                    data=[n for _, n in ordered],
                    index=pd.Index(data=[v for v, _ in ordered], name="value"),
                    name="count",
                )
        except (TypeError, ValueError):
            return None
        for key, value in values.items():
            totals.record(key, value)
            totals.served.append(key)
        return values

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
