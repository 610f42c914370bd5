"""The online feature store (issue 31): filled from a built and gated warehouse into the
embedded SQLite store and a real Redis server on 127.0.0.1, read by key through the Python
API, the CLI and the HTTP endpoint. Parity with the training set's SQL, night after night,
is in tests/test_nights.py; the gate-blocked night that leaves the store untouched in
tests/test_job.py."""

from __future__ import annotations

import json
import shutil
import socket
import sqlite3
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest

from lakehouse.cli import main
from lakehouse.features import (
    FeatureError,
    RedisStore,
    StaleStore,
    StoreError,
    UnknownKeys,
    fill_online_store,
    get_online_features,
    open_store,
    photo_request,
)
from lakehouse.features.server import FeatureServer
from lakehouse.quality import validate
from tests.conftest import NIGHT, BuiltWarehouse

VIEWS = {
    "owner": ("online_owner_features", "owner_user_id"),
    "photo": ("online_photo_features", "photo_id"),
}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Redis server on 127.0.0.1 for this module, stopped at its end."""
    server = shutil.which("redis-server")
    if server is None:
        pytest.skip("redis-server is not installed (Debian: apt-get install redis-server)")
    folder = tmp_path_factory.mktemp("redis")
    port = _free_port()
    log = open(folder / "redis.log", "w")  # noqa: SIM115 - open while the server runs
    process = subprocess.Popen(
        [server, "--bind", "127.0.0.1", "--port", str(port), "--save", "",
         "--appendonly", "no", "--dir", str(folder)],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"redis://127.0.0.1:{port}/0"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                RedisStore(url).close()
                break
            except StoreError:  # not up yet
                if time.monotonic() > deadline or process.poll() is not None:
                    raise AssertionError((folder / "redis.log").read_text()) from None
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=20)
        log.close()


@pytest.fixture(scope="module")
def gated(built_warehouse: BuiltWarehouse, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the built warehouse, gated (its quality folder next to it)."""
    work = tmp_path_factory.mktemp("features")
    warehouse = work / "warehouse.duckdb"
    shutil.copy(built_warehouse.warehouse, warehouse)
    report, _ = validate(
        warehouse,
        str(built_warehouse.lake),
        out=work / "quality",
        as_of=NIGHT,
        tables=["photo_popularity_training"],
    )
    assert report.passed
    return warehouse


@pytest.fixture(scope="module")
def stores(gated: Path, redis_url: str) -> dict[str, str]:
    """The gated warehouse's views filled into the embedded store and into Redis."""
    found = {"sqlite": str(gated.parent / "online" / "features.sqlite"), "redis": redis_url}
    for store in found.values():
        report = fill_online_store(gated, gated.parent / "quality", store=store)
        assert sorted(f.view for f in report.fills) == ["owner", "photo"]
    return found


def _table(warehouse: Path, model: str, key: str):
    with duckdb.connect(str(warehouse), read_only=True) as con:
        con.execute("set TimeZone = 'UTC'")  # as every connection of the project's sets it
        return con.sql(f"select * from main.{model} order by {key}").arrow().read_all()


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
@pytest.mark.parametrize("view", sorted(VIEWS))
def test_each_store_serves_the_warehouse_tables_value_by_value(
    stores: dict[str, str], gated: Path, kind: str, view: str
) -> None:
    """Every key of the view, read back from the store, equals the model's table in the
    warehouse: the same values and the same Arrow types (timestamps with their zone, the
    float32 embedding bit for bit)."""
    model, key = VIEWS[view]
    expected = _table(gated, model, key)
    keys = expected.column(key).to_pylist()
    assert len(keys) > 100
    served = get_online_features(view, keys, store=stores[kind], max_age=None)
    assert served.to_arrow().equals(expected)
    record = served.record
    with duckdb.connect(str(gated), read_only=True) as con:
        invocation = con.sql(
            "select invocation_id from main.lakehouse_dbt_runs order by build_seq desc limit 1"
        ).fetchone()[0]
    assert (record.model, record.key, record.rows, record.invocation_id) == (
        model, key, len(keys), invocation,
    )  # fmt: skip


def test_unknown_keys_and_a_stale_fill_are_refused_by_name(stores: dict[str, str]) -> None:
    store = stores["sqlite"]
    owners = get_online_features("owner", [1, 2], store=store, max_age=None)
    with pytest.raises(UnknownKeys, match=r"feature view 'owner' has no owner_user_id 99999 "):
        get_online_features("owner", [1, 99999], store=store, max_age=None)
    lenient = get_online_features(
        "owner", [1, 99999], store=store, max_age=None, allow_missing=True
    )
    assert lenient.rows[1] is None and lenient.to_dict()["owner_followers"][1] is None
    assert lenient.rows[0] == owners.rows[0]
    as_of = owners.record.as_of_time
    fresh = get_online_features("owner", [1], store=store, now=as_of + timedelta(hours=35))
    assert fresh.rows[0] == owners.rows[0]
    with pytest.raises(
        StaleStore, match=r"is stale: filled as of .*, 37\.0 h ago, more than the 36\.0 h"
    ):
        get_online_features("owner", [1], store=store, now=as_of + timedelta(hours=37))
    with pytest.raises(FeatureError, match="feature view 'likes' was never filled"):
        get_online_features("likes", [1], store=store, max_age=None)


