"""Warehouse marts -> versioned Arrow IPC shards with a lineage manifest.

Public surface: :func:`export_model`, :func:`reproduce`, :class:`ExportSpec` (how a mart is
sharded, from its dbt meta), :class:`ExportError`; the shard format itself (:class:`Manifest`,
:func:`verify`, :func:`safe_shard_path`) is :mod:`lakehouse.shardformat`, re-exported here.
"""

from lakehouse.export.publish import export_model, latest_version, reproduce
from lakehouse.export.writer import ExportError, ExportSpec
from lakehouse.shardformat import (
    DEFAULT_SHARD_ROWS,
    LATEST,
    MANIFEST,
    Manifest,
    ShardEntry,
    safe_shard_path,
    verify,
)

__all__ = [
    "DEFAULT_SHARD_ROWS",
    "LATEST",
    "MANIFEST",
    "ExportError",
    "ExportSpec",
    "Manifest",
    "ShardEntry",
    "export_model",
    "latest_version",
    "reproduce",
    "safe_shard_path",
    "verify",
]
