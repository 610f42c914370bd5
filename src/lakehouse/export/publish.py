"""Export a mart as a new shard version: gate check, shards, manifest last, atomic rename."""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs
import pyarrow.ipc as ipc

from lakehouse import sql
from lakehouse.export.writer import (
    ExportError,
    ExportSpec,
    ShardMetadata,
    plan_columns,
    schema_metadata,
    write_split,
)
from lakehouse.quality import GateRecord, outline_suites
from lakehouse.shardformat import (
    DEFAULT_SHARD_ROWS,
    LATEST,
    MANIFEST,
    SHARD_FORMAT,
    VERSION_NAME,
    Manifest,
)
from lakehouse.storage import (
    Precondition,
    describe_storage_error,
    filesystem_for,
    is_remote,
    join_uri,
    process_alive,
    put_if,
    read_tagged,
)
from lakehouse.warehouse import (
    connect,
    exportable_models,
    latest_finished_build,
    latest_started,
    model_build,
    model_docs,
    model_meta,
    project_dir,
    run_dbt,
)
from lakehouse.warehouse import (
    fingerprint as table_fingerprint,
)
from lakehouse.warehouse.pii import DEMO_SALT, in_demo


def export_model(
    warehouse: str | Path,
    model: str,
    out: str | Path,
    *,
    shard_rows: int = DEFAULT_SHARD_ROWS,
    columns: list[str] | None = None,
    compression: str | None = None,
    quality_dir: Path | None = None,
    force: bool = False,
    project: Path | None = None,
    lake: str | None = None,
    spec: ExportSpec | None = None,
    on_rows=lambda n: None,
    if_changed: bool = False,
    vocabularies: dict[str, list[str]] | None = None,
) -> tuple[Path | str, Manifest]:
    """Write ``<out>/<model>/v<N>/`` and point ``latest`` at it; returns the folder (the URI
    of the version when ``out`` is on object storage). How the model is sharded (key, split
    column, excluded columns) comes from its dbt ``meta.export`` unless ``spec`` says.

    With ``if_changed``, rows and columns that fingerprint the same as the latest version's
    publish nothing: that version's folder and manifest are returned (the nightly job on a
    night that changed nothing the model exports).

    Category codes are stable: each categorical column's vocabulary starts with the latest
    version's (or ``vocabularies``, e.g. the manifest being reproduced), in its order, and
    new values get new codes after it (:func:`plan_columns`)."""
    project = project or project_dir()
    spec = spec or ExportSpec.from_meta(
        model, model_meta(project, model), exportable_models(project)
    )
    remote = is_remote(str(out))
    con = connect(warehouse, project)
    try:
        lineage = _lineage(con, project, lake, model)
        latest = latest_version(out, model)  # its codes stay what they are
        if vocabularies is None and latest is not None:
            vocabularies = latest[1].vocabularies
        plan = plan_columns(con, model, spec, columns, vocabularies)
        metadata = _shard_metadata(project, model, spec, lineage, plan.columns)
        # the table's content now, bound to the content the gate passed
        content = table_fingerprint(con, sql.identifier(model))
        suites = [suite.name for suite in outline_suites(project)]
        gate = _gate(model, lineage, quality_dir, force, content, suites)
        fingerprint = content_fingerprint(con, model, spec, plan.select, shard_rows, compression)
        if if_changed and latest is not None and latest[1].content_fingerprint == fingerprint:
            return latest
        if remote:  # written locally first, uploaded when complete
            root = Path(tempfile.mkdtemp(prefix="lakehouse-export-"))
        else:
            root = Path(out) / model
            root.mkdir(parents=True, exist_ok=True)
            remove_abandoned_staging(root)
        # named for its process, so a later export can tell an abandoned one from a running one
        staging = Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{os.getpid()}-", dir=root))
        try:
            shards = []
            for split in plan.splits:
                shards += write_split(
                    con,
                    model,
                    spec,
                    plan,
                    split,
                    staging / split,
                    staging,
                    shard_rows,
                    compression,
                    on_rows,
                    metadata,
                )
            schema = _schema_of(staging / shards[0].path) if shards else []
            manifest = Manifest(
                model=model,
                version=0,
                created_at=datetime.now(UTC).isoformat(),
                shard_rows=shard_rows,
                compression=compression,
                order_by=[spec.key],
                schema=schema,
                vocabularies=plan.vocabularies,
                shards=shards,
                lineage=lineage,
                quality_gate=gate,
                content_fingerprint=fingerprint,
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


def content_fingerprint(
    con,
    model: str,
    spec: ExportSpec,
    select: list[str],
    shard_rows: int,
    compression: str | None,
) -> str:
    """What an export of these expressions would hold, without writing it: the row count and
    an order-free sum of DuckDB's row hashes, plus the expressions (columns, vocabularies)
    and the shard layout. Computed by the same DuckDB release that reads it back; another
    release may hash differently, which only costs one more version."""
    import duckdb

    split = sql.identifier(spec.split)
    rows, total = con.execute(
        "select count(*), coalesce(sum(cast(hash(exported) as hugeint)), 0) from "
        f"(select {', '.join(select)}, {split} from {sql.identifier(model)}) as exported"
    ).fetchone()
    # the shard format is part of it: shards of an older format are exported again
    layout = "\n".join(
        [*select, str(shard_rows), str(compression), f"format {SHARD_FORMAT}", duckdb.__version__]
    )
    digest = hashlib.sha256(layout.encode()).hexdigest()[:16]
    return f"{rows}:{total}:{digest}"


def latest_version(out: str | Path, model: str) -> tuple[Path | str, Manifest] | None:
    """The version ``latest`` names under ``<out>/<model>``, if there is one."""
    remote = is_remote(str(out))
    root = join_uri(str(out), model) if remote else str(Path(out) / model)
    fs, base = filesystem_for(root)
    try:
        if remote:  # an object holding the version's name
            with fs.open_input_stream(f"{base}/{LATEST}") as stream:
                name = stream.read().decode().strip()
        else:  # a symlink to the version's folder
            name = os.readlink(Path(root) / LATEST)
        if not VERSION_NAME.fullmatch(name):  # the one rule for a version's name
            return None
        with fs.open_input_stream(f"{base}/{name}/{MANIFEST}") as stream:
            manifest = Manifest.parse(stream.read().decode())
    except (OSError, ValueError):  # none yet, or unreadable: publish a new one
        return None
    folder = join_uri(root, name) if remote else Path(root) / name
    return folder, manifest


STAGING_PREFIX = ".tmp-"
_PUBLISH_ATTEMPTS = 5


def remove_abandoned_staging(root: Path) -> list[Path]:
    """Remove ``.tmp-<pid>-*`` folders whose export process is gone (killed mid-export);
    an export still running keeps its own. Returns what was removed."""
    removed = []
    for folder in root.glob(f"{STAGING_PREFIX}*"):
        pid = folder.name[len(STAGING_PREFIX) :].split("-", 1)[0]
        if folder.is_dir() and not (pid.isdigit() and process_alive(int(pid))):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def _publish(root: Path, staging: Path, manifest: Manifest) -> Path:
    """manifest.json is written last, then the folder appears under its version name in one
    rename; ``latest`` is swapped with another rename. Old versions are never touched."""
    staging.chmod(0o755)  # mkdtemp makes it private; readers (other users, workers) need it
    for _ in range(_PUBLISH_ATTEMPTS):
        manifest.version = _next_version(p.name for p in root.iterdir())
        (staging / MANIFEST).write_text(manifest.to_json())
        final = root / f"v{manifest.version}"
        try:
            os.rename(staging, final)  # fails, never replaces, when v<N> exists
            break
        except OSError as error:
            if error.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                raise
            # another export published v<N> since we listed: take the next number
    else:
        raise ExportError(
            f"{_PUBLISH_ATTEMPTS} other exports of {manifest.model} published while this one "
            f"did, each taking the version number it chose; export again"
        )
    _advance_local_latest(root, manifest.version)
    return final


def _at_or_past(latest: str, version: int) -> bool:
    """Whether ``latest`` holds a version name at or past ``v<version>``: the one rule that
    keeps it moving forward only, on a local disk and on object storage."""
    return VERSION_NAME.fullmatch(latest) is not None and int(latest[1:]) >= version


def _advance_local_latest(root: Path, version: int) -> None:
    """Swap the ``latest`` link to ``v<version>`` in one rename, unless it already names a
    newer version: exports finishing at once take turns on a lock of the model's folder,
    so ``latest`` only ever moves forward."""
    folder = os.open(root, os.O_RDONLY)  # the lock is the model folder's own (no file)
    try:
        fcntl.flock(folder, fcntl.LOCK_EX)
        try:
            current = os.readlink(root / LATEST)
        except OSError:
            current = ""
        if _at_or_past(current, version):
            return
        link = root / f".latest-{uuid.uuid4().hex[:8]}"
        link.symlink_to(f"v{version}")
        os.replace(link, root / LATEST)
    finally:
        os.close(folder)  # closing releases the lock


def _next_version(names: Iterable[str]) -> int:
    """One more than the highest ``v<N>`` among the names in a model's folder."""
    taken = [int(n[1:]) for n in names if n[:1] == "v" and n[1:].isdigit()]
    return max(taken, default=0) + 1


# written first into a version's folder on object storage with a conditional create: the
# export that creates it owns the version number (readers look for manifest.json only)
CLAIM = "_claim.json"


def _publish_remote(root: str, staging: Path, manifest: Manifest) -> str:
    """Object storage has no rename. A version number is claimed with a conditional create
    of ``v<N>/_claim.json`` (of two exports at once, one gets ``v<N>``, the other takes the
    next); shards are uploaded next and ``manifest.json`` last (a version without one is
    not a version to any reader); ``latest`` then moves forward only: it is replaced only
    if unchanged since read (If-Match), and never with an older version than it names."""
    fs, base = filesystem_for(root)
    fs.create_dir(base, recursive=True)
    name = _claim_version(root, fs, base, manifest)
    for shard in manifest.shards:
        pafs.copy_files(
            str(staging / shard.path),
            f"{base}/{name}/{shard.path}",
            source_filesystem=pafs.LocalFileSystem(),
            destination_filesystem=fs,
        )
    put_if(join_uri(root, name, MANIFEST), manifest.to_json().encode(), absent=True)
    _advance_latest(join_uri(root, LATEST), manifest.version)
    return join_uri(root, name)


def _claim_version(root: str, fs: pafs.FileSystem, base: str, manifest: Manifest) -> str:
    claim = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "id": uuid.uuid4().hex})
    for _ in range(_PUBLISH_ATTEMPTS):
        listing = fs.get_file_info(pafs.FileSelector(base, allow_not_found=True))
        manifest.version = _next_version(info.base_name for info in listing)
        name = f"v{manifest.version}"
        try:
            put_if(join_uri(root, name, CLAIM), claim.encode(), absent=True)
            return name
        except Precondition:  # another export claimed v<N> since we listed: list again
            continue
    raise ExportError(
        f"{_PUBLISH_ATTEMPTS} other exports of {manifest.model} claimed a version while this "
        "one did, each taking the number it chose; export again"
    )


