"""The one module that talks to Great Expectations.

Only GX's public API is used: an ephemeral context, a pandas datasource fed one DataFrame
at a time, ``ExpectationSuite`` built from the suite files, and ``Batch.validate``. DuckDB is
not a GX SQL dialect (and GX reads SQL results after closing connections), so DuckDB streams
bounded chunks and computes table-level aggregates itself; see docs/decisions/0004.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

import great_expectations as gx
from great_expectations.data_context.types.base import ProgressBarsConfig
from great_expectations.expectations.expectation_configuration import (
    ExpectationConfiguration,
)

EXAMPLES = 5


@dataclass
class Outcome:
    """One expectation's result on one DataFrame."""

    success: bool
    element_count: int = 0
    unexpected_count: int = 0
    missing_count: int = 0
    observed_value: Any = None
    examples: list[Any] = field(default_factory=list)
    error: str | None = None


class GXEngine:
    """Validates pandas DataFrames against lists of expectation configurations."""

    def __init__(self) -> None:
        self._context = gx.get_context(mode="ephemeral")
        self._context.variables.progress_bars = ProgressBarsConfig(
            globally=False, metric_calculations=False
        )
        asset = self._context.data_sources.add_pandas("lakehouse").add_dataframe_asset("frame")
        self._batches = asset.add_batch_definition_whole_dataframe("whole")

    def validate(self, frame: pd.DataFrame, expectations: list[dict[str, Any]]) -> list[Outcome]:
        """Outcomes in the order of ``expectations`` (dicts with type, kwargs, severity)."""
        if not expectations:
            return []
        configs = [
            ExpectationConfiguration(type=e["type"], kwargs=e["kwargs"], meta={"index": i})
            for i, e in enumerate(expectations)
        ]
        suite = gx.ExpectationSuite(name="chunk", expectations=[c.to_domain_obj() for c in configs])
        batch = self._batches.get_batch(batch_parameters={"dataframe": frame})
        run = batch.validate(
            suite, result_format={"result_format": "SUMMARY", "partial_unexpected_count": EXAMPLES}
        )
        # GX returns results in its own order and normalises kwargs: match on our index
        by_index = {r.expectation_config.meta["index"]: r for r in run.results}
        return [_outcome(by_index[i]) for i in range(len(configs))]


def _outcome(result: Any) -> Outcome:
    data = result.result or {}
    error = None
    info = result.exception_info or {}
    if isinstance(info, dict):
        infos = [info] if "raised_exception" in info else list(info.values())
        raised = [i for i in infos if isinstance(i, dict) and i.get("raised_exception")]
        if raised:
            error = str(raised[0].get("exception_message", "could not evaluate"))
    if not data and not result.success and error is None:
        error = "could not evaluate (is the column there?)"
    return Outcome(
        success=bool(result.success),
        element_count=int(data.get("element_count") or 0),
        unexpected_count=int(data.get("unexpected_count") or 0),
        missing_count=int(data.get("missing_count") or 0),
        observed_value=_plain(data.get("observed_value")),
        examples=[_plain(v) for v in (data.get("partial_unexpected_list") or [])[:EXAMPLES]],
        error=error,
    )


def _plain(value: Any) -> Any:
    """JSON-friendly: numpy scalars and tuples to Python values."""
    if hasattr(value, "item") and not isinstance(value, list | tuple | dict):
        try:
            return value.item()
        except (ValueError, AttributeError):
            return str(value)
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, float) and value != value:  # NaN
        return None
    return value
