"""`lakehouse` command line: parses arguments, calls the public Python API, prints once.

The job and its steps live in :mod:`lakehouse.job`; paths and their defaults in
:mod:`lakehouse.layout`; how results look in :mod:`lakehouse.console`. Errors the layers raise
carry a message a user can act on; they are printed here, once, without a traceback, and
turn into exit code 1 (2 for bad arguments). Heavy layers are imported by the command that
needs them, so ``lakehouse train`` and ``shards`` run with only the loader installed; the other
commands then name the extra to install (exit code 2).
"""

from __future__ import annotations

import argparse
import os
import sys
from contextlib import nullcontext
from datetime import UTC, datetime
from pathlib import Path

from lakehouse import __version__
from lakehouse.job import DEFAULT_MODEL as MODEL  # light: the job imports layers when it runs
from lakehouse.layout import DEFAULT_ROOT, Layout
from lakehouse.printable import shown
from lakehouse.progress import make_console
from lakehouse.shardformat import DEFAULT_SHARD_ROWS, LATEST, MANIFEST

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
DEFAULTS = Layout.from_root()
PATH_HELP = {
    "landing": "landing folder: local path or s3://bucket/prefix",
    "lake": f"lake root, local or s3:// (default: $LAKEHOUSE_LAKE, else {DEFAULTS.lake})",
    "warehouse": f"DuckDB file (default: $LAKEHOUSE_DUCKDB, else {DEFAULTS.warehouse})",
    "quality": "gate reports folder (default: quality/ next to the warehouse file)",
    "out": f"shard root, local or s3:// (default: {DEFAULTS.shards})",
    "store": "online store: a SQLite file or redis://host:port/db (default: "
    "$LAKEHOUSE_ONLINE_STORE, else online/features.sqlite next to the warehouse)",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lakehouse",
        description=(
            "From raw app logs to training batches. `ingest` lands files into bronze Delta "
            "tables (with quarantine and an ingest log); `build` turns them into a DuckDB "
            "warehouse with dbt; `validate` is the data-quality gate; `export` writes Arrow "
            "shards; `train` reads them with the PyTorch loader. `run` is the nightly job "
            "(ingest -> build -> validate -> export -> materialize) on local or s3:// paths; "
            "`features` and `predict` read the online feature store; `demo` generates "
            "sample data, runs the job and trains on it."
        ),
        epilog="Run `lakehouse <command> --help` for the options of one command.",
    )
    parser.add_argument("--version", action="version", version=f"lakehouse {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="<command>")
    for add in (
        _generate,
        _ingest,
        _build,
        _dbt_vars,
        _attach,
        _spark_cluster,
        _validate,
        _export,
        _materialize,
        _features,
        _shards,
        _train,
        _predict,
        _run,
        _demo,
    ):
        add(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    console, err = make_console(), make_console(stderr=True)
    from lakehouse.clock import ClockError, check_as_of
    from lakehouse.job import failure_reason, user_errors

    try:
        check_as_of(getattr(args, "as_of", None), allow_future=getattr(args, "allow_future", False))
    except ClockError as exc:
        err.print(f"[bold red]error:[/] {shown(str(exc))}", highlight=False)
        return EXIT_USAGE

    try:
        return args.handler(args, console, err)
    except user_errors() as exc:
        err.print(f"[bold red]error:[/] {shown(failure_reason(exc))}", highlight=False)
        return EXIT_FAILED
    except ModuleNotFoundError as exc:
        extra = missing_extra(exc.name or "")
        if extra is None:
            raise
        err.print(
            f"[bold red]error:[/] `lakehouse {args.command}` needs the \\[{extra}] extra, and "
            f"{exc.name} is not installed: pip install 'lakehouse\\[{extra}]'",
            highlight=False,
        )
        return EXIT_USAGE
    except KeyboardInterrupt:
        err.print("[bold red]interrupted[/]: nothing half-written was committed")
        return 130


# distributions whose module has another name
_MODULE_OF = {"dbt-core": "dbt", "pyyaml": "yaml"}
_EXTRAS = ("loader", "pipeline", "serve", "orchestrate", "spark")  # the extras a user installs


def missing_extra(module: str) -> str | None:
    """The extra of this package (pyproject.toml's optional dependencies) that installs
    ``module``, or None when none does. Read from the installed package's own metadata, so
    the extras are named in one place."""
    import re
    from importlib.metadata import PackageNotFoundError, requires

    top = module.split(".")[0]
    try:
        requirements = requires("lakehouse") or []
    except PackageNotFoundError:
        return None
    extras = []
    for text in requirements:  # e.g. 'duckdb<1.6,>=1.5; extra == "pipeline"'
        name = re.match(r"[A-Za-z0-9._-]+", text)
        extra = re.search(r"""extra\s*==\s*["']([\w-]+)["']""", text)
        if name and extra:
            distribution = name.group(0).lower()
            if _MODULE_OF.get(distribution, distribution.replace("-", "_")) == top:
                extras.append(extra.group(1))
    # the smallest extra a user would install for it, before dev and bench
    return min(extras, key=lambda e: (*_EXTRAS, e).index(e)) if extras else None


def _layout(args: argparse.Namespace) -> Layout:
    """The command's paths: the defaults, with what the command line says on top."""
    return DEFAULTS.override(
        landing=getattr(args, "landing", None),
        lake=getattr(args, "lake", None),
        warehouse=getattr(args, "warehouse", None),
        quality=getattr(args, "quality_dir", None),
        shards=getattr(args, "out", None),
        online=getattr(args, "store", None),
    )


def _path_options(command: argparse.ArgumentParser, *names: str) -> None:
    flags = {"quality": "--quality-dir"}
    for name in names:
        command.add_argument(flags.get(name, f"--{name}"), default=None, help=PATH_HELP[name])


def _shard_rows_option(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--shard-rows",
        type=_positive,
        default=DEFAULT_SHARD_ROWS,
        help=f"rows per shard (default: {DEFAULT_SHARD_ROWS:,})",
    )


# ---------------------------------------------------------------------------- commands


def _generate(commands) -> None:
    cmd = commands.add_parser(
        "generate",
        help="write realistic sample landing data (events, photos, users, embeddings)",
        description=(
            "Write what a photo-sharing app dumps: events/*.jsonl.gz (daily interaction "
            "logs), photos/*.jsonl, users/*.csv (with PII) and embeddings/*.parquet. "
            "Deterministic for a seed and an end date; streams a day at a time. With "
            "--dirty-rate, broken rows of every kind ingest must handle are mixed in and "
            "counted in <out>/_generator.json. With --nights N the world goes on for N "
            "nights after --end, one dump per night with late events, a retried upload and "
            "corrected photos; rerun with a larger N on the same folder to append the next "
            "nights (earlier files never change); options left out are those the folder's world "
            "was made with, and options that contradict them are refused."
        ),
    )
    cmd.add_argument(
        "--out", type=Path, default=Path("data/landing"), help="folder (default: data/landing)"
    )
    cmd.add_argument("--users", type=_positive, help="number of users (default: 5000)")
    cmd.add_argument("--photos", type=_positive, help="number of photos (default: 50000)")
    cmd.add_argument("--days", type=_positive, help="days of activity (default: 60)")
    cmd.add_argument(
        "--events", type=_positive, help="total events, approximately (default: 40 per photo)"
    )
    cmd.add_argument("--seed", type=int, help="random seed (default: 7)")
    cmd.add_argument(
        "--dirty-rate",
        type=_rate,
        help="fraction of rows that get a broken sibling row (e.g. 0.01; default 0)",
    )
    cmd.add_argument(
        "--end",
        type=_date,
        help="last day of the history, exclusive, YYYY-MM-DD (default: 2026-11-01)",
    )
    cmd.add_argument(
        "--nights",
        type=_count,
        default=0,
        help="nights after --end in the folder (default 0); the missing ones are appended",
    )
    cmd.set_defaults(handler=generate)


def generate(args: argparse.Namespace, console, err) -> int:
    from lakehouse.console import print_generated
    from lakehouse.progress import RichStepProgress
    from lakehouse.synth import GenerateConfig
    from lakehouse.synth import generate as write_sample

    fields = ("users", "photos", "days", "events", "seed", "dirty_rate", "end", "nights")
    # options left out come from the world the folder already holds, so a rerun with a
    # larger --nights appends to it; options that contradict it are refused (GenerateError)
    config = GenerateConfig.for_folder(args.out, **{name: getattr(args, name) for name in fields})
    with RichStepProgress(err, "generate") as progress:
        report = write_sample(config, progress)
    print_generated(report, args.out, console)
    return EXIT_OK


def _ingest(commands) -> None:
    cmd = commands.add_parser(
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
    cmd.add_argument("landing", help=PATH_HELP["landing"])
    _path_options(cmd, "lake")
    cmd.add_argument(
        "--table",
        action="append",
        dest="tables",
        metavar="TABLE",
        help="only this bronze table (repeatable; one its sources YAML declares)",
    )
    cmd.set_defaults(handler=ingest)


def ingest(args: argparse.Namespace, console, err) -> int:
    from lakehouse import job
    from lakehouse.console import ConsoleObserver, print_ingest

    layout = _layout(args).resolved()
    step = job.ingest(layout, tables=args.tables, observer=ConsoleObserver(console, err, layout))
    print_ingest(step.result, console, err)
    return EXIT_OK if step.ok else EXIT_FAILED


def _build(commands) -> None:
    cmd = commands.add_parser(
        "build",
        help="build the DuckDB warehouse from bronze with dbt (`dbt build`, versions pinned)",
        description=(
            "Run the dbt project at the repo root (`dbt build`: seeds, models, data and unit "
            "tests) on DuckDB, reading the bronze Delta tables of --lake. The current Delta "
            "version of every bronze table is pinned for the whole run and recorded in the "
            "warehouse table lakehouse_bronze_reads. Exit code follows dbt: 0 ok, 1 a model or "
            "test failed, 2 dbt could not run. Analysts can run `dbt build` directly too. "
            "--engine spark runs the same project on a local SparkSession (dbt-spark) and "
            "makes its Parquet tables views of the warehouse file, for validate and export."
        ),
    )
    _path_options(cmd, "lake", "warehouse")
    cmd.add_argument(
        "--select", nargs="+", help="dbt node selection, e.g. +photo_popularity_training"
    )
    cmd.add_argument(
        "--bronze-version",
        action="append",
        type=_pin,
        default=[],
        metavar="TABLE=VERSION",
        help="read a bronze table at an older Delta version (repeatable); "
        "others are pinned at their current version",
    )
    cmd.add_argument(
        "--full-refresh",
        action="store_true",
        help="rebuild every incremental model from all of bronze (after changing a seed, a "
        'var or logic that applies to history; see README "Night after night")',
    )
    _engine_option(cmd)
    cmd.set_defaults(handler=build)


def _engine_option(command: argparse.ArgumentParser) -> None:
    from lakehouse.engines import ENGINES, default_engine

    command.add_argument(
        "--engine",
        choices=ENGINES,
        default=default_engine(),
        help="where dbt runs the transforms: duckdb (default); spark (dbt-spark on a local "
        "SparkSession; needs the [spark] extra and Java); or spark-thrift (dbt-spark's thrift "
        "method on a Spark Thrift Server: the one `lakehouse spark-cluster start` runs for "
        "this warehouse, else $LAKEHOUSE_SPARK_HOST:$LAKEHOUSE_SPARK_PORT). Default: the "
        "engine whose target LAKEHOUSE_DBT_TARGET names. Its tables are served from the "
        "warehouse file to the gate and export either way",
    )


def _spark_cluster(commands) -> None:
    cmd = commands.add_parser(
        "spark-cluster",
        help="start, stop or show a Spark cluster on this machine for --engine spark-thrift",
        description=(
            "A Spark standalone cluster on 127.0.0.1 from the pyspark wheel: a master, "
            "--workers workers (separate JVMs, one core each) and the Spark Thrift Server "
            "that dbt-spark's thrift method talks to, with its tables and metastore in the "
            "spark/ folder next to the warehouse. Ports are chosen free; logs are in "
            "spark/cluster/logs/. `lakehouse build/run --engine spark-thrift` find it there; "
            "for your own dbt command, export the two variables `start` prints and run dbt "
            "--target spark_thrift."
        ),
    )
    cmd.add_argument("action", choices=("start", "stop", "status"))
    cmd.add_argument("--workers", type=_positive, default=2, help="workers to start (default: 2)")
    cmd.add_argument(
        "--executor-memory",
        default="1g",
        help="heap of each worker's executor, e.g. 4g (default: 1g)",
    )
    _path_options(cmd, "warehouse")
    cmd.set_defaults(handler=spark_cluster)


def spark_cluster(args: argparse.Namespace, console, err) -> int:
    from lakehouse.warehouse.spark_cluster import (
        ENV_THRIFT_HOST,
        running_cluster,
        start_cluster,
        stop_cluster,
    )

    spark_dir = _layout(args).resolved().spark
    if args.action == "stop":
        stopped = stop_cluster(spark_dir)
        console.print(
            f"stopped the Spark cluster of {shown(str(spark_dir))}"
            if stopped
            else f"no Spark cluster runs for {shown(str(spark_dir))}",
            highlight=False,
        )
        return EXIT_OK
    cluster = (
        start_cluster(spark_dir, workers=args.workers, executor_memory=args.executor_memory)
        if args.action == "start"
        else running_cluster(spark_dir)
    )
    if cluster is None:
        console.print(f"no Spark cluster runs for {shown(str(spark_dir))}", highlight=False)
        return EXIT_FAILED
    state, env = cluster.master_state(), cluster.env()
    console.print(
        f"Spark cluster {cluster.master_url}: {state['aliveworkers']} workers, "
        f"{state['cores']} cores; master UI {cluster.master_ui}; Thrift server "
        f"{env[ENV_THRIFT_HOST]}:{cluster.thrift_port}; tables in {shown(str(spark_dir))}",
        highlight=False,
    )
    for name, value in env.items():
        print(f"export {name}={value}")
    return EXIT_OK


def _dbt_vars(commands) -> None:
    cmd = commands.add_parser(
        "dbt-vars",
        help="print the --vars `lakehouse build` passes dbt (the lake; on Spark, the pins)",
        description=(
            "Print, as JSON, the dbt vars `lakehouse build` would pass: the lake and, for "
            "the Spark engines, the record of the bronze files to read: this writes it "
            "(spark/bronze_pins.json next to the warehouse: every bronze table's current "
            "Delta version and the data files of that version). For running dbt yourself: "
            'dbt build --target spark --vars "$(lakehouse dbt-vars --engine spark)". On '
            "DuckDB no pins are needed: the session reads every bronze table at its version "
            "when dbt started."
        ),
    )
    _path_options(cmd, "lake")
    _engine_option(cmd)
    cmd.set_defaults(handler=dbt_vars)


def dbt_vars(args: argparse.Namespace, console, err) -> int:
    from lakehouse.warehouse import pin_bronze_versions, prepare_dbt, project_dir

    layout = _layout(args).resolved()
    invocation = prepare_dbt(
        layout.lake,
        layout.warehouse,
        versions=pin_bronze_versions(layout.lake, {}),
        project=project_dir(),
        engine=args.engine,
        spark_dir=layout.spark,
    )
    print(invocation.vars)
    return EXIT_OK


def _attach(commands) -> None:
    cmd = commands.add_parser(
        "attach",
        help="serve your own `dbt build --target spark` to validate and export",
        description=(
            "After a dbt build on Spark you ran yourself (dbt build --target spark "
            '--vars "$(lakehouse dbt-vars --engine spark)", or --target spark_thrift): make '
            "each of its Spark tables a view in the warehouse file, over its Parquet and cast "
            "to its contract's types, and record the manifest the build parsed, as "
            "`lakehouse build --engine spark` "
            "does after its own dbt build. `lakehouse validate` and `export` then read it. "
            "Reads dbt's manifest.json ($DBT_TARGET_PATH, else the project's target/) and "
            "the Spark tables where the build wrote them ($LAKEHOUSE_SPARK_DIR, else the "
            "spark/ folder next to the warehouse)."
        ),
    )
    _path_options(cmd, "warehouse")
    cmd.set_defaults(handler=attach)


def attach(args: argparse.Namespace, console, err) -> int:
    from lakehouse.warehouse import attach_spark_build, dbt_artifacts, project_dir
    from lakehouse.warehouse.spark import ENV_SPARK_DIR

    layout = _layout(args).resolved()
    project = project_dir()
    spark_dir = Path(os.environ.get(ENV_SPARK_DIR) or layout.spark)
    spark_dir = spark_dir if spark_dir.is_absolute() else project / spark_dir
    names = attach_spark_build(
        layout.warehouse, spark_dir, dbt_artifacts(project) / "manifest.json"
    )
    console.print(
        f"attached {len(names)} Spark tables to {shown(str(layout.warehouse))}: "
        f"{shown(', '.join(names))}",
        highlight=False,
    )
    return EXIT_OK


def build(args: argparse.Namespace, console, err) -> int:
    from lakehouse import job
    from lakehouse.console import print_build

    layout = _layout(args).resolved()
    step = job.build(
        layout,
        select=args.select,
        bronze_versions=dict(args.bronze_version),
        full_refresh=args.full_refresh,
        engine=args.engine,
    )
    print_build(step.result, layout.warehouse, console, err)
    return step.result.exit_code


def _validate(commands) -> None:
    cmd = commands.add_parser(
        "validate",
        help="run the data-quality gate (Great Expectations suites in expectations/)",
        description=(
            "Run the Great Expectations suites in expectations/ as one checkpoint inside "
            "DuckDB, on the bronze tables of --lake (at the Delta versions the build pinned) "
            "and the warehouse. Row-by-row checks read the rows loaded since the last run "
            "that passed (--all-rows: every row); table-level checks read whole tables, "
            "except a bronze table's counts, max, min and value counts, which are the last "
            "pass's totals plus the rows ingest appended since. "
            "Writes result.json, junit.xml, report.html and GX Data Docs (data_docs/) to "
            "--out and keeps each run under --out/runs/. Bounds that depend on the data come "
            "from expectations/parameters.yml (--env, --parameters). Exit code: 0 passed "
            "(warnings do not block), 1 blocked by a critical expectation, 2 could not run."
        ),
    )
    _path_options(cmd, "lake", "warehouse")
    cmd.add_argument(
        "--table",
        action="append",
        dest="tables",
        help="validate only this suite (repeatable), e.g. photo_popularity_training",
    )
    cmd.add_argument("--out", dest="quality_dir", default=None, help=PATH_HELP["quality"])
    cmd.add_argument(
        "--as-of",
        type=_timestamp,
        help="the time freshness is measured against (default: now), ISO-8601",
    )
    _allow_future_option(cmd)
    cmd.add_argument(
        "--env",
        default=None,
        help="section of expectations/parameters.yml applied on top of `default` "
        "(default: $LAKEHOUSE_ENV)",
    )
    cmd.add_argument(
        "--parameters",
        type=Path,
        default=None,
        help="a YAML file of `name: value` bounds applied last "
        "(default: $LAKEHOUSE_GATE_PARAMETERS)",
    )
    cmd.add_argument(
        "--all-rows",
        action="store_true",
        help="check every row row by row, not only those loaded since the last passing run",
    )
    cmd.add_argument(
        "--suggest",
        action="store_true",
        help="propose bounds for expectations/parameters.yml from the runs kept in --out; "
        "validates nothing",
    )
    cmd.add_argument("--json", action="store_true", help="print the summary as JSON on stdout")
    cmd.set_defaults(handler=validate)


def validate(args: argparse.Namespace, console, err) -> int:
    import json

    from lakehouse import job
    from lakehouse.console import print_gate, print_suggestions
    from lakehouse.quality import suggest
    from lakehouse.quality.reports import summary

    layout = _layout(args).resolved()
    try:
        if args.suggest:
            skipped: list[str] = []
            found, text = suggest(layout.quality, env=args.env, skipped=skipped)
            for line in skipped:  # a kept run that is not the gate's: named, not used
                err.print(f"[yellow]skipped[/] {shown(line)}", highlight=False)
            if args.json:
                print(json.dumps([vars(s) for s in found], indent=2))
            else:
                print_suggestions(found, text, layout.quality, console)
            return EXIT_OK
        step = job.gate(
            layout,
            tables=args.tables,
            as_of=args.as_of,
            env=args.env,
            parameters_file=args.parameters,
            all_rows=args.all_rows,
        )
    except job.user_errors() as exc:  # the gate could not run: not a verdict on the data
        reason = job.failure_reason(exc)
        if args.json:
            print(json.dumps({"passed": None, "error": reason}))
        err.print(f"[bold red]error:[/] {shown(reason)}", highlight=False)
        return EXIT_USAGE
    report, data = step.result
    if args.json:
        print(json.dumps(summary(data, layout.quality), indent=2, default=str))
    else:
        print_gate(report, data, layout.quality, console)
    return EXIT_OK if step.ok else EXIT_FAILED


def _export(commands) -> None:
    cmd = commands.add_parser(
        "export",
        help="write a mart into versioned Arrow IPC shards with a lineage manifest",
        description=(
            "Stream MODEL out of the warehouse into <out>/<model>/v<N>/<split>/part-NNNNN.arrow "
            "(fixed row count, rows in key order, tensor-ready types, no strings) and "
            "<out>/<model>/v<N>/manifest.json; `latest` then points at v<N>. The key, split "
            "column and excluded columns come from the model's dbt meta (`config.meta.export`). "
            "Refuses a model whose latest data-quality gate failed or validated an older "
            "build, unless --force (recorded in the manifest). With --reproduce MANIFEST, "
            "rebuilds the model from the bronze Delta versions the manifest recorded and checks "
            "the shards are identical."
        ),
    )
    cmd.add_argument("model", nargs="?", help="the mart, e.g. photo_popularity_training")
    _path_options(cmd, "out", "warehouse", "quality")
    cmd.add_argument(
        "--lake",
        default=None,
        help="lake root, recorded for --reproduce (default: $LAKEHOUSE_LAKE, else "
        f"{DEFAULTS.lake}; with --reproduce, the lake the manifest recorded)",
    )
    _shard_rows_option(cmd)
    cmd.add_argument("--columns", nargs="+", help="columns to export (default: all)")
    cmd.add_argument(
        "--compression",
        choices=["lz4", "zstd"],
        help="Arrow IPC buffer compression (default: none, fastest to load)",
    )
    cmd.add_argument(
        "--force",
        action="store_true",
        help="export even without a passing, current gate result (recorded)",
    )
    cmd.add_argument(
        "--reproduce",
        type=Path,
        metavar="MANIFEST",
        help="rebuild and re-export the version this manifest describes",
    )
    cmd.set_defaults(handler=export)


def export(args: argparse.Namespace, console, err) -> int:
    from lakehouse import job
    from lakehouse.console import ConsoleObserver, print_manifest
    from lakehouse.export import ExportError, reproduce

    if args.reproduce:
        out = Path(args.out or DEFAULTS.shards)
        folder, differ = reproduce(args.reproduce, out, lake=args.lake)
        if differ:
            console.print(
                f"[red]not reproduced[/]: {len(differ)} shard(s) differ: "
                + shown(", ".join(differ[:10])),
                highlight=False,
            )
            return EXIT_FAILED
        console.print(
            shown(f"reproduced {args.reproduce} in {folder}: every shard's sha256 matches"),
            highlight=False,
        )
        return EXIT_OK
    if not args.model:
        raise ExportError(
            "name the model to export, e.g. `lakehouse export "
            "photo_popularity_training`, or pass --reproduce MANIFEST"
        )
    layout = _layout(args).resolved()
    step = job.export(
        layout,
        args.model,
        shard_rows=args.shard_rows,
        columns=args.columns,
        compression=args.compression,
        force=args.force,
        observer=ConsoleObserver(console, err, layout),
    )
    print_manifest(step.result.manifest, step.result.folder, console)
    return EXIT_OK


def _materialize(commands) -> None:
    cmd = commands.add_parser(
        "materialize",
        help="fill the online feature store from the warehouse, after the gate passed",
        description=(
            "Copy every feature view (the dbt models declaring meta.online: online_owner_"
            "features, online_photo_features) from the warehouse into the online store, each "
            "whole and all-or-nothing, recording the as_of, dbt invocation and shard version "
            "it came from. Refused, leaving the store as it was, unless the data-quality "
            "gate's latest run passed the very build that made the views. The nightly job "
            "runs it after export."
        ),
    )
    _path_options(cmd, "warehouse", "quality", "out", "store")
    cmd.set_defaults(handler=materialize)


def materialize(args: argparse.Namespace, console, err) -> int:
    from lakehouse import job

    step = job.materialize(_layout(args).resolved())
    console.print(shown(f"materialized {step.rows} into {step.detail}"), highlight=False)
    return EXIT_OK


def _features(commands) -> None:
    cmd = commands.add_parser(
        "features", help="read the online feature store (get, list) or serve it over HTTP"
    )
    actions = cmd.add_subparsers(dest="features_command", required=True)
    get = actions.add_parser("get", help="the features of some keys of a view")
    get.add_argument("view", help="owner (keys: owner_user_id) or photo (keys: photo_id)")
    get.add_argument("keys", nargs="+", type=int, help="the keys")
    get.add_argument("--json", action="store_true", help="print JSON (column -> values)")
    get.add_argument(
        "--allow-missing", action="store_true", help="print nulls for unknown keys (no error)"
    )
    listing = actions.add_parser("list", help="each view's latest fill: as_of, build, rows")
    serve = actions.add_parser("serve", help="an HTTP endpoint an app calls (JSON)")
    serve.add_argument("--host", default="127.0.0.1", help="default: 127.0.0.1")
    serve.add_argument("--port", type=int, default=8765, help="default: 8765")
    serve.add_argument(
        "--model", type=Path, help="a trained model (train --checkpoint) for POST /predict"
    )
    for action in (get, listing, serve):
        _path_options(action, "store")
    for action in (get, serve):
        action.add_argument(
            "--max-age-hours",
            type=float,
            default=36.0,
            help="refuse a fill whose as_of is older (default: 36: one missed night); 0: never",
        )
    cmd.set_defaults(handler=features)


def features(args: argparse.Namespace, console, err) -> int:
    import json
    from datetime import timedelta

    from lakehouse.console import print_features, print_fills
    from lakehouse.features import get_online_features, open_store

    store = _layout(args).resolved().online
    hours = getattr(args, "max_age_hours", 0)
    age = timedelta(hours=hours) if hours else None
    if args.features_command == "get":
        found = get_online_features(
            args.view, args.keys, store=store, allow_missing=args.allow_missing, max_age=age
        )
        if args.json:
            print(json.dumps(found.to_dict(), default=str, indent=2))
        else:
            print_features(found, console)
        return EXIT_OK
    if args.features_command == "list":
        opened = open_store(store)
        try:
            print_fills(opened.uri, opened.views(), console)
        finally:
            opened.close()
        return EXIT_OK
    from lakehouse.features.server import FeatureServer

    server = FeatureServer((args.host, args.port), store, model=args.model, max_age=age)
    console.print(
        shown(
            f"serving {store} on {server.url} (POST /get-online-features, /predict; GET "
            "/health); Ctrl-C stops"
        ),
        highlight=False,
    )
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return EXIT_OK


def _predict(commands) -> None:
    cmd = commands.add_parser(
        "predict",
        help="predict the 7-day likes of photos from the online features and a trained model",
        description=(
            "Read each photo's features and its owner's from the online store (views photo "
            "and owner, the night's as_of) and run the model a training run saved "
            "(`lakehouse train --checkpoint`)."
        ),
    )
    cmd.add_argument("photo_ids", nargs="+", type=int, help="photos posted in the last 7 days")
    cmd.add_argument("--model", type=Path, required=True, help="the checkpoint of a training run")
    _path_options(cmd, "store")
    cmd.set_defaults(handler=predict)


def predict(args: argparse.Namespace, console, err) -> int:
    from lakehouse.features import photo_request
    from lakehouse.loader import LoaderError
    from lakehouse.loader.training import load_popularity_model, predict_likes_7d

    columns = photo_request(args.photo_ids, store=_layout(args).resolved().online)
    try:
        likes = predict_likes_7d(load_popularity_model(args.model), columns)
    except LoaderError as exc:
        err.print(f"[bold red]error:[/] {shown(str(exc))}", highlight=False)
        return EXIT_FAILED
    for photo, owner, value in zip(args.photo_ids, columns["owner_user_id"], likes, strict=True):
        console.print(
            f"photo {photo} (owner {owner}): {value:.1f} likes predicted in its first 7 days",
            highlight=False,
        )
    return EXIT_OK


def _shards(commands) -> None:
    cmd = commands.add_parser("shards", help="look at or check exported shards")
    actions = cmd.add_subparsers(dest="shards_command", required=True)
    for name, text in (
        ("inspect", "print a version's manifest readably"),
        ("verify", "re-check every shard's size and sha256 against the manifest"),
    ):
        action = actions.add_parser(name, help=text)
        action.add_argument(
            "path", type=Path, help="a version folder, `latest`, or a manifest.json"
        )
    cmd.set_defaults(handler=shards)


def shards(args: argparse.Namespace, console, err) -> int:
    from lakehouse.console import print_manifest
    from lakehouse.shardformat import Manifest, ManifestError, verify

    path: Path = args.path
    folder = path.parent if path.name == MANIFEST else path.resolve()
    if not (folder / MANIFEST).exists():
        raise ManifestError(f"no {MANIFEST} in {folder}: not a shard version folder")
    if args.shards_command == "inspect":
        print_manifest(Manifest.read(folder / MANIFEST), folder, console)
        return EXIT_OK
    problems = verify(folder)
    for problem in problems:
        err.print(f"[bold red]corrupt:[/] {shown(f'{folder}/{problem}')}", highlight=False)
    if not problems:
        console.print(shown(f"{folder}: every shard matches its size and sha256"), highlight=False)
    return EXIT_FAILED if problems else EXIT_OK


def _train(commands) -> None:
    cmd = commands.add_parser(
        "train",
        help="train a small model on exported shards (proves the loader end to end)",
        description=(
            "Train a small MLP for a few epochs on the train split of a shard version with "
            "ShardDataset + GPUPrefetcher, then compare its validation MSE with the constant "
            "predictor (the train mean). Exits 1 when the model does not beat the baseline "
            "(a run stopped by --max-steps is not judged). "
            "Under torchrun (`torchrun --nproc_per_node 2 -m lakehouse.cli train ...`) each "
            "process trains one rank of a DistributedDataParallel model: gloo on CPU, nccl "
            "on GPUs; rank 0 prints the report."
        ),
    )
    default = f"{DEFAULTS.model_shards(MODEL)}/{LATEST}"
    cmd.add_argument(
        "shards",
        nargs="?",
        default=default,
        help="a shard version: folder, `latest`, or s3://…/latest (fetched into "
        f"$LAKEHOUSE_CACHE, default ~/.cache/lakehouse) (default: {default})",
    )
    cmd.add_argument("--epochs", type=_positive, default=4, help="passes over train (default: 4)")
    cmd.add_argument("--batch-size", type=_positive, default=512, help="default: 512")
    cmd.add_argument("--workers", type=int, default=2, help="DataLoader workers (default: 2)")
    cmd.add_argument(
        "--device", default="cuda", help="cuda or cpu; cuda falls back to cpu (default: cuda)"
    )
    cmd.add_argument("--seed", type=int, default=0, help="shuffle and init seed (default: 0)")
    cmd.add_argument(
        "--checkpoint",
        type=Path,
        help="save model, optimiser and loader position here at each epoch's end (and "
        "every --checkpoint-every steps); when the file exists, continue from it exactly",
    )
    cmd.add_argument(
        "--checkpoint-every", type=_positive, default=0, help="also save every N steps"
    )
    cmd.add_argument(
        "--max-steps",
        type=_positive,
        help="stop after N optimiser steps of the whole run, saving the checkpoint",
    )
    cmd.add_argument(
        "--trace",
        type=Path,
        help="write the sample ids of every step to TRACE/rank<r>.jsonl (an audit of "
        "exactly-once delivery)",
    )
    cmd.set_defaults(handler=train)


def _quiet(step: str, done: int, total: int) -> None:
    """Progress of a rank that does not draw it."""


def train(args: argparse.Namespace, console, err) -> int:
    from lakehouse.console import print_training
    from lakehouse.loader import LoaderError
    from lakehouse.loader.training import train_popularity_model
    from lakehouse.progress import RichStepProgress

    # under torchrun only rank 0 draws progress (RANK is torchrun's)
    lead = os.environ.get("RANK", "0") == "0"
    try:
        with RichStepProgress(console, "train") if lead else nullcontext(_quiet) as progress:
            report = train_popularity_model(
                args.shards,
                epochs=args.epochs,
                batch_size=args.batch_size,
                workers=args.workers,
                device=args.device,
                seed=args.seed,
                checkpoint=args.checkpoint,
                checkpoint_every=args.checkpoint_every,
                max_steps=args.max_steps,
                trace=args.trace,
                on_step=progress,
            )
    except LoaderError as exc:
        err.print(f"[bold red]error:[/] {shown(str(exc))}", highlight=False)
        return EXIT_FAILED
    if report.rank == 0:
        print_training(report, console)
    # a run stopped on purpose (--max-steps) is judged when it finishes
    return EXIT_OK if report.beats_baseline or report.stopped_early else EXIT_FAILED


def _run(commands) -> None:
    cmd = commands.add_parser(
        "run",
        help="the nightly job: ingest -> dbt build -> quality gate -> export -> materialize",
        description=(
            "Run the whole job once: ingest --landing into --lake, build the warehouse with "
            "dbt, run the data-quality gate, export the training set to --out, fill the online "
            "feature store (--store) with the night's serving features. A step runs "
            "only after the one before succeeded (nothing is exported after a failed gate); "
            "the job ends with a summary of every step (rows, versions, seconds) and exits 1 "
            "with the reason when a step fails. Paths may be local or s3:// URIs; the Python "
            "API is lakehouse.job.run_job."
        ),
    )
    cmd.add_argument("--landing", required=True, help=PATH_HELP["landing"])
    cmd.add_argument("--lake", required=True, help="lake root, local or s3://bucket/prefix")
    cmd.add_argument("--out", required=True, help="shard root, local or s3://bucket/prefix")
    _path_options(cmd, "warehouse", "quality")
    cmd.add_argument(
        "--store",
        default=None,
        help="online store: a SQLite file or redis://host:port/db (default: "
        "$LAKEHOUSE_ONLINE_STORE, else online/features.sqlite next to the warehouse)",
    )
    cmd.add_argument("--model", default=MODEL, help=f"mart to export (default: {MODEL})")
    cmd.add_argument(
        "--as-of",
        type=_timestamp,
        help="the time the gate measures freshness against (default: now; set it to replay "
        "a past night's landing folder), ISO-8601",
    )
    _allow_future_option(cmd)
    _shard_rows_option(cmd)
    _engine_option(cmd)
    cmd.set_defaults(handler=run)


def run(args: argparse.Namespace, console, err) -> int:
    from lakehouse.console import ConsoleObserver, print_job
    from lakehouse.job import run_job

    layout = _layout(args)
    report = run_job(
        layout,
        model=args.model,
        as_of=args.as_of,
        shard_rows=args.shard_rows,
        observer=ConsoleObserver(console, err, layout),
        engine=args.engine,
        allow_future_as_of=args.allow_future,
    )
    print_job(report, console, err)
    return EXIT_OK if report.ok else EXIT_FAILED


def _demo(commands) -> None:
    cmd = commands.add_parser(
        "demo",
        help="generate sample data and run the pipeline on it (the README's main job)",
        description=(
            "Generate a sample landing folder up to yesterday (1%% dirty rows) and run the "
            "nightly job on it (ingest into a local lake, dbt build of the DuckDB warehouse, "
            "the data-quality gate, export of the training set to Arrow shards); then add "
            "yesterday's dump (late events, a retried upload, edited captions) and run the "
            "job again, incrementally, as this morning's; then train a small model on the "
            "shards. The Python API is lakehouse.job.run_demo."
        ),
    )
    cmd.add_argument(
        "--workdir",
        type=Path,
        default=DEFAULT_ROOT,
        help=f"folder for landing/, lake/, the warehouse, quality/, shards/ "
        f"(default: {DEFAULT_ROOT})",
    )
    cmd.add_argument("--dirty-rate", type=_rate, default=0.01)
    cmd.add_argument("--seed", type=int, default=7)
    cmd.add_argument(
        "--today",
        type=_date,
        help="the day of the last nightly job, YYYY-MM-DD (default: today, UTC)",
    )
    cmd.set_defaults(handler=demo)


def demo(args: argparse.Namespace, console, err) -> int:
    from lakehouse.console import ConsoleObserver, print_job
    from lakehouse.job import run_demo

    console.rule("sample landing data up to yesterday, then the nightly job; then yesterday's dump")
    report = run_demo(
        args.workdir,
        seed=args.seed,
        dirty_rate=args.dirty_rate,
        today=args.today,
        observer=ConsoleObserver(console, err, Layout.from_root(args.workdir, env={})),
    )
    for night in report.nights:
        print_job(night, console, err)
    return EXIT_OK if report.ok else EXIT_FAILED


# ---------------------------------------------------------------------------- argument types


def _positive(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def _rate(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


def _pin(text: str) -> tuple[str, int]:
    table, _, version = text.partition("=")
    if not table or not version.isdigit():
        raise argparse.ArgumentTypeError(f"expected TABLE=VERSION, e.g. events=12; got {text!r}")
    return table, int(version)


def _allow_future_option(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument(
        "--allow-future-as-of",
        dest="allow_future",
        action="store_true",
        help="accept an --as-of later than this machine's clock (refused by default: a typo "
        "like 2062 would make the gate's freshness meaningless)",
    )


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
