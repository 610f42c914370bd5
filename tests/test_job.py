"""The nightly job as one command: every step in order, a clear stop at the first failure,
and the same job on S3-compatible object storage (a real S3 API server on 127.0.0.1)."""

from __future__ import annotations

import csv
import gzip
import json
import os
import shutil
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from lakehouse.cli import main
from lakehouse.features import open_store
from lakehouse.loader import LoaderError, ShardDataset
from lakehouse.storage import read_delta
from lakehouse.warehouse import connect, dbt_artifacts, project_dir
from lakehouse.warehouse.lineage import model_build
from tests.conftest import END
from tests.object_store import SECRET, client_for, keys, s3_server

PROJECT = project_dir(Path(__file__).parent)
MODEL = "photo_popularity_training"
AS_OF = (END + timedelta(hours=6)).isoformat()  # the landing fixture is a dump of END's night
BRONZE = ["users", "photos", "photo_embeddings", "events", "_quarantine", "_ingest_log"]


def _run(*args: str) -> int:
    return main(["run", *args])


def test_a_failed_gate_stops_the_job_before_export(
    landing: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # measured against now, the fixture's data is weeks old: the freshness checks block
    code = _run(
        "--landing", str(landing), "--lake", str(tmp_path / "lake"),
        "--out", str(tmp_path / "shards"), "--warehouse", str(tmp_path / "w.duckdb"),
    )  # fmt: skip
    out = capsys.readouterr()
    assert code == 1
    assert "nightly job failed at quality gate: the data-quality gate blocked" in out.err
    assert "fct_events: expect_column_max_to_be_recent(occurred_at)" in " ".join(out.err.split())
    summary = out.out[out.out.index("nightly job of ") :]  # the clock read once, shown
    assert "export" in summary and "not run" in summary
    assert not (tmp_path / "shards").exists()
    # serving never sees a night the gate blocked: the online store was not even created
    assert "materialize" in summary and summary.count("not run") == 2
    assert not (tmp_path / "online").exists()
    # no --as-of: the machine's clock is read once and reaches every step, the build included
    gate = json.loads((tmp_path / "quality" / "result.json").read_text())
    con = connect(tmp_path / "w.duckdb", PROJECT)
    try:
        built = model_build(con, MODEL)
    finally:
        con.close()
    assert built is not None and built.as_of is not None
    assert built.as_of.isoformat() == gate["as_of"]


def test_an_unreadable_file_stops_the_job_after_ingest(
    landing: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    copy = tmp_path / "landing"
    shutil.copytree(landing, copy)
    broken = sorted((copy / "events").iterdir())[0]
    broken.write_bytes(gzip.compress(b"\xff\xfe not json at all\n")[:20])  # cut off mid-stream
    code = _run(
        "--landing", str(copy), "--lake", str(tmp_path / "lake"),
        "--out", str(tmp_path / "shards"), "--warehouse", str(tmp_path / "w.duckdb"),
    )  # fmt: skip
    out = capsys.readouterr()
    assert code == 1
    assert f"nightly job failed at ingest: {broken}" in out.err.replace("\n", "")
    assert out.out.count("not run") == 4  # dbt build, quality gate, export, materialize
    assert not (tmp_path / "w.duckdb").exists()


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory):
    with s3_server(["landing", "lake", "shards"]) as env, pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        mp.setenv("LAKEHOUSE_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield env


@pytest.fixture(scope="module")
def job_on_s3(s3, landing: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    client = client_for(s3)
    for path in sorted(p for p in landing.rglob("*") if p.is_file()):
        client.upload_file(str(path), "landing", str(path.relative_to(landing)))
    work = tmp_path_factory.mktemp("job-s3")
    code = _run(
        "--landing", "s3://landing", "--lake", "s3://lake/prod", "--out", "s3://shards/prod",
        "--warehouse", str(work / "warehouse.duckdb"), "--as-of", AS_OF,
    )  # fmt: skip
    return {"code": code, "work": work}


def test_the_whole_job_runs_on_s3(job_on_s3, s3, ingested) -> None:
    assert job_on_s3["code"] == 0
    local_lake, _ = ingested  # the same landing folder ingested into a local lake
    for table in BRONZE:
        on_s3 = read_delta(f"s3://lake/prod/bronze/{table}")
        assert on_s3.num_rows == read_delta(str(local_lake / "bronze" / table)).num_rows > 0
    assert any(k.endswith("_delta_log/00000000000000000000.json") for k in keys(s3, "lake"))
    root = f"prod/{MODEL}"
    latest = client_for(s3).get_object(Bucket="shards", Key=f"{root}/latest")["Body"].read()
    assert latest == b"v1\n"
    assert f"{root}/v1/manifest.json" in keys(s3, "shards")
    manifest = client_for(s3).get_object(Bucket="shards", Key=f"{root}/v1/manifest.json")
    # the night the build served: the job's --as-of, recorded with the build's lineage
    assert json.loads(manifest["Body"].read())["lineage"]["as_of"] == AS_OF
    # and the online store (next to the warehouse) holds that night's serving features
    store = open_store(str(job_on_s3["work"] / "online" / "features.sqlite"))
    try:
        fills = {f.view: f for f in store.views()}
    finally:
        store.close()
    assert sorted(fills) == ["owner", "photo"]
    assert {(f.as_of, f.shard_version) for f in fills.values()} == {(AS_OF, 1)}
    con = connect(job_on_s3["work"] / "warehouse.duckdb", PROJECT)
    try:
        users = con.execute(
            "select count(*) from stg_app__users where signup_at <= ?", [AS_OF]
        ).fetchone()[0]
    finally:
        con.close()
    assert fills["owner"].rows == users > 900 and fills["photo"].rows > 0


def test_the_loader_reads_shards_from_s3_through_a_local_cache(job_on_s3, s3) -> None:
    con = connect(job_on_s3["work"] / "warehouse.duckdb", PROJECT)
    expected = [
        r[0]
        for r in con.execute(
            f"select photo_id from {MODEL} where split = 'train' order by photo_id"
        ).fetchall()
    ]
    con.close()
    uri = f"s3://shards/prod/{MODEL}/latest"
    ids = [i for b in ShardDataset(uri, "train", batch_size=100) for i in b["photo_id"].tolist()]
    assert ids == expected and len(ids) > 100
    cached = Path(os.environ["LAKEHOUSE_CACHE"]) / "shards" / "s3" / "shards" / "prod" / MODEL
    assert (cached / "v1" / "manifest.json").exists()

    def no_download(*args, **kwargs):
        raise AssertionError("a cached version was downloaded again")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("lakehouse.loader.remote._download", no_download)
        again = ShardDataset(uri, "train", batch_size=100)
        assert sum(len(b["photo_id"]) for b in again) == len(expected)


def test_a_corrupt_shard_on_s3_is_named_and_never_cached(
    job_on_s3, s3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LAKEHOUSE_CACHE", str(tmp_path))
    client = client_for(s3)
    key = next(k for k in keys(s3, "shards", f"prod/{MODEL}/v1/val/") if k.endswith(".arrow"))
    original = client.get_object(Bucket="shards", Key=key)["Body"].read()
    body = bytearray(original)
    body[len(body) // 2] ^= 0xFF
    client.put_object(Bucket="shards", Key=key, Body=bytes(body))
    try:
        with pytest.raises(LoaderError, match=r"v1/val/part-00000\.arrow fetched as .* corrupt"):
            list(ShardDataset(f"s3://shards/prod/{MODEL}/v1", "val"))
        assert not list(tmp_path.rglob("val/part-00000.arrow"))
    finally:
        client.put_object(Bucket="shards", Key=key, Body=original)


def test_no_secret_and_no_personal_data_is_written_to_any_file(job_on_s3, s3, landing) -> None:
    """The AWS secret, the PII key, and every e-mail and name of the users file are in no file
    the job, dbt and the loader wrote outside the lake (warehouse, gate reports, dbt's compiled
    SQL, artifacts and logs, the shard cache); the key is not in the lake either."""
    for _ in ShardDataset(f"s3://shards/prod/{MODEL}/latest", "val", batch_size=1000):
        pass  # the loader fetched the version into its cache
    written = [job_on_s3["work"], Path(os.environ["LAKEHOUSE_CACHE"])]
    artifacts, logs = dbt_artifacts(PROJECT), Path(os.environ.get("DBT_LOG_PATH", "logs"))
    assert (artifacts / "run_results.json").exists() and any(logs.glob("*.log"))  # dbt wrote
    written += [artifacts, logs if logs.is_absolute() else PROJECT / logs]
    files = [p for folder in written if folder.exists() for p in folder.rglob("*") if p.is_file()]
    names = {p.name for p in files}
    assert {"warehouse.duckdb", "result.json", "report.html", "manifest.json"} <= names
    assert "features.sqlite" in names  # the online store: no key, no personal data either
    assert any(p.suffix == ".arrow" for p in files)  # the loader's cached shards
    key = os.environ["LAKEHOUSE_PII_SALT"].encode()
    with open(next((landing / "users").glob("*.csv")), newline="", errors="replace") as handle:
        users = list(csv.DictReader(handle))
    personal = {u[c].encode() for u in users for c in ("email", "display_name") if u.get(c)}
    personal = {v for v in personal if len(v) >= 6}
    assert len(personal) > 100
    leaks = []
    for path in files:
        blob = path.read_bytes()
        found = {SECRET.encode(), key, *personal}
        leaks += [(path, value[:12]) for value in found if value in blob]
    assert leaks == []
    lake = keys(s3, "lake")
    assert lake  # the lake is on S3: its objects are checked for the key
    client = client_for(s3)
    for name in lake:
        assert key not in client.get_object(Bucket="lake", Key=name)["Body"].read(), name
    assert os.environ["AWS_SECRET_ACCESS_KEY"] == SECRET  # the job did run with it


@pytest.mark.parametrize("where", ["local", "s3"])
def test_two_ingests_of_the_same_landing_folder_at_once_land_each_row_once(
    where: str, request: pytest.FixtureRequest, landing: Path, tmp_path: Path, ingested
) -> None:
    if where == "s3":
        request.getfixturevalue("s3")  # the server, and its AWS_* environment for the runs
        lake = f"s3://lake/concurrent-{tmp_path.name}"
    else:
        lake = str(tmp_path / "lake")
    # the job's ingest step, in two processes; each prints what its report claims
    script = (
        "import json, sys; from lakehouse.ingest import ingest; "
        "r = ingest(sys.argv[1], sys.argv[2]); assert r.ok, r.failed; "
        "print(json.dumps([[f.source_file, f.status, f.rows_landed] for f in r.files]))"
    )
    runs = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(landing), lake],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    claims = []
    for run in runs:
        out, err = run.communicate(timeout=300)
        assert run.returncode == 0, err
        claims.append(json.loads(out.splitlines()[-1]))
    single_lake, alone_report = ingested
    for table in BRONZE:
        together = read_delta(f"{lake}/bronze/{table}")
        alone = read_delta(str(single_lake / "bronze" / table))
        assert together.num_rows == alone.num_rows, table
    # each file is reported ingested by exactly one run, and the runs' landed rows add up
    # to bronze's (both used to claim every file: "9,487 landed, 11 files ingested" twice)
    ingested_by = {}
    for claim in claims:
        for source, status, _ in claim:
            ingested_by.setdefault(source, []).append(status)
    assert all(sorted(s) in (["ingested", "skipped"], ["ingested"]) for s in ingested_by.values())
    assert all(s.count("ingested") == 1 for s in ingested_by.values()), ingested_by
    landed = sum(rows for claim in claims for _, status, rows in claim if status == "ingested")
    assert landed == sum(f.rows_landed for f in alone_report.files)


def test_a_remote_manifest_cannot_write_outside_the_cache(
    job_on_s3, s3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    monkeypatch.setenv("LAKEHOUSE_CACHE", str(cache))
    client = client_for(s3)
    manifest = json.loads(
        client.get_object(Bucket="shards", Key=f"prod/{MODEL}/v1/manifest.json")["Body"].read()
    )
    escape = "../" * 12 + f"{tmp_path.relative_to('/')}/owned.sh"
    manifest["shards"][0]["path"] = escape
    client.put_object(Bucket="shards", Key="evil/v1/manifest.json", Body=json.dumps(manifest))
    client.put_object(Bucket="shards", Key="evil/v1/" + manifest["shards"][0]["path"], Body=b"x")
    with pytest.raises(LoaderError, match="leaves the shard folder"):
        ShardDataset("s3://shards/evil/v1", "train")
    assert not (tmp_path / "owned.sh").exists()

    client.put_object(Bucket="shards", Key="evil/latest", Body=b"../../../../outside\n")
    with pytest.raises(LoaderError, match="not a version name"):
        ShardDataset("s3://shards/evil/latest", "train")
    assert not (tmp_path / "outside").exists()
    assert all(cache.resolve() in p.resolve().parents for p in cache.rglob("*"))
