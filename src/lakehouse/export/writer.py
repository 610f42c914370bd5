"""Stream a mart out of DuckDB into Arrow IPC shards of a fixed row count, per split.

Shards are first-class Arrow, so any Arrow tool (pyarrow, polars, DuckDB, Hugging Face
``datasets``) reads the data fully typed, and the loader hands columns to torch without
work: timestamps ``timestamp[us, tz=UTC]`` (int64 microseconds underneath), categories
dictionary-encoded with the version's whole vocabulary (int32 codes underneath, stable
across versions; a missing category is null), booleans ``bool``, floats float32,
integers int64, embeddings fixed-size float32 lists. Each column carries its dbt
description and unit as field metadata, and the schema the model, split, label columns and
a pointer to the version's lineage (``lakehouse.*`` keys). Each value is stored once: the
loader derives any row-major copy it wants (``lakehouse.loader.rowmajor``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc

from lakehouse import sql
from lakehouse.shardformat import DEFAULT_SHARD_ROWS, ShardEntry, sha256_of


class ExportError(Exception):
    """An export that cannot go ahead; the message says why and what to do."""


@dataclass(frozen=True)
class ExportSpec:
    """How a mart is sharded, as its dbt YAML declares under ``config.meta.export``: one
    folder per value of ``split``, rows ordered by ``key``, ``exclude`` left out."""

    key: str
    split: str = "split"
    exclude: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()  # the columns a model learns to predict

    @classmethod
    def from_meta(
        cls, model: str, meta: dict[str, Any] | None, exportable: list[str] | None = None
    ) -> ExportSpec:
        """The spec ``meta`` declares; ``meta`` None: dbt knows no model named ``model``
        (``exportable``, the models that can be exported, are named in the error)."""
        choices = ", ".join(exportable or []) or "none yet"
        if meta is None:
            raise ExportError(
                f"no dbt model named {model!r} in the project (as dbt last parsed it); "
                f"models that can be exported: {choices}"
            )
        declared = meta.get("export")
        if not isinstance(declared, dict) or not isinstance(declared.get("key"), str):
            raise ExportError(
                f"{model} declares no export key: add `config: {{meta: {{export: {{key: <id "
                f"column>, split: <split column>}}}}}}` to its entry in models/marts/ (dbt "
                "YAML), then `dbt parse` or `lakehouse build`; models that can be exported: "
                f"{choices}"
            )
        return cls(
            key=declared["key"],
            split=str(declared.get("split", "split")),
            exclude=tuple(declared.get("exclude") or ()),
            labels=tuple(declared.get("labels") or ()),
        )


class ColumnPlan(NamedTuple):
    """What an export selects: one SQL expression per column, the vocabulary of each
    categorical column (its int32 codes index it), the timestamp columns (selected as
    microseconds since the epoch), the split values, and the columns' names."""

    select: list[str]
    vocabularies: dict[str, list[str]]
    splits: list[str]
    timestamps: tuple[str, ...] = ()
    columns: tuple[str, ...] = ()


@dataclass(frozen=True)
class ShardMetadata:
    """What a shard says about itself in its Arrow schema: ``schema`` (model, labels,
    lineage pointer; JSON values) and per column its dbt description and unit."""

    schema: dict[str, str] = field(default_factory=dict)
    columns: dict[str, dict[str, str]] = field(default_factory=dict)