def _advance_latest(uri: str, version: int) -> None:
    """Point ``latest`` at ``v<version>`` unless it already names a newer one; a
    compare-and-swap on the object's ETag, so two exports finishing at once never leave it
    on the older of their versions."""
    for _ in range(_PUBLISH_ATTEMPTS * 4):
        found = read_tagged(uri)
        if found is not None:
            text = found[0].decode(errors="replace").strip()
            if _at_or_past(text, version):
                return  # a newer version is published already: latest stays on it
        try:
            etag = None if found is None else found[1]
            put_if(uri, f"v{version}\n".encode(), absent=found is None, etag=etag)
            return
        except Precondition:
            continue  # another export moved latest meanwhile: read it again
    raise ExportError(f"{uri}: other exports kept moving it; v{version} is published, not latest")


def _schema_of(shard: Path) -> list[dict[str, str]]:
    with ipc.open_file(str(shard)) as reader:
        return [{"name": f.name, "type": str(f.type)} for f in reader.schema]


def _shard_metadata(
    project: Path,
    model: str,
    spec: ExportSpec,
    lineage: dict[str, Any],
    exported: tuple[str, ...],
) -> ShardMetadata:
    """What each shard's Arrow schema says about the data, from the model's dbt YAML (its
    description, each column's description and ``meta.unit``) and the export's lineage."""
    description, columns = model_docs(project, model)
    return ShardMetadata(
        schema_metadata(model, description, spec, lineage, columns, exported), columns
    )


