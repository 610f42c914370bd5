"""Schema evolution, as lakehouses do it (Delta's schema merge, Auto Loader's new columns):
a field the app's logs gain is added to its bronze table as a text column in the same commit
as the file's rows, recorded in the ingest log and named in the summary, never dropped
silently; a value of the wrong type for a declared column is still quarantined by column;
a bronze table from before an optional column was declared gets the column."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import write_deltalake

from lakehouse.cli import main
from lakehouse.ingest import ingest
from lakehouse.ingest.schemas import MAX_NEW_COLUMNS, source_for_table
from tests.conftest import NIGHT
from tests.helpers import bronze

USERS_HEADER = "user_id,signup_at,country,email,display_name,birth_year,is_verified"
PHOTO = {"photo_id": 1, "owner_id": 2, "posted_at": "2026-09-30T08:00:00Z", "width": 1, "height": 1}


def _event(i: int, **extra) -> dict:
    return {"event_id": f"e{i}", "event_type": "view", "ts": "2026-10-01T10:00:00Z",
            "user_id": 1, "photo_id": 1, **extra}  # fmt: skip


def _landing(tmp_path: Path, events: list[dict], name: str = "events.jsonl") -> Path:
    landing = tmp_path / "landing"
    (landing / "photos").mkdir(parents=True, exist_ok=True)
    (landing / "events").mkdir(exist_ok=True)
    (landing / "photos" / "photos.jsonl").write_text(json.dumps(PHOTO) + "\n")
    (landing / "events" / name).write_text("".join(json.dumps(e) + "\n" for e in events))
    return landing


def test_a_new_field_becomes_a_text_column_recorded_and_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lake = tmp_path / "lake"
    _landing(tmp_path, [_event(1), _event(2)], "day1.jsonl")
    assert main(["ingest", str(tmp_path / "landing"), "--lake", str(lake)]) == 0
    later = [
        _event(3, app_version="5.2", experiment={"arm": "b", "n": 2}),
        _event(4, app_version=6, **{"bad name": "x", "Event_ID": "shadow"}),
        _event(5, user_id="not a number", app_version="5.3"),  # a declared column, wrong type
    ]
    _landing(tmp_path, later, "day2.jsonl")
    assert main(["ingest", str(tmp_path / "landing"), "--lake", str(lake)]) == 0
    out = capsys.readouterr().out.replace("\n", "")
    assert "new column(s) in bronze events: app_version, experiment" in out
    assert "not landed: field 'bad name' of" in out and "not a plain name" in out
    assert "not landed: field 'Event_ID' of" in out and "only in case" in out
    events = {r["event_id"]: r for r in bronze(lake, "events").to_pylist()}
    assert set(events) == {"e1", "e2", "e3", "e4"}
    assert [events[e]["app_version"] for e in ("e1", "e2", "e3", "e4")] == [None, None, "5.2", "6"]
    assert json.loads(events["e3"]["experiment"]) == {"arm": "b", "n": 2}
    assert bronze(lake, "events").schema.field("app_version").type == pa.string()
    quarantine = bronze(lake, "_quarantine").to_pylist()
    assert [(q["reason_code"], q["column"]) for q in quarantine] == [("wrong_type", "user_id")]
    log = {r["source_file"].rsplit("/", 1)[-1]: r for r in bronze(lake, "_ingest_log").to_pylist()}
    assert log["day2.jsonl"]["new_columns"] == "app_version, experiment"
    assert log["day1.jsonl"]["new_columns"] is None


def test_a_field_first_seen_deep_in_a_file_lands_with_every_row_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The writer's schema is fixed when the first block is read: a field that appears in a
    later block makes the file be read once more (nothing was committed), whole."""
    monkeypatch.setattr("lakehouse.ingest.readers.CHUNK_BYTES", 4 << 10)  # many blocks
    events = [_event(i) for i in range(2_000)]
    events[1_500]["referrer"] = "push"
    events[1_900]["referrer"] = "mail"
    _landing(tmp_path, events)
    report = ingest(str(tmp_path / "landing"), str(tmp_path / "lake"), now=NIGHT)
    (result,) = [f for f in report.files if f.table == "events"]
    assert (result.rows_read, result.rows_landed, result.new_columns) == (
        2_000,
        2_000,
        ["referrer"],
    )
    table = bronze(tmp_path / "lake", "events")
    assert table.num_rows == 2_000
    landed = {r["event_id"]: r["referrer"] for r in table.to_pylist() if r["referrer"]}
    assert landed == {"e1500": "push", "e1900": "mail"}


