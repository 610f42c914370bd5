"""Night after night: an incrementally built warehouse equals a full rebuild of the same lake.

A small world's history, then nights with late events, a retried upload and corrected
photos, each ingested and built incrementally (one night's build killed half way and run
again); then the same lake built from scratch with ``--full-refresh``. Every model, marts
first, must hold the same rows: keys, labels, features, split, weak labels.
"""

from __future__ import annotations

import gzip
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest

from lakehouse.features import fill_online_store, get_online_features
from lakehouse.ingest import ingest
from lakehouse.quality import validate
from lakehouse.storage import open_delta, read_delta
from lakehouse.synth import GenerateConfig, generate
from lakehouse.warehouse import project_dir, run_dbt
from tests.conftest import NIGHT, small_config

NIGHTS = 3
MARTS = (
    "photo_popularity_training",
    "dim_photos",
    "dim_users",
    "fct_events",
    "caption_labeling_rule_stats",
)
SERVING = ("online_owner_features", "online_photo_features")
INTERMEDIATE_AND_STAGING = (
    "int_photo_engagement_windows",
    "int_owner_features_as_of_posting",
    "int_user_activity_daily",
    "int_owner_engagement_daily",
    "int_caption_rule_votes",
    "int_photos_weak_labeled",
    "stg_app__events",
    "stg_app__photos",
    "stg_app__users",
    "stg_ml__photo_embeddings",
)


# on this night the app's event logs gain a field: bronze gains the column (schema
# evolution); staging, the marts and the gate go on as before
NEW_FIELD_NIGHT, NEW_FIELD = 3, "app_version"


def _add_field(path: Path, name: str, value: str) -> None:
    """Every event of the file gains the field; its dirty lines (broken JSON, bytes that are
    not UTF-8) stay as they are."""
    lines = []
    for line in gzip.decompress(path.read_bytes()).split(b"\n"):
        try:
            event = json.loads(line)
        except ValueError:  # broken, blank or not UTF-8: dirt the nights keep
            event = None
        lines.append(
            json.dumps({**event, name: value}).encode() if isinstance(event, dict) else line
        )
    path.write_bytes(gzip.compress(b"\n".join(lines), mtime=0))


def _config(out: Path, nights: int) -> GenerateConfig:
    return GenerateConfig(**{**vars(small_config(out, dirty_rate=0.01, seed=23)), "nights": nights})


def _build(
    lake: Path, warehouse: Path, *, full_refresh: bool = False, as_of: datetime | None = None
) -> None:
    result = run_dbt(
        str(lake),
        warehouse,
        project=project_dir(),
        quiet=True,
        full_refresh=full_refresh,
        as_of=as_of,
    )
    assert result.success, (result.error, result.failures)


def _kill_build_half_way(lake: Path, warehouse: Path) -> None:
    """Start a build in another process and kill it once some models have committed."""
    code = (
        "from lakehouse.warehouse import project_dir, run_dbt\n"
        f"run_dbt({str(lake)!r}, {str(warehouse)!r}, project=project_dir(), quiet=True)\n"
    )
    process = subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if _models_built_since_start(warehouse) >= 4:
            break
        time.sleep(0.05)
    assert process.poll() is None, "the build ended before it could be killed"
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def _models_built_since_start(warehouse: Path) -> int:
    """Models whose newest _build_seq is the latest invocation's: this build's."""
    try:
        with duckdb.connect(str(warehouse), read_only=True) as con:
            newest = con.sql(
                "select count(*) from (select max(_build_seq) as b from main.stg_app__events "
                "union all select max(_build_seq) from main.stg_app__photos "
                "union all select max(_build_seq) from main.stg_app__users "
                "union all select max(_build_seq) from main.stg_ml__photo_embeddings "
                "union all select max(_build_seq) from main.int_user_activity_daily) "
                "where b = (select max(build_seq) from main.lakehouse_dbt_runs)"
            ).fetchone()
            return int(newest[0]) if newest else 0
    except duckdb.Error:  # the build holds the file: try again
        return 0


