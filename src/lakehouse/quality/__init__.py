"""The data-quality gate: Great Expectations suites (expectations/) run as one GX Checkpoint
inside DuckDB; critical failures stop the pipeline.

Public surface: :func:`validate`, :func:`suggest`, :func:`outline_suites` (what the suites
declare, read without GX), :class:`RunReport`,
:class:`ExpectationResult`, :class:`GateRecord` (the latest verdict kept in a quality
folder), :class:`SuiteError`. Great Expectations is imported when :func:`validate` runs,
not on import. How it works: docs/decisions/0004.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lakehouse.quality.record import BLOCKING, RESULT_FILE, GateRecord, SuiteError, TableVerdict

if TYPE_CHECKING:
    from lakehouse.quality.outline import SuiteOutline
    from lakehouse.quality.parameters import Suggestion
    from lakehouse.quality.runner import ExpectationResult, RunReport

__all__ = [
    "BLOCKING",
    "RESULT_FILE",
    "ExpectationResult",
    "GateRecord",
    "RunReport",
    "SuiteError",
    "TableVerdict",
    "outline_suites",
    "suggest",
    "validate",
]


def validate(
    warehouse: str | Path,
    lake: str,
    *,
    tables: list[str] | None = None,
    out: Path | None = None,
    as_of: datetime | None = None,
    project: Path | None = None,
    env: str | None = None,
    parameters_file: Path | None = None,
    all_rows: bool = False,
) -> tuple[RunReport, dict[str, Any]]:
    """Run the suites; with ``out``, write the reports and GX's Data Docs there and check
    row by row only the rows loaded since the last run that passed (``all_rows``: every
    row). Returns the report and its JSON form (with changes since the previous run)."""
    from lakehouse.quality import parameters
    from lakehouse.quality.reports import to_dict, write_reports
    from lakehouse.quality.runner import DATA_DOCS, run_suites
    from lakehouse.quality.suites import load_suites
    from lakehouse.storage import normalize_uri
    from lakehouse.warehouse import project_dir

    project = project or project_dir()
    folder = project / "expectations"
    suites = load_suites(folder, tables)
    every = suites if not tables else load_suites(folder, None)
    values = parameters.load(
        folder, env, parameters_file, known={n for s in every for n in s.parameter_names}
    )
    missing = sorted({n for s in suites for n in s.parameter_names} - {*values.values, "as_of"})
    if missing:
        raise SuiteError(
            f"suite parameter(s) {', '.join(missing)} have no value in "
            f"{folder / parameters.FILE} (section default"
            f"{f' or {values.env}' if values.env else ''})"
        )
    previous = _previous(out) if out else None
    report = run_suites(
        Path(warehouse),
        suites,
        lake=normalize_uri(lake),
        project=project,
        parameters=values,
        as_of=as_of,
        previous=previous,
        all_rows=all_rows,
        data_docs=out / DATA_DOCS if out else None,
    )
    data = write_reports(report, out) if out else to_dict(report)
    return report, data


def _previous(out: Path) -> GateRecord | None:
    try:
        return GateRecord.read(out)
    except ValueError:
        return None  # unreadable: this run checks every row and replaces it


def outline_suites(project: Path | None = None, manifest: Path | None = None) -> list[SuiteOutline]:
    """The suites of ``<project>/expectations``: each one's relation (a dbt model or
    ``bronze:<table>``) and its expectations' names and severities, read without importing
    Great Expectations; with the schema checks derived from the dbt contracts of
    ``manifest`` (default: the project's dbt artifacts)."""
    from lakehouse.quality.outline import outline_suites as outline
    from lakehouse.warehouse import project_dir

    return outline((project or project_dir()) / "expectations", manifest)


def suggest(
    quality_dir: Path,
    *,
    project: Path | None = None,
    env: str | None = None,
    skipped: list[str] | None = None,
) -> tuple[list[Suggestion], str]:
    """Bounds proposed from the runs kept in ``quality_dir``, and the same as a YAML section
    of expectations/parameters.yml for a person to review and paste. Kept runs that cannot
    be read are left out and named in ``skipped`` (file: cause)."""
    from lakehouse.quality import parameters
    from lakehouse.warehouse import project_dir

    project = project or project_dir()
    values = parameters.load(project / "expectations", env)
    found = parameters.suggest(Path(quality_dir), values, skipped=skipped)
    return found, parameters.as_yaml(found, values.env or "suggested")


def __getattr__(name: str) -> Any:
    if name in ("ExpectationResult", "RunReport"):
        from lakehouse.quality import runner

        return getattr(runner, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
