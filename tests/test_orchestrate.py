"""The nightly job as Dagster assets (lakehouse.orchestrate), materialised in process on small
generated data: the asset graph is dbt's lineage, a night records its lineage as metadata, the
next night writes only what changed, a failed blocking check stops the export, transient
storage errors are retried and nothing else is; the schedule and the landing sensor send the
run config; ``dagster dev`` serves the code location and its UI renders the asset graph."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

dagster = pytest.importorskip("dagster", reason="the [orchestrate] extra is not installed")

from dagster import (  # noqa: E402
    AssetCheckSeverity,
    AssetKey,
    DagsterInstance,
    RunRequest,
    SkipReason,
    build_schedule_context,
    build_sensor_context,
    validate_run_config,
)

from lakehouse.orchestrate import LakehouseResource, build_definitions  # noqa: E402
from lakehouse.orchestrate.assets import ONLINE_STORE, check_name, shards_key  # noqa: E402
from lakehouse.orchestrate.automation import landing_sensor, nightly_schedule  # noqa: E402
from lakehouse.quality import outline_suites  # noqa: E402
from lakehouse.shardformat import Manifest  # noqa: E402
from lakehouse.storage import open_delta  # noqa: E402
from lakehouse.synth import GenerateConfig, generate  # noqa: E402
from lakehouse.warehouse import project_dir  # noqa: E402
from tests.browser import CHROMIUM, chromium  # noqa: E402
from tests.conftest import NIGHT, small_config  # noqa: E402
from tests.helpers import project_models  # noqa: E402
from tests.object_store import client_for, s3_server  # noqa: E402

pytestmark = pytest.mark.slow
PROJECT = project_dir(Path(__file__).parent)
MODEL = "photo_popularity_training"
FRESHNESS = AssetKey(["fct_events"]), check_name("expect_column_max_to_be_recent(occurred_at)")


@pytest.fixture(scope="module")
def defs():
    return build_definitions()


def _config(out: Path, nights: int) -> GenerateConfig:
    return replace(small_config(out, dirty_rate=0.01, seed=29), nights=nights)


def _run(defs, instance, root: Path, as_of, **config: Any):
    resource = LakehouseResource(root=str(root), as_of=as_of.isoformat(), **config)
    return defs.resolve_job_def("nightly").execute_in_process(
        run_config=resource.run_config(), instance=instance, raise_on_error=False
    )


def _materialized(result) -> dict[AssetKey, dict[str, Any]]:
    return {
        event.asset_key: {k: v.value for k, v in event.materialization.metadata.items()}
        for event in result.get_asset_materialization_events()
    }


def _checks(result) -> dict[tuple[AssetKey, str], Any]:
    return {(c.asset_key, c.check_name): c for c in result.get_asset_check_evaluations()}


def _steps(result, kind: str) -> set[str]:
    return {e.step_key for e in result.all_events if e.event_type_value == kind}


@pytest.fixture(scope="module")
def nights(defs, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The job four times on one deployment: the history's first night, the next night's
    dump, the same night again (nothing new), then a night a month late (stale data)."""
    root = tmp_path_factory.mktemp("orchestrated")
    instance = DagsterInstance.ephemeral()
    generate(_config(root / "landing", 0))
    runs = {"first": _run(defs, instance, root, NIGHT)}
    generate(_config(root / "landing", 1))
    runs["second"] = _run(defs, instance, root, NIGHT + timedelta(days=1))
    runs["again"] = _run(defs, instance, root, NIGHT + timedelta(days=1))
    runs["late"] = _run(defs, instance, root, NIGHT + timedelta(days=31))
    return {"root": root, "instance": instance, **runs}


