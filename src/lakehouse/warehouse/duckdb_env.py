"""The DuckDB side of the warehouse: where the project and the database are, and the
extensions it needs installed from their PyPI wheels (DuckDB would otherwise download them
at run time): delta to read bronze, httpfs and aws to read it from S3-compatible storage."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlparse

import duckdb
import duckdb_extension_aws
import duckdb_extension_delta
import duckdb_extension_httpfs

from lakehouse.layout import project_dir  # noqa: F401  (re-exported by lakehouse.warehouse)

DEFAULT_EXTENSIONS = ".duckdb/extensions"
# bounds DuckDB's memory (e.g. 4GB) in dbt (profiles.yml) and in the gate; unset: DuckDB's default
MEMORY_LIMIT_VARIABLE = "LAKEHOUSE_DUCKDB_MEMORY_LIMIT"
# where DuckDB finds its extensions (profiles.yml reads it too); relative to the project
EXTENSIONS_VARIABLE = "LAKEHOUSE_DUCKDB_EXTENSIONS"
# the DuckDB secret that reads an s3:// lake (object_store_sql)
S3_SECRET = "lakehouse_s3"


class WarehouseError(Exception):
    """A problem with the warehouse a user can fix; the message says how."""


def extension_dir(project: Path) -> Path:
    """Where DuckDB looks for extensions; the same setting profiles.yml gives dbt."""
    configured = Path(os.environ.get(EXTENSIONS_VARIABLE, DEFAULT_EXTENSIONS))
    return configured if configured.is_absolute() else project / configured


_WHEELS = {
    "delta": duckdb_extension_delta,
    "httpfs": duckdb_extension_httpfs,
    "aws": duckdb_extension_aws,
}


def ensure_extensions(project: Path) -> Path:
    """Install delta, httpfs and aws from their duckdb-extension-* wheels (idempotent)."""
    directory = extension_dir(project)
    directory.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(config={"extension_directory": str(directory)})
    try:
        installed = {
            name
            for (name,) in con.sql(
                "select extension_name from duckdb_extensions() where installed"
            ).fetchall()
        }
        for name, wheel in _WHEELS.items():
            if name in installed:
                continue
            built = (
                Path(wheel.__file__).parent
                / "extensions"
                / f"v{duckdb.__version__}"
                / f"{name}.duckdb_extension"
            )
            if not built.exists():
                raise WarehouseError(
                    f"duckdb-extension-{name} has no build for DuckDB {duckdb.__version__} "
                    f"({built} missing); install the matching versions from constraints.txt"
                )
            con.sql(f"install '{built}'")
    finally:
        con.close()
    return directory


# per connection (and per cursor: a DuckDB cursor is a connection of its own): UTC days
# whatever the machine's zone (timestamptz -> date uses it), no progress bar in logs, and
# ASOF joins always as ASOF joins: DuckDB runs one whose left side it estimates at 64 rows or
# fewer as a nested loop, and it estimates the serving views' spine (every user at one
# instant) that small: 19.4 s instead of 1.5 s at 10M events (macros/features.sql)
SESSION_SETTINGS = {
    "TimeZone": "UTC",
    "enable_progress_bar": "false",
    "asof_loop_join_threshold": "0",
}


def connect_config(project: Path) -> dict[str, str | bool]:
    """DuckDB's settings when a connection opens: extensions from the project's folder (put
    there from their wheels by ``ensure_extensions``), never downloaded at run time."""
    return {
        "extension_directory": str(extension_dir(project)),
        "autoinstall_known_extensions": False,
    }


def settings_sql() -> list[str]:
    """The per-connection settings (:data:`SESSION_SETTINGS`) as statements."""
    return [f"set {name} = '{value}'" for name, value in SESSION_SETTINGS.items()]


def database_sql(lake: str) -> list[str]:
    """What the database needs once before it reads the lake: the delta extension, the memory
    limit from the environment and access to ``lake`` when it is on S3."""
    statements = ["load delta"]
    limit = os.environ.get(MEMORY_LIMIT_VARIABLE, "").strip()
    if limit:
        statements.append(f"set memory_limit = '{limit.replace(chr(39), '')}'")
    return statements + object_store_sql(lake)


def session_sql(lake: str) -> list[str]:
    """Everything a connection that reads the warehouse and the lake runs first: the one set-up
    of a DuckDB session, for dbt (``dbt_plugin``), the gate's GX datasource and ``connect``."""
    return database_sql(lake) + settings_sql()


