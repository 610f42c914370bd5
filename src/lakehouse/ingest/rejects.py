"""Why a row was quarantined: a stable code for machines, a sentence for people."""

from __future__ import annotations

from dataclasses import dataclass

MALFORMED_RECORD = "malformed_record"
WRONG_COLUMN_COUNT = "wrong_column_count"
INVALID_UTF8 = "invalid_utf8"
MISSING_FIELD = "missing_field"
WRONG_TYPE = "wrong_type"
BAD_TIMESTAMP = "bad_timestamp"
FUTURE_TIMESTAMP = "future_timestamp"
OVERSIZED_VALUE = "oversized_value"
UNACCEPTED_VALUE = "unaccepted_value"
UNKNOWN_REFERENCE = "unknown_reference"
BAD_EMBEDDING = "bad_embedding"

REASON_CODES = (
    MALFORMED_RECORD,
    WRONG_COLUMN_COUNT,
    INVALID_UTF8,
    MISSING_FIELD,
    WRONG_TYPE,
    BAD_TIMESTAMP,
    FUTURE_TIMESTAMP,
    OVERSIZED_VALUE,
    UNACCEPTED_VALUE,
    UNKNOWN_REFERENCE,
    BAD_EMBEDDING,
)

MAX_RAW_CHARS = 10_000


@dataclass(frozen=True)
class Reject:
    """One quarantined row: where it was, what it held, and why it was refused."""

    line: int
    code: str
    message: str
    raw: str
    column: str | None = None


def raw_text(data: bytes) -> str:
    """The raw line as text a person can read, even when it is not valid UTF-8."""
    text = data.decode("utf-8", errors="backslashreplace")
    if len(text) > MAX_RAW_CHARS:
        return text[:MAX_RAW_CHARS] + f"... [{len(text) - MAX_RAW_CHARS} more chars]"
    return text
