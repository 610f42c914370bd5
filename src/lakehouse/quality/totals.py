"""Whole-table metrics of an append-only table kept as running totals (issue 30).

A bronze table only grows by ingest appends, so a whole-table metric that is a sum, a count,
a max or a min of its rows is exactly that of an earlier version combined with that of the
rows appended since: the row count, a column's non-null count, max and min, and its value
counts. The gate keeps these per table in its cursor (``result.json``) at the Delta version
it validated, and the next run computes them over the appended rows only, instead of reading
a history that grows every night. Everything else (a mean, a median, a row condition) and
any doubt (no totals kept, a commit that is not an ingest append, a table replaced, the rows
appended not matching what Delta's commits say they added) reads the whole table, as GX does.

This module is GX-free: the keys and the JSON form of values, and how two parts combine.
:class:`lakehouse.quality.gx_duckdb.DuckDBExecutionEngine` serves the metrics with them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from lakehouse.sql import identifier

ROW_COUNT = "table.row_count"
# the metrics whose whole-table value follows from two parts of the table, and how
SUMMED = (ROW_COUNT, "column.non_null_count")
EXTREMES = {"column.max": max, "column.min": min}
VALUE_COUNTS = "column.value_counts"
DECOMPOSABLE = frozenset((*SUMMED, *EXTREMES, VALUE_COUNTS))
# value counts kept in result.json at most this many values (an event type, a split, a
# country); a column of ids would grow the record with the table: read whole instead
MAX_KEPT_VALUES = 1_000
# domain kwargs a whole-table metric may carry; any other set (a row condition) reads rows
_WHOLE_DOMAIN = frozenset(("batch_id", "column"))


class NotKept(ValueError):
    """A value the totals do not keep (a type with no exact JSON form); read it whole."""


def metric_key(name: str, domain: dict[str, Any], value_kwargs: dict[str, Any]) -> str | None:
    """The metric's name in the totals, or None when it cannot be kept (not decomposable, a
    row condition, value kwargs other than the value counts' ordering)."""
    if name not in DECOMPOSABLE:
        return None
    if {k for k, v in domain.items() if v not in (None, "", [], {})} - _WHOLE_DOMAIN:
        return None
    if name == VALUE_COUNTS:  # kept and served in GX's default order, by value
        if value_kwargs.get("collate") is not None or value_kwargs.get("sort") not in (
            None,
            "value",
        ):
            return None
    elif any(v is not None for v in value_kwargs.values()):
        return None
    column = domain.get("column")
    if (column is None) != (name == ROW_COUNT):
        return None
    return name if column is None else f"{name}({column})"


def encode(value: Any) -> Any:
    """A scalar's exact JSON form; raises NotKept for anything else."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        raise NotKept(value)
    if isinstance(value, datetime):
        return {"timestamp": value.isoformat()}
    if isinstance(value, date):
        return {"date": value.isoformat()}
    raise NotKept(type(value).__name__)


def decode(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"timestamp"}:
            return datetime.fromisoformat(value["timestamp"])
        if set(value) == {"date"}:
            return date.fromisoformat(value["date"])
        raise NotKept(value)
    return value


def combine(name: str, kept: Any, added: Any) -> Any:
    """The whole table's value from the kept part's and the appended rows' (decoded)."""
    if name in SUMMED:
        return int(kept) + int(added)
    if name in EXTREMES:
        present = [v for v in (kept, added) if v is not None]
        return EXTREMES[name](present) if present else None
    counts = dict(kept)
    for value, count in added.items():
        counts[value] = counts.get(value, 0) + int(count)
    return counts


def as_type_of(kept: Any, added: Any) -> Any:
    """A kept max or min as the appended rows' value is typed: GX returns a bundled metric
    JSON-serializable (a timestamp as ISO text), DuckDB the value itself."""
    if isinstance(kept, str) and isinstance(added, datetime):
        return datetime.fromisoformat(kept)
    if isinstance(kept, str) and isinstance(added, date):
        return date.fromisoformat(kept)
    return kept


def added_sql(rows_sql: str, keys: list[str]) -> str:
    """One query over the appended rows for the scalar metrics among ``keys``."""
    columns = []
    for key in keys:
        name, column = _split(key)
        if name == ROW_COUNT:
            columns.append("count(*)")
        elif name == "column.non_null_count":
            columns.append(f"count({identifier(column)})")
        else:
            columns.append(f"{name.split('.')[1]}({identifier(column)})")
    return f"select {', '.join(columns)} from ({rows_sql}) as appended"


def added_counts_sql(rows_sql: str, key: str) -> str:
    """The value counts of the appended rows, as GX counts them (nulls left out)."""
    column = identifier(_split(key)[1])
    return (
        f"select {column}, count({column}) from ({rows_sql}) as appended"
        f" where {column} is not null group by {column}"
    )


def _split(key: str) -> tuple[str, str]:
    name, _, rest = key.partition("(")
    return name, rest[:-1]


@dataclass
class RunningTotals:
    """One table's totals: those kept at an earlier version, and the rows appended since."""

    rows_sql: str  # selects the rows appended since the kept version
    kept: dict[str, Any] = field(default_factory=dict)  # key -> JSON form, as result.json has it
    now: dict[str, Any] = field(default_factory=dict)  # key -> JSON form at this version
    served: list[str] = field(default_factory=list)  # keys computed from the kept totals

    def knows(self, key: str) -> bool:
        return key in self.kept

    def record(self, key: str, value: Any) -> None:
        """Keep a value GX computed over the whole table (skipped when it has no JSON form)."""
        try:
            if key.startswith(VALUE_COUNTS):
                if len(value) > MAX_KEPT_VALUES:
                    raise NotKept(f"{len(value)} values")
                self.now[key] = [[encode(v), int(n)] for v, n in value.items()]
            else:
                self.now[key] = encode(value)
        except (NotKept, TypeError, ValueError):
            self.now.pop(key, None)

    def kept_value(self, key: str) -> Any:
        if key.startswith(VALUE_COUNTS):
            return {decode(v): int(n) for v, n in self.kept[key]}
        return decode(self.kept[key])
