"""What the suite files declare, read without importing Great Expectations: each suite's
relation and its expectations' names and severities. An orchestrator declares the gate's
checks from this before any run (``lakehouse.orchestrate``); :mod:`suites` builds the GX
objects from the same files and names expectations with :func:`expectation_name`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lakehouse.quality.record import BLOCKING, SuiteError

BRONZE_PREFIX = "bronze:"


def expectation_name(kind: str, kwargs: dict[str, Any], meta: dict[str, Any]) -> str:
    """How reports name an expectation: its ``meta.name``, else its type and columns."""
    columns = ",".join(str(kwargs[k]) for k in ("column", "column_A", "column_B") if k in kwargs)
    return str(meta.get("name") or (f"{kind}({columns})" if columns else kind))


@dataclass(frozen=True)
class ExpectationOutline:
    name: str
    type: str
    severity: str  # critical blocks; warning and info are reported
    notes: str


@dataclass(frozen=True)
class SuiteOutline:
    name: str  # the suite's name: the table's name in the gate's reports
    relation: str  # a dbt model, or bronze:<table>
    expectations: tuple[ExpectationOutline, ...]

    @property
    def bronze_table(self) -> str | None:
        """The bronze table this suite validates, if it validates one."""
        if self.relation.startswith(BRONZE_PREFIX):
            return self.relation[len(BRONZE_PREFIX) :]
        return None


def outline_suites(folder: Path, manifest: Path | None = None) -> list[SuiteOutline]:
    """Every suite file of ``folder`` (``*.json``), in name order (``manifest``: see
    :func:`read_suite_file`)."""
    return [outline_suite(path, manifest) for path in sorted(Path(folder).glob("*.json"))]


def read_suite_file(path: Path, manifest: Path | None = None) -> tuple[dict[str, Any], str]:
    """A suite file's JSON and the relation it validates, with the schema checks derived
    from the relation's dbt contract first (from ``manifest``, dbt's manifest.json; default:
    the artifacts of the project the suite belongs to); a :class:`SuiteError` naming the
    file when it is not a suite."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise SuiteError(f"{path}: cannot read suite ({exc})") from exc
    if not isinstance(data, dict) or "name" not in data:
        raise SuiteError(f"{path}: not an expectation suite (no name)")
    relation = (data.get("meta") or {}).get("lakehouse", {}).get("relation")
    if not relation:
        raise SuiteError(f"{path}: meta.lakehouse.relation is missing")
    derived = contract_expectations(
        _manifest_of(Path(path), manifest), str(relation), _project_of(Path(path))
    )
    data["expectations"] = derived + list(data.get("expectations") or [])
    return data, str(relation)


def contract_expectations(
    manifest: Path | None, relation: str, project: Path | None = None
) -> list[dict[str, Any]]:
    """The schema checks of a model whose dbt YAML enforces a contract, derived from dbt's
    manifest (its columns in order, each with its data type), never restated in a suite:
    a column an analyst adds to the model and its YAML is checked with no other edit. dbt
    enforces the contract when it builds the table; the gate checks the table it
    fingerprints and the export ships (which also catches a change made outside dbt)."""
    if relation.startswith(BRONZE_PREFIX):
        return bronze_expectations(relation[len(BRONZE_PREFIX) :], project)
    if manifest is None:
        return []
    from lakehouse.warehouse.dbt_build import model_contract

    columns = model_contract(manifest, relation)
    if not columns:
        return []
    listed = ", ".join(f"'{name} {kind.upper()}'" for name, kind in columns)
    query = (
        "with actual as (select column_name || ' ' || column_type as column_type from "
        "(describe select * from {batch})), expected as (select unnest(["
        + listed
        + "]) as column_type) select 'unexpected' as problem, column_type from (select "
        "column_type from actual except select column_type from expected) union all select "
        "'missing', column_type from (select column_type from expected except select "
        "column_type from actual)"
    )
    source = f"the dbt contract of {relation} (its YAML, via dbt's manifest)"
    return [
        {
            "type": "expect_table_columns_to_match_ordered_list",
            "kwargs": {"column_list": [name for name, _ in columns]},
            "severity": BLOCKING,
            "meta": {"notes": f"columns, in order, of {source}"},
        },
        {
            "type": "unexpected_rows_expectation",
            "kwargs": {
                "unexpected_rows_query": query,
                "description": "columns whose name or type differs from the contract",
            },
            "severity": BLOCKING,
            "meta": {"notes": f"column types of {source}", "name": "column_types"},
        },
    ]


def bronze_expectations(table: str, project: Path | None) -> list[dict[str, Any]]:
    """The schema check of a bronze table, derived from its declaration in the dbt project's
    sources YAML (:mod:`lakehouse.contracts`) and ingest's own columns: every declared column
    is there; columns schema evolution added (fields the app's logs gained) may follow. Its
    rules (not null, accepted values, references) are the source's dbt tests."""
    from lakehouse.contracts import data_tables
    from lakehouse.ingest.schemas import INGESTION_COLUMNS, source_for_table

    if table not in data_tables(project):
        return []  # not a landed table (the ingest log): nothing declared to check
    spec = source_for_table(table, project)
    columns = [*spec.column_names, *(f.name for f in INGESTION_COLUMNS)]
    return [
        {
            "type": "expect_table_columns_to_match_set",
            "kwargs": {"column_set": columns, "exact_match": False},
            "severity": BLOCKING,
            "meta": {
                "notes": f"every column of the bronze declaration of {table} (its sources "
                "YAML) and ingest's; columns schema evolution added may follow"
            },
        }
    ]


def _project_of(suite: Path) -> Path | None:
    """The dbt project a suite file belongs to: suites live in ``<project>/expectations``."""
    project = suite.resolve().parent.parent
    return project if (project / "dbt_project.yml").exists() else None


def _manifest_of(suite: Path, manifest: Path | None) -> Path | None:
    """``manifest``, else the dbt manifest of the project the suite belongs to; None outside
    a dbt project."""
    if manifest is not None:
        return manifest
    project = _project_of(suite)
    if project is None:
        return None
    from lakehouse.warehouse.dbt_build import dbt_artifacts

    return dbt_artifacts(project) / "manifest.json"


def outline_suite(path: Path, manifest: Path | None = None) -> SuiteOutline:
    data, relation = read_suite_file(path, manifest)
    expectations = []
    for raw in data.get("expectations", []):
        kind, meta = str(raw.get("type")), dict(raw.get("meta") or {})
        expectations.append(
            ExpectationOutline(
                name=expectation_name(kind, dict(raw.get("kwargs") or {}), meta),
                type=kind,
                severity=str(raw.get("severity", BLOCKING)),
                notes=str(meta.get("notes", "")),
            )
        )
    return SuiteOutline(str(data["name"]), relation, tuple(expectations))
