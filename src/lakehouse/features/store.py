"""The online store: the latest fill of each feature view, one entry per key, read by key.

Two implementations of one small interface, as Feast has its online stores:

- :class:`SqliteStore`, the embedded default: one SQLite file (Python's own ``sqlite3``, no
  server). A fill replaces a view's rows and its fill record in one transaction; in WAL mode
  a reader sees the whole previous fill or the whole new one, never a mix, and a crash
  leaves the previous one.
- :class:`RedisStore`, for production: each fill of a view is one Redis hash
  (``<prefix>:<view>:<fill_id>``, field = key), written whole before the view's record
  (``<prefix>:<view>``) is pointed at it with one ``SET``; the fill before the previous is
  then deleted. A reader gets the record and the values in two round trips, whatever the
  number of keys (``HMGET``).

Both hold each entry as the JSON of its row, as DuckDB writes it (``to_json``: instants in
ISO 8601 UTC, the embedding as a list of floats, exact for float32), decoded with the view's
Arrow schema, which the fill record carries.
"""

from __future__ import annotations

import base64
import json
import sqlite3
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from functools import cached_property
from pathlib import Path

import pyarrow as pa

REDIS_PREFIX = "lakehouse:online"


class StoreError(Exception):
    """The online store cannot be opened or read; the message names it and the cause."""


@dataclass(frozen=True)
class FillRecord:
    """What one fill of a view came from: the night (``as_of``, the job's clock), the dbt
    invocation that built the view's model, the shard version exported that night, and when
    and how much was written."""

    view: str
    model: str
    key: str  # the key column
    fill_id: int  # 1, 2, ... per view
    as_of: str  # ISO 8601; the instant the features are evaluated at
    invocation_id: str
    shard_version: int | None  # the training shards the same night published (or kept)
    filled_at: str  # ISO 8601, for people
    rows: int
    schema: str  # base64 of the view's Arrow schema (pa.Schema.serialize)

    @cached_property  # decoded once per record, not per lookup
    def arrow_schema(self) -> pa.Schema:
        return pa.ipc.read_schema(pa.py_buffer(base64.b64decode(self.schema)))

    @property
    def as_of_time(self) -> datetime:
        return datetime.fromisoformat(self.as_of)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes, where: str = "the online store") -> FillRecord:
        """The record as a store keeps it; one that is not whole (a damaged store, another
        tool's value under the key, a record of another version) is refused in one line
        naming ``where`` (the store and the view)."""
        try:
            record = cls(**json.loads(text))
            record.arrow_schema  # noqa: B018  (decoded now, so a bad schema fails here)
        except (ValueError, TypeError, pa.ArrowException) as error:
            cause = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise StoreError(
                f"the fill record of {where} is damaged ({cause}); fill the store again with "
                "`lakehouse materialize`"
            ) from None
        return record


def encode_schema(schema: pa.Schema) -> str:
    return base64.b64encode(schema.serialize().to_pybytes()).decode()


def decode_rows(schema: pa.Schema, texts: Sequence[str | bytes | None]) -> list[dict | None]:
    """The rows a fill wrote (the JSON of each, DuckDB's ``to_json``), typed as ``schema``
    says (None stays None: a key the view does not hold)."""
    stamps = [f.name for f in schema if pa.types.is_timestamp(f.type)]
    rows: list[dict | None] = []
    for text in texts:
        if text is None:
            rows.append(None)
            continue
        row = json.loads(text)
        for name in stamps:
            if row.get(name) is not None:
                row[name] = datetime.fromisoformat(row[name])
        rows.append(row)
    return rows


class OnlineStore(ABC):
    """The latest fill of each feature view, read by key."""

    uri: str

    @abstractmethod
    def write(self, record: FillRecord, entries: Iterable[tuple[int, str]]) -> None:
        """Replace ``record.view`` with ``entries`` (key, encoded row), all or nothing."""

    @abstractmethod
    def record(self, view: str) -> FillRecord | None:
        """The view's latest fill, None when it was never filled."""

    @abstractmethod
    def lookup(self, view: str, keys: Sequence[int]) -> tuple[FillRecord, list[str | None]]:
        """The view's latest fill and the encoded row of each key (None: not there), read
        from that one fill."""

    def views(self) -> list[FillRecord]:
        return [r for r in (self.record(v) for v in self.view_names()) if r is not None]

    @abstractmethod
    def view_names(self) -> list[str]: ...

    def close(self) -> None:  # noqa: B027 - nothing to release by default
        """Release the connection."""