def _lineage(con, project: Path, lake: str | None, model: str) -> dict[str, Any]:
    """Where the model's rows came from: the invocation that last built it successfully
    (not a later failed or partial one) and the bronze versions that invocation read."""
    finished = latest_finished_build(con)
    _refuse_unfinished_build(con, finished.invocation_id if finished else None)
    build = model_build(con, model)
    return {
        "lake": lake,
        "dbt_invocation_id": build.invocation_id if build else None,
        "bronze_versions": build.bronze_versions if build else {},
        # the manifest that build parsed, not whatever a later `dbt test` left in target/
        "dbt_manifest_sha256": build.manifest_sha256 if build else None,
        # the clock of the job that built it (the night it served), for people
        "as_of": build.as_of.isoformat() if build and build.as_of else None,
        "git_commit": _git_commit(project),
    }


def _refuse_unfinished_build(con, finished: str | None) -> None:
    """A dbt invocation killed mid-build leaves some models rebuilt and others not; its start
    is recorded but its end is not. Such a warehouse is not exported, gate or no gate."""
    started = latest_started(con)
    if started and started.invocation_id != finished:
        raise ExportError(
            f"the latest dbt invocation ({started.invocation_id}, started "
            f"{started.started_at}) did not finish: it was killed or crashed, so the warehouse "
            "may mix old and new models. Run `lakehouse build` (and `lakehouse validate`) "
            "again, then export"
        )


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
    model: str,
    lineage: dict[str, Any],
    quality_dir: Path | None,
    force: bool,
    content: str,
    suites: list[str],
) -> dict[str, Any]:
    """The latest gate result for ``model``; refuse a failed or stale one, one that did not
    run every suite (``suites``: a rule on bronze or another mart is a rule on what the model
    is made of), or a table whose content is not what the gate passed (``content``: its
    fingerprint now), unless forced."""
    problem, summary = None, {}
    try:
        record = GateRecord.read(quality_dir) if quality_dir else None
    except ValueError as error:  # refused like a failed gate (a 0-byte or edited file)
        return _verdict(str(error), {}, force)
    verdict = record.tables.get(model) if record else None
    if record is None:
        problem = (
            f"no data-quality gate result in {quality_dir}; run "
            f"`lakehouse validate --table {model}` first"
        )
    elif verdict is None:
        problem = f"the latest gate run ({record.run_id}) did not validate {model}"
    else:
        summary = {
            "run_id": record.run_id,
            "as_of": record.as_of,
            "passed": verdict.passed,
            "validated_invocation_id": verdict.dbt_invocation_id,
            "validated_fingerprint": verdict.fingerprint,  # the table content the gate passed
        }
        failed = {t.table: t.blocking_failures for t in record.tables.values() if not t.passed}
        unchecked = [name for name in suites if name not in record.tables]
        if not verdict.passed:
            problem = f"{model} failed the data-quality gate (run {record.run_id}): " + ", ".join(
                verdict.blocking_failures
            )
        elif failed:  # a rule on what the model is made of blocked the run
            problem = f"the data-quality gate blocked (run {record.run_id}): " + ", ".join(
                f"{table}: {', '.join(names)}" for table, names in sorted(failed.items())
            )
        elif unchecked:
            problem = (
                f"the latest gate run ({record.run_id}) did not validate "
                f"{', '.join(unchecked)}, which {model} is made of; run `lakehouse validate` "
                "with every suite"
            )
        elif verdict.dbt_invocation_id != lineage["dbt_invocation_id"]:
            problem = (
                f"the gate validated {model} as built by dbt invocation "
                f"{verdict.dbt_invocation_id}, but the warehouse now holds invocation "
                f"{lineage['dbt_invocation_id']}; run `lakehouse validate` again"
            )
        elif verdict.fingerprint != content:
            problem = (
                f"{model} is not the content the data-quality gate passed (run "
                f"{record.run_id}: {verdict.fingerprint or 'no fingerprint'}, now {content}): "
                "it changed outside dbt, or the gate never passed it; run `lakehouse validate`"
            )
    return _verdict(problem, summary, force)


