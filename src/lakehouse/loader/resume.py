"""What every batch-yielding dataset here shares: an epoch that workers follow, and a resume
state that follows torchdata's StatefulDataLoader protocol and also resumes exactly with
another number of workers or ranks.

A dataset is a stream of units (samples for ShardDataset, whole batches for MixedDataset),
cut into batches by a :class:`RankPlan`; the subclass turns a batch's stream positions into
tensors. Batch ``j`` of a rank goes to DataLoader worker ``j % num_workers``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info
from torch.utils.data._utils.collate import default_collate_fn_map

from lakehouse.loader.plan import RankPlan, worker_batches
from lakehouse.loader.ring import RingBatch
from lakehouse.loader.shards import LoaderError

# 2: a shuffle buffer deals its window's rows out to batches (plan.EpochOrder); a state of
# format 1 was saved under another sample order, so it cannot resume exactly
STATE_FORMAT = 2
# what torchdata's StatefulDataLoader calls the parts of its own state
_LOADER_SNAPSHOT, _LOADER_DATASET = "_snapshot", "dataset_state"


class Batch(dict):
    """One batch, column name -> tensor: a plain dict, of its own type only so that
    DataLoader's default collate can refuse to batch batches."""


def _refuse_collate(batch, *, collate_fn_map=None):
    first = batch[0]
    samples = first.rows if isinstance(first, RingBatch) else len(next(iter(first.values())))
    raise LoaderError(
        f"DataLoader(batch_size={len(batch)}) is collating whole batches of "
        f"{samples} samples: the dataset batches itself. Use "
        "DataLoader(dataset, batch_size=None) and set the batch size on the dataset, "
        "ShardDataset(..., batch_size=N); for one sample at a time use ShardDataset.samples"
    )


# torch's documented way to extend default_collate: a collate function per element type
default_collate_fn_map[Batch] = _refuse_collate
default_collate_fn_map[RingBatch] = _refuse_collate  # a batch a worker sends through its ring


@dataclass(frozen=True)
class Pass:
    """One iterator of this process: its epoch and start position, which DataLoader worker
    runs it, and how many of that worker's batches it has handed out."""

    epoch: int
    start: int
    worker: int
    workers: int
    done: int = 0


Make = Callable[[np.ndarray, bool], "Batch | RingBatch"]


