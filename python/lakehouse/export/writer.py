"""Stream a mart out of DuckDB into Arrow IPC shards of a fixed row count, per split.

Types are chosen so a loader can hand columns to torch without work: fixed-size float32
lists for embeddings, float32 for floats, int64 for integers and timestamps (UTC
microseconds), uint8 for booleans, int32 codes for categoricals (vocabulary in the
manifest). Strings never reach a shard. Each shard also carries the same values row-major,
in one fixed-size binary column (``shardformat.ROW_MAJOR``): a shuffled batch then copies
whole rows, one run of bytes each.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc

from lakehouse import sql
from lakehouse.shardformat import DEFAULT_SHARD_ROWS, ROW_MAJOR, RowLayout, ShardEntry, sha256_of


class ExportError(Exception):
    """An export that cannot go ahead; the message says why and what to do."""


@dataclass(frozen=True)
class ExportSpec:
    """How a mart is sharded, as its dbt YAML declares under ``config.meta.export``: one
    folder per value of ``split``, rows ordered by ``key``, ``exclude`` left out."""

    key: str
    split: str = "split"
    exclude: tuple[str, ...] = ()

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
        )


def plan_columns(
    con: duckdb.DuckDBPyConnection,
    model: str,
    spec: ExportSpec,
    columns: list[str] | None,
    known: dict[str, list[str]] | None = None,
) -> tuple[list[str], dict[str, list[str]], list[str]]:
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
    select, vocabularies = [], {}
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
        elif kind == "BOOLEAN":
            expression = f"cast({column} as utinyint)"
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
    return select, vocabularies, splits


def write_split(
    con: duckdb.DuckDBPyConnection,
    model: str,
    spec: ExportSpec,
    select: list[str],
    split: str,
    folder: Path,
    version_dir: Path,
    shard_rows: int,
    compression: str | None,
    on_rows=lambda n: None,
) -> list[ShardEntry]:
    """Write one split as part-00000.arrow, ... of exactly ``shard_rows`` rows (the last one
    fewer), rows ordered by the key so the same warehouse gives the same bytes."""
    folder.mkdir(parents=True, exist_ok=True)
    query = (
        f"select {', '.join(select)} from {sql.identifier(model)} "
        f"where {sql.identifier(spec.split)} = ? order by {sql.identifier(spec.key)}"
    )
    reader = con.execute(query, [split]).to_arrow_reader(min(shard_rows, DEFAULT_SHARD_ROWS))
    entries = []
    for index, named in enumerate(_fixed_size_tables(reader, shard_rows)):
        table = with_row_major(named)
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


def row_layout(schema: pa.Schema) -> RowLayout:
    """The row-major layout of a shard's named columns."""
    columns = []
    for field in schema:
        kind, width = field.type, 1
        if pa.types.is_fixed_size_list(kind):
            kind, width = kind.value_type, kind.list_size
        columns.append((field.name, str(np.dtype(kind.to_pandas_dtype())), width))
    return RowLayout.plan(columns)


def with_row_major(table: pa.Table) -> pa.Table:
    """``table`` plus its rows row-major in one fixed_size_binary column."""
    layout = row_layout(table.schema)
    rows = np.zeros((table.num_rows, layout.row_bytes), np.uint8)
    for name, field in layout.fields.items():
        array = table.column(name).combine_chunks()
        if pa.types.is_fixed_size_list(array.type):
            array = array.flatten()
        values = array.to_numpy(zero_copy_only=False).astype(field.dtype, copy=False)
        size = np.dtype(field.dtype).itemsize * field.width
        view = rows[:, field.offset : field.offset + size]
        view[:] = values.reshape(table.num_rows, size // values.itemsize).view(np.uint8)
    column = pa.FixedSizeBinaryArray.from_buffers(
        pa.binary(layout.row_bytes), table.num_rows, [None, pa.py_buffer(rows)]
    )
    return table.append_column(ROW_MAJOR, column)


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
