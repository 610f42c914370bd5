"""The assets and checks of the nightly job, each a thin call into :mod:`lakehouse.job`:

- ``bronze/<table>``: the Delta tables ``ingest`` lands (one step lands them all);
- every dbt model and seed, through dagster-dbt from dbt's ``manifest.json``, built with the
  bronze versions pinned the way ``lakehouse build`` pins them; dbt's tests are checks;
- the data-quality gate: one check per expectation of ``expectations/*.json`` on the table it
  validates; ``critical`` ones block everything downstream, the rest report as warnings;
- ``shards/<model>``: the shard version ``lakehouse export`` publishes, with its manifest's
  lineage as metadata;
- ``online_store``: the online feature store ``lakehouse materialize`` fills from the feature
  views (the dbt models declaring ``meta.online``) after the gate passed their build.
"""

import re
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    AssetSpec,
    DataVersion,
    Failure,
    MaterializeResult,
    MetadataValue,
    Output,
    RetryRequested,
    asset,
    multi_asset,
    multi_asset_check,
)
from dagster_dbt import DagsterDbtTranslator, DbtCliResource, DbtProject, dbt_assets

from lakehouse.contracts import INGESTED
from lakehouse.contracts import bronze_tables as declared_bronze_tables
from lakehouse.ingest import QUARANTINE_TABLE
from lakehouse.job import DEFAULT_MODEL, ExportResult, StepReport, failure_reason, user_errors
from lakehouse.job import export as export_step
from lakehouse.job import gate as gate_step
from lakehouse.job import ingest as ingest_step
from lakehouse.job import materialize as materialize_step
from lakehouse.orchestrate.resources import LakehouseResource
from lakehouse.printable import shown
from lakehouse.quality import BLOCKING, outline_suites
from lakehouse.quality.outline import SuiteOutline
from lakehouse.quality.record import DBT_TESTS
from lakehouse.storage import delta_exists, is_transient, open_delta
from lakehouse.warehouse import online_models

BRONZE = "bronze"
LANDED_TABLES = (*declared_bronze_tables(), QUARANTINE_TABLE)  # what one ingest writes
GATE_CHECK_PREFIX = "gx_"
T = TypeVar("T")


def bronze_key(table: str) -> AssetKey:
    return AssetKey([BRONZE, table])


def shards_key(model: str = DEFAULT_MODEL) -> AssetKey:
    return AssetKey(["shards", model])


# ------------------------------------------------------------------- steps as Dagster steps


def guarded(lakehouse: LakehouseResource, call: Callable[[], T]) -> T:
    """Run one step of the job (or its preparation). A transient storage error (unreachable,
    timed out, slowed down) asks Dagster to retry the step; any other error a user can act
    on fails it with the job's one-line reason and no retry; a bug propagates with its
    traceback."""
    try:
        return call()
    except user_errors() as exc:
        if is_transient(exc) and lakehouse.storage_retries > 0:
            raise RetryRequested(
                max_retries=lakehouse.storage_retries, seconds_to_wait=lakehouse.retry_seconds
            ) from exc
        raise Failure(description=failure_reason(exc), allow_retries=False) from exc


def _failed(step: StepReport) -> Failure:
    return Failure(description=step.failure, allow_retries=False)


# ------------------------------------------------------------------- bronze


