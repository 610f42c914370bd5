"""Shard versions on object storage, streamed shard by shard into a bounded local cache and
memory-mapped there.

A version never changes once published, so the cache is keyed by its URI and reused by every
later run. A shard is fetched when a batch first needs it (plus a few batches of read-ahead),
checked against the manifest's size and sha256 while it downloads, and moved into place only
then; the least recently used shards are evicted to keep the cache under its limit.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import sqlite3
import tempfile
import time
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import closing, suppress
from pathlib import Path

from lakehouse.shardformat import (
    LATEST,
    MANIFEST,
    VERSION_NAME,
    Manifest,
    ManifestError,
    ShardEntry,
    read_bounded,
    safe_shard_path,
)
from lakehouse.storage import filesystem_for, join_uri, write_atomic

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


# a number, then a unit: B, or a prefix K/M/G/T with an optional i (binary) and B
_SIZE = re.compile(r"\s*(\d{1,15}(?:\.\d{1,6})?)\s*(?:([KMGT])(i)?)?(B)?\s*", re.IGNORECASE)
# the local cache's size unless LAKEHOUSE_CACHE_LIMIT or cache_limit= says otherwise
DEFAULT_CACHE_LIMIT = "50GB"
# how far in the future a shard being downloaded is marked as used (so it is not evicted)
_PENDING = 10**9
# a pin older than this was left by a process that died between a fetch and an open
_PIN_EXPIRES = 600
# how long a shard a batch needs waits for room while other readers download or open theirs
_RESERVE_WAIT = 60


def parse_size(text: str | int) -> int:
    """Bytes from a size such as ``50GB``, ``512MiB`` or ``1500000``."""
    if isinstance(text, int):
        return text
    match = _SIZE.fullmatch(text)
    if not match:
        raise ValueError(f"{text!r} is not a size such as 20GB, 512MiB or 1000000")
    number, prefix, binary = float(match.group(1)), (match.group(2) or "").upper(), match.group(3)
    power = " KMGT".index(prefix) if prefix else 0  # B, KB, KiB, ...
    return int(number * (1024 if binary else 1000) ** power)


def cache_limit(limit: str | int | None = None) -> int:
    """The cache's limit in bytes: ``limit``, else $LAKEHOUSE_CACHE_LIMIT, else the default;
    a value that is not a size is a ValueError naming where it came from."""
    environ = os.environ.get("LAKEHOUSE_CACHE_LIMIT")
    source = "cache_limit=" if limit else "LAKEHOUSE_CACHE_LIMIT" if environ else "the default"
    try:
        return parse_size(limit or environ or DEFAULT_CACHE_LIMIT)
    except ValueError as error:
        raise ValueError(f"{source}: {error}") from None


class CacheIndex:
    """Which cached shards exist, their sizes and when each was last used, in SQLite next to
    them: every process and worker that shares the cache goes through its transactions, so
    the cache stays under ``limit`` bytes with the least recently used shards evicted. A
    shard evicted while another process has it memory-mapped stays readable there (Linux
    frees the file when the last map goes)."""

    def __init__(self, root: Path, limit: int) -> None:
        self.root, self.limit = root, limit
        root.mkdir(parents=True, exist_ok=True)
        with closing(self._connect()) as con:
            con.execute(
                "create table if not exists shards "
                "(path text primary key, bytes integer not null, used real not null)"
            )
            # a shard a process is about to memory-map (between its fetch and its open):
            # never evicted then; once mapped, the map keeps it readable anyway
            con.execute(
                "create table if not exists pins (path text, pid integer, at real not null)"
            )

    def _connect(self) -> sqlite3.Connection:
        # a rollback journal, not WAL: no file beside the index outlives a transaction
        return sqlite3.connect(self.root / "index.sqlite", timeout=120, isolation_level=None)

    def touch(self, path: Path, size: int, *, pin: bool = False) -> bool:
        """``path`` (``size`` bytes) was just used; a file the index did not list (a cache
        from before it) is adopted. ``pin``: this process opens it next (see :meth:`unpin`).
        False when the file is gone (evicted since it was looked at): nothing is recorded."""
        with closing(self._connect()) as con:
            con.execute("begin immediate")  # evictions happen in these too: none meanwhile
            if not path.exists():
                con.execute("rollback")
                return False
            con.execute(
                "insert into shards values (?, ?, ?) "
                "on conflict (path) do update set used = excluded.used",
                (str(path), size, time.time()),
            )
            if pin:
                con.execute(
                    "insert into pins values (?, ?, ?)", (str(path), os.getpid(), time.time())
                )
            con.execute("commit")
            return True

    def unpin(self, path: Path) -> None:
        with closing(self._connect()) as con:
            con.execute("delete from pins where path = ? and pid = ?", (str(path), os.getpid()))

    def reserve(self, path: Path, size: int, *, read_ahead: bool = False) -> bool:
        """Make room for ``size`` bytes at ``path`` before it is downloaded, evicting the
        least recently used shards; the reservation counts for every other process at once.
        A reserved shard is never evicted while it downloads (its time of use is set in the
        future until :meth:`touch` marks it done), nor a pinned one.

        When the shards other readers are downloading or opening leave no room, a shard a
        batch needs waits for them (they become evictable within moments), for at most
        ``_RESERVE_WAIT`` seconds, then goes ahead over the limit; a ``read_ahead`` shard is
        not fetched at all (False): read-ahead never takes the cache over its limit."""
        if size > self.limit:
            raise FetchError(
                f"shard {path.name} is {size:,} bytes, more than the cache limit of "
                f"{self.limit:,}; raise LAKEHOUSE_CACHE_LIMIT (or cache_limit=)"
            )
        deadline = time.monotonic() + _RESERVE_WAIT
        while not self._try_reserve(path, size, force=time.monotonic() >= deadline):
            if read_ahead:
                return False
            time.sleep(0.05)
        return True

    def _try_reserve(self, path: Path, size: int, *, force: bool) -> bool:
        with closing(self._connect()) as con:
            con.execute("begin immediate")  # one process at a time decides what goes
            try:
                now = time.time()
                # pins left by processes that died between a fetch and an open
                con.execute("delete from pins where at <= ?", (now - _PIN_EXPIRES,))
                self._drop_foreign(con)
                # (path, bytes, in use): being downloaded by someone (used in the future)
                # or about to be memory-mapped (pinned), so not evictable
                rows = [
                    (victim, taken, bool(pinned) or used > now + _PENDING / 2)
                    for victim, taken, used, pinned in con.execute(
                        "select path, bytes, used, path in (select path from pins) "
                        "from shards where path != ? order by used",
                        (str(path),),
                    )
                ]
                total = sum(taken for _, taken, _ in rows)
                busy = sum(taken for _, taken, in_use in rows if in_use)
                if busy + size > self.limit and not force:
                    con.execute("rollback")
                    return False
                for victim, taken, in_use in rows:
                    if total + size <= self.limit:
                        break
                    if in_use:
                        continue
                    Path(victim).unlink(missing_ok=True)
                    con.execute("delete from shards where path = ?", (victim,))
                    total -= taken
                con.execute(
                    "insert or replace into shards values (?, ?, ?)",
                    (str(path), size, now + _PENDING),
                )
                con.execute("commit")
                return True
            except BaseException:
                con.execute("rollback")
                raise

    def _drop_foreign(self, con: sqlite3.Connection) -> None:
        """Rows naming a file outside this cache are dropped from the index, their files
        untouched: the index is input (anyone who can write the cache can write it), and
        eviction unlinks only what lies in a folder under the cache's root."""
        root, folders = self.root.resolve(), {}  # shards share a few folders: resolve each once
        foreign = [
            (row,)
            for (row,) in con.execute("select path from shards")
            if not _inside(root, row, folders)
        ]
        if foreign:
            con.executemany("delete from shards where path = ?", foreign)

    def forget(self, path: Path) -> None:
        with closing(self._connect()) as con:
            con.execute("delete from shards where path = ?", (str(path),))

    def total(self) -> int:
        with closing(self._connect()) as con:
            return int(con.execute("select coalesce(sum(bytes), 0) from shards").fetchone()[0])


