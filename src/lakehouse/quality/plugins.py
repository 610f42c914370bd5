"""The project's Great Expectations extensions, for a plain GX session (a notebook, another
orchestrator, GX's own tools). Importing this module registers, through GX's public
extension points:

- the expectations ``expect_column_max_to_be_recent`` and
  ``expect_column_value_share_to_be_between`` (:mod:`lakehouse.quality.expectations`). GX
  registers an expectation when its class is defined, and drops one of a type it does not
  know from a suite with only a logged traceback, so import this module first;
- the datasource type ``duckdb``, ``context.data_sources.add_duckdb(...)``
  (:mod:`lakehouse.quality.gx_duckdb`). GX's generic ``add_sql("duckdb:///...")`` reads
  results after closing their connection, which DuckDB has freed by then: every metric
  fails with "list index out of range" (GX issue 11579).

and gives the two things a run needs besides a batch:

- :func:`read_suite`: a suite file of ``expectations/`` as a ``gx.ExpectationSuite``, by
  GX's own constructor, refusing by name what GX would silently drop;
- :func:`suite_parameters`: the bounds the suites name (``{"$PARAMETER": ...}``), from
  ``expectations/parameters.yml`` as the gate reads them, for
  ``ValidationDefinition.run(expectation_parameters=...)``.

Freshness (``expect_column_max_to_be_recent``) is checked as of the moment GX checks it,
unless ``as_of`` is given in the expectation's kwargs; the gate passes its own.

Usage::

    import great_expectations as gx
    from lakehouse.quality import plugins

    context = gx.get_context(mode="ephemeral")
    source = context.data_sources.add_duckdb(
        "warehouse", connection_string="duckdb:///data/demo/warehouse.duckdb", read_only=True
    )
    batch = source.add_table_asset("fct_events", table_name="fct_events")
    batch = batch.add_batch_definition_whole_table("whole")
    suite = context.suites.add(plugins.read_suite("expectations/fct_events.json"))
    run = context.validation_definitions.add(
        gx.ValidationDefinition(name="fct_events", data=batch, suite=suite)
    ).run(expectation_parameters=plugins.suite_parameters())
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import lakehouse.quality.gxsetup  # first: GX without pyspark, analytics off

import great_expectations as gx

import lakehouse.quality.expectations  # registers the project's expectations
import lakehouse.quality.gx_duckdb  # noqa: F401  (registers the duckdb datasource)
from lakehouse.layout import project_dir
from lakehouse.quality import parameters
from lakehouse.quality.record import SuiteError
from lakehouse.quality.suites import load_suite


def read_suite(path: str | Path) -> gx.ExpectationSuite:
    """The suite file at ``path`` as GX's ``ExpectationSuite(**json)``; a
    :class:`SuiteError` naming the file, the expectation and GX's reason when one of its
    expectations cannot be built (GX itself would log it and leave it out)."""
    path = Path(path)
    broken = [e.error for e in load_suite(path).expectations if e.error]
    if broken:
        raise SuiteError(f"{path}: {broken[0]}")
    data: dict[str, Any] = json.loads(path.read_text())
    suite = gx.ExpectationSuite(**data)
    if len(suite.expectations) != len(data.get("expectations", [])):  # what GX dropped
        raise SuiteError(f"{path}: Great Expectations left out an expectation it could not build")
    return suite


def suite_parameters(project: str | Path | None = None, env: str | None = None) -> dict[str, Any]:
    """The suites' bounds by name: ``default`` of ``expectations/parameters.yml``, then the
    section of ``env`` (``$LAKEHOUSE_ENV`` when not given), then
    ``$LAKEHOUSE_GATE_PARAMETERS``, as the gate applies them."""
    folder = project_dir(Path(project) if project else None) / "expectations"
    return dict(parameters.load(folder, env=env).values)
