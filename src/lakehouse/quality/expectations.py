"""Two expectations GX 1.x lacks, written on its public extension point (subclasses of
:class:`~great_expectations.expectations.expectation.ColumnAggregateExpectation`; defining the
class registers its snake_case name, so suite files use them like GX's own). Both compute
nothing themselves: they read metrics GX already computes in the database.

- ``expect_column_max_to_be_recent``: the newest value of a timestamp column is at most
  ``max_age_hours`` older than ``as_of``. The gate sets ``as_of`` to its run's (``--as-of``,
  default now); a suite file leaves it out, so in a plain GX session it defaults to the time
  the expectation is checked. Observed value: the age in hours.
- ``expect_column_value_share_to_be_between``: the share of rows whose ``column`` equals
  ``value`` (a split, a label, an event type) is within [min_value, max_value].
  Observed value: the share.

Import this module (or :mod:`lakehouse.quality.plugins`) before loading a suite that uses
them: GX drops an expectation of a type it does not know with only a logged traceback.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

import lakehouse.quality.gxsetup  # noqa: F401  (first: GX without pyspark, analytics off)

from great_expectations.core.suite_parameters import SuiteParameterDict
from great_expectations.expectations.expectation import ColumnAggregateExpectation


class ExpectColumnMaxToBeRecent(ColumnAggregateExpectation):
    """Expect the newest value of a timestamp column to be at most ``max_age_hours`` before
    ``as_of`` (freshness; default: when the expectation is checked)."""

    max_age_hours: float | SuiteParameterDict
    as_of: datetime | str | SuiteParameterDict | None = None

    metric_dependencies: ClassVar[tuple[str, ...]] = ("column.max",)
    success_keys: ClassVar[tuple[str, ...]] = ("max_age_hours", "as_of")

    def _validate(
        self,
        metrics: dict[str, Any],
        runtime_configuration: dict | None = None,
        execution_engine: Any = None,
    ) -> dict[str, Any]:
        newest = metrics["column.max"]
        if newest is None:
            return {"success": False, "result": {"observed_value": None}}
        as_of = self.as_of or datetime.now(UTC)  # freshness is what a clock is for
        if isinstance(as_of, str):
            as_of = datetime.fromisoformat(as_of)
        as_of = as_of if as_of.tzinfo else as_of.replace(tzinfo=UTC)
        if isinstance(newest, str):
            newest = datetime.fromisoformat(newest)
        newest = newest if newest.tzinfo else newest.replace(tzinfo=UTC)
        age = (as_of - newest).total_seconds() / 3600
        return {
            "success": age <= float(self.max_age_hours),  # type: ignore[arg-type]
            "result": {"observed_value": round(age, 2), "details": {"newest": str(newest)}},
        }


class ExpectColumnValueShareToBeBetween(ColumnAggregateExpectation):
    """Expect the share of rows where ``column`` equals ``value`` to be within
    [``min_value``, ``max_value``] (either bound may be left out)."""

    value: Any
    min_value: float | SuiteParameterDict | None = None
    max_value: float | SuiteParameterDict | None = None

    metric_dependencies: ClassVar[tuple[str, ...]] = ("column.value_counts", "table.row_count")
    success_keys: ClassVar[tuple[str, ...]] = ("value", "min_value", "max_value")

    def _validate(
        self,
        metrics: dict[str, Any],
        runtime_configuration: dict | None = None,
        execution_engine: Any = None,
    ) -> dict[str, Any]:
        counts = metrics["column.value_counts"]
        rows = metrics["table.row_count"]
        matching = sum(int(n) for v, n in counts.items() if v == self.value)
        share = matching / rows if rows else None
        low, high = self.min_value, self.max_value
        success = share is not None and (low is None or share >= float(low))  # type: ignore[arg-type]
        success = success and (high is None or share <= float(high))  # type: ignore[arg-type,operator]
        return {
            "success": bool(success),
            "result": {"observed_value": share, "details": {"rows": rows, "matching": matching}},
        }