def _differences(a: Path, b: Path, models: tuple[str, ...]) -> dict[str, tuple[int, int, int]]:
    """Per model whose rows differ: (rows in a, rows in b, rows in only one of them)."""
    found = {}
    with duckdb.connect() as con:
        con.execute(f"attach '{a}' as a (read_only)")
        con.execute(f"attach '{b}' as b (read_only)")
        for model in models:
            columns = [
                c
                for (c,) in con.execute(
                    "select column_name from duckdb_columns() where database_name = 'a' "
                    "and table_name = ? order by column_index",
                    [model],
                ).fetchall()
                if c != "_build_seq"  # which invocation wrote the row
            ]
            select = ", ".join(f'"{c}"' for c in columns)
            only_one = con.sql(
                f"select count(*) from ((select {select} from a.main.{model} except all "
                f"select {select} from b.main.{model}) union all (select {select} from "
                f"b.main.{model} except all select {select} from a.main.{model}))"
            ).fetchone()[0]
            rows_a = con.sql(f"select count(*) from a.main.{model}").fetchone()[0]
            rows_b = con.sql(f"select count(*) from b.main.{model}").fetchone()[0]
            if only_one or rows_a != rows_b:
                found[model] = (rows_a, rows_b, only_one)
    return found


GATED = ["fct_events", "photo_popularity_training", "bronze_events"]

# serving parity (issue 31): each night, these owners post a photo exactly at the night's
# as_of T. The training set's SQL computes those photos' owner features strictly before T;
# serving holds every owner's features as of T: the two must be equal, value by value
PROBE_OWNERS = range(1, 1_001, 37)
PROBE_PHOTOS = 9_000_000  # + night * 1000 + i: ids no generated photo has
OWNER_FEATURES = (
    "owner_account_age_days",
    "owner_is_verified",
    "owner_country_code",
    "owner_prior_photos",
    "owner_likes_received",
    "owner_followers",
    "owner_events_30d",
    "features_as_of",
)


def _post_probe_photos(landing: Path, night: int, at: datetime) -> None:
    lines = [
        json.dumps(
            {
                "photo_id": PROBE_PHOTOS + night * 1_000 + i,
                "owner_id": owner,
                "posted_at": at.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
                "caption": "posted at the night's as_of #probe",
                "width": 1080,
                "height": 1080,
                "camera": None,
                "lang": "en",
            }
        )
        for i, owner in enumerate(PROBE_OWNERS)
    ]
    (landing / "photos" / f"photos-probes-night-{night}.jsonl").write_text("\n".join(lines) + "\n")


def _serving_parity(warehouse: Path, store: Path, night: int, at: datetime) -> dict[str, Any]:
    """Fill the online store from the night's build (after its gate) and compare it, owner by
    owner, with what the training set's SQL computed for the probe photos posted at ``at``."""
    filled = fill_online_store(warehouse, warehouse.parent / "quality", store=str(store))
    first = PROBE_PHOTOS + night * 1_000
    with duckdb.connect(str(warehouse), read_only=True) as con:
        rows = con.execute(
            f"select owner_user_id, {', '.join(OWNER_FEATURES)} "
            "from main.int_owner_features_as_of_posting where photo_id between ? and ? "
            "order by owner_user_id",
            [first, first + 999],
        ).fetchall()
        invocation = con.sql(
            "select invocation_id from main.lakehouse_dbt_runs order by build_seq desc limit 1"
        ).fetchone()[0]
    trained = {row[0]: dict(zip(OWNER_FEATURES, row[1:], strict=True)) for row in rows}
    served = get_online_features("owner", list(trained), store=str(store), now=at)
    mismatches = [
        (owner, name, trained[owner][name], row[name])
        for owner, row in zip(served.keys, served.rows, strict=True)
        for name in OWNER_FEATURES
        if row is None or row[name] != trained[owner][name]
    ]
    return {
        "owners": len(trained),
        "mismatches": mismatches,
        "as_of": served.record.as_of_time,
        "invocation": (served.record.invocation_id, invocation),
        "views": sorted(f.view for f in filled.fills),
        "nonzero": sum(1 for r in trained.values() if r["owner_likes_received"]),
    }


