"""Ingest lands every clean row, quarantines every broken one with the right reason, and
its counts reconcile exactly with an independent count of the input."""

from __future__ import annotations

import gzip
import json
from collections import Counter
from datetime import datetime
from pathlib import Path

import pyarrow.compute as pc
import pytest

from lakehouse.ingest import ingest
from tests.conftest import NIGHT
from tests.helpers import EXPECTED_OUTCOME, bronze, count_input_rows, delta_versions

TABLES = ("users", "photos", "photo_embeddings", "events")
LANDING_DIR = {
    "users": "users",
    "photos": "photos",
    "photo_embeddings": "embeddings",
    "events": "events",
}


def test_every_dirty_kind_was_injected(generator_manifest: dict) -> None:
    from lakehouse.synth import dirty

    kinds = {
        "users": dirty.USER_KINDS,
        "photos": dirty.PHOTO_KINDS,
        "photo_embeddings": dirty.EMBEDDING_KINDS,
        "events": dirty.EVENT_KINDS,
    }
    for table, expected in kinds.items():
        injected = generator_manifest["tables"][table]["injected"]
        assert set(injected) == set(expected), table


@pytest.mark.parametrize("table", TABLES)
def test_each_dirty_kind_is_quarantined_with_its_reason(
    table: str, ingested, generator_manifest: dict
) -> None:
    lake, _ = ingested
    expected: Counter[str] = Counter()
    for kind, count in generator_manifest["tables"][table]["injected"].items():
        outcome = EXPECTED_OUTCOME[kind]
        if outcome not in ("landed", "duplicate"):
            expected[outcome] += count
    quarantine = bronze(lake, "_quarantine")
    mine = quarantine.filter(pc.equal(quarantine.column("table"), table))
    assert Counter(mine.column("reason_code").to_pylist()) == expected


@pytest.mark.parametrize("table", TABLES)
def test_counts_reconcile_with_an_independent_count(
    table: str, ingested, landing: Path, generator_manifest: dict
) -> None:
    lake, _ = ingested
    files = sorted((landing / LANDING_DIR[table]).iterdir())
    rows_in_files = sum(count_input_rows(f) for f in files)
    log = bronze(lake, "_ingest_log")
    log = log.filter(pc.equal(log.column("table"), table)).to_pylist()
    assert len(log) == len(files)
    assert all(entry["status"] == "ingested" for entry in log)
    read = sum(e["rows_read"] for e in log)
    landed = sum(e["rows_landed"] for e in log)
    quarantined = sum(e["rows_quarantined"] for e in log)
    duplicates = sum(e["rows_duplicate"] for e in log)
    assert read == rows_in_files == landed + quarantined + duplicates
    # what landed is exactly the clean data the generator wrote, and it is in the table
    assert landed == generator_manifest["tables"][table]["clean_rows"]
    assert bronze(lake, table).num_rows == landed
    assert duplicates == generator_manifest["tables"][table]["injected"].get("duplicate_id", 0)
    quarantine = bronze(lake, "_quarantine")
    assert pc.sum(pc.equal(quarantine.column("table"), table)).as_py() == quarantined


def test_quarantined_rows_point_at_their_raw_line(ingested, landing: Path) -> None:
    lake, _ = ingested
    quarantine = bronze(lake, "_quarantine").to_pylist()
    checked = 0
    for row in quarantine:
        path = Path(row["source_file"])
        if path.suffix == ".parquet":
            continue
        data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
        line = data.split(b"\n")[row["line_number"] - 1]
        assert row["raw"] == line.decode("utf-8", errors="backslashreplace")
        assert row["reason"]
        checked += 1
    assert checked > 100


def test_reasons_name_the_column(ingested) -> None:
    lake, _ = ingested
    rows = bronze(lake, "_quarantine").to_pylist()
    future = next(r for r in rows if r["reason_code"] == "future_timestamp")
    assert future["column"] in ("ts", "posted_at") and "2099" in future["reason"]
    unknown = next(r for r in rows if r["reason_code"] == "unaccepted_value")
    assert unknown["column"] == "event_type" and "'superlike'" in unknown["reason"]
    wrong = next(r for r in rows if r["reason_code"] == "wrong_type" and r["table"] == "events")
    assert wrong["column"] == "user_id" and "expected an integer" in wrong["reason"]


def test_timestamps_with_offsets_are_normalised_to_utc(ingested, landing: Path) -> None:
    lake, _ = ingested
    offsets = {}
    for path in sorted((landing / "events").iterdir()):
        for line in gzip.decompress(path.read_bytes()).split(b"\n"):
            if b"+05:30" in line:
                record = json.loads(line)
                offsets[record["event_id"]] = datetime.fromisoformat(record["ts"])
    assert offsets, "the fixture should contain timezone_offset rows"
    events = bronze(lake, "events")
    landed = events.filter(pc.is_in(events.column("event_id"), pc.cast(list(offsets), "string")))
    assert landed.num_rows == len(offsets)
    for event_id, ts in zip(
        landed.column("event_id").to_pylist(), landed.column("ts").to_pylist(), strict=True
    ):
        assert ts == offsets[event_id]  # same instant
        assert ts.utcoffset().total_seconds() == 0  # stored in UTC


def test_ingestion_columns_are_filled(ingested) -> None:
    lake, _ = ingested
    events = bronze(lake, "events")
    for column in ("_source_file", "_source_line", "_batch_id", "_ingested_at"):
        assert events.column(column).null_count == 0
    assert str(events.schema.field("_ingested_at").type) == "timestamp[us, tz=UTC]"
    first = events.slice(0, 1).to_pylist()[0]
    assert first["_source_file"].endswith(".jsonl.gz") and first["_batch_id"].startswith("b-")


