"""Landing folder -> bronze: discover files, skip what was ingested, land each file whole.

For every file: rows read = rows landed + rows quarantined + duplicates skipped, and the
numbers go to ``_ingest_log``. A file that cannot be read is reported with its name and the
rest still lands.
"""

from __future__ import annotations

import csv
import hashlib
import os
import queue
import threading
import uuid
from collections import Counter
from collections.abc import Generator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol, TypeVar

import pyarrow as pa
import pyarrow.fs as pafs

from lakehouse.contracts import INGESTED, data_tables
from lakehouse.ingest.bronze import Bronze
from lakehouse.ingest.errors import IngestError, LakeWriteError
from lakehouse.ingest.readers import read_blocks
from lakehouse.ingest.rejects import Reject
from lakehouse.ingest.schemas import (
    MAX_NEW_COLUMNS,
    TIMESTAMP,
    SourceSpec,
    source_for_dir,
)
from lakehouse.ingest.validate import KnownKeys, SeenKeys, ValidationContext, validate_block
from lakehouse.storage import filesystem_for, is_remote, join_uri, normalize_uri

_HASH_CHUNK = 8 << 20
READ_AHEAD_BLOCKS = 1  # blocks read and checked ahead of the Delta writer
# the threads that read, parse and check landing files while the Delta writer encodes
# (_Reading): this file's and the next one's. Kept for the process: a thread per file let
# glibc give each its own heap arena, and ingest's peak memory doubled (1.2 GB, not 0.6)
_READERS = ThreadPoolExecutor(max_workers=2, thread_name_prefix="ingest-read")
T = TypeVar("T")


@dataclass(frozen=True)
class LandingFile:
    uri: str
    path: str  # inside the filesystem
    size: int
    spec: SourceSpec
    refused: str | None = None  # why it is not read at all (a link out of the landing folder)
    mtime_ns: int | None = None  # when it was last written, as the storage reports it


@dataclass
class FileResult:
    """What happened to one landing file."""

    source_file: str
    table: str
    status: str  # ingested | skipped | failed
    content_sha256: str = ""
    bytes: int = 0
    rows_read: int = 0
    rows_landed: int = 0
    rows_quarantined: int = 0
    rows_duplicate: int = 0
    delta_version: int | None = None
    error: str | None = None
    reasons: Counter[str] = field(default_factory=Counter)
    # columns this file added to its bronze table (fields its contract does not declare)
    new_columns: list[str] = field(default_factory=list)
    # fields that hold values but cannot become columns: name -> why (never silent)
    ignored_fields: dict[str, str] = field(default_factory=dict)
    bytes_seen: int = 0  # of the file, read so far (progress)

    @property
    def reconciles(self) -> bool:
        return self.rows_read == self.rows_landed + self.rows_quarantined + self.rows_duplicate


@dataclass
class IngestReport:
    run_id: str
    lake: str
    files: list[FileResult]
    ignored: list[str] = field(default_factory=list)

    @property
    def failed(self) -> list[FileResult]:
        return [f for f in self.files if f.status == "failed"]

    @property
    def ok(self) -> bool:
        return not self.failed

    def total(self, attribute: str) -> int:
        return sum(getattr(f, attribute) for f in self.files)


class IngestProgress(Protocol):
    def start(self, total_bytes: int) -> None: ...
    def file_started(self, name: str, size: int) -> None: ...
    def advance(self, nbytes: int) -> None: ...
    def file_done(self, result: FileResult) -> None: ...


class _NoProgress:
    def start(self, total_bytes: int) -> None: ...
    def file_started(self, name: str, size: int) -> None: ...
    def advance(self, nbytes: int) -> None: ...
    def file_done(self, result: FileResult) -> None: ...


# errors a file's bytes can provoke in a parser (bad values, deep nesting, odd CSV); a crash
# of the process or a bug elsewhere (RuntimeError, MemoryError, ...) still stops the run
_CONTENT_ERRORS = (
    ValueError,
    LookupError,
    TypeError,
    ArithmeticError,
    RecursionError,
    csv.Error,
)


