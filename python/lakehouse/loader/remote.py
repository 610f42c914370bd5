"""Shard versions on object storage, fetched once into a local cache and memory-mapped there.

A version never changes once published, so the cache is keyed by its URI and reused by every
later run; each shard is checked against the manifest's size and sha256 before it is moved
into place, and the manifest is placed last, so an interrupted fetch is simply resumed.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from lakehouse.shardformat import (
    LATEST,
    MANIFEST,
    VERSION_NAME,
    Manifest,
    ManifestError,
    safe_shard_path,
)
from lakehouse.storage import filesystem_for, join_uri

_CHUNK = 8 << 20


class FetchError(Exception):
    """A remote shard version that cannot be fetched as its manifest describes."""


def cache_root() -> Path:
    return Path(os.environ.get("LAKEHOUSE_CACHE", "~/.cache/lakehouse")).expanduser()


def resolve_latest(uri: str) -> str:
    """``…/latest`` is an object holding the newest version's name; any other URI is kept."""
    fs, path = filesystem_for(uri)
    if uri.rstrip("/").endswith("/" + LATEST):
        with fs.open_input_stream(path) as stream:
            name = stream.read(64).decode(errors="replace").strip()
        if not VERSION_NAME.fullmatch(name):  # object-store content is input, not a path
            raise FetchError(f"{uri} holds {name[:20]!r}, not a version name such as v3")
        return join_uri(uri.rstrip("/")[: -len(LATEST)], name)
    return uri.rstrip("/")


def fetch_version(uri: str, cache: Path | None = None) -> Path:
    """The local copy of the shard version at ``uri``, downloading what is missing."""
    version_uri = resolve_latest(uri)
    fs, base = filesystem_for(version_uri)
    root = (cache or cache_root()) / "shards"
    local = root / version_uri.replace("://", "/")
    if root.resolve() not in local.resolve().parents:
        raise FetchError(f"{version_uri} would be cached outside {root}")
    if (local / MANIFEST).exists():
        return local
    local.mkdir(parents=True, exist_ok=True)
    try:
        with fs.open_input_stream(f"{base}/{MANIFEST}") as stream:
            text = stream.read().decode()
    except (FileNotFoundError, OSError) as error:
        raise FetchError(
            f"no {MANIFEST} at {version_uri}: not a complete shard version ({error})"
        ) from error
    try:
        manifest = Manifest.parse(text)
        targets = [safe_shard_path(local, shard.path) for shard in manifest.shards]
    except ManifestError as error:  # nothing is written for a manifest that is not sound
        raise FetchError(f"{version_uri}/{MANIFEST}: {error}") from error
    for shard, target in zip(manifest.shards, targets, strict=True):
        if target.exists() and target.stat().st_size == shard.bytes:
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        _download(fs, base, shard.path, target, shard.bytes, shard.sha256, version_uri)
    handle, staged = tempfile.mkstemp(dir=local, prefix=".manifest-")
    with os.fdopen(handle, "w") as sink:  # last, and whole: its presence means complete
        sink.write(text)
    os.replace(staged, local / MANIFEST)
    return local


def _download(
    fs, base: str, relative: str, target: Path, size: int, sha256: str, version_uri: str
) -> None:
    source = f"{base}/{relative}"
    handle, temp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}-")
    digest, written = hashlib.sha256(), 0
    try:
        with os.fdopen(handle, "wb") as sink, fs.open_input_stream(source) as stream:
            while chunk := stream.read(_CHUNK):
                digest.update(chunk)
                sink.write(chunk)
                written += len(chunk)
        if written != size or digest.hexdigest() != sha256:
            raise FetchError(
                f"shard {join_uri(version_uri, relative)} fetched as {written} bytes with "
                f"sha256 {digest.hexdigest()[:12]}…, the manifest says {size} bytes, "
                f"{sha256[:12]}…: corrupt or replaced on the object store"
            )
        os.replace(temp, target)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
