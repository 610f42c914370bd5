"""A crash leaves no partial commit, the next run completes the work exactly once, and files
that cannot be read are named while the rest still lands."""

from __future__ import annotations

import gzip
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from deltalake import write_deltalake

from lakehouse.cli import main
from lakehouse.ingest import SchemaMismatchError, ingest, pipeline, source_for_table
from lakehouse.ingest.bronze import Bronze
from lakehouse.synth import generate
from tests.conftest import NIGHT, small_config
from tests.helpers import bronze, delta_versions

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def clean_landing(tmp_path: Path) -> Path:
    landing = tmp_path / "landing"
    generate(small_config(landing, dirty_rate=0.01, seed=3))
    return landing


def _events_landed(lake: Path) -> int:
    """Rows in bronze events; 0 where a killed first ingest did not even create the table
    (the next file's reading runs ahead of the writer, so a kill can come before it)."""
    if not (lake / "bronze" / "events" / "_delta_log").is_dir():
        return 0
    return bronze(lake, "events").num_rows


def _one_big_events_file(landing: Path, tmp_path: Path) -> Path:
    """A landing folder holding only the largest events file (many blocks of 500 lines)."""
    largest = max((landing / "events").iterdir(), key=lambda p: p.stat().st_size)
    single = tmp_path / "single"
    (single / "events").mkdir(parents=True)
    (single / "events" / largest.name).write_bytes(largest.read_bytes())
    return single