def prepare(con: duckdb.DuckDBPyConnection, statements: list[str], project: Path) -> None:
    """Run set-up ``statements`` on ``con``; what a user can fix is said in one line."""
    for statement in statements:
        try:
            con.execute(statement)
        except duckdb.Error as error:
            if statement == "load delta":
                raise WarehouseError(
                    "DuckDB's delta extension is not installed in "
                    f"{extension_dir(project)}. Run `make setup` (or `lakehouse build`), which "
                    "installs it from the duckdb-extension-delta wheel; nothing is downloaded."
                ) from None
            if statement.startswith(f"create or replace secret {S3_SECRET}"):
                raise WarehouseError(
                    "no AWS credentials for the lake on S3: set AWS_ACCESS_KEY_ID and "
                    "AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN for temporary ones; "
                    "AWS_REGION, AWS_ENDPOINT_URL for an S3-compatible server); DuckDB found none "
                    "in the environment"
                ) from None
            if statement.startswith("set memory_limit"):
                raise WarehouseError(
                    f"{MEMORY_LIMIT_VARIABLE}={os.environ.get(MEMORY_LIMIT_VARIABLE)!r} is not "
                    f"a DuckDB memory size (e.g. 4GB, 512MB): {error}"
                ) from None
            raise


def check_warehouse_path(path: str | Path | None, variable: str = "LAKEHOUSE_DUCKDB") -> None:
    """A warehouse file DuckDB can open or create: its folder must exist (DuckDB makes the
    file, never folders). ``:memory:`` and URIs (``md:``, ``s3://``) are DuckDB's to judge."""
    text = str(path or "")
    if not text or text.startswith(":") or ":" in text.split("/")[0]:
        return
    folder = Path(text).expanduser().absolute().parent
    if not folder.is_dir():
        raise WarehouseError(
            f"{variable}={text}: the folder {folder} does not exist, so DuckDB cannot create "
            f"the warehouse file there; create it, or set {variable} to a file in a folder "
            "that exists"
        )


def object_store_sql(lake: str) -> list[str]:
    """Statements that let DuckDB read ``lake`` when it is on S3: credentials come from the
    AWS_* environment through the aws extension's credential chain, so no key is ever written
    into SQL, dbt's logs or run results. Empty for a local lake."""
    if not lake.startswith("s3://"):
        return []
    options = ["type s3", "provider credential_chain", "chain 'env'"]
    options.append(f"region '{os.environ.get('AWS_REGION', 'us-east-1')}'")
    endpoint = os.environ.get("AWS_ENDPOINT_URL")
    if endpoint:  # an S3-compatible server (MinIO, moto, ...) addressed by path
        parsed = urlparse(endpoint)
        options += [
            f"endpoint '{parsed.netloc}'",
            "url_style 'path'",
            f"use_ssl {'false' if parsed.scheme == 'http' else 'true'}",
        ]
    return [
        "load httpfs",
        "load aws",
        f"create or replace secret {S3_SECRET} ({', '.join(options)})",
    ]


def locked_error(path: Path, error: Exception) -> Exception:
    """DuckDB allows one writing process per file: say who holds it instead of a trace."""
    text = str(error)
    if "lock" not in text.lower():
        return error
    holder = (
        text[text.find("Conflicting lock") :].split(". See")[0] if "Conflicting" in text else ""
    )
    return WarehouseError(
        f"the warehouse {path} is in use by another process ({holder or 'locked'}); "
        "DuckDB lets one process write a database file at a time. Wait for that process "
        "(a running `lakehouse build`/`dbt build`, a notebook holding the file open) to end, "
        "then run again"
    )


def ensure_writable(path: Path) -> None:
    """Fail fast, with a readable message, when another process holds the warehouse."""
    if not path.exists():
        return
    try:
        duckdb.connect(str(path)).close()
    except duckdb.IOException as error:
        raise locked_error(path, error) from error


def connect(
    database: str | Path, project: Path, read_only: bool = True, lake: str | None = None
) -> duckdb.DuckDBPyConnection:
    """A connection to the warehouse that can also scan the bronze Delta tables of ``lake``."""
    path = Path(database)
    if not path.exists():
        raise WarehouseError(
            f"no warehouse at {path}; build it with `lakehouse build` (after a dbt build on "
            "Spark of your own, `lakehouse attach` serves its tables from it)"
        )
    try:
        con = duckdb.connect(str(path), read_only=read_only, config=connect_config(project))
    except duckdb.IOException as error:
        raise locked_error(path, error) from error
    try:
        prepare(con, session_sql(lake or ""), project)
    except BaseException:
        con.close()
        raise
    return con
