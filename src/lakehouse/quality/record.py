"""The gate's verdict as the exporter reads it: the one reader of ``result.json``, whose one
writer is :func:`lakehouse.quality.reports.write_reports`."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RESULT_FILE = "result.json"


class SuiteError(Exception):
    """A suite or parameters file that cannot be used; the message names the file."""


# the gate's result standing for a table's dbt data tests (no suite states it: dbt's YAML)
DBT_TESTS = "dbt_tests_pass"
BLOCKING = "critical"  # GX's severity that blocks (suites.BLOCKING; record.py stays GX-free)


@dataclass(frozen=True)
class TableVerdict:
    table: str
    blocking_failures: list[str]  # names of the critical expectations that failed
    versions: dict[str, Any]  # what was validated: a Delta version or a dbt invocation
    # the last passing run's cursor: {"delta_version": N} for a bronze table, {"build_seq":
    # N} for a model, with "fingerprint" ("rows:hash") for a model that can be exported, and
    # "totals" (whole-table metrics at that version, lakehouse.quality.totals) for bronze
    cursor: dict[str, Any] | None = None

    @property
    def passed(self) -> bool:
        return not self.blocking_failures

    @property
    def dbt_invocation_id(self) -> str | None:
        return self.versions.get("dbt_invocation_id")

    @property
    def fingerprint(self) -> str | None:
        """The content of the model the last passing run validated."""
        return (self.cursor or {}).get("fingerprint")


@dataclass(frozen=True)
class GateRecord:
    """The latest gate run kept in a quality folder."""

    run_id: str
    as_of: str
    tables: dict[str, TableVerdict]

    @property
    def passed(self) -> bool:
        """No blocking failure in any table of the run."""
        return all(t.passed for t in self.tables.values())

    @classmethod
    def read(cls, quality_dir: Path) -> GateRecord | None:
        """The run in ``quality_dir/result.json``, or None when the gate never ran there."""
        path = Path(quality_dir) / RESULT_FILE
        if not path.exists():
            return None
        try:
            data = json.loads(path.read_text())
            return cls._from(data)
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise ValueError(
                f"the gate result {path} cannot be read ({type(error).__name__}: {error}); "
                "run `lakehouse validate` again"
            ) from None

    @classmethod
    def _from(cls, data: dict[str, Any]) -> GateRecord:
        return cls(
            run_id=data["run_id"],
            as_of=data["as_of"],
            tables={
                t["table"]: TableVerdict(
                    t["table"],
                    [
                        r["name"]
                        for r in t["results"]
                        if not r["success"] and r["severity"] == BLOCKING
                    ],
                    t.get("versions") or {},
                    _cursor(t.get("cursor")),
                )
                for t in data["tables"]
            },
        )


_FINGERPRINT = re.compile(r"\d{1,20}:\d{1,45}")


def _cursor(value: Any) -> dict[str, Any] | None:
    """A cursor as the gate wrote it, checked here: the gate puts its numbers in SQL."""
    if value is None:
        return None
    if not isinstance(value, dict) or set(value) - {
        "delta_version",
        "build_seq",
        "fingerprint",
        "totals",
    }:
        raise TypeError(f"cursor {value!r} is not the gate's")
    cursor: dict[str, Any] = {}
    for key in ("delta_version", "build_seq"):
        number = value.get(key)
        if number is None:
            continue
        if type(number) is not int or not 0 <= number < 2**63:
            raise TypeError(f"cursor {key} {number!r} is not a whole number")
        cursor[key] = number
    fingerprint = value.get("fingerprint")
    if fingerprint is not None:
        if not isinstance(fingerprint, str) or not _FINGERPRINT.fullmatch(fingerprint):
            raise TypeError(f"cursor fingerprint {fingerprint!r} is not rows:hash")
        cursor["fingerprint"] = fingerprint
    totals = value.get("totals")
    if totals is not None:
        if (
            not isinstance(totals, dict)
            or set(totals) != {"table_id", "values"}
            or not isinstance(totals["table_id"], str)
            or not isinstance(totals["values"], dict)
        ):
            raise TypeError(f"cursor totals {totals!r} are not the gate's")
        cursor["totals"] = totals
    return cursor
