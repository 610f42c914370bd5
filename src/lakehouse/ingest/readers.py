"""Landing formats -> blocks of rows in the bronze column layout, with line numbers.

Readers stream: a file is never held whole in memory, only one block of lines at a time.
Parse-level problems (broken JSON, wrong JSON types, wrong CSV column count, invalid UTF-8)
are diagnosed per line here; value-level checks live in ``validate``.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import re
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.fs as pafs
import pyarrow.json as pjson
import pyarrow.parquet as pq

from lakehouse.ingest import rejects as r
from lakehouse.ingest.errors import SchemaMismatchError, UnreadableFileError
from lakehouse.ingest.rejects import Reject, raw_text
from lakehouse.ingest.schemas import NEW_COLUMN_TYPE, Column, SourceSpec

BLOCK_LINES = 8192
RETRY_LINES = 512  # a refused block is retried in sub-blocks of this size
RETRY_CHUNK_BYTES = 64 << 10  # a refused chunk is retried in pieces of this size
# a refused chunk is first read by Arrow's errors (_json_by_errors) in pieces of this size:
# larger pieces parse more lines twice, smaller ones pay Arrow's cost per call
ERROR_PIECE_BYTES = 256 << 10
CHUNK_BYTES = 16 << 20  # decompressed bytes handed to Arrow at once on the fast path
# the longest line read at all: a longer one is quarantined as oversized_value while it
# streams past, holding only its first bytes, so memory never grows with a line's length
# (a shorter one is parsed, and the contract's size bounds judge its values)
MAX_LINE_BYTES = CHUNK_BYTES
KEPT_BYTES = 200  # of an oversized line, for its quarantine row
# what stands in for an oversized line downstream (not UTF-8, so never a real record)
_OVERSIZED = b"\xff\x00lakehouse-oversized-line "
_INT64 = (-(2**63), 2**63 - 1)


@dataclass
class RawBlock:
    """Rows as read: source columns (native JSON types, or strings for CSV), their line
    numbers, a way to fetch the raw text of row i, and the lines already rejected."""

    table: pa.Table
    lines: Sequence[int] | np.ndarray
    raw: Callable[[int], str]
    rejects: list[Reject] = field(default_factory=list)
    # fields the contract does not declare that cannot become columns: name -> why
    ignored: dict[str, str] = field(default_factory=dict)


def format_of(name: str) -> str:
    lower = name.lower()
    for ext in (".jsonl.gz", ".csv.gz", ".jsonl", ".ndjson", ".json", ".csv", ".parquet"):
        if lower.endswith(ext):
            return ext
    return "." + lower.rsplit(".", 1)[-1] if "." in lower else ""


def read_blocks(
    fs: pafs.FileSystem, path: str, spec: SourceSpec, on_bytes: Callable[[int], None]
) -> Iterator[RawBlock]:
    """Blocks of rows from one landing file; raises UnreadableFileError naming it."""
    fmt = format_of(path)
    if fmt not in spec.formats:
        raise UnreadableFileError(
            path,
            f"format {fmt or '(none)'} is not accepted for {spec.table}; "
            f"expected one of {', '.join(spec.formats)}",
        )
    if fmt == ".parquet":
        yield from _parquet_blocks(fs, path, spec, on_bytes)
        return
    chunks = _text_chunks(fs, path, gz=fmt.endswith(".gz"), on_bytes=on_bytes)
    if fmt.startswith(".csv"):
        yield from _csv_blocks(path, _csv_records(_line_blocks(chunks)), spec)
    else:
        yield from _json_chunks(path, chunks, spec)


# ---------------------------------------------------------------- lines


def _text_chunks(
    fs: pafs.FileSystem, path: str, gz: bool, on_bytes: Callable[[int], None]
) -> Iterator[tuple[bytes, int]]:
    """Decoded text in chunks that end at a newline, each with its first line's number."""
    with fs.open_input_file(path) as raw:
        stream = pa.CompressedInputStream(raw, "gzip") if gz else raw
        position, carry, first_line, seen_any = 0, b"", 1, False
        skipped = 0  # bytes of an oversized line streamed past so far (0: not in one)
        while True:
            try:
                data = stream.read(CHUNK_BYTES)
            except (OSError, pa.ArrowInvalid) as exc:
                raise UnreadableFileError(path, f"cannot decompress as gzip ({exc})") from exc
            on_bytes(raw.tell() - position)
            position = raw.tell()
            if not data:
                break
            if not seen_any:
                _refuse_wide_text(path, data)
            seen_any = True
            if skipped:  # inside an oversized line: drop bytes up to its newline
                end = data.find(b"\n")
                if end < 0:
                    skipped += len(data)
                    continue
                skipped += end
                carry, data = _oversized(carry, skipped), data[end:]
                skipped = 0
            cut = data.rfind(b"\n")
            if cut < 0:
                carry += data
                if len(carry) - (carry.rfind(b"\n") + 1) > MAX_LINE_BYTES:  # a line too long
                    start = carry.rfind(b"\n") + 1
                    skipped = len(carry) - start
                    carry = carry[:start] + carry[start : start + KEPT_BYTES]
                continue
            chunk, carry = carry + data[: cut + 1], data[cut + 1 :]
            yield chunk, first_line
            first_line += chunk.count(b"\n")
        if not seen_any:
            raise UnreadableFileError(path, "file is empty")
        if skipped:
            carry = _oversized(carry, skipped)
        if carry:
            yield carry, first_line


