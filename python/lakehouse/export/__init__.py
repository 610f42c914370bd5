"""Warehouse marts -> versioned Arrow IPC shards with a lineage manifest.

Public surface: :func:`export_model`, :func:`reproduce`, :func:`verify`, :class:`Manifest`,
:class:`ExportError`.
"""

from lakehouse.export.manifest import MANIFEST, Manifest, ShardEntry, verify
from lakehouse.export.publish import export_model, reproduce
from lakehouse.export.writer import ExportError

__all__ = [
    "MANIFEST",
    "ExportError",
    "Manifest",
    "ShardEntry",
    "export_model",
    "reproduce",
    "verify",
]
