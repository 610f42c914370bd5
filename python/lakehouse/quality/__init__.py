"""The data-quality gate: Great Expectations suites (expectations/) run against the lake and
the warehouse; blocking failures stop the pipeline.

Public surface: :func:`validate`, :class:`RunReport`, :class:`SuiteError`.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from lakehouse.quality.reports import to_dict, write_reports
from lakehouse.quality.runner import DEFAULT_CHUNK_ROWS, ExpectationResult, RunReport, run_suites
from lakehouse.quality.suites import SuiteError, load_suites
from lakehouse.storage import normalize_uri
from lakehouse.warehouse import connect, project_dir

__all__ = ["ExpectationResult", "RunReport", "SuiteError", "to_dict", "validate"]


def validate(
    warehouse: str | Path,
    lake: str,
    *,
    tables: list[str] | None = None,
    out: Path | None = None,
    as_of: datetime | None = None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    project: Path | None = None,
) -> tuple[RunReport, dict]:
    """Run the suites; write the reports to ``out`` when given. Returns the report and its
    JSON form (with changes since the previous run in ``out``)."""
    project = project or project_dir()
    suites = load_suites(project / "expectations", tables)
    lake = normalize_uri(lake)
    con = connect(warehouse, project, lake=lake)
    try:
        report = run_suites(con, suites, lake=lake, as_of=as_of, chunk_rows=chunk_rows)
    finally:
        con.close()
    data = write_reports(report, out) if out else to_dict(report)
    return report, data