class RemoteVersion:
    """A shard version on object storage, streamed into the local cache shard by shard.

    Opening it fetches only the manifest (a version never changes once published, so a
    cached manifest is reused). :meth:`ensure` fetches one shard when it is first needed,
    hashing it while it downloads: bytes that differ from the manifest's sha256 are a
    FetchError and never land in the cache. :meth:`prefetch` fetches shards in background
    threads (read-ahead). Concurrent processes fetch a shard once (a lock file per shard).
    """

    def __init__(self, uri: str, cache: Path | None = None, limit: str | int | None = None) -> None:
        self.uri = resolve_latest(uri)
        root = (cache or cache_root()) / "shards"
        self.local = root / self.uri.replace("://", "/")
        if root.resolve() not in self.local.resolve().parents:
            raise FetchError(f"{self.uri} would be cached outside {root}")
        self.limit = cache_limit(limit)
        self.index = CacheIndex(root, self.limit)
        self.manifest = self._manifest()
        self._pool: tuple[int, ThreadPoolExecutor] | None = None
        self._pending: list[Future] = []

    def _manifest(self) -> Manifest:
        cached = self.local / MANIFEST
        if cached.exists():
            return Manifest.read(cached)
        fs, base = filesystem_for(self.uri)
        try:
            with fs.open_input_stream(f"{base}/{MANIFEST}") as stream:
                text = read_bounded(stream, f"{self.uri}/{MANIFEST}").decode()
            # every shard path is a plain relative name (checked as it parses, in linear
            # time): none can leave self.local, which is a folder of this cache
            manifest = Manifest.parse(text)
        except (FileNotFoundError, OSError) as error:
            raise FetchError(
                f"no {MANIFEST} at {self.uri}: not a complete shard version ({error})"
            ) from error
        except ManifestError as error:  # nothing is written for a manifest that is not sound
            raise FetchError(f"{self.uri}/{MANIFEST}: {error}") from error
        self.local.mkdir(parents=True, exist_ok=True)
        write_atomic(cached, text)
        return manifest

    def ensure(self, shard: ShardEntry, *, use: bool = True) -> Path:
        """The local file of ``shard``, fetched (and checked) if it is not cached; ``use``
        marks it as just used (eviction takes the least recently used first)."""
        target = safe_shard_path(self.local, shard.path)
        while True:
            downloaded = False
            if not _present(target, shard.bytes):
                if not self._fetch(shard, target, read_ahead=not use):
                    return target  # read-ahead that found no room: fetched when needed
                downloaded = True
            if not (use or downloaded):
                return target
            # a download becomes evictable; a shard to open is pinned until it is mapped
            if self.index.touch(target, shard.bytes, pin=use) or not use:
                return target
            # evicted by another reader between the look and the pin: fetch it again

    def _fetch(self, shard: ShardEntry, target: Path, *, read_ahead: bool = False) -> bool:
        """Download ``shard`` to ``target`` unless another process did; False when read-ahead
        found no room in the cache (:meth:`CacheIndex.reserve`)."""
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target.with_name(f".{target.name}.lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be fetching it
            if _present(target, shard.bytes):
                return True
            if not self.index.reserve(target, shard.bytes, read_ahead=read_ahead):
                return False
            fs, base = filesystem_for(self.uri)
            try:
                _download(fs, base, shard.path, target, shard.bytes, shard.sha256, self.uri)
            except BaseException:
                self.index.forget(target)
                raise
        return True

    def opened(self, shard: ShardEntry) -> None:
        """This process has memory-mapped ``shard``: it may be evicted from now on."""
        self.index.unpin(safe_shard_path(self.local, shard.path))

    def prefetch(self, shards: list[ShardEntry]) -> None:
        """Fetch these shards in the background; a failure shows when one is needed."""
        pool = self._threads()
        self._pending = [f for f in self._pending if not f.done()]
        for shard in shards:
            if not _present(safe_shard_path(self.local, shard.path), shard.bytes):
                self._pending.append(pool.submit(self._quietly, shard))

    def settle(self) -> None:
        """End of a pass: drop the read-ahead not started, wait for the fetches running."""
        for future in self._pending:
            future.cancel()
        wait(self._pending)
        self._pending = []

    def _quietly(self, shard: ShardEntry) -> None:
        with suppress(Exception):  # ensure() raises it again where the shard is read
            self.ensure(shard, use=False)

    def _threads(self) -> ThreadPoolExecutor:
        if self._pool is None or self._pool[0] != os.getpid():  # threads do not cross a fork
            self._pool = (os.getpid(), ThreadPoolExecutor(4, thread_name_prefix="shard-fetch"))
            self._pending = []
        return self._pool[1]

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_pool": None, "_pending": []}


def _inside(root: Path, path: object, folders: dict[str, bool]) -> bool:
    """Whether ``path`` names a file in a folder below ``root`` (already resolved): its
    folder resolves there, and its own name is a plain one (an unlink removes a link
    itself, never what it points to). ``folders`` remembers each folder's answer."""
    if not isinstance(path, str) or not path.startswith("/") or "\x00" in path:
        return False
    candidate = Path(path)
    if candidate.name in ("", ".", "..") or ".." in candidate.parts:
        return False
    parent = str(candidate.parent)
    if parent not in folders:
        folders[parent] = root in candidate.parent.resolve().parents
    return folders[parent]


def _present(path: Path, size: int) -> bool:
    try:
        return path.stat().st_size == size
    except FileNotFoundError:
        return False


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
