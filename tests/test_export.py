"""Shards hold exactly the mart, are byte-identical for the same warehouse, appear atomically,
carry their lineage, and can be rebuilt from it."""

from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv
import pyarrow.ipc as ipc
import pytest

from lakehouse.cli import main
from lakehouse.export import (
    ExportError,
    ExportSpec,
    Manifest,
    export_model,
    reproduce,
    verify,
)
from lakehouse.export import publish as publish_module
from lakehouse.ingest import ingest
from lakehouse.quality import validate
from lakehouse.shardformat import ManifestError
from lakehouse.warehouse import bronze_versions, connect, project_dir, run_dbt
from tests.conftest import NIGHT, BuiltWarehouse

PROJECT = project_dir(Path(__file__).parent)
MODEL = "photo_popularity_training"
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def built(built_warehouse: BuiltWarehouse, tmp_path_factory: pytest.TempPathFactory) -> dict:
    quality = tmp_path_factory.mktemp("export") / "quality"
    report, _ = validate(
        built_warehouse.warehouse,
        str(built_warehouse.lake),
        out=quality,
        project=PROJECT,
        as_of=NIGHT,
    )  # every suite: export refuses a run that left one out
    assert report.passed
    return {
        "landing": built_warehouse.landing,
        "lake": built_warehouse.lake,
        "warehouse": built_warehouse.warehouse,
        "quality": quality,
        "manifest_sha256": built_warehouse.manifest_sha256,
    }


def _land_three_more_days(landing: Path, lake: Path, tmp_path: Path) -> None:
    """New data lands: the last day's events again, three days later under new ids (a real
    landing file, ingested into ``lake`` as the nightly job would)."""
    last = sorted((landing / "events").iterdir())[-1]
    late = tmp_path / "late-landing" / "events"
    late.mkdir(parents=True)
    for shift in (1, 2, 3):
        lines = []
        for line in gzip.decompress(last.read_bytes()).splitlines():
            event = json.loads(line)
            when = datetime.fromisoformat(event["ts"].replace("Z", "+00:00"))
            event["ts"] = (when + timedelta(days=shift)).isoformat()
            event["event_id"] = f"late{shift}-{event['event_id']}"
            lines.append(json.dumps(event))
        (late / f"events-late-{shift}.jsonl.gz").write_bytes(
            gzip.compress(("\n".join(lines) + "\n").encode())
        )
    assert ingest(str(late.parent), str(lake), now=NIGHT + timedelta(days=3)).ok


def _export(built, out: Path, **options):
    return export_model(
        built["warehouse"],
        MODEL,
        out,
        quality_dir=built["quality"],
        project=PROJECT,
        lake=str(built["lake"]),
        **options,
    )


def _read_split(folder: Path, split: str) -> pa.Table:
    tables = []
    for path in sorted((folder / split).glob("part-*.arrow")):
        with ipc.open_file(str(path)) as reader:
            tables.append(reader.read_all())
    return pa.concat_tables(tables)


def test_shards_hold_exactly_the_mart(built, tmp_path: Path) -> None:
    """Every exported column as pyarrow reads it from the shards equals the mart's value:
    timestamps, categories (decoded by their dictionary, nulls kept), booleans, embeddings;
    floats as float32."""
    folder, manifest = _export(built, tmp_path, shard_rows=500)
    con = connect(built["warehouse"], PROJECT)
    try:
        for split, rows in manifest.totals.items():
            shards = _read_split(folder, split)
            mart = con.execute(
                f"select {', '.join(shards.column_names)} from {MODEL} where split = ? "
                "order by photo_id",
                [split],
            ).to_arrow_table()
            assert shards.num_rows == mart.num_rows == rows
            for name in shards.column_names:
                ours, theirs = shards.column(name), mart.column(name)
                if pa.types.is_floating(theirs.type):
                    theirs = theirs.cast(pa.float32())
                if pa.types.is_fixed_size_list(theirs.type):
                    np.testing.assert_array_equal(
                        np.stack(ours.to_numpy(zero_copy_only=False)),
                        np.stack(theirs.to_numpy(zero_copy_only=False)),
                    )
                    continue
                assert ours.to_pylist() == theirs.to_pylist(), name
            assert shards.column("weak_label").null_count == mart.column("weak_label").null_count
    finally:
        con.close()


