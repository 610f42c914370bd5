"""ShardDataset: whole batches of tensors sliced out of memory-mapped Arrow shards."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lakehouse.loader.plan import EpochOrder, RankPlan, Rows, Uneven
from lakehouse.loader.resume import Batch, Make, ResumableBatches
from lakehouse.loader.ring import (
    BufferPool,
    Column,
    Extra,
    Ring,
    RingBatch,
    strided,
    with_constants,
)
from lakehouse.loader.samples import ShardSamples, decode
from lakehouse.loader.shards import ShardCache, open_split
from lakehouse.shardformat import RowLayout

PADDING_KEY = "is_padding"


class ShardDataset(ResumableBatches):
    """Batches of one split of a shard version, as ``dict[column, Tensor]``.

    Use with ``DataLoader(ds, batch_size=None, num_workers=n)``: the dataset batches itself
    (``batch_size=N`` on the DataLoader is refused with that advice). Every sample of an
    epoch is delivered exactly once across workers and ranks; each rank gets the same
    number of batches. With ``uneven="pad"`` (default) ranks that run out get filler
    batches of real samples, flagged in ``batch["is_padding"]`` so the loss can mask them;
    with ``"drop"`` the samples that do not fill a batch on every rank are left out. Call
    :meth:`set_epoch` at the start of each epoch, as with DistributedSampler; the epoch
    lives in shared memory, so ``persistent_workers=True`` follows it too.

    ``len(ds)`` is the number of *batches* this rank delivers in the coming pass (what
    DataLoader and progress bars count); :attr:`num_samples` counts samples and
    :attr:`samples` is the split as a map-style dataset (``len`` in samples, ``[i]``).

    Order: blocks of ``block_rows`` rows (default ``batch_size``) are shuffled by (seed,
    epoch), then rows are mixed within windows of ``shuffle_buffer`` rows (default
    8 x ``batch_size``; 0 keeps blocks whole, so batches are zero-copy slices of the map):
    each batch of a window is a random set of its rows (see :mod:`lakehouse.loader.plan`).
    A mixed batch is gathered as whole rows from a row-major copy of each shard, which the
    loader derives once per shard and keeps in ``$LAKEHOUSE_CACHE/rows`` (see
    :mod:`lakehouse.loader.rowmajor`): its columns are strided views of one buffer
    (``.contiguous()`` gives a packed copy).

    Checkpointing: ``state_dict()``/``load_state_dict()`` follow torchdata's
    ``StatefulDataLoader`` protocol (checkpoint the loader, mid-epoch, with workers);
    ``GPUPrefetcher.state_dict()`` or ``state_dict(batches_seen)`` give a state that
    resumes exactly with any number of workers and ranks.

    On object storage (``s3://…``) only the manifest is fetched up front; each shard is
    streamed into ``$LAKEHOUSE_CACHE`` when a batch first needs it, ``readahead`` batches
    ahead in background threads, and hashed as it downloads. The cache keeps under
    ``cache_limit`` (default ``$LAKEHOUSE_CACHE_LIMIT`` or 50GB) by evicting the least
    recently used shards, and is safe to share between processes.
    """

    def __init__(
        self,
        path: str | Path,
        split: str = "train",
        *,
        batch_size: int = 4096,
        shuffle: bool = False,
        seed: int = 0,
        columns: list[str] | None = None,
        shuffle_buffer: int | None = None,
        block_rows: int | None = None,
        uneven: Uneven = "pad",
        rank: int | None = None,
        world_size: int | None = None,
        verify: bool = False,
        cache_limit: str | int | None = None,
        readahead: int = 4,
    ) -> None:
        super().__init__()
        self.opened = open_split(path, split, columns, verify=verify, cache_limit=cache_limit)
        self.folder, self.manifest, self.remote = self.opened.version
        self.split, self.entries, self.columns = split, self.opened.entries, self.opened.columns
        self.layout = self.opened.layout  # a row of a row-major batch
        self.readahead = readahead if self.remote is not None else 0
        self.batch_size = batch_size
        self.shuffle, self.seed = shuffle, seed
        self.shuffle_buffer = 8 * batch_size if shuffle_buffer is None else shuffle_buffer
        self.block_rows = block_rows or batch_size
        self.uneven: Uneven = uneven
        self.rank, self.world_size = rank_and_world(rank, world_size)
        self._plan()  # refuse bad settings here, not in a worker

    @property
    def num_samples(self) -> int:
        """Rows of the split (all ranks together)."""
        return sum(e.rows for e in self.entries)

    @property
    def vocabularies(self) -> dict[str, list[str]]:
        """Category names of the int32-coded columns (code i is ``vocabularies[col][i]``)."""
        return self.manifest.vocabularies

    def decode(self, column: str, codes: torch.Tensor | np.ndarray | list[int]) -> list[str | None]:
        """Category names of int32 codes of ``column`` (-1, a missing category, is None)."""
        return decode(self.manifest, column, codes)

    @property
    def samples(self) -> ShardSamples:
        """The same split and columns as a map-style dataset of single samples."""
        return ShardSamples.of(self.opened)

    def __getitem__(self, index: int) -> Any:
        raise TypeError(
            "ShardDataset is an iterable of batches (ds[i] is not a sample): use "
            f"ds.samples[{index!r}] for one sample, or iterate the dataset for batches"
        )

    def __repr__(self) -> str:
        order = (
            f"shuffle=True, seed={self.seed}, shuffle_buffer={self.shuffle_buffer}"
            if self.shuffle
            else "shuffle=False"
        )
        ranks = f", rank {self.rank} of {self.world_size}" if self.world_size > 1 else ""
        return (
            f"ShardDataset({self.manifest.model} {self.manifest.version}, split={self.split!r}, "
            f"{self.num_samples:,} rows, {len(self):,} batches of {self.batch_size}{ranks}, "
            f"{order}, columns={list(self.columns)})"
        )

    def width(self, column: str) -> int:
        """Values per sample of ``column``: 1, or N for a fixed-size list such as an embedding."""
        kind = next(c["type"] for c in self.manifest.schema if c["name"] == column)
        size = re.search(r"\[(\d+)\]$", kind)
        return int(size.group(1)) if size else 1

    def _identity(self) -> dict[str, Any]:
        return {
            "model": self.manifest.model,
            "version": self.manifest.version,
            "split": self.split,
            "seed": self.seed,
            "shuffle": self.shuffle,
            "shuffle_buffer": self.shuffle_buffer,
            "block_rows": self.block_rows,
        }

    def _maker(self, epoch: int, in_worker: bool) -> Make:
        order = self._order(epoch)
        cache = self.opened.cache(random_rows=self._random_rows)

        def make(positions: np.ndarray, padding: bool) -> Batch:
            # a batch that is one run of one shard (positions of a real batch are a range)
            lo, hi = int(positions[0]), int(positions[-1]) + 1
            run = None if padding or in_worker else order.run(lo, hi)
            if run is not None:
                return self._view(cache, run, self._extra(padding))
            # a real batch's positions are the range lo..hi-1; a filler's wrap around the end
            rows = Rows(*order.rows(positions), padding) if padding else order.batch(lo, hi)
            return self._tensors(cache, rows, in_worker=in_worker)

        def ahead(positions: np.ndarray) -> None:  # read-ahead: fetch a later batch's shards
            cache.prefetch(np.unique(order.rows(positions)[0]).tolist())

        make.ahead = ahead  # type: ignore[attr-defined]
        make.close = cache.settle  # type: ignore[attr-defined]
        return make

    @property
    def _random_rows(self) -> bool:
        """Batches gather rows in random order: shuffled with a shuffle buffer."""
        return self.shuffle and self.shuffle_buffer > 0

    def _order(self, epoch: int | None = None) -> EpochOrder:
        return EpochOrder(
            [e.rows for e in self.entries],
            block_rows=self.block_rows,
            shuffle=self.shuffle,
            shuffle_buffer=self.shuffle_buffer,
            seed=self.seed,
            epoch=self.epoch if epoch is None else epoch,
            batch_size=self.batch_size,
        )

    def _plan(self, start: int | None = None) -> RankPlan:
        return RankPlan(
            total=self.num_samples,
            start=self._start if start is None else start,
            batch_size=self.batch_size,
            rank=self.rank,
            world_size=self.world_size,
            uneven=self.uneven,
        )

    def _view(self, cache: ShardCache, run: tuple[int, int, int], extra: Extra) -> Batch:
        """Rows ``lo..hi`` of one shard as views of the map (no copy), with ``extra``."""
        shard, lo, hi = run
        columns = cache[shard].columns
        batch = Batch({name: torch.from_numpy(columns[name][lo:hi]) for name in self.columns})
        return with_constants(batch, hi - lo, extra)

    def _extra(self, padding: bool) -> Extra:
        """Constant columns a batch gets beside the data: ``is_padding`` with ``uneven="pad"``."""
        return {PADDING_KEY: (padding, torch.bool)} if self.uneven == "pad" else {}

    def _tensors(
        self, cache: ShardCache, rows: Rows, *, in_worker: bool = False, extra: Extra | None = None
    ) -> Batch | RingBatch:
        """The batch of ``rows`` with the constant columns ``extra`` (default :meth:`_extra`).
        In the trainer's process a run of rows is views of the map; a DataLoader worker
        gathers the rows into a slot of its ring (:meth:`_through_ring`), else into one
        shared buffer that torch sends as it is."""
        extra = self._extra(rows.padding) if extra is None else extra
        run = rows.contiguous()
        if run is not None and not in_worker:  # one run of rows: views of the map, no copy
            return self._view(cache, run, extra)
        if in_worker:
            sent = self._through_ring(cache, rows, self.layout, extra)
            if sent is not None:
                return sent
        pool = None if in_worker else self.__dict__.setdefault("_pool", BufferPool())
        layout = self.layout if self._random_rows else None  # rows scattered: copy whole rows
        batch = Batch(_gather(cache, rows, self.columns, layout, shared=in_worker, pool=pool))
        return with_constants(batch, len(rows.row), extra)

    # slots of each worker's ring: the batch the trainer holds, DataLoader's prefetch (2 per
    # worker by default), the one being filled, and slack for a batch not yet released
    worker_slots = 6

    def _through_ring(
        self, cache: ShardCache, rows: Rows, layout: RowLayout, extra: Extra
    ) -> RingBatch | None:
        """The batch gathered into a slot of this worker's ring (:mod:`.ring`), as the
        message that carries it to the trainer; None when every slot is still waiting."""
        count, width = len(rows.row), layout.row_bytes
        ring: Ring | None = self.__dict__.get("_ring")
        if ring is None or ring.pid != os.getpid() or not ring.fits(count * width):
            ring = self.__dict__["_ring"] = Ring(
                self.worker_slots, max(count, self.batch_size) * width
            )
        slot = ring.acquire()
        if slot is None:
            return None
        shard, row, spans = _runs(rows)
        matrix = ring.slot(slot)[: count * width].view(count, width)
        columns = _columns(layout, self.columns)
        if self._random_rows:  # scattered rows: whole rows from the shard's row-major copy
            _copy_rows(cache, shard, row, spans, matrix)
        else:  # runs of rows: each column's run, read in order, into its place in the rows
            _copy_columns(cache, shard, row, spans, strided(matrix, count, columns))
        return ring.message(slot, count, columns, extra)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_ring", None)  # a worker's own segment never travels
        state.pop("_pool", None)
        return state


def _runs(rows: Rows) -> tuple[np.ndarray, np.ndarray, list[tuple[int, int]]]:
    """A batch's rows as runs of one shard each, rows strictly ascending within a run, and
    the span of each run: as they come when the order made them so (a run ends where the
    shard changes or the rows stop ascending), else grouped by shard and sorted."""
    if rows.runs:
        shard, row = rows.shard, rows.row
        runs = np.flatnonzero((shard[1:] != shard[:-1]) | (row[1:] <= row[:-1])) + 1
    else:
        key = np.sort((rows.shard << 40) | rows.row)  # by shard, then row (rows < 2**40)
        shard, row = key >> 40, key & ((1 << 40) - 1)
        runs = np.flatnonzero(shard[1:] != shard[:-1]) + 1
    return shard, row, list(zip([0, *runs.tolist()], [*runs.tolist(), len(row)], strict=True))


def _copy_rows(
    cache: ShardCache,
    shard: np.ndarray,
    row: np.ndarray,
    spans: list[tuple[int, int]],
    matrix: torch.Tensor,
) -> None:
    """Whole rows from the shards' row-major copies into ``matrix`` (rows x row bytes)."""
    index = torch.from_numpy(row)
    for lo, hi in spans:  # torch's gather runs on its intra-op threads; numpy's on one
        source = torch.from_numpy(cache[int(shard[lo])].row_major)
        torch.index_select(source, 0, index[lo:hi], out=matrix[lo:hi])


def _copy_columns(
    cache: ShardCache,
    shard: np.ndarray,
    row: np.ndarray,
    spans: list[tuple[int, int]],
    out: dict[str, torch.Tensor],
) -> None:
    """Each column's rows into ``out`` (views, e.g. strided into row-major rows): a span of
    consecutive rows as one slice, any other as a take."""
    for lo, hi in spans:
        columns = cache[int(shard[lo])].columns
        first, last = int(row[lo]), int(row[hi - 1])
        for name, target in out.items():
            values = columns[name]
            if last - first == hi - lo - 1:  # ascending: a span this long is consecutive
                target[lo:hi].copy_(torch.from_numpy(values[first : last + 1]))
            else:
                np.take(values, row[lo:hi], axis=0, out=target[lo:hi].numpy())


def _gather(
    cache: ShardCache,
    rows: Rows,
    names: list[str],
    layout: RowLayout | None,
    *,
    shared: bool,
    pool: BufferPool | None = None,
) -> dict[str, torch.Tensor]:
    """Copy a batch's rows into one fresh buffer.

    Rows are grouped by shard and sorted within it: a batch is a set of samples to SGD, and
    sorted runs turn the copy into a few sequential reads instead of a scatter. With a
    ``layout`` (rows in random order), one ``take`` per shard copies whole rows from its
    row-major copy, and each column is a strided view of that buffer (row stride
    ``row_bytes``); without, one ``take`` per shard and column.
    """
    shard, row, spans = _runs(rows)
    if layout is not None:
        return _gather_rows(cache, shard, row, spans, names, layout, shared, pool)
    first = cache[int(shard[0])]
    out = _allocate(len(row), {name: first.columns[name] for name in names}, shared)
    _copy_columns(cache, shard, row, spans, out)
    return out


def _gather_rows(
    cache: ShardCache,
    shard: np.ndarray,
    row: np.ndarray,
    spans: list[tuple[int, int]],
    names: list[str],
    layout: RowLayout,
    shared: bool,
    pool: BufferPool | None = None,
) -> dict[str, torch.Tensor]:
    count, width = len(row), layout.row_bytes
    buffer = pool.take(count * width) if pool is not None else _buffer(count * width, shared)
    _copy_rows(cache, shard, row, spans, buffer[: count * width].view(count, width))
    return strided(buffer, count, _columns(layout, names))


_COLUMNS: dict[tuple[int, tuple[str, ...]], tuple[RowLayout, list[Column]]] = {}


def _columns(layout: RowLayout, names: list[str]) -> list[Column]:
    """Where each column lies in a row-major batch (dtype, shape after the row axis, strides
    and offset in the dtype's elements): worked out once per layout and column list, not per
    batch."""
    key = (id(layout), tuple(names))
    cached = _COLUMNS.get(key)
    if cached is None or cached[0] is not layout:
        views = []
        for name in names:
            field = layout.fields[name]
            size = np.dtype(field.dtype).itemsize
            row = layout.row_bytes // size
            tail, stride = ((field.width,), (row, 1)) if field.width > 1 else ((), (row,))
            views.append(
                Column(name, _TORCH_DTYPES[field.dtype], tail, stride, field.offset // size)
            )
        cached = _COLUMNS[key] = (layout, views)
    return cached[1]


_TORCH_DTYPES = {
    "int64": torch.int64,
    "int32": torch.int32,
    "int16": torch.int16,
    "int8": torch.int8,
    "uint8": torch.uint8,
    "float64": torch.float64,
    "float32": torch.float32,
}


def _buffer(size: int, shared: bool) -> torch.Tensor:
    """A fresh uint8 buffer; in shared memory when it goes to the trainer from a worker."""
    size = max(size, 8)
    if shared:
        storage = torch.UntypedStorage._new_shared(size)
        return torch.empty(0, dtype=torch.uint8).set_(storage, 0, (size,), (1,))
    return torch.empty(size, dtype=torch.uint8)


def _allocate(
    rows: int, like: dict[str, np.ndarray], shared: bool, align: int = 64
) -> dict[str, torch.Tensor]:
    """Tensors of ``rows`` rows shaped like the given columns, carved out of one buffer."""
    layout, total = {}, 0
    for name, column in like.items():
        shape = (rows, *column.shape[1:])
        layout[name] = (total, column.dtype, shape)
        total += -(-int(np.prod(shape)) * column.dtype.itemsize // align) * align
    buffer = _buffer(total, shared)
    out = {}
    for name, (offset, dtype, shape) in layout.items():
        size = int(np.prod(shape)) * dtype.itemsize
        typed = torch.from_numpy(np.empty(0, dtype)).dtype
        out[name] = buffer[offset : offset + size].view(typed).view(shape)
    return out


def rank_and_world(rank: int | None, world_size: int | None) -> tuple[int, int]:
    """Explicit arguments, else the initialised process group, else torchrun's environment."""
    if rank is not None or world_size is not None:
        if rank is None or world_size is None:
            raise ValueError("pass both rank and world_size, or neither")
        return rank, world_size
    distributed = torch.distributed
    if distributed.is_available() and distributed.is_initialized():
        return distributed.get_rank(), distributed.get_world_size()
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