def test_reingesting_the_same_folder_changes_nothing(ingested, landing: Path) -> None:
    lake, _ = ingested
    before = delta_versions(lake)
    report = ingest(str(landing), str(lake), now=NIGHT)
    assert {f.status for f in report.files} == {"skipped"}
    assert delta_versions(lake) == before


def test_a_copy_of_an_ingested_file_under_another_name_is_skipped(tmp_path: Path) -> None:
    from lakehouse.synth import generate
    from tests.conftest import small_config

    landing = tmp_path / "landing"
    generate(small_config(landing, dirty_rate=0.0))
    lake = tmp_path / "lake"
    ingest(str(landing), str(lake), tables=["users"], now=NIGHT)
    source = next((landing / "users").iterdir())
    (landing / "users" / "users-copy.csv").write_bytes(source.read_bytes())
    report = ingest(str(landing), str(lake), tables=["users"], now=NIGHT)
    assert [f.status for f in report.files] == ["skipped", "skipped"]
    assert bronze(lake, "users").num_rows == 1_000


def _event(i: int, **overrides: object) -> str:
    record = {
        "event_id": f"e{i}",
        "event_type": "like",
        "ts": "2026-10-01T10:00:00Z",
        "user_id": 1,
        "photo_id": 1,
        **overrides,
    }
    return json.dumps(record)


@pytest.mark.parametrize("blank_line", [False, True], ids=["fast-path", "blank-line"])
def test_value_rejects_keep_their_line_number_and_raw_text(
    tmp_path: Path, blank_line: bool
) -> None:
    lines = [_event(i) for i in range(1, 8)]
    lines[2] = _event(3, ts="2099-01-01T00:00:00Z")  # line 3: future
    lines[5] = _event(6, event_type="superlike")  # line 6: unknown type
    if blank_line:
        lines.insert(4, "")  # shifts the second reject to line 7
    landing = tmp_path / "landing"
    (landing / "events").mkdir(parents=True)
    (landing / "events" / "day.jsonl").write_text("\n".join(lines) + "\n")
    report = ingest(str(landing), str(tmp_path / "lake"), now=NIGHT)
    (result,) = report.files
    assert (result.rows_read, result.rows_landed, result.rows_quarantined) == (7, 5, 2)
    rows = sorted(
        bronze(tmp_path / "lake", "_quarantine").to_pylist(), key=lambda r: r["line_number"]
    )
    expected_lines = [3, 7] if blank_line else [3, 6]
    assert [r["line_number"] for r in rows] == expected_lines
    assert [r["reason_code"] for r in rows] == ["future_timestamp", "unaccepted_value"]
    assert [r["raw"] for r in rows] == [lines[n - 1] for n in expected_lines]
    landed = bronze(tmp_path / "lake", "events")
    source_lines = dict(
        zip(
            landed.column("event_id").to_pylist(),
            landed.column("_source_line").to_pylist(),
            strict=True,
        )
    )
    assert source_lines["e7"] == (8 if blank_line else 7)


def test_chunk_and_block_sizes_do_not_change_the_outcome(
    ingested, landing: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lake, _ = ingested
    monkeypatch.setattr("lakehouse.ingest.readers.CHUNK_BYTES", 4096)
    monkeypatch.setattr("lakehouse.ingest.readers.BLOCK_LINES", 7)
    monkeypatch.setattr("lakehouse.ingest.readers.RETRY_LINES", 3)
    monkeypatch.setattr("lakehouse.ingest.readers.RETRY_CHUNK_BYTES", 700)
    small = tmp_path / "lake"
    ingest(str(landing), str(small), now=NIGHT)

    def outcome(root: Path) -> tuple[set, dict]:
        q = bronze(root, "_quarantine")
        rejects = set(
            zip(
                q.column("source_file").to_pylist(),
                q.column("line_number").to_pylist(),
                q.column("reason_code").to_pylist(),
                strict=True,
            )
        )
        events = bronze(root, "events")
        lines = dict(
            zip(
                events.column("event_id").to_pylist(),
                events.column("_source_line").to_pylist(),
                strict=True,
            )
        )
        return rejects, lines

    assert outcome(small) == outcome(lake)


@pytest.mark.parametrize("retry_lines", [512, 2], ids=["same-sub-block", "own-sub-block"])
def test_two_records_on_one_line_are_one_malformed_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, retry_lines: int
) -> None:
    # Arrow reads `{..}{..}` as two rows; with RETRY_LINES=2 it lands in a sub-block Arrow accepts
    monkeypatch.setattr("lakehouse.ingest.readers.RETRY_LINES", retry_lines)
    lines = [_event(1), _event(2) + _event(3), "{broken", _event(4)]
    landing = tmp_path / "landing"
    (landing / "events").mkdir(parents=True)
    (landing / "events" / "day.jsonl").write_text("\n".join(lines) + "\n")
    (result,) = ingest(str(landing), str(tmp_path / "lake"), now=NIGHT).files
    assert (result.rows_read, result.rows_landed, result.rows_quarantined) == (4, 2, 2)
    rows = sorted(
        bronze(tmp_path / "lake", "_quarantine").to_pylist(), key=lambda r: r["line_number"]
    )
    assert [(r["line_number"], r["reason_code"]) for r in rows] == [
        (2, "malformed_record"),
        (3, "malformed_record"),
    ]
    landed = bronze(tmp_path / "lake", "events")
    assert dict(
        zip(
            landed.column("event_id").to_pylist(),
            landed.column("_source_line").to_pylist(),
            strict=True,
        )
    ) == {"e1": 1, "e4": 4}