def _gate(lake: Path, warehouse: Path, quality: Path, night: int) -> dict[str, int | None]:
    """The gate's suites for GATED, as the nightly job runs them; rows each read row by row."""
    report, _ = validate(
        warehouse, str(lake), out=quality, as_of=NIGHT + timedelta(days=night), tables=GATED
    )
    assert report.passed, [(r.table, r.name, r.observed_value) for r in report.blocking_failures]
    served = {t.table: len((t.running_totals or {}).get("served", [])) for t in report.tables}
    return {
        **{t.table: t.new_rows for t in report.tables},
        "totals served": served["bronze_events"],
    }


@pytest.fixture(scope="module")
def nightly(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, Path, list[dict[str, Any]], list[dict[str, Any]]]:
    """History + NIGHTS nights, built and gated night by night; returns lake, warehouse, and
    what each night's incremental build changed in the marts and the gate read row by row."""
    root = tmp_path_factory.mktemp("nights")
    landing, lake, warehouse = root / "landing", root / "lake", root / "warehouse.duckdb"
    store = root / "online" / "features.sqlite"
    generate(_config(landing, 0))
    _post_probe_photos(landing, 0, NIGHT)
    assert ingest(str(landing), str(lake), now=NIGHT).ok
    _build(lake, warehouse, as_of=NIGHT)
    quality = root / "quality"
    first = _gate(lake, warehouse, quality, 0)
    assert first.pop("totals served") == 0 and set(first.values()) == {None}  # every row
    parity = [_serving_parity(warehouse, store, 0, NIGHT)]
    changed = []
    for night in range(1, NIGHTS + 1):
        at = NIGHT + timedelta(days=night)
        before_night = set(landing.rglob("*.jsonl.gz"))
        generate(_config(landing, night))
        _post_probe_photos(landing, night, at)
        if night == NEW_FIELD_NIGHT:  # the app starts logging a field no contract declares
            for path in sorted(set((landing / "events").glob("*.jsonl.gz")) - before_night):
                _add_field(path, NEW_FIELD, "7.1")
        report = ingest(str(landing), str(lake), now=at)
        assert report.ok, [f.error for f in report.failed]
        with duckdb.connect(str(warehouse), read_only=True) as con:
            before = con.sql("select max(build_seq) from main.lakehouse_dbt_runs").fetchone()[0]
        if night == 2:
            _kill_build_half_way(lake, warehouse)
        _build(lake, warehouse, as_of=at)
        with duckdb.connect(str(warehouse), read_only=True) as con:
            changed.append(
                {
                    model: con.execute(
                        f"select count(*) from main.{model} where _build_seq > ?", [before]
                    ).fetchone()[0]
                    for model in ("photo_popularity_training", "dim_photos", "fct_events")
                }
            )
        changed[-1]["gate"] = _gate(lake, warehouse, quality, night)
        changed[-1]["ingested"] = sum(f.rows_landed for f in report.files if f.table == "events")
        parity.append(_serving_parity(warehouse, store, night, at))
    return lake, warehouse, changed, parity


