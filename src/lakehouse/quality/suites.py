"""Suite files in expectations/: Great Expectations expectation suites, in GX's own JSON.

A file is what ``gx.ExpectationSuite(**json.load(file))`` takes: ``name``, ``expectations``
(each ``type``, ``kwargs``, GX's ``severity``: ``critical`` blocks, ``warning`` and ``info``
are reported), ``notes`` and ``meta``. The project's extras live only under ``meta``:

- ``meta.lakehouse.relation``: what the suite validates, a dbt model (``fct_events``) or a
  bronze table (``bronze:events``, read at the Delta version the build pinned);
- an expectation's ``meta.name`` (how reports name it), ``meta.notes`` (why it exists) and
  ``meta.rows``: ``new`` to check only the rows loaded since the last passing run, ``all``
  for the whole table. Without it, row-by-row (map) expectations check new rows, and
  everything else (row counts, uniqueness, means, shares, freshness, schema) the whole table.

Each expectation is built on its own, so one with bad kwargs becomes that expectation's
error (:attr:`Expectation.error`) and the rest of the suite still runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import lakehouse.quality.gxsetup

import great_expectations as gx
from great_expectations.expectations.expectation import (
    ColumnMapExpectation,
    ColumnPairMapExpectation,
    MulticolumnMapExpectation,
)
from great_expectations.expectations.expectation import (
    Expectation as GXExpectation,
)
from great_expectations.expectations.expectation_configuration import ExpectationConfiguration
from great_expectations.expectations.metadata_types import FailureSeverity

import lakehouse.quality.expectations  # noqa: F401  (registers the project's two expectations)
from lakehouse.quality.outline import BRONZE_PREFIX, expectation_name, read_suite_file
from lakehouse.quality.record import BLOCKING, SuiteError

SEVERITIES = tuple(s.value for s in FailureSeverity)  # critical, warning, info
assert FailureSeverity(BLOCKING) is FailureSeverity.CRITICAL
# map expectations whose answer needs every row, not only the new ones
WHOLE_TABLE_MAP_TYPES = {
    "expect_column_values_to_be_unique",
    "expect_compound_columns_to_be_unique",
}


@dataclass(frozen=True)
class Expectation:
    """One expectation of a suite file: GX's object, or why it could not be built."""

    index: int
    type: str
    kwargs: dict[str, Any]
    severity: str
    rows: str  # "new" or "all"
    name: str
    notes: str
    gx: GXExpectation | None
    error: str | None = None

    @property
    def parameters(self) -> dict[str, str]:
        """kwarg -> suite parameter name, for the kwargs given as ``{"$PARAMETER": name}``."""
        return {
            k: v["$PARAMETER"]
            for k, v in self.kwargs.items()
            if isinstance(v, dict) and "$PARAMETER" in v
        }


@dataclass(frozen=True)
class Suite:
    name: str
    path: Path
    relation: str
    expectations: tuple[Expectation, ...]
    notes: str = ""

    @property
    def reads_bronze(self) -> str | None:
        """The bronze table this suite validates directly, if it does."""
        if self.relation.startswith(BRONZE_PREFIX):
            return self.relation[len(BRONZE_PREFIX) :]
        return None

    @property
    def parameter_names(self) -> set[str]:
        return {n for e in self.expectations for n in e.parameters.values()}


def load_suites(folder: Path, tables: list[str] | None = None) -> list[Suite]:
    suites = [load_suite(p) for p in sorted(folder.glob("*.json"))]
    if tables:
        unknown = sorted(set(tables) - {s.name for s in suites})
        if unknown:
            raise SuiteError(
                f"no suite for {', '.join(unknown)} in {folder}; "
                f"suites: {', '.join(s.name for s in suites)}"
            )
        suites = [s for s in suites if s.name in tables]
    return suites


def load_suite(path: Path) -> Suite:
    data, relation = read_suite_file(path)
    expectations = [
        _expectation(path, index, raw) for index, raw in enumerate(data.get("expectations", []))
    ]
    return Suite(data["name"], path, relation, tuple(expectations), data.get("notes") or "")


def _expectation(path: Path, index: int, raw: dict[str, Any]) -> Expectation:
    kind = str(raw.get("type"))
    kwargs = dict(raw.get("kwargs") or {})
    meta = dict(raw.get("meta") or {})
    severity = raw.get("severity", BLOCKING)
    where = f"{path.name} expectation {index} ({kind})"
    if severity not in SEVERITIES:
        raise SuiteError(
            f"{where}: severity must be one of {', '.join(SEVERITIES)}, not {severity!r}"
        )
    rows = meta.get("rows")
    if rows not in (None, "new", "all"):
        raise SuiteError(f"{where}: meta.rows must be 'new' or 'all', not {rows!r}")
    name = expectation_name(kind, kwargs, meta)
    built: GXExpectation | None = None
    error = None
    try:
        built = ExpectationConfiguration(
            type=kind, kwargs=kwargs, meta=meta, severity=severity
        ).to_domain_obj()
    except Exception as exc:  # GX raises pydantic and its own errors for bad kwargs
        error = f"cannot build {name}: {_first_line(exc)}"
    if rows is None:
        rows = "new" if built is not None and _row_by_row(built) else "all"
    return Expectation(
        index, kind, kwargs, severity, rows, name, str(meta.get("notes", "")), built, error
    )


def _row_by_row(expectation: GXExpectation) -> bool:
    return isinstance(
        expectation, ColumnMapExpectation | ColumnPairMapExpectation | MulticolumnMapExpectation
    ) and (expectation.expectation_type not in WHOLE_TABLE_MAP_TYPES)


def gx_suite(
    name: str, expectations: list[Expectation], as_of: datetime | None = None
) -> gx.ExpectationSuite:
    """A GX suite of the expectations that could be built, each that takes an ``as_of`` and
    was given none (freshness) checked as of ``as_of``."""
    built = [e.gx for e in expectations if e.gx]
    if as_of is not None:
        built = [_as_of(x, as_of) for x in built]
    return gx.ExpectationSuite(name=name, expectations=built)


def _as_of(expectation: GXExpectation, as_of: datetime) -> GXExpectation:
    if "as_of" not in type(expectation).__fields__ or expectation.as_of is not None:  # type: ignore[attr-defined]
        return expectation
    return expectation.copy(update={"as_of": as_of.isoformat()})


def _first_line(exc: Exception) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:300]}"