def test_exception_mid_file_leaves_the_table_unchanged(
    clean_landing: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lake = tmp_path / "lake"
    ingest(str(clean_landing), str(lake), tables=["users", "photos"], now=NIGHT)
    before = delta_versions(lake)
    single = _one_big_events_file(clean_landing, tmp_path)
    monkeypatch.setattr("lakehouse.ingest.readers.BLOCK_LINES", 500)
    monkeypatch.setattr("lakehouse.ingest.readers.CHUNK_BYTES", 64 << 10)
    real = pipeline.validate_block
    calls = {"n": 0}

    def fail_on_third_block(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("simulated crash in the middle of a file")
        return real(*args, **kwargs)

    monkeypatch.setattr(pipeline, "validate_block", fail_on_third_block)
    with pytest.raises(RuntimeError, match="simulated crash"):
        ingest(str(single), str(lake), now=NIGHT)
    # nothing of the file: at most the empty events table (a schema-only commit, made before
    # the first append so that concurrent ingests commit on a snapshot), no quarantine, no log
    after = delta_versions(lake)
    assert {t: v for t, v in after.items() if t != "events"} == before
    assert after.get("events", 0) == 0 and _events_landed(lake) == 0

    monkeypatch.setattr(pipeline, "validate_block", real)
    report = ingest(str(single), str(lake), now=NIGHT)
    (result,) = report.files
    assert result.status == "ingested" and result.reconciles and result.rows_read > 1500
    assert _events_landed(lake) == result.rows_landed


def test_kill_9_mid_file_then_rerun_lands_each_row_once(
    clean_landing: Path, tmp_path: Path
) -> None:
    lake = tmp_path / "lake"
    script = textwrap.dedent(
        f"""
        import os, signal
        from lakehouse.ingest import ingest, pipeline
        real, calls = pipeline.validate_block, [0]
        def kill_on_second_events_block(block, spec, *a, **k):
            if spec.table == "events":
                calls[0] += 1
                if calls[0] == 2:
                    os.kill(os.getpid(), signal.SIGKILL)
            return real(block, spec, *a, **k)
        pipeline.validate_block = kill_on_second_events_block
        import lakehouse.ingest.readers as readers
        readers.BLOCK_LINES, readers.CHUNK_BYTES = 500, 64 << 10
        ingest({str(clean_landing)!r}, {str(lake)!r})
        """
    )
    killed = subprocess.run([sys.executable, "-c", script], cwd=REPO, check=False)
    assert killed.returncode == -signal.SIGKILL
    assert _events_landed(lake) == 0  # at most the empty table: no rows of the killed file
    users_before = bronze(lake, "users").num_rows

    report = ingest(str(clean_landing), str(lake), now=NIGHT)
    statuses = {f.table: set() for f in report.files}
    for f in report.files:
        statuses[f.table].add(f.status)
    assert statuses["users"] == {"skipped"} and statuses["events"] == {"ingested"}
    events = bronze(lake, "events")
    assert events.num_rows == report.total("rows_landed")  # only events landed this run
    assert pc.count_distinct(events.column("event_id")).as_py() == events.num_rows
    assert bronze(lake, "users").num_rows == users_before


def test_crash_between_commits_is_completed_without_duplicates(
    clean_landing: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lake = tmp_path / "lake"
    monkeypatch.setattr("lakehouse.ingest.readers.CHUNK_BYTES", 64 << 10)  # many batches a file
    real_log = Bronze.append_log
    state = {"failed": False}

    def crash_before_first_events_log(self, rows, batch_id):
        if rows.column("table")[0].as_py() == "events" and not state["failed"]:
            state["failed"] = True
            raise KeyboardInterrupt  # the data and quarantine commits are already done
        return real_log(self, rows, batch_id)

    monkeypatch.setattr(Bronze, "append_log", crash_before_first_events_log)
    with pytest.raises(KeyboardInterrupt):
        ingest(str(clean_landing), str(lake), now=NIGHT)
    half_done = _events_landed(lake)
    assert half_done > 0  # one file's rows were committed before the crash

    report = ingest(str(clean_landing), str(lake), now=NIGHT)
    events = bronze(lake, "events")
    assert pc.count_distinct(events.column("event_id")).as_py() == events.num_rows
    log = bronze(lake, "_ingest_log")
    events_log = log.filter(pc.equal(log.column("table"), "events"))
    assert events.num_rows == pc.sum(events_log.column("rows_landed")).as_py()
    quarantine = bronze(lake, "_quarantine")
    keys = list(
        zip(
            quarantine.column("source_file").to_pylist(),
            quarantine.column("line_number").to_pylist(),
            strict=True,
        )
    )
    assert len(keys) == len(set(keys))  # no quarantine row written twice
    by_file = dict(
        zip(
            *np.unique(
                events.column("_source_file").to_numpy(zero_copy_only=False), return_counts=True
            ),
            strict=True,
        )
    )
    for entry in events_log.to_pylist():  # the completed file's counts are whole, too
        assert entry["rows_landed"] == by_file[entry["source_file"]]
        assert entry["rows_read"] == (
            entry["rows_landed"] + entry["rows_quarantined"] + entry["rows_duplicate"]
        )
    assert len({f.source_file for f in report.files if f.status == "ingested"}) > 0


def test_existing_table_with_another_schema_is_refused(clean_landing: Path, tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    write_deltalake(str(lake / "bronze" / "users"), pa.table({"user_id": ["not-an-int"]}))
    report = ingest(str(clean_landing), str(lake), tables=["users", "photos"], now=NIGHT)
    users = [f for f in report.files if f.table == "users"]
    assert users and all(f.status == "failed" for f in users)
    message = users[0].error
    assert "column user_id is string, not int64" in message
    assert "column signup_at is missing" in message
    assert all(f.status == "ingested" for f in report.files if f.table == "photos")
    with pytest.raises(SchemaMismatchError):
        Bronze(str(lake)).check_schema(source_for_table("users"))


def test_csv_whose_header_lacks_a_required_column_is_refused_by_name(tmp_path: Path) -> None:
    landing = tmp_path / "landing"
    (landing / "users").mkdir(parents=True)
    (landing / "users" / "export.csv").write_text("user_id,country\n1,US\n")
    report = ingest(str(landing), str(tmp_path / "lake"), now=NIGHT)
    (result,) = report.files
    assert result.status == "failed"
    assert "export.csv" in result.error and "signup_at" in result.error


@pytest.mark.parametrize(
    ("name", "content", "why"),
    [
        ("events/broken.jsonl.gz", b'{"event_id": "x"}\n', "cannot decompress as gzip"),
        ("events/empty.jsonl", b"", "file is empty"),
        (
            "users/utf16.csv",
            "user_id,signup_at\n1,2026-01-01T00:00:00Z\n".encode("utf-16"),
            "not UTF-8",
        ),
        ("embeddings/bad.parquet", b"PAR1 not really parquet", "not a readable Parquet file"),
        ("photos/notes.txt", b"hello", "format .txt is not accepted"),
    ],
)
def test_unreadable_file_is_named_and_the_rest_still_lands(
    clean_landing: Path, tmp_path: Path, name: str, content: bytes, why: str
) -> None:
    (clean_landing / name).write_bytes(content)
    lake = tmp_path / "lake"
    report = ingest(str(clean_landing), str(lake), now=NIGHT)
    (failed,) = report.failed
    assert failed.source_file.endswith(name) and why in failed.error and name in failed.error
    landed = [f for f in report.files if f.status == "ingested"]
    assert len(landed) == len(report.files) - 1
    assert bronze(lake, "events").num_rows > 0
    log = bronze(lake, "_ingest_log")
    failed_rows = log.filter(pc.equal(log.column("status"), "failed")).to_pylist()
    assert [r["source_file"] for r in failed_rows] == [failed.source_file]


def test_cli_exits_non_zero_and_names_the_unreadable_file(
    clean_landing: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (clean_landing / "events" / "truncated.jsonl.gz").write_bytes(
        gzip.compress(b'{"event_id": "a"}\n' * 100)[:40]
    )
    code = main(["ingest", str(clean_landing), "--lake", str(tmp_path / "lake")])
    captured = capsys.readouterr()
    assert code == 1
    assert "truncated.jsonl.gz" in captured.err and "error:" in captured.err
    assert "events" in captured.out


def test_parquet_columns_of_a_compatible_type_are_cast_to_the_contract(tmp_path: Path) -> None:
    landing = tmp_path / "landing"
    (landing / "embeddings").mkdir(parents=True)
    table = pa.table(
        {
            "photo_id": pa.array([1, 2], pa.int32()),
            "model_version": ["v1", "v1"],
            "embedding": pa.array([[0.5] * 64, [1.0] * 64], pa.list_(pa.float64())),
        }
    )
    pq.write_table(table, landing / "embeddings" / "e.parquet")
    ingest(str(landing), str(tmp_path / "lake"), now=NIGHT)
    landed = bronze(tmp_path / "lake", "photo_embeddings")
    assert landed.column("photo_id").to_pylist() == [1, 2]
    assert str(landed.schema.field("embedding").type) in (
        "list<item: float>",
        "list<element: float>",
    )


def _append_at_the_barrier(lake: str, batch: str, barrier) -> int:
    barrier.wait()  # both processes reach the (missing) table at the same moment
    return Bronze(lake).append("race", pa.table({"id": pa.array([1, 2, 3], pa.int64())}), batch)


@pytest.mark.parametrize("same_batch", [True, False])
def test_two_writers_creating_a_table_at_once_commit_each_batch_once(
    tmp_path: Path, same_batch: bool
) -> None:
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    for attempt in range(4):
        lake = str(tmp_path / f"lake{attempt}")
        barrier = context.Manager().Barrier(2)
        batches = ["b-same", "b-same"] if same_batch else ["b-one", "b-two"]
        with context.Pool(2) as pool:
            versions = pool.starmap(_append_at_the_barrier, [(lake, b, barrier) for b in batches])
        table = Bronze(lake)._table("race")
        assert table is not None
        creates = [h for h in table.history() if h.get("operation") == "CREATE TABLE"]
        assert len(creates) == 1, table.history()  # one version 0, never a second create
        rows = bronze(Path(lake), "race").num_rows
        assert rows == (3 if same_batch else 6)
        assert all(v >= 1 for v in versions)
