"""The shard format both sides share: a version folder's manifest (what is in it, where it
came from, how to check it), the row count per shard, and the rule for a safe shard path.

A leaf module (standard library only): the exporter writes this format and the loader reads
it, and neither imports the other, so ``import lakehouse.loader`` never loads the warehouse.
"""

from __future__ import annotations

import functools
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
# a shard's path in its version folder: up to 4 plain names joined by "/", none starting
# with a dot (so never "." or ".."), never absolute; judged by its text, with no lookup
_NAME = r"[A-Za-z0-9_][A-Za-z0-9_.=-]{0,127}"
SHARD_PATH = re.compile(rf"{_NAME}(?:/{_NAME}){{0,3}}")
# the largest manifest read: a million shards take about 160 MB
MAX_MANIFEST_BYTES = 512 << 20
_CHUNK = 8 << 20
# the row-major copy of every row that shards of versions before format 2 also carried;
# the loader no longer reads it (it derives its own, see lakehouse.loader.rowmajor)
ROW_MAJOR = "_rows"
# what each shard holds, part of every export's content fingerprint: 2 is first-class Arrow
# (timestamps, dictionary-encoded categories, booleans, schema metadata) with no row copy
SHARD_FORMAT = 2
# the manifest's Arrow type names (str(pyarrow type)) a tensor column may have, and the numpy
# dtype of its values in a tensor: timestamps are int64 microseconds since the epoch (UTC),
# categories their int32 codes, booleans uint8
_TENSOR_TYPES = {
    "int64": "int64",
    "int32": "int32",
    "int16": "int16",
    "int8": "int8",
    "uint8": "uint8",
    "bool": "uint8",
    "float": "float32",
    "double": "float64",
}
_TIMESTAMP = re.compile(r"timestamp\[us(, tz=UTC)?\]")
_DICTIONARY = re.compile(r"dictionary<values=string, indices=int32, ordered=0>")
_FIXED_LIST = re.compile(r"fixed_size_list<[A-Za-z_]*: (\w+)>\[([1-9][0-9]{0,8})\]")


def tensor_type(arrow_type: str) -> tuple[str, int] | None:
    """The numpy dtype of a column of this Arrow type in a tensor, and its values per row
    (1, or N for a fixed-size list such as an embedding); None when no tensor holds it."""
    if arrow_type in _TENSOR_TYPES:
        return _TENSOR_TYPES[arrow_type], 1
    if _TIMESTAMP.fullmatch(arrow_type):
        return "int64", 1
    if _DICTIONARY.fullmatch(arrow_type):
        return "int32", 1
    listed = _FIXED_LIST.fullmatch(arrow_type)
    if listed and listed.group(1) in _TENSOR_TYPES and listed.group(1) != "bool":
        return _TENSOR_TYPES[listed.group(1)], int(listed.group(2))
    return None


@dataclass(frozen=True)
class RowField:
    """Where one column sits in a row-major row: byte ``offset``, numpy ``dtype``, and
    ``width`` values per row (1, or N for a fixed-size list such as an embedding)."""

    offset: int
    dtype: str
    width: int