def discover(landing_uri: str) -> tuple[list[LandingFile], list[str]]:
    """Landing files by source (bronze table order), plus files in folders no source owns."""
    fs, root = filesystem_for(landing_uri)
    info = fs.get_file_info(root)
    if info.type != pafs.FileType.Directory:
        raise IngestError(
            f"landing folder {landing_uri} does not exist; generate sample data with "
            "`lakehouse generate --out <folder>` or point at the app's dump"
        )
    files, ignored = [], []
    local_root = None if is_remote(landing_uri) else os.path.realpath(root)
    for entry in fs.get_file_info(pafs.FileSelector(root, recursive=True)):
        if entry.type != pafs.FileType.File:
            continue
        relative = entry.path[len(root.rstrip("/")) + 1 :]
        parts = relative.split("/")
        if any(p.startswith((".", "_")) for p in parts):
            if len(parts) > 1:  # inside a source folder: say so (root files are sidecars)
                ignored.append(f"{relative} (hidden: a name starting with . or _)")
            continue
        spec = source_for_dir(parts[0]) if len(parts) > 1 else None
        if spec is None:
            ignored.append(relative)
            continue
        uri = join_uri(landing_uri, relative)
        refused = None
        if local_root is not None:  # a link (to a file or a folder) must stay inside
            real = os.path.realpath(entry.path)
            if os.path.commonpath([real, local_root]) != local_root:
                refused = (
                    f"{uri}: a link to a file outside the landing folder; refused unread "
                    "(copy the file into the landing folder to ingest it)"
                )
        files.append(LandingFile(uri, entry.path, entry.size, spec, refused, entry.mtime_ns))
    files.sort(key=lambda f: (f.spec.order, f.path))
    return files, sorted(ignored)


def ingest(
    landing: str,
    lake: str,
    *,
    tables: list[str] | None = None,
    now: datetime | None = None,
    progress: IngestProgress | None = None,
) -> IngestReport:
    """Land every new file of ``landing`` into ``<lake>/bronze``."""
    landing, lake = normalize_uri(landing), normalize_uri(lake)
    progress = progress or _NoProgress()
    run_id = uuid.uuid4().hex[:12]
    bronze = Bronze(lake)
    fs, _ = filesystem_for(landing)
    if tables:
        declared = data_tables()
        unknown = sorted(set(tables) - set(declared))
        if unknown:
            raise IngestError(
                f"no bronze table {', '.join(unknown)}: the sources YAML declares "
                f"{', '.join(declared)}"
            )
    files, ignored = discover(landing)
    if tables:
        files = [f for f in files if f.spec.table in tables]
    bronze.upgrade_log()
    done = bronze.ingested_files()
    results: list[FileResult] = []
    refused: dict[str, str] = {}
    for spec in {f.spec.table: f.spec for f in files}.values():
        try:
            bronze.check_schema(spec)
        except IngestError as exc:
            refused[spec.table] = str(exc)
    # keys of the tables the contract's references point at ("photos.photo_id"), read once,
    # when a file that needs them lands (ingest order puts a referenced table first)
    known: dict[str, KnownKeys | None] = {}
    progress.start(sum(f.size for f in files))
    ahead: _Reading | None = None  # the next file's reading, started while this one commits
    try:
        for index, landing_file in enumerate(files):
            spec = landing_file.spec
            progress.file_started(landing_file.uri, landing_file.size)
            reading, ahead = ahead, None
            started = reading.started if reading else datetime.now(UTC)
            result = (
                reading.result
                if reading
                else FileResult(landing_file.uri, spec.table, "failed", bytes=landing_file.size)
            )
            try:
                if landing_file.refused:
                    raise IngestError(landing_file.refused)
                if not result.content_sha256:
                    result.content_sha256 = _sha256(fs, landing_file.path)
                if reading and result.content_sha256 in done:  # landed while read ahead
                    reading.close()
                    progress.advance(-result.bytes_seen)
                    _reset(result)
                    reading = None
                if result.content_sha256 in done:
                    result.status = "skipped"
                    result.error = f"already ingested as {done[result.content_sha256]}"
                    progress.advance(landing_file.size)
                elif spec.table in refused:
                    result.error = refused[spec.table]
                    progress.advance(landing_file.size)
                else:
                    for reference in spec.references:
                        if reference not in known:
                            ids = bronze.distinct_values(*reference.split("."))
                            known[reference] = None if ids is None else KnownKeys(ids)
                    ctx = ValidationContext(
                        now=now or started,
                        known_keys={
                            r: keys for r in spec.references if (keys := known[r]) is not None
                        },
                    )
                    following = files[index + 1] if index + 1 < len(files) else None
                    ahead = _read_next(fs, following, result, ctx, now, progress, done)
                    _land_file(bronze, fs, landing_file, ctx, result, progress, reading)
                    done[result.content_sha256] = landing_file.uri
            except LakeWriteError:
                raise  # the lake, not this file: the next file would fail the same way
            except IngestError as exc:
                result.status, result.error = "failed", str(exc)
            except (OSError, pa.ArrowException) as exc:  # I/O trouble with this file only
                result.status, result.error = "failed", f"{landing_file.uri}: {exc}"
            except _CONTENT_ERRORS as exc:  # what else a file's content can cause stays with it:
                result.status = "failed"  # the other files still land, the next run retries
                result.error = (
                    f"{landing_file.uri}: could not be read ({type(exc).__name__}: "
                    f"{str(exc)[:300]}); the rest of the landing folder was ingested"
                )
            if result.status != "skipped" and not _log(bronze, run_id, result, started):
                _landed_by_another_run(result)
            progress.file_done(result)
            results.append(result)
    finally:
        if ahead is not None:
            ahead.close()
    return IngestReport(run_id, lake, results, ignored)