def test_the_asset_graph_is_dbt_lineage(defs) -> None:
    graph = defs.resolve_asset_graph()
    manifest = json.loads((PROJECT / "target" / "dagster" / "manifest.json").read_text())
    nodes = {**manifest["nodes"], **manifest["sources"]}

    def key(unique_id: str) -> AssetKey:
        node = nodes[unique_id]
        if node["resource_type"] == "source":
            return AssetKey(["bronze", node["identifier"]])
        return AssetKey([node["name"]])

    models = [n for n in manifest["nodes"].values() if n["resource_type"] == "model"]
    assert sorted(m["name"] for m in models) == project_models()
    for model in models:
        parents = {key(u) for u in model["depends_on"]["nodes"]}
        assert graph.get(key(model["unique_id"])).parent_keys == parents, model["name"]
        assert graph.get(key(model["unique_id"])).group_name == model["fqn"][1]
    sources = {key(u) for u in manifest["sources"]}
    tables = ("events", "photos", "users", "photo_embeddings", "_ingest_log")
    assert sources == {AssetKey(["bronze", t]) for t in tables}
    for source in sources:  # the bronze tables are ingest's, materialised by one step
        assert graph.get(source).is_materializable and not graph.get(source).parent_keys
    assert graph.get(shards_key()).parent_keys == {AssetKey([MODEL])}
    # the online store is filled from the feature views, after the night's export
    assert graph.get(ONLINE_STORE).parent_keys == {
        shards_key(),
        AssetKey(["online_owner_features"]),
        AssetKey(["online_photo_features"]),
    }
    # dbt's data tests are checks on the models they test, and a bronze source's tests are
    # checks on its bronze asset (run by dbt's step): all of them but a test of two sources
    # (dagster-dbt attaches a test with several parents only to a model), which the gate's
    # dbt_tests_pass still reports
    source_tests = {
        n["name"]
        for n in manifest["nodes"].values()
        if n["resource_type"] == "test"
        and not n.get("attached_node")
        and any(d.startswith("source.") for d in n["depends_on"]["nodes"])
    }
    on_bronze = {
        k.name
        for k in graph.asset_check_keys
        if k.asset_key.path[0] == "bronze" and not k.name.startswith("gx_")
    }
    assert len(source_tests) == 17 and on_bronze <= source_tests
    assert {t.split("__")[0] for t in source_tests - on_bronze} == {
        "source_relationships_app_events_photo_id",
        "source_relationships_app_events_event_type",
    }
    tests = [
        n
        for n in manifest["nodes"].values()
        if n["resource_type"] == "test" and n.get("attached_node")
    ]
    dbt_checks = {k for k in graph.asset_check_keys if not k.name.startswith("gx_")}
    assert len(dbt_checks) >= len(tests) - 5  # a test on several models attaches to one
    # and the gate: one check per expectation, on the table its suite names
    specs = {k: graph.get_check_spec(k) for k in graph.asset_check_keys}
    expected = 0
    # the suites as the gate reads them: the files, and the schema checks derived from the
    # dbt contracts of the manifest the assets come from (two per contracted model)
    derived = 0
    for suite in outline_suites(PROJECT, manifest=PROJECT / "target" / "dagster" / "manifest.json"):
        bronze = suite.bronze_table is not None
        asset = AssetKey(["bronze", suite.bronze_table]) if bronze else AssetKey([suite.relation])
        raw = json.loads((PROJECT / "expectations" / f"{suite.name}.json").read_text())
        derived += len(suite.expectations) - len(raw["expectations"])
        for expectation in suite.expectations:
            spec = next(
                s
                for k, s in specs.items()
                if k.asset_key == asset and k.name.startswith(check_name(expectation.name))
            )
            critical = expectation.severity == "critical"
            assert spec.blocking == (critical and not bronze), (suite.name, expectation.name)
            expected += 1
    # two per contracted model (fct_events, dim_photos, photo_popularity_training), one per
    # bronze table from its declaration in the sources YAML
    assert derived == 2 * 3 + 4
    assert sum(k.name.startswith("gx_") for k in specs) == expected == 41


def test_a_night_materialises_every_step_with_its_lineage(nights) -> None:
    result, root = nights["first"], nights["root"]
    assert result.success
    done = _materialized(result)
    fct = done[AssetKey(["fct_events"])]
    for table in ("events", "photos", "users", "photo_embeddings", "_ingest_log"):
        # the version ingest committed is the one dbt was pinned to
        assert done[AssetKey(["bronze", table])]["delta_version"] == fct["bronze_versions"][table]
    assert done[AssetKey(["bronze", "events"])]["rows_landed"] > 30_000
    assert fct["rows_written"] == fct["rows_total"] > 30_000  # the first night writes it all
    exported = done[shards_key()]
    manifest = Manifest.read(root / "shards" / MODEL / "v1" / "manifest.json")
    assert exported["version"] == 1
    assert exported["rows_per_split"] == manifest.totals and sum(manifest.totals.values()) > 500
    assert exported["sha256_count"] == exported["shards"] == len(manifest.shards)
    # one lineage, end to end: the pins dbt built with, its invocation, the gate's run
    assert (
        exported["bronze_versions"]
        == fct["bronze_versions"]
        == {t: done[AssetKey(["bronze", t])]["delta_version"] for t in fct["bronze_versions"]}
    )
    assert exported["dbt_invocation_id"] == fct["invocation_id"]
    assert exported["dbt_invocation_id"] == manifest.lineage["dbt_invocation_id"]
    served = done[ONLINE_STORE]
    assert served["dbt_invocation_id"] == fct["invocation_id"] and served["shard_version"] == 1
    assert sorted(served["rows_per_view"]) == ["owner", "photo"]
    checks = _checks(result)
    gate = [c for (_, name), c in checks.items() if name.startswith("gx_")]
    assert len(gate) == 41 and all(
        c.passed for c in gate
    )  # 31 in the suite files, 6 derived from dbt contracts, 4 from bronze declarations
    assert {c.metadata["gate_run_id"].value for c in gate} == {exported["gate_run_id"]}
    assert exported["gate_passed"] is True
    dbt_tests = [c for (_, name), c in checks.items() if not name.startswith("gx_")]
    assert len(dbt_tests) > 50 and all(c.passed for c in dbt_tests)
    on_bronze = [c for (key, name), c in checks.items() if key.path[0] == "bronze"]
    assert len([c for c in on_bronze if c.check_name.startswith("source_")]) == 15


