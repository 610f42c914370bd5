"""The shard format both sides share: a version folder's manifest (what is in it, where it
came from, how to check it), the row count per shard, and the rule for a safe shard path.

A leaf module (standard library only): the exporter writes this format and the loader reads
it, and neither imports the other, so ``import lakehouse.loader`` never loads the warehouse.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lakehouse.sql import embeddable

MANIFEST = "manifest.json"
# the newest complete version: a symlink on a local disk, an object holding "v<N>" on S3
LATEST = "latest"
# rows per shard unless an export says otherwise (the last shard of a split has fewer)
DEFAULT_SHARD_ROWS = 65_536
COMPRESSIONS = (None, "lz4", "zstd")
# a model, a split, a column or a bronze table: a plain SQL identifier, never SQL
IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
# the name `latest` holds on object storage
VERSION_NAME = re.compile(r"v[1-9][0-9]{0,8}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_CHUNK = 8 << 20


class ManifestError(ValueError):
    """A manifest that is not what ``lakehouse export`` writes: it is input (it may come from
    object storage), so every field is checked by type before anything uses it."""


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
    # what the rows hold, whatever the build that made them: an export whose rows and
    # columns fingerprint the same as the latest version's publishes nothing new
    content_fingerprint: str = ""

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
        """A manifest from its JSON text; a field of the wrong type or shape is a
        :class:`ManifestError` naming it (never a KeyError or TypeError)."""
        try:
            data = json.loads(text)
        except (ValueError, RecursionError) as error:
            raise ManifestError(f"{MANIFEST} is not JSON: {error}") from None
        _check(isinstance(data, dict), "the manifest", "an object", data)
        return cls(
            model=_identifier(data, "model"),
            version=_integer(data, "version", minimum=1),
            created_at=_typed(data, "created_at", str),
            shard_rows=_integer(data, "shard_rows", minimum=1),
            compression=_choice(data, "compression", COMPRESSIONS),
            order_by=[
                _identifier({"order_by": c}, "order_by") for c in _typed(data, "order_by", list)
            ],
            schema=[_column(c) for c in _typed(data, "schema", list)],
            vocabularies=_vocabularies(_typed(data, "vocabularies", dict)),
            shards=[_shard(s) for s in _typed(data, "shards", list)],
            lineage=_lineage(_typed(data, "lineage", dict, default={})),
            quality_gate=_typed(data, "quality_gate", dict, default={}),
            content_fingerprint=_typed(data, "content_fingerprint", str, default=""),
        )


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def safe_shard_path(root: Path, relative: str) -> Path:
    """The one way to turn a manifest's shard path into a file: refused if it would leave
    the version folder (``..``, an absolute path, a link out), locally or in a cache."""
    resolved = (root / relative).resolve()
    if root.resolve() not in resolved.parents:
        raise ManifestError(f"shard path {relative!r} in {root / MANIFEST} leaves the shard folder")
    return resolved


def _check(ok: bool, field: str, expected: str, value: Any) -> None:
    if not ok:
        shown = repr(value)
        shown = shown if len(shown) <= 80 else shown[:77] + "..."
        raise ManifestError(f"{MANIFEST}: {field} must be {expected}, got {shown}")


_KINDS = {int: "a whole number", str: "a string", list: "a list", dict: "an object"}


def _typed(data: dict, key: str, kind: type, default: Any = ...) -> Any:
    if key not in data and default is not ...:
        return default
    _check(key in data, key, f"present ({_KINDS[kind]})", None)
    value = data[key]
    ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
    _check(ok, key, _KINDS[kind], value)
    return value


def _integer(data: dict, key: str, minimum: int = 0) -> int:
    value = _typed(data, key, int)
    _check(value >= minimum, key, f"a whole number >= {minimum}", value)
    return value


def _identifier(data: dict, key: str) -> str:
    value = _typed(data, key, str)
    _check(IDENTIFIER.fullmatch(value) is not None, key, "a plain identifier", value)
    return value


def _choice(data: dict, key: str, choices: tuple) -> Any:
    value = data.get(key)
    _check(value in choices, key, f"one of {choices}", value)
    return value


def _vocabularies(vocabularies: dict) -> dict[str, list[str]]:
    for column, values in vocabularies.items():
        _identifier({"vocabularies": column}, "vocabularies")
        _check(
            isinstance(values, list) and all(isinstance(v, str) for v in values),
            f"vocabularies.{column}",
            "a list of strings",
            values,
        )
    return vocabularies


def _column(column: Any) -> dict[str, str]:
    _check(isinstance(column, dict), "schema[]", "an object", column)
    return {"name": _identifier(column, "name"), "type": _typed(column, "type", str)}


def _shard(entry: Any) -> ShardEntry:
    _check(isinstance(entry, dict), "shards[]", "an object", entry)
    sha = _typed(entry, "sha256", str)
    _check(_SHA256.fullmatch(sha) is not None, "shards[].sha256", "64 hex digits", sha)
    return ShardEntry(
        split=_identifier(entry, "split"),
        path=_typed(entry, "path", str),
        rows=_integer(entry, "rows"),
        bytes=_integer(entry, "bytes"),
        sha256=sha,
    )


def _lineage(lineage: dict[str, Any]) -> dict[str, Any]:
    """The lineage fields anything acts on (``--reproduce`` rebuilds from them): the lake a
    path or URI without quotes or control characters, versions whole numbers or null."""
    lake = lineage.get("lake")
    _check(
        lake is None or (isinstance(lake, str) and embeddable(lake)),
        "lineage.lake",
        "a path or URI without quotes or control characters",
        lake,
    )
    versions = lineage.get("bronze_versions", {})
    _check(isinstance(versions, dict), "lineage.bronze_versions", "an object", versions)
    for table, version in versions.items():
        _identifier({"lineage.bronze_versions": table}, "lineage.bronze_versions")
        ok = version is None or (
            isinstance(version, int) and not isinstance(version, bool) and version >= 0
        )
        _check(ok, f"lineage.bronze_versions.{table}", "a whole number >= 0 or null", version)
    return lineage


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