def test_shards_are_first_class_arrow_with_their_meaning_in_the_schema(
    built, tmp_path: Path
) -> None:
    """Types any Arrow tool reads as what they are, each value stored once, and the dbt
    YAML's descriptions, units and labels plus a lineage pointer in the schema metadata."""
    folder, manifest = _export(built, tmp_path)
    types = {c["name"]: c["type"] for c in manifest.schema}
    assert types["posted_at"] == "timestamp[us, tz=UTC]"
    assert types["owner_country_code"] == "dictionary<values=string, indices=int32, ordered=0>"
    assert types["is_popular"] == "bool" and types["owner_is_verified"] == "bool"
    assert types["embedding"] == "fixed_size_list<item: float>[64]"
    assert types["aspect_ratio"] == "float" and types["likes_7d"] == "int64"
    assert "_rows" not in types and "split" not in types and "features_as_of" not in types
    for shard in manifest.shards:
        schema = ipc.open_file(str(folder / shard.path)).schema
        meta = {k.decode(): v.decode() for k, v in schema.metadata.items()}
        assert meta["lakehouse.model"] == MODEL and meta["lakehouse.split"] == shard.split
        assert meta["lakehouse.key"] == "photo_id"
        labels = json.loads(meta["lakehouse.labels"])
        assert list(labels) == ["likes_24h", "likes_7d", "engagement_score_7d", "is_popular"]
        assert labels["is_popular"].startswith("likes_7d >= ")
        pointer = json.loads(meta["lakehouse.lineage"])
        assert (folder / shard.path).parent.joinpath(pointer["manifest"]).resolve() == (
            folder / "manifest.json"
        ).resolve()
        assert pointer["bronze_versions"] == manifest.lineage["bronze_versions"]
        width = schema.field("width").metadata
        assert width == {b"description": b"Pixels.", b"unit": b"pixels"}
        assert schema.field("owner_account_age_days").metadata[b"unit"] == b"days"
        assert schema.field("photo_id").metadata == {b"description": b"Primary key."}
        table = ipc.open_file(str(folder / shard.path)).read_all()
        for name, vocabulary in manifest.vocabularies.items():  # the whole vocabulary
            assert table.column(name).chunk(0).dictionary.to_pylist() == vocabulary


def test_an_export_of_some_columns_names_only_the_labels_it_holds(built, tmp_path: Path) -> None:
    """``--columns`` picks features and labels as before; the schema names the labels it
    holds. A label the dbt YAML declares that the model lacks is refused, naming it."""
    folder, manifest = _export(built, tmp_path, columns=["photo_id", "embedding", "likes_7d"])
    assert manifest.columns == ["photo_id", "embedding", "likes_7d"]
    schema = ipc.open_file(str(folder / manifest.shards[0].path)).schema
    assert list(json.loads(schema.metadata[b"lakehouse.labels"])) == ["likes_7d"]
    spec = ExportSpec(key="photo_id", exclude=("features_as_of", "_build_seq"), labels=("ctr",))
    with pytest.raises(ExportError, match=r"label column\(s\) ctr in meta.export.labels"):
        _export(built, tmp_path / "typo", spec=spec)


def _read_with(tool: str, paths: list[Path], cache: Path) -> dict[str, object]:
    """The shards of one split as ``tool`` reads them: column type names and the first row,
    as Python values."""
    if tool == "pyarrow":
        table = pa.concat_tables(ipc.open_file(str(p)).read_all() for p in paths)
        return {
            "types": {f.name: str(f.type) for f in table.schema},
            "row": table.slice(0, 1).to_pylist()[0],
        }
    if tool == "polars":
        import polars as pl

        frame = pl.read_ipc([str(p) for p in paths])
        return {
            "types": {k: str(v) for k, v in frame.schema.items()},
            "row": frame.row(0, named=True),
        }
    if tool == "duckdb":
        import duckdb

        table = pa.concat_tables(ipc.open_file(str(p)).read_all() for p in paths)
        relation = duckdb.connect().from_arrow(table)
        row = relation.limit(1).fetchall()[0]
        return {
            "types": dict(zip(relation.columns, map(str, relation.types), strict=True)),
            "row": dict(zip(relation.columns, row, strict=True)),
        }
    from datasets import load_dataset

    dataset = load_dataset(
        "arrow", data_files=[str(p) for p in paths], split="train", cache_dir=str(cache)
    )
    return {"types": {k: str(v) for k, v in dataset.features.items()}, "row": dataset[0]}