def test_the_next_night_writes_only_what_changed(nights) -> None:
    first, second, again = (_materialized(nights[n]) for n in ("first", "second", "again"))
    assert nights["second"].success and nights["again"].success
    events = AssetKey(["bronze", "events"])
    assert second[events]["delta_version"] > first[events]["delta_version"]
    assert 0 < second[events]["rows_landed"] < first[events]["rows_landed"] / 5
    fct = AssetKey(["fct_events"])
    grown = second[fct]["rows_total"] - first[fct]["rows_total"]
    assert second[fct]["rows_written"] == grown > 0  # only the night's events
    assert second[shards_key()]["version"] == 2
    # the same night again: nothing landed, no model wrote a row, no new shard version
    assert again[events]["delta_version"] == second[events]["delta_version"]
    lake_events = open_delta(str(nights["root"] / "lake" / "bronze" / "events"))
    assert again[events]["delta_version"] == lake_events.version()
    assert again[events]["files_ingested"] == again[events]["rows_landed"] == 0
    written = {k.path[-1]: m["rows_written"] for k, m in again.items() if "rows_written" in m}
    assert len(written) >= 12 and set(written.values()) == {0}
    assert shards_key() not in again
    latest = nights["instance"].get_latest_materialization_event(shards_key())
    assert latest.asset_materialization.metadata["version"].value == 2


def test_a_failed_blocking_check_stops_the_export(nights) -> None:
    result, root = nights["late"], nights["root"]
    assert not result.success
    checks = _checks(result)
    stale = checks[FRESHNESS]
    assert not stale.passed and stale.severity == AssetCheckSeverity.ERROR
    assert "shards__photo_popularity_training" not in _steps(result, "STEP_SUCCESS")
    assert shards_key() not in _materialized(result)
    assert (root / "shards" / MODEL / "latest").resolve().name == "v2"
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert failure.step_key == "quality_gate"
    reason = failure.event_specific_data.error.message
    assert "quality gate: the data-quality gate blocked: " in reason
    assert "fct_events: expect_column_max_to_be_recent(occurred_at)" in reason
    # every result reported with its severity: critical ones as errors, the rest as warnings
    graph_specs = {c.check_name: c for c in checks.values() if c.check_name.startswith("gx_")}
    assert len(graph_specs) > 20
    for check in checks.values():
        if check.check_name.startswith("gx_"):
            severity = check.metadata["severity"].value
            assert check.severity == (
                AssetCheckSeverity.ERROR if severity == "critical" else AssetCheckSeverity.WARN
            )