class _NewColumns(Exception):
    """A block past the first brought fields the file's reader schema lacks: read again."""


def _read_next(
    fs: pafs.FileSystem,
    following: LandingFile | None,
    current: FileResult,
    ctx: ValidationContext,
    now: datetime | None,
    progress: IngestProgress,
    done: dict[str, str],
) -> _Reading | None:
    """Start reading the file after the one about to land, so that its parsing and checks
    run while the Delta writer encodes this one: only within one table (a file is checked
    against the keys of the tables landed before its own), and not when it holds the same
    bytes (it will be skipped). None where it is not started; its own turn reads it then."""
    if following is None or following.spec.table != current.table or following.refused:
        return None
    result = FileResult(following.uri, current.table, "failed", bytes=following.size)
    try:
        result.content_sha256 = _sha256(fs, following.path)
    except OSError:
        return None  # its turn says what went wrong
    if result.content_sha256 == current.content_sha256 or result.content_sha256 in done:
        return None
    started = datetime.now(UTC)
    context = ValidationContext(now=now or started, known_keys=ctx.known_keys)
    return _Reading(fs, following, context, result, progress, [], started)


def _land_file(
    bronze: Bronze,
    fs: pafs.FileSystem,
    landing_file: LandingFile,
    ctx: ValidationContext,
    result: FileResult,
    progress: IngestProgress,
    reading: _Reading | None = None,
) -> None:
    """Stream one file into its bronze table as a single commit, then its quarantine rows.
    Fields the contract does not declare become new columns in that same commit (schema
    evolution); one first seen past the first block makes the file be read once more, with
    the schema that holds it (the commit was not made). ``reading``: the file's reading,
    started ahead (:func:`_read_next`)."""
    spec = landing_file.spec
    existing = bronze.columns(spec.table)
    new: list[str] = reading.new if reading else []
    for _ in range(MAX_NEW_COLUMNS + 1):
        reading = reading or _Reading(fs, landing_file, ctx, result, progress, new)
        try:
            _land_once(bronze, reading)
            break
        except _NewColumns:
            progress.advance(-result.bytes_seen)
            _reset(result)
            reading = None
    else:  # each reading adds a column, and a file adds MAX_NEW_COLUMNS at most
        raise AssertionError(f"{landing_file.uri} read {MAX_NEW_COLUMNS + 1} times")
    result.new_columns = [n for n in new if n not in existing]
    if not result.reconciles:  # a bug, never bad input: refuse to log a count that lies
        raise AssertionError(f"counts do not reconcile for {landing_file.uri}: {result}")


def _zero_counts(result: FileResult) -> None:
    result.rows_read = result.rows_landed = result.rows_quarantined = result.rows_duplicate = 0
    result.reasons = Counter()


def _reset(result: FileResult) -> None:
    """Forget what reading the file found: it is read again."""
    _zero_counts(result)
    result.bytes_seen = 0
    result.ignored_fields = {}