class SqliteStore(OnlineStore):
    """The embedded store: one SQLite file, a table per view (``view_<name>``) and the fill
    records (``fills``)."""

    def __init__(self, path: str | Path, *, create: bool = False) -> None:
        self.path = Path(path)
        self.uri = str(self.path)
        if not create and not self.path.exists():
            raise StoreError(
                f"no online store at {self.path}: the nightly job fills it after the gate "
                "passes (`lakehouse run`, or `lakehouse materialize` after the gate)"
            )
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            # transactions are begun and ended here, explicitly (DDL included)
            self._con = sqlite3.connect(
                self.path, timeout=30, check_same_thread=False, isolation_level=None
            )
            self._con.execute("pragma journal_mode = wal")
            self._con.execute(
                "create table if not exists fills (view text primary key, record text not null)"
            )
        except sqlite3.Error as error:
            raise StoreError(f"cannot open the online store {self.path}: {error}") from error

    @staticmethod
    def _table(view: str) -> str:
        if not view.isidentifier():
            raise StoreError(f"not a feature view name: {view!r}")
        return f'"view_{view}"'

    def write(self, record: FillRecord, entries: Iterable[tuple[int, str]]) -> None:
        table = self._table(record.view)
        con = self._con
        con.execute("begin immediate")  # one transaction: readers see the previous fill
        try:
            con.execute(f"drop table if exists {table}")
            con.execute(f"create table {table} (key integer primary key, value text not null)")
            con.executemany(f"insert into {table} values (?, ?)", entries)
            con.execute(
                "insert or replace into fills values (?, ?)", [record.view, record.to_json()]
            )
        except BaseException as error:
            con.execute("rollback")
            if isinstance(error, sqlite3.Error):
                raise StoreError(f"cannot fill {record.view} in {self.path}: {error}") from error
            raise
        con.execute("commit")

    def record(self, view: str) -> FillRecord | None:
        row = self._con.execute("select record from fills where view = ?", [view]).fetchone()
        return None if row is None else FillRecord.from_json(row[0], f"{view} in {self.path}")

    def view_names(self) -> list[str]:
        return [r[0] for r in self._con.execute("select view from fills order by view")]

    def lookup(self, view: str, keys: Sequence[int]) -> tuple[FillRecord, list[str | None]]:
        table = self._table(view)
        con = self._con
        con.execute("begin")  # one snapshot for the record and the rows
        try:
            record = self.record(view)
            if record is None:
                raise StoreError(f"feature view {view!r} was never filled in {self.path}")
            found: dict[int, str] = {}
            wanted = list(dict.fromkeys(int(k) for k in keys))
            for start in range(0, len(wanted), 500):  # SQLite's bound on parameters
                part = wanted[start : start + 500]
                marks = ",".join("?" * len(part))
                found.update(
                    con.execute(f"select key, value from {table} where key in ({marks})", part)
                )
        finally:
            con.execute("commit")
        return record, [found.get(int(k)) for k in keys]

    def close(self) -> None:
        self._con.close()


class RedisStore(OnlineStore):
    """Redis: a hash per fill of a view, and the view's record pointing at the latest."""

    def __init__(self, url: str, *, prefix: str = REDIS_PREFIX) -> None:
        try:
            import redis
        except ImportError:
            raise StoreError(
                f"the online store {url} needs the redis client: pip install 'lakehouse[serve]'"
            ) from None
        self.uri = url
        self.prefix = prefix
        try:
            self._redis = redis.Redis.from_url(url, socket_timeout=10)
            self._redis.ping()
        except (redis.RedisError, ValueError) as error:
            raise StoreError(f"cannot reach the online store {url}: {error}") from error
        self._errors = redis.RedisError

    def _hash(self, view: str, fill_id: int) -> str:
        return f"{self.prefix}:{view}:{fill_id}"

    def write(self, record: FillRecord, entries: Iterable[tuple[int, str]]) -> None:
        name = self._hash(record.view, record.fill_id)
        try:
            self._redis.unlink(name)  # a fill that died half-way under this id
            batch: dict[int, str] = {}
            for key, value in entries:
                batch[key] = value
                if len(batch) >= 10_000:
                    self._redis.hset(name, mapping=batch)  # type: ignore[arg-type]
                    batch = {}
            if batch:
                self._redis.hset(name, mapping=batch)  # type: ignore[arg-type]
            # readers switch to the new fill here, at once; the previous stays for readers
            # that read its record a moment ago, the one before it goes
            self._redis.set(f"{self.prefix}:{record.view}", record.to_json())
            self._redis.sadd(f"{self.prefix}:views", record.view)
            if record.fill_id > 2:
                self._redis.unlink(self._hash(record.view, record.fill_id - 2))
        except self._errors as error:
            raise StoreError(f"cannot fill {record.view} in {self.uri}: {error}") from error

    def record(self, view: str) -> FillRecord | None:
        try:
            text = self._redis.get(f"{self.prefix}:{view}")
        except self._errors as error:
            raise StoreError(f"cannot read the online store {self.uri}: {error}") from error
        where = f"{view} in {self.uri}"
        return None if text is None else FillRecord.from_json(text, where)  # type: ignore[arg-type]

    def view_names(self) -> list[str]:
        names = self._redis.smembers(f"{self.prefix}:views")
        return sorted(n.decode() for n in names)  # type: ignore[union-attr]

    def lookup(self, view: str, keys: Sequence[int]) -> tuple[FillRecord, list[str | None]]:
        record = self.record(view)
        if record is None:
            raise StoreError(f"feature view {view!r} was never filled in {self.uri}")
        if not keys:
            return record, []
        try:
            values = self._redis.hmget(self._hash(view, record.fill_id), [int(k) for k in keys])
        except self._errors as error:
            raise StoreError(f"cannot read the online store {self.uri}: {error}") from error
        return record, [None if v is None else v.decode() for v in values]  # type: ignore[union-attr]

    def close(self) -> None:
        self._redis.close()


def open_store(uri: str, *, create: bool = False) -> OnlineStore:
    """The online store at ``uri``: ``redis://`` (or ``rediss://``, ``unix://``) is Redis, any
    other value a SQLite file (``create``: make it when missing, as a fill does)."""
    if uri.split("://", 1)[0] in ("redis", "rediss", "unix"):
        return RedisStore(uri)
    if "://" in uri:
        raise StoreError(f"unsupported online store {uri!r}: a file path or redis://host:port/db")
    return SqliteStore(uri, create=create)
