"""How the CLI shows the layers' typed results: rich tables and one-line verdicts.

Nothing here computes anything a result does not already hold; the job layer
(:mod:`lakehouse.job`) and the layer packages own the facts, this module only prints them.
Text that can hold a file's content (errors, paths, values, examples) is escaped, so it is
printed as it is and never read as rich markup.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

from lakehouse.contracts import INGESTED
from lakehouse.job import JobObserver, JobReport, Step, StepReport
from lakehouse.layout import Layout
from lakehouse.printable import shown
from lakehouse.progress import RichIngestProgress, RichRowProgress, RichStepProgress

if TYPE_CHECKING:
    from lakehouse.features import FillRecord, OnlineFeatures
    from lakehouse.ingest import IngestReport
    from lakehouse.loader.training import TrainingReport
    from lakehouse.quality import RunReport
    from lakehouse.quality.parameters import Suggestion
    from lakehouse.shardformat import Manifest
    from lakehouse.synth import GenerateReport
    from lakehouse.warehouse import BuildResult


def print_generated(report: GenerateReport, out: Path, console: Console) -> None:
    nights = report.config.get("nights") or 0
    through = f", history + {nights} night(s)" if nights else ""
    table = Table(title=f"landing data in {shown(out)}{through}")
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


def print_ingest(report: IngestReport, console: Console, err: Console) -> None:
    table = Table(title=f"ingest run {report.run_id} into {shown(report.lake)}/bronze")
    for column in ("table", "files", "skipped", "failed", "read", "landed", "quarantined", "dupes"):
        table.add_column(column, justify="left" if column == "table" else "right")
    for name in dict.fromkeys(f.table for f in report.files):
        files = [f for f in report.files if f.table == name]
        table.add_row(
            shown(name),
            str(sum(f.status == INGESTED for f in files)),
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
                f"{shown(f.source_file)} were quarantined ({top}); does its header or layout "
                f"match the {f.table} contract?",
                highlight=False,
            )
    for f in report.files:  # schema evolution: what a file added, or could not
        if f.new_columns:
            console.print(
                f"[cyan]new column(s)[/] in bronze {f.table}: {shown(', '.join(f.new_columns))} "
                f"(fields of {shown(f.source_file)} its contract does not declare; text)",
                highlight=False,
            )
        for name, why in f.ignored_fields.items():
            console.print(
                f"[yellow]not landed[/]: field {shown(repr(name))} of {shown(f.source_file)}: "
                f"{shown(why)}",
                highlight=False,
            )
    if report.ignored:
        console.print(
            "[yellow]ignored[/] (hidden, or no bronze table for their folder): "
            + shown(", ".join(report.ignored)),
            highlight=False,
        )
    console.print(
        shown(f"lake written to {report.lake}; quarantine at {report.lake}/bronze/_quarantine"),
        highlight=False,
    )
    for failed in report.failed:
        err.print(f"[bold red]error:[/] {shown(str(failed.error))}", highlight=False)


def print_build(result: BuildResult, warehouse: Path, console: Console, err: Console) -> None:
    table = Table(title=f"dbt build into {shown(warehouse)} (invocation {result.invocation_id})")
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
    if result.unclosed_sessions:
        console.print(
            f"the Spark Thrift server failed to close {len(result.unclosed_sessions)} "
            "session(s) after their work was done (ignored): "
            f"{shown(result.unclosed_sessions[0])}",
            style="yellow",
            markup=False,
        )
    if result.parse:  # partial: dbt reused its saved parse (the pins are not in the SQL)
        console.print(f"dbt parse: {shown(result.parse)}", highlight=False)
    for failure in result.failures:
        console.print(
            f"[red]{failure.status}[/] {failure.resource_type} {failure.name}: "
            + shown(failure.message, lines=True),
            highlight=False,
        )
    if result.error:
        err.print(
            f"[bold red]error:[/] dbt could not run: {shown(result.error, lines=True)}",
            highlight=False,
        )


def print_gate(report: RunReport, data: dict[str, Any], out: Path, console: Console) -> None:
    from lakehouse.quality import BLOCKING
    from lakehouse.quality.reports import describe

    table = Table(title=f"data-quality gate, run {report.run_id} (as of {report.as_of})")
    for column in ("table", "rows", "new rows", "expectations", "passed", "critical", "warnings"):
        table.add_column(column, justify="left" if column == "table" else "right")
    for t in report.tables:
        table.add_row(
            t.table,
            f"{t.rows:,}",
            "all" if t.new_rows is None else f"{t.new_rows:,}",
            str(len(t.results)),
            str(sum(r.success for r in t.results)),
            str(sum(not r.success and r.severity == BLOCKING for r in t.results)),
            str(sum(not r.success and r.severity == "warning" for r in t.results)),
        )
    console.print(table)
    for r in report.blocking_failures + report.warnings:
        label = "[red]BLOCKING[/]" if r.severity == BLOCKING else "[yellow]warning[/]"
        examples = f", e.g. {r.examples[:3]}" if r.examples else ""
        detail = describe(asdict(r)) + examples
        console.print(f"{label} {r.table}: {shown(r.name)}: {shown(detail)}", highlight=False)
    for change in data.get("changes", [])[:20]:
        relative = change["relative_change"]
        moved = f" ({relative:+.1%})" if relative is not None else ""
        console.print(
            f"changed since last run: {change['table']} {change['metric']} "
            f"{change['previous']} -> {change['current']}{moved}",
            highlight=False,
        )
    verdict = "[green]passed[/]" if report.passed else "[bold red]blocked[/]"
    console.print(
        f"gate {verdict}; reports in {shown(out)}/ (result.json, junit.xml, report.html, "
        "data_docs/index.html)"
    )


def print_suggestions(found: list[Suggestion], text: str, out: Path, console: Console) -> None:
    if not found:
        console.print(
            f"no kept runs with observed values in {shown(out)}/runs/: run the gate first"
        )
        return
    table = Table(title=f"bounds observed over the runs kept in {shown(out)}/runs/")
    for column in ("parameter", "now", "observed min", "observed max", "runs", "proposed"):
        table.add_column(column, justify="left" if column == "parameter" else "right")
    for s in found:
        table.add_row(
            shown(s.name),  # read back from kept runs on disk: text, not markup
            str(s.current),
            f"{s.observed_min:,.6g}",
            f"{s.observed_max:,.6g}",
            str(s.runs),
            f"{s.proposed:,.6g}",
        )
    console.print(table)
    console.print("review, then paste into expectations/parameters.yml:", highlight=False)
    console.print(shown(text, lines=True, markup=False), highlight=False, markup=False)


def _column_type(arrow_type: str, vocabulary: list[str] | None) -> str:
    """A shard column's Arrow type as people read it: a category with its vocabulary's size."""
    if arrow_type.startswith("dictionary<") and vocabulary is not None:
        return f"category ({len(vocabulary)} values)"
    return arrow_type


def print_manifest(manifest: Manifest, folder: Path | str, console: Console) -> None:
    table = Table(title=f"{manifest.model} v{manifest.version} in {shown(folder)}")
    for column in ("split", "shards", "rows", "MB"):
        table.add_column(column, justify="left" if column == "split" else "right")
    for split, rows in manifest.totals.items():
        shards = [s for s in manifest.shards if s.split == split]
        table.add_row(
            split, str(len(shards)), f"{rows:,}", f"{sum(s.bytes for s in shards) / 1e6:.1f}"
        )
    console.print(table)
    columns = ", ".join(
        f"{c['name']} {_column_type(c['type'], manifest.vocabularies.get(c['name']))}"
        for c in manifest.schema
    )  # a manifest is input: its type names are printed as text, controls escaped
    console.print(shown(f"columns: {columns}", markup=False), highlight=False, markup=False)
    lineage, gate = manifest.lineage, manifest.quality_gate
    console.print(
        f"built by dbt invocation {lineage.get('dbt_invocation_id')} from bronze "
        + ", ".join(f"{t}@v{v}" for t, v in lineage.get("bronze_versions", {}).items())
        + f"; git {str(lineage.get('git_commit'))[:12]}; gate run {gate.get('run_id')} "
        f"({'forced' if gate.get('forced') else 'passed'})",
        highlight=False,
    )
    if gate.get("forced"):
        console.print(f"[yellow]forced[/]: {shown(str(gate['reason']))}", highlight=False)


def print_job(report: JobReport, console: Console, err: Console) -> None:
    layout = report.layout
    clock = f" of {report.as_of:%Y-%m-%d %H:%M} UTC" if report.as_of else ""
    summary = Table(
        title=f"nightly job{clock}: "
        + " -> ".join(
            shown(p)
            for p in (layout.landing, layout.lake, layout.warehouse, layout.shards, layout.online)
        )
    )
    for column in ("step", "status", "rows", "versions / result", "seconds"):
        summary.add_column(column, justify="right" if column == "seconds" else "left")
    for step in report.steps:
        status = "[green]ok[/]" if step.ok else "[bold red]failed[/]"
        summary.add_row(
            step.name, status, shown(step.rows), shown(step.detail), f"{step.seconds:.1f}"
        )
    for name in report.not_run:
        summary.add_row(name, "[dim]not run[/]", "", "", "")
    console.print(summary)
    if report.failure:
        err.print(f"[bold red]nightly job failed[/] at {shown(report.failure)}", highlight=False)
    else:
        console.print("[green]nightly job done[/]", highlight=False)


def print_features(found: OnlineFeatures, console: Console) -> None:
    """A batch of online features: one row per key, the fill it came from underneath."""
    columns = found.to_dict()
    table = Table(title=f"feature view {found.view}")
    for name in columns:
        table.add_column(name, overflow="fold")
    for i in range(len(found.keys)):
        table.add_row(*(shown(_cell(values[i])) for values in columns.values()))
    console.print(table)
    record = found.record
    console.print(
        shown(
            f"fill {record.fill_id} of {record.model}: as of {record.as_of}, dbt invocation "
            f"{record.invocation_id}, shard version v{record.shard_version}, filled "
            f"{record.filled_at}"
        ),
        highlight=False,
    )


def _cell(value: object) -> str:
    if isinstance(value, list):  # an embedding: its size and first values
        head = ", ".join(f"{v:.3f}" for v in value[:3])
        return f"[{head}, ...] ({len(value)})"
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


def print_fills(store: str, fills: list[FillRecord], console: Console) -> None:
    """Each view's latest fill in an online store, a line each (nothing cut off)."""
    console.print(shown(f"online store {store}: {len(fills)} feature views"), highlight=False)
    for f in fills:
        shards = f", shards v{f.shard_version}" if f.shard_version is not None else ""
        console.print(
            shown(
                f"  {f.view}: {f.model} by {f.key}, {f.rows:,} keys, fill {f.fill_id} as of "
                f"{f.as_of} (dbt invocation {f.invocation_id}{shards}), filled {f.filled_at}"
            ),
            highlight=False,
        )


