"""Warehouse marts -> versioned Arrow IPC shards with a lineage manifest.

Public surface: :func:`export_model`, :func:`reproduce`, :func:`verify`,
:func:`safe_shard_path`, :class:`Manifest`, :class:`ExportError`.
"""

from lakehouse.export.manifest import (
    LATEST,
    MANIFEST,
    Manifest,
    ShardEntry,
    safe_shard_path,
    verify,
)
from lakehouse.export.publish import export_model, reproduce
from lakehouse.export.writer import ExportError

__all__ = [
    "LATEST",
    "MANIFEST",
    "ExportError",
    "Manifest",
    "ShardEntry",
    "export_model",
    "reproduce",
    "safe_shard_path",
    "verify",
]