@multi_asset(
    name="ingest",
    specs=[
        AssetSpec(
            bronze_key(table),
            group_name=BRONZE,
            kinds={"delta"},
            description=(
                f"Bronze Delta table <lake>/bronze/{table}, appended by `lakehouse ingest` "
                "from the landing folder."
            ),
            # the quarantine exists once a row has been rejected
            skippable=table == QUARANTINE_TABLE,
        )
        for table in LANDED_TABLES
    ],
)
def bronze_tables(
    context: AssetExecutionContext, lakehouse: LakehouseResource
) -> Iterator[MaterializeResult]:
    """Land every new landing file into the bronze tables (files already in bronze are
    skipped), then record each table's Delta version."""
    layout = lakehouse.layout()
    step = guarded(lakehouse, lambda: ingest_step(layout, now=lakehouse.clock()))
    if not step.ok:
        raise _failed(step)
    report = step.result
    context.log.info(shown(f"ingest: {step.rows}; {step.detail}", markup=False))
    for table in LANDED_TABLES:
        uri = layout.bronze(table)
        if not delta_exists(uri):
            continue
        version = open_delta(uri).version()
        files = [f for f in report.files if f.table == table and f.status == INGESTED]
        yield MaterializeResult(
            asset_key=bronze_key(table),
            data_version=DataVersion(str(version)),
            metadata={
                "delta_version": version,
                "uri": MetadataValue.path(uri),
                "files_ingested": len(files),
                "rows_landed": sum(f.rows_landed for f in files),
                "rows_quarantined": sum(f.rows_quarantined for f in files),
                "rows_duplicate": sum(f.rows_duplicate for f in files),
                "ingest_run_id": report.run_id,
            },
        )


# ------------------------------------------------------------------- dbt


class LakehouseDbtTranslator(DagsterDbtTranslator):
    """dbt sources are the bronze tables (``bronze/<identifier>``); models are grouped by
    their folder (staging, intermediate, marts), seeds as seeds."""

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> AssetKey:
        if dbt_resource_props["resource_type"] == "source":
            return bronze_key(dbt_resource_props["identifier"])
        return super().get_asset_key(dbt_resource_props)

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        kind = dbt_resource_props["resource_type"]
        if kind == "source":
            return BRONZE
        if kind == "model":
            return dbt_resource_props["fqn"][1]
        return f"{kind}s"


def dbt_models_asset(project: DbtProject, translator: DagsterDbtTranslator):
    """Every dbt model, seed and test of ``project`` as one multi-asset step running
    ``dbt build``."""

    @dbt_assets(
        manifest=project.manifest_path,
        project=project,
        dagster_dbt_translator=translator,
        name="dbt_build",
    )
    def dbt_models(
        context: AssetExecutionContext, dbt: DbtCliResource, lakehouse: LakehouseResource
    ) -> Iterator[Any]:
        """``dbt build`` of the selected models, every bronze table pinned at the Delta
        version it has now (dbt vars, as ``lakehouse build``); each model's metadata gets
        the pins and its rows written tonight (dagster-dbt adds dbt's invocation id)."""
        from lakehouse.warehouse import (
            dbt_artifacts,
            pin_bronze_versions,
            prepare_dbt,
            rows_written_by,
        )

        layout = lakehouse.layout()
        invocation = guarded(
            lakehouse,
            lambda: prepare_dbt(
                layout.lake,
                layout.warehouse,
                versions=pin_bronze_versions(layout.lake, {}),
                project=project.project_dir,
                as_of=lakehouse.clock(),
            ),
        )
        with invocation.environment():
            cli = dbt.cli(
                ["build", *invocation.flags],
                context=context,
                raise_on_error=False,
                # where `lakehouse build` leaves them: export reads the model's meta there
                target_path=dbt_artifacts(project.project_dir),
            )
        events = list(cli.stream())  # held until dbt ends, to add the rows written
        try:
            run_results = cli.get_artifact("run_results.json")
        except FileNotFoundError:
            raise Failure(
                description=f"dbt build could not run: {cli.get_error() or 'see its logs'}",
                allow_retries=False,
            ) from None
        invocation_id = run_results["metadata"]["invocation_id"]
        invocation.finish(
            "build",
            invocation_id,
            cli.target_path / "manifest.json",
            succeeded=cli.is_successful(),
        )
        written = rows_written_by(layout.warehouse, invocation_id) if cli.is_successful() else {}
        pins = MetadataValue.json(dict(sorted(invocation.versions.items())))
        for event in events:
            if isinstance(event, Output):
                new, total = written.get(event.output_name, (None, None))
                extra: dict[str, Any] = {"bronze_versions": pins}
                if total is not None:
                    extra |= {"rows_written": new, "rows_total": total}
                event = event.with_metadata({**event.metadata, **extra})
            yield event
        if not cli.is_successful():
            failures = [
                f"{r['unique_id']}: {r['status']}"
                for r in run_results.get("results", [])
                if r.get("status") in ("error", "fail")
            ]
            raise Failure(
                description="dbt build: " + ("; ".join(failures) or "failed, see its logs"),
                allow_retries=False,
            )

    return dbt_models