_WIDE_MARKS = (  # byte-order marks of text that is not UTF-8, longest first
    (b"\x00\x00\xfe\xff", "UTF-32"),
    (b"\xff\xfe\x00\x00", "UTF-32"),
    (b"\xfe\xff", "UTF-16"),
    (b"\xff\xfe", "UTF-16"),
)


def _refuse_wide_text(path: str, head: bytes) -> None:
    """A file of UTF-16 or UTF-32 text is refused whole: split at byte 0x0A its lines are
    not its records (every other byte is NUL), so no count or quarantine of it could be
    true. Known by its byte-order mark, or by ASCII text with a NUL after each letter."""
    encoding = next((name for mark, name in _WIDE_MARKS if head.startswith(mark)), None)
    pairs = head[:8]
    if (
        encoding is None
        and len(pairs) == 8
        and (
            all(pairs[i] == 0 and pairs[i + 1] for i in range(0, 8, 2))
            or all(pairs[i] and pairs[i + 1] == 0 for i in range(0, 8, 2))
        )
    ):
        encoding = "UTF-16"
    if encoding is None:
        return
    raise UnreadableFileError(path, f"file is {encoding} text, not UTF-8; re-export it as UTF-8")


def _oversized(carry: bytes, length: int) -> bytes:
    """``carry`` with its last (kept) line replaced by the marker of an oversized line."""
    start = carry.rfind(b"\n") + 1
    kept = carry[start : start + KEPT_BYTES]
    return carry[:start] + _OVERSIZED + str(length).encode() + b" " + kept.hex().encode()


def _chunk_lines(chunk: bytes, first_line: int) -> Iterator[tuple[list[bytes], list[int]]]:
    """Non-blank lines of a chunk in blocks of BLOCK_LINES, with 1-based line numbers."""
    block: list[bytes] = []
    numbers: list[int] = []
    for number, piece in enumerate(chunk.split(b"\n"), start=first_line):
        if len(piece) > MAX_LINE_BYTES:
            piece = _oversized(piece[:KEPT_BYTES], len(piece))
        if piece.strip():
            block.append(piece.rstrip(b"\r"))
            numbers.append(number)
            if len(block) >= BLOCK_LINES:
                yield block, numbers
                block, numbers = [], []
    if block:
        yield block, numbers


def _line_blocks(chunks: Iterator[tuple[bytes, int]]) -> Iterator[tuple[list[bytes], list[int]]]:
    for chunk, first_line in chunks:
        yield from _chunk_lines(chunk, first_line)


def _split_invalid_utf8(
    lines: list[bytes], numbers: list[int]
) -> tuple[list[bytes], list[int], list[Reject]]:
    try:
        b"\n".join(lines).decode("utf-8")
        return lines, numbers, []
    except UnicodeDecodeError:
        pass
    good, good_numbers, bad = [], [], []
    for line, number in zip(lines, numbers, strict=True):
        if line.startswith(_OVERSIZED):
            length, kept = line[len(_OVERSIZED) :].split(b" ", 1)
            bad.append(
                Reject(
                    number,
                    r.OVERSIZED_VALUE,
                    f"line is {int(length):,} bytes, longer than the {MAX_LINE_BYTES:,} a "
                    f"record may have (its first {KEPT_BYTES} bytes are kept)",
                    raw_text(bytes.fromhex(kept.decode())),
                )
            )
            continue
        try:
            line.decode("utf-8")
        except UnicodeDecodeError as exc:
            bad.append(
                Reject(number, r.INVALID_UTF8, f"invalid UTF-8 at byte {exc.start}", raw_text(line))
            )
            continue
        good.append(line)
        good_numbers.append(number)
    return good, good_numbers, bad


# ---------------------------------------------------------------- JSON lines


def _json_read_schema(spec: SourceSpec) -> pa.Schema:
    """JSON types as the app writes them: timestamps arrive as strings."""
    return pa.schema(
        [pa.field(c.name, pa.string() if c.is_timestamp else c.type) for c in spec.columns]
    )