@dataclass(frozen=True)
class RowLayout:
    """A row-major layout of tensor columns: ``row_bytes`` per row (a multiple of 8, so
    every field is aligned to its size) and each column's field."""

    row_bytes: int
    fields: dict[str, RowField]

    @classmethod
    def plan(cls, columns: list[tuple[str, str, int]]) -> RowLayout:
        """Lay out ``(name, numpy dtype, width)`` columns, widest values first so each
        field is aligned to its own size with no padding between fields."""
        fields, offset = {}, 0
        for name, dtype, width in sorted(columns, key=lambda c: -_itemsize(c[1])):
            fields[name] = RowField(offset, dtype, width)
            offset += _itemsize(dtype) * width
        return cls(row_bytes=max(-(-offset // 8) * 8, 8), fields=fields)

    @functools.cached_property
    def digest(self) -> str:
        """A short name for this layout (cache files of row-major copies carry it)."""
        text = json.dumps([self.row_bytes, sorted((n, asdict(f)) for n, f in self.fields.items())])
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def _itemsize(dtype: str) -> int:
    return int(re.search(r"\d+", dtype).group()) // 8 if dtype[-1].isdigit() else 1


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
    def columns(self) -> list[str]:
        """The named columns (the row-major copy older versions carry is not one)."""
        return [c["name"] for c in self.schema if c["name"] != ROW_MAJOR]

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
        with open(path, "rb") as handle:
            return cls.parse(read_bounded(handle, str(path)).decode())

    @classmethod
    def parse(cls, text: str) -> Manifest:
        """A manifest from its JSON text; a field of the wrong type or shape is a
        :class:`ManifestError` naming it (never a KeyError or TypeError)."""
        try:
            data = json.loads(text)
        except (ValueError, RecursionError) as error:
            raise ManifestError(f"{MANIFEST} is not JSON: {error}") from None
        _check(isinstance(data, dict), "the manifest", "an object", data)
        manifest = cls(
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
        paths = {shard.path for shard in manifest.shards}
        if len(paths) != len(manifest.shards):
            seen: set[str] = set()
            twice = next(s.path for s in manifest.shards if s.path in seen or seen.add(s.path))
            _check(False, "shards[].path", "a different file for each shard", twice)
        return manifest


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def read_bounded(stream: Any, name: str) -> bytes:
    """A manifest's bytes, refused past ``MAX_MANIFEST_BYTES`` before they are all read."""
    limit = MAX_MANIFEST_BYTES
    data = stream.read(limit + 1)
    if len(data) > limit:
        raise ManifestError(f"{name} is over {limit:,} bytes: not a manifest this reads")
    return data


def safe_shard_path(root: Path, relative: str) -> Path:
    """The one way to turn a manifest's shard path into a file: refused if it would leave
    the version folder (``..``, an absolute path, a link out), locally or in a cache. A
    manifest's paths are already plain names (``SHARD_PATH``, checked as it is parsed);
    this also resolves links, at the moment a shard is opened or fetched."""
    if not SHARD_PATH.fullmatch(relative):
        raise ManifestError(f"shard path {relative!r} in {root / MANIFEST} leaves the shard folder")
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
    """One shard entry. The common case (every field present with its type) is checked in
    one pass; anything else goes through the field-by-field checks that name the field."""
    if type(entry) is dict and entry.keys() >= _SHARD_KEYS:
        split, path, rows, size, sha = (entry[k] for k in _SHARD_KEYS_ORDERED)
        if (
            type(split) is str
            and type(path) is str
            and type(rows) is int
            and type(size) is int
            and type(sha) is str
            and rows >= 0
            and size >= 0
            and IDENTIFIER.fullmatch(split)
            and SHARD_PATH.fullmatch(path)
            and _SHA256.fullmatch(sha)
        ):
            return ShardEntry(split, path, rows, size, sha)
    _check(isinstance(entry, dict), "shards[]", "an object", entry)
    sha = _typed(entry, "sha256", str)
    _check(_SHA256.fullmatch(sha) is not None, "shards[].sha256", "64 hex digits", sha)
    path = _typed(entry, "path", str)
    if not SHARD_PATH.fullmatch(path):
        raise ManifestError(
            f"{MANIFEST}: shard path {path[:80]!r} leaves the shard folder (a shard path is "
            "up to 4 plain names joined by '/', none starting with a dot)"
        )
    return ShardEntry(
        split=_identifier(entry, "split"),
        path=path,
        rows=_integer(entry, "rows"),
        bytes=_integer(entry, "bytes"),
        sha256=sha,
    )


_SHARD_KEYS_ORDERED = ("split", "path", "rows", "bytes", "sha256")
_SHARD_KEYS = frozenset(_SHARD_KEYS_ORDERED)


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
