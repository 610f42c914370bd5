"""The nightly job as a Dagster code location: bronze tables, every dbt model and the shard
version as assets, the data-quality gate as asset checks, a nightly schedule and a sensor on
the landing folder. Install with ``pip install -e ".[orchestrate]"`` (``make setup`` does)
and start the UI from the repo root with ``dagster dev`` (pyproject.toml's ``[tool.dagster]``
names :mod:`lakehouse.orchestrate.definitions`).

Every asset calls the job layer (:mod:`lakehouse.job`) and the layers' public functions; none
of the job's logic lives here. Public surface: :class:`LakehouseResource` (where the data
lives: the run config), :func:`build_definitions` and the keys of the assets.
"""

from lakehouse.orchestrate.location import build_definitions
from lakehouse.orchestrate.resources import LakehouseResource

__all__ = ["LakehouseResource", "build_definitions"]
