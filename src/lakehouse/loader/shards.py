"""Open a shard version and memory-map its shards as numpy columns.

Shards are mapped copy-on-write: pages come from the page cache, shared by every worker
that reads the same file, and a training loop that writes into a batch tensor in place
changes its private copy of the page, never the shard (a read-only map would crash it).
"""

from __future__ import annotations

import functools
import hashlib
import mmap
import os
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc

from lakehouse.loader.remote import FetchError, RemoteVersion, checked_marker, mark_checked
from lakehouse.loader.rowmajor import layout_of, row_major
from lakehouse.shardformat import (
    MANIFEST,
    Manifest,
    RowLayout,
    ShardEntry,
    safe_shard_path,
    tensor_type,
    verify,
)
from lakehouse.storage import is_remote


class LoaderError(Exception):
    """Shards that cannot be read as promised; the message names the shard and what to do."""


class Version(NamedTuple):
    """An opened shard version: its local folder, its manifest, and for a version on object
    storage the :class:`RemoteVersion` that streams its shards into that folder."""

    folder: Path
    manifest: Manifest
    remote: RemoteVersion | None = None


def open_version(path: str | Path, *, cache_limit: str | int | None = None) -> Version:
    """The version folder ``path`` points at (``latest`` is resolved once, so a new export
    during training does not change the data under a running job) and its manifest. For a
    version on object storage only the manifest is fetched here; shards are fetched into
    the local cache when a batch first needs them (see ``remote``)."""
    remote = None
    if is_remote(str(path)):
        try:
            remote = RemoteVersion(str(path), limit=cache_limit)
        except (FetchError, OSError, ValueError) as error:
            raise LoaderError(f"cannot fetch shards from {path}: {error}") from error
        return Version(remote.local.resolve(), remote.manifest, remote)  # parsed once
    folder = Path(path).resolve()
    if not (folder / MANIFEST).exists():
        raise LoaderError(
            f"no {MANIFEST} in {path}; point at a shard version such as "
            "shards/photo_popularity_training/latest (written by `lakehouse export`)"
        )
    try:
        return Version(folder, Manifest.read(folder / MANIFEST), remote)
    except (ValueError, TypeError, KeyError) as error:
        raise LoaderError(f"{folder / MANIFEST} is not a shard manifest: {error}") from error


def split_entries(manifest: Manifest, split: str) -> list[ShardEntry]:
    entries = [s for s in manifest.shards if s.split == split]
    if not entries:
        known = sorted({s.split for s in manifest.shards})
        raise LoaderError(
            f"{manifest.model} v{manifest.version} has no split {split!r}; it has {known}"
        )
    return entries


def check_columns(manifest: Manifest, columns: list[str] | None) -> list[str]:
    """The requested columns, all of them by default; unknown names, and columns no tensor
    can hold, are refused."""
    names = manifest.columns
    wanted = list(columns) if columns else names
    unknown = [c for c in wanted if c not in names]
    if unknown:
        raise LoaderError(
            f"{manifest.model} v{manifest.version} has no column(s) {', '.join(unknown)}; "
            f"it has {', '.join(names)}"
        )
    types = {c["name"]: c["type"] for c in manifest.schema}
    for name in wanted:
        if tensor_type(types[name]) is None:
            raise LoaderError(
                f"{manifest.model} v{manifest.version} column {name} has Arrow type "
                f"{types[name]}, which no tensor holds; read it with pyarrow or polars"
            )
    return wanted


def verify_checksums(folder: Path) -> None:
    problems = verify(folder)
    if problems:
        raise LoaderError(f"shards in {folder} fail their checksums: " + "; ".join(problems))


@dataclass(frozen=True)
class Split:
    """One split of an opened version and the columns read from it: what every dataset
    here (batches, samples, mixes) reads through :meth:`cache`."""

    version: Version
    name: str
    entries: list[ShardEntry]
    columns: list[str]

    @functools.cached_property
    def layout(self) -> RowLayout:
        """Where each of the columns read lies in a row of a row-major batch or copy."""
        layout = layout_of(self.version.manifest.schema, self.columns)
        assert layout is not None  # check_columns refused any column no tensor holds
        return layout

    def cache(self, *, random_rows: bool = False) -> ShardCache:
        """A fresh cache of open shards (maps are per process: one per pass or worker).
        ``random_rows``: batches gather rows in random order (a shuffle buffer), so each
        shard's row-major copy is mapped in one call when it opens."""
        folder, manifest, remote = self.version
        return ShardCache(
            folder,
            manifest,
            self.entries,
            self.columns,
            remote=remote,
            random_rows=random_rows,
            layout=self.layout,
        )


