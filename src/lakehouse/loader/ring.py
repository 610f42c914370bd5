"""Batches from DataLoader workers through a ring of shared-memory slots.

A batch made in a worker must reach the trainer's process. Sent as torch tensors, every batch
costs a fresh shared-memory segment (created, faulted in, its file descriptor passed over a
socket, and mapped again) in both processes. Instead each worker gathers its batches into
one of a few slots, each a shared segment it made once and sends once; after that a batch
travels as its slot's number and the columns' layout, and the trainer's process hands out
views of the slot: no copy on either side.

A slot is written again only when the trainer's process holds no tensor of its batch any
more: that process frees a slot when it sees (by the storage's use count, which every view
raises) that nothing uses it, each time a batch of that worker arrives. A worker whose slots
are all in use (batches the trainer keeps, or a trainer slower than its workers) sends that
batch the usual way, as fresh tensors: it never waits on a trainer that may have stopped.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import torch

# how long a worker waits for a free slot before it sends the batch the usual way
WAIT_S = 0.05
# constant columns beside a batch's data: name -> (value, dtype), e.g. is_padding
Extra = dict[str, tuple[Any, torch.dtype]]
_ALIGN = 64


@dataclass(frozen=True)
class Column:
    """Where one column of a batch lies in its slot, in elements of its dtype."""

    name: str
    dtype: torch.dtype
    tail: tuple[int, ...]  # the shape after the row axis
    stride: tuple[int, ...]
    offset: int


def strided(buffer: torch.Tensor, rows: int, columns: Iterable[Column]) -> dict[str, torch.Tensor]:
    """Each column of ``rows`` row-major rows in ``buffer`` as a strided view of it."""
    columns = list(columns)
    typed = {dtype: buffer.view(dtype) for dtype in {c.dtype for c in columns}}
    return {c.name: typed[c.dtype].as_strided((rows, *c.tail), c.stride, c.offset) for c in columns}


def with_constants(batch: dict[str, torch.Tensor], rows: int, extra: Extra):
    """``batch`` with a constant column of ``rows`` values for each of ``extra``."""
    for name, (fill, dtype) in extra.items():
        batch[name] = torch.full((rows,), fill, dtype=dtype)
    return batch


def _shared(nbytes: int) -> torch.Tensor:
    storage = torch.UntypedStorage._new_shared(nbytes)
    return torch.empty(0, dtype=torch.uint8).set_(storage, 0, (nbytes,), (1,))


class Ring:
    """``slots`` slots of ``slot_bytes``, each its own shared segment, made in a worker, and
    one flag per slot (1: its batch may still be in use in the trainer's process)."""

    def __init__(self, slots: int, slot_bytes: int) -> None:
        self.slots, self.slot_bytes = slots, -(-slot_bytes // _ALIGN) * _ALIGN
        self.key = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
        self.pid = os.getpid()
        self.memory = [_shared(self.slot_bytes) for _ in range(slots)]
        self.flags = _shared(8 * slots).view(torch.int64)
        self.flags.zero_()
        self._next = 0
        self._sent: set[int] = set()
        self._flags_sent = False

    def fits(self, nbytes: int) -> bool:
        return nbytes <= self.slot_bytes

    def acquire(self) -> int | None:
        """A free slot, marked taken; None when none frees within :data:`WAIT_S`."""
        deadline = None
        while True:
            for step in range(self.slots):
                slot = (self._next + step) % self.slots
                if int(self.flags[slot]) == 0:
                    self.flags[slot] = 1
                    self._next = (slot + 1) % self.slots
                    return slot
            now = time.monotonic()
            deadline = deadline or now + WAIT_S
            if now >= deadline:
                return None
            time.sleep(0.0002)

    def slot(self, slot: int) -> torch.Tensor:
        return self.memory[slot]

    def message(self, slot: int, rows: int, columns: list[Column], extra: Extra) -> RingBatch:
        """What the worker sends for a batch in ``slot``: each segment with its first use."""
        memory = None if slot in self._sent else self.memory[slot]
        flags = None if self._flags_sent else self.flags
        self._sent.add(slot)
        self._flags_sent = True
        state = (self.key, self.pid, flags, memory, slot, rows, tuple(columns), extra)
        return RingBatch(*state)


class RingBatch:
    """A batch waiting in a ring's slot; unpickled in the trainer's process, it is a
    :class:`lakehouse.loader.resume.Batch` of views of the slot."""

    def __init__(self, *state: Any) -> None:
        self.state = state
        self.rows: int = state[5]

    def __reduce__(self):
        return (_receive, self.state)


@dataclass
class _Received:
    """The trainer process's side of one worker's ring."""

    pid: int
    flags: torch.Tensor
    slots: dict[int, torch.Tensor] = field(default_factory=dict)
    lent: set[int] = field(default_factory=set)  # slots whose batch was handed out

    def release(self) -> None:
        """Free the slots whose batch no tensor uses any more."""
        for slot in [s for s in self.lent if _unused(self.slots[s])]:
            self.lent.discard(slot)
            self.flags[slot] = 0  # the worker may write this slot again


# the trainer process's view of each worker's ring, by ring key
_RINGS: dict[str, _Received] = {}


def _receive(
    key: str,
    pid: int,
    flags: torch.Tensor | None,
    memory: torch.Tensor | None,
    slot: int,
    rows: int,
    columns: tuple[Column, ...],
    extra: Extra,
) -> Any:
    from lakehouse.loader.resume import Batch

    if flags is not None:
        _forget_rings_of_ended_workers()
        _RINGS[key] = _Received(pid, flags)
    ring = _RINGS[key]
    if memory is not None:
        ring.slots[slot] = memory
    ring.release()
    ring.lent.add(slot)
    return with_constants(Batch(strided(ring.slots[slot], rows, columns)), rows, extra)


def _forget_rings_of_ended_workers() -> None:
    for key, ring in list(_RINGS.items()):
        try:
            os.kill(ring.pid, 0)
        except ProcessLookupError:
            del _RINGS[key]
        except PermissionError:
            pass


class BufferPool:
    """Batch buffers that reuse their pages: a buffer is handed out again only when no
    tensor made from it is alive any more (its storage's use count, which every view of
    it raises), so a batch a caller keeps is never overwritten; otherwise a new one is made.
    Fresh buffers cost a page fault per 4 KB on first write, as much as the copy itself."""

    def __init__(self, keep: int = 6) -> None:
        self.keep = keep
        self._buffers: list[torch.Tensor] = []

    def take(self, nbytes: int) -> torch.Tensor:
        nbytes = max(nbytes, 8)
        for buffer in self._buffers:
            if buffer.numel() >= nbytes and _unused(buffer):
                return buffer[:nbytes]
        buffer = torch.empty(nbytes, dtype=torch.uint8)
        if _COUNTS:
            self._buffers = [*self._buffers[-(self.keep - 1) :], buffer]
        return buffer[:nbytes]


_COUNTS = hasattr(torch._C, "_storage_Use_Count")  # without it, no buffer is reused
# the count of a storage no tensor shares: the pool's tensor and the storage object asked
_ALONE = 2


def _unused(buffer: torch.Tensor) -> bool:
    return torch._C._storage_Use_Count(buffer.untyped_storage()._cdata) <= _ALONE