def _verdict(problem: str | None, summary: dict[str, Any], force: bool) -> dict[str, Any]:
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
    versions = original.lineage.get("bronze_versions") or {}
    if not versions or any(v is None for v in versions.values()):
        raise ExportError(
            f"{manifest_path} was exported from a build that did not pin its bronze versions "
            "(a plain `dbt build`), so it cannot be rebuilt exactly; export from "
            "`lakehouse build` for a reproducible version"
        )
    with tempfile.TemporaryDirectory(prefix="lakehouse-reproduce-") as tmp:
        warehouse = Path(tmp) / "warehouse.duckdb"
        result = run_dbt(
            lake,
            warehouse,
            command="build",  # seeds too: `dbt run` skips them
            select=[f"+{original.model}"],
            versions=versions,
            project=project,
            quiet=True,
            pii_salt=DEMO_SALT if in_demo(lake) else None,  # a demo version: the demo key
        )
        if not result.success:
            detail = result.error or "; ".join(f"{n.name}: {n.message}" for n in result.failures)
            raise ExportError(f"rebuilding {original.model} from {lake} failed: {detail}")
        folder, again = export_model(
            warehouse,
            original.model,
            out,
            shard_rows=original.shard_rows,
            columns=original.columns,
            compression=original.compression,
            force=True,
            project=project,
            lake=lake,
            vocabularies=original.vocabularies,  # the codes it had
        )
    before = {s.path: s.sha256 for s in original.shards}
    after = {s.path: s.sha256 for s in again.shards}
    differ = sorted(p for p in before.keys() | after.keys() if before.get(p) != after.get(p))
    return folder, differ
