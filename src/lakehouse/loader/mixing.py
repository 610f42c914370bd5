"""Batches of several shard datasets, mixed by weight, each source exactly once an epoch."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from lakehouse.loader.dataset import PADDING_KEY, ShardDataset, rank_and_world
from lakehouse.loader.plan import RankPlan, Uneven
from lakehouse.loader.resume import Batch, Make, ResumableBatches
from lakehouse.loader.ring import RingBatch
from lakehouse.loader.shards import LoaderError

# the index of the source a mixed batch came from (in the order the sources were given)
SOURCE_KEY = "mix_source"


class MixedDataset(ResumableBatches):
    """Whole batches drawn from several :class:`ShardDataset` sources (shard versions or
    datasets with the same columns) in proportion to ``weights``.

    Each epoch is a stream of every source's batches: source ``s`` contributes its own
    epoch (its seed, shuffle and batch size) cut into ``ceil(rows / batch_size)`` batches,
    and a schedule drawn from (``seed``, epoch) interleaves them, picking among the sources
    that have batches left with probability proportional to their weight. So every sample of
    every source is delivered exactly once an epoch, in the same order on every machine; a
    heavier source comes early and often, and the lighter ones fill the end of the epoch.
    ``batch["mix_source"]`` says which source a batch came from.

    The mixed stream's batches are dealt to ranks and DataLoader workers like ShardDataset's
    samples (each rank the same number; ``uneven="pad"`` repeats earlier batches flagged in
    ``is_padding``, ``"drop"`` leaves the last few out); the sources' own rank settings
    are not used. Resume, ``set_epoch`` and StatefulDataLoader work as in ShardDataset.
    """

    def __init__(
        self,
        sources: Sequence[ShardDataset],
        weights: Sequence[float],
        *,
        seed: int = 0,
        uneven: Uneven = "pad",
        rank: int | None = None,
        world_size: int | None = None,
    ) -> None:
        super().__init__()
        if not sources or len(sources) != len(weights):
            raise ValueError(
                f"give one weight per source: {len(sources)} sources, {len(weights)} weights"
            )
        if any(not w > 0 for w in weights):
            raise ValueError(f"weights must be positive, got {list(weights)}")
        columns = [sorted(s.columns) for s in sources]
        if any(c != columns[0] for c in columns):
            differ = "; ".join(f"source {i}: {', '.join(c)}" for i, c in enumerate(columns))
            raise LoaderError(f"sources to mix must have the same columns ({differ})")
        for i, source in enumerate(sources[1:], start=1):
            for column in sorted(set(source.columns) & set(sources[0].vocabularies)):
                first, other = sources[0].vocabularies[column], source.vocabularies.get(column, [])
                shared = min(len(first), len(other))
                if first[:shared] != other[:shared]:  # a code would mean two categories
                    at = next(k for k in range(shared) if first[k] != other[k])
                    raise LoaderError(
                        f"sources 0 and {i} code {column!r} differently (code {at} is "
                        f"{first[at]!r} in {sources[0].manifest.version} and {other[at]!r} in "
                        f"{source.manifest.version}); mix versions of one export history, "
                        "whose codes only grow"
                    )
        self.sources, self.weights = list(sources), [float(w) for w in weights]
        self.seed, self.uneven = seed, uneven
        self.rank, self.world_size = rank_and_world(rank, world_size)
        # a source's batches in the mixed stream: its whole epoch, rank-independent
        self._counts = [-(-s.num_samples // s.batch_size) for s in self.sources]
        self._plan()

    @property
    def num_samples(self) -> int:
        return sum(s.num_samples for s in self.sources)

    def _identity(self) -> dict[str, Any]:
        return {
            "mix": [s._identity() for s in self.sources],
            "batch_sizes": [s.batch_size for s in self.sources],
            "weights": self.weights,
            "mix_seed": self.seed,
        }

    def _plan(self, start: int | None = None) -> RankPlan:
        # the units of this stream are whole source batches
        return RankPlan(
            total=sum(self._counts),
            start=self._start if start is None else start,
            batch_size=1,
            rank=self.rank,
            world_size=self.world_size,
            uneven=self.uneven,
        )

    def schedule(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        """Source of each batch of the epoch's mixed stream, and that batch's index in its
        source's own stream."""
        rng = np.random.default_rng((self.seed, epoch, 7))
        left = np.asarray(self._counts, dtype=np.int64)
        weights = np.asarray(self.weights)
        source = np.empty(int(left.sum()), np.int64)
        for g in range(len(source)):
            p = np.where(left > 0, weights, 0.0)
            s = int(rng.choice(len(p), p=p / p.sum()))
            source[g] = s
            left[s] -= 1
        index = np.empty_like(source)
        for s in range(len(self.sources)):
            here = source == s
            index[here] = np.arange(int(here.sum()))
        return source, index

    def _maker(self, epoch: int, in_worker: bool) -> Make:
        source, index = self.schedule(epoch)
        orders = [s._order(epoch) for s in self.sources]
        caches = [s.opened.cache(random_rows=s._random_rows) for s in self.sources]

        def make(positions: np.ndarray, padding: bool) -> Batch | RingBatch:
            g = int(positions[0])
            s, i = int(source[g]), int(index[g])
            ds = self.sources[s]
            lo = i * ds.batch_size
            rows = orders[s].batch(lo, min(lo + ds.batch_size, ds.num_samples), padding)
            extra = {PADDING_KEY: (padding, torch.bool)} if self.uneven == "pad" else {}
            extra[SOURCE_KEY] = (s, torch.int64)
            return ds._tensors(caches[s], rows, in_worker=in_worker, extra=extra)

        return make
