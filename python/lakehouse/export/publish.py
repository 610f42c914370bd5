"""Export a mart as a new shard version: gate check, shards, manifest last, atomic rename."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs
import pyarrow.ipc as ipc

from lakehouse.export.manifest import LATEST, MANIFEST, Manifest, sha256_of
from lakehouse.export.writer import KEY_COLUMN, ExportError, plan_columns, write_split
from lakehouse.storage import describe_storage_error, filesystem_for, is_remote, join_uri
from lakehouse.warehouse import connect, project_dir, run_dbt


def export_model(
    warehouse: str | Path,
    model: str,
    out: str | Path,
    *,
    shard_rows: int = 65_536,
    columns: list[str] | None = None,
    compression: str | None = None,
    quality_dir: Path | None = None,
    force: bool = False,
    project: Path | None = None,
    lake: str | None = None,
    on_rows=lambda n: None,
) -> tuple[Path | str, Manifest]:
    """Write ``<out>/<model>/v<N>/`` and point ``latest`` at it; returns the folder (the URI
    of the version when ``out`` is on object storage)."""
    project = project or project_dir()
    remote = is_remote(str(out))
    con = connect(warehouse, project)
    try:
        lineage = _lineage(con, project, lake)
        gate = _gate(model, lineage, quality_dir, force)
        select, vocabularies, splits = plan_columns(con, model, columns)
        if remote:  # written locally first, uploaded when complete
            root = Path(tempfile.mkdtemp(prefix="lakehouse-export-"))
        else:
            root = Path(out) / model
            root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".tmp-", dir=root))
        try:
            shards = []
            for split in splits:
                shards += write_split(
                    con,
                    model,
                    select,
                    split,
                    staging / split,
                    staging,
                    shard_rows,
                    compression,
                    on_rows,
                )
            schema = _schema_of(staging / shards[0].path) if shards else []
            manifest = Manifest(
                model=model,
                version=0,
                created_at=datetime.now(UTC).isoformat(),
                shard_rows=shard_rows,
                compression=compression,
                order_by=[KEY_COLUMN],
                schema=schema,
                vocabularies=vocabularies,
                shards=shards,
                lineage=lineage,
                quality_gate=gate,
            )
            if remote:
                return _publish_remote(join_uri(str(out), model), staging, manifest), manifest
            return _publish(root, staging, manifest), manifest
        except OSError as error:  # disk full, permissions: say where, publish nothing
            shutil.rmtree(staging, ignore_errors=True)
            raise ExportError(
                f"cannot write {model} shards under {out}: {describe_storage_error(error)}; "
                "no version was published (free space or fix permissions, then export again)"
            ) from error
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        finally:
            if remote:
                shutil.rmtree(root, ignore_errors=True)
    finally:
        con.close()


def _publish(root: Path, staging: Path, manifest: Manifest) -> Path:
    """manifest.json is written last, then the folder appears under its version name in one
    rename; ``latest`` is swapped with another rename. Old versions are never touched."""
    manifest.version = _next_version(p.name for p in root.iterdir())
    (staging / MANIFEST).write_text(manifest.to_json())
    final = root / f"v{manifest.version}"
    staging.chmod(0o755)  # mkdtemp makes it private; readers (other users, workers) need it
    os.rename(staging, final)
    link = root / f".latest-{uuid.uuid4().hex[:8]}"
    link.symlink_to(final.name)
    os.replace(link, root / LATEST)
    return final


def _next_version(names: Iterable[str]) -> int:
    """One more than the highest ``v<N>`` among the names in a model's folder."""
    taken = [int(n[1:]) for n in names if n[:1] == "v" and n[1:].isdigit()]
    return max(taken, default=0) + 1


def _publish_remote(root: str, staging: Path, manifest: Manifest) -> str:
    """Object storage has no rename: shards are uploaded first, ``manifest.json`` last (a
    version without one is not a version to any reader), then the ``latest`` object is
    overwritten with the version's name in one PUT."""
    fs, base = filesystem_for(root)
    fs.create_dir(base, recursive=True)
    listing = fs.get_file_info(pafs.FileSelector(base, allow_not_found=True))
    manifest.version = _next_version(info.base_name for info in listing)
    name = f"v{manifest.version}"
    for shard in manifest.shards:
        pafs.copy_files(
            str(staging / shard.path),
            f"{base}/{name}/{shard.path}",
            source_filesystem=pafs.LocalFileSystem(),
            destination_filesystem=fs,
        )
    with fs.open_output_stream(f"{base}/{name}/{MANIFEST}") as sink:
        sink.write(manifest.to_json().encode())
    with fs.open_output_stream(f"{base}/{LATEST}") as sink:
        sink.write(f"{name}\n".encode())
    return join_uri(root, name)


def _schema_of(shard: Path) -> list[dict[str, str]]:
    with ipc.open_file(str(shard)) as reader:
        return [{"name": f.name, "type": str(f.type)} for f in reader.schema]


