"""Bronze Delta tables -> DuckDB warehouse, built by the dbt project at the repo root.

Public surface: :func:`run_dbt` (``dbt build`` with pinned bronze versions),
:func:`connect` (a DuckDB connection that can read the staging views),
:func:`ensure_extensions`, and :class:`WarehouseError`.
"""

from lakehouse.warehouse.dbt_build import BRONZE_TABLES, BuildResult, bronze_versions, run_dbt
from lakehouse.warehouse.duckdb_env import (
    DEFAULT_DUCKDB,
    WarehouseError,
    connect,
    ensure_extensions,
    project_dir,
)

__all__ = [
    "BRONZE_TABLES",
    "DEFAULT_DUCKDB",
    "BuildResult",
    "WarehouseError",
    "bronze_versions",
    "connect",
    "ensure_extensions",
    "project_dir",
    "run_dbt",
]