@pytest.fixture(scope="module")
def rebuilt(nightly, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A --full-refresh of the nights' lake, at the last night's as_of."""
    lake, *_ = nightly
    warehouse = tmp_path_factory.mktemp("rebuilt") / "rebuilt.duckdb"
    _build(lake, warehouse, full_refresh=True, as_of=NIGHT + timedelta(days=NIGHTS))
    return warehouse


def test_nights_built_incrementally_equal_a_full_refresh(nightly, rebuilt: Path) -> None:
    _, warehouse, *_ = nightly
    assert _differences(warehouse, rebuilt, MARTS + INTERMEDIATE_AND_STAGING + SERVING) == {}


def test_staging_rebuilt_alone_then_a_build_equals_a_full_refresh(
    nightly, rebuilt: Path, tmp_path: Path
) -> None:
    """An analyst rebuilds the events' staging alone (`dbt build --full-refresh --select
    stg_app__events`): every event looks loaded since each model downstream last ran. The
    next build counts each event once: fct_events, which appends what is new, appends only
    the event ids it does not hold (without that its unique test fails the build), and the
    engagement windows, which add a night's events to the counts they hold, count every
    photo again instead."""
    lake, warehouse, *_ = nightly
    copy = tmp_path / "warehouse.duckdb"
    shutil.copyfile(warehouse, copy)
    staging = run_dbt(
        str(lake), copy, project=project_dir(), quiet=True,
        select=["stg_app__events"], full_refresh=True,
    )  # fmt: skip
    assert staging.success, (staging.error, staging.failures)
    _build(lake, copy, as_of=NIGHT + timedelta(days=NIGHTS))
    assert _differences(copy, rebuilt, MARTS + INTERMEDIATE_AND_STAGING + SERVING) == {}


def test_served_features_equal_the_training_sets_night_after_night(nightly) -> None:
    """Every night (the first, full build; late events, edits, a killed build after it), the
    online store holds, for each probe owner, exactly the features the training set's SQL
    computed for a photo that owner posted at the night's as_of: 0 mismatches."""
    *_, parity = nightly
    assert len(parity) == NIGHTS + 1
    for night, found in enumerate(parity):
        assert found["owners"] == len(PROBE_OWNERS), night
        assert found["mismatches"] == [], (night, found["mismatches"][:5])
        assert found["as_of"] == NIGHT + timedelta(days=night)
        served_by, built_by = found["invocation"]
        assert served_by == built_by  # the night's own build, the one the gate passed
        assert found["views"] == ["owner", "photo"]
        assert found["nonzero"] > len(PROBE_OWNERS) / 3  # owners with likes: not all zeros


def test_a_field_the_logs_gain_on_night_3_reaches_bronze_and_nothing_downstream(
    nightly,
) -> None:
    """Bronze gains the column, holding the value for exactly night 3's events; staging and
    the marts keep their columns until an analyst adds it (and the nights still equal a full
    refresh, above; the gate passed every night, in the fixture)."""
    lake, warehouse, *_ = nightly
    events = read_delta(str(lake / "bronze" / "events"), columns=[NEW_FIELD, "_source_file"])
    valued = [
        (value, source)
        for value, source in zip(
            events.column(NEW_FIELD).to_pylist(),
            events.column("_source_file").to_pylist(),
            strict=True,
        )
    ]
    assert {v for v, _ in valued} == {None, "7.1"}
    gained = {  # the landing files the app wrote with the field
        p.name
        for p in (lake.parent / "landing" / "events").glob("*.jsonl.gz")
        if NEW_FIELD.encode() in gzip.decompress(p.read_bytes())
    }
    assert "events-2026-11-03.jsonl.gz" in gained  # night 3's own dump
    assert {s.rsplit("/", 1)[-1] for v, s in valued if v} == gained
    log = read_delta(str(lake / "bronze" / "_ingest_log"), columns=["new_columns"])
    assert [c for c in log.column("new_columns").to_pylist() if c] == [NEW_FIELD]
    with duckdb.connect(str(warehouse), read_only=True) as con:
        for model in ("stg_app__events", "fct_events"):
            columns = [r[0] for r in con.sql(f"describe main.{model}").fetchall()]
            assert NEW_FIELD not in columns, model


def test_a_night_touches_only_what_it_brought(nightly) -> None:
    _, warehouse, changed, _ = nightly
    with duckdb.connect(str(warehouse), read_only=True) as con:
        totals = {
            m: con.sql(f"select count(*) from main.{m}").fetchone()[0]
            for m in ("photo_popularity_training", "dim_photos", "fct_events")
        }
        late = con.sql(
            "select count(*) from main.fct_events where cast(occurred_at as date) "
            "< cast(ingested_at as date) - 1 and ingested_at > (select min(ingested_at) "
            "from main.fct_events)"
        ).fetchone()[0]
        edited = con.sql(
            "select count(*) from main.stg_app__photos where updated_at is not null"
        ).fetchone()[0]
    assert late > 0 and edited > 0  # the nights brought late events and corrections
    for night in changed[1:]:  # the first nights after history: a fraction of each table
        for model, rows in night.items():
            if model in totals:
                assert 0 < rows < totals[model] * 0.2, (model, rows, totals[model])


def test_the_gate_reads_each_night_only_its_new_rows_row_by_row(nightly) -> None:
    """After a passing gate, the next night's row-by-row checks read exactly the rows that
    night's build wrote (and ingest landed); bronze_events' table-level checks are its running
    totals plus the rows ingest appended (row count, freshness, session share, like share)."""
    _, _, changed, _ = nightly
    for night in changed:
        gate = night["gate"]
        assert gate["fct_events"] == night["fct_events"] > 0
        assert gate["photo_popularity_training"] == night["photo_popularity_training"] > 0
        assert gate["bronze_events"] == night["ingested"] > 0
        assert gate["totals served"] == 4


def test_a_photo_edit_reaches_the_marts_and_a_resent_file_does_not_undo_it(nightly) -> None:
    _, warehouse, *_ = nightly
    with duckdb.connect(str(warehouse), read_only=True) as con:
        edited = con.sql(
            "select count(*) from main.dim_photos join main.stg_app__photos using (photo_id) "
            "where stg_app__photos.updated_at is not null and dim_photos.caption_length = "
            "length(stg_app__photos.caption) and stg_app__photos.caption like '%(edited)%'"
        ).fetchone()[0]
        twice = con.sql(
            "select count(*) - count(distinct event_id) from main.fct_events"
        ).fetchone()[0]
    assert edited > 0
    assert twice == 0


def test_an_export_of_an_unchanged_mart_publishes_nothing(nightly, tmp_path: Path) -> None:
    from lakehouse.export import export_model

    _, warehouse, *_ = nightly
    out = tmp_path / "shards"
    first, manifest = export_model(warehouse, "photo_popularity_training", out, force=True)
    again, same = export_model(
        warehouse, "photo_popularity_training", out, force=True, if_changed=True
    )
    assert (again, same.version) == (first, manifest.version) == (first, 1)
    assert sorted(p.name for p in (out / "photo_popularity_training").iterdir()) == [
        "latest",
        "v1",
    ]
    # a changed row is a new version; without if_changed, every export is one
    with duckdb.connect(str(warehouse)) as con:
        con.execute(
            "update main.photo_popularity_training set likes_7d = likes_7d + 1 "
            "where photo_id = (select min(photo_id) from main.photo_popularity_training)"
        )
    changed, newer = export_model(
        warehouse, "photo_popularity_training", out, force=True, if_changed=True
    )
    assert newer.version == 2 and newer.content_fingerprint != manifest.content_fingerprint
    _, forced = export_model(warehouse, "photo_popularity_training", out, force=True)
    assert forced.version == 3 and changed.name == "v2"


# ------------------------------------------------- the night's data tests (issue 30, part 2)


def _tests_of(warehouse: Path, invocation: int) -> dict[str, tuple[str, str, int | None]]:
    """test name -> (model, status, tested_since) as the ``invocation``-th build recorded."""
    with duckdb.connect(str(warehouse), read_only=True) as con:
        rows = con.execute(
            "select t.test_name, t.model, t.status, t.tested_since "
            "from main.lakehouse_test_results as t join main.lakehouse_dbt_runs as r "
            "using (invocation_id) where r.build_seq = ?",
            [invocation],
        ).fetchall()
    return {name: (model, status, since) for name, model, status, since in rows}


def _builds(warehouse: Path) -> list[int]:
    """The build numbers of the invocations that recorded test results, in order."""
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return [
            seq
            for (seq,) in con.sql(
                "select distinct r.build_seq from main.lakehouse_test_results as t "
                "join main.lakehouse_dbt_runs as r using (invocation_id) order by 1"
            ).fetchall()
        ]


def test_a_nights_data_tests_read_what_they_have_not_passed_yet(nightly) -> None:
    """The first build reads every table whole; each night after it, a test of an incremental
    model reads the rows written since its last pass (the killed night's rows included: that
    build recorded no pass), a source's test the batches committed since the Delta version it
    passed on; the exported mart's tests and the row counts always read whole tables."""
    _, warehouse, *_ = nightly
    builds = _builds(warehouse)
    assert len(builds) == NIGHTS + 1  # the killed build recorded nothing
    first = _tests_of(warehouse, builds[0])
    assert first and all(since is None for _, _, since in first.values())
    with duckdb.connect(str(warehouse), read_only=True) as con:
        reads = dict(
            con.execute(
                "select r.build_seq, b.delta_version from main.lakehouse_bronze_reads as b "
                "join main.lakehouse_dbt_runs as r using (invocation_id) "
                "where b.table_name = 'events'"
            ).fetchall()
        )
    for before, night in itertools.pairwise(builds):
        tests = _tests_of(warehouse, night)
        assert all(status == "pass" for _, status, _ in tests.values())
        scoped = {name for name, (_, _, since) in tests.items() if since is not None}
        for name in (
            "unique_fct_events_event_id",  # a new key probed against the whole table
            "unique_stg_app__events_event_id",
            "not_null_stg_app__events_event_id",
            "unique_combination_of_columns_int_user_activity_daily_user_id__activity_date",
            "relationships_fct_events_photo_id__photo_id__ref_dim_photos_",
        ):
            assert tests[name][2] == before, (night, name)
        assert tests["source_not_null_app_events_event_id"][2] == reads[before]
        whole = {name for name, (model, _, _) in tests.items() if name not in scoped}
        assert {n for n, (m, _, _) in tests.items() if m == "photo_popularity_training"} <= whole
        assert {n for n in tests if n.startswith("row_count_relation")} <= whole
        assert len(scoped) > len(tests) / 2, sorted(whole)


def _dbt(command: str, lake: Path, warehouse: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``dbt <command>`` on ``warehouse`` as an analyst runs it (its own target folder)."""
    dbt = str(Path(sys.executable).parent / "dbt")
    env = {
        **os.environ,
        "LAKEHOUSE_LAKE": str(lake),
        "LAKEHOUSE_DUCKDB": str(warehouse),
        "LAKEHOUSE_PII_SALT": "a key for this test",
    }
    target = ["--target-path", str(warehouse.parent / "target")]
    return subprocess.run(
        [dbt, command, *target, *args],
        cwd=project_dir(),
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def _dbt_test(
    lake: Path, warehouse: Path, *args: str, select: str = "fct_events stg_app__events"
) -> subprocess.CompletedProcess[str]:
    """``dbt test`` of some models as an analyst runs it."""
    return _dbt("test", lake, warehouse, "--select", select, *args)


def test_a_repeated_key_fails_the_nights_test_and_an_edit_in_place_the_weekly_one(
    nightly, tmp_path: Path
) -> None:
    """A row written after the last pass whose event id repeats one from the first night is
    found by the night's `unique` test (its key probed against the whole table). A row edited
    in place keeps its build number, so only a whole-table run finds it: the schedule's
    (`whole_table_tests_every` builds), forced here with the var at 0."""
    lake, warehouse, *_ = nightly
    copy = tmp_path / "warehouse.duckdb"
    shutil.copy(warehouse, copy)
    with duckdb.connect(str(copy)) as con:
        con.execute(
            "insert into main.fct_events select * replace ((select max(build_seq) + 1 from "
            "main.lakehouse_dbt_runs) as _build_seq) from main.fct_events "
            "where _build_seq = (select min(_build_seq) from main.fct_events) limit 1"
        )
        con.execute(
            "update main.stg_app__events set dwell_ms = -5 where event_id = (select min(event_id) "
            "from main.stg_app__events where _build_seq = (select min(_build_seq) "
            "from main.stg_app__events))"
        )
    night = _dbt_test(lake, copy)
    assert night.returncode == 1, night.stdout[-3000:]
    assert "Failure in test unique_fct_events_event_id" in night.stdout
    assert "Failure in test accepted_range_stg_app__events_dwell_ms" not in night.stdout
    tests = _tests_of(copy, _builds(copy)[-1])
    assert tests["unique_fct_events_event_id"][1:] == ("fail", _builds(copy)[-2])
    whole = _dbt_test(lake, copy, "--vars", "{whole_table_tests_every: 0}")
    assert whole.returncode == 1
    assert "Failure in test accepted_range_stg_app__events_dwell_ms__0" in whole.stdout
    assert "Failure in test unique_fct_events_event_id" in whole.stdout
    tests = _tests_of(copy, _builds(copy)[-1])
    assert all(since is None for _, _, since in tests.values())


def _compiled(warehouse: Path, test: str) -> str:
    """The SQL the last `_dbt_test` on ``warehouse`` ran for ``test``."""
    results = json.loads((warehouse.parent / "target" / "run_results.json").read_text())
    return next(
        r["compiled_code"] for r in results["results"] if r["unique_id"].split(".")[2] == test
    )


def test_the_unique_probe_reads_key_numbers_and_compares_the_ids_they_match(
    nightly, tmp_path: Path
) -> None:
    """The night's `unique` test of event ids reads their numbers (`_key_hash`,
    macros/keys.sql) and then the ids of the rows whose numbers repeat. A new event whose
    number an old event shares, with another id (two ids whose md5 prefixes collide, made
    here by hand), is no repeat; a new row repeating an old id is one."""
    lake, warehouse, *_ = nightly
    copy = tmp_path / "warehouse.duckdb"
    shutil.copy(warehouse, copy)
    new_row = (
        "insert into main.fct_events select * replace ({id} as event_id, (select max(build_seq)"
        " + 1 from main.lakehouse_dbt_runs) as _build_seq) from main.fct_events "
        "where _build_seq = (select min(_build_seq) from main.fct_events) order by event_id limit 1"
    )
    with duckdb.connect(str(copy)) as con:
        con.execute(new_row.format(id="'forged-' || event_id"))
    test = "unique_fct_events_event_id"
    collided = _dbt_test(lake, copy, select=test)
    assert collided.returncode == 0, collided.stdout[-3000:]
    assert "_key_hash" in _compiled(copy, test)
    assert _tests_of(copy, _builds(copy)[-1])[test][1:] == ("pass", _builds(copy)[-2])
    with duckdb.connect(str(copy)) as con:
        con.execute(new_row.format(id="event_id"))
    repeated = _dbt_test(lake, copy, select=test)
    assert repeated.returncode == 1, repeated.stdout[-3000:]
    assert "Got 1 result, configured to fail if != 0" in repeated.stdout


def test_a_warehouse_from_before_the_key_numbers_gets_them_without_a_full_refresh(
    nightly, tmp_path: Path
) -> None:
    """A warehouse built before its models held `_key_hash`: the next build refuses the
    changed schema (on_schema_change fail); `dbt run-operation add_key_hashes` adds the
    column filled from the ids, the same numbers a build writes, and the build goes on."""
    lake, warehouse, *_ = nightly
    copy = tmp_path / "warehouse.duckdb"
    shutil.copy(warehouse, copy)
    numbers = "select event_id, _key_hash from main.{} order by event_id"
    with duckdb.connect(str(copy)) as con:
        written = {
            m: con.sql(numbers.format(m)).fetchall() for m in ("fct_events", "stg_app__events")
        }
        for model in written:
            con.execute(f"alter table main.{model} drop column _key_hash")
    select = ["stg_app__events", "fct_events"]
    refused = run_dbt(str(lake), copy, project=project_dir(), quiet=True, select=select)
    assert not refused.success and "_key_hash" in str(refused.failures), refused.failures
    added = _dbt("run-operation", lake, copy, "add_key_hashes")
    assert added.returncode == 0, added.stdout[-3000:]
    assert added.stdout.count("_key_hash added") == 2
    with duckdb.connect(str(copy), read_only=True) as con:
        assert {m: con.sql(numbers.format(m)).fetchall() for m in written} == written
    built = run_dbt(str(lake), copy, project=project_dir(), quiet=True, select=select)
    assert built.success, (built.error, built.failures)


def test_a_source_whose_delta_history_is_not_appends_is_tested_whole(
    nightly, tmp_path: Path
) -> None:
    """A source's night reads the batches its table's Delta commits added since the version
    the test passed on; a commit that is not an ingest append (here a Delta delete, as an
    operator removes a bad row) makes its tests read the whole table."""
    lake, warehouse, *_ = nightly
    lake_copy, copy = tmp_path / "lake", tmp_path / "warehouse.duckdb"
    shutil.copytree(lake, lake_copy)
    shutil.copy(warehouse, copy)
    select = "source:app.events"
    appended = _dbt_test(lake_copy, copy, select=select)  # nothing new since the last pass
    assert appended.returncode == 0, appended.stdout[-3000:]
    tests = _tests_of(copy, _builds(copy)[-1])
    assert tests
    assert all(m == "source:events" and since is not None for m, _, since in tests.values())
    open_delta(str(lake_copy / "bronze" / "events")).delete("_source_line = 1")
    deleted = _dbt_test(lake_copy, copy, select=select)
    assert deleted.returncode == 0, deleted.stdout[-3000:]
    tests = _tests_of(copy, _builds(copy)[-1])
    assert tests and all(
        status == "pass" and since is None for _, status, since in tests.values()
    ), tests