class ResumableBatches(IterableDataset):
    """Base of the datasets: subclasses give ``_identity`` (what decides the order),
    ``_plan(start)`` and ``_maker(epoch, in_worker)``."""

    rank: int
    world_size: int

    def __init__(self) -> None:
        super().__init__()
        # (epoch, resume position) in shared memory: set in the trainer, read by workers
        # when a pass starts, persistent workers included
        self._shared = torch.zeros(2, dtype=torch.int64).share_memory_()
        self._resume: Pass | None = None  # a worker's own saved place, for its next pass
        self._pass: Pass | None = None  # this process's latest pass

    def _identity(self) -> dict[str, Any]:
        raise NotImplementedError

    def _plan(self, start: int | None = None) -> RankPlan:
        raise NotImplementedError

    def _maker(self, epoch: int, in_worker: bool) -> Make:
        raise NotImplementedError

    @property
    def epoch(self) -> int:
        return int(self._shared[0])

    @property
    def _start(self) -> int:
        return int(self._shared[1])

    def __len__(self) -> int:
        """Batches this rank delivers in the coming pass."""
        return self._plan().batches

    def set_epoch(self, epoch: int) -> None:
        """Reshuffle for ``epoch``; a resumed epoch keeps its resume position."""
        if epoch != self.epoch:
            self._shared.copy_(torch.tensor([epoch, 0]))

    def state_dict(self, batches_seen: int | None = None) -> dict[str, Any]:
        """Where to resume.

        ``state_dict(batches_seen)``: once every rank has consumed ``batches_seen`` batches
        of this pass (GPUPrefetcher.state_dict() counts them for you); resumes with any
        number of workers and ranks. ``state_dict()``: after the batches this process's
        iterator has handed out, which is what torchdata's StatefulDataLoader asks each of
        its workers (and the dataset itself with ``num_workers=0``)."""
        state = {"format": STATE_FORMAT, **self._identity()}
        current = self._pass or Pass(self.epoch, self._start, 0, 1)
        if batches_seen is not None:
            current = Pass(self.epoch, self._start, 0, 1, batches_seen)
        plan = self._plan(current.start)
        if current.workers == 1:  # a prefix of the rank's batches: a stream position
            return state | {"epoch": current.epoch, "position": plan.position_after(current.done)}
        return state | {  # one worker's share: its batches worker, worker + workers, ...
            "epoch": current.epoch,
            "position": current.start,
            "worker": current.worker,
            "workers": current.workers,
            "batches": current.done,
            "batch_size": plan.batch_size,
            "world_size": self.world_size,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a saved position: the next pass delivers exactly the samples of that
        epoch not consumed yet. Takes this dataset's states, and a whole StatefulDataLoader
        ``state_dict()``, which it turns into a stream position so a run can resume with
        another number of workers or ranks."""
        if _LOADER_SNAPSHOT in state or _LOADER_DATASET in state:
            state = self._from_loader_state(state)
        mine = self._identity()
        differ = [
            f"{k}: saved {state.get(k)!r}, now {mine[k]!r}" for k in mine if state.get(k) != mine[k]
        ]
        if state.get("format") != STATE_FORMAT or differ:
            raise LoaderError(
                "cannot resume exactly from this state, the sample order differs ("
                + (
                    "; ".join(differ)
                    or f"saved with state format {state.get('format')!r}, now {STATE_FORMAT}"
                )
                + ")"
            )
        epoch, position = int(state["epoch"]), int(state["position"])
        if state.get("workers", 1) == 1:
            self._shared.copy_(torch.tensor([epoch, position]))
            self._resume = None
            return
        info = get_worker_info()
        here = (info.id, info.num_workers) if info else None
        saved = (state["worker"], state["workers"])
        now = {"batch_size": self._plan().batch_size, "world_size": self.world_size}
        mismatch = [f"{k} {state[k]}, now {v}" for k, v in now.items() if state[k] != v]
        if here != saved or mismatch:
            where = f"worker {here[0]} of {here[1]}" if here else "outside a worker"
            raise LoaderError(
                f"this state is DataLoader worker {saved[0]} of {saved[1]}'s part of a pass "
                f"({', '.join(mismatch) or 'loaded in ' + where}): load the "
                "StatefulDataLoader's state into one with the same num_workers, or pass the "
                "whole loader state to load_state_dict to resume with any number of workers"
            )
        self._resume = Pass(epoch, position, saved[0], saved[1], int(state["batches"]))

    def _from_loader_state(self, state: dict[str, Any]) -> dict[str, Any]:
        """A StatefulDataLoader's state as one stream position: its workers' batches
        together are a prefix of this rank's batches (it delivers them in order)."""
        if _LOADER_SNAPSHOT not in state:  # num_workers=0: the dataset's own state
            return state[_LOADER_DATASET]
        if state.get("_steps_since_snapshot", 0):
            raise LoaderError(
                f"this StatefulDataLoader state is {state['_steps_since_snapshot']} batches "
                "past its last snapshot; save it with snapshot_every_n_steps=1 (the default) "
                "to resume with another number of workers"
            )
        workers = [
            s[_LOADER_DATASET] for s in state[_LOADER_SNAPSHOT]["_worker_snapshots"].values()
        ]
        if not workers or any(w is None for w in workers):
            raise LoaderError("this StatefulDataLoader state holds no dataset state of ours")
        first = workers[0]
        if first.get("workers", 1) == 1:
            return first
        consumed = sum(int(w["batches"]) for w in workers)
        position = self._plan(int(first["position"])).position_after(consumed)
        keep = {*self._identity(), "format", "epoch"}
        return {k: v for k, v in first.items() if k in keep} | {"position": position}

    def __iter__(self) -> Iterator[Batch]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        resume, self._resume = self._resume, None
        if resume is not None and (resume.worker, resume.workers) == (worker, workers):
            self._pass = resume
        else:
            self._pass = Pass(self.epoch, self._start, worker, workers)
        return self._batches(self._pass, in_worker=info is not None)

    readahead = 0  # batches whose data is fetched ahead (shards on object storage)

    def _batches(self, run: Pass, *, in_worker: bool) -> Iterator[Batch]:
        plan = self._plan(run.start)
        make = self._maker(run.epoch, in_worker)
        todo = worker_batches(plan.batches, run.worker, run.workers)[run.done :]
        ahead = getattr(make, "ahead", None) if self.readahead else None
        if ahead is not None:
            for local in todo[: self.readahead]:
                ahead(plan.positions(local)[0])
        try:
            for i, local in enumerate(todo):
                if ahead is not None and i + self.readahead < len(todo):
                    ahead(plan.positions(todo[i + self.readahead])[0])
                positions, padding = plan.positions(local)
                batch = make(positions, padding)
                self._pass = dataclasses.replace(run, done=run.done + i + 1)  # when handed out
                yield batch
        finally:
            close = getattr(make, "close", None)
            if close is not None:
                close()