def _json_chunks(
    path: str, chunks: Iterator[tuple[bytes, int]], spec: SourceSpec
) -> Iterator[RawBlock]:
    """Fast path: Arrow parses a whole chunk. It is taken when the chunk is valid UTF-8,
    Arrow accepts it, and no blank line was skipped (so row i is line first + i); any other
    chunk goes through the line-by-line path that can name each broken line."""
    # fields the contract does not declare are read too (Arrow infers them), then turned
    # into text columns by _undeclared: schema evolution, nothing dropped silently
    options = pjson.ParseOptions(
        explicit_schema=_json_read_schema(spec), unexpected_field_behavior="infer"
    )
    lines_seen = False
    refused = False  # a chunk of this file was refused: the next ones go by Arrow's errors
    for chunk, first_line in chunks:
        lines_seen = lines_seen or bool(chunk.strip())
        table = None if refused else _fast_json_chunk(chunk, options)
        if table is not None:
            table, ignored = _undeclared(table, spec)
            lines = range(first_line, first_line + table.num_rows)
            yield RawBlock(table, lines, _LazyLines(chunk), ignored=ignored)
            continue
        refused = True
        block = _json_by_errors(chunk, first_line, spec, options)
        if block is not None:
            yield block
            continue
        parts: list[RawBlock] = []
        for piece, piece_line in _split_at_newlines(chunk, first_line, RETRY_CHUNK_BYTES):
            table = _fast_json_chunk(piece, options)
            if table is not None:
                table, ignored = _undeclared(table, spec)
                lines = range(piece_line, piece_line + table.num_rows)
                parts.append(RawBlock(table, lines, _LazyLines(piece), ignored=ignored))
            else:
                parts.extend(_json_blocks(_chunk_lines(piece, piece_line), spec, options))
        if parts:  # a chunk of blank lines has none
            yield _merge_blocks(parts)  # one block a chunk: validation has a cost per block
    if not lines_seen:
        raise UnreadableFileError(path, "file has no records, only blank lines")


_ERROR_ROW = re.compile(r" in row (\d+)$")


def _json_by_errors(
    chunk: bytes, first_line: int, spec: SourceSpec, options: pjson.ParseOptions
) -> RawBlock | None:
    """A chunk Arrow refused, read in pieces of about ERROR_PIECE_BYTES, one pass each:
    where Arrow refuses a piece it names the row it stopped at, so the lines before that
    one are read as one table, that line is judged alone by the line-by-line path
    (:func:`_json_blocks`, which says why it is refused, or lands it), and reading goes on
    after it. Lines of invalid UTF-8
    (which Arrow would take) are judged alone too. A line is parsed once, or twice in a
    piece with a refused line, where the slower path parsed each refused line's neighbours
    many times over. A piece whose error names no row, or with several records on a line,
    is judged line by line. None for a chunk with a blank line (Arrow skips it, so rows are
    no longer lines): the caller's slower path reads it."""
    if _has_blank_line(chunk):
        return None
    starts = np.flatnonzero(np.frombuffer(chunk, dtype=np.uint8) == 10) + 1
    starts = np.concatenate(([0], starts[starts < len(chunk)]))
    ends = np.append(starts[1:], len(chunk))
    count = len(starts)
    buffer = pa.py_buffer(chunk)

    def line(k: int) -> bytes:
        return chunk[starts[k] : ends[k]].rstrip(b"\n").rstrip(b"\r")

    def read(first: int, stop: int) -> pa.Table:  # one block, so a row is a line
        length = int(ends[stop - 1] - starts[first])
        return pjson.read_json(
            pa.BufferReader(buffer.slice(int(starts[first]), length)),
            read_options=pjson.ReadOptions(block_size=max(1 << 20, length + 2)),
            parse_options=options,
        )

    parts: list[RawBlock] = []

    def take(first: int, stop: int, table: pa.Table) -> None:
        table, ignored = _undeclared(table, spec)
        parts.append(
            RawBlock(
                table,
                range(first_line + first, first_line + stop),
                lambda i, at=first: raw_text(line(at + i)),
                ignored=ignored,
            )
        )

    def by_lines(first: int, stop: int) -> None:  # the line-by-line path, for these lines
        piece = chunk[starts[first] : ends[stop - 1]]
        parts.extend(_json_blocks(_chunk_lines(piece, first_line + first), spec, options))

    def one_a_line(first: int, stop: int) -> pa.Table | None:
        table = read(first, stop)
        return table if table.num_rows == stop - first else None  # `{..}{..}` on a line

    index = 0
    for utf8_stop in [*_invalid_utf8_lines(chunk, starts), count]:
        while index < utf8_stop:  # lines index..utf8_stop-1 are valid UTF-8
            stop = _piece_stop(starts, index, utf8_stop)
            try:
                table = one_a_line(index, stop)
            except pa.ArrowInvalid as exc:
                found = _ERROR_ROW.search(str(exc))
                bad = index + int(found.group(1)) if found else stop
                if bad >= stop:
                    by_lines(index, stop)
                    index = stop
                    continue
                if bad > index:
                    try:
                        before = one_a_line(index, bad)
                    except pa.ArrowInvalid:
                        before = None
                    if before is None:
                        by_lines(index, bad)
                    else:
                        take(index, bad, before)
                by_lines(bad, bad + 1)  # the refused line, judged alone
                index = bad + 1
                continue
            if table is None:
                by_lines(index, stop)
            else:
                take(index, stop, table)
            index = stop
        if utf8_stop < count:  # a line of invalid UTF-8
            by_lines(utf8_stop, utf8_stop + 1)
            index = utf8_stop + 1
    return _merge_blocks(parts) if parts else None


