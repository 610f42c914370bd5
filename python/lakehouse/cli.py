"""`lakehouse` command line: parses arguments, calls the layer packages, prints once.

Errors raised by the layers carry a message a user can act on; they are printed here,
once, without a traceback, and turn into a non-zero exit code.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from deltalake.exceptions import DeltaError
from rich.console import Console
from rich.table import Table

from lakehouse import __version__
from lakehouse.export.writer import ExportError
from lakehouse.ingest import IngestError, IngestReport, ingest
from lakehouse.progress import (
    RichIngestProgress,
    RichRowProgress,
    RichStepProgress,
    make_console,
)
from lakehouse.quality.suites import SuiteError
from lakehouse.storage import describe_storage_error, normalize_uri
from lakehouse.synth import MANIFEST, GenerateConfig, generate
from lakehouse.warehouse import (
    DEFAULT_DUCKDB,
    BuildResult,
    WarehouseError,
    bronze_versions,
    project_dir,
    run_dbt,
)

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
MODEL = "photo_popularity_training"


# errors the layers raise with a message for the user, and storage errors (disk full,
# permissions, storage unreachable): printed as one line, never as a traceback
LAYER_ERRORS = (IngestError, WarehouseError, SuiteError, ExportError)
FAILURES = (*LAYER_ERRORS, OSError, DeltaError)


def failure_reason(exc: BaseException) -> str:
    """The one line printed for a failure in ``FAILURES``."""
    if isinstance(exc, LAYER_ERRORS):
        return str(exc)
    return (
        f"{describe_storage_error(exc)}; nothing half-written was published "
        "(free space or fix permissions, then run again)"
    )


@dataclass(frozen=True)
class Outcome:
    """A step's exit code and its line in the nightly job's summary."""

    code: int
    rows: str = ""
    detail: str = ""
    reason: str = ""  # why it failed, one line


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lakehouse",
        description=(
            "From raw app logs to training batches. `ingest` lands files into bronze Delta "
            "tables (with quarantine and an ingest log); `build` turns them into a DuckDB "
            "warehouse with dbt; `validate` is the data-quality gate; `export` writes Arrow "
            "shards; `train` reads them with the PyTorch loader. `run` is the nightly job "
            "(ingest -> build -> validate -> export) on local or s3:// paths; `demo` generates "
            "sample data, runs the job and trains on it."
        ),
        epilog="Run `lakehouse <command> --help` for the options of one command.",
    )
    parser.add_argument("--version", action="version", version=f"lakehouse {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="<command>")

    gen = commands.add_parser(
        "generate",
        help="write realistic sample landing data (events, photos, users, embeddings)",
        description=(
            "Write what a photo-sharing app dumps: events/*.jsonl.gz (daily interaction "
            "logs), photos/*.jsonl, users/*.csv (with PII) and embeddings/*.parquet. "
            "Deterministic for a seed and an end date; streams a day at a time. With "
            "--dirty-rate, broken rows of every kind ingest must handle are mixed in and "
            "counted in <out>/_generator.json."
        ),
    )
    gen.add_argument(
        "--out",
        type=Path,
        default=Path("data/landing"),
        help="landing folder to write (default: data/landing)",
    )
    gen.add_argument("--users", type=_positive, default=5_000, help="number of users")
    gen.add_argument("--photos", type=_positive, default=50_000, help="number of photos")
    gen.add_argument("--days", type=_positive, default=60, help="days of activity")
    gen.add_argument(
        "--events",
        type=_positive,
        default=None,
        help="total events, approximately (default: 40 per photo)",
    )
    gen.add_argument("--seed", type=int, default=7, help="random seed (default: 7)")
    gen.add_argument(
        "--dirty-rate",
        type=_rate,
        default=0.0,
        help="fraction of rows that get a broken sibling row (e.g. 0.01)",
    )
    gen.add_argument(
        "--end",
        type=_date,
        default=datetime(2026, 11, 1, tzinfo=UTC),
        help="last day of activity, exclusive, YYYY-MM-DD (default: 2026-11-01)",
    )

    ing = commands.add_parser(
        "ingest",
        help="land landing files into bronze Delta tables",
        description=(
            "Land every new file under LANDING (users/, photos/, embeddings/, events/) into "
            "<lake>/bronze/<table> as one Delta commit per file. Files already ingested "
            "(same content hash) are skipped. Rows that fail parsing or the schema go to "
            "<lake>/bronze/_quarantine with file, line, raw text and reason; per-file counts "
            "go to <lake>/bronze/_ingest_log. Exit code 1 when any file could not be read."
        ),
    )
    ing.add_argument("landing", help="landing folder: local path or s3://bucket/prefix")
    ing.add_argument("--lake", default="lake", help="lake root (default: ./lake)")
    ing.add_argument(
        "--table",
        action="append",
        dest="tables",
        choices=["users", "photos", "photo_embeddings", "events"],
        help="only this bronze table (repeatable)",
    )

    bld = commands.add_parser(
        "build",
        help="build the DuckDB warehouse from bronze with dbt (`dbt build`, versions pinned)",
        description=(
            "Run the dbt project at the repo root (`dbt build`: seeds, models, data and unit "
            "tests) on DuckDB, reading the bronze Delta tables of --lake. The current Delta "
            "version of every bronze table is pinned for the whole run and recorded in the "
            "warehouse table lakehouse_bronze_reads. Exit code follows dbt: 0 ok, 1 a model or "
            "test failed, 2 dbt could not run. Analysts can run `dbt build` directly too."
        ),
    )
    bld.add_argument("--lake", default="data/demo/lake", help="lake root (default: data/demo/lake)")
    bld.add_argument(
        "--warehouse",
        default=DEFAULT_DUCKDB,
        help=f"DuckDB file to build (default: {DEFAULT_DUCKDB})",
    )
    bld.add_argument(
        "--select",
        nargs="+",
        default=None,
        help="dbt node selection, e.g. +photo_popularity_training",
    )
    bld.add_argument(
        "--bronze-version",
        action="append",
        default=[],
        metavar="TABLE=VERSION",
        help="read a bronze table at an older Delta version (repeatable); "
        "others are pinned at their current version",
    )
    bld.add_argument(
        "--full-refresh",
        action="store_true",
        help="rebuild incremental models (fct_events) from scratch",
    )

    val = commands.add_parser(
        "validate",
        help="run the data-quality gate (Great Expectations suites in expectations/)",
        description=(
            "Run the suites in expectations/ against the bronze tables of --lake and the "
            "warehouse. Writes result.json, junit.xml and report.html to --out (and keeps each "
            "run under --out/runs/ so the next run shows what changed). Exit code 1 when a "
            "blocking expectation fails, 0 otherwise (warnings do not block)."
        ),
    )
    val.add_argument("--lake", default="data/demo/lake", help="lake root (default: data/demo/lake)")
    val.add_argument(
        "--warehouse", default=DEFAULT_DUCKDB, help=f"DuckDB file (default: {DEFAULT_DUCKDB})"
    )
    val.add_argument(
        "--table",
        action="append",
        dest="tables",
        help="validate only this suite (repeatable), e.g. photo_popularity_training",
    )
    val.add_argument(
        "--out",
        type=Path,
        default=Path("data/demo/quality"),
        help="folder for the reports (default: data/demo/quality)",
    )
    val.add_argument(
        "--as-of",
        type=_timestamp,
        default=None,
        help="the time freshness is measured against (default: now), ISO-8601",
    )

    exp = commands.add_parser(
        "export",
        help="write a mart into versioned Arrow IPC shards with a lineage manifest",
        description=(
            "Stream MODEL out of the warehouse into <out>/<model>/v<N>/<split>/part-NNNNN.arrow "
            "(fixed row count, rows ordered by photo_id, tensor-ready types, no strings) and "
            "<out>/<model>/v<N>/manifest.json; `latest` then points at v<N>. Refuses a model "
            "whose latest data-quality gate failed or validated an older build, unless --force "
            "(recorded in the manifest). With --reproduce MANIFEST, rebuilds the model from the "
            "bronze Delta versions the manifest recorded and checks the shards are identical."
        ),
    )
    exp.add_argument("model", nargs="?", help="the mart, e.g. photo_popularity_training")
    exp.add_argument(
        "--out",
        type=Path,
        default=Path("data/demo/shards"),
        help="shard root (default: data/demo/shards)",
    )
    exp.add_argument(
        "--warehouse", default=DEFAULT_DUCKDB, help=f"DuckDB file (default: {DEFAULT_DUCKDB})"
    )
    exp.add_argument(
        "--lake",
        default=None,
        help="lake root, recorded for --reproduce (default: data/demo/lake; with "
        "--reproduce, the lake the manifest recorded)",
    )
    exp.add_argument("--shard-rows", type=_positive, default=65_536, help="rows per shard")
    exp.add_argument("--columns", nargs="+", default=None, help="columns to export (default: all)")
    exp.add_argument(
        "--compression",
        choices=["lz4", "zstd"],
        default=None,
        help="Arrow IPC buffer compression (default: none, fastest to load)",
    )
    exp.add_argument(
        "--quality-dir",
        type=Path,
        default=Path("data/demo/quality"),
        help="where `lakehouse validate` wrote result.json",
    )
    exp.add_argument(
        "--force",
        action="store_true",
        help="export even without a passing, current gate result (recorded)",
    )
    exp.add_argument(
        "--reproduce",
        type=Path,
        metavar="MANIFEST",
        help="rebuild and re-export the version this manifest describes",
    )

    shards = commands.add_parser("shards", help="look at or check exported shards")
    shard_commands = shards.add_subparsers(dest="shards_command", required=True)
    inspect = shard_commands.add_parser("inspect", help="print a version's manifest readably")
    inspect.add_argument("path", type=Path, help="a version folder, `latest`, or a manifest.json")
    check = shard_commands.add_parser(
        "verify", help="re-check every shard's size and sha256 against the manifest"
    )
    check.add_argument("path", type=Path, help="a version folder, `latest`, or a manifest.json")

    trn = commands.add_parser(
        "train",
        help="train a small model on exported shards (proves the loader end to end)",
        description=(
            "Train a small MLP for a few epochs on the train split of a shard version with "
            "ShardDataset + GPUPrefetcher, then compare its validation MSE with the constant "
            "predictor (the train mean). Exits 1 when the model does not beat the baseline."
        ),
    )
    trn.add_argument(
        "shards",
        nargs="?",
        default="data/demo/shards/photo_popularity_training/latest",
        help="a shard version: folder, `latest`, or s3://…/latest (fetched into "
        "$LAKEHOUSE_CACHE, default ~/.cache/lakehouse) (default: the demo's latest)",
    )
    trn.add_argument("--epochs", type=_positive, default=4, help="passes over train (default: 4)")
    trn.add_argument("--batch-size", type=_positive, default=512, help="default: 512")
    trn.add_argument(
        "--workers", type=int, default=2, help="DataLoader worker processes (default: 2)"
    )
    trn.add_argument(
        "--device", default="cuda", help="cuda or cpu; cuda falls back to cpu (default: cuda)"
    )
    trn.add_argument("--seed", type=int, default=0, help="shuffle and init seed (default: 0)")

    run = commands.add_parser(
        "run",
        help="the nightly job: ingest -> dbt build -> quality gate -> export",
        description=(
            "Run the whole job once: ingest --landing into --lake, build the warehouse with "
            "dbt, run the data-quality gate, export the training set to --out. A step runs "
            "only after the one before succeeded (nothing is exported after a failed gate); "
            "the job ends with a summary of every step (rows, versions, seconds) and exits 1 "
            "with the reason when a step fails. Paths may be local or s3:// URIs."
        ),
    )
    run.add_argument("--landing", required=True, help="landing folder or s3://bucket/prefix")
    run.add_argument("--lake", required=True, help="lake root, local or s3://bucket/prefix")
    run.add_argument("--out", required=True, help="shard root, local or s3://bucket/prefix")
    run.add_argument(
        "--warehouse", default=DEFAULT_DUCKDB, help=f"DuckDB file (default: {DEFAULT_DUCKDB})"
    )
    run.add_argument(
        "--quality-dir",
        type=Path,
        default=None,
        help="gate reports (default: quality/ next to the warehouse file)",
    )
    run.add_argument("--model", default=MODEL, help=f"mart to export (default: {MODEL})")
    run.add_argument(
        "--as-of",
        type=_timestamp,
        default=None,
        help="the time the gate measures freshness against (default: now; set it to replay "
        "a past night's landing folder), ISO-8601",
    )
    run.add_argument("--shard-rows", type=_positive, default=65_536, help="rows per shard")

    demo = commands.add_parser(
        "demo",
        help="generate sample data and run the pipeline on it (the README's main job)",
        description=(
            "Generate a sample landing folder up to today (1%% dirty rows), ingest it into a "
            "local lake, build the DuckDB warehouse with dbt, run the data-quality gate, "
            "export the training set to Arrow shards and train a small model on them."
        ),
    )
    demo.add_argument(
        "--workdir",
        type=Path,
        default=Path("data/demo"),
        help="folder for landing/ and lake/ (default: data/demo)",
    )
    demo.add_argument("--dirty-rate", type=_rate, default=0.01)
    demo.add_argument("--seed", type=int, default=7)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    console = make_console()
    err = make_console(stderr=True)
    try:
        if args.command == "generate":
            return _generate(args, console, err)
        if args.command == "ingest":
            return _ingest(args.landing, args.lake, args.tables, console, err).code
        if args.command == "build":
            return _build(
                args.lake,
                args.warehouse,
                args.select,
                args.bronze_version,
                args.full_refresh,
                console,
                err,
            ).code
        if args.command == "validate":
            return _validate(
                args.warehouse, args.lake, args.tables, args.out, args.as_of, console, err
            ).code
        if args.command == "export":
            return _export(args, console).code
        if args.command == "run":
            return _run(args, console, err)
        if args.command == "shards":
            return _shards(args, console, err)
        if args.command == "train":
            return _train(args.shards, args, console, err)
        if args.command == "demo":
            return _demo(args, console, err)
    except FAILURES as exc:
        err.print(f"[bold red]error:[/] {failure_reason(exc)}", highlight=False)
        return EXIT_FAILED
    except KeyboardInterrupt:
        err.print("[bold red]interrupted[/]: nothing half-written was committed")
        return 130
    return EXIT_USAGE


def _generate(args: argparse.Namespace, console: Console, err: Console) -> int:
    config = GenerateConfig(
        out=args.out,
        users=args.users,
        photos=args.photos,
        days=args.days,
        events=args.events,
        seed=args.seed,
        dirty_rate=args.dirty_rate,
        end=args.end,
    )
    with RichStepProgress(err, "generate") as progress:
        report = generate(config, progress)
    table = Table(title=f"landing data in {args.out}")
    for column in ("source", "files", "clean rows", "rows written", "dirty rows injected"):
        table.add_column(column, justify="right" if column != "source" else "left")
    for name, stats in report.tables.items():
        table.add_row(
            name,
            str(len(stats.files)),
            f"{stats.clean_rows:,}",
            f"{stats.rows_written:,}",
            f"{sum(stats.injected.values()):,}",
        )
    console.print(table)
    return EXIT_OK


def _ingest(
    landing: str, lake: str, tables: list[str] | None, console: Console, err: Console
) -> Outcome:
    progress = RichIngestProgress(err)
    try:
        report = ingest(landing, lake, tables=tables, progress=progress)
    finally:
        progress.stop()
    print_ingest_report(report, console)
    console.print(f"lake written to {lake}; quarantine at {lake}/bronze/_quarantine")
    for failed in report.failed:
        err.print(f"[bold red]error:[/] {failed.error}", highlight=False)
    files = report.files
    return Outcome(
        EXIT_OK if report.ok else EXIT_FAILED,
        rows=(
            f"{sum(f.rows_landed for f in files):,} landed, "
            f"{sum(f.rows_quarantined for f in files):,} quarantined, "
            f"{sum(f.rows_duplicate for f in files):,} duplicate"
        ),
        detail=(
            f"{sum(f.status == 'ingested' for f in files)} files ingested, "
            f"{sum(f.status == 'skipped' for f in files)} already in bronze"
        ),
        reason="; ".join(str(f.error) for f in report.failed),
    )


def print_ingest_report(report: IngestReport, console: Console) -> None:
    table = Table(title=f"ingest run {report.run_id} into {report.lake}/bronze")
    for column in ("table", "files", "skipped", "failed", "read", "landed", "quarantined", "dupes"):
        table.add_column(column, justify="left" if column == "table" else "right")
    for name in dict.fromkeys(f.table for f in report.files):
        files = [f for f in report.files if f.table == name]
        table.add_row(
            name,
            str(sum(f.status == "ingested" for f in files)),
            str(sum(f.status == "skipped" for f in files)),
            str(sum(f.status == "failed" for f in files)),
            *(
                f"{sum(getattr(f, a) for f in files):,}"
                for a in ("rows_read", "rows_landed", "rows_quarantined", "rows_duplicate")
            ),
        )
    console.print(table)
    reasons: dict[str, int] = {}
    for f in report.files:
        for code, count in f.reasons.items():
            reasons[code] = reasons.get(code, 0) + count
    if reasons:
        detail = ", ".join(f"{code} {count:,}" for code, count in sorted(reasons.items()))
        console.print(f"quarantined by reason: {detail}", highlight=False)
    for f in report.files:  # a whole file rejected is rarely bad rows: more likely its layout
        if f.rows_read >= 10 and f.rows_quarantined > 0.5 * f.rows_read:
            top = ", ".join(f"{code} {n:,}" for code, n in f.reasons.most_common(2))
            console.print(
                f"[yellow]warning[/]: {f.rows_quarantined:,} of {f.rows_read:,} rows of "
                f"{f.source_file} were quarantined ({top}); does its header or layout match the "
                f"{f.table} contract?",
                highlight=False,
            )
    if report.ignored:
        console.print(
            f"[yellow]ignored[/] (no bronze table for their folder): {', '.join(report.ignored)}",
            highlight=False,
        )


def _build(
    lake: str,
    warehouse: str,
    select: list[str] | None,
    overrides: list[str],
    full_refresh: bool,
    console: Console,
    err: Console,
) -> Outcome:
    versions = bronze_versions(normalize_uri(lake))
    for item in overrides:
        table, _, version = item.partition("=")
        if table not in versions or not version.isdigit():
            raise WarehouseError(
                f"--bronze-version expects TABLE=VERSION with TABLE one of "
                f"{', '.join(versions)}; got {item!r}"
            )
        versions[table] = int(version)
    result = run_dbt(
        lake,
        warehouse,
        select=select,
        versions=versions,
        full_refresh=full_refresh,
        project=project_dir(),
    )
    print_build_report(result, warehouse, console)
    if result.error:
        err.print(f"[bold red]error:[/] dbt could not run: {result.error}", highlight=False)
    done = [n for n in result.nodes if n.status in ("success", "pass")]
    return Outcome(
        result.exit_code,
        rows=(
            f"{sum(n.resource_type == 'model' for n in done)} models, "
            f"{sum(n.resource_type != 'model' for n in done)} tests/seeds ok"
        ),
        detail="bronze " + ", ".join(f"{t}@v{v}" for t, v in result.bronze_versions.items()),
        reason=(
            f"dbt could not run: {result.error}"
            if result.error
            else "; ".join(f"{n.resource_type} {n.name}: {n.status}" for n in result.failures)
        ),
    )


def print_build_report(result: BuildResult, warehouse: str, console: Console) -> None:
    table = Table(title=f"dbt build into {warehouse} (invocation {result.invocation_id})")
    for column in ("resource", "ok", "failed", "skipped", "seconds"):
        table.add_column(column, justify="left" if column == "resource" else "right")
    for kind in ("seed", "model", "test", "unit_test"):
        nodes = [n for n in result.nodes if n.resource_type == kind]
        if nodes:
            table.add_row(
                kind,
                str(sum(n.status in ("success", "pass") for n in nodes)),
                str(sum(n.status in ("error", "fail") for n in nodes)),
                str(sum(n.status == "skipped" for n in nodes)),
                f"{sum(n.seconds for n in nodes):.1f}",
            )
    console.print(table)
    pinned = ", ".join(f"{t}@v{v}" for t, v in result.bronze_versions.items())
    console.print(f"bronze read at: {pinned}", highlight=False)
    for failure in result.failures:
        console.print(
            f"[red]{failure.status}[/] {failure.resource_type} {failure.name}: {failure.message}",
            highlight=False,
        )


def _validate(
    warehouse: str,
    lake: str,
    tables: list[str] | None,
    out: Path,
    as_of: datetime | None,
    console: Console,
    err: Console,
) -> Outcome:
    from lakehouse.quality import validate

    report, data = validate(warehouse, lake, tables=tables, out=out, as_of=as_of)
    table = Table(title=f"data-quality gate, run {report.run_id} (as of {report.as_of})")
    for column in ("table", "rows", "expectations", "passed", "blocking failed", "warnings"):
        table.add_column(column, justify="left" if column == "table" else "right")
    for t in report.tables:
        table.add_row(
            t.table,
            f"{t.rows:,}",
            str(len(t.results)),
            str(sum(r.success for r in t.results)),
            str(sum(not r.success and r.severity == "blocking" for r in t.results)),
            str(sum(not r.success and r.severity == "warning" for r in t.results)),
        )
    console.print(table)
    for r in report.blocking_failures + report.warnings:
        label = "[red]BLOCKING[/]" if r.severity == "blocking" else "[yellow]warning[/]"
        detail = r.error or f"observed {r.observed_value!r}, {r.unexpected_count} unexpected"
        examples = f", e.g. {r.examples[:3]}" if r.examples else ""
        console.print(f"{label} {r.table}: {r.name}: {detail}{examples}", highlight=False)
    for change in data.get("changes", [])[:20]:
        console.print(
            f"changed since last run: {change['table']}.{change['metric']} "
            f"{change['previous']} -> {change['current']}",
            highlight=False,
        )
    verdict = "[green]passed[/]" if report.passed else "[bold red]blocked[/]"
    console.print(f"gate {verdict}; reports in {out}/ (result.json, junit.xml, report.html)")
    return Outcome(
        EXIT_OK if report.passed else EXIT_FAILED,
        rows=f"{sum(t.rows for t in report.tables):,} rows in {len(report.tables)} tables",
        detail=(
            f"run {report.run_id}: "
            f"{sum(len(t.results) for t in report.tables)} expectations, "
            f"{len(report.warnings)} warnings"
        ),
        reason=(
            "the data-quality gate blocked: "
            + ", ".join(f"{r.table}: {r.name}" for r in report.blocking_failures)
            + f" (reports in {out}/)"
        ),
    )


def _export(args: argparse.Namespace, console: Console) -> Outcome:
    from lakehouse.export import export_model, reproduce

    if args.reproduce:
        folder, differ = reproduce(args.reproduce, args.out, lake=args.lake)
        if differ:
            console.print(
                f"[red]not reproduced[/]: {len(differ)} shard(s) differ: {', '.join(differ[:10])}",
                highlight=False,
            )
            return Outcome(EXIT_FAILED, reason=f"{len(differ)} shard(s) differ")
        console.print(
            f"reproduced {args.reproduce} in {folder}: every shard's sha256 matches",
            highlight=False,
        )
        return Outcome(EXIT_OK)
    if not args.model:
        raise ExportError(
            "name the model to export, e.g. `lakehouse export "
            "photo_popularity_training`, or pass --reproduce MANIFEST"
        )
    with RichRowProgress(make_console(stderr=True), f"export {args.model}") as progress:
        folder, manifest = export_model(
            args.warehouse,
            args.model,
            args.out,
            shard_rows=args.shard_rows,
            columns=args.columns,
            compression=args.compression,
            quality_dir=args.quality_dir,
            force=args.force,
            lake=normalize_uri(args.lake or "data/demo/lake"),
            on_rows=progress,
        )
    _print_manifest(manifest, folder, console)
    if manifest.quality_gate.get("forced"):
        console.print(f"[yellow]forced[/]: {manifest.quality_gate['reason']}", highlight=False)
    totals = manifest.totals
    return Outcome(
        EXIT_OK,
        rows=", ".join(f"{split} {rows:,}" for split, rows in sorted(totals.items())),
        detail=f"{manifest.model} v{manifest.version}, {len(manifest.shards)} shards in {folder}",
    )


def _version_dir(path: Path) -> Path:
    return path.parent if path.name == "manifest.json" else path.resolve()


def _shards(args: argparse.Namespace, console: Console, err: Console) -> int:
    from lakehouse.export import MANIFEST, Manifest, verify

    folder = _version_dir(args.path)
    if not (folder / MANIFEST).exists():
        raise ExportError(f"no {MANIFEST} in {folder}: not a shard version folder")
    if args.shards_command == "inspect":
        _print_manifest(Manifest.read(folder / MANIFEST), folder, console)
        return EXIT_OK
    problems = verify(folder)
    for problem in problems:
        err.print(f"[bold red]corrupt:[/] {folder}/{problem}", highlight=False)
    if not problems:
        console.print(f"{folder}: every shard matches its size and sha256", highlight=False)
    return EXIT_FAILED if problems else EXIT_OK


def _print_manifest(manifest, folder: Path, console: Console) -> None:
    table = Table(title=f"{manifest.model} v{manifest.version} in {folder}")
    for column in ("split", "shards", "rows", "MB"):
        table.add_column(column, justify="left" if column == "split" else "right")
    for split, rows in manifest.totals.items():
        shards = [s for s in manifest.shards if s.split == split]
        table.add_row(
            split, str(len(shards)), f"{rows:,}", f"{sum(s.bytes for s in shards) / 1e6:.1f}"
        )
    console.print(table)
    console.print(
        "columns: " + ", ".join(f"{c['name']} {c['type']}" for c in manifest.schema),
        highlight=False,
    )
    lineage = manifest.lineage
    console.print(
        f"built by dbt invocation {lineage.get('dbt_invocation_id')} from bronze "
        + ", ".join(f"{t}@v{v}" for t, v in lineage.get("bronze_versions", {}).items())
        + f"; git {str(lineage.get('git_commit'))[:12]}; gate run "
        f"{manifest.quality_gate.get('run_id')} "
        f"({'forced' if manifest.quality_gate.get('forced') else 'passed'})",
        highlight=False,
    )


def _demo(args: argparse.Namespace, console: Console, err: Console) -> int:
    workdir: Path = args.workdir
    landing = workdir / "landing"
    console.rule("generate sample landing data (up to today, like last night's dump)")
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    _discard_stale_demo(workdir, today, console)
    generate_args = argparse.Namespace(
        out=landing,
        users=2_000,
        photos=20_000,
        days=45,
        events=None,
        seed=args.seed,
        dirty_rate=args.dirty_rate,
        end=today,
    )
    _generate(generate_args, console, err)
    run_args = argparse.Namespace(
        landing=str(landing),
        lake=str(workdir / "lake"),
        out=str(workdir / "shards"),
        warehouse=str(workdir / "warehouse.duckdb"),
        quality_dir=workdir / "quality",
        model=MODEL,
        shard_rows=65_536,
        as_of=None,
    )
    code = _run(run_args, console, err)
    if code != EXIT_OK:
        return code
    console.rule("train a small model on the shards (ShardDataset + GPUPrefetcher)")
    train_args = argparse.Namespace(epochs=4, batch_size=512, workers=2, device="cuda", seed=0)
    return _train(workdir / "shards" / MODEL / "latest", train_args, console, err)


def _run(args: argparse.Namespace, console: Console, err: Console) -> int:
    """The nightly job: each step only after the one before succeeded, then one summary."""
    lake, warehouse = args.lake, args.warehouse
    quality_dir = args.quality_dir or Path(warehouse).parent / "quality"
    export_args = argparse.Namespace(
        model=args.model,
        out=args.out,
        warehouse=warehouse,
        lake=lake,
        shard_rows=args.shard_rows,
        columns=None,
        compression=None,
        quality_dir=quality_dir,
        force=False,
        reproduce=None,
    )
    steps = [
        ("ingest", lambda: _ingest(args.landing, lake, None, console, err)),
        ("dbt build", lambda: _build(lake, warehouse, None, [], False, console, err)),
        (
            "quality gate",
            lambda: _validate(warehouse, lake, None, quality_dir, args.as_of, console, err),
        ),
        ("export", lambda: _export(export_args, console)),
    ]
    summary = Table(title=f"nightly job: {args.landing} -> {lake} -> {warehouse} -> {args.out}")
    for column in ("step", "status", "rows", "versions / result", "seconds"):
        summary.add_column(column, justify="right" if column == "seconds" else "left")
    failed: tuple[str, str] | None = None
    for number, (name, step) in enumerate(steps, start=1):
        console.rule(f"{number}/{len(steps)} {name}")
        started = time.perf_counter()
        try:
            outcome = step()
        except FAILURES as exc:
            outcome = Outcome(EXIT_FAILED, reason=failure_reason(exc))
        seconds = f"{time.perf_counter() - started:.1f}"
        ok = outcome.code == EXIT_OK
        status = "[green]ok[/]" if ok else "[bold red]failed[/]"
        summary.add_row(name, status, outcome.rows, outcome.detail, seconds)
        if not ok:
            failed = (name, outcome.reason or "see the output above")
            for later, _ in steps[number:]:
                summary.add_row(later, "[dim]not run[/]", "", "", "")
            break
    console.print(summary)
    if failed:
        err.print(f"[bold red]nightly job failed[/] at {failed[0]}: {failed[1]}", highlight=False)
        return EXIT_FAILED
    console.print("[green]nightly job done[/]", highlight=False)
    return EXIT_OK


def _train(shards: str | Path, args: argparse.Namespace, console: Console, err: Console) -> int:
    from lakehouse.loader import LoaderError
    from lakehouse.loader.training import train_popularity_model

    try:
        with RichStepProgress(console, "train") as progress:
            report = train_popularity_model(
                shards,
                epochs=args.epochs,
                batch_size=args.batch_size,
                workers=args.workers,
                device=args.device,
                seed=args.seed,
                on_step=progress,
            )
    except LoaderError as exc:
        err.print(f"[bold red]error:[/] {exc}", highlight=False)
        return EXIT_FAILED
    console.print(
        f"trained {report.epochs} epochs on {report.train_samples:,} samples on "
        f"{report.device}: {report.samples_per_second:,.0f} samples/s",
        highlight=False,
    )
    verdict = "[green]beats[/]" if report.beats_baseline else "[bold red]does not beat[/]"
    console.print(
        f"validation MSE of log1p(likes_7d): model {report.val_mse:.4f} {verdict} the "
        f"constant baseline {report.baseline_mse:.4f}",
        highlight=False,
    )
    return EXIT_OK if report.beats_baseline else EXIT_FAILED


def _discard_stale_demo(workdir: Path, today: datetime, console: Console) -> None:
    """A demo folder from another day holds a different sample under the same file names
    and ids; mixing the two would corrupt the lake, so the demo starts over."""
    manifest = workdir / "landing" / MANIFEST
    if not manifest.exists():
        return
    try:
        end = json.loads(manifest.read_text())["config"]["end"]
    except (OSError, ValueError, KeyError):
        end = None
    if end == str(today):
        return
    console.print(f"sample data in {workdir} was generated for another day; starting over")
    for part in (
        "landing",
        "lake",
        "warehouse.duckdb",
        "warehouse.duckdb.wal",
        "quality",
        "shards",
    ):
        target = workdir / part
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()


def _positive(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _rate(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


def _timestamp(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected an ISO-8601 time, got {text}") from exc
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _date(text: str) -> datetime:
    try:
        return datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected YYYY-MM-DD, got {text}") from exc


if __name__ == "__main__":
    sys.exit(main())
