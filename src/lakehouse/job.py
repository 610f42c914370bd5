"""The nightly job as a Python API: ingest -> dbt build -> data-quality gate -> export.

This module owns the job; ``lakehouse run`` and ``lakehouse demo`` only parse arguments, call
:func:`run_job` / :func:`run_demo` and print. An orchestrator (Airflow, Dagster, Prefect)
calls the same functions, step by step or whole::

    from lakehouse.job import Layout, run_job

    report = run_job(Layout.from_root("/data/prod"))
    if not report.ok:
        raise RuntimeError(report.failure)

Each step returns a :class:`StepReport` holding the layer's own typed result (``IngestReport``,
``BuildResult``, the gate's ``RunReport``, an :class:`ExportResult`) and its one-line summary.
A step runs only after the one before succeeded, so nothing is exported after a failed gate.
Errors a user can act on (the layers' errors, storage errors) become a failed step with a
one-line reason; anything else is a bug and propagates.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, NamedTuple, TypeVar

from lakehouse.contracts import INGESTED
from lakehouse.engines import is_spark
from lakehouse.layout import DEFAULT_ROOT, Layout
from lakehouse.shardformat import DEFAULT_SHARD_ROWS, LATEST

if TYPE_CHECKING:
    from lakehouse.export import Manifest
    from lakehouse.features import FillReport
    from lakehouse.ingest import IngestProgress, IngestReport
    from lakehouse.loader.training import TrainingReport
    from lakehouse.quality import RunReport
    from lakehouse.synth import GenerateReport
    from lakehouse.warehouse import BuildResult

__all__ = [
    "DEFAULT_MODEL",
    "DemoReport",
    "ExportResult",
    "GateOutcome",
    "JobObserver",
    "JobReport",
    "Layout",
    "RunContext",
    "Step",
    "StepReport",
    "build",
    "export",
    "failure_reason",
    "gate",
    "ingest",
    "materialize",
    "run_demo",
    "run_job",
    "user_errors",
]

# the mart the nightly job exports for training
DEFAULT_MODEL = "photo_popularity_training"


class Step(StrEnum):
    """The steps a job or the demo reports, each once: observers match on these, never on
    a name typed again."""

    GENERATE = "generate"
    INGEST = "ingest"
    BUILD = "dbt build"
    GATE = "quality gate"
    EXPORT = "export"
    MATERIALIZE = "materialize"
    TRAIN = "train"
    PREDICT = "predict"


# the nightly job, in order
STEPS = (Step.INGEST, Step.BUILD, Step.GATE, Step.EXPORT, Step.MATERIALIZE)
R = TypeVar("R")


def user_errors() -> tuple[type[BaseException], ...]:
    """Errors with a message a user can act on: the layers' own, and storage errors (disk
    full, permissions, storage unreachable). Printed as one line, never as a traceback."""
    storage: list[type[BaseException]] = [OSError]
    try:
        from deltalake.exceptions import DeltaError

        storage.append(DeltaError)
    except ImportError:  # a loader-only install: nothing it runs raises one
        pass
    return (*_layer_errors(), *storage)


# each layer's error a user can act on, by the module that defines it
_LAYER_ERRORS = (
    ("lakehouse.contracts", "ContractError"),
    ("lakehouse.layout", "ProjectNotFound"),
    ("lakehouse.ingest", "IngestError"),
    ("lakehouse.warehouse", "WarehouseError"),
    ("lakehouse.quality", "SuiteError"),
    ("lakehouse.export", "ExportError"),
    ("lakehouse.shardformat", "ManifestError"),
    ("lakehouse.clock", "ClockError"),
    ("lakehouse.synth", "GenerateError"),
    ("lakehouse.features", "FeatureError"),
)


def _layer_errors() -> tuple[type[BaseException], ...]:
    """The errors of the layers this install has: a layer whose packages are not installed
    (the pipeline's, on a loader-only install) cannot raise its own."""
    import importlib

    found = []
    for module, name in _LAYER_ERRORS:
        try:
            found.append(getattr(importlib.import_module(module), name))
        except ImportError:
            continue
    return tuple(found)


def failure_reason(exc: BaseException) -> str:
    """The one line said for an error in :func:`user_errors`."""
    from lakehouse.storage import describe_storage_error

    if isinstance(exc, _layer_errors()):
        return str(exc)
    return (
        f"{describe_storage_error(exc)}; nothing half-written was published "
        "(free space or fix permissions, then run again)"
    )


@dataclass(frozen=True)
class StepReport(Generic[R]):
    """What one step did: its layer's typed result and a line for the job's summary."""

    name: Step
    ok: bool
    seconds: float = 0.0
    rows: str = ""
    detail: str = ""
    reason: str = ""  # why it failed, one line
    result: R | None = None  # the layer's typed result; None when the step raised

    @property
    def failure(self) -> str:
        """``"<step>: <reason>"``, the line said when this step stops the job."""
        return f"{self.name}: {self.reason or 'see its output'}"


class GateOutcome(NamedTuple):
    """The gate's verdict (:class:`RunReport`) and the result.json it wrote, as a dict."""

    report: RunReport
    data: dict[str, Any]


@dataclass(frozen=True)
class ExportResult:
    """A published shard version: where it is and its manifest."""

    folder: Path | str
    manifest: Manifest
    published: bool = True  # False: the model had not changed, the latest version stands


@dataclass(frozen=True)
class RunContext:
    """What every step of one job shares, resolved once before the first step: the layout
    (paths absolute), the job's one clock, the engine and the PII key. The clock reaches
    every step: ingest's "now" (future timestamps), the build's lineage record, the gate's
    freshness. It is for freshness and people only; what is new is decided by identities."""

    layout: Layout
    as_of: datetime
    engine: str = "duckdb"
    pii_salt: str | None = None

    @classmethod
    def start(
        cls,
        layout: Layout,
        *,
        as_of: datetime | None = None,
        engine: str = "duckdb",
        pii_salt: str | None = None,
        allow_future_as_of: bool = False,
    ) -> RunContext:
        """The context of a job starting now: ``as_of`` (checked, :func:`check_as_of`), else
        this machine's clock read once."""
        from lakehouse.clock import check_as_of

        check_as_of(as_of, allow_future=allow_future_as_of)
        return cls(layout.resolved(), as_of or datetime.now(UTC), engine, pii_salt)


@dataclass
class JobReport:
    layout: Layout
    steps: list[StepReport[Any]] = field(default_factory=list)
    as_of: datetime | None = None  # the job's clock (RunContext.as_of)

    @property
    def ok(self) -> bool:
        return len(self.steps) == len(STEPS) and all(s.ok for s in self.steps)

    @property
    def failed_step(self) -> StepReport[Any] | None:
        return next((s for s in self.steps if not s.ok), None)

    @property
    def failure(self) -> str | None:
        """``"<step>: <reason>"`` for the step that stopped the job."""
        step = self.failed_step
        return step.failure if step else None

    @property
    def not_run(self) -> list[str]:
        return list(STEPS[len(self.steps) :])


class JobObserver:
    """Hooks for showing a job as it runs (the CLI prints; an orchestrator may log). Every
    hook does nothing by default."""

    def step_started(self, name: str, number: int, total: int) -> None:
        """A step begins."""

    def step_finished(self, step: StepReport[Any]) -> None:
        """A step ended, successfully or not (the demo's ``generate`` and ``train`` too)."""

    def note(self, text: str) -> None:
        """Something a person watching should know (e.g. the demo starts over)."""

    def ingest_progress(self) -> AbstractContextManager[IngestProgress | None]:
        """Byte progress for ingest (None: none), as a context manager."""
        return nullcontext(None)

    def rows_progress(self, label: str) -> AbstractContextManager[Callable[[int], None]]:
        """A callback counting rows written (export), as a context manager."""
        return nullcontext(lambda rows: None)

    def steps_progress(self, label: str) -> AbstractContextManager[Callable[[str, int, int], None]]:
        """A callback ``(step, done, total)`` for generating data and training."""
        return nullcontext(lambda step, done, total: None)


# ---------------------------------------------------------------------------- the steps


def ingest(
    layout: Layout,
    *,
    tables: list[str] | None = None,
    now: datetime | None = None,
    observer: JobObserver | None = None,
) -> StepReport[IngestReport]:
    """Land every new file of ``layout.landing`` into the bronze tables of ``layout.lake``.
    ``now`` is the ingest's clock (timestamps after it are quarantined as future ones)."""
    from lakehouse.ingest import ingest as land

    observer = observer or JobObserver()
    with observer.ingest_progress() as progress:
        report: IngestReport = land(
            layout.landing, layout.lake, tables=tables, now=now, progress=progress
        )
    files = report.files
    return StepReport(
        Step.INGEST,
        report.ok,
        rows=(
            f"{sum(f.rows_landed for f in files):,} landed, "
            f"{sum(f.rows_quarantined for f in files):,} quarantined, "
            f"{sum(f.rows_duplicate for f in files):,} duplicate"
        ),
        detail=(
            f"{sum(f.status == INGESTED for f in files)} files ingested, "
            f"{sum(f.status == 'skipped' for f in files)} already in bronze" + _new_columns(files)
        ),
        reason="; ".join(str(f.error) for f in report.failed),
        result=report,
    )


def _new_columns(files: list) -> str:
    """Schema evolution in the step's summary: the bronze columns the files added."""
    added = {f"{f.table}.{name}" for f in files for name in f.new_columns}
    return f", new bronze column(s) {', '.join(sorted(added))}" if added else ""


def build(
    layout: Layout,
    *,
    select: list[str] | None = None,
    bronze_versions: dict[str, int] | None = None,
    full_refresh: bool = False,
    pii_salt: str | None = None,
    engine: str = "duckdb",
    as_of: datetime | None = None,
) -> StepReport[BuildResult]:
    """``dbt build`` into ``layout.warehouse``, every bronze table pinned at its current Delta
    version except those given in ``bronze_versions`` (time travel). ``engine="spark"``
    builds on Spark in ``layout.spark`` and serves its tables from the warehouse file.
    ``as_of``, the job's clock, is recorded with the build's lineage (the models read none)."""
    from lakehouse.warehouse import pin_bronze_versions, project_dir, rows_written_by, run_dbt

    versions = pin_bronze_versions(layout.lake, bronze_versions or {})
    result: BuildResult = run_dbt(
        layout.lake,
        layout.warehouse,
        select=select,
        versions=versions,
        full_refresh=full_refresh,
        project=project_dir(),
        pii_salt=pii_salt,
        engine=engine,
        spark_dir=layout.spark,
        as_of=as_of,
    )
    done = [n for n in result.nodes if n.status in ("success", "pass")]
    written = (
        rows_written_by(layout.warehouse, result.invocation_id)
        if result.success and result.invocation_id
        else {}
    )
    marts = {m: w for m, w in written.items() if not m.startswith(("stg_", "int_"))}
    return StepReport(
        Step.BUILD,
        result.success,
        rows=(
            f"{sum(n.resource_type == 'model' for n in done)} models, "
            f"{sum(n.resource_type != 'model' for n in done)} tests/seeds ok"
            + (
                "; rows written: "
                + ", ".join(f"{m} {new:,} of {total:,}" for m, (new, total) in marts.items())
                if marts
                else ""
            )
        ),
        detail=(f"on Spark ({engine}); " if is_spark(engine) else "")
        + "bronze "
        + ", ".join(f"{t}@v{v}" for t, v in result.bronze_versions.items()),
        reason=(
            f"dbt could not run: {result.error}"
            if result.error
            else "; ".join(f"{n.resource_type} {n.name}: {n.status}" for n in result.failures)
        ),
        result=result,
    )


def gate(
    layout: Layout,
    *,
    tables: list[str] | None = None,
    as_of: datetime | None = None,
    env: str | None = None,
    parameters_file: Path | None = None,
    all_rows: bool = False,
) -> StepReport[GateOutcome]:
    """The data-quality gate on the lake and the warehouse; reports go to ``layout.quality``.
    Fails when a critical expectation fails (warnings do not)."""
    from lakehouse.quality import validate

    report: RunReport
    report, data = validate(
        layout.warehouse,
        layout.lake,
        tables=tables,
        out=layout.quality,
        as_of=as_of,
        env=env,
        parameters_file=parameters_file,
        all_rows=all_rows,
    )
    new_rows = [t.new_rows for t in report.tables if t.new_rows is not None]
    return StepReport(
        Step.GATE,
        report.passed,
        rows=f"{sum(t.rows for t in report.tables):,} rows in {len(report.tables)} tables"
        + (f", {sum(new_rows):,} new" if new_rows else ""),
        detail=(
            f"run {report.run_id}: "
            f"{sum(len(t.results) for t in report.tables)} expectations, "
            f"{len(report.warnings)} warnings"
        ),
        reason=(
            "the data-quality gate blocked: "
            + ", ".join(f"{r.table}: {r.name}" for r in report.blocking_failures)
            + f" (reports in {layout.quality}/)"
        ),
        result=GateOutcome(report, data),
    )


def export(
    layout: Layout,
    model: str = DEFAULT_MODEL,
    *,
    shard_rows: int = DEFAULT_SHARD_ROWS,
    columns: list[str] | None = None,
    compression: str | None = None,
    force: bool = False,
    if_changed: bool = False,
    observer: JobObserver | None = None,
) -> StepReport[ExportResult]:
    """Export ``model`` from the warehouse into a new shard version under ``layout.shards``,
    after checking the gate's latest result in ``layout.quality``. With ``if_changed`` (the
    nightly job), a model whose exported rows are those of the latest version publishes
    nothing and the step says so."""
    from lakehouse.export import export_model, latest_version

    observer = observer or JobObserver()
    before = latest_version(layout.shards, model) if if_changed else None
    with observer.rows_progress(f"export {model}") as on_rows:
        folder, manifest = export_model(
            layout.warehouse,
            model,
            layout.shards,
            shard_rows=shard_rows,
            columns=columns,
            compression=compression,
            quality_dir=layout.quality,
            force=force,
            lake=layout.lake,
            on_rows=on_rows,
            if_changed=if_changed,
        )
    unchanged = before is not None and before[1].version == manifest.version
    return StepReport(
        Step.EXPORT,
        True,
        rows=", ".join(f"{split} {rows:,}" for split, rows in sorted(manifest.totals.items())),
        detail=(
            f"{manifest.model} unchanged since v{manifest.version}: no new version published"
            if unchanged
            else f"{manifest.model} v{manifest.version}, {len(manifest.shards)} shards in {folder}"
        ),
        result=ExportResult(folder, manifest, published=not unchanged),
    )


def materialize(layout: Layout, *, now: datetime | None = None) -> StepReport[FillReport]:
    """Fill the online store (``layout.online``) with every feature view the night built,
    after checking that the gate passed that very build (:func:`fill_online_store`)."""
    from lakehouse.features import fill_online_store

    report = fill_online_store(
        layout.warehouse, layout.quality, store=layout.online, shards=layout.shards, now=now
    )
    kept = (
        f"; kept the later fill of {', '.join(f'{k.view} (as of {k.as_of})' for k in report.kept)}"
        if report.kept
        else ""
    )
    as_of = f", fill as of {report.fills[0].as_of}" if report.fills else ""
    return StepReport(
        Step.MATERIALIZE,
        True,
        rows=", ".join(f"{f.view} {f.rows:,}" for f in report.fills) or "nothing new",
        detail=f"online store {report.store}{as_of}{kept}",
        result=report,
    )


# ---------------------------------------------------------------------------- the job


def run_job(
    layout: Layout,
    *,
    model: str = DEFAULT_MODEL,
    as_of: datetime | None = None,
    shard_rows: int = DEFAULT_SHARD_ROWS,
    pii_salt: str | None = None,
    observer: JobObserver | None = None,
    engine: str = "duckdb",
    allow_future_as_of: bool = False,
) -> JobReport:
    """Run ingest, build, gate and export on ``layout``, each only after the one before
    succeeded, in one :class:`RunContext`. ``as_of`` is the job's clock (default: now, read
    once): the time the gate measures freshness against, ingest's "now" and the night the
    build's lineage records; set it to replay a past night. ``pii_salt`` is
    the PII key when the environment has no ``LAKEHOUSE_PII_SALT`` (the demo's).
    ``engine="spark"`` runs the build on Spark; the other steps are the same. An ``as_of``
    later than this machine's clock is refused (:class:`lakehouse.clock.ClockError`) unless
    ``allow_future_as_of``."""
    run = RunContext.start(
        layout,
        as_of=as_of,
        engine=engine,
        pii_salt=pii_salt,
        allow_future_as_of=allow_future_as_of,
    )
    observer = observer or JobObserver()
    layout = run.layout
    steps: list[Callable[[], StepReport[Any]]] = [  # in the order of STEPS
        lambda: ingest(layout, now=run.as_of, observer=observer),
        lambda: build(layout, pii_salt=run.pii_salt, engine=run.engine, as_of=run.as_of),
        lambda: gate(layout, as_of=run.as_of),
        lambda: export(layout, model, shard_rows=shard_rows, if_changed=True, observer=observer),
        lambda: materialize(layout),
    ]
    report = JobReport(layout, as_of=run.as_of)
    for number, (name, do) in enumerate(zip(STEPS, steps, strict=True), start=1):
        observer.step_started(name, number, len(STEPS))
        started = time.perf_counter()
        try:
            step = do()
        except user_errors() as exc:
            step = StepReport(name, False, reason=failure_reason(exc))
        step = replace(step, seconds=round(time.perf_counter() - started, 1))
        report.steps.append(step)
        observer.step_finished(step)
        if not step.ok:
            break
    return report


# ---------------------------------------------------------------------------- the demo

# the demo's sample: big enough to train on, small enough for a laptop
DEMO_USERS, DEMO_PHOTOS, DEMO_DAYS = 2_000, 20_000, 45
DEMO_JOB_HOUR = timedelta(hours=6)  # the nightly job runs at 06:00 after the day's dump
DEMO_NIGHTS = 1  # nights after the history's first build: the demo runs DEMO_NIGHTS + 1 jobs
# parts of a demo folder a new sample replaces
_DEMO_PARTS = (
    "landing",
    "lake",
    "warehouse.duckdb",
    "warehouse.duckdb.wal",
    "quality",
    "shards",
    "spark",
    "online",
    "models",
)


@dataclass
class DemoReport:
    generated: GenerateReport
    nights: list[JobReport]  # the nightly job, night after night; the last is today's
    training: TrainingReport | None = None
    started_over: bool = False  # an older sample in the folder was discarded
    # the trained model's prediction for the newest photos, from the online store:
    # (photo_id, owner_user_id, predicted likes in its first 7 days)
    predictions: list[tuple[int, int, float]] = field(default_factory=list)

    @property
    def job(self) -> JobReport:
        return self.nights[-1]

    @property
    def ok(self) -> bool:
        return (
            all(night.ok for night in self.nights)
            and self.training is not None
            and self.training.beats_baseline
            and bool(self.predictions)
        )


def run_demo(
    workdir: str | Path = DEFAULT_ROOT,
    *,
    seed: int = 7,
    dirty_rate: float = 0.01,
    today: datetime | None = None,
    observer: JobObserver | None = None,
) -> DemoReport:
    """Two nights of a growing lake, then a model: sample landing data up to yesterday and
    the nightly job on it (yesterday 06:00 UTC, the job's clock; a first, full build); then
    yesterday's dump (new photos, late events, a retried upload, edited captions) and the
    job again this morning (an incremental night); then a small model trained on the
    shards. The same ``today`` and ``seed`` give the same run; a rerun on the same day runs
    this morning's job once more (nothing new to do)."""
    from lakehouse.loader.training import train_popularity_model
    from lakehouse.synth import GenerateConfig, generate
    from lakehouse.warehouse.pii import DEMO_SALT

    observer = observer or JobObserver()
    day = (today or datetime.now(UTC)).replace(hour=0, minute=0, second=0, microsecond=0)
    workdir = Path(workdir)
    layout = Layout.from_root(workdir, env={})
    started_over = discard_stale_demo(workdir, day)
    if started_over:
        observer.note(f"sample data in {workdir} was generated for another day; starting over")
    history = GenerateConfig(
        out=Path(layout.landing),
        users=DEMO_USERS,
        photos=DEMO_PHOTOS,
        days=DEMO_DAYS,
        seed=seed,
        dirty_rate=dirty_rate,
        end=day - timedelta(days=DEMO_NIGHTS),
    )
    nights: list[JobReport] = []
    generated = None
    have = _demo_nights(layout)
    for night in range(min(have, DEMO_NIGHTS), DEMO_NIGHTS + 1):
        with observer.steps_progress("generate") as progress:
            generated = generate(replace(history, nights=night), progress)
        observer.step_finished(StepReport(Step.GENERATE, True, result=generated))
        clock = history.end + timedelta(days=night) + DEMO_JOB_HOUR
        observer.note(f"the nightly job of {clock:%Y-%m-%d %H:%M} UTC")
        # the sample's own clock (06:00 of its day), not a person's typing: before 06:00 UTC
        # it is a few hours ahead of the machine's, which the demo means
        job = run_job(
            layout, as_of=clock, pii_salt=DEMO_SALT, observer=observer, allow_future_as_of=True
        )
        nights.append(job)
        if not job.ok:
            break
    assert generated is not None
    report = DemoReport(generated, nights, started_over=started_over)
    if report.job.ok:
        checkpoint = workdir / DEMO_MODEL
        checkpoint.unlink(missing_ok=True)  # a new model on today's shards
        with observer.steps_progress("train") as progress:
            report.training = train_popularity_model(
                f"{report.job.layout.model_shards(DEFAULT_MODEL)}/{LATEST}",
                checkpoint=checkpoint,
                on_step=progress,
            )
        observer.step_finished(
            StepReport(Step.TRAIN, report.training.beats_baseline, result=report.training)
        )
        report.predictions = _predict_newest(
            report.job.layout, checkpoint, report.job.as_of or datetime.now(UTC)
        )
        observer.step_finished(
            StepReport(
                Step.PREDICT,
                bool(report.predictions),
                rows=f"{len(report.predictions)} photos",
                result=report.predictions,
            )
        )
    return report


DEMO_MODEL = "models/popularity.pt"  # the demo's trained model, under its folder


def _predict_newest(
    layout: Layout, checkpoint: Path, now: datetime
) -> list[tuple[int, int, float]]:
    """What an app does for a photo just posted: its features and its owner's from the online
    store, then the trained model. The demo asks for the three newest photos."""
    from lakehouse.features import photo_request
    from lakehouse.loader.training import load_popularity_model, predict_likes_7d
    from lakehouse.warehouse import connect, project_dir

    con = connect(layout.warehouse, project_dir())
    try:
        newest = [
            int(row[0])
            for row in con.execute(
                "select photo_id from online_photo_features order by posted_at desc, photo_id "
                "limit 3"
            ).fetchall()
        ]
    finally:
        con.close()
    if not newest:
        return []
    columns = photo_request(newest, store=layout.online, now=now)
    likes = predict_likes_7d(load_popularity_model(checkpoint), columns)
    return list(zip(newest, columns["owner_user_id"], likes, strict=True))


def _demo_nights(layout: Layout) -> int:
    """Nights the demo's landing folder already holds (0 for a new folder)."""
    from lakehouse.synth import MANIFEST

    try:
        manifest = json.loads((Path(layout.landing) / MANIFEST).read_text())
        return int(manifest["config"].get("nights", 0))
    except (OSError, ValueError, KeyError, TypeError):
        return 0


def discard_stale_demo(workdir: Path, day: datetime) -> bool:
    """A demo folder generated for another day holds a different sample under the same file
    names and ids; mixing the two would corrupt the lake, so the demo starts over. Returns
    whether anything was removed."""
    from lakehouse.synth import MANIFEST

    manifest = workdir / "landing" / MANIFEST
    if not manifest.exists():
        return False
    try:
        config = json.loads(manifest.read_text())["config"]
        through = datetime.fromisoformat(config["end"]) + timedelta(days=int(config["nights"]))
    except (OSError, ValueError, KeyError, TypeError):
        through = None
    if through == day:
        return False
    for part in _DEMO_PARTS:
        target = workdir / part
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
    return True
