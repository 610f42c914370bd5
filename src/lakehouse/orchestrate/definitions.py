"""The code location ``dagster dev`` loads (pyproject.toml: ``[tool.dagster]``): the
definitions with the default locations (``data/demo``, or ``LAKEHOUSE_LAKE`` /
``LAKEHOUSE_DUCKDB`` from the environment)."""

from lakehouse.orchestrate.location import build_definitions

defs = build_definitions()