def _piece_stop(starts: np.ndarray, index: int, limit: int) -> int:
    """The line after a piece of about ERROR_PIECE_BYTES from line ``index`` (at least
    one line, at most up to ``limit``)."""
    stop = int(np.searchsorted(starts, starts[index] + ERROR_PIECE_BYTES))
    return min(max(stop, index + 1), limit)


def _invalid_utf8_lines(chunk: bytes, starts: np.ndarray) -> list[int]:
    """Indexes of the lines of ``chunk`` (starting at ``starts``) that are not UTF-8,
    decoded a piece of about ERROR_PIECE_BYTES at a time (a piece with a bad line is
    decoded again only after it)."""
    found: list[int] = []
    view = memoryview(chunk)
    index, count = 0, len(starts)
    while index < count:
        stop = _piece_stop(starts, index, count)
        end = int(starts[stop]) if stop < count else len(chunk)
        try:
            codecs.utf_8_decode(view[int(starts[index]) : end], "strict", True)
            index = stop
        except UnicodeDecodeError as exc:
            bad = int(np.searchsorted(starts, starts[index] + exc.start, side="right")) - 1
            found.append(bad)
            index = bad + 1
    return found


def _merge_blocks(parts: list[RawBlock]) -> RawBlock:
    if len(parts) == 1:
        return parts[0]
    offsets = np.cumsum([0] + [p.table.num_rows for p in parts])

    def raw(index: int) -> str:
        part = int(np.searchsorted(offsets, index, side="right")) - 1
        return parts[part].raw(index - int(offsets[part]))

    return RawBlock(
        pa.concat_tables([p.table for p in parts], promote_options="default"),
        np.concatenate([np.asarray(p.lines, dtype=np.int64) for p in parts]),
        raw,
        [reject for p in parts for reject in p.rejects],
        {name: why for p in parts for name, why in p.ignored.items()},
    )


def _split_at_newlines(chunk: bytes, first_line: int, size: int) -> Iterator[tuple[bytes, int]]:
    """Pieces of about ``size`` bytes that end at a newline, with their first line number."""
    start = 0
    while start < len(chunk):
        end = chunk.find(b"\n", start + size)
        end = len(chunk) if end < 0 else end + 1
        piece = chunk[start:end]
        yield piece, first_line
        first_line += piece.count(b"\n")
        start = end


def _fast_json_chunk(chunk: bytes, options: pjson.ParseOptions) -> pa.Table | None:
    try:
        chunk.decode("utf-8")
    except UnicodeDecodeError:
        return None
    lines = chunk.count(b"\n") + (0 if chunk.endswith(b"\n") else 1)
    return _read_json_rows(chunk, lines, options)


def _block_for(data: bytes) -> pjson.ReadOptions:
    """Arrow's block size for ``data``: its default, or the whole data when that is small
    enough to hold at once, so a long line is never split between blocks ("straddling")."""
    return pjson.ReadOptions(block_size=max(1 << 20, min(len(data), MAX_LINE_BYTES) + 2))


def _read_json_rows(
    data: bytes, lines: int, options: pjson.ParseOptions, whole: bool = False
) -> pa.Table | None:
    """Arrow's table for ``data`` when it holds exactly one row per line, else None: Arrow
    refuses broken lines, skips blank ones, and reads `{..}{..}` on one line as two rows;
    either way row i would no longer be line i."""
    if _has_blank_line(data):  # a skipped blank line and a `{..}{..}` line would cancel out
        return None
    try:
        blocks = _block_for(data) if whole else pjson.ReadOptions()  # fast path: parallel
        table = pjson.read_json(io.BytesIO(data), read_options=blocks, parse_options=options)
    except pa.ArrowInvalid:
        return None
    return table if table.num_rows == lines else None


_BLANK_LINE = re.compile(rb"(?:^|\n)[ \t\r]*(?:\n|$)")


_LINE_STARTS_BLANK = np.array([ord("\n"), ord("\r"), ord(" "), ord("\t")], dtype=np.uint8)


def _has_blank_line(data: bytes) -> bool:
    """Whether a line of ``data`` is empty or only whitespace (vectorised: a 16 MB chunk in
    milliseconds; ``bytes.find`` of a two-byte needle took 20 ms a pattern)."""
    body = np.frombuffer(data, dtype=np.uint8)
    if body.size and body[-1] == 10:
        body = body[:-1]
    if not body.size:
        return True
    starts = np.flatnonzero(body == 10) + 1  # the byte after each newline
    if starts.size and starts[-1] == body.size:  # a newline at the very end: an empty line
        return True
    first = np.concatenate(([body[0]], body[starts]))
    if not np.isin(first, _LINE_STARTS_BLANK).any():
        return False
    return _BLANK_LINE.search(data[:-1] if data.endswith(b"\n") else data) is not None


