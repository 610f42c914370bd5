"""The dbt warehouse, built on a generated lake, holds exactly what the raw files say."""

from __future__ import annotations

import csv
import gzip
import hashlib
import hmac
import json
import os
import re
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pyarrow.parquet as pq
import pytest

from lakehouse.cli import main
from lakehouse.ingest import Bronze, ingest
from lakehouse.layout import DEFAULT_ROOT
from lakehouse.warehouse import (
    WarehouseError,
    bronze_versions,
    connect,
    dbt_artifacts,
    project_dir,
    run_dbt,
)
from lakehouse.warehouse.pii import DEMO_SALT, pii_key
from tests.conftest import NIGHT, BuiltWarehouse
from tests.helpers import bronze, project_models, project_unit_tests

PROJECT = project_dir(Path(__file__).parent)
MARTS = (
    "dim_users",
    "dim_photos",
    "fct_events",
    "photo_popularity_training",
    "caption_labeling_rule_stats",
)


@pytest.fixture(scope="module")
def clean_landing(built_warehouse: BuiltWarehouse) -> Path:
    return built_warehouse.landing


@pytest.fixture(scope="module")
def built(built_warehouse: BuiltWarehouse):
    con = connect(built_warehouse.warehouse, PROJECT)
    yield built_warehouse.result, con, built_warehouse.lake
    con.close()