def test_transient_storage_errors_are_retried_and_nothing_else_is(
    defs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    instance = DagsterInstance.ephemeral()
    # an object store that does not answer: connection refused, retried twice, then failed
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    for name, value in {"AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "y",
                        "AWS_ALLOW_HTTP": "true", "AWS_REGION": "us-east-1"}.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    unreachable = _run(
        defs, instance, tmp_path, NIGHT,
        landing="s3://landing/night", storage_retries=2, retry_seconds=0.1,
    )  # fmt: skip
    assert not unreachable.success
    assert (
        len([e for e in unreachable.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]) == 2
    )
    assert _steps(unreachable, "STEP_FAILURE") == {"ingest"}
    # a lake that cannot be written (a file where the folder should be): no retry
    generate(small_config(tmp_path / "landing"))
    (tmp_path / "lake").write_text("not a folder")
    permanent = _run(defs, instance, tmp_path, NIGHT, storage_retries=2, retry_seconds=0.1)
    assert not permanent.success
    assert not [e for e in permanent.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    failure = next(e for e in permanent.all_events if e.event_type_value == "STEP_FAILURE")
    description = failure.event_specific_data.error.message
    assert "lake" in description and "\n" not in description.strip().split("\n")[0]


def test_the_schedule_sends_its_tick_as_the_clock_and_every_location(defs) -> None:
    resource = LakehouseResource(root="/data/prod", lake="s3://lake/prod", gate_env="prod")
    tick = NIGHT + timedelta(days=3)
    with build_schedule_context(
        scheduled_execution_time=tick, resources={"lakehouse": resource}
    ) as context:
        request = nightly_schedule(context)
    assert isinstance(request, RunRequest)
    config = request.run_config["resources"]["lakehouse"]["config"]
    assert config["as_of"] == tick.isoformat()
    assert (config["root"], config["lake"], config["gate_env"]) == (
        "/data/prod",
        "s3://lake/prod",
        "prod",
    )
    job = defs.resolve_job_def("nightly")
    assert validate_run_config(job, request.run_config)  # the job accepts it as it is
    assert nightly_schedule.cron_schedule == "0 6 * * *"


def test_a_clock_that_is_not_a_timestamp_stops_the_run_before_any_step(defs) -> None:
    result = defs.resolve_job_def("nightly").execute_in_process(
        run_config={"resources": {"lakehouse": {"config": {"as_of": "tomorrow"}}}},
        raise_on_error=False,
    )
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "RESOURCE_INIT_FAILURE")
    assert "as_of must be an ISO 8601 timestamp" in str(failure.event_specific_data.error)
    assert not _steps(result, "STEP_START")


def test_a_clock_in_the_future_stops_the_run_before_any_step(defs) -> None:
    """A mistyped year in the run config is refused at resource init, as the CLI refuses it
    (one line); allow_future_as_of lets it through."""
    future = "2062-11-03T06:00:00+00:00"
    result = defs.resolve_job_def("nightly").execute_in_process(
        run_config={"resources": {"lakehouse": {"config": {"as_of": future}}}},
        raise_on_error=False,
    )
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "RESOURCE_INIT_FAILURE")
    assert f"as_of {future} is" in str(failure.event_specific_data.error)
    assert "--allow-future-as-of" in str(failure.event_specific_data.error)
    assert not _steps(result, "STEP_START")
    allowed = LakehouseResource(as_of=future, allow_future_as_of=True)
    assert allowed.clock() is not None and allowed.clock().year == 2062


def _tick(resource: LakehouseResource, cursor: str | None):
    context = build_sensor_context(cursor=cursor, resources={"lakehouse": resource})
    return landing_sensor(context), context.cursor


def test_the_sensor_starts_a_run_when_new_files_land(tmp_path: Path) -> None:
    landing = tmp_path / "landing"
    generate(small_config(landing))
    resource = LakehouseResource(root=str(tmp_path))
    first, cursor = _tick(resource, None)
    assert isinstance(first, RunRequest)
    files = int(first.tags["lakehouse/new_files"])
    assert files == len([p for p in landing.rglob("*") if p.is_file() and p.parent != landing])
    assert first.run_config["resources"]["lakehouse"]["config"]["root"] == str(tmp_path)
    again, cursor = _tick(resource, cursor)
    assert isinstance(again, SkipReason) and "no new files" in again.skip_message
    dump = landing / "events" / "events-late.jsonl"
    dump.write_text('{"event_id": "x"}\n')
    os.utime(dump, ns=(time.time_ns() + 10**9,) * 2)
    new, cursor = _tick(resource, cursor)
    assert isinstance(new, RunRequest) and new.tags["lakehouse/new_files"] == "1"
    assert new.run_key != first.run_key


def test_the_sensor_watches_a_landing_folder_on_s3(tmp_path: Path, monkeypatch) -> None:
    with s3_server(["dumps"]) as env:
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        local = tmp_path / "landing"
        generate(small_config(local))
        client = client_for(env)
        resource = LakehouseResource(root=str(tmp_path), landing="s3://dumps/app")
        empty, cursor = _tick(resource, None)
        assert isinstance(empty, SkipReason)
        for path in sorted(p for p in (local / "users").rglob("*") if p.is_file()):
            client.upload_file(str(path), "dumps", f"app/users/{path.name}")
        found, cursor = _tick(resource, cursor)
        assert isinstance(found, RunRequest)
        assert found.tags["lakehouse/new_files"] == str(len(list((local / "users").iterdir())))
        nothing, _ = _tick(resource, cursor)
        assert isinstance(nothing, SkipReason)