def _lineage(con, project: Path, lake: str | None) -> dict[str, Any]:
    rows = _rows_if_table(
        con,
        "lakehouse_bronze_reads",
        "select invocation_id, table_name, delta_version from lakehouse_bronze_reads "
        "where invocation_id = (select invocation_id from lakehouse_bronze_reads "
        "order by recorded_at desc limit 1)",
    )
    _refuse_unfinished_build(con, rows[0][0] if rows else None)
    dbt_manifest = project / "target" / "manifest.json"
    return {
        "lake": lake,
        "dbt_invocation_id": rows[0][0] if rows else None,
        "bronze_versions": {r[1]: r[2] for r in rows},
        "dbt_manifest_sha256": sha256_of(dbt_manifest) if dbt_manifest.exists() else None,
        "git_commit": _git_commit(project),
    }


def _refuse_unfinished_build(con, finished: str | None) -> None:
    """A dbt invocation killed mid-build leaves some models rebuilt and others not; its start
    is recorded but its end is not. Such a warehouse is not exported, gate or no gate."""
    started = _rows_if_table(
        con,
        "lakehouse_dbt_runs",
        "select invocation_id, started_at from lakehouse_dbt_runs order by started_at desc limit 1",
    )
    if started and started[0][0] != finished:
        raise ExportError(
            f"the latest dbt invocation ({started[0][0]}, started {started[0][1]}) did not "
            "finish: it was killed or crashed, so the warehouse may mix old and new models. "
            "Run `lakehouse build` (and `lakehouse validate`) again, then export"
        )


def _rows_if_table(con, table: str, sql: str) -> list[tuple]:
    """The query's rows, or none when ``table`` does not exist (a warehouse dbt never built,
    or one whose first build was killed before its end hook)."""
    exists = con.execute(
        "select count(*) from information_schema.tables where table_name = ?", [table]
    ).fetchone()[0]
    return con.execute(sql).fetchall() if exists else []


def _git_commit(project: Path) -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(project), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.stdout.strip()


def _gate(
    model: str, lineage: dict[str, Any], quality_dir: Path | None, force: bool
) -> dict[str, Any]:
    """The latest gate result for ``model``; refuse a failed or stale one unless forced."""
    problem, summary = None, {}
    result_file = (quality_dir / "result.json") if quality_dir else None
    if result_file is None or not result_file.exists():
        problem = (
            f"no data-quality gate result in {quality_dir}; run "
            f"`lakehouse validate --table {model}` first"
        )
    else:
        data = json.loads(result_file.read_text())
        table = next((t for t in data["tables"] if t["table"] == model), None)
        if table is None:
            problem = f"the latest gate run ({data['run_id']}) did not validate {model}"
        else:
            blocking = [
                r["name"]
                for r in table["results"]
                if not r["success"] and r["severity"] == "blocking"
            ]
            validated = table.get("versions", {}).get("dbt_invocation_id")
            summary = {
                "run_id": data["run_id"],
                "as_of": data["as_of"],
                "passed": not blocking,
                "validated_invocation_id": validated,
            }
            if blocking:
                problem = (
                    f"{model} failed the data-quality gate (run {data['run_id']}): "
                    + ", ".join(blocking)
                )
            elif validated != lineage["dbt_invocation_id"]:
                problem = (
                    f"the gate validated {model} as built by dbt invocation {validated}, "
                    f"but the warehouse now holds invocation "
                    f"{lineage['dbt_invocation_id']}; run `lakehouse validate` again"
                )
    if problem and not force:
        raise ExportError(problem + " (or pass --force, which the manifest records)")
    return {**summary, "forced": bool(problem), "reason": problem}


def reproduce(
    manifest_path: Path, out: Path, *, lake: str | None = None, project: Path | None = None
) -> tuple[Path, list[str]]:
    """Rebuild the model from the bronze versions a manifest recorded (Delta time travel)
    and export it again; returns the new folder and the shards whose checksum differs."""
    project = project or project_dir()
    original = Manifest.read(manifest_path)
    lake = lake or original.lineage.get("lake")
    if not lake:
        raise ExportError(f"{manifest_path} does not record the lake; pass --lake")
    with tempfile.TemporaryDirectory(prefix="lakehouse-reproduce-") as tmp:
        warehouse = Path(tmp) / "warehouse.duckdb"
        result = run_dbt(
            lake,
            warehouse,
            command="build",  # seeds too: `dbt run` skips them
            select=[f"+{original.model}"],
            versions=original.lineage["bronze_versions"],
            project=project,
            quiet=True,
        )
        if not result.success:
            detail = result.error or "; ".join(f"{n.name}: {n.message}" for n in result.failures)
            raise ExportError(f"rebuilding {original.model} from {lake} failed: {detail}")
        folder, again = export_model(
            warehouse,
            original.model,
            out,
            shard_rows=original.shard_rows,
            columns=[c["name"] for c in original.schema],
            compression=original.compression,
            force=True,
            project=project,
            lake=lake,
        )
    before = {s.path: s.sha256 for s in original.shards}
    after = {s.path: s.sha256 for s in again.shards}
    differ = sorted(p for p in before.keys() | after.keys() if before.get(p) != after.get(p))
    return folder, differ
