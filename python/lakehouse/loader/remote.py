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


def checked_marker(stat: os.stat_result, sha256: str) -> Path:
    """Where a shard file whose bytes matched ``sha256`` is remembered: keyed by the file's
    identity (device, inode, size, modification and change time; the change time moves on
    every write and no user can set it back), so a rewritten file is checked again."""
    name = (
        f"{sha256}-{stat.st_dev}-{stat.st_ino}-{stat.st_size}-{stat.st_mtime_ns}-{stat.st_ctime_ns}"
    )
    return cache_root() / "verified" / name


def mark_checked(stat: os.stat_result, sha256: str) -> None:
    """Remember a checked shard; where the cache cannot be written, the next process checks
    again (slower, never wrong)."""
    marker = checked_marker(stat, sha256)
    try:
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()
    except OSError:
        pass


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
        mark_checked(target.stat(), sha256)  # hashed while downloading: not again on open
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
