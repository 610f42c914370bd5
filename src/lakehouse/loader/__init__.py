"""Arrow shards -> batches of PyTorch tensors, on the GPU when there is one.

Public surface: :class:`ShardDataset` (memory-mapped batches, exactly-once across workers and
ranks, resumable, torchdata StatefulDataLoader state), :class:`ShardSamples` (the same split
as a map-style dataset of samples), :class:`MixedDataset` (several sources mixed by weight),
:class:`GPUPrefetcher` (pinned buffers, side stream, events), :func:`decode` (category names of
coded columns), :class:`LoaderError`.
"""

from lakehouse.loader.dataset import PADDING_KEY, ShardDataset
from lakehouse.loader.mixing import SOURCE_KEY, MixedDataset
from lakehouse.loader.prefetch import GPUPrefetcher
from lakehouse.loader.samples import ShardSamples, decode
from lakehouse.loader.shards import LoaderError

__all__ = [
    "PADDING_KEY",
    "SOURCE_KEY",
    "GPUPrefetcher",
    "LoaderError",
    "MixedDataset",
    "ShardDataset",
    "ShardSamples",
    "decode",
]