class _LazyLines:
    """Raw text of row i of a fast-path chunk, split into lines only if someone asks."""

    def __init__(self, chunk: bytes) -> None:
        self._chunk = chunk
        self._lines: list[bytes] | None = None

    def __call__(self, index: int) -> str:
        if self._lines is None:
            self._lines = self._chunk.split(b"\n")
        return raw_text(self._lines[index].rstrip(b"\r"))


def _json_blocks(
    blocks: Iterator[tuple[list[bytes], list[int]]],
    spec: SourceSpec,
    options: pjson.ParseOptions,
) -> Iterator[RawBlock]:
    checks = _json_type_checks(spec)
    for lines, numbers in blocks:
        lines, numbers, rejected = _split_invalid_utf8(lines, numbers)
        table = _try_read_json(lines, options)
        if table is None:  # some line is broken: retry in sub-blocks, diagnose only those
            parts: list[pa.Table] = []
            kept_lines: list[bytes] = []
            kept_numbers: list[int] = []
            for start in range(0, len(lines), RETRY_LINES):
                sub_lines = lines[start : start + RETRY_LINES]
                sub_numbers = numbers[start : start + RETRY_LINES]
                sub = _try_read_json(sub_lines, options)
                if sub is None:
                    sub_lines, sub_numbers, more = _diagnose_json_lines(
                        sub_lines, sub_numbers, checks
                    )
                    rejected += more
                    sub = _try_read_json(sub_lines, options)
                    if sub is None:  # a case the diagnosis missed: one line at a time
                        sub_lines, sub_numbers, sub, more = _read_json_line_by_line(
                            sub_lines, sub_numbers, options
                        )
                        rejected += more
                parts.append(_text_undeclared(sub, set(spec.column_names)))
                kept_lines += sub_lines
                kept_numbers += sub_numbers
            table = pa.concat_tables(parts, promote_options="default")
            lines, numbers = kept_lines, kept_numbers
        table, ignored = _undeclared(table, spec)
        kept = lines
        yield RawBlock(
            table, numbers, lambda i, kept=kept: raw_text(kept[i]), rejected, ignored=ignored
        )


def _try_read_json(lines: list[bytes], options: pjson.ParseOptions) -> pa.Table | None:
    if not lines:
        return options.explicit_schema.empty_table()
    return _read_json_rows(b"\n".join(lines), len(lines), options, whole=True)


_TypeCheck = tuple[str, type | tuple[type, ...], bool, Column]


def _json_type_checks(spec: SourceSpec) -> list[_TypeCheck]:
    """Per column: the Python types JSON may hold for it, and whether it is an integer."""
    checks = []
    for column in spec.columns:
        t = column.type
        if pa.types.is_integer(t):
            checks.append((column.name, int, True, column))
        elif pa.types.is_floating(t):
            checks.append((column.name, (int, float), False, column))
        elif pa.types.is_boolean(t):
            checks.append((column.name, bool, False, column))
        elif pa.types.is_string(t) or column.is_timestamp:
            checks.append((column.name, str, False, column))
    return checks


def _diagnose_json_lines(
    lines: list[bytes], numbers: list[int], checks: list[_TypeCheck]
) -> tuple[list[bytes], list[int], list[Reject]]:
    """The slow path, for a sub-block Arrow refused: find the guilty lines and say why."""
    good, good_numbers, bad = [], [], []
    for line, number in zip(lines, numbers, strict=True):
        problem = _json_line_problem(line, checks)
        if problem is None:
            good.append(line)
            good_numbers.append(number)
        else:
            code, column, message = problem
            bad.append(Reject(number, code, message, raw_text(line), column))
    return good, good_numbers, bad


def _json_line_problem(line: bytes, checks: list[_TypeCheck]) -> tuple[str, str | None, str] | None:
    try:
        record = json.loads(line, object_pairs_hook=_object_without_twice)
    except _KeyTwiceError as exc:
        return r.MALFORMED_RECORD, exc.key, f"malformed JSON: key {exc.key!r} appears twice"
    except ValueError as exc:
        return r.MALFORMED_RECORD, None, f"malformed JSON: {exc}"
    except RecursionError:
        return r.MALFORMED_RECORD, None, "malformed JSON: nested too deeply to be a record"
    if not isinstance(record, dict):
        return r.MALFORMED_RECORD, None, f"expected a JSON object, got {type(record).__name__}"
    for name, allowed, is_int, column in checks:
        value = record.get(name)
        if value is None:
            continue
        ok = isinstance(value, allowed) and (not isinstance(value, bool) or allowed is bool)
        if ok and is_int:
            ok = _INT64[0] <= value <= _INT64[1]
        if not ok:
            return (
                r.WRONG_TYPE,
                name,
                f"column {name}: expected {_kind(column)}, got "
                f"{type(value).__name__} {_short(value)}",
            )
    return None