# per tool: the type names of a timestamp, a category, a flag and an embedding column
_TYPES_READ = {
    "pyarrow": (
        "timestamp[us, tz=UTC]",
        "dictionary<values=string, indices=int32, ordered=0>",
        "bool",
        "fixed_size_list<item: float>[64]",
    ),
    "polars": (
        "Datetime(time_unit='us', time_zone='UTC')",
        "Categorical",
        "Boolean",
        "Array(Float32, shape=(64,))",
    ),
    "duckdb": ("TIMESTAMP WITH TIME ZONE", "VARCHAR", "BOOLEAN", "FLOAT[64]"),
    "datasets": (
        "Value('timestamp[us, tz=UTC]')",
        "Value('string')",
        "Value('bool')",
        "List(Value('float32'), length=64)",
    ),
}


@pytest.mark.parametrize("tool", list(_TYPES_READ))
def test_any_arrow_tool_reads_the_shards_fully_typed(built, tmp_path: Path, tool: str) -> None:
    """pyarrow, polars, DuckDB (from pyarrow) and Hugging Face ``load_dataset("arrow")`` read
    a split's shards as the data they hold: a posting time, a country name, a flag, 64
    floats; the first row's values are the mart's."""
    folder, manifest = _export(built, tmp_path)
    paths = [folder / s.path for s in manifest.shards if s.split == "train"]
    read = _read_with(tool, paths, tmp_path / "hf-cache")
    types, row = read["types"], read["row"]
    assert list(types) == [c["name"] for c in manifest.schema]  # nothing but the data
    names = ("posted_at", "owner_country_code", "is_popular", "embedding")
    assert tuple(types[name] for name in names) == _TYPES_READ[tool]
    con = connect(built["warehouse"], PROJECT)
    try:
        first = con.execute(
            f"select posted_at, owner_country_code, is_popular, embedding, likes_7d from {MODEL} "
            "where split = 'train' order by photo_id limit 1"
        ).fetchone()
    finally:
        con.close()
    assert row["posted_at"] == first[0] and row["posted_at"].utcoffset() == timedelta(0)
    assert row["owner_country_code"] == first[1] and row["is_popular"] == first[2]
    assert row["likes_7d"] == first[4]
    assert list(row["embedding"]) == pytest.approx(list(first[3]))


def test_shards_have_a_fixed_row_count_in_key_order(built, tmp_path: Path) -> None:
    folder, manifest = _export(built, tmp_path, shard_rows=400)
    for split in manifest.totals:
        shards = [s for s in manifest.shards if s.split == split]
        assert all(s.rows == 400 for s in shards[:-1]) and 0 < shards[-1].rows <= 400
        ids = _read_split(folder, split).column("photo_id").to_pylist()
        assert ids == sorted(ids)


def test_the_same_warehouse_gives_byte_identical_shards(built, tmp_path: Path) -> None:
    first, one = _export(built, tmp_path, shard_rows=700)
    second, two = _export(built, tmp_path, shard_rows=700)
    assert (first.name, second.name) == ("v1", "v2")
    assert [(s.path, s.sha256) for s in one.shards] == [(s.path, s.sha256) for s in two.shards]
    assert (tmp_path / MODEL / "latest").resolve() == second


@pytest.mark.parametrize("compression", ["lz4", "zstd"])
def test_compressed_shards_load_the_same_values(built, tmp_path: Path, compression: str) -> None:
    plain_dir, plain = _export(built, tmp_path / "plain")
    packed_dir, packed = _export(built, tmp_path / "packed", compression=compression)
    assert sum(s.bytes for s in packed.shards) < sum(s.bytes for s in plain.shards)
    assert _read_split(packed_dir, "train").equals(_read_split(plain_dir, "train"))