def test_a_damaged_fill_record_is_refused_in_one_line(
    stores: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A store whose record of a view is not whole (cut short, or a schema that is not an
    Arrow schema): reads and the CLI say which view of which store, and what to run."""
    copy = tmp_path / "features.sqlite"
    shutil.copy(stores["sqlite"], copy)
    con = sqlite3.connect(copy)
    text = con.execute("select record from fills where view = 'owner'").fetchone()[0]
    damaged = {
        "cut": text[: len(text) // 2],
        "schema": json.dumps({**json.loads(text), "schema": "bm90IGFuIGFycm93IHNjaGVtYQ=="}),
    }
    for name, value in damaged.items():
        con.execute("update fills set record = ? where view = 'owner'", [value])
        con.commit()
        with pytest.raises(FeatureError, match=rf"fill record of owner in {copy} is damaged"):
            get_online_features("owner", [1], store=str(copy), max_age=None)
        assert main(["features", "get", "owner", "1", "--store", str(copy),
                     "--max-age-hours", "0"]) == 1, name  # fmt: skip
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and "`lakehouse materialize`" in err, err
    con.close()
    # the photo view's record is whole and still served
    assert get_online_features("photo", [], store=str(copy), max_age=None).rows == []


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
def test_a_fill_that_dies_half_way_leaves_the_previous_fill(
    stores: dict[str, str], gated: Path, kind: str
) -> None:
    store = open_store(stores[kind])
    try:
        before = store.record("owner")
        assert before is not None
        keys = list(range(1, 50))
        _, served = store.lookup("owner", keys)

        def dying() -> Iterator[tuple[int, str]]:
            for key in keys[:10]:
                yield key, json.dumps({"owner_user_id": key, "owner_followers": -1})
            raise OSError("the disk filled up half-way")

        with pytest.raises(OSError, match="half-way"):
            store.write(replace(before, fill_id=before.fill_id + 1, rows=10), dying())
        assert store.record("owner") == before
        assert store.lookup("owner", keys) == (before, served)
    finally:
        store.close()
    # the next fill goes through whole (Redis reuses the dead fill's id, cleaning it first)
    again = fill_online_store(gated, gated.parent / "quality", store=stores[kind])
    assert {f.fill_id for f in again.fills if f.view == "owner"} == {before.fill_id + 1}
    after = get_online_features("owner", keys, store=stores[kind], max_age=None, allow_missing=True)
    assert [r and r["owner_followers"] for r in after.rows] == [
        r and json.loads(r)["owner_followers"] for r in served
    ]
    if kind == "redis":
        import redis

        names = redis.Redis.from_url(stores[kind]).keys("lakehouse:online:owner:*")
        assert len(names) <= 2  # the latest fill and the one before it, never more


def test_a_fill_is_refused_unless_the_gate_passed_the_very_build(
    stores: dict[str, str], gated: Path, tmp_path: Path
) -> None:
    """A gate result for another build, a blocked gate or none at all: nothing is written."""
    store = stores["sqlite"]
    before = open_store(store).views()
    result = json.loads((gated.parent / "quality" / "result.json").read_text())
    quality = tmp_path / "quality"
    quality.mkdir()
    earlier = json.loads(json.dumps(result))
    for table in earlier["tables"]:
        if "dbt_invocation_id" in table["versions"]:
            table["versions"]["dbt_invocation_id"] = "an-earlier-build"
    (quality / "result.json").write_text(json.dumps(earlier))
    with pytest.raises(FeatureError, match=r"which the latest gate run \(\w+\) did not validate"):
        fill_online_store(gated, quality, store=store)
    blocked = json.loads(json.dumps(result))
    blocked["tables"][0]["results"][0].update(success=False, severity="critical")
    (quality / "result.json").write_text(json.dumps(blocked))
    with pytest.raises(FeatureError, match=r"the data-quality gate blocked the night \(run "):
        fill_online_store(gated, quality, store=store)
    with pytest.raises(FeatureError, match="no data-quality gate result in"):
        fill_online_store(gated, tmp_path / "nowhere", store=store)
    assert open_store(store).views() == before


def _call(url: str, body: Any = None) -> tuple[int, dict[str, Any]]:
    data = (
        None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    )
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model checkpoint as `lakehouse train --checkpoint` writes it (untrained weights)."""
    import torch

    from lakehouse.loader.training import COUNTS, PLAIN, _network

    path = tmp_path_factory.mktemp("model") / "popularity.pt"
    torch.manual_seed(0)
    torch.save({"model": _network(len(COUNTS) + len(PLAIN) + 64).state_dict()}, path)
    return path


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
def test_the_http_endpoint_serves_features_and_predictions(
    stores: dict[str, str], gated: Path, model: Path, kind: str
) -> None:
    from lakehouse.loader.training import load_popularity_model, predict_likes_7d

    server = FeatureServer(("127.0.0.1", 0), stores[kind], model=model, max_age=None)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = server.url
        status, body = _call(f"{url}/get-online-features", {"view": "owner", "keys": [3, 1]})
        expected = get_online_features("owner", [3, 1], store=stores[kind], max_age=None)
        assert status == 200
        assert body["features"]["owner_user_id"] == [3, 1]
        for name, values in expected.to_dict().items():
            shown = [v.isoformat() if hasattr(v, "isoformat") else v for v in values]
            assert body["features"][name] == shown, name
        assert body["fill"]["invocation_id"] == expected.record.invocation_id
        status, body = _call(f"{url}/get-online-features", {"view": "owner", "keys": [1, 99999]})
        assert (status, body["missing"]) == (404, [99999])
        assert "has no owner_user_id 99999" in body["error"]
        assert _call(f"{url}/get-online-features", {"view": "owner", "keys": "1"})[0] == 400
        assert _call(f"{url}/get-online-features", b"{not json")[0] == 400
        photo_ids = _table(gated, *VIEWS["photo"]).column("photo_id").to_pylist()[:4]
        assert len(photo_ids) == 4
        status, body = _call(f"{url}/predict", {"photo_ids": photo_ids})
        want = predict_likes_7d(
            load_popularity_model(model), photo_request(photo_ids, store=stores[kind], max_age=None)
        )
        assert status == 200 and body["likes_7d"] == pytest.approx(want)
        status, body = _call(f"{url}/health")
        assert status == 200 and sorted(body["fills"]) == ["owner", "photo"]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
    stale = FeatureServer(("127.0.0.1", 0), stores[kind], max_age=timedelta(seconds=0))
    thread = threading.Thread(target=stale.serve_forever, daemon=True)
    thread.start()
    try:
        status, body = _call(f"{stale.url}/get-online-features", {"view": "owner", "keys": [1]})
        assert status == 503 and "is stale" in body["error"]
        assert _call(f"{stale.url}/health")[0] == 503
        status, body = _call(f"{stale.url}/predict", {"photo_ids": [1]})
        assert status == 404 and "--model" in body["error"]
    finally:
        stale.shutdown()
        stale.server_close()
        thread.join(timeout=10)


def test_the_cli_reads_the_store(
    stores: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    store = stores["sqlite"]
    assert main(["features", "get", "owner", "1", "2", "--store", store, "--json",
                 "--max-age-hours", "0"]) == 0  # fmt: skip
    printed = json.loads(capsys.readouterr().out)
    expected = get_online_features("owner", [1, 2], store=store, max_age=None).to_dict()
    assert printed["owner_followers"] == expected["owner_followers"]
    assert printed["owner_user_id"] == [1, 2]
    assert main(["features", "get", "owner", "99999", "--store", store,
                 "--max-age-hours", "0"]) == 1  # fmt: skip
    assert "has no owner_user_id 99999" in " ".join(capsys.readouterr().err.split())
    assert main(["features", "list", "--store", store]) == 0
    listed = capsys.readouterr().out
    assert "online_owner_features" in listed and "online_photo_features" in listed


def test_a_replay_of_an_earlier_night_keeps_the_later_fill(gated: Path, tmp_path: Path) -> None:
    """Serving never goes back in time: a build evaluated at an earlier as_of than the
    store's fill (a replayed night) leaves that view's fill as it is, and says so."""
    store = str(tmp_path / "features.sqlite")
    first = fill_online_store(gated, gated.parent / "quality", store=store)
    owner = next(f for f in first.fills if f.view == "owner")
    opened = open_store(store)
    try:
        keys = [1, 2, 3]
        _, texts = opened.lookup("owner", keys)
        later = replace(
            owner,
            fill_id=owner.fill_id + 1,
            as_of=(owner.as_of_time + timedelta(days=1)).isoformat(),
            rows=len(keys),
        )
        opened.write(later, [(k, t) for k, t in zip(keys, texts, strict=True) if t])
        again = fill_online_store(gated, gated.parent / "quality", store=store)
        assert again.kept == [later]
        assert [f.view for f in again.fills] == ["photo"]
        assert opened.record("owner") == later
    finally:
        opened.close()
