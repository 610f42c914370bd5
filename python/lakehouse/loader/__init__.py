"""Arrow shards -> batches of PyTorch tensors, on the GPU when there is one.

Public surface: :class:`ShardDataset` (memory-mapped, exactly-once across workers and ranks,
resumable), :class:`GPUPrefetcher` (pinned buffers, side stream, events), :class:`LoaderError`.
"""

from lakehouse.loader.dataset import PADDING_KEY, ShardDataset
from lakehouse.loader.prefetch import GPUPrefetcher
from lakehouse.loader.shards import LoaderError

__all__ = ["PADDING_KEY", "GPUPrefetcher", "LoaderError", "ShardDataset"]
