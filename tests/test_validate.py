"""Unit specifications of the vectorised checks."""

from __future__ import annotations

from datetime import UTC, datetime

import pyarrow as pa

from lakehouse.ingest.validate import KnownKeys, _parse_utc


def test_known_keys_flags_only_non_null_values_that_are_absent() -> None:
    keys = KnownKeys(pa.array([5, 1, 9, None, 5]))
    probe = pa.array([1, 2, 9, 10, None, 0, 5])
    assert keys.missing(probe).tolist() == [False, True, False, True, False, True, False]


def test_known_keys_of_an_empty_table_flag_every_value() -> None:
    keys = KnownKeys(pa.array([], pa.int64()))
    assert keys.missing(pa.array([1, None])).tolist() == [True, False]


def test_timestamps_need_a_zone_and_are_normalised_to_utc() -> None:
    values = pa.array(
        [
            "2026-01-03T10:00:00Z",
            "2026-01-03T12:00:00.5+02:00",
            "2026-01-03T15:30:00+0530",
            "2026-01-03 10:00:00",
            "03/01/2026 10:00:00",
            "2026-13-03T10:00:00Z",
            None,
        ]
    )
    parsed, failed = _parse_utc(values)
    assert parsed.to_pylist()[:3] == [
        datetime(2026, 1, 3, 10, tzinfo=UTC),
        datetime(2026, 1, 3, 10, 0, 0, 500_000, tzinfo=UTC),
        datetime(2026, 1, 3, 10, tzinfo=UTC),
    ]
    assert failed.tolist() == [False, False, False, True, True, True, False]
