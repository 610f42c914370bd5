"""The order of one epoch's samples, and which of them each rank and worker delivers.

Everything here is arithmetic on row counts; no data is read. The order depends only on
(seed, epoch, shuffle settings), never on the number of ranks or workers, which is what
makes resume exact when those change.

An epoch is a *stream* of sample positions 0..N-1:

1. The split's rows are cut into blocks of ``block_rows`` consecutive rows per shard.
   Shuffling permutes the blocks (so both shard and block order change with the epoch).
2. With a shuffle buffer, the stream is cut into windows of ``shuffle_buffer`` positions
   (rounded down to whole batches) and the rows inside a window are mixed: each of the
   window's batches gets a random set of its rows (a random permutation cut into batches),
   and inside a batch the rows keep the window's order, so a batch is a few ascending runs
   of rows, one per block, which the loader copies without sorting. This is a shuffle buffer
   with a deterministic result: the same (seed, epoch) gives the same order in every process.
3. The stream is cut into batches of ``batch_size`` from the resume position on. Batch
   ``g`` goes to rank ``g % world_size``; a rank's ``j``-th batch goes to DataLoader worker
   ``j % num_workers``, which is the order DataLoader collects them in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

Uneven = Literal["pad", "drop"]


@dataclass(frozen=True)
class Rows:
    """Where a batch's samples live: parallel arrays of shard index and row in that shard."""

    shard: np.ndarray  # int64
    row: np.ndarray  # int64
    padding: bool = False  # True for the filler batches that even out ranks
    # rows come as ascending runs (one per block), so a copy needs no sort first
    runs: bool = False

    def contiguous(self) -> tuple[int, int, int] | None:
        """(shard, first row, stop) when the batch is one run of rows in one shard."""
        n = len(self.row)
        if n == 0 or not (self.shard == self.shard[0]).all():
            return None
        first = int(self.row[0])
        if int(self.row[-1]) - first + 1 != n or (n > 1 and not (np.diff(self.row) == 1).all()):
            return None
        return int(self.shard[0]), first, first + n


