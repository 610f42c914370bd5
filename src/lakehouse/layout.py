"""Where everything lives, derived once from one root: the landing folder, the lake and its
bronze tables, the warehouse, the gate's reports and the shards.

Every command and the job resolve their paths here, so a default is stated once. The
environment variables are the ones dbt's ``profiles.yml`` reads too (``LAKEHOUSE_LAKE``,
``LAKEHOUSE_DUCKDB``), so ``lakehouse`` commands and a plain ``dbt build`` see the same lake
and warehouse.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

from lakehouse.storage import join_uri, normalize_uri

# the demo's folder, and the default for every path below
DEFAULT_ROOT = Path("data/demo")
ENV_LAKE = "LAKEHOUSE_LAKE"
ENV_WAREHOUSE = "LAKEHOUSE_DUCKDB"
# the online feature store: a file path (the embedded SQLite store) or redis://host:port/db
ENV_ONLINE_STORE = "LAKEHOUSE_ONLINE_STORE"


class ProjectNotFound(Exception):
    """No dbt project where one was looked for; the message says where to run from."""


def project_dir(start: Path | None = None) -> Path:
    """The dbt project: the nearest folder with dbt_project.yml from ``start`` (or the
    working directory) upwards, else the checkout this package was installed from."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "dbt_project.yml").exists():
            return folder
    checkout = Path(__file__).resolve().parents[2]
    if (checkout / "dbt_project.yml").exists():
        return checkout
    raise ProjectNotFound(
        f"no dbt_project.yml in {here} or above; run from the lakehouse checkout "
        "or pass --project-dir"
    )


def bronze_uri(lake: str, table: str) -> str:
    """``<lake>/bronze/<table>``: the one place this path is spelled."""
    return join_uri(lake, "bronze", table)


def _embedded_store(warehouse: Path) -> str:
    """The embedded online store's file, next to the warehouse (like the reports)."""
    return str(warehouse.parent / "online" / "features.sqlite")


@dataclass(frozen=True)
class Layout:
    """The paths of one deployment. Lake and shards may be ``s3://`` URIs; the warehouse and
    the gate's reports are local files (DuckDB writes one local file). ``spark`` is where the
    spark engine keeps its tables and metastore (next to the warehouse, like the reports)."""

    landing: str
    lake: str
    warehouse: Path
    quality: Path
    shards: str
    spark: Path
    # the online feature store `lakehouse materialize` fills: a SQLite file, or a redis:// URL
    online: str = _embedded_store(DEFAULT_ROOT / "warehouse.duckdb")

    @classmethod
    def from_root(cls, root: str | Path | None = None, env: dict[str, str] | None = None) -> Layout:
        """Everything under ``root`` (default ``data/demo``): ``landing/``, ``lake/``,
        ``warehouse.duckdb``, ``quality/``, ``shards/``, ``spark/``,
        ``online/features.sqlite``. ``LAKEHOUSE_LAKE``, ``LAKEHOUSE_DUCKDB`` and
        ``LAKEHOUSE_ONLINE_STORE`` in ``env`` (default: the process environment) move the
        lake, the warehouse and the online store; the reports, the Spark folder and the
        embedded online store stay next to the warehouse."""
        env = os.environ if env is None else env
        base = Path(root) if root is not None else DEFAULT_ROOT
        warehouse = Path(env.get(ENV_WAREHOUSE) or base / "warehouse.duckdb")
        return cls(
            landing=str(base / "landing"),
            lake=env.get(ENV_LAKE) or str(base / "lake"),
            warehouse=warehouse,
            quality=warehouse.parent / "quality",
            shards=str(base / "shards"),
            spark=warehouse.parent / "spark",
            online=env.get(ENV_ONLINE_STORE) or _embedded_store(warehouse),
        )

    def override(
        self,
        *,
        landing: str | None = None,
        lake: str | None = None,
        warehouse: str | Path | None = None,
        quality: str | Path | None = None,
        shards: str | None = None,
        online: str | None = None,
    ) -> Layout:
        """This layout with the given paths replaced (``None`` keeps one). A new warehouse
        brings its reports, Spark folder and embedded online store along unless ``quality``
        (``online``) is given too; an online store set apart from it stays."""
        changed = replace(
            self,
            landing=landing or self.landing,
            lake=lake or self.lake,
            shards=str(shards) if shards else self.shards,
            online=online or self.online,
        )
        if warehouse is not None:
            changed = replace(
                changed,
                warehouse=Path(warehouse),
                quality=Path(warehouse).parent / "quality",
                spark=Path(warehouse).parent / "spark",
            )
            if not online and self.online == _embedded_store(self.warehouse):
                changed = replace(changed, online=_embedded_store(Path(warehouse)))
        if quality is not None:
            changed = replace(changed, quality=Path(quality))
        return changed

    def resolved(self) -> Layout:
        """Absolute local paths (relative ones are relative to the working directory) and
        object-store URIs unchanged, as every layer expects them."""
        return Layout(
            landing=normalize_uri(self.landing),
            lake=normalize_uri(self.lake),
            warehouse=self.warehouse.expanduser().resolve(),
            quality=self.quality.expanduser().resolve(),
            shards=normalize_uri(self.shards),
            spark=self.spark.expanduser().resolve(),
            online=self.online
            if "://" in self.online
            else str(Path(self.online).expanduser().resolve()),
        )

    def bronze(self, table: str) -> str:
        return bronze_uri(self.lake, table)

    def model_shards(self, model: str) -> str:
        """``<shards>/<model>``: the versions of one exported mart and its ``latest``."""
        return join_uri(self.shards, model)
