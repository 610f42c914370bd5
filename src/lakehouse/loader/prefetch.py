"""GPUPrefetcher: batches copied to the GPU several steps ahead of the training loop."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from typing import Any

import torch

Batch = dict[str, torch.Tensor]


class GPUPrefetcher:
    """Wrap a loader of ``dict[str, Tensor]`` batches; yields the same dicts on ``device``.

    On CUDA it owns a ring of ``depth`` pinned host buffers, one side stream and one event
    per buffer: a batch is copied into a pinned buffer, sent with ``non_blocking=True`` on
    the side stream, and the training stream waits on the buffer's event before using it.
    A buffer is refilled only after its event says the copy finished, and each GPU tensor is
    marked as used by the training stream so the allocator does not hand it out early.
    Without CUDA it yields the CPU batches as they come and never pins memory.

    It also counts the batches it has handed out, so :meth:`state_dict` is exact even while
    ``depth`` more batches are already in flight.
    """

    def __init__(
        self, loader: Iterable[Batch], device: str | torch.device = "cuda", depth: int = 3
    ):
        if depth < 1:
            raise ValueError(f"depth must be at least 1, got {depth}")
        self.loader, self.depth = loader, depth
        wanted = torch.device(device)
        self.on_gpu = wanted.type == "cuda" and torch.cuda.is_available()
        self.device = wanted if self.on_gpu else torch.device("cpu")
        self.batches_seen = 0
        self._stream: torch.cuda.Stream | None = None
        self._pinned: list[Batch] = [{} for _ in range(depth)]
        self._copied: list[torch.cuda.Event | None] = [None] * depth

    def __len__(self) -> int:
        return len(self.loader)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[Batch]:
        self.batches_seen = 0
        batches = iter(self.loader)
        if not self.on_gpu:
            for batch in batches:
                self.batches_seen += 1
                yield batch
            return
        if self._stream is None:
            self._stream = torch.cuda.Stream(self.device)
        in_flight: deque[tuple[int, Batch]] = deque()
        slot = 0
        for batch in batches:
            in_flight.append((slot, self._send(slot, batch)))
            slot = (slot + 1) % self.depth
            if len(in_flight) == self.depth:
                yield self._receive(*in_flight.popleft())
        while in_flight:
            yield self._receive(*in_flight.popleft())

    def _send(self, slot: int, batch: Batch) -> Batch:
        event = self._copied[slot]
        if event is not None:
            event.synchronize()  # the last copy out of this pinned buffer has finished
        pinned = self._pinned[slot]
        staged = {}
        for name, tensor in batch.items():
            buffer = pinned.get(name)
            if buffer is None or buffer.numel() < tensor.numel() or buffer.dtype != tensor.dtype:
                buffer = pinned[name] = torch.empty(
                    tensor.numel(), dtype=tensor.dtype, pin_memory=True
                )
            staged[name] = buffer[: tensor.numel()].view(tensor.shape)
            staged[name].copy_(tensor)
        assert self._stream is not None
        with torch.cuda.stream(self._stream):
            on_device = {n: t.to(self.device, non_blocking=True) for n, t in staged.items()}
            event = self._copied[slot] = torch.cuda.Event()
            event.record(self._stream)
        return on_device

    def _receive(self, slot: int, on_device: Batch) -> Batch:
        current = torch.cuda.current_stream(self.device)
        event = self._copied[slot]
        assert event is not None
        current.wait_event(event)
        for tensor in on_device.values():
            tensor.record_stream(current)
        self.batches_seen += 1
        return on_device

    def state_dict(self) -> dict[str, Any]:
        """The dataset's resume state after the batches handed out so far."""
        dataset = getattr(self.loader, "dataset", self.loader)
        return dataset.state_dict(self.batches_seen)  # type: ignore[union-attr]

    def load_state_dict(self, state: dict[str, Any]) -> None:
        dataset = getattr(self.loader, "dataset", self.loader)
        dataset.load_state_dict(state)  # type: ignore[union-attr]
