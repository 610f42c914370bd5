"""The shard format both sides share: a version folder's manifest (what is in it, where it
came from, how to check it), the row count per shard, and the rule for a safe shard path.

A leaf module (standard library only): the exporter writes this format and the loader reads
it, and neither imports the other, so ``import lakehouse.loader`` never loads the warehouse.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

MANIFEST = "manifest.json"
# the newest complete version: a symlink on a local disk, an object holding "v<N>" on S3
LATEST = "latest"
# rows per shard unless an export says otherwise (the last shard of a split has fewer)
DEFAULT_SHARD_ROWS = 65_536
_CHUNK = 8 << 20


@dataclass(frozen=True)
class ShardEntry:
    split: str
    path: str  # relative to the version folder
    rows: int
    bytes: int
    sha256: str


@dataclass
class Manifest:
    model: str
    version: int
    created_at: str
    shard_rows: int
    compression: str | None
    order_by: list[str]
    schema: list[dict[str, str]]
    vocabularies: dict[str, list[str]]
    shards: list[ShardEntry]
    lineage: dict[str, Any] = field(default_factory=dict)
    quality_gate: dict[str, Any] = field(default_factory=dict)

    @property
    def totals(self) -> dict[str, int]:
        totals: dict[str, int] = {}
        for shard in self.shards:
            totals[shard.split] = totals.get(shard.split, 0) + shard.rows
        return totals

    def to_json(self) -> str:
        data = asdict(self)
        data["totals"] = self.totals
        return json.dumps(data, indent=2, sort_keys=True, default=str) + "\n"

    @classmethod
    def read(cls, path: Path) -> Manifest:
        return cls.parse(Path(path).read_text())

    @classmethod
    def parse(cls, text: str) -> Manifest:
        data = json.loads(text)
        data.pop("totals", None)
        data["shards"] = [ShardEntry(**s) for s in data["shards"]]
        return cls(**data)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def safe_shard_path(root: Path, relative: str) -> Path:
    """A shard path from a manifest, refused if it would leave the version folder."""
    resolved = (root / relative).resolve()
    if root.resolve() not in resolved.parents:
        raise ValueError(f"shard path {relative!r} in {root / MANIFEST} leaves the shard folder")
    return resolved


def verify(version_dir: Path) -> list[str]:
    """Problems found re-checking every shard's size and sha256 (empty when all is well)."""
    manifest = Manifest.read(version_dir / MANIFEST)
    problems = []
    for shard in manifest.shards:
        path = safe_shard_path(version_dir, shard.path)
        if not path.exists():
            problems.append(f"{shard.path}: missing")
        elif path.stat().st_size != shard.bytes:
            problems.append(
                f"{shard.path}: {path.stat().st_size} bytes, manifest says "
                f"{shard.bytes} (truncated or replaced)"
            )
        elif sha256_of(path) != shard.sha256:
            problems.append(f"{shard.path}: sha256 differs from the manifest (corrupt)")
    return problems