def plan_columns(
    con: duckdb.DuckDBPyConnection,
    model: str,
    spec: ExportSpec,
    columns: list[str] | None,
    known: dict[str, list[str]] | None = None,
) -> ColumnPlan:
    """SQL select expressions, vocabularies of categorical columns, and the splits.

    A category keeps its code across versions: ``known`` (the latest version's vocabularies)
    comes first, in its order, values it lacks are appended in sorted order, and a value
    that left the table keeps its code (a model trained on an older version reads the
    codes of a newer one the same way)."""
    exists = con.execute(
        "select count(*) from information_schema.tables where table_name = ?", [model]
    ).fetchone()[0]
    if not exists:  # checked against the catalog before the name reaches any SQL
        raise ExportError(
            f"the warehouse has no table {model!r}; name a mart that `lakehouse build` made, "
            "e.g. photo_popularity_training"
        )
    described = con.execute(f"describe {sql.identifier(model)}").fetchall()
    types = {name: kind.upper() for name, kind, *_ in described}
    for role, column in (("split", spec.split), ("key", spec.key)):
        if column not in types:
            raise ExportError(f"{model} has no {role} column {column!r} to shard by")
    wanted = columns or [c for c in types if c != spec.split and c not in spec.exclude]
    unknown = [c for c in wanted if c not in types]
    if unknown:
        raise ExportError(
            f"{model} has no column(s) {', '.join(unknown)}; it has {', '.join(types)}"
        )
    select, vocabularies, timestamps = [], {}, []
    table = sql.identifier(model)
    for name in wanted:
        kind, column = types[name], sql.identifier(name)
        if kind == "VARCHAR":
            values = list((known or {}).get(name, []))
            seen = set(values)
            values += [
                v
                for (v,) in con.execute(
                    f"select distinct {column} from {table} where {column} is not null order by 1"
                ).fetchall()
                if v not in seen
            ]
            vocabularies[name] = values
            cases = " ".join(f"when {sql.string(v)} then {i}" for i, v in enumerate(values))
            expression = f"cast(case {column} {cases} else -1 end as integer)"
        elif kind.startswith("TIMESTAMP"):
            expression = f"epoch_us({column})"
            timestamps.append(name)
        elif kind == "BOOLEAN":
            expression = column
        elif kind in ("FLOAT", "DOUBLE") or kind.startswith("DECIMAL"):
            expression = f"cast({column} as float)"
        elif kind.endswith("]"):  # fixed-size array, e.g. FLOAT[64]
            size = kind[kind.rindex("[") + 1 : -1]
            expression = f"cast({column} as float[{size}])"
        elif kind in (
            "INTEGER",
            "BIGINT",
            "SMALLINT",
            "TINYINT",
            "HUGEINT",
            "UBIGINT",
            "UINTEGER",
            "USMALLINT",
            "UTINYINT",
        ):
            expression = f"cast({column} as bigint)"
        else:
            raise ExportError(f"{model}.{name} has type {kind}, which shards do not carry")
        select.append(f"{expression} as {column}")
    splits = [
        s
        for (s,) in con.execute(
            f"select distinct {sql.identifier(spec.split)} from {sql.identifier(model)} order by 1"
        ).fetchall()
    ]
    unknown_labels = [c for c in spec.labels if c not in types]
    if unknown_labels:
        raise ExportError(
            f"{model} declares label column(s) {', '.join(unknown_labels)} in meta.export.labels "
            f"that it does not have; it has {', '.join(types)}"
        )
    return ColumnPlan(select, vocabularies, splits, tuple(timestamps), tuple(wanted))


def write_split(
    con: duckdb.DuckDBPyConnection,
    model: str,
    spec: ExportSpec,
    plan: ColumnPlan,
    split: str,
    folder: Path,
    version_dir: Path,
    shard_rows: int,
    compression: str | None,
    on_rows=lambda n: None,
    metadata: ShardMetadata | None = None,
) -> list[ShardEntry]:
    """Write one split as part-00000.arrow, ... of exactly ``shard_rows`` rows (the last one
    fewer), rows ordered by the key so the same warehouse gives the same bytes."""
    folder.mkdir(parents=True, exist_ok=True)
    metadata = metadata or ShardMetadata()
    schema_metadata = {**metadata.schema, "lakehouse.split": split}
    query = (
        f"select {', '.join(plan.select)} from {sql.identifier(model)} "
        f"where {sql.identifier(spec.split)} = ? order by {sql.identifier(spec.key)}"
    )
    reader = con.execute(query, [split]).to_arrow_reader(min(shard_rows, DEFAULT_SHARD_ROWS))
    entries = []
    for index, selected in enumerate(_fixed_size_tables(reader, shard_rows)):
        table = first_class(selected, plan, metadata.columns, schema_metadata)
        path = folder / f"part-{index:05d}.arrow"
        options = ipc.IpcWriteOptions(compression=compression)
        with (
            pa.OSFile(str(path), "wb") as sink,
            ipc.new_file(sink, table.schema, options=options) as writer,
        ):
            writer.write_table(table, max_chunksize=shard_rows)
        entries.append(
            ShardEntry(
                split,
                str(path.relative_to(version_dir)),
                table.num_rows,
                path.stat().st_size,
                sha256_of(path),
            )
        )
        on_rows(table.num_rows)
    return entries