def _graphql(port: int, query: str) -> dict[str, Any]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": query}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as reply:
        return json.load(reply)["data"]


def test_dagsters_command_line_tools_find_the_code_location_from_the_repo_root() -> None:
    """`dg check defs` and `dg list defs` (pyproject's [tool.dg]: the package under src/,
    the definitions in lakehouse.orchestrate) and `dagster asset list -m ...`, as a user
    types them in the checkout."""
    bin_dir = Path(sys.executable).parent

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(bin_dir / args[0]), *args[1:]], cwd=PROJECT, capture_output=True, text=True,
            check=False, timeout=600,
        )  # fmt: skip

    checked = run("dg", "check", "defs")
    assert checked.returncode == 0, checked.stdout[-2000:] + checked.stderr[-2000:]
    assert "All definitions loaded successfully" in checked.stdout + checked.stderr
    listed = run("dg", "list", "defs", "--json")
    assert listed.returncode == 0, listed.stderr[-2000:]
    defs = json.loads(listed.stdout)
    keys = {a["asset_key"] for a in defs["assets"]}
    assert {"bronze/events", "fct_events", MODEL, f"shards/{MODEL}", "online_store"} <= keys
    assert len(keys) == 6 + len(project_models()) + 2 + 1 + 1  # bronze, models, seeds, ...
    assert [j["name"] for j in defs["jobs"]] == ["nightly"]
    assets = run("dagster", "asset", "list", "-m", "lakehouse.orchestrate.definitions")
    assert assets.returncode == 0, assets.stderr[-2000:]
    assert set(assets.stdout.split()) == keys


def test_dagster_dev_serves_the_code_location(tmp_path: Path) -> None:
    """The README's command on this checkout: the UI answers with every asset, and (where
    Chromium is installed) renders the export's upstream lineage. With
    LAKEHOUSE_SCREENSHOTS=<folder> the screenshot is kept there (docs/dagster-asset-graph.png
    comes from this test)."""
    from tests.object_store import _free_port

    port = _free_port()
    home = tmp_path / "dagster"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    dev = subprocess.Popen(
        [str(Path(sys.executable).with_name("dagster")), "dev", "-h", "127.0.0.1", "-p", str(port)],
        cwd=PROJECT, env={**os.environ, "DAGSTER_HOME": str(home)},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        deadline, data = time.monotonic() + 180, None
        while time.monotonic() < deadline and dev.poll() is None:
            try:
                data = _graphql(port, "{ assetNodes { assetKey { path } } }")
                break
            except OSError:
                time.sleep(1)
        assert data is not None, "dagster dev did not answer"
        keys = {"/".join(n["assetKey"]["path"]) for n in data["assetNodes"]}
        assert {"bronze/events", "fct_events", MODEL, f"shards/{MODEL}", "online_store"} <= keys
        assert len(keys) == 6 + len(project_models()) + 2 + 1 + 1  # bronze, models, seeds, ...
        if CHROMIUM is None:
            pytest.skip("Chromium is not installed: the UI was not rendered")
        with chromium(tmp_path / "chromium") as page:
            page.open(
                f"http://127.0.0.1:{port}/assets/shards/{MODEL}"
                "?view=lineage&lineageScope=upstream&lineageDepth=10"
            )
            page.wait_for_text("dim_photos")
            # Dagster's invitation to its community, on a first visit
            page.dismiss("Join the Dagster community", "Skip")
            text = page.wait_for_text("stg_app__photos")
            assert "Join the Dagster community" not in text
            for group in ("bronze", "staging", "intermediate", "marts", "seeds", "shards"):
                assert group in text
            folder = Path(os.environ.get("LAKEHOUSE_SCREENSHOTS") or tmp_path)
            png = page.screenshot(folder / "dagster-asset-graph.png")
        from PIL import Image

        image = Image.open(png).convert("RGB")
        assert image.size == (1600, 1000)
        assert len(set(image.resize((64, 40)).get_flattened_data())) > 50  # not a blank page
    finally:
        os.killpg(dev.pid, signal.SIGINT)
        try:
            dev.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(dev.pid, signal.SIGKILL)
            dev.wait()