def _ts(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@pytest.fixture(scope="module")
def raw(clean_landing: Path) -> dict:
    """The landing files parsed with nothing but the standard library."""
    events = [
        json.loads(line)
        for p in sorted((clean_landing / "events").iterdir())
        for line in gzip.decompress(p.read_bytes()).splitlines()
    ]
    photos = {
        p["photo_id"]: p
        for f in sorted((clean_landing / "photos").iterdir())
        for p in map(json.loads, f.read_text().splitlines())
    }
    with open(next((clean_landing / "users").iterdir()), newline="") as handle:
        users = {int(u["user_id"]): u for u in csv.DictReader(handle)}
    embeddings = pq.read_table(clean_landing / "embeddings").to_pydict()
    for e in events:
        e["ts"] = _ts(e["ts"])
    for p in photos.values():
        p["posted_at"] = _ts(p["posted_at"])
    return {
        "events": events,
        "photos": photos,
        "users": users,
        "embeddings": dict(zip(embeddings["photo_id"], embeddings["embedding"], strict=True)),
    }


def test_build_runs_every_model_and_test_green(built) -> None:
    result, _, _ = built
    assert result.success and result.exit_code == 0, result.failures
    counts = result.counts()
    assert counts[("model", "success")] == len(project_models())
    assert counts[("unit_test", "pass")] == len(project_unit_tests())
    assert counts[("test", "pass")] >= 70
    assert not result.failures


def _expected_features(photo_id: int, raw: dict) -> dict:
    photo = raw["photos"][photo_id]
    owner, posted = photo["owner_id"], photo["posted_at"]
    owner_photos = {pid for pid, p in raw["photos"].items() if p["owner_id"] == owner}
    week = [
        e
        for e in raw["events"]
        if e["photo_id"] == photo_id and posted <= e["ts"] < posted + timedelta(days=7)
    ]
    day = [e for e in week if e["ts"] < posted + timedelta(hours=24)]
    received = [e for e in raw["events"] if e["photo_id"] in owner_photos and e["ts"] < posted]
    posted_day = posted.date()
    own_recent = [
        e
        for e in raw["events"]
        if e["user_id"] == owner and posted_day - timedelta(days=30) <= e["ts"].date() < posted_day
    ]
    signup = _ts(raw["users"][owner]["signup_at"])
    bucket = int(hashlib.md5(str(photo_id).encode()).hexdigest()[:8], 16) % 100
    likes_7d = sum(e["event_type"] == "like" for e in week)
    return {
        "split": "train" if bucket < 80 else "val" if bucket < 90 else "test",
        "likes_24h": sum(e["event_type"] == "like" for e in day),
        "likes_7d": likes_7d,
        "is_popular": likes_7d >= 10,
        "owner_likes_received": sum(e["event_type"] == "like" for e in received),
        "owner_followers": sum(e["event_type"] == "follow" for e in received),
        "owner_prior_photos": sum(raw["photos"][p]["posted_at"] < posted for p in owner_photos),
        "owner_events_30d": len(own_recent),
        "owner_account_age_days": (posted_day - signup.date()).days,
        "caption_length": len(photo["caption"]),
        "hashtag_count": photo["caption"].count("#"),
    }


def _weak_label(caption: str) -> str | None:
    with open(PROJECT / "seeds" / "caption_labeling_rules.csv", newline="") as handle:
        rules = list(csv.DictReader(handle))
    votes = [r["label"] for r in rules if re.search(r["pattern"], caption)]
    popular, not_popular = votes.count("popular"), votes.count("not_popular")
    return "popular" if popular > not_popular else "not_popular" if not_popular > popular else None


def test_hand_checked_photos_match_an_independent_computation(built, raw: dict) -> None:
    _, con, _ = built
    rows = con.sql(
        "select * from photo_popularity_training "
        "order by owner_likes_received desc, photo_id limit 3"
    ).fetchall()
    rows += con.sql(
        "select * from photo_popularity_training where owner_prior_photos = 0 "
        "order by photo_id limit 2"
    ).fetchall()
    columns = [c[0] for c in con.sql("select * from photo_popularity_training limit 0").description]
    assert len(rows) == 5
    for values in rows:
        row = dict(zip(columns, values, strict=True))
        expected = _expected_features(row["photo_id"], raw)
        assert {k: row[k] for k in expected} == expected, row["photo_id"]
        assert row["weak_label"] == _weak_label(raw["photos"][row["photo_id"]]["caption"])
        np.testing.assert_array_equal(
            np.array(row["embedding"], dtype=np.float32),
            np.array(raw["embeddings"][row["photo_id"]], dtype=np.float32),
        )
        assert row["features_as_of"] is None or row["features_as_of"] < row["posted_at"]


def test_training_rows_are_exactly_the_mature_photos(built, raw: dict) -> None:
    _, con, _ = built
    horizon = max(e["ts"] for e in raw["events"])
    mature = {
        pid for pid, p in raw["photos"].items() if p["posted_at"] + timedelta(days=7) <= horizon
    }
    ids = {r[0] for r in con.sql("select photo_id from photo_popularity_training").fetchall()}
    assert ids == mature


def test_row_counts_reconcile_from_bronze_to_marts(built, raw: dict) -> None:
    _, con, _ = built
    count = lambda table: con.sql(f"select count(*) from {table}").fetchone()[0]  # noqa: E731
    assert count("fct_events") == len({e["event_id"] for e in raw["events"]})
    assert count("dim_photos") == len(raw["photos"])
    assert count("dim_users") == len(raw["users"])
    per_type = dict(con.sql("select event_type, count(*) from fct_events group by 1").fetchall())
    for event_type, n in per_type.items():
        assert n == sum(e["event_type"] == event_type for e in raw["events"])


def test_no_personal_data_reaches_a_mart(built, raw: dict) -> None:
    _, con, _ = built
    secrets = {u["email"] for u in raw["users"].values()}
    secrets |= {u["display_name"] for u in raw["users"].values()}
    secrets |= {e["comment_text"] for e in raw["events"] if e.get("comment_text")}
    for mart in MARTS:
        columns = con.sql(f"describe {mart}").fetchall()
        names = {c[0] for c in columns}
        assert not names & {
            "email",
            "display_name",
            "comment_text",
            "email_hash",
            "display_name_hash",
            "comment_text_hash",
            "caption",
        }, mart
        for name, kind, *_ in columns:
            if kind == "VARCHAR":
                values = {v for (v,) in con.sql(f"select distinct {name} from {mart}").fetchall()}
                assert not values & secrets, f"{mart}.{name} holds personal data"
                assert not any(v and "@" in v for v in values), f"{mart}.{name} holds an email"


def test_bronze_reads_are_recorded_for_the_exporter(built) -> None:
    result, con, _ = built
    recorded = dict(
        con.sql(
            "select table_name, delta_version from lakehouse_bronze_reads where invocation_id = ?",
            params=[result.invocation_id],
        ).fetchall()
    )
    assert recorded == result.bronze_versions
    assert set(recorded) == {"events", "photos", "users", "photo_embeddings", "_ingest_log"}


def test_pinned_versions_rebuild_the_past_and_incremental_runs_pick_up_late_files(
    clean_landing: Path, tmp_path: Path
) -> None:
    landing, lake = tmp_path / "landing", tmp_path / "lake"
    shutil.copytree(clean_landing, landing)
    late = sorted((landing / "events").iterdir())[-5:]
    held_back = tmp_path / "held_back"
    held_back.mkdir()
    for path in late:
        path.rename(held_back / path.name)
    ingest(str(landing), str(lake), now=NIGHT)
    first = run_dbt(str(lake), tmp_path / "a.duckdb", project=PROJECT, quiet=True)
    assert first.success
    for path in late:  # the late files land
        (held_back / path.name).rename(path)
    ingest(str(landing), str(lake), now=NIGHT)

    past = run_dbt(
        str(lake),
        tmp_path / "b.duckdb",
        project=PROJECT,
        quiet=True,
        versions=first.bronze_versions,
    )
    assert past.success
    now = run_dbt(str(lake), tmp_path / "a.duckdb", project=PROJECT, quiet=True)
    assert now.success and now.bronze_versions["events"] > first.bronze_versions["events"]

    def events(path: Path) -> tuple[int, int]:
        con = connect(path, PROJECT)
        try:
            return con.sql("select count(*), count(distinct event_id) from fct_events").fetchone()
        finally:
            con.close()

    in_files = {
        p.name: sum(1 for _ in gzip.decompress(p.read_bytes()).splitlines())
        for p in (landing / "events").iterdir()
    }
    total = sum(in_files.values())
    early = total - sum(in_files[p.name] for p in late)
    assert events(tmp_path / "b.duckdb") == (early, early)  # time travel: the old snapshot
    assert events(tmp_path / "a.duckdb") == (total, total)  # incremental: late rows, no dupes


def test_build_without_a_lake_says_to_ingest_first(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(WarehouseError, match="lakehouse ingest"):
        run_dbt(str(tmp_path / "nolake"), tmp_path / "w.duckdb", project=PROJECT)
    code = main(
        ["build", "--lake", str(tmp_path / "nolake"), "--warehouse", str(tmp_path / "w.duckdb")]
    )
    assert code == 1
    assert "Ingest first" in capsys.readouterr().err


def test_analysts_plain_dbt_build_refuses_a_missing_lake_clearly(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "LAKEHOUSE_LAKE": str(tmp_path / "nolake"),
        "LAKEHOUSE_DUCKDB": str(tmp_path / "w.duckdb"),
    }
    out = _dbt_cli("build", env=env)
    assert out.returncode != 0
    assert "No bronze Delta table at" in out.stdout and "lakehouse ingest" in out.stdout


_SESSION = (
    "select current_setting('memory_limit') as memory, current_setting('TimeZone') as zone, "
    "(select count(*) from duckdb_extensions() where loaded and extension_name = 'delta') "
    "as delta"
)


def test_dbt_and_the_gate_set_up_one_duckdb_session(tmp_path: Path, monkeypatch) -> None:
    """dbt's session is set up by the same code as the gate's (the profile's plugin calls
    duckdb_env): the same memory limit, UTC days whatever the machine's zone, delta loaded,
    and a wrong setting named in one line by both, without a traceback."""
    dbt = str(Path(sys.executable).parent / "dbt")
    warehouse = tmp_path / "w.duckdb"
    env = {
        **os.environ,
        "LAKEHOUSE_DUCKDB": str(warehouse),
        "LAKEHOUSE_LAKE": str(tmp_path / "nolake"),
        "LAKEHOUSE_PII_SALT": "a key for this test",
        "LAKEHOUSE_DUCKDB_MEMORY_LIMIT": "3GB",
        "TZ": "America/New_York",
    }
    show = subprocess.run(
        [dbt, "show", "--inline", _SESSION, "--output", "json", "--log-format", "json"],
        cwd=PROJECT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert show.returncode == 0, show.stdout[-2000:]
    shown = next(
        json.loads(line)["data"]["preview"]
        for line in show.stdout.splitlines()
        if '"preview"' in line
    )
    from_dbt = json.loads(shown)[0]
    for name in ("LAKEHOUSE_DUCKDB_MEMORY_LIMIT", "TZ"):
        monkeypatch.setenv(name, env[name])
    con = connect(warehouse, PROJECT)
    try:
        memory, zone, delta = con.sql(_SESSION).fetchone()
    finally:
        con.close()
    assert from_dbt == {"memory": memory, "zone": zone, "delta": delta}
    assert (zone, delta, memory) == ("UTC", 1, "2.7 GiB")

    wrong = {**env, "LAKEHOUSE_DUCKDB_MEMORY_LIMIT": "4XB"}
    out = subprocess.run(
        [dbt, "run"], cwd=PROJECT, env=wrong, capture_output=True, text=True, check=False
    )
    said = "LAKEHOUSE_DUCKDB_MEMORY_LIMIT='4XB' is not a DuckDB memory size"
    assert out.returncode != 0 and said in out.stdout and "Traceback" not in out.stdout
    monkeypatch.setenv("LAKEHOUSE_DUCKDB_MEMORY_LIMIT", "4XB")
    with pytest.raises(WarehouseError, match=re.escape(said)):
        connect(warehouse, PROJECT)


@pytest.mark.parametrize(
    ("setting", "said"),
    [
        (
            {"LAKEHOUSE_DUCKDB": "/nonexistent/w.duckdb"},
            "LAKEHOUSE_DUCKDB=/nonexistent/w.duckdb: the folder /nonexistent does not exist",
        ),
        (
            {"LAKEHOUSE_LAKE": "s3://nobucket/lake"},
            "no AWS credentials for the lake on S3: set AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY",
        ),
    ],
)
def test_a_wrong_setting_is_one_line_naming_the_variable_to_set(
    tmp_path: Path, setting: dict[str, str], said: str
) -> None:
    """An analyst's `dbt run` with a warehouse in a folder that does not exist, or a lake on
    S3 without credentials: dbt stops before any model with one line saying what to set,
    never a Python traceback or a model failing later on the lake."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        {
            "LAKEHOUSE_DUCKDB": str(tmp_path / "w.duckdb"),
            "LAKEHOUSE_LAKE": str(tmp_path / "nolake"),
            "LAKEHOUSE_PII_SALT": "a key for this test",
            **setting,
        }
    )
    out = _dbt_cli("run", "--select", "stg_app__users", env=env)
    assert out.returncode != 0
    assert said in " ".join(out.stdout.split()), out.stdout[-2000:]
    assert "Traceback" not in out.stdout + out.stderr
    assert (
        "stg_app__users" not in out.stdout.split("Encountered an error")[0].split("Concurrency")[-1]
    )


def test_split_is_stable_across_days(built) -> None:
    _, con, _ = built
    share = dict(
        con.sql(
            "select split, count(*) * 1.0 / sum(count(*)) over () from photo_popularity_training "
            "group by split"
        ).fetchall()
    )
    assert set(share) == {"train", "val", "test"}
    assert 0.7 < share["train"] < 0.9


@pytest.fixture(scope="module")
def docs(built_warehouse: BuiltWarehouse, tmp_path_factory: pytest.TempPathFactory):
    """`dbt docs generate` as an analyst runs it, on a copy of the built warehouse: its
    manifest.json and catalog.json."""
    work = tmp_path_factory.mktemp("docs")
    warehouse = work / "warehouse.duckdb"
    shutil.copy(built_warehouse.warehouse, warehouse)
    env = {
        **os.environ,
        "LAKEHOUSE_LAKE": str(built_warehouse.lake),
        "LAKEHOUSE_DUCKDB": str(warehouse),
        "LAKEHOUSE_PII_SALT": "a key for this test",
    }
    target = work / "target"
    out = _dbt_cli("docs", "generate", "--target-path", str(target), env=env)
    assert out.returncode == 0, out.stdout[-3000:]
    manifest = json.loads((target / "manifest.json").read_text())
    return manifest, json.loads((target / "catalog.json").read_text())


def test_dbt_docs_generate_documents_every_mart_column(docs) -> None:
    manifest, catalog = docs
    models = {n["name"]: n for n in manifest["nodes"].values() if n["resource_type"] == "model"}
    assert sorted(models) == project_models()
    tables = {k.rsplit(".", 1)[-1]: v for k, v in catalog["nodes"].items()}
    for name, node in models.items():
        assert node["description"], f"{name} has no description"
        documented = {c for c, v in node["columns"].items() if v["description"]}
        actual = set(tables[name]["columns"])
        assert actual <= documented, f"{name}: undocumented {sorted(actual - documented)}"
    training = next(
        v for k, v in catalog["nodes"].items() if k.endswith("photo_popularity_training")
    )
    assert training["columns"]["embedding"]["type"].upper() == "FLOAT[64]"


def test_build_from_another_directory_resolves_paths_there(
    built, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, _, lake = built
    monkeypatch.chdir(tmp_path)  # not the repo: the extension must still be found
    result = run_dbt(
        str(lake), "relative/w.duckdb", project=PROJECT, quiet=True, select=["stg_app__photos"]
    )
    assert result.success, result.error
    assert (tmp_path / "relative" / "w.duckdb").exists()
    assert not (PROJECT / "relative").exists()


def test_a_batch_whose_ingest_completes_days_later_still_reaches_fct_events(
    built_warehouse: BuiltWarehouse, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lake, warehouse = tmp_path / "lake", tmp_path / "warehouse.duckdb"
    shutil.copytree(built_warehouse.lake, lake)
    shutil.copy(built_warehouse.warehouse, warehouse)
    last = sorted((built_warehouse.landing / "events").iterdir())[-1]

    def landing_of(day: int) -> Path:  # the last day's events again, `day` days later
        folder = tmp_path / f"landing-{day}" / "events"
        folder.mkdir(parents=True, exist_ok=True)  # written again: the same bytes
        events = [json.loads(line) for line in gzip.decompress(last.read_bytes()).splitlines()]
        for event in events:
            event["ts"] = (_ts(event["ts"]) + timedelta(days=day)).isoformat()
            event["event_id"] = f"day{day}-{event['event_id']}"
        body = "".join(json.dumps(e) + "\n" for e in events)
        (folder / f"events-day{day}.jsonl.gz").write_bytes(gzip.compress(body.encode(), mtime=0))
        return folder.parent

    real_log = Bronze.append_log
    with monkeypatch.context() as patch:  # the data commit lands, then the process dies
        patch.setattr(Bronze, "append_log", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt))
        with pytest.raises(KeyboardInterrupt):
            ingest(str(landing_of(1)), str(lake), now=NIGHT + timedelta(days=1))
    assert Bronze.append_log is real_log
    assert ingest(str(landing_of(4)), str(lake), now=NIGHT + timedelta(days=4)).ok
    assert run_dbt(str(lake), warehouse, project=PROJECT, quiet=True).success  # incremental
    # a weekend later, a rerun completes the day-1 batch; its rows keep their ingested_at
    assert ingest(str(landing_of(1)), str(lake), now=NIGHT + timedelta(days=5)).ok
    assert run_dbt(str(lake), warehouse, project=PROJECT, quiet=True).success
    con = connect(warehouse, PROJECT)
    try:
        staged, facts, late = con.execute(
            "select (select count(*) from stg_app__events), count(*), "
            "count(*) filter (where event_id like 'day1-%') from fct_events"
        ).fetchone()
        (late_at,) = con.execute(
            "select max(ingested_at) from stg_app__events where event_id like 'day1-%'"
        ).fetchone()
    finally:
        con.close()
    assert facts == staged and late > 100  # every staged event, the late batch's included
    assert late_at == NIGHT + timedelta(days=1)  # it kept its ingested_at: older than 48 h


def test_personal_data_is_hmac_keyed_by_the_salt(built, raw: dict) -> None:
    _, con, _ = built
    key = os.environ["LAKEHOUSE_PII_SALT"].encode()
    hashed = con.sql("select user_id, email_hash, display_name_hash from stg_app__users").fetchall()
    assert len(hashed) == len(raw["users"]) > 100
    for user_id, email_hash, name_hash in hashed:
        user = raw["users"][user_id]
        for value, digest in ((user["email"], email_hash), (user["display_name"], name_hash)):
            expected = hmac.new(key, value.strip().lower().encode(), hashlib.sha256).hexdigest()
            assert digest == expected


def test_the_salt_and_personal_data_are_in_no_file_dbt_or_the_warehouse_writes(
    built, raw: dict
) -> None:
    _, con, lake = built
    database = con.sql(
        "select path from duckdb_databases() where database_name = current_database()"
    ).fetchone()[0]
    key = os.environ["LAKEHOUSE_PII_SALT"].encode()
    personal = {u[c].encode() for u in raw["users"].values() for c in ("email", "display_name")}
    folders = [dbt_artifacts(PROJECT), Path(os.environ["DBT_LOG_PATH"])]
    files = [Path(database), *(p for f in folders for p in f.rglob("*") if p.is_file())]
    assert any(p.name == "manifest.json" for p in files) and any(p.suffix == ".log" for p in files)
    assert any(p.suffix == ".sql" for p in files)  # compiled SQL is there, and clean
    for path in files:
        blob = path.read_bytes()
        assert key not in blob, f"the PII salt is in {path}"
        assert not [v for v in personal if len(v) >= 6 and v in blob], path
    for path in (p for p in lake.rglob("*") if p.is_file()):  # the raw zone holds PII, no key
        assert key not in path.read_bytes(), path


def test_without_a_salt_only_the_demo_builds(
    built, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, _, lake = built
    monkeypatch.delenv("LAKEHOUSE_PII_SALT")
    result = run_dbt(str(lake), tmp_path / "prod.duckdb", project=PROJECT, quiet=True,
                     select=["stg_app__users"])  # fmt: skip
    assert not result.success and "LAKEHOUSE_PII_SALT is not set" in (result.error or "")
    with pytest.raises(RuntimeError, match="openssl rand"):
        pii_key(tmp_path / "prod.duckdb", env={})
    assert pii_key(DEFAULT_ROOT / "warehouse.duckdb", env={}) == DEMO_SALT.encode()
    assert pii_key(tmp_path / "prod.duckdb", env={"LAKEHOUSE_PII_SALT": "k"}) == b"k"


@pytest.mark.parametrize(
    ("lake_suffix", "versions", "complaint"),
    [
        ("x'); COPY (select 1) TO 'pwned.csv'; --", None, "holds a quote"),
        ("", {"users": "1, true, current_timestamp; COPY (select 1) TO 'p'"}, "whole-number"),
        ("", {"users; drop table x": 1}, "cannot read bronze"),
        ("", {"users": -1}, "whole-number"),
    ],
)
def test_values_that_become_dbt_vars_are_refused_before_dbt_runs(
    built, tmp_path: Path, lake_suffix: str, versions, complaint: str
) -> None:
    _, _, lake = built
    pinned = {**bronze_versions(str(lake)), **versions} if versions else None
    with pytest.raises(WarehouseError, match=re.escape(complaint)):
        run_dbt(str(lake) + lake_suffix, tmp_path / "w.duckdb", project=PROJECT, versions=pinned)
    assert not (tmp_path / "w.duckdb").exists() and not list(tmp_path.rglob("pwned.csv"))


def test_spark_reads_each_bronze_table_as_exactly_its_pinned_versions_files(
    ingested, tmp_path: Path
) -> None:
    """The spark engine's bronze (lakehouse.warehouse.spark.write_bronze_record): per table,
    the data files of the pinned Delta version, not a later version's and not an uncommitted
    file left in the folder, recorded at one path that does not change from night to night;
    an s3:// lake, and a record path Spark would misread, are refused with the reason."""
    from lakehouse.storage import open_delta
    from lakehouse.warehouse.spark import bronze_files, write_bronze_record

    lake, _ = ingested
    copy = tmp_path / "lake"
    shutil.copytree(lake, copy)
    events = copy / "bronze" / "events"
    latest = open_delta(str(events)).version()
    assert latest >= 2
    (events / "part-99999-left-by-a-crash.snappy.parquet").write_bytes(b"PAR1")
    records = []
    for version in (1, latest):
        night = datetime(2026, 11, 1, 6, tzinfo=UTC) + timedelta(days=version)
        record = write_bronze_record(tmp_path / "spark", str(copy), {"events": version}, night)
        records.append(record)
        rows = [json.loads(line) for line in record.read_text().splitlines()]
        expected = {Path(u).name for u in open_delta(str(events), version).file_uris()}
        assert {Path(r["file"]).name for r in rows} == expected
        assert {Path(r["file"]).parent for r in rows} == {events}
        assert {(r["table_name"], r["version"]) for r in rows} == {("events", version)}
        assert {r["as_of"] for r in rows} == {night.strftime("%Y-%m-%d %H:%M:%S.%f")}
    assert records[0] == records[1]  # the var naming it stays the same
    newest = bronze_files(str(copy), {"events": latest})["events"]
    assert len(bronze_files(str(copy), {"events": 1})["events"]) < len(newest)
    assert not any("left-by-a-crash" in f for f in newest)
    with pytest.raises(WarehouseError, match="hadoop-aws"):
        bronze_files("s3://bucket/lake", {"events": 1})
    # the record's path goes into Spark SQL inside backticks, and Spark globs it
    for odd in ("we`ird", "a{b}", "c*"):
        with pytest.raises(WarehouseError, match="without them"):
            write_bronze_record(tmp_path / odd / "spark", str(copy), {"events": 1}, None)
        assert not (tmp_path / odd).exists()


@pytest.mark.parametrize("size", ["4x", "g", "-1g", "lots"])
def test_a_cluster_with_a_memory_size_that_is_not_one_is_refused_in_one_line(
    size: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`lakehouse spark-cluster start --executor-memory` takes a JVM size; anything else is
    refused before a process starts, naming the value."""
    warehouse = str(tmp_path / "warehouse.duckdb")
    assert main(["spark-cluster", "start", f"--executor-memory={size}",
                 "--warehouse", warehouse]) == 1  # fmt: skip
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert f"executor memory '{size}' is not a memory size like 4g or 512m" in err
    assert not (tmp_path / "spark").exists()


def _dbt_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``dbt <args>`` as an analyst runs it, from the project's folder."""
    dbt = str(Path(sys.executable).parent / "dbt")
    return subprocess.run(
        [dbt, *args], cwd=PROJECT, env=env, capture_output=True, text=True, check=False
    )


def test_dbt_docs_catalog_lists_the_bronze_sources_with_described_columns(
    built_warehouse: BuiltWarehouse, docs
) -> None:
    """`dbt docs generate`: the Delta sources (read with delta_scan, not relations DuckDB
    knows) are in catalog.json with their columns and types as the models read them, and
    every one of those columns has a description in the sources' YAML."""
    manifest, catalog = docs
    assert sorted(catalog["sources"]) == sorted(manifest["sources"])
    for unique_id, entry in catalog["sources"].items():
        table = manifest["sources"][unique_id]["identifier"]
        # the columns as landed, in order
        assert list(entry["columns"]) == bronze(built_warehouse.lake, table).column_names
        assert entry["metadata"]["type"] == "DELTA TABLE"
        documented = manifest["sources"][unique_id]["columns"]
        missing = [c for c in entry["columns"] if not documented.get(c, {}).get("description")]
        assert not missing, f"{unique_id}: no description for {missing}"
    log = catalog["sources"]["source.lakehouse.ingest.ingest_log"]["columns"]
    assert log["log_version"]["type"] == "BIGINT"
    assert len(catalog["nodes"]) >= len(MARTS)  # the models are still there


def test_dbt_runs_from_a_folder_inside_the_project(
    built_warehouse: BuiltWarehouse, tmp_path: Path
) -> None:
    """An analyst's shell: `source .venv/bin/activate` (make setup points DBT_PROFILES_DIR
    at the checkout there), then `cd models && dbt run`. dbt finds the project upwards and
    the profile through the variable, and the relative defaults (the demo's warehouse and
    lake) mean the project's data/demo/, not models/data/demo/."""
    activate = Path(sys.prefix) / "bin" / "activate"
    if Path(sys.prefix).resolve() != (PROJECT / ".venv").resolve():
        pytest.skip("runs in the project's own .venv, which `make setup` makes")
    assert f'export DBT_PROFILES_DIR="{PROJECT}"' in activate.read_text()
    project = tmp_path / "project"
    for folder in ("models", "macros", "seeds"):
        shutil.copytree(PROJECT / folder, project / folder)
    for name in ("dbt_project.yml", "profiles.yml"):
        shutil.copy(PROJECT / name, project / name)
    (project / ".duckdb").symlink_to(PROJECT / ".duckdb")  # the installed extensions
    shutil.copytree(built_warehouse.lake, project / "data" / "demo" / "lake")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LAKEHOUSE_", "DBT_"))}
    script = f"source {activate} && cd {project / 'models'} && dbt run --select stg_app__users"
    out = subprocess.run(
        ["bash", "-c", script], env=env, capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert not (project / "models" / "data").exists()
    warehouse = project / "data" / "demo" / "warehouse.duckdb"
    with duckdb.connect(str(warehouse), read_only=True) as con:
        users = con.sql("select count(*) from stg_app__users").fetchone()
    assert users == (bronze(built_warehouse.lake, "users").num_rows,)  # one row per user


def test_new_pins_keep_dbts_partial_parse_and_reach_the_sql(
    built_warehouse: BuiltWarehouse, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A night pins other Delta versions than the last: the pins travel in the session (the
    plugin's DuckDB variable), not in the parsed SQL, so dbt parses nothing again, and the
    build reads and records exactly the versions pinned."""
    target = tmp_path / "target"
    monkeypatch.setenv("DBT_TARGET_PATH", str(target))
    warehouse = tmp_path / "warehouse.duckdb"
    shutil.copy(built_warehouse.warehouse, warehouse)
    lake = str(built_warehouse.lake)
    current = bronze_versions(lake)
    parsed = []
    for embeddings in (current["photo_embeddings"] - 1, current["photo_embeddings"]):
        pins = {**current, "photo_embeddings": embeddings}
        result = run_dbt(lake, warehouse, project=PROJECT, quiet=True, versions=pins,
                         select=["stg_ml__photo_embeddings"])  # fmt: skip
        assert result.success, result.failures or result.error
        parsed.append(result.parse)
        with duckdb.connect(str(warehouse), read_only=True) as con:
            read = dict(
                con.sql(
                    "select table_name, delta_version from lakehouse_bronze_reads "
                    f"where invocation_id = '{result.invocation_id}'"
                ).fetchall()
            )
        assert read == pins
    assert parsed[0] is not None and parsed[0].startswith("full")  # no saved parse yet
    assert parsed[1] == "partial"  # the second night: dbt's saved parse, no file changed


def test_a_session_the_thrift_server_fails_to_close_is_counted_not_failed() -> None:
    """Spark 4's Thrift server now and then answers a CloseSession with an error after the
    node's work is done (it ships without hive-llap-common): while dbt runs on it, that
    answer is counted and the node stands; any other error from a close still raises, and
    dbt-spark's own close is back afterwards. (The server's answer cannot be provoked on
    demand, so the connection here is PyHive's error on a handle that gives it.)"""
    pytest.importorskip("pyhive")
    pytest.importorskip("dbt.adapters.spark")
    from dbt.adapters.spark.connections import PyhiveConnectionWrapper
    from pyhive.exc import OperationalError

    from lakehouse.warehouse.spark_cluster import tolerating_session_close_failures

    class Answer:
        def __init__(self, text: str) -> None:
            self.text = text

        def __repr__(self) -> str:
            return self.text

    class Handle:
        def __init__(self, answer: str) -> None:
            self.answer = answer

        def close(self) -> None:
            raise OperationalError(Answer(self.answer))

    unclosed = (
        "TCloseSessionResp(status=TStatus(statusCode=3, errorMessage='java.lang."
        "NoClassDefFoundError: org/apache/hadoop/hive/llap/security/LlapSigner$Signable'))"
    )
    other = "TExecuteStatementResp(status=TStatus(statusCode=3, errorMessage='boom'))"
    original = PyhiveConnectionWrapper.close
    with tolerating_session_close_failures() as failed:
        PyhiveConnectionWrapper(Handle(unclosed)).close()
        assert len(failed) == 1 and "LlapSigner$Signable" in failed[0]
        with pytest.raises(OperationalError, match="boom"):
            PyhiveConnectionWrapper(Handle(other)).close()
        assert len(failed) == 1
    assert PyhiveConnectionWrapper.close is original
    with pytest.raises(OperationalError, match="NoClassDefFoundError"):
        PyhiveConnectionWrapper(Handle(unclosed)).close()