def open_split(
    path: str | Path,
    split: str,
    columns: list[str] | None = None,
    *,
    verify: bool = False,
    cache_limit: str | int | None = None,
) -> Split:
    """Open ``split`` of the version at ``path``: unknown splits and columns are refused
    here, and ``verify`` re-checks every local shard's sha256 up front."""
    version = open_version(path, cache_limit=cache_limit)
    entries = split_entries(version.manifest, split)
    wanted = check_columns(version.manifest, columns)
    if verify:
        if version.remote is not None:
            raise LoaderError(
                "verify=True reads every shard up front; a version on object storage is "
                "checked shard by shard as it is fetched (sha256 while downloading)"
            )
        verify_checksums(version.folder)
    return Split(version, split, entries, wanted)


class ShardColumns:
    """One shard's requested columns as numpy arrays over a copy-on-write memory map, and
    (``row_major``, derived on first use) a row-major copy of them as a ``(rows,
    row_bytes)`` uint8 matrix laid out by ``layout``."""

    def __init__(
        self,
        folder: Path,
        entry: ShardEntry,
        manifest: Manifest,
        columns: list[str],
        random_rows: bool = False,
        layout: RowLayout | None = None,
    ):
        try:
            path = safe_shard_path(folder, entry.path)
        except ValueError as error:  # a manifest that points outside its version folder
            raise LoaderError(str(error)) from None
        self.path = path
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            raise LoaderError(f"shard {path} is missing (listed in {folder / MANIFEST})") from None
        if size != entry.bytes:
            raise LoaderError(
                f"shard {path} has {size} bytes but the manifest says {entry.bytes}: "
                "truncated or replaced; export again or run `lakehouse shards verify`"
            )
        with open(path, "rb") as handle:
            self._map = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_COPY)
            _check_once(path, handle, self._map, entry)
        base = pa.py_buffer(self._map)
        try:
            reader = ipc.open_file(pa.BufferReader(base))
            table = reader.read_all()
        except (pa.ArrowException, OSError, ValueError) as error:
            raise LoaderError(f"shard {path} is corrupt: {error}") from error
        expected = [(c["name"], c["type"]) for c in manifest.schema]
        found = [(f.name, str(f.type)) for f in table.schema]
        if found != expected:
            raise LoaderError(f"shard {path} has schema {found}, the manifest says {expected}")
        if table.num_rows != entry.rows:
            raise LoaderError(
                f"shard {path} has {table.num_rows} rows, the manifest says {entry.rows}"
            )
        table = table.combine_chunks()
        self.rows, self._sha256, self._layout = table.num_rows, entry.sha256, layout
        self._vocabularies = manifest.vocabularies
        self.columns = {name: self._numpy(name, table.column(name), base) for name in columns}
        self._row_major: np.ndarray | None = None
        self._random_rows = random_rows

    @property
    def row_major(self) -> np.ndarray | None:
        """The rows, row-major (None without a layout). Derived from the columns the first
        time it is asked for, or mapped from the cache where an earlier pass, worker or run
        made it (:mod:`.rowmajor`). For a random gather (``random_rows``) its pages are
        mapped in one call: such a gather would otherwise take a page fault for nearly
        every row (a fault costs as much as copying the row several times over)."""
        if self._row_major is None and self._layout is not None:
            matrix = row_major(self.columns, self.rows, self._layout, self._sha256)
            if self._random_rows and matrix.size:
                _populate(matrix)
            self._row_major = matrix
        return self._row_major

    def _numpy(self, name: str, column: pa.ChunkedArray, base: pa.Buffer) -> np.ndarray:
        """A column's values as a tensor reads them, viewed in the map where they lie there
        as they are: timestamps their int64 microseconds, categories their int32 codes
        (null, a missing category, is -1), booleans uint8 (0 or 1)."""
        array = column.chunk(0) if column.num_chunks else pa.array([], column.type)
        if pa.types.is_dictionary(array.type):
            array = self._codes(name, array)
            if array.null_count:  # a private copy with -1 where the category is missing
                return np.array(pc.fill_null(array, -1).to_numpy(zero_copy_only=False))
        if array.null_count:
            raise LoaderError(
                f"shard {self.path} column {name} has {array.null_count} nulls; "
                "a tensor has no null (only a category may be missing: its code is -1)"
            )
        if pa.types.is_boolean(array.type):  # bits: a private copy, one byte per value
            return np.array(pc.cast(array, pa.uint8()).to_numpy(zero_copy_only=False))
        if pa.types.is_timestamp(array.type):
            array = array.view(pa.int64())
        width = 1
        if pa.types.is_fixed_size_list(array.type):
            width = array.type.list_size
            array = array.flatten()
        if not (pa.types.is_integer(array.type) or pa.types.is_floating(array.type)):
            raise LoaderError(
                f"shard {self.path} column {name} has type {array.type}, not a tensor type"
            )
        dtype = np.dtype(array.type.to_pandas_dtype())
        count = len(array)
        if count == 0:
            return np.empty((0, width) if width > 1 else 0, dtype)
        data = array.buffers()[1]
        offset = data.address - base.address
        if offset >= 0 and offset + data.size <= base.size:  # uncompressed: view the map
            values = np.frombuffer(self._map, dtype, count, offset + array.offset * dtype.itemsize)
        else:  # compressed shards were decompressed into memory; take a private copy
            values = np.frombuffer(data, dtype, count, array.offset * dtype.itemsize).copy()
        return values.reshape(-1, width) if width > 1 else values

    def _codes(self, name: str, array: pa.DictionaryArray) -> pa.Array:
        """A category's int32 codes (null where it is missing), its dictionary checked
        against the manifest's vocabulary (a shard's dictionary is the version's whole
        vocabulary, so a code means the same in every shard and every version sharing it)."""
        vocabulary = self._vocabularies.get(name)
        dictionary = array.dictionary.to_pylist()
        if vocabulary is None or dictionary != vocabulary:
            raise LoaderError(
                f"shard {self.path} column {name} has categories {dictionary[:5]}..., not the "
                "manifest's vocabulary; export the version again"
            )
        return array.indices