# ------------------------------------------------------------------- the gate


def check_name(expectation_name: str) -> str:
    """A Dagster check name for an expectation's report name (letters, digits, ``_``)."""
    return GATE_CHECK_PREFIX + re.sub(r"[^A-Za-z0-9]+", "_", expectation_name).strip("_")


def gate_checks(
    suites: list[SuiteOutline], model_key: Callable[[str], AssetKey]
) -> list[tuple[SuiteOutline, list[AssetCheckSpec]]]:
    """One check spec per expectation, on the asset its suite validates, in the suite's
    order (a name repeated within a suite gets ``_2``, ``_3``...)."""
    out = []
    for suite in suites:
        table = suite.bronze_table
        key = bronze_key(table) if table else model_key(suite.relation)
        specs: list[AssetCheckSpec] = []
        seen: dict[str, int] = {}
        for expectation in suite.expectations:
            name = check_name(expectation.name)
            seen[name] = seen.get(name, 0) + 1
            if seen[name] > 1:
                name = f"{name}_{seen[name]}"
            specs.append(
                AssetCheckSpec(
                    name,
                    asset=key,
                    # Dagster's blocking holds back the assets downstream of the checked
                    # one. The gate runs once, after dbt build (bronze is checked at the
                    # versions the build pinned), so a bronze check cannot hold back dbt;
                    # a critical one still fails the gate's step, which stops the export.
                    blocking=expectation.severity == BLOCKING and table is None,
                    description=f"[{expectation.severity}] {expectation.name}: "
                    + (expectation.notes or expectation.type),
                    metadata={"severity": expectation.severity, "suite": suite.name},
                )
            )
        out.append((suite, specs))
    return out


def gate_asset_check(model_key: Callable[[str], AssetKey], manifest: Path):
    """The gate: one GX Checkpoint over every suite (``lakehouse.job.gate``), reported as
    one check result per expectation. A failed critical expectation fails the step (with
    the job's reason) after every result is reported, so nothing downstream runs. The
    checks derived from dbt contracts come from ``manifest``, the one the assets use."""
    checks = gate_checks(outline_suites(manifest=manifest), model_key)

    @multi_asset_check(
        name="quality_gate",
        specs=[spec for _, specs in checks for spec in specs],
        description="The data-quality gate: Great Expectations suites run inside DuckDB.",
    )
    def quality_gate(
        context: AssetCheckExecutionContext, lakehouse: LakehouseResource
    ) -> Iterator[AssetCheckResult]:
        layout = lakehouse.layout()
        step = guarded(
            lakehouse,
            lambda: gate_step(
                layout,
                as_of=lakehouse.clock(),
                env=lakehouse.gate_env,
                parameters_file=lakehouse.parameters_file(),
            ),
        )
        report, _ = step.result
        context.log.info(shown(f"quality gate: {step.rows}; {step.detail}", markup=False))
        tables = {t.table: t for t in report.tables}
        for suite, specs in checks:
            table = tables.get(suite.name)
            # the suite's expectations, in order (dbt's tests are dbt's own checks here)
            results = [r for r in table.results if r.type != DBT_TESTS] if table else []
            unreadable = next((r for r in results if r.type == "table_is_readable"), None)
            by_position = len(results) == len(specs) and unreadable is None
            for index, spec in enumerate(specs):
                result = results[index] if by_position else unreadable
                yield _check_result(spec, result, report.run_id, layout.quality)
        if not step.ok:  # a critical expectation failed, on a model or on bronze
            raise _failed(step)

    return quality_gate