class _KeyTwiceError(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _object_without_twice(pairs: list[tuple[str, object]]) -> dict[str, object]:
    """A JSON object, refused when a key appears twice (RFC 8259 leaves which one wins
    to the reader: Python keeps the last, others the first, so the record is ambiguous)."""
    record = dict(pairs)
    if len(record) != len(pairs):
        seen: set[str] = set()
        raise _KeyTwiceError(next(k for k, _ in pairs if k in seen or seen.add(k)))
    return record


def _read_json_line_by_line(
    lines: list[bytes], numbers: list[int], options: pjson.ParseOptions
) -> tuple[list[bytes], list[int], pa.Table, list[Reject]]:
    tables, good, good_numbers, bad = [], [], [], []
    for line, number in zip(lines, numbers, strict=True):
        try:
            table = pjson.read_json(
                io.BytesIO(line), read_options=_block_for(line), parse_options=options
            )
        except pa.ArrowInvalid as exc:
            bad.append(Reject(number, r.WRONG_TYPE, f"cannot read record: {exc}", raw_text(line)))
            continue
        if table.num_rows != 1:
            bad.append(
                Reject(
                    number,
                    r.MALFORMED_RECORD,
                    f"{table.num_rows} JSON records on one line",
                    raw_text(line),
                )
            )
            continue
        tables.append(_text_undeclared(table, set(options.explicit_schema.names)))
        good.append(line)
        good_numbers.append(number)
    table = (
        pa.concat_tables(tables, promote_options="default")
        if tables
        else options.explicit_schema.empty_table()
    )
    return good, good_numbers, table, bad


# ---------------------------------------------------------------- CSV


# the most lines one CSV record may span with quoted newlines (RFC 4180); a quote left open
# longer than this is a stray quote, and its line is judged alone
MAX_RECORD_LINES = 100


def _csv_records(
    blocks: Iterator[tuple[list[bytes], list[int]]],
) -> Iterator[tuple[list[bytes], list[int]]]:
    """Blocks of CSV records, numbered by their first line: a record whose quoted field
    holds newlines (RFC 4180) is joined back into one entry. A quote still open after
    MAX_RECORD_LINES lines, or at the end of the file, joins nothing: its line stays alone
    (and is quarantined), and the lines after it are read as records of their own."""
    pending: list[bytes] = []  # lines not yet emitted: a record still open at the end
    pending_numbers: list[int] = []
    for lines, numbers in blocks:
        out, out_numbers, rest = _group_records(pending + lines, pending_numbers + numbers)
        pending, pending_numbers = (pending + lines)[rest:], (pending_numbers + numbers)[rest:]
        if out:
            yield out, out_numbers
    if pending:  # the end of the file: a quote still open there closes nothing
        out, out_numbers, _ = _group_records(pending, pending_numbers, final=True)
        yield out, out_numbers


def _group_records(
    lines: list[bytes], numbers: list[int], final: bool = False
) -> tuple[list[bytes], list[int], int]:
    """Records of ``lines`` and how many lines they used (the rest may be a record that a
    later block closes; with ``final`` there is no later block, and all are used)."""
    out, out_numbers, start = [], [], 0
    while start < len(lines):
        line = lines[start]
        end = start + 1
        if b'"' in line and _opens_quote([line]):
            closed = _record_end(lines, numbers, start)
            if closed is None and not final:
                break  # the next block may close it
            end = closed if closed is not None and closed > 0 else start + 1
        out.append(_join_lines(lines[start:end], numbers[start:end]))
        out_numbers.append(numbers[start])
        start = end
    return out, out_numbers, start


def _record_end(lines: list[bytes], numbers: list[int], start: int) -> int | None:
    """The index after the line that closes the quote opened at ``start``; -1 when no line
    within MAX_RECORD_LINES closes it; None when the lines run out before that bound."""
    for end in range(start + 2, start + MAX_RECORD_LINES + 1):
        if end > len(lines):
            return None
        joined = lines[start:end]
        if sum(len(x) for x in joined) > MAX_LINE_BYTES:
            return -1
        if b'"' in lines[end - 1] and not _opens_quote(joined, numbers[start:end]):
            return end
    return -1


def _opens_quote(lines: list[bytes], numbers: list[int] | None = None) -> bool:
    """Whether these lines, read as CSV, end inside a quoted field."""
    text = _join_lines(lines, numbers).decode("utf-8", errors="replace")
    try:
        for _ in csv.reader(io.StringIO(text, newline=""), strict=True):
            pass
    except csv.Error as exc:
        return "unexpected end of data" in str(exc)
    return False


def _join_lines(lines: list[bytes], numbers: list[int] | None = None) -> bytes:
    """Lines back into the text they were, blank lines between them included."""
    if numbers is None or len(lines) == 1:
        return b"\n".join(lines)
    out = bytearray(lines[0])
    for previous, number, line in zip(numbers, numbers[1:], lines[1:], strict=False):
        out += b"\n" * (number - previous) + line
    return bytes(out)


def _csv_blocks(
    path: str, blocks: Iterator[tuple[list[bytes], list[int]]], spec: SourceSpec
) -> Iterator[RawBlock]:
    """CSV with a header, one record per entry (``_csv_records`` joins quoted newlines)."""
    header: list[str] | None = None
    for lines, numbers in blocks:
        if header is None:
            if lines[0].startswith(_OVERSIZED):
                raise UnreadableFileError(
                    path, f"the header line is longer than {MAX_LINE_BYTES:,} bytes"
                )
            try:
                header_text = lines[0].decode("utf-8-sig")
            except UnicodeDecodeError as exc:
                raise UnreadableFileError(
                    path, "header is not UTF-8 text; re-export the file as UTF-8"
                ) from exc
            if "\r" in header_text:  # the file is one line: its lines end with CR alone
                raise UnreadableFileError(
                    path,
                    "lines end with a carriage return alone (classic Mac line ends); "
                    "convert them to LF or CRLF",
                )
            try:
                header = next(csv.reader([header_text]))
            except csv.Error as exc:
                raise UnreadableFileError(path, f"header is not a CSV line ({exc})") from exc
            _check_csv_header(path, header, spec)
            lines, numbers = lines[1:], numbers[1:]
        lines, numbers, rejected = _split_invalid_utf8(lines, numbers)
        table, kept, kept_numbers, more = _read_csv_block(lines, numbers, header)
        rejected += more
        table, ignored = _undeclared(table, spec)
        yield RawBlock(
            table, kept_numbers, lambda i, kept=kept: raw_text(kept[i]), rejected, ignored=ignored
        )
    if header is None:
        raise UnreadableFileError(path, "file is empty")


def _check_csv_header(path: str, header: list[str], spec: SourceSpec) -> None:
    """Linear in the header's width: a file of 100,000 columns is judged in milliseconds."""
    twice = sorted(name for name, count in Counter(header).items() if count > 1)
    if twice:
        raise SchemaMismatchError(
            f"{path}: header names column(s) {_some(twice)} more than once; "
            "each column must appear once"
        )
    names = set(header)
    missing = [c.name for c in spec.columns if c.required and c.name not in names]
    if missing:
        raise SchemaMismatchError(
            f"{path}: header lacks required column(s) {', '.join(missing)} for bronze table "
            f"{spec.table}; header has: {_some(header)}"
        )


def _some(names: Sequence[str], shown: int = 20) -> str:
    """Names for a message, the first ``shown`` of them and how many more."""
    head = ", ".join(names[:shown])
    return head if len(names) <= shown else f"{head} … and {len(names) - shown:,} more"


def _read_csv_block(
    lines: list[bytes], numbers: list[int], header: list[str]
) -> tuple[pa.Table, list[bytes], list[int], list[Reject]]:
    """Parse a block of single-line records. If Arrow's rows do not match the lines one to
    one (an unbalanced quote makes a field swallow the next line), parse line by line and
    quarantine the lines that are not one record, so a row never shifts onto another line."""
    table, invalid = _parse_csv(lines, header)
    if table is not None and table.num_rows == len(lines) - len(invalid):
        kept, kept_numbers, bad = [], [], []
        for index, (line, number) in enumerate(zip(lines, numbers, strict=True), start=1):
            if index in invalid:
                bad.append(Reject(number, r.WRONG_COLUMN_COUNT, invalid[index], raw_text(line)))
            else:
                kept.append(line)
                kept_numbers.append(number)
        return table, kept, kept_numbers, bad
    tables, kept, kept_numbers, bad = [], [], [], []
    for line, number in zip(lines, numbers, strict=True):
        one, problem = _parse_csv([line], header)
        if one is not None and one.num_rows == 1 and not problem:
            tables.append(one)
            kept.append(line)
            kept_numbers.append(number)
        elif problem:
            bad.append(Reject(number, r.WRONG_COLUMN_COUNT, problem[1], raw_text(line)))
        else:
            why = "not one CSV record on this line (an unbalanced quote?)"
            bad.append(Reject(number, r.MALFORMED_RECORD, why, raw_text(line)))
    empty = pa.table({name: pa.array([], pa.string()) for name in header})
    return pa.concat_tables([empty, *tables]), kept, kept_numbers, bad


def _parse_csv(lines: list[bytes], header: list[str]) -> tuple[pa.Table | None, dict[int, str]]:
    """Arrow's CSV parse of the lines (rows numbered 1.. in the block), and the rows it
    skipped for a wrong column count; None when it cannot parse them at all."""
    invalid: dict[int, str] = {}

    def on_invalid(row: pcsv.InvalidRow) -> str:
        invalid[row.number] = f"expected {row.expected_columns} columns, got {row.actual_columns}"
        return "skip"

    try:
        table = pcsv.read_csv(
            io.BytesIO(b"\n".join(lines) + b"\n"),
            read_options=pcsv.ReadOptions(column_names=header, use_threads=False),
            # a record may hold quoted newlines (joined by _csv_records)
            parse_options=pcsv.ParseOptions(
                invalid_row_handler=on_invalid, newlines_in_values=True
            ),
            convert_options=pcsv.ConvertOptions(
                column_types={name: pa.string() for name in header}, strings_can_be_null=True
            ),
        )
    except pa.ArrowInvalid:
        return None, invalid
    return table, invalid


# ---------------------------------------------------------------- Parquet


def _parquet_blocks(
    fs: pafs.FileSystem, path: str, spec: SourceSpec, on_bytes: Callable[[int], None]
) -> Iterator[RawBlock]:
    try:
        handle = fs.open_input_file(path)
        parquet = pq.ParquetFile(handle)
    except (pa.ArrowInvalid, OSError) as exc:
        raise UnreadableFileError(path, f"not a readable Parquet file ({exc})") from exc
    names = parquet.schema_arrow.names
    missing = [c.name for c in spec.columns if c.required and c.name not in names]
    if missing:
        raise SchemaMismatchError(
            f"{path}: lacks required column(s) {', '.join(missing)} for bronze table "
            f"{spec.table}; file has: {', '.join(names)}"
        )
    size = handle.size()
    first = 1
    with handle:
        for batch in parquet.iter_batches(batch_size=BLOCK_LINES):
            whole = pa.Table.from_batches([batch])
            table, ignored = _undeclared(whole, spec)
            numbers = list(range(first, first + table.num_rows))
            first += table.num_rows
            on_bytes(size * table.num_rows // max(parquet.metadata.num_rows, 1))
            yield RawBlock(table, numbers, lambda i, t=whole: _row_as_json(t, i), ignored=ignored)


def _undeclared(table: pa.Table, spec: SourceSpec) -> tuple[pa.Table, dict[str, str]]:
    """The contract's columns as read, in its order, then each undeclared field that can
    become a column (``SourceSpec.new_column_problem``) as text: strings as they are,
    numbers and booleans as their text, lists and objects as their JSON. A field that holds
    no value in the block is left out (nothing is lost with it). Also returns the fields
    that cannot become columns but hold a value, each with why."""
    declared = set(spec.column_names)
    table = _text_undeclared(table, declared)
    names, ignored = [n for n in spec.column_names if n in table.column_names], {}
    for name, column in zip(table.column_names, table.columns, strict=True):
        if name in declared or column.null_count == len(column):
            continue
        problem = spec.new_column_problem(name)
        if problem is None:
            names.append(name)
        else:
            ignored[name] = problem
    return table.select(names), ignored


def _text_undeclared(table: pa.Table, declared: set[str]) -> pa.Table:
    """Every column outside ``declared`` as text, so parts of a block always concatenate."""
    if all(
        n in declared or t == NEW_COLUMN_TYPE
        for n, t in zip(table.column_names, table.schema.types, strict=True)
    ):
        return table
    columns = [
        c if n in declared else _as_text(c)
        for n, c in zip(table.column_names, table.columns, strict=True)
    ]
    return pa.table(columns, names=table.column_names)


def _as_text(column: pa.ChunkedArray) -> pa.ChunkedArray:
    if column.type == NEW_COLUMN_TYPE:
        return column
    kind = column.type
    if pa.types.is_null(kind):
        return pa.chunked_array([pa.nulls(len(column), NEW_COLUMN_TYPE)])
    if pa.types.is_boolean(kind) or pa.types.is_integer(kind) or pa.types.is_floating(kind):
        return column.cast(NEW_COLUMN_TYPE)
    if pa.types.is_timestamp(kind) or pa.types.is_date(kind):
        return column.cast(NEW_COLUMN_TYPE)
    values = [None if v is None else json.dumps(v, default=str) for v in column.to_pylist()]
    return pa.chunked_array([pa.array(values, NEW_COLUMN_TYPE)])


def _row_as_json(table: pa.Table, index: int) -> str:
    row = table.slice(index, 1).to_pylist()[0]
    return json.dumps(row, default=str)[: r.MAX_RAW_CHARS]


def _kind(column: Column) -> str:
    if column.is_timestamp:
        return "an ISO-8601 timestamp string"
    if pa.types.is_integer(column.type):
        return "an integer"
    if pa.types.is_boolean(column.type):
        return "a boolean"
    if pa.types.is_string(column.type):
        return "a string"
    return str(column.type)


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