class EpochOrder:
    """The sample stream of one epoch over shards of the given row counts."""

    def __init__(
        self,
        shard_rows: list[int],
        *,
        block_rows: int,
        shuffle: bool,
        shuffle_buffer: int,
        seed: int,
        epoch: int,
        batch_size: int | None = None,
    ) -> None:
        if block_rows < 1:
            raise ValueError(f"block_rows must be at least 1, got {block_rows}")
        shard, start, length = _blocks(shard_rows, block_rows)
        if shuffle:
            order = np.random.default_rng((seed, epoch)).permutation(len(shard))
            shard, start, length = shard[order], start[order], length[order]
        self.block_shard, self.block_start = shard, start
        self.block_cum = np.concatenate([[0], np.cumsum(length)]).astype(np.int64)
        self.total = int(self.block_cum[-1])
        self.mixes = shuffle and shuffle_buffer >= 2 * block_rows
        # a window's rows are dealt out to batches of ``group`` positions
        self.group = batch_size or block_rows
        if self.mixes:  # windows of whole batches, so a batch is one deal of one window
            span = max(self.group, shuffle_buffer // self.group * self.group)
            self.window_cum = np.append(np.arange(0, self.total, span), self.total)
        else:  # nothing mixes: a window per block
            self.window_cum = self.block_cum
        self._key = (seed, epoch)
        self._windows: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def run(self, lo: int, hi: int) -> tuple[int, int, int] | None:
        """(shard, first row, stop) when stream positions ``lo..hi-1`` are one run of rows
        of one shard (blocks kept whole and the range inside one block), else None."""
        if self.mixes or hi <= lo:
            return None
        block = int(np.searchsorted(self.block_cum, lo, side="right") - 1)
        if hi > self.block_cum[block + 1]:
            return None
        first = int(self.block_start[block] + lo - self.block_cum[block])
        return int(self.block_shard[block]), first, first + hi - lo

    def batch(self, lo: int, hi: int, padding: bool = False) -> Rows:
        """The rows of stream positions ``lo..hi-1``; a batch that is one deal of a window
        (or any batch when nothing mixes) comes as ascending runs of rows."""
        window = int(np.searchsorted(self.window_cum, lo, side="right") - 1)
        start = int(self.window_cum[window])
        if hi <= self.window_cum[window + 1] and (
            not self.mixes or ((lo - start) % self.group == 0 and hi - lo <= self.group)
        ):
            shard, row = self._window(window)
            return Rows(shard[lo - start : hi - start], row[lo - start : hi - start], padding, True)
        shard, row = self.rows(np.arange(lo, hi, dtype=np.int64))
        return Rows(shard, row, padding, not self.mixes)

    def rows(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Shard index and row of each stream position."""
        window = np.searchsorted(self.window_cum, positions, side="right") - 1
        first = int(window[0]) if len(window) else 0
        if len(window) and (window == first).all():  # the usual batch: inside one window
            shard, row = self._window(first)
            local = positions - self.window_cum[first]
            return shard[local], row[local]
        shard, row = np.empty_like(positions), np.empty_like(positions)
        for w in np.unique(window):
            here = window == w
            window_shard, window_row = self._window(int(w))
            local = positions[here] - self.window_cum[w]
            shard[here], row[here] = window_shard[local], window_row[local]
        return shard, row

    def _window(self, window: int) -> tuple[np.ndarray, np.ndarray]:
        """Shard and row of every stream position in ``window``, in stream order: its
        blocks' rows, dealt out to its batches when the window mixes them. Computed once
        per window, so a batch is two slices; a worker moves forward, so the last few are
        kept."""
        if window not in self._windows:
            if len(self._windows) >= 4:
                self._windows.pop(next(iter(self._windows)))
            lo, hi = int(self.window_cum[window]), int(self.window_cum[window + 1])
            first = int(np.searchsorted(self.block_cum, lo, side="right") - 1)
            last = int(np.searchsorted(self.block_cum, hi, side="left"))
            lengths = np.diff(self.block_cum[first : last + 1])
            shard = np.repeat(self.block_shard[first:last], lengths)
            offset = self.block_start[first:last] - self.block_cum[first:last]
            begin = int(self.block_cum[first])  # windows need not start on a block
            row = np.repeat(offset, lengths) + np.arange(begin, begin + len(shard), dtype=np.int64)
            shard, row = shard[lo - begin : hi - begin], row[lo - begin : hi - begin]
            if self.mixes:  # deal: a random permutation cut into batches, each kept in order
                rng = np.random.default_rng((*self._key, 2, window))
                deal = rng.permutation(hi - lo) // self.group
                small = np.int16 if (hi - lo - 1) // self.group < 2**15 else np.int64
                mixed = np.argsort(deal.astype(small), kind="stable")  # radix sort for int16
                shard, row = shard[mixed], row[mixed]
            self._windows[window] = (shard, row)
        return self._windows[window]


def _blocks(shard_rows: list[int], block_rows: int) -> tuple[np.ndarray, ...]:
    shard, start, length = [], [], []
    for index, rows in enumerate(shard_rows):
        for first in range(0, rows, block_rows):
            shard.append(index)
            start.append(first)
            length.append(min(block_rows, rows - first))
    return (np.asarray(shard, np.int64), np.asarray(start, np.int64), np.asarray(length, np.int64))


@dataclass(frozen=True)
class RankPlan:
    """The batches one rank delivers in one pass, from stream position ``start`` on."""

    total: int  # samples in the epoch
    start: int  # resume position in the stream
    batch_size: int
    rank: int
    world_size: int
    uneven: Uneven

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank {self.rank} is outside world size {self.world_size}")
        if self.uneven not in ("pad", "drop"):
            raise ValueError(f"uneven must be 'pad' or 'drop', got {self.uneven!r}")

    @property
    def batches(self) -> int:
        """Batches every rank delivers: equal across ranks, so DDP never waits forever."""
        remaining = max(0, self.total - self.start)
        if self.uneven == "drop":
            return remaining // self.batch_size // self.world_size
        return _ceil_div(_ceil_div(remaining, self.batch_size), self.world_size)

    def positions(self, local: int) -> tuple[np.ndarray, bool]:
        """Stream positions of this rank's ``local``-th batch, and whether it is padding."""
        batch = local * self.world_size + self.rank
        lo = self.start + batch * self.batch_size
        if lo < self.total:
            return np.arange(lo, min(lo + self.batch_size, self.total), dtype=np.int64), False
        # a filler batch: real samples from the start of the epoch, marked as padding
        return np.arange(lo, lo + self.batch_size, dtype=np.int64) % self.total, True

    def position_after(self, batches_seen: int) -> int:
        """Stream position once every rank has consumed ``batches_seen`` batches."""
        return min(self.total, self.start + batches_seen * self.world_size * self.batch_size)


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def worker_batches(batches: int, worker: int, num_workers: int) -> range:
    """A worker's share of a rank's batches, in the order DataLoader collects them."""
    return range(worker, batches, num_workers)