def first_class(
    table: pa.Table,
    plan: ColumnPlan,
    columns: dict[str, dict[str, str]],
    schema: dict[str, str],
) -> pa.Table:
    """``table`` as selected (codes, epoch microseconds) in the shards' Arrow types, with
    each column's metadata and the schema's: categories become dictionary arrays over the
    whole vocabulary (code -1, a missing category, becomes null), timestamps
    ``timestamp[us, tz=UTC]`` (the same int64 buffer), fixed-size lists name their item."""
    arrays, fields = [], []
    for name, column in zip(table.column_names, table.columns, strict=True):
        array = column.combine_chunks()
        if name in plan.vocabularies:
            codes = array.to_numpy(zero_copy_only=False).astype(np.int32, copy=False)
            missing = codes < 0
            indices = pa.array(
                np.where(missing, 0, codes).astype(np.int32),
                mask=missing if missing.any() else None,
            )
            dictionary = pa.array(plan.vocabularies[name], pa.string())
            array = pa.DictionaryArray.from_arrays(indices, dictionary)
        elif name in plan.timestamps:
            array = array.view(pa.timestamp("us", tz="UTC"))
        elif pa.types.is_fixed_size_list(array.type):
            item = array.type.value_type
            array = array.cast(pa.list_(pa.field("item", item), array.type.list_size))
        arrays.append(array)
        fields.append(pa.field(name, array.type, metadata=columns.get(name) or None))
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields, metadata=schema or None))


def schema_metadata(
    model: str,
    description: str,
    spec: ExportSpec,
    lineage: dict[str, Any],
    columns: dict[str, dict[str, str]],
    exported: tuple[str, ...],
) -> dict[str, str]:
    """The schema-level metadata of every shard of an export: the model and what it is, its
    key, its label columns with their definitions (dbt descriptions), and a pointer to where
    its rows came from (the version's manifest, beside the split folders, holds the whole
    lineage). Only what a reproduction of the same rows would give again: no build id,
    clock or path. Labels an export of some columns (``--columns``) leaves out are not named."""
    labels = {
        label: columns.get(label, {}).get("description", "")
        for label in spec.labels
        if label in exported
    }
    pointer = {
        "manifest": "../manifest.json",
        "bronze_versions": lineage.get("bronze_versions") or {},
    }
    return {
        "lakehouse.model": model,
        "lakehouse.description": description.strip(),
        "lakehouse.key": spec.key,
        "lakehouse.labels": json.dumps(labels),
        "lakehouse.lineage": json.dumps(pointer, sort_keys=True),
    }


def _fixed_size_tables(reader: pa.RecordBatchReader, rows: int) -> Iterator[pa.Table]:
    """Re-cut a stream of record batches into tables of exactly ``rows`` rows (the last one
    fewer), holding at most one shard in memory."""
    pending: list[pa.RecordBatch] = []
    count = 0
    for batch in reader:
        while batch.num_rows:
            take = min(rows - count, batch.num_rows)
            pending.append(batch.slice(0, take))
            count += take
            batch = batch.slice(take)
            if count == rows:
                yield pa.Table.from_batches(pending).combine_chunks()
                pending, count = [], 0
    if count:
        yield pa.Table.from_batches(pending).combine_chunks()
