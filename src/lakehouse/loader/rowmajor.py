"""Row-major copies of shards, derived by the loader and kept in the local cache.

A shard stores each column once, column by column, as Arrow does. A batch of rows in random
order (a shuffle buffer) would then read one value per column per row, scattered over the
shard; from a row-major copy it copies each row as one run of bytes (about 2-3x faster, see
BENCHMARKS.md). So the first time a shuffled pass opens a shard, the loader lays the columns
it reads out row by row into ``$LAKEHOUSE_CACHE/rows/<sha256>-<layout>.rows`` and maps that
file: every worker and every later epoch and run on this machine map the same pages. The
name holds the shard's sha256 (checked when the shard was opened) and the layout's digest
(the columns read and their places), and the file is written under a temporary name and
renamed, so a copy is whole or absent, never stale. The cache keeps under
``$LAKEHOUSE_CACHE_LIMIT`` by removing the least recently used copies; a cache that cannot
be written costs the copy in memory, never the pass.
"""

from __future__ import annotations

import mmap
import os
import tempfile
from pathlib import Path

import numpy as np

from lakehouse.loader.remote import cache_limit, cache_root
from lakehouse.shardformat import RowLayout, tensor_type
from lakehouse.storage import process_alive

_SUFFIX = ".rows"
_PARTIAL = ".tmp-"  # a copy being written, named for its process


def layout_of(schema: list[dict[str, str]], columns: list[str]) -> RowLayout | None:
    """The row-major layout of ``columns`` (types from a manifest's ``schema``); None when
    one of them is not a tensor column."""
    types = {c["name"]: c["type"] for c in schema}
    planned = []
    for name in columns:
        tensor = tensor_type(types[name])
        if tensor is None:
            return None
        planned.append((name, *tensor))
    return RowLayout.plan(planned)


def row_major(
    columns: dict[str, np.ndarray], rows: int, layout: RowLayout, sha256: str
) -> np.ndarray:
    """The ``(rows, row_bytes)`` row-major copy of a shard's ``columns`` (its sha256 names
    it), mapped from the cache; made and stored there first if it is not yet."""
    if rows == 0:
        return np.empty((0, layout.row_bytes), np.uint8)
    size = rows * layout.row_bytes
    path = cache_root() / "rows" / f"{sha256}-{layout.digest}{_SUFFIX}"
    mapped = _mapped(path, size)
    if mapped is not None:
        return mapped.reshape(rows, layout.row_bytes)
    matrix = build(columns, rows, layout)
    try:
        _store(path, matrix)
    except OSError:  # a read-only or full cache: this process keeps its copy in memory
        return matrix
    mapped = _mapped(path, size)
    return matrix if mapped is None else mapped.reshape(rows, layout.row_bytes)


def build(columns: dict[str, np.ndarray], rows: int, layout: RowLayout) -> np.ndarray:
    """Lay ``columns`` (numpy arrays, one row per sample) out row by row."""
    matrix = np.zeros((rows, layout.row_bytes), np.uint8)
    for name, field in layout.fields.items():
        values = np.ascontiguousarray(columns[name], dtype=field.dtype)
        width = np.dtype(field.dtype).itemsize * field.width
        matrix[:, field.offset : field.offset + width] = values.reshape(rows, -1).view(np.uint8)
    return matrix


def _mapped(path: Path, size: int) -> np.ndarray | None:
    """The file's bytes mapped copy-on-write (a training loop that writes into a batch never
    changes the cache), when it is there with the expected size; its use is recorded in its
    modification time, which eviction reads."""
    try:
        with open(path, "rb") as handle:
            if os.fstat(handle.fileno()).st_size != size:
                return None
            mapped = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_COPY)
        os.utime(path)
    except OSError:
        return None
    return np.frombuffer(mapped, np.uint8, size)


def _store(path: Path, matrix: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(
        prefix=f"{_PARTIAL}{os.getpid()}-", suffix=_SUFFIX, dir=path.parent
    )
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(memoryview(matrix).cast("B"))
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    evict(path.parent, cache_limit(), keep=path)


def evict(folder: Path, limit: int, keep: Path | None = None) -> list[Path]:
    """Remove the least recently used copies until the folder holds at most ``limit`` bytes
    (``keep``, the copy just made, stays). A process that still maps a removed copy keeps
    reading it; the next one makes it again. Returns what was removed."""
    found, removed = [], []
    for entry in os.scandir(folder):
        if entry.name.startswith(_PARTIAL):  # a writer killed mid-copy leaves one
            pid = entry.name[len(_PARTIAL) :].split("-", 1)[0]
            if pid.isdigit() and not process_alive(int(pid)):
                Path(entry.path).unlink(missing_ok=True)
                removed.append(Path(entry.path))
        elif entry.name.endswith(_SUFFIX):
            try:
                stat = entry.stat()
            except FileNotFoundError:  # removed by another process meanwhile
                continue
            found.append((stat.st_mtime_ns, stat.st_size, Path(entry.path)))
    total = sum(size for _, size, _ in found)
    for _, size, path in sorted(found):
        if total <= limit:
            break
        if path == keep:
            continue
        path.unlink(missing_ok=True)
        total -= size
        removed.append(path)
    return removed
