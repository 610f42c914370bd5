"""ShardDataset: whole batches of tensors sliced out of memory-mapped Arrow shards."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from lakehouse.loader.plan import EpochOrder, RankPlan, Rows, Uneven, worker_batches
from lakehouse.loader.shards import (
    LoaderError,
    ShardCache,
    check_columns,
    open_version,
    split_entries,
    verify_checksums,
)
from lakehouse.shardformat import RowLayout

PADDING_KEY = "is_padding"
STATE_FORMAT = 1
# the settings that decide the sample order; a state saved under others cannot resume exactly
_ORDER_KEYS = ("model", "version", "split", "seed", "shuffle", "shuffle_buffer", "block_rows")


class ShardDataset(IterableDataset):
    """Batches of one split of a shard version, as ``dict[column, Tensor]``.

    Use with ``DataLoader(ds, batch_size=None, num_workers=n)``: the dataset batches itself.
    Every sample of an epoch is delivered exactly once across workers and ranks; each rank
    gets the same number of batches. With ``uneven="pad"`` (default) ranks that run out
    get filler batches of real samples, flagged in ``batch["is_padding"]`` so the loss can
    mask them; with ``"drop"`` the samples that do not fill a batch on every rank are left
    out. Call :meth:`set_epoch` at the start of each epoch, as with DistributedSampler
    (``persistent_workers=True`` would keep workers on the old epoch, so do not use it).

    Order: blocks of ``block_rows`` rows (default ``batch_size``) are shuffled by (seed,
    epoch), then rows are mixed within windows of ``shuffle_buffer`` rows (default
    8 x ``batch_size``; 0 keeps blocks whole, so batches are zero-copy slices of the map).
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
    ) -> None:
        super().__init__()
        self.folder, self.manifest = open_version(path)
        self.split = split
        self.entries = split_entries(self.manifest, split)
        self.columns = check_columns(self.manifest, columns)
        if verify:
            verify_checksums(self.folder)
        self.batch_size = batch_size
        self.shuffle, self.seed = shuffle, seed
        self.shuffle_buffer = 8 * batch_size if shuffle_buffer is None else shuffle_buffer
        self.block_rows = block_rows or batch_size
        self.uneven: Uneven = uneven
        self.rank, self.world_size = _rank_and_world(rank, world_size)
        self.epoch = 0
        self._start = 0  # stream position this pass begins at (non-zero after a resume)
        self._plan()  # refuse bad settings here, not in a worker

    @property
    def num_samples(self) -> int:
        """Rows of the split (all ranks together)."""
        return sum(e.rows for e in self.entries)

    @property
    def vocabularies(self) -> dict[str, list[str]]:
        """Category names of the int32-coded columns (code i is ``vocabularies[col][i]``)."""
        return self.manifest.vocabularies

    def width(self, column: str) -> int:
        """Values per sample of ``column``: 1, or N for a fixed-size list such as an embedding."""
        kind = next(c["type"] for c in self.manifest.schema if c["name"] == column)
        size = re.search(r"\[(\d+)\]$", kind)
        return int(size.group(1)) if size else 1

    def __len__(self) -> int:
        """Batches this rank delivers in the coming pass."""
        return self._plan().batches

    def set_epoch(self, epoch: int) -> None:
        """Reshuffle for ``epoch``; a resumed epoch keeps its resume position."""
        if epoch != self.epoch:
            self.epoch, self._start = epoch, 0

    def state_dict(self, batches_seen: int) -> dict[str, Any]:
        """Where to resume once every rank has consumed ``batches_seen`` batches of this pass
        (GPUPrefetcher.state_dict() counts them for you)."""
        return {
            "format": STATE_FORMAT,
            "model": self.manifest.model,
            "version": self.manifest.version,
            "split": self.split,
            "seed": self.seed,
            "shuffle": self.shuffle,
            "shuffle_buffer": self.shuffle_buffer,
            "block_rows": self.block_rows,
            "epoch": self.epoch,
            "position": self._plan().position_after(batches_seen),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a saved position: the next pass delivers exactly the samples of that
        epoch not consumed yet, also with another number of workers or ranks."""
        mine = self.state_dict(0)
        differ = [
            f"{k}: saved {state.get(k)!r}, now {mine[k]!r}"
            for k in _ORDER_KEYS
            if state.get(k) != mine[k]
        ]
        if state.get("format") != STATE_FORMAT or differ:
            raise LoaderError(
                "cannot resume exactly from this state, the sample order differs ("
                + ("; ".join(differ) or f"state format {state.get('format')!r}")
                + ")"
            )
        self.epoch, self._start = int(state["epoch"]), int(state["position"])

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        order, plan = self._order(), self._plan()
        cache = ShardCache(self.folder, self.manifest, self.entries, self.columns)
        for local in worker_batches(plan.batches, worker, workers):
            positions, padding = plan.positions(local)
            shard, row = order.rows(positions)
            yield self._tensors(cache, Rows(shard, row, padding), in_worker=info is not None)

    def _order(self) -> EpochOrder:
        return EpochOrder(
            [e.rows for e in self.entries],
            block_rows=self.block_rows,
            shuffle=self.shuffle,
            shuffle_buffer=self.shuffle_buffer,
            seed=self.seed,
            epoch=self.epoch,
        )

    def _plan(self) -> RankPlan:
        return RankPlan(
            total=self.num_samples,
            start=self._start,
            batch_size=self.batch_size,
            rank=self.rank,
            world_size=self.world_size,
            uneven=self.uneven,
        )

    def _tensors(
        self, cache: ShardCache, rows: Rows, *, in_worker: bool = False
    ) -> dict[str, torch.Tensor]:
        # in a DataLoader worker the batch must be copied into shared memory to reach the
        # trainer anyway: copy it once, into one buffer (one shared segment per batch, not
        # one per column), and let torch send that buffer as it is
        run = rows.contiguous()
        if run is not None and not in_worker:  # one run of rows: views of the map, no copy
            shard, lo, hi = run
            columns = cache[shard].columns
            batch = {name: torch.from_numpy(columns[name][lo:hi]) for name in self.columns}
        else:
            batch = _gather(cache, rows, self.columns, self.manifest.row_layout, shared=in_worker)
        if self.uneven == "pad":
            batch[PADDING_KEY] = torch.full((len(rows.row),), rows.padding, dtype=torch.bool)
        return batch


def _gather(
    cache: ShardCache, rows: Rows, names: list[str], layout: RowLayout | None, *, shared: bool
) -> dict[str, torch.Tensor]:
    """Copy a batch's rows into one fresh buffer.

    Rows are grouped by shard and sorted within it: a batch is a set of samples to SGD, and
    sorted runs turn the copy into a few sequential reads instead of a scatter. With the
    shards' row-major column, one ``take`` per shard copies whole rows, and each column is
    a strided view of that buffer (row stride ``row_bytes``); without it (older versions),
    one ``take`` per shard and column.
    """
    key = np.sort((rows.shard << 40) | rows.row)  # by shard, then row (rows < 2**40)
    shard, row = key >> 40, key & ((1 << 40) - 1)
    runs = np.flatnonzero(np.diff(shard)) + 1
    spans = list(zip([0, *runs.tolist()], [*runs.tolist(), len(row)], strict=True))
    first = cache[int(shard[0])]
    if layout is not None and first.row_major is not None:
        return _gather_rows(cache, shard, row, spans, names, layout, shared)
    out = _allocate(len(row), {name: first.columns[name] for name in names}, shared)
    for lo, hi in spans:
        columns = cache[int(shard[lo])].columns
        for name in names:
            np.take(columns[name], row[lo:hi], axis=0, out=out[name].numpy()[lo:hi])
    return out


def _gather_rows(
    cache: ShardCache,
    shard: np.ndarray,
    row: np.ndarray,
    spans: list[tuple[int, int]],
    names: list[str],
    layout: RowLayout,
    shared: bool,
) -> dict[str, torch.Tensor]:
    count, width = len(row), layout.row_bytes
    buffer = _buffer(count * width, shared)
    matrix = buffer[: count * width].view(count, width)
    index = torch.from_numpy(row)
    for lo, hi in spans:  # torch's gather runs on its intra-op threads; numpy's on one
        source = torch.from_numpy(cache[int(shard[lo])].row_major)
        torch.index_select(source, 0, index[lo:hi], out=matrix[lo:hi])
    out = {}
    for name in names:
        field = layout.fields[name]
        size = np.dtype(field.dtype).itemsize
        typed = buffer.view(_TORCH_DTYPES[field.dtype])
        if field.width > 1:
            shape, stride = (count, field.width), (width // size, 1)
        else:
            shape, stride = (count,), (width // size,)
        out[name] = typed.as_strided(shape, stride, field.offset // size)
    return out


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


def _rank_and_world(rank: int | None, world_size: int | None) -> tuple[int, int]:
    """Explicit arguments, else the initialised process group, else torchrun's environment."""
    if rank is not None or world_size is not None:
        if rank is None or world_size is None:
            raise ValueError("pass both rank and world_size, or neither")
        return rank, world_size
    distributed = torch.distributed
    if distributed.is_available() and distributed.is_initialized():
        return distributed.get_rank(), distributed.get_world_size()
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
