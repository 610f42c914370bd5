"""The bronze contract, read from where its users edit it: one declaration per bronze source in
the dbt project's sources YAML (``models/staging/*/_*__sources.yml``), from which dbt's sources,
their tests and freshness, ingest's validation, and the gate's bronze schema checks all come.
The event types come from the seed dbt loads (``seeds/event_types.csv``), the embedding size
from the embedding column's declared type (``float[N]``).

A column's ``data_type`` is its bronze type; a ``not_null`` test makes it required; a
``relationships`` test to a seed gives its accepted values, to another source its reference;
``meta.max_length`` bounds text. A table's ``meta.lakehouse`` names its landing folder, file
formats, key and ingest order. Reading them needs ``yaml``; the constants need nothing.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from lakehouse.layout import project_dir

# ingest's bookkeeping: one row per landing file and run; a batch counts once logged here
INGEST_LOG = "_ingest_log"
# rows ingest refused, with file, line, raw text and reason
QUARANTINE = "_quarantine"
# the status of a landing file whose rows are all in bronze (_ingest_log.status), the one
# spelling every layer compares with
INGESTED = "ingested"

# a bronze column whose name starts so is one ingest adds to every row (_source_file, ...,
# lakehouse.ingest.schemas.INGESTION_COLUMNS): the YAML documents it, a landing file never
# holds it
LINEAGE_PREFIX = "_"

# a relationships test's `to`: ref('seed') or source('name', 'table')
_NAME = r"""\s*['"]([\w.-]+)['"]\s*"""
_REF = re.compile(rf"^\s*(ref|source)\({_NAME}(?:,{_NAME})?\)\s*$")
_VECTOR = re.compile(r"float\[(\d+)\]")  # a fixed number of floats


class ContractError(Exception):
    """A bronze declaration that cannot be read; the message names the file and the field."""


@dataclass(frozen=True)
class DeclaredColumn:
    name: str
    data_type: str  # as dbt's YAML states it: bigint, varchar, boolean, ..., float[N]
    required: bool  # a not_null test
    max_length: int | None = None
    accepted_values: tuple[str, ...] | None = None  # a relationships test to a seed
    references: str | None = None  # "<table>.<column>": a relationships test to a source


@dataclass(frozen=True)
class DeclaredSource:
    table: str  # the bronze table (the source's identifier)
    landing_dir: str
    formats: tuple[str, ...]
    key: tuple[str, ...]
    order: int
    columns: tuple[DeclaredColumn, ...]
    path: Path  # the YAML that declares it


def _source_files(project: Path) -> list[Path]:
    return sorted((project / "models").rglob("_*__sources.yml"))


@cache
def _declarations(project: Path) -> tuple[DeclaredSource, ...]:
    import yaml  # only where a declaration is read: the constants above need nothing

    declared = []
    for path in _source_files(project):
        try:
            document = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ContractError(f"{path}: cannot read the bronze declaration ({exc})") from exc
        for source in document.get("sources") or []:
            for table in source.get("tables") or []:
                landing = ((table.get("meta") or {}).get("lakehouse")) or {}
                if not landing:
                    continue  # bookkeeping (the ingest log), not a landed table
                declared.append(_declared(project, path, source["name"], table, landing))
    declared.sort(key=lambda s: s.order)
    if not declared:
        raise ContractError(f"no bronze declaration (meta.lakehouse) under {project / 'models'}")
    return tuple(declared)


def _declared(
    project: Path, path: Path, source: str, table: dict[str, Any], landing: dict[str, Any]
) -> DeclaredSource:
    name = str(table.get("identifier") or table["name"])
    where = f"{path}: source {source}.{table['name']}"
    columns = []
    for column in table.get("columns") or []:
        if str(column.get("name", "")).startswith(LINEAGE_PREFIX):
            continue  # added by ingest to every row (documented there), never landed
        data_type = column.get("data_type")
        if not data_type:
            raise ContractError(f"{where}, column {column.get('name')}: no data_type")
        tests = column.get("data_tests") or column.get("tests") or []
        required, accepted, references = False, None, None
        for test in tests:
            kind, arguments = (test, {}) if isinstance(test, str) else next(iter(test.items()))
            arguments = (arguments or {}).get("arguments", arguments or {})
            if kind == "not_null":
                required = True
            elif kind == "relationships":
                target = _REF.match(str(arguments.get("to", "")))
                if target is None:
                    raise ContractError(f"{where}, column {column['name']}: unreadable `to`")
                if target.group(1) == "ref":
                    accepted = seed_values(project, target.group(2), str(arguments["field"]))
                else:
                    references = f"{target.group(3)}.{arguments['field']}"
        columns.append(
            DeclaredColumn(
                name=str(column["name"]),
                data_type=str(data_type).lower(),
                required=required,
                max_length=(column.get("meta") or {}).get("max_length"),
                accepted_values=accepted,
                references=references,
            )
        )
    try:
        return DeclaredSource(
            table=name,
            landing_dir=str(landing["landing_dir"]),
            formats=tuple(landing["formats"]),
            key=tuple(landing["key"]),
            order=int(landing["order"]),
            columns=tuple(columns),
            path=path,
        )
    except KeyError as exc:
        raise ContractError(f"{where}: meta.lakehouse has no {exc.args[0]}") from exc


def vector_size(data_type: str) -> int | None:
    """N for a declared ``float[N]`` (a fixed number of floats), else None."""
    found = _VECTOR.fullmatch(data_type)
    return int(found.group(1)) if found else None


@cache
def seed_values(project: Path, seed: str, field: str) -> tuple[str, ...]:
    """The values of ``field`` in ``seeds/<seed>.csv``, in file order (read once)."""
    path = project / "seeds" / f"{seed}.csv"
    try:
        with open(path, newline="") as handle:
            return tuple(row[field] for row in csv.DictReader(handle))
    except (OSError, KeyError) as exc:
        raise ContractError(f"{path}: cannot read column {field} ({exc})") from exc


def bronze_sources(project: Path | None = None) -> tuple[DeclaredSource, ...]:
    """Every landed bronze table's declaration, in ingest order (photos before the events
    that reference them)."""
    return _declarations((project or project_dir()).resolve())


def data_tables(project: Path | None = None) -> tuple[str, ...]:
    """The bronze tables landed from the app's dumps, in ingest order."""
    return tuple(s.table for s in bronze_sources(project))


def bronze_tables(project: Path | None = None) -> tuple[str, ...]:
    """What dbt reads from bronze, each at a pinned Delta version per build."""
    return (*data_tables(project), INGEST_LOG)


def event_types(project: Path | None = None) -> tuple[str, ...]:
    """What the app logs (seeds/event_types.csv): any other type is quarantined."""
    return seed_values((project or project_dir()).resolve(), "event_types", "event_type")


def embedding_dim(project: Path | None = None) -> int:
    """Values per photo embedding: the N of ``float[N]`` its source declares."""
    for source in bronze_sources(project):
        for column in source.columns:
            size = vector_size(column.data_type)
            if source.table == "photo_embeddings" and column.name == "embedding" and size:
                return size
    raise ContractError("the photo_embeddings source declares no embedding column of float[N]")
