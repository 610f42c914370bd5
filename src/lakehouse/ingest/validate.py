"""Value checks over whole blocks, vectorised with Arrow compute.

Each check yields a boolean mask; a row is quarantined for the first check it fails, and
only those rows get a per-row message (so the fast path costs no Python per row).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from lakehouse.ingest import rejects as r
from lakehouse.ingest.readers import RawBlock
from lakehouse.ingest.rejects import Reject
from lakehouse.ingest.schemas import TIMESTAMP, VALID_TIMESTAMPS, Column, SourceSpec

_ISO_UTC = r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]\d{2}:?\d{2})$"
_INTEGER = r"^[+-]?\d{1,18}$"
_TRUE = ("true", "t", "1", "yes")
_FALSE = ("false", "f", "0", "no")


class KnownKeys:
    """Integer keys another table holds, sorted once so each block is a binary search
    (``pc.is_in`` would rebuild a hash set of every key for every block)."""

    def __init__(self, keys: pa.Array) -> None:
        self._sorted = np.unique(keys.drop_null().to_numpy())

    def missing(self, values: pa.Array) -> np.ndarray:
        """True where a non-null value is not among the keys."""
        present = values.is_valid().to_numpy(zero_copy_only=False)
        if not len(self._sorted):
            return present
        probe = values.fill_null(0).to_numpy()
        at = np.minimum(np.searchsorted(self._sorted, probe), len(self._sorted) - 1)
        return present & (self._sorted[at] != probe)


@dataclass
class ValidationContext:
    """What checks need beyond the row: the clock, and keys other tables hold."""

    now: datetime
    future_skew: timedelta = timedelta(hours=1)
    known_keys: dict[str, KnownKeys] = field(default_factory=dict)


@dataclass
class ValidatedBlock:
    # bronze source columns, the file's new columns (text), _source_line; good rows only
    table: pa.Table
    rejects: list[Reject]
    duplicates: int


@dataclass
class _Check:
    code: str
    column: str | None
    mask: np.ndarray
    message: Callable[[object], str]


def validate_block(
    block: RawBlock, spec: SourceSpec, ctx: ValidationContext, seen_keys: SeenKeys
) -> ValidatedBlock:
    source = block.table
    n = source.num_rows
    typed: dict[str, pa.Array] = {}
    checks: list[_Check] = []
    for column in spec.columns:
        values = _column_or_nulls(source, column.name, n)
        typed[column.name], conversion_failed = _coerce(values, column)
        if column.required:
            checks.append(
                _Check(
                    r.MISSING_FIELD,
                    column.name,
                    _np(values.is_null()),
                    lambda _v, c=column.name: f"required column {c} is missing or null",
                )
            )
        if conversion_failed is not None:
            code = r.BAD_TIMESTAMP if column.is_timestamp else r.WRONG_TYPE
            checks.append(_Check(code, column.name, conversion_failed, _conversion_message(column)))
        checks.extend(_value_checks(column, values, typed[column.name], spec, ctx))

    reason = _first_failed(checks, n)
    rejects = [
        _reject(block, i, checks[reason[i]], source) for i in np.flatnonzero(reason >= 0).tolist()
    ]
    good = reason < 0
    new = {n: source.column(n) for n in source.column_names if n not in typed}  # evolution
    lines = pa.array(block.lines, pa.int64())
    table = pa.table({**typed, **new, "_source_line": lines}).filter(pa.array(good))
    table, duplicates = _drop_duplicate_keys(table, spec, seen_keys)
    return ValidatedBlock(table, block.rejects + rejects, duplicates)


# ---------------------------------------------------------------- coercion


def _column_or_nulls(table: pa.Table, name: str, n: int) -> pa.Array:
    if name in table.column_names:
        return table.column(name).combine_chunks()
    return pa.nulls(n, pa.string())


def _coerce(values: pa.Array, column: Column) -> tuple[pa.Array, np.ndarray | None]:
    """Values in the bronze type, and a mask of non-null inputs that could not convert."""
    target = column.type
    if values.type == target:
        return values, None
    if column.is_timestamp and pa.types.is_string(values.type):
        return _parse_utc(values)
    if pa.types.is_string(values.type) and pa.types.is_integer(target):
        ok = pc.fill_null(pc.match_substring_regex(values, _INTEGER), False)
        converted = pc.cast(pc.if_else(ok, values, pa.scalar(None, pa.string())), target)
        return converted, _np(pc.and_(values.is_valid(), pc.invert(ok)))
    if pa.types.is_string(values.type) and pa.types.is_boolean(target):
        lowered = pc.utf8_lower(pc.utf8_trim_whitespace(values))
        is_true = pc.is_in(lowered, pa.array(_TRUE))
        is_false = pc.is_in(lowered, pa.array(_FALSE))
        converted = pc.if_else(is_true, True, pc.if_else(is_false, False, None))
        return converted, _np(pc.and_(values.is_valid(), pc.invert(pc.or_(is_true, is_false))))
    try:
        return pc.cast(values, target), None
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return _cast_each(values, target)


def _cast_each(values: pa.Array, target: pa.DataType) -> tuple[pa.Array, np.ndarray]:
    """The slow path for a block Arrow cannot cast whole: value by value, so one bad value
    rejects its row, not its block."""
    converted: list[object] = []
    failed = np.zeros(len(values), dtype=bool)
    for index, scalar in enumerate(values):
        if not scalar.is_valid:
            converted.append(None)
            continue
        try:
            converted.append(scalar.cast(target).as_py())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OverflowError):
            converted.append(None)
            failed[index] = True
    return pa.array(converted, target), failed


def _parse_utc(values: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """The one timestamp parser of ingest: ISO-8601 strings with a zone (Z or +hh:mm) ->
    UTC timestamps within ``VALID_TIMESTAMPS``; anything else (no zone, month 13, a leap
    second, 24:00, year 0000) is null with its row marked failed, never an error for the
    block. Arrow casts a whole block at once; a block it refuses is cast value by value,
    kept as integers so that no value ever becomes a Python ``datetime``."""
    ok = pc.fill_null(pc.match_substring_regex(values, _ISO_UTC), False)
    candidate = pc.if_else(ok, values, pa.scalar(None, pa.string()))
    try:
        parsed = pc.cast(candidate, TIMESTAMP)
    except pa.ArrowInvalid:  # shape is right but some value is not (e.g. month 13)
        micros = [_micros_or_none(v) for v in candidate.to_pylist()]
        parsed = pa.array(micros, pa.int64()).cast(TIMESTAMP)
    earliest, latest = (pa.scalar(t, TIMESTAMP) for t in VALID_TIMESTAMPS)
    in_range = pc.and_(
        pc.greater_equal(parsed, earliest), pc.less(parsed, latest)
    )  # null where unparsed
    parsed = pc.if_else(in_range, parsed, pa.scalar(None, TIMESTAMP))
    return parsed, _np(pc.and_(values.is_valid(), parsed.is_null()))


def _micros_or_none(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return pc.cast(pc.cast(pa.array([value]), TIMESTAMP), pa.int64())[0].as_py()
    except pa.ArrowInvalid:
        return None


# ---------------------------------------------------------------- checks


def _value_checks(
    column: Column, raw: pa.Array, typed: pa.Array, spec: SourceSpec, ctx: ValidationContext
) -> list[_Check]:
    name = column.name
    checks: list[_Check] = []
    if column.max_length is not None and pa.types.is_string(typed.type):
        too_long = pc.fill_null(pc.greater(pc.binary_length(typed), column.max_length), False)
        checks.append(
            _Check(
                r.OVERSIZED_VALUE,
                name,
                _np(too_long),
                lambda v, c=column: (
                    f"column {c.name}: {len(str(v).encode())} bytes, "
                    f"more than the limit of {c.max_length}"
                ),
            )
        )
    accepted = spec.accepted_values.get(name)
    if accepted:
        unknown = pc.and_(typed.is_valid(), pc.invert(pc.is_in(typed, pa.array(accepted))))
        checks.append(
            _Check(
                r.UNACCEPTED_VALUE,
                name,
                _np(unknown),
                lambda v, c=name, a=accepted: f"column {c}: {v!r} is not one of {', '.join(a)}",
            )
        )
    if column.is_timestamp:
        limit = pa.scalar(ctx.now + ctx.future_skew, TIMESTAMP)
        future = pc.fill_null(pc.greater(typed, limit), False)
        checks.append(
            _Check(
                r.FUTURE_TIMESTAMP,
                name,
                _np(future),
                lambda v, c=name, now=ctx.now: (
                    f"column {c}: {v} is after the ingest time {now.isoformat()}"
                ),
            )
        )
    if column.references and column.references in ctx.known_keys:
        unknown = ctx.known_keys[column.references].missing(typed)
        checks.append(
            _Check(
                r.UNKNOWN_REFERENCE,
                name,
                unknown,
                lambda v, c=name, ref=column.references: f"column {c}: {v} not found in {ref}",
            )
        )
    if column.fixed_size is not None and pa.types.is_list(typed.type):
        lengths = pc.list_value_length(typed)
        wrong = pc.fill_null(pc.not_equal(lengths, column.fixed_size), False)
        non_finite = _rows_with_non_finite(typed)
        checks.append(
            _Check(
                r.BAD_EMBEDDING,
                name,
                _np(wrong) | non_finite,
                lambda v, c=column: _embedding_message(c, v),
            )
        )
    return checks


def _rows_with_non_finite(lists: pa.Array) -> np.ndarray:
    flat = pc.list_flatten(lists)
    bad_value = pc.invert(pc.fill_null(pc.is_finite(flat), False))
    if not pc.any(bad_value).as_py():
        return np.zeros(len(lists), dtype=bool)
    parent = pc.list_parent_indices(lists).to_numpy()
    out = np.zeros(len(lists), dtype=bool)
    out[parent[_np(bad_value)]] = True
    return out


def _embedding_message(column: Column, value: object) -> str:
    vector = list(value) if isinstance(value, list | tuple) else []
    if len(vector) != column.fixed_size:
        return f"column {column.name}: {len(vector)} values, expected {column.fixed_size}"
    if any(v is None for v in vector):
        return f"column {column.name}: contains a null value at position {vector.index(None)}"
    return f"column {column.name}: contains NaN or infinity"


def _conversion_message(column: Column) -> Callable[[object], str]:
    if column.is_timestamp:
        earliest, latest = (t.date().isoformat() for t in VALID_TIMESTAMPS)
        return lambda v: (
            f"column {column.name}: cannot parse {v!r} as an ISO-8601 timestamp with a time "
            f"zone (e.g. 2026-01-31T18:04:05Z or +02:00) from {earliest} up to {latest}"
        )
    return lambda v: f"column {column.name}: cannot convert {v!r} to {column.type}"


def _first_failed(checks: list[_Check], n: int) -> np.ndarray:
    """Index of the first failed check per row, -1 where all pass."""
    reason = np.full(n, -1, dtype=np.int32)
    for index, check in enumerate(checks):
        reason[(reason < 0) & check.mask] = index
    return reason


def _reject(block: RawBlock, i: int, check: _Check, source: pa.Table) -> Reject:
    value = (
        source.column(check.column)[i].as_py()
        if check.column and check.column in source.column_names
        else None
    )
    return Reject(int(block.lines[i]), check.code, check.message(value), block.raw(i), check.column)


class SeenKeys:
    """The keys of the rows of one file kept so far (its earlier blocks)."""

    def __init__(self) -> None:
        self._parts: list[pa.Table] = []

    def keep_first(self, keys: pa.Table) -> np.ndarray:
        """Which rows of ``keys`` hold a key first: not in an earlier block, and the first of
        their key in this one (nulls are one key, as in a Python set); remembers them."""
        n = keys.num_rows
        keep = np.zeros(n, dtype=bool)
        if n:
            index = keys.append_column(_ROW, pa.array(np.arange(n, dtype=np.int64)))
            firsts = index.group_by(keys.column_names, use_threads=False).aggregate([(_ROW, "min")])
            keep[firsts.column(f"{_ROW}_min").to_numpy()] = True
        if self._parts and n:
            keep &= ~self._seen_before(keys)
        if keep.any():
            self._parts.append(keys.filter(pa.array(keep)))
        return keep

    def _seen_before(self, keys: pa.Table) -> np.ndarray:
        seen = pa.concat_tables(self._parts)
        if keys.num_columns == 1:
            found = pc.is_in(keys.column(0), value_set=seen.column(0).combine_chunks())
            return _np(found)
        earlier = set(zip(*(seen.column(c).to_pylist() for c in seen.column_names), strict=True))
        rows = zip(*(keys.column(c).to_pylist() for c in keys.column_names), strict=True)
        return np.fromiter((row in earlier for row in rows), dtype=bool, count=keys.num_rows)


_ROW = "__lakehouse_row"


def _drop_duplicate_keys(table: pa.Table, spec: SourceSpec, seen: SeenKeys) -> tuple[pa.Table, int]:
    """Keep the first row of each key in this file; later ones are counted, not landed."""
    keep = seen.keep_first(table.select(list(spec.key)))
    duplicates = int((~keep).sum())
    return (table.filter(pa.array(keep)) if duplicates else table), duplicates


def _np(mask: pa.Array | pa.ChunkedArray) -> np.ndarray:
    filled = pc.fill_null(mask, False)
    if isinstance(filled, pa.ChunkedArray):
        filled = filled.combine_chunks()
    return filled.to_numpy(zero_copy_only=False).astype(bool, copy=False)