# shards this process has checked: (path, size, mtime_ns, ctime_ns, sha256)
_CHECKED: set[tuple[str, int, int, int, str]] = set()


_MADV_POPULATE_READ = getattr(mmap, "MADV_POPULATE_READ", 22)  # Linux 5.14


def _populate(view: np.ndarray) -> None:
    """Map the pages under ``view`` (all of a memory map) readable, without copying them:
    ``MADV_POPULATE_READ`` (copy-on-write is kept), else ask the kernel to read them ahead.
    An array in memory (not a map) needs nothing."""
    mapped = view.base
    while isinstance(mapped, np.ndarray):
        mapped = mapped.base
    if not isinstance(mapped, mmap.mmap):
        return
    for advice in (_MADV_POPULATE_READ, getattr(mmap, "MADV_WILLNEED", None)):
        if advice is None:
            continue
        try:
            mapped.madvise(advice)
            return
        except (OSError, ValueError):  # an older kernel: the next advice, else none
            continue


def _check_once(path: Path, handle, mapped: mmap.mmap, entry: ShardEntry) -> None:
    """The shard's bytes against the manifest's sha256 before Arrow reads a byte: a flipped
    byte is a LoaderError, never a crash in a parser or a silently changed value. Checked
    once per file version on this machine (about 1.5 GB/s, paid at a shard's first open):
    a marker in the cache remembers it for later processes, workers and epochs."""
    stat = os.fstat(handle.fileno())
    key = (str(path), stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, entry.sha256)
    if key in _CHECKED:
        return
    if not checked_marker(stat, entry.sha256).exists():
        if hashlib.sha256(mapped).hexdigest() != entry.sha256:
            raise LoaderError(
                f"shard {path} differs from its manifest's sha256 (corrupt or replaced); "
                "export again, or run `lakehouse shards verify` on the version"
            )
        mark_checked(stat, entry.sha256)
    _CHECKED.add(key)


class ShardCache:
    """Open shards of one worker, the most recently used ones kept (each holds a map)."""

    def __init__(
        self,
        folder: Path,
        manifest: Manifest,
        entries: list[ShardEntry],
        columns: list[str],
        capacity: int = 64,
        remote: RemoteVersion | None = None,
        random_rows: bool = False,
        layout: RowLayout | None = None,
    ):
        self._folder, self._manifest, self._entries = folder, manifest, entries
        self._columns, self._capacity, self._remote = columns, capacity, remote
        self._random_rows, self._layout = random_rows, layout
        self._open: OrderedDict[int, ShardColumns] = OrderedDict()

    def __getitem__(self, index: int) -> ShardColumns:
        if index in self._open:
            self._open.move_to_end(index)
        else:
            if len(self._open) >= self._capacity:
                self._open.popitem(last=False)  # tensors still using it keep the map alive
            self._open[index] = self._opened(index)
        return self._open[index]

    def _opened(self, index: int) -> ShardColumns:
        entry = self._entries[index]
        if self._remote is None:
            return ShardColumns(
                self._folder, entry, self._manifest, self._columns, self._random_rows, self._layout
            )
        for attempt in range(3):
            try:
                self._remote.ensure(entry)
            except (FetchError, OSError) as error:
                message = f"cannot fetch shards from {self._remote.uri}: {error}"
                raise LoaderError(message) from error
            try:
                return ShardColumns(
                    self._folder,
                    entry,
                    self._manifest,
                    self._columns,
                    self._random_rows,
                    self._layout,
                )
            except LoaderError:
                # evicted by another process between our fetch and our open (the cache is
                # smaller than what all readers use at once): fetch it again
                if attempt == 2 or (self._folder / entry.path).exists():
                    raise
            finally:
                self._remote.opened(entry)
        raise AssertionError("unreachable")

    def prefetch(self, indices) -> None:
        """Start fetching these shards in the background (object storage only)."""
        if self._remote is not None:
            wanted = [self._entries[i] for i in indices if i not in self._open]
            self._remote.prefetch(wanted)

    def settle(self) -> None:
        """The pass is over: no read-ahead keeps running after it."""
        if self._remote is not None:
            self._remote.settle()