def _check_result(spec: AssetCheckSpec, result: Any, run_id: str, quality: Any) -> AssetCheckResult:
    severity = spec.metadata["severity"]
    metadata: dict[str, Any] = {
        "severity": severity,
        "gate_run_id": run_id,
        "report": MetadataValue.path(str(quality / "report.html")),
    }
    if result is None:  # the gate ran no such expectation (the suite changed since loading)
        return AssetCheckResult(
            asset_key=spec.asset_key,
            check_name=spec.name,
            passed=False,
            severity=AssetCheckSeverity.ERROR,
            metadata={**metadata, "error": "not evaluated by the gate's run"},
        )
    metadata |= {"expected": result.expected, "rows": result.rows}
    if result.observed_value is not None:
        metadata["observed"] = MetadataValue.text(str(result.observed_value))
    if result.element_count:
        metadata |= {
            "rows_checked": result.element_count,
            "rows_unexpected": result.unexpected_count,
        }
    if result.error:
        metadata["error"] = result.error
    return AssetCheckResult(
        asset_key=spec.asset_key,
        check_name=spec.name,
        passed=bool(result.success),
        severity=AssetCheckSeverity.ERROR if severity == BLOCKING else AssetCheckSeverity.WARN,
        metadata=metadata,
    )


# ------------------------------------------------------------------- export


def export_asset(model_key: Callable[[str], AssetKey], model: str = DEFAULT_MODEL):
    @asset(
        key=shards_key(model),
        deps=[model_key(model)],
        group_name="shards",
        kinds={"arrow"},
        output_required=False,  # nothing changed: the latest version stands, no materialization
        description=f"Arrow shards of {model} (`lakehouse export`): a new version when the "
        "training set changed, with its manifest's lineage.",
    )
    def shards(
        context: AssetExecutionContext, lakehouse: LakehouseResource
    ) -> Iterator[MaterializeResult]:
        layout = lakehouse.layout()
        step = guarded(lakehouse, lambda: export_step(layout, model, if_changed=True))
        exported: ExportResult = step.result
        context.log.info(shown(f"export: {step.detail}", markup=False))
        if not exported.published:
            return
        manifest = exported.manifest
        lineage, gate = manifest.lineage, manifest.quality_gate
        yield MaterializeResult(
            data_version=DataVersion(f"v{manifest.version}"),
            metadata={
                "version": manifest.version,
                "folder": MetadataValue.path(str(exported.folder)),
                "rows_per_split": MetadataValue.json(manifest.totals),
                "shards": len(manifest.shards),
                "sha256_count": sum(1 for s in manifest.shards if s.sha256),
                "bronze_versions": MetadataValue.json(lineage.get("bronze_versions", {})),
                "dbt_invocation_id": str(lineage.get("dbt_invocation_id")),
                "dbt_manifest_sha256": str(lineage.get("dbt_manifest_sha256")),
                "gate_run_id": str(gate.get("run_id")),
                "gate_passed": bool(gate.get("passed")),
                "content_fingerprint": manifest.content_fingerprint,
            },
        )

    return shards


# ------------------------------------------------------------------- serving

ONLINE_STORE = AssetKey(["online_store"])


def online_store_asset(model_key: Callable[[str], AssetKey], manifest: Path):
    @asset(
        key=ONLINE_STORE,
        deps=[
            shards_key(),
            *(model_key(name) for name in online_models(manifest)),
        ],
        group_name="serving",
        kinds={"sqlite"},
        description="The online feature store (`lakehouse materialize`): each feature view "
        "copied whole from the build the gate passed, with its as_of, dbt invocation and "
        "shard version.",
    )
    def online_store(
        context: AssetExecutionContext, lakehouse: LakehouseResource
    ) -> MaterializeResult:
        layout = lakehouse.layout()
        step = guarded(lakehouse, lambda: materialize_step(layout))
        context.log.info(shown(f"materialize: {step.rows}; {step.detail}", markup=False))
        fills = step.result.fills
        return MaterializeResult(
            data_version=DataVersion(fills[0].invocation_id if fills else "empty"),
            metadata={
                "store": str(step.result.store),
                "rows_per_view": MetadataValue.json({f.view: f.rows for f in fills}),
                "as_of": fills[0].as_of if fills else "",
                "dbt_invocation_id": fills[0].invocation_id if fills else "",
                "shard_version": fills[0].shard_version if fills else None,
            },
        )

    return online_store
