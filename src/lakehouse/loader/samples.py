"""One split of a shard version as a map-style dataset, and category names of coded columns."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from lakehouse.loader.shards import LoaderError, ShardCache, Split, open_split
from lakehouse.shardformat import Manifest


class ShardSamples(Dataset):
    """A split as a map-style dataset: ``len(ds)`` is its number of *samples*, ``ds[i]`` is
    sample ``i`` (a dict of tensors: 0-d values, 1-d rows of list columns) and ``ds[i:j]``
    or ``ds[[i, k, ...]]`` a batch of them. Sample ``i`` is the split's ``i``-th row in
    export order (by the export key), on every machine.

    It works with any sampler and the default collate, e.g. ``DataLoader(ds,
    batch_size=32, shuffle=True)``, at one Python call per sample; ShardDataset is the
    fast path for training. Shards are memory-mapped and checked (sha256) at first open,
    as ShardDataset does.
    """

    def __init__(
        self,
        path: str | Path,
        split: str = "train",
        *,
        columns: list[str] | None = None,
        verify: bool = False,
    ) -> None:
        self._open(open_split(path, split, columns, verify=verify))

    @classmethod
    def of(cls, opened: Split) -> ShardSamples:
        """The samples of a split already opened (e.g. by a ShardDataset)."""
        samples = cls.__new__(cls)
        samples._open(opened)
        return samples

    def _open(self, opened: Split) -> None:
        self.opened = opened
        self.manifest, self.split, self.columns = (
            opened.version.manifest,
            opened.name,
            opened.columns,
        )
        self._first = np.cumsum([0] + [e.rows for e in opened.entries]).astype(np.int64)
        self._cache: tuple[int, ShardCache] | None = None  # opened per process (maps)

    def __len__(self) -> int:
        return int(self._first[-1])

    @property
    def vocabularies(self) -> dict[str, list[str]]:
        return self.manifest.vocabularies

    def decode(self, column: str, codes: torch.Tensor | np.ndarray | list[int]) -> list[str | None]:
        """Category names of int32 codes of ``column`` (-1, a missing category, is None)."""
        return decode(self.manifest, column, codes)

    def __getitem__(self, index: int | slice | list[int] | np.ndarray | torch.Tensor):
        if isinstance(index, int | np.integer):
            shard, row = self._locate(np.asarray([int(index)]))
            columns = self._shards()[int(shard[0])].columns
            return {
                name: torch.from_numpy(np.array(columns[name][row[0]])) for name in self.columns
            }
        if isinstance(index, slice):
            index = np.arange(len(self))[index]
        indices = np.asarray(index, dtype=np.int64).reshape(-1)
        shard, row = self._locate(indices)
        return self._batch(shard, row)

    def _batch(self, shard: np.ndarray, row: np.ndarray) -> dict[str, torch.Tensor]:
        """A batch in the order asked for (one take per shard and column)."""
        cache = self._shards()
        if not len(row):
            return {
                name: torch.from_numpy(cache[0].columns[name][:0].copy()) for name in self.columns
            }
        out = {}
        for name in self.columns:
            like = cache[int(shard[0])].columns[name]
            values = np.empty((len(row), *like.shape[1:]), like.dtype)
            for s in np.unique(shard):
                here = shard == s
                values[here] = cache[int(s)].columns[name][row[here]]
            out[name] = torch.from_numpy(values)
        return out

    def _locate(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        total = len(self)
        indices = np.where(indices < 0, indices + total, indices)
        bad = indices[(indices < 0) | (indices >= total)]
        if len(bad):
            raise IndexError(
                f"sample {int(bad[0])} is out of range: {self.manifest.model} "
                f"v{self.manifest.version} {self.split} has {total} samples"
            )
        shard = np.searchsorted(self._first, indices, side="right") - 1
        return shard, indices - self._first[shard]

    def _shards(self) -> ShardCache:
        if self._cache is None or self._cache[0] != os.getpid():  # maps do not cross a fork
            self._cache = (os.getpid(), self.opened.cache())
        return self._cache[1]

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_cache": None}


def decode(
    manifest: Manifest, column: str, codes: torch.Tensor | np.ndarray | list[int]
) -> list[str | None]:
    """Names of the categories ``codes`` stand for in ``column`` (the manifest's vocabulary;
    -1 means the value was missing, and is None)."""
    vocabulary = manifest.vocabularies.get(column)
    if vocabulary is None:
        coded = ", ".join(manifest.vocabularies) or "none"
        raise LoaderError(
            f"{manifest.model} v{manifest.version} column {column!r} is not a coded category "
            f"(coded columns: {coded})"
        )
    values = np.asarray(codes.cpu() if isinstance(codes, torch.Tensor) else codes).reshape(-1)
    bad = values[(values < -1) | (values >= len(vocabulary))]
    if len(bad):
        raise LoaderError(
            f"code {int(bad[0])} is not in {column}'s vocabulary of {len(vocabulary)} "
            "categories (codes are 0.., -1 for missing)"
        )
    return [None if v == -1 else vocabulary[v] for v in values.tolist()]