def print_training(report: TrainingReport, console: Console) -> None:
    where = report.device
    if report.world_size > 1:
        where = f"{report.world_size} processes (DistributedDataParallel, {report.device} each)"
    resumed = f", resumed at {report.resumed_at}" if report.resumed_at else ""
    stopped = ", stopped by --max-steps (checkpoint saved)" if report.stopped_early else ""
    console.print(
        f"trained {report.epochs} epochs on {report.train_samples:,} samples on "
        f"{where}: {report.samples_per_second:,.0f} samples/s, "
        f"{report.steps} steps{resumed}{stopped}",
        highlight=False,
    )
    verdict = "[green]beats[/]" if report.beats_baseline else "[bold red]does not beat[/]"
    console.print(
        f"validation MSE of log1p(likes_7d): model {report.val_mse:.4f} {verdict} the "
        f"constant baseline {report.baseline_mse:.4f}",
        highlight=False,
    )


class ConsoleObserver(JobObserver):
    """Shows a running job: a rule per step, progress bars on stderr, each step's output."""

    def __init__(self, console: Console, err: Console, layout: Layout) -> None:
        self.console, self.err, self.layout = console, err, layout.resolved()

    def step_started(self, name: str, number: int, total: int) -> None:
        self.console.rule(f"{number}/{total} {name}")

    def note(self, text: str) -> None:
        self.console.print(shown(text), highlight=False)

    def step_finished(self, step: StepReport[Any]) -> None:
        result = step.result
        if result is None:
            return
        match step.name:
            case Step.GENERATE:
                print_generated(result, Path(self.layout.landing), self.console)
            case Step.TRAIN:
                self.console.rule(
                    "train a small model on the shards (ShardDataset + GPUPrefetcher)"
                )
                print_training(result, self.console)
            case Step.PREDICT:
                self.console.rule(
                    "predict for the newest photos: online features (store) + the trained model"
                )
                for photo, owner, likes in result:
                    self.console.print(
                        f"photo {photo} (owner {owner}): {likes:.1f} likes predicted in its "
                        "first 7 days",
                        highlight=False,
                    )
            case Step.INGEST:
                print_ingest(result, self.console, self.err)
            case Step.BUILD:
                print_build(result, self.layout.warehouse, self.console, self.err)
            case Step.GATE:
                print_gate(result.report, result.data, self.layout.quality, self.console)
            case Step.EXPORT:
                print_manifest(result.manifest, result.folder, self.console)

    @contextmanager
    def ingest_progress(self) -> Iterator[RichIngestProgress]:
        progress = RichIngestProgress(self.err)
        try:
            yield progress
        finally:
            progress.stop()

    @contextmanager
    def rows_progress(self, label: str) -> Iterator[Callable[[int], None]]:
        with RichRowProgress(self.err, label) as progress:
            yield progress

    @contextmanager
    def steps_progress(self, label: str) -> Iterator[Callable[[str, int, int], None]]:
        with RichStepProgress(self.err, label) as progress:
            yield progress
