"""The gate's verdict as the exporter reads it: the one reader of ``result.json``, whose one
writer is :func:`lakehouse.quality.reports.write_reports`."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

RESULT_FILE = "result.json"
BLOCKING = "critical"  # GX's severity that blocks (suites.BLOCKING; record.py stays GX-free)


@dataclass(frozen=True)
class TableVerdict:
    table: str
    blocking_failures: list[str]  # names of the critical expectations that failed
    versions: dict[str, Any]  # what was validated: a Delta version or a dbt invocation
    checked_through: str | None = None  # new-rows high-water mark the table passed at

    @property
    def passed(self) -> bool:
        return not self.blocking_failures

    @property
    def dbt_invocation_id(self) -> str | None:
        return self.versions.get("dbt_invocation_id")


@dataclass(frozen=True)
class GateRecord:
    """The latest gate run kept in a quality folder."""

    run_id: str
    as_of: str
    tables: dict[str, TableVerdict]

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
                    _timestamp(t.get("checked_through")),
                )
                for t in data["tables"]
            },
        )


def _timestamp(value: Any) -> str | None:
    """The high-water mark as an ISO timestamp, checked here: the gate puts it in SQL."""
    if value is None:
        return None
    return datetime.fromisoformat(value).isoformat()  # ValueError/TypeError: unreadable