def test_a_crash_mid_export_leaves_no_version_and_keeps_the_old_ones(
    built, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    v1, _ = _export(built, tmp_path)
    real = publish_module.write_split
    calls = {"n": 0}

    def crash_on_second_split(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError("No space left on device")
        return real(*args, **kwargs)

    monkeypatch.setattr(publish_module, "write_split", crash_on_second_split)
    with pytest.raises(ExportError, match="No space left on device; no version was published"):
        _export(built, tmp_path)
    root = tmp_path / MODEL
    assert sorted(p.name for p in root.iterdir()) == ["latest", "v1"]  # no half version
    assert (root / "latest").resolve() == v1 and not verify(v1)


def test_kill_9_mid_export_publishes_nothing(built, tmp_path: Path) -> None:
    script = textwrap.dedent(f"""
        import os, signal
        from pathlib import Path
        from lakehouse.export import publish
        real = publish.write_split
        def die(*a, **k):
            real(*a, **k)
            os.kill(os.getpid(), signal.SIGKILL)
        publish.write_split = die
        publish.export_model({str(built["warehouse"])!r}, {MODEL!r}, Path({str(tmp_path)!r}),
                             quality_dir=Path({str(built["quality"])!r}))
    """)
    killed = subprocess.run([sys.executable, "-c", script], cwd=REPO, check=False)
    assert killed.returncode == -signal.SIGKILL
    visible = [p.name for p in (tmp_path / MODEL).iterdir() if not p.name.startswith(".")]
    assert visible == []  # only a hidden .tmp- folder, never a v<N> or latest
    (left,) = (tmp_path / MODEL).glob(".tmp-*")
    running = tmp_path / MODEL / f".tmp-{os.getpid()}-still-writing"  # a live export's
    running.mkdir()
    folder, _ = _export(built, tmp_path)  # the next export clears what the killed one left
    assert not left.exists() and running.exists()
    assert {p.name for p in (tmp_path / MODEL).iterdir()} == {"latest", running.name, "v1"}
    assert not verify(folder)


def test_sql_in_the_model_name_is_refused_before_it_reaches_duckdb(
    built, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    crafted = (
        f"{MODEL}; COPY (select 'x' as x) TO 'PWNED.csv'; select 'split' as column_name, "
        "'VARCHAR' as t"
    )
    args = ["--warehouse", str(built["warehouse"]), "--out", str(tmp_path / "s"), "--force"]
    assert main(["export", crafted, *args]) == 1
    err = capsys.readouterr().err.replace("\n", "")
    assert "Traceback" not in err  # said for what it is: no such model, and which there are
    assert "no dbt model named" in err and f"models that can be exported: {MODEL}" in err
    assert main(["export", "stg_app__users", *args]) == 1  # a model, with no export key
    err = capsys.readouterr().err.replace("\n", "")
    assert "stg_app__users declares no export key" in err and f"exported: {MODEL}" in err
    with pytest.raises(ExportError, match="the warehouse has no table"):
        export_model(
            built["warehouse"],
            crafted,
            tmp_path / "s",
            force=True,
            project=PROJECT,
            spec=ExportSpec(key="photo_id"),
        )
    assert not list(tmp_path.rglob("PWNED.csv")) and not (REPO / "PWNED.csv").exists()


def test_verify_names_a_flipped_byte_and_a_truncated_shard(
    built, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder, manifest = _export(built, tmp_path, shard_rows=500)
    first, second = (folder / s.path for s in manifest.shards[:2])
    data = bytearray(first.read_bytes())
    data[len(data) // 2] ^= 0xFF
    first.write_bytes(bytes(data))
    second.write_bytes(second.read_bytes()[:100])
    problems = verify(folder)
    assert len(problems) == 2
    assert "sha256" in problems[0] and manifest.shards[0].path in problems[0]
    assert "truncated" in problems[1]
    assert main(["shards", "verify", str(folder)]) == 1
    assert manifest.shards[0].path in capsys.readouterr().err


def test_manifest_paths_cannot_leave_the_version_folder(built, tmp_path: Path) -> None:
    folder, _ = _export(built, tmp_path)
    data = json.loads((folder / "manifest.json").read_text())
    data["shards"][0]["path"] = "../../../etc/passwd"
    (folder / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match="leaves the shard folder"):
        verify(folder)


def test_no_personal_data_reaches_a_shard_or_its_manifest(built, tmp_path: Path) -> None:
    folder, _ = _export(built, tmp_path)
    users = pa.csv.read_csv(next((built["landing"] / "users").iterdir()))
    personal = {
        v.encode()
        for column in ("email", "display_name")
        for v in users.column(column).to_pylist()
        if v and len(v) >= 6
    }
    assert len(personal) > 100
    for path in folder.rglob("*"):
        if path.is_file():
            blob = path.read_bytes()
            assert not [v for v in personal if v in blob], path


def test_manifest_records_lineage_and_the_gate(built, tmp_path: Path) -> None:
    folder, manifest = _export(built, tmp_path)
    again = Manifest.read(folder / "manifest.json")
    assert again.totals == manifest.totals and sum(again.totals.values()) > 500
    lineage = again.lineage
    assert set(lineage["bronze_versions"]) >= {"events", "photos", "users", "photo_embeddings"}
    assert lineage["dbt_invocation_id"] == built_invocation(built)
    assert lineage["bronze_versions"]["events"] == 20  # pinned: one commit per daily file
    head = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert lineage["git_commit"] == head and len(head) == 40
    assert lineage["dbt_manifest_sha256"] == built["manifest_sha256"]  # the build's manifest
    assert again.quality_gate["passed"] is True and again.quality_gate["forced"] is False


def built_invocation(built) -> str:
    con = connect(built["warehouse"], PROJECT)
    try:
        return con.execute(
            "select invocation_id from lakehouse_bronze_reads order by recorded_at desc limit 1"
        ).fetchone()[0]
    finally:
        con.close()


def test_a_failed_or_stale_gate_refuses_unless_forced(built, tmp_path: Path) -> None:
    failed = tmp_path / "failed"
    shutil.copytree(built["quality"], failed)
    result = json.loads((failed / "result.json").read_text())
    check = next(t for t in result["tables"] if t["table"] == MODEL)["results"][0]
    check["success"], check["severity"] = False, "critical"
    (failed / "result.json").write_text(json.dumps(result))
    with pytest.raises(ExportError, match="failed the data-quality gate"):
        export_model(
            built["warehouse"], MODEL, tmp_path / "out", quality_dir=failed, project=PROJECT
        )
    _, forced = export_model(
        built["warehouse"], MODEL, tmp_path / "out", quality_dir=failed, project=PROJECT, force=True
    )
    assert forced.quality_gate["forced"] is True
    assert "failed the data-quality gate" in forced.quality_gate["reason"]

    stale = tmp_path / "stale"
    shutil.copytree(built["quality"], stale)
    result = json.loads((stale / "result.json").read_text())
    next(t for t in result["tables"] if t["table"] == MODEL)["versions"]["dbt_invocation_id"] = (
        "an-older-build"
    )
    (stale / "result.json").write_text(json.dumps(result))
    with pytest.raises(ExportError, match="run `lakehouse validate` again"):
        export_model(
            built["warehouse"], MODEL, tmp_path / "out", quality_dir=stale, project=PROJECT
        )


def test_reproduce_after_new_data_landed_gives_the_same_checksums(built, tmp_path: Path) -> None:
    folder, original = _export(built, tmp_path / "first", shard_rows=600)
    lake = tmp_path / "lake"  # the shared lake is only read: this one grows
    shutil.copytree(built["lake"], lake)
    _land_three_more_days(built["landing"], lake, tmp_path)
    newer = tmp_path / "newer.duckdb"
    assert run_dbt(str(lake), newer, project=PROJECT, quiet=True).success
    con = connect(newer, PROJECT)
    grown = con.execute(f"select count(*) from {MODEL}").fetchone()[0]
    con.close()
    assert grown > sum(original.totals.values())

    again, differ = reproduce(
        folder / "manifest.json", tmp_path / "again", lake=str(lake), project=PROJECT
    )
    assert differ == []
    assert [s.sha256 for s in Manifest.read(again / "manifest.json").shards] == [
        s.sha256 for s in original.shards
    ]


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        (lambda m: m.pop("shards"), "shards must be present"),
        (lambda m: m.update(version="2"), "version must be a whole number"),
        (lambda m: m.update(model="x; drop table y"), "model must be a plain identifier"),
        (lambda m: m["shards"][0].update(rows=-1), "rows must be a whole number >= 0"),
        (lambda m: m["shards"][0].update(sha256="zz"), "sha256 must be 64 hex digits"),
        (
            lambda m: m["lineage"]["bronze_versions"].update(
                users="1, true, current_timestamp; COPY (select 1) TO 'pwned.csv'; select 1"
            ),
            "bronze_versions.users must be a whole number",
        ),
        (lambda m: m["lineage"].update(lake="/x'); COPY (select 1) TO 'p"), "lineage.lake"),
    ],
)
def test_a_malformed_or_crafted_manifest_is_refused_by_field(
    built, tmp_path: Path, capsys: pytest.CaptureFixture[str], change, complaint: str
) -> None:
    folder, _ = _export(built, tmp_path / "shards")
    path = folder / "manifest.json"
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))
    with pytest.raises(ManifestError, match=re.escape(complaint)):
        Manifest.read(path)
    for command in (["shards", "inspect", str(folder)], ["shards", "verify", str(folder)]):
        assert main(command) == 1
        err = capsys.readouterr().err
        assert complaint in err.replace("\n", "") and "Traceback" not in err
    with pytest.raises(ManifestError, match=re.escape(complaint)):
        reproduce(path, tmp_path / "again", project=PROJECT)
    assert not list(Path.cwd().glob("pwned.csv")) and not list(tmp_path.rglob("pwned.csv"))


def test_shards_inspect_prints_a_crafted_type_name_as_text(
    built, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A manifest is input: a column type holding terminal controls or rich markup is
    printed as text, escaped, never acted on."""
    folder, _ = _export(built, tmp_path / "shards")
    path = folder / "manifest.json"
    data = json.loads(path.read_text())
    data["schema"][0]["type"] = "int64\x1b[2J[bold red]boom[/]"
    path.write_text(json.dumps(data))
    assert main(["shards", "inspect", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\\x1b[2J[bold red]boom[/]" in " ".join(out.split())


def test_a_manifest_that_is_not_json_is_named(built, tmp_path: Path) -> None:
    folder, _ = _export(built, tmp_path / "shards")
    (folder / "manifest.json").write_text('{"model": ')
    with pytest.raises(ManifestError, match=r"manifest\.json is not JSON"):
        Manifest.read(folder / "manifest.json")


def test_a_failed_or_partial_build_is_never_what_export_names(built, tmp_path: Path) -> None:
    lake, warehouse = tmp_path / "lake", tmp_path / "warehouse.duckdb"
    shutil.copytree(built["lake"], lake)
    shutil.copy(built["warehouse"], warehouse)
    made_it = built_invocation(built)
    quality = tmp_path / "quality"

    def gate_and_export(out: str):
        report, _ = validate(warehouse, str(lake), out=quality, project=PROJECT,
                             as_of=NIGHT)  # fmt: skip
        assert report.passed, [(r.table, r.name) for r in report.blocking_failures]
        return export_model(warehouse, MODEL, tmp_path / out, quality_dir=quality,
                            project=PROJECT, lake=str(lake))  # fmt: skip

    failed = run_dbt(str(lake), warehouse, project=PROJECT, quiet=True,
                     versions={**bronze_versions(str(lake)), "events": 999})  # fmt: skip
    assert not failed.success  # no such Delta version: staging fails, the mart is not rebuilt
    # ...but dim_photos (no events upstream) was, and dbt skipped its relationships test to
    # dim_users (not rebuilt): content no test vouched for blocks until dbt tests it
    blocked, _ = validate(warehouse, str(lake), out=quality, project=PROJECT, as_of=NIGHT)
    assert {(r.table, r.type) for r in blocked.blocking_failures} == {
        ("dim_photos", "dbt_tests_pass")
    }
    assert "relationships_dim_photos_owner_user_id" in str(
        blocked.blocking_failures[0].observed_value
    )
    assert run_dbt(str(lake), warehouse, command="test", project=PROJECT, quiet=True).success
    _, after_failure = gate_and_export("shards")
    assert after_failure.lineage["dbt_invocation_id"] == made_it
    assert after_failure.lineage["bronze_versions"]["events"] == 20  # not 999

    _land_three_more_days(built["landing"], lake, tmp_path)  # the lake grows...
    partial = run_dbt(str(lake), warehouse, project=PROJECT, quiet=True,
                      select=["stg_app__users"])  # fmt: skip
    assert partial.success and partial.bronze_versions["events"] > 20  # ...a partial build
    folder, after_partial = gate_and_export("shards")
    assert after_partial.version == 2
    assert after_partial.lineage["dbt_invocation_id"] == made_it
    assert after_partial.lineage["bronze_versions"]["events"] == 20
    assert [s.sha256 for s in after_partial.shards] == [s.sha256 for s in after_failure.shards]
    _, differ = reproduce(folder / "manifest.json", tmp_path / "again", project=PROJECT)
    assert differ == []


def test_two_exports_choosing_the_same_version_both_publish(
    built, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, _ = _export(built, tmp_path)
    real = publish_module._next_version
    chosen = []

    def stale_listing(names):  # as if another export published v1 after we listed
        version = 1 if not chosen else real(names)
        chosen.append(version)
        return version

    monkeypatch.setattr(publish_module, "_next_version", stale_listing)
    second, manifest = _export(built, tmp_path)
    assert chosen == [1, 2] and manifest.version == 2 and second.name == "v2"
    assert json.loads((second / "manifest.json").read_text())["version"] == 2
    assert not verify(first) and not verify(second)  # v1 untouched, v2 whole
    assert (tmp_path / MODEL / "latest").resolve() == second


def test_read_only_dbt_commands_between_gate_and_export_change_nothing(
    built, tmp_path: Path
) -> None:
    """An analyst's `dbt source freshness` and `dbt test` run hooks and rewrite target/, but
    build nothing: export still goes ahead and names the same build and manifest."""
    lake, warehouse = tmp_path / "lake", tmp_path / "warehouse.duckdb"
    shutil.copytree(built["lake"], lake)
    shutil.copy(built["warehouse"], warehouse)
    quality = tmp_path / "quality"
    report, _ = validate(warehouse, str(lake), out=quality, project=PROJECT, as_of=NIGHT)
    assert report.passed
    env = {**os.environ, "LAKEHOUSE_DUCKDB": str(warehouse), "LAKEHOUSE_LAKE": str(lake)}
    del env["LAKEHOUSE_PII_SALT"]  # they hash nothing, so they need no key
    con = connect(warehouse, PROJECT)
    runs_before = con.execute("select count(*) from lakehouse_dbt_runs").fetchone()[0]
    con.close()
    dbt = str(Path(sys.executable).parent / "dbt")
    freshness = subprocess.run([dbt, "source", "freshness"], cwd=PROJECT, env=env,
                               capture_output=True, text=True)  # fmt: skip
    assert freshness.returncode in (0, 1), freshness.stdout[-2000:]  # 1: the sample is old
    tested = subprocess.run([dbt, "test"], cwd=PROJECT, env=env, capture_output=True, text=True)
    assert tested.returncode == 0, tested.stdout[-2000:]
    con = connect(warehouse, PROJECT)
    runs_after = con.execute("select count(*) from lakehouse_dbt_runs").fetchone()[0]
    con.close()
    assert runs_after == runs_before + 2  # both ran their hooks in this warehouse
    _, manifest = export_model(warehouse, MODEL, tmp_path / "shards", quality_dir=quality,
                               project=PROJECT, lake=str(lake))  # fmt: skip
    assert manifest.quality_gate["forced"] is False
    assert manifest.lineage["dbt_invocation_id"] == built_invocation(built)
    assert manifest.lineage["bronze_versions"]["events"] == 20
    assert manifest.lineage["dbt_manifest_sha256"] == built["manifest_sha256"]