def test_csv_and_parquet_columns_evolve_and_a_flood_of_them_is_refused(tmp_path: Path) -> None:
    landing = tmp_path / "landing"
    (landing / "users").mkdir(parents=True)
    rows = "1,2025-04-05T09:39:19Z,ES,a@example.com,Ana,1980,true,REF-1,\n"
    (landing / "users" / "a.csv").write_text(f"{USERS_HEADER},referral_code,empty\n{rows}")
    wide = ",".join(f"c{i}" for i in range(MAX_NEW_COLUMNS + 1))
    values = ",".join("v" for _ in range(MAX_NEW_COLUMNS + 1))
    (landing / "users" / "b.csv").write_text(
        f"{USERS_HEADER},{wide}\n2,2025-04-05T09:39:19Z,ES,b@example.com,Bo,1980,true,{values}\n"
    )
    report = ingest(str(landing), str(tmp_path / "lake"), now=NIGHT)
    by_name = {f.source_file.rsplit("/", 1)[-1]: f for f in report.files}
    assert by_name["a.csv"].new_columns == ["referral_code"]  # `empty` holds no value
    assert by_name["b.csv"].status == "failed"
    assert f"would add {MAX_NEW_COLUMNS + 1} columns to bronze, more than the" in str(
        by_name["b.csv"].error
    )
    users = bronze(tmp_path / "lake", "users")
    assert users.column("referral_code").to_pylist() == ["REF-1"]
    assert "empty" not in users.column_names and "c0" not in users.column_names


def test_a_bronze_table_from_before_an_optional_column_gets_it(tmp_path: Path) -> None:
    """photos before `updated_at` was declared: ingest used to refuse the table, naming the
    difference, so a new optional field in the app's logs stopped the night."""
    lake = tmp_path / "lake"
    old = pa.schema([f for f in source_for_table("photos").bronze_schema if f.name != "updated_at"])
    before = pa.table({f.name: pa.array([None], f.type) for f in old}).set_column(
        0, "photo_id", pa.array([9], pa.int64())
    )
    write_deltalake(str(lake / "bronze" / "photos"), before)
    _landing(tmp_path, [_event(1)])
    edited = {**PHOTO, "photo_id": 3, "updated_at": "2026-10-01T00:00:00Z"}
    (tmp_path / "landing" / "photos" / "edit.jsonl").write_text(json.dumps(edited) + "\n")
    report = ingest(str(tmp_path / "landing"), str(lake), now=NIGHT)
    assert report.ok, report.failed
    photos = {r["photo_id"]: r["updated_at"] for r in bronze(lake, "photos").to_pylist()}
    assert photos[9] is None and photos[3] is not None and 1 in photos


def test_a_missing_required_column_or_another_type_is_still_refused(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    changed = pa.schema(
        [
            pa.field(f.name, pa.string()) if f.name == "width" else f
            for f in source_for_table("photos").bronze_schema
        ]
    )
    write_deltalake(str(lake / "bronze" / "photos"), changed.empty_table())
    _landing(tmp_path, [])
    (tmp_path / "landing" / "events" / "events.jsonl").unlink()
    report = ingest(str(tmp_path / "landing"), str(lake), now=NIGHT)
    (result,) = report.files
    assert result.status == "failed" and "column width is string, not int64" in str(result.error)
