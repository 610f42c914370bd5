"""The data-quality gate: Great Expectations suites (expectations/) run against the lake and
the warehouse; blocking failures stop the pipeline.

Public surface: :func:`validate`, :class:`RunReport`, :class:`ExpectationResult`,
:class:`GateRecord` (the latest verdict kept in a quality folder), :class:`SuiteError`.
Great Expectations and pandas are imported when :func:`validate` runs, not on import.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lakehouse.quality.record import RESULT_FILE, GateRecord, TableVerdict
from lakehouse.quality.suites import SuiteError

if TYPE_CHECKING:
    from lakehouse.quality.runner import ExpectationResult, RunReport

__all__ = [
    "RESULT_FILE",
    "ExpectationResult",
    "GateRecord",
    "RunReport",
    "SuiteError",
    "TableVerdict",
    "validate",
]


def validate(
    warehouse: str | Path,
    lake: str,
    *,
    tables: list[str] | None = None,
    out: Path | None = None,
    as_of: datetime | None = None,
    chunk_rows: int | None = None,
    project: Path | None = None,
) -> tuple[RunReport, dict[str, Any]]:
    """Run the suites; write the reports to ``out`` when given. Returns the report and its
    JSON form (with changes since the previous run in ``out``)."""
    from lakehouse.quality.reports import to_dict, write_reports
    from lakehouse.quality.runner import DEFAULT_CHUNK_ROWS, run_suites
    from lakehouse.quality.suites import load_suites
    from lakehouse.storage import normalize_uri
    from lakehouse.warehouse import connect, project_dir

    project = project or project_dir()
    suites = load_suites(project / "expectations", tables)
    lake = normalize_uri(lake)
    con = connect(warehouse, project, lake=lake)
    try:
        report = run_suites(
            con, suites, lake=lake, as_of=as_of, chunk_rows=chunk_rows or DEFAULT_CHUNK_ROWS
        )
    finally:
        con.close()
    data = write_reports(report, out) if out else to_dict(report)
    return report, data


def __getattr__(name: str) -> Any:
    if name in ("ExpectationResult", "RunReport"):
        from lakehouse.quality import runner

        return getattr(runner, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