class _Reading:
    """One reading of a landing file: its blocks read, parsed and checked in a thread, up
    to READ_AHEAD_BLOCKS ahead of the Delta writer that consumes them (:func:`_land_once`),
    with what it rejected and the first error it met. Counts go to ``result``."""

    def __init__(
        self,
        fs: pafs.FileSystem,
        landing_file: LandingFile,
        ctx: ValidationContext,
        result: FileResult,
        progress: IngestProgress,
        new: list[str],
        started: datetime | None = None,
    ) -> None:
        self.landing_file = landing_file
        self.result = result
        self.new = new  # fields this file adds to its table, found so far
        self.started = started or datetime.now(UTC)
        self.schema = landing_file.spec.landed_schema(new)
        self.batch_id = batch_id_for(result.content_sha256)
        self.ingested_at = ctx.now
        self.rejects: list[Reject] = []
        self.failure: list[BaseException] = []
        self.blocks = ReadAhead(self._good_batches(fs, ctx, progress), READ_AHEAD_BLOCKS, _READERS)

    def close(self) -> None:
        self.blocks.close()

    def _good_batches(
        self, fs: pafs.FileSystem, ctx: ValidationContext, progress: IngestProgress
    ) -> Iterator[list[pa.RecordBatch]]:
        landing_file, spec, result, new = (
            self.landing_file,
            self.landing_file.spec,
            self.result,
            self.new,
        )
        seen_keys = SeenKeys()

        def advance(nbytes: int) -> None:
            result.bytes_seen += nbytes
            progress.advance(nbytes)

        try:
            blocks = read_blocks(fs, landing_file.path, spec, advance)
            for index, block in enumerate(blocks):
                result.rows_read += block.table.num_rows + len(block.rejects)
                result.ignored_fields.update(block.ignored)
                checked = validate_block(block, spec, ctx, seen_keys)
                self.rejects.extend(checked.rejects)
                result.rows_duplicate += checked.duplicates
                fresh = [n for n in checked.table.column_names if n not in self.schema.names]
                if fresh:
                    if len(new) + len(fresh) > MAX_NEW_COLUMNS:
                        raise IngestError(
                            f"{landing_file.uri}: its fields not in the {spec.table} contract "
                            f"would add {len(new) + len(fresh)} columns to bronze, more than "
                            f"the {MAX_NEW_COLUMNS} a file may add ({', '.join(fresh[:5])}, "
                            "…); declare them in the contract (ingest/schemas.py) first"
                        )
                    new.extend(fresh)
                    if index:  # the writer's schema is fixed: read the file again
                        raise _NewColumns()
                    self.schema = spec.landed_schema(new)
                if checked.table.num_rows:
                    result.rows_landed += checked.table.num_rows
                    table = _with_ingestion_columns(
                        checked.table, landing_file.uri, self.batch_id, self.ingested_at,
                        self.schema,
                    )  # fmt: skip
                    yield table.to_batches()
        except BaseException as exc:  # deltalake wraps errors raised while it pulls batches;
            self.failure.append(exc)  # keep the original to re-raise
            raise


def _land_once(bronze: Bronze, reading: _Reading) -> None:
    landing_file, result, batches = reading.landing_file, reading.result, reading.blocks
    spec = landing_file.spec
    try:
        first = next(batches, None)  # a reading error raises right here
        if first is not None:
            rows = (batch for block in _chain(first, batches) for batch in block)
            # the schema as the first block left it (fields it added)
            reader = pa.RecordBatchReader.from_batches(reading.schema, rows)
            try:
                committed = bronze.commit(spec.table, reader, reading.batch_id, evolve=True)
            except Exception:
                if reading.failure:
                    raise reading.failure[0] from None
                raise
            if not committed.ours:  # an earlier run died after this commit: count, don't write
                for _ in batches:
                    pass
            result.delta_version = committed.version
    finally:
        batches.close()  # the reading thread has stopped when this returns
    if reading.failure:
        raise reading.failure[0]
    if reading.rejects:
        bronze.append_quarantine(
            _quarantine_rows(
                reading.rejects, spec, landing_file.uri, reading.batch_id, reading.ingested_at
            ),
            reading.batch_id,
        )
    result.rows_quarantined = len(reading.rejects)
    result.reasons = Counter(r.code for r in reading.rejects)
    result.status = INGESTED


def _chain(first: T, rest: Iterator[T]) -> Iterator[T]:
    yield first
    yield from rest


