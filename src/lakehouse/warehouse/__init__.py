"""Bronze Delta tables -> DuckDB warehouse, built by the dbt project at the repo root.

Public surface: :func:`run_dbt` (``dbt build`` with pinned bronze versions),
:func:`prepare_dbt` and :func:`record_dbt_manifest` (the same for another dbt runner, e.g.
dagster-dbt), :func:`pin_bronze_versions`, :func:`connect` (a DuckDB connection that can
read bronze too), the build's lineage (:func:`model_build`, :func:`latest_finished_build`,
:func:`latest_started`),
:func:`model_meta` (a model's ``meta`` from dbt's manifest), :func:`ensure_extensions`,
and :class:`WarehouseError`. ``engine="spark"`` on :func:`run_dbt` builds the same project on
Spark (:mod:`lakehouse.warehouse.spark`: :func:`spark_unavailable`, :func:`attach_spark_tables`).
"""

from lakehouse.engines import ENGINES
from lakehouse.warehouse.dbt_build import (
    BuildResult,
    DbtInvocation,
    attach_spark_build,
    bronze_versions,
    dbt_artifacts,
    exportable_models,
    model_contract,
    model_docs,
    model_meta,
    online_models,
    pin_bronze_versions,
    prepare_dbt,
    record_dbt_manifest,
    run_dbt,
)
from lakehouse.warehouse.duckdb_env import (
    WarehouseError,
    connect,
    ensure_extensions,
    project_dir,
)
from lakehouse.warehouse.lineage import (
    BuildLineage,
    FingerprintStep,
    Invocation,
    TestVerdict,
    built_fingerprint,
    fingerprint,
    fingerprint_chain,
    latest_build_seq,
    latest_finished_build,
    latest_started,
    model_build,
    rows_written_by,
    test_verdict,
)
from lakehouse.warehouse.spark import attach_spark_tables, spark_unavailable

__all__ = [
    "ENGINES",
    "BuildLineage",
    "BuildResult",
    "DbtInvocation",
    "FingerprintStep",
    "Invocation",
    "TestVerdict",
    "WarehouseError",
    "attach_spark_build",
    "attach_spark_tables",
    "bronze_versions",
    "built_fingerprint",
    "connect",
    "dbt_artifacts",
    "ensure_extensions",
    "exportable_models",
    "fingerprint",
    "fingerprint_chain",
    "latest_build_seq",
    "latest_finished_build",
    "latest_started",
    "model_build",
    "model_contract",
    "model_docs",
    "model_meta",
    "online_models",
    "pin_bronze_versions",
    "prepare_dbt",
    "project_dir",
    "record_dbt_manifest",
    "rows_written_by",
    "run_dbt",
    "spark_unavailable",
    "test_verdict",
]
