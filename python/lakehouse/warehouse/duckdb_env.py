"""The DuckDB side of the warehouse: where the project and the database are, and the delta
extension installed from its PyPI wheel (DuckDB would otherwise download it at run time)."""

from __future__ import annotations

import os
from pathlib import Path

import duckdb
import duckdb_extension_delta

DEFAULT_DUCKDB = "data/demo/warehouse.duckdb"
DEFAULT_EXTENSIONS = ".duckdb/extensions"


class WarehouseError(Exception):
    """A problem with the warehouse a user can fix; the message says how."""


def project_dir(start: Path | None = None) -> Path:
    """The dbt project: the nearest folder with dbt_project.yml from ``start`` (or the
    working directory) upwards, else the checkout this package was installed from."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "dbt_project.yml").exists():
            return folder
    checkout = Path(__file__).resolve().parents[3]
    if (checkout / "dbt_project.yml").exists():
        return checkout
    raise WarehouseError(
        f"no dbt_project.yml in {here} or above; run from the lakehouse checkout "
        "or pass --project-dir"
    )


def extension_dir(project: Path) -> Path:
    """Where DuckDB looks for extensions; the same setting profiles.yml gives dbt."""
    configured = Path(os.environ.get("LAKEHOUSE_DUCKDB_EXTENSIONS", DEFAULT_EXTENSIONS))
    return configured if configured.is_absolute() else project / configured


def ensure_delta_extension(project: Path) -> Path:
    """Install the delta extension from the duckdb-extension-delta wheel (idempotent)."""
    directory = extension_dir(project)
    wheel_file = (
        Path(duckdb_extension_delta.__file__).parent
        / "extensions"
        / f"v{duckdb.__version__}"
        / "delta.duckdb_extension"
    )
    if not wheel_file.exists():
        raise WarehouseError(
            f"duckdb-extension-delta has no build for DuckDB {duckdb.__version__} "
            f"({wheel_file} missing); install the matching pair from constraints.txt"
        )
    directory.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(config={"extension_directory": str(directory)})
    try:
        installed = con.sql(
            "select installed from duckdb_extensions() where extension_name = 'delta'"
        ).fetchone()
        if not (installed and installed[0]):
            con.sql(f"install '{wheel_file}'")
    finally:
        con.close()
    return directory


def connect(
    database: str | Path, project: Path, read_only: bool = True
) -> duckdb.DuckDBPyConnection:
    """A connection to the warehouse that can read its staging views (they scan Delta)."""
    path = Path(database)
    if not path.exists():
        raise WarehouseError(f"no warehouse at {path}; build it with `lakehouse build`")
    con = duckdb.connect(
        str(path),
        read_only=read_only,
        config={"extension_directory": str(extension_dir(project))},
    )
    con.sql("load delta")
    con.sql("set TimeZone = 'UTC'")  # days are UTC days, as in the dbt profile
    con.sql("set enable_progress_bar = false")  # no bar noise in logs
    return con