class ReadAhead(Iterator[T]):
    """The items of ``items``, produced on a thread of ``threads`` from the moment this is
    made, up to ``depth`` ahead of the consumer. An exception of the producer is raised to
    the consumer as it is; :meth:`close` stops the producer (and closes ``items``) before
    it returns."""

    def __init__(self, items: Iterator[T], depth: int, threads: ThreadPoolExecutor) -> None:
        self._items = items
        self._slots: queue.Queue[tuple[bool, object]] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._finished = False
        self._producer = threads.submit(self._produce)

    def _put(self, entry: tuple[bool, object]) -> bool:
        while not self._stop.is_set():
            try:
                self._slots.put(entry, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def _produce(self) -> None:
        try:
            for item in self._items:
                if not self._put((False, item)):
                    return
            self._put((True, None))
        except BaseException as exc:  # raised where the items are consumed
            self._put((True, exc))
        finally:
            if isinstance(self._items, Generator):
                self._items.close()

    def __next__(self) -> T:
        if self._finished:
            raise StopIteration
        done, item = self._slots.get()
        if done:
            self.close()
            if item is not None:
                raise item  # type: ignore[misc]
            raise StopIteration
        return item  # type: ignore[return-value]

    def close(self) -> None:
        self._finished = True
        self._stop.set()
        self._producer.result()


def _with_ingestion_columns(
    table: pa.Table, source: str, batch_id: str, ingested_at: datetime, schema: pa.Schema
) -> pa.Table:
    n = table.num_rows
    contract = [name for name in schema.names if not name.startswith("_")]
    columns = {
        name: table.column(name)
        if name in table.column_names
        else pa.nulls(n, schema.field(name).type)
        for name in contract
    }
    columns["_source_file"] = pa.repeat(pa.scalar(source, pa.string()), n)
    columns["_source_line"] = table.column("_source_line")
    columns["_batch_id"] = pa.repeat(pa.scalar(batch_id, pa.string()), n)
    columns["_ingested_at"] = pa.repeat(pa.scalar(ingested_at, TIMESTAMP), n)
    return pa.table(columns).cast(schema)


def _quarantine_rows(
    rejects: list[Reject], spec: SourceSpec, source: str, batch_id: str, ingested_at: datetime
) -> pa.Table:
    n = len(rejects)
    return pa.table(
        {
            "table": [spec.table] * n,
            "source_file": [source] * n,
            "line_number": [r.line for r in rejects],
            "reason_code": [r.code for r in rejects],
            "column": [r.column for r in rejects],
            "reason": [r.message for r in rejects],
            "raw": [r.raw for r in rejects],
            "_batch_id": [batch_id] * n,
            "_ingested_at": pa.array([ingested_at] * n, TIMESTAMP),
        }
    )


def _landed_by_another_run(result: FileResult) -> None:
    """The file's log row was committed by another ingest running at the same time: that
    run reports the file's rows, and this one counts it as already in bronze (so two runs
    together never claim a row twice)."""
    _zero_counts(result)
    result.status = "skipped"
    result.error = "ingested at the same time by another run"


def _log(bronze: Bronze, run_id: str, result: FileResult, started: datetime) -> bool:
    """Log the file's outcome; False when another run logged this very batch first."""
    batch_id = batch_id_for(result.content_sha256 or uuid.uuid4().hex)
    if result.status == "failed":
        batch_id = f"{batch_id}-failed-{run_id}"
    row = {
        "run_id": [run_id],
        "batch_id": [batch_id],
        "table": [result.table],
        "source_file": [result.source_file],
        "content_sha256": [result.content_sha256],
        "bytes": [result.bytes],
        "status": [result.status],
        "rows_read": [result.rows_read],
        "rows_landed": [result.rows_landed],
        "rows_quarantined": [result.rows_quarantined],
        "rows_duplicate": [result.rows_duplicate],
        "delta_version": [result.delta_version],
        "error": [result.error],
        "new_columns": [", ".join(result.new_columns) or None],
        "started_at": pa.array([started], TIMESTAMP),
        "finished_at": pa.array([datetime.now(UTC)], TIMESTAMP),
    }
    return bronze.append_log(pa.table(row), batch_id).ours


def batch_id_for(content_sha256: str) -> str:
    """A file's batch id: derived from its content, so a retry after a crash reuses it."""
    return "b-" + content_sha256[:24]


def _sha256(fs: pafs.FileSystem, path: str) -> str:
    digest = hashlib.sha256()
    with fs.open_input_stream(path, compression=None) as stream:
        while chunk := stream.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
