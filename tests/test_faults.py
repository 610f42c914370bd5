"""Faults a nightly job meets: a killed dbt build, a full disk, a warehouse held by another
process. Each ends in a readable message, never a traceback, and nothing half-written is
used: a rerun completes without duplicates."""

from __future__ import annotations

import os
import resource
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from lakehouse.storage import describe_storage_error, is_transient, read_delta
from lakehouse.warehouse import connect, project_dir

PROJECT = project_dir(Path(__file__).parent)
MODEL = "photo_popularity_training"
REPO = Path(__file__).resolve().parents[1]


def _cli(*args: str, limit_bytes: int | None = None) -> subprocess.CompletedProcess[str]:
    def limit() -> None:  # a real write failure (EFBIG) once a file passes the limit
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    return subprocess.run(
        [sys.executable, "-m", "lakehouse.cli", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        preexec_fn=limit if limit_bytes else None,
        check=False,
    )


@pytest.fixture(scope="module")
def reference(built_warehouse) -> dict:
    """An uninterrupted build of the shared lake: what every recovery must end up equal to."""
    con = connect(built_warehouse.warehouse, PROJECT)
    counts = {
        t: con.execute(f"select count(*) from {t}").fetchone()[0] for t in ("fct_events", MODEL)
    }
    con.close()
    return {
        "lake": built_warehouse.lake,
        "warehouse": built_warehouse.warehouse,
        "counts": counts,
    }


def test_kill_9_during_dbt_build_blocks_export_until_a_rerun_completes(
    reference, tmp_path: Path
) -> None:
    lake, warehouse = str(reference["lake"]), tmp_path / "warehouse.duckdb"
    build = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "lakehouse.cli",
            "build",
            "--lake",
            lake,
            "--warehouse",
            str(warehouse),
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert build.stdout is not None
    seen = []
    for line in build.stdout:  # dbt logs each node as it ends: kill once the first model is built
        seen.append(line)
        if "OK created sql table model" in line:
            break
    assert any("OK created sql table model" in line for line in seen), "".join(seen)[-2000:]
    build.send_signal(signal.SIGKILL)
    assert build.wait() == -signal.SIGKILL

    export = _cli(
        "export", MODEL, "--warehouse", str(warehouse), "--out", str(tmp_path / "shards"), "--force"
    )
    assert export.returncode == 1 and "Traceback" not in export.stderr
    assert "did not finish" in export.stderr and "lakehouse build" in export.stderr
    assert not (tmp_path / "shards" / MODEL / "latest").exists()

    again = _cli("build", "--lake", lake, "--warehouse", str(warehouse))
    assert again.returncode == 0, again.stdout[-2000:]
    con = connect(warehouse, PROJECT)
    for table, rows in reference["counts"].items():
        assert con.execute(f"select count(*) from {table}").fetchone()[0] == rows, table
    distinct = con.execute("select count(distinct event_id) from fct_events").fetchone()[0]
    con.close()
    assert distinct == reference["counts"]["fct_events"]  # the incremental model has no duplicates
    export = _cli(
        "export", MODEL, "--warehouse", str(warehouse), "--out", str(tmp_path / "shards"), "--force"
    )
    assert export.returncode == 0, export.stderr


def test_a_full_disk_during_ingest_is_named_and_a_rerun_completes(
    landing: Path, ingested, tmp_path: Path
) -> None:
    lake = tmp_path / "lake"
    failed = _cli("ingest", str(landing), "--lake", str(lake), limit_bytes=150_000)
    assert failed.returncode == 1 and "Traceback" not in failed.stderr
    assert f"cannot write {lake}/bronze/" in failed.stderr
    assert "ulimit -f" in failed.stderr and "nothing of this batch was committed" in failed.stderr
    # what did land reconciles with the ingest log: no half file anywhere
    log = read_delta(str(lake / "bronze" / "_ingest_log")).to_pylist()
    assert log and all(r["status"] == "ingested" for r in log)  # some files made it
    for table in {row["table"] for row in log}:
        landed = sum(r["rows_landed"] for r in log if r["table"] == table)
        assert read_delta(str(lake / "bronze" / table)).num_rows == landed

    rerun = _cli("ingest", str(landing), "--lake", str(lake))
    assert rerun.returncode == 0, rerun.stderr
    single, _ = ingested
    for table in ("users", "photos", "photo_embeddings", "events", "_quarantine"):
        assert (
            read_delta(str(lake / "bronze" / table)).num_rows
            == read_delta(str(single / "bronze" / table)).num_rows
        ), table


def test_a_full_disk_during_export_publishes_nothing(reference, tmp_path: Path) -> None:
    out = tmp_path / "shards"
    args = (
        "export",
        MODEL,
        "--warehouse",
        str(reference["warehouse"]),
        "--out",
        str(out),
        "--force",
    )
    failed = _cli(*args, limit_bytes=100_000)
    assert failed.returncode == 1 and "Traceback" not in failed.stderr
    assert f"cannot write {MODEL} shards under {out}" in failed.stderr
    assert "no version was published" in failed.stderr
    assert list((out / MODEL).iterdir()) == []  # no version, no temp folder, no latest
    assert _cli(*args).returncode == 0
    assert (out / MODEL / "latest" / "manifest.json").exists()


def test_a_warehouse_held_by_another_process_is_a_clear_message(reference, tmp_path: Path) -> None:
    held = tmp_path / "held.duckdb"  # a copy: the shared warehouse is only ever read
    shutil.copy(reference["warehouse"], held)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); print('held', flush=True);"
            " time.sleep(60)",
            str(held),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        lake, warehouse = str(reference["lake"]), str(held)
        for code, args in (
            (1, ("build", "--lake", lake, "--warehouse", warehouse)),
            # the gate could not run: 2, not the verdict "blocked" (1)
            (2, ("validate", "--lake", lake, "--warehouse", warehouse, "--out", str(tmp_path))),
            (1, ("export", MODEL, "--warehouse", warehouse, "--out", str(tmp_path), "--force")),
        ):
            result = _cli(*args)
            assert result.returncode == code and "Traceback" not in result.stderr, args
            assert f"the warehouse {warehouse} is in use by another process" in result.stderr
            assert f"(PID {holder.pid})" in result.stderr
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (
            OSError(28, "No space left on device", "/lake/x.parquet"),
            "the disk is full (/lake/x.parquet)",
        ),
        (PermissionError(13, "Permission denied", "/shards"), "permission denied (/shards)"),
        (OSError(30, "Read-only file system"), "the file system is read-only"),
        (
            RuntimeError("Generic LocalFileSystem error: Unable to copy data (os error 28)"),
            "the disk is full",
        ),
        (OSError(5, "Input/output error"), "Input/output error"),
    ],
)
def test_storage_errors_read_as_one_line_with_the_cause(
    error: BaseException, expected: str
) -> None:
    assert describe_storage_error(error) == expected


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_a_read_only_lake_folder_is_a_clear_message(landing: Path, tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    lake.mkdir()
    lake.chmod(0o555)
    try:
        result = _cli("ingest", str(landing), "--lake", str(lake))
    finally:
        lake.chmod(0o755)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"cannot write {lake}/bronze/" in result.stderr


@pytest.mark.parametrize(
    ("message", "transient"),
    [
        # pyarrow's S3 client and deltalake's object store, as they fail against a closed port
        (
            "When getting information for key 'landing' in bucket 'b': AWS Error "
            "NETWORK_CONNECTION during HeadObject operation: curlCode: 7, Could not connect",
            True,
        ),
        (
            "Generic S3 error: Error performing GET http://127.0.0.1:9/b in 5.4s, after 10 "
            "retries, max_retries 10, retry_timeout 180s - HTTP error - tcp connect error - "
            "Connection refused (os error 111)",
            True,
        ),
        ("AWS Error SLOW_DOWN during PutObject operation: SlowDown", True),
        ("curlCode: 28, Timeout was reached", True),
        # object_store names its retry_timeout in every error, and versions are numbers
        (
            "Generic S3 error: Error performing GET http://x/b in 20ms, after 0 retries, "
            "max_retries 10, retry_timeout 180s - Server returned non-2xx status code: "
            "403 Forbidden",
            False,
        ),
        ("Delta table version 503 not found", False),
        ("No space left on device (os error 28)", False),
    ],
)
def test_only_unreachable_or_throttled_storage_is_transient(message: str, transient: bool) -> None:
    assert is_transient(OSError(message)) is transient
    assert is_transient(ConnectionRefusedError(111, "Connection refused"))
    assert not is_transient(PermissionError(13, "Permission denied"))


def _export_process(warehouse: Path, out: str, shard_rows: int) -> subprocess.Popen[str]:
    options = ["--warehouse", str(warehouse), "--out", out, "--shard-rows", str(shard_rows)]
    return subprocess.Popen(
        [sys.executable, "-m", "lakehouse.cli", "export", MODEL, *options, "--force"],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def _published(client, bucket: str, root: str) -> dict[int, dict]:
    """Every version on the store that has a manifest, checked whole: each shard it lists
    is there with its size and sha256."""
    import hashlib
    import json

    names = {
        o["Key"]
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=root)
        for o in page.get("Contents", [])
    }
    versions = {}
    for key in sorted(k for k in names if k.endswith("/manifest.json")):
        folder = key.rsplit("/", 1)[0]
        manifest = json.loads(client.get_object(Bucket=bucket, Key=key)["Body"].read())
        assert folder.endswith(f"/v{manifest['version']}"), (folder, manifest["version"])
        for shard in manifest["shards"]:
            body = client.get_object(Bucket=bucket, Key=f"{folder}/{shard['path']}")["Body"].read()
            assert len(body) == shard["bytes"], f"{folder}/{shard['path']} truncated"
            assert hashlib.sha256(body).hexdigest() == shard["sha256"], f"{folder}/{shard['path']}"
        versions[manifest["version"]] = manifest
    return versions


def test_killed_and_concurrent_remote_exports_keep_versions_whole_and_latest_forward(
    reference, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Remote publish used to pick v<N+1> from a listing and overwrite `latest` blindly: two
    exports at once could take one version (one's shards overwriting the other's) and move
    `latest` backwards. Now a version is claimed by a conditional create and `latest` moves
    by compare-and-swap, forward only; kill -9 at any moment leaves no half version."""
    import random
    import threading
    import time

    from tests.object_store import client_for, s3_server

    warehouse = reference["warehouse"]
    with s3_server(["shards"]) as env:
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        client = client_for(env)
        out, root = "s3://shards/race", f"race/{MODEL}"
        seen: list[int] = []
        stop = threading.Event()

        def watch() -> None:  # every value `latest` takes, as a reader polling it sees them
            while not stop.is_set():
                try:
                    body = client.get_object(Bucket="shards", Key=f"{root}/latest")["Body"].read()
                    seen.append(int(body.decode().strip()[1:]))
                except client.exceptions.NoSuchKey:
                    pass
                time.sleep(0.01)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        try:
            # four exports at once, each of other rows per shard (so each is a new version)
            runs = [_export_process(warehouse, out, rows) for rows in (700, 900, 1100, 1300)]
            for run in runs:
                _, err = run.communicate(timeout=300)
                assert run.returncode == 0, err
            assert sorted(_published(client, "shards", root)) == [1, 2, 3, 4]
            # kill -9 at random moments of more exports, then one that finishes
            chance = random.Random(26)
            for attempt in range(6):
                run = _export_process(warehouse, out, 500 + attempt)
                time.sleep(chance.uniform(0.5, 6.0))
                run.kill()
                run.wait()
            final = _export_process(warehouse, out, 5000)
            _, err = final.communicate(timeout=300)
            assert final.returncode == 0, err
        finally:
            stop.set()
            watcher.join()
        published = _published(client, "shards", root)
        assert len(published) >= 5 and all(v > 4 for v in sorted(published)[4:])
        latest = client.get_object(Bucket="shards", Key=f"{root}/latest")["Body"].read()
        assert latest == f"v{max(published)}\n".encode()
        assert seen == sorted(seen), seen  # never backwards, as any reader saw it
        from lakehouse.loader import ShardDataset

        monkeypatch.setenv("LAKEHOUSE_CACHE", str(tmp_path / "cache"))
        rows = sum(b["photo_id"].numel() for b in ShardDataset(f"{out}/{MODEL}/latest", "train"))
        assert rows == sum(
            s["rows"] for s in published[max(published)]["shards"] if s["split"] == "train"
        )


def test_concurrent_local_exports_leave_latest_on_the_newest(reference, tmp_path: Path) -> None:
    out = tmp_path / "shards"
    runs = [_export_process(reference["warehouse"], str(out), r) for r in (700, 900, 1100)]
    for run in runs:
        _, err = run.communicate(timeout=300)
        assert run.returncode == 0, err
    assert sorted(p.name for p in (out / MODEL).glob("v*")) == ["v1", "v2", "v3"]
    assert os.readlink(out / MODEL / "latest") == "v3"
