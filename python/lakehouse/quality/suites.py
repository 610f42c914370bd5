"""Suite files in expectations/: GX expectation suites plus what the runner needs to feed them.

A file is GX's suite JSON (name, expectations with type and kwargs) with, per expectation,
``severity`` (blocking or warning) and ``scope``: ``rows`` for expectations checked row by row
on streamed chunks, ``profile`` for expectations on one row of table-level aggregates that
DuckDB computes (``meta.lakehouse.profile``: name -> SQL aggregate).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# map expectations: their counts add up across chunks, so streaming gives the exact answer
ROW_TYPES = {
    "expect_column_values_to_not_be_null",
    "expect_column_values_to_be_null",
    "expect_column_values_to_be_in_set",
    "expect_column_values_to_not_be_in_set",
    "expect_column_values_to_be_between",
    "expect_column_values_to_match_regex",
    "expect_column_values_to_not_match_regex",
    "expect_column_value_lengths_to_be_between",
    "expect_column_pair_values_a_to_be_greater_than_b",
    "expect_column_pair_values_to_be_equal",
    "expect_table_columns_to_match_set",
    "expect_table_columns_to_match_ordered_list",
    "expect_column_to_exist",
}
SEVERITIES = ("blocking", "warning")


class SuiteError(Exception):
    """A suite file that cannot be used; the message names the file and the expectation."""


@dataclass(frozen=True)
class Expectation:
    type: str
    kwargs: dict[str, Any]
    severity: str
    scope: str
    notes: str = ""

    @property
    def column(self) -> str | None:
        return self.kwargs.get("column") or self.kwargs.get("column_A")

    def for_gx(self) -> dict[str, Any]:
        return {"type": self.type, "kwargs": self.kwargs}


@dataclass(frozen=True)
class Suite:
    name: str
    path: Path
    relation: str
    derived_columns: dict[str, str] = field(default_factory=dict)
    profile: dict[str, str] = field(default_factory=dict)
    expectations: tuple[Expectation, ...] = ()

    @property
    def reads_bronze(self) -> str | None:
        """The bronze table this suite validates directly, if it does."""
        if self.relation.startswith("{bronze:"):
            return self.relation[len("{bronze:") : -1]
        return None


def load_suites(folder: Path, tables: list[str] | None = None) -> list[Suite]:
    paths = sorted(folder.glob("*.json"))
    suites = [load_suite(p) for p in paths]
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
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise SuiteError(f"{path}: cannot read suite ({exc})") from exc
    meta = data.get("meta", {}).get("lakehouse", {})
    if "relation" not in meta:
        raise SuiteError(f"{path}: meta.lakehouse.relation is missing")
    expectations = []
    for index, raw in enumerate(data.get("expectations", [])):
        where = f"{path} expectation {index} ({raw.get('type')})"
        severity = raw.get("severity", "blocking")
        scope = raw.get("meta", {}).get("scope", "rows")
        if severity not in SEVERITIES:
            raise SuiteError(f"{where}: severity must be blocking or warning, not {severity!r}")
        if scope == "rows" and raw.get("type") not in ROW_TYPES:
            raise SuiteError(
                f"{where}: only row-wise expectations can run on streamed chunks; compute it "
                "as a profile metric and give it scope 'profile'"
            )
        if scope == "profile":
            column = raw.get("kwargs", {}).get("column")
            if column not in meta.get("profile", {}):
                raise SuiteError(f"{where}: profile metric {column!r} is not defined")
        expectations.append(
            Expectation(
                raw["type"],
                raw.get("kwargs", {}),
                severity,
                scope,
                raw.get("meta", {}).get("notes", ""),
            )
        )
    return Suite(
        name=data["name"],
        path=path,
        relation=meta["relation"],
        derived_columns=meta.get("derived_columns", {}),
        profile=meta.get("profile", {}),
        expectations=tuple(expectations),
    )
