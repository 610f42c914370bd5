"""Dirty rows as real apps produce them, injected at a rate and counted by kind.

Most kinds add an extra, broken copy of a neighbouring clean row (with a fresh id) so the
clean data stays whole; ``timezone_offset`` rewrites a clean row's timestamp to the same
instant in another zone (valid: ingest must normalise it). The counts go to the
generator's manifest so tests can reconcile ingestion against what was injected.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import numpy as np

JSON_KINDS = (
    "malformed_json",
    "missing_field",
    "wrong_type",
    "bad_timestamp_format",
    "timezone_offset",
    "duplicate_id",
    "future_timestamp",
    "oversized_string",
    "invalid_utf8",
)
EVENT_KINDS = (*JSON_KINDS, "unknown_photo", "unknown_event_type")
PHOTO_KINDS = JSON_KINDS
USER_KINDS = (
    "wrong_column_count",
    "missing_field",
    "wrong_type",
    "bad_timestamp_format",
    "timezone_offset",
    "duplicate_id",
    "oversized_string",
    "invalid_utf8",
)
EMBEDDING_KINDS = ("missing_field", "duplicate_id", "wrong_length", "non_finite")

FRESH_ID_BASE = 1_000_000_000  # ids of broken extra rows; never referenced by clean data
UNKNOWN_PHOTO_BASE = 2_000_000_000
_OFFSET = timezone(timedelta(hours=5, minutes=30))


def plan(
    rng: np.random.Generator, n_clean: int, rate: float, kinds: tuple[str, ...]
) -> list[tuple[int, str]]:
    """(clean row index, kind) pairs: which rows get a dirty sibling, and of what kind."""
    if rate <= 0 or n_clean == 0:
        return []
    n_dirty = int(rng.binomial(n_clean, min(rate, 1.0)))
    rows = np.sort(rng.integers(0, n_clean, n_dirty))
    picks = rng.integers(0, len(kinds), n_dirty)
    return [(int(r), kinds[int(k)]) for r, k in zip(rows, picks, strict=True)]


def offset_timestamp(iso_utc: str) -> str:
    """The same instant written in +05:30, as a phone in India would log it."""
    instant = datetime.fromisoformat(iso_utc.replace("Z", "+00:00"))
    return instant.astimezone(_OFFSET).isoformat(timespec="milliseconds")


def naive_other_format(iso_utc: str) -> str:
    instant = datetime.fromisoformat(iso_utc.replace("Z", "+00:00")).astimezone(UTC)
    return instant.strftime("%d/%m/%Y %H:%M:%S")


def dirty_json_line(
    record: dict[str, object],
    kind: str,
    *,
    id_field: str,
    fresh_id: object,
    ts_field: str,
    type_field: str,
    text_field: str,
) -> bytes:
    """A broken sibling of ``record`` (a dict of one clean JSON line)."""
    row = dict(record)
    if kind != "duplicate_id":
        row[id_field] = fresh_id
    if kind == "malformed_json":
        text = json.dumps(row, ensure_ascii=False)
        return text[: max(5, len(text) // 2)].encode()
    if kind == "missing_field":
        row.pop(type_field, None)
    elif kind == "wrong_type":
        row[type_field] = f"user-{row.get(type_field)}"
    elif kind == "bad_timestamp_format":
        row[ts_field] = naive_other_format(str(row[ts_field]))
    elif kind == "future_timestamp":
        row[ts_field] = "2099-01-01T00:00:00.000Z"
    elif kind == "oversized_string":
        row[text_field] = "spam " * 1000
    elif kind == "unknown_photo":
        row["photo_id"] = UNKNOWN_PHOTO_BASE + int(str(fresh_id)[-6:] or 0)
    elif kind == "unknown_event_type":
        row["event_type"] = "superlike"
    if kind == "invalid_utf8":
        text = json.dumps(row, ensure_ascii=False)
        cut = text.index('"', 2)
        return text[:cut].encode() + b"\xff\xfe" + text[cut:].encode()
    return json.dumps(row, ensure_ascii=False).encode()
