"""How the code location is put together: the dbt project with a loadable manifest, the
assets, checks, schedule and sensor, and their resources (:func:`build_definitions`).

dbt's ``manifest.json`` is parsed into ``target/dagster/`` (``dbt parse`` through dagster-dbt's
``DbtCliResource``) when it is missing or older than any file of the dbt project, so a clean
clone starts without a manual ``dbt parse`` and an edited model shows on the next reload.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from dagster import AssetKey, Definitions
from dagster_dbt import DagsterDbtTranslatorSettings, DbtCliResource, DbtProject

from lakehouse.orchestrate.assets import (
    LakehouseDbtTranslator,
    bronze_tables,
    dbt_models_asset,
    export_asset,
    gate_asset_check,
    online_store_asset,
)
from lakehouse.orchestrate.automation import landing_sensor, nightly_job, nightly_schedule
from lakehouse.orchestrate.resources import RESOURCE, LakehouseResource
from lakehouse.warehouse import project_dir

# dbt from this environment, also when its bin/ is not on PATH (`.venv/bin/dagster dev`)
DBT_EXECUTABLE = shutil.which("dbt") or str(Path(sys.executable).with_name("dbt"))
# the dbt project's inputs: a manifest older than any of them is parsed again
_PROJECT_INPUTS = ("dbt_project.yml", "profiles.yml", "models", "macros", "seeds", "tests/dbt")


def dbt_project(project: Path | None = None) -> DbtProject:
    """The repo's dbt project, with a manifest Dagster can load."""
    root = project or project_dir()
    dbt = DbtProject(project_dir=root, profiles_dir=root, target_path=Path("target/dagster"))
    if _stale(dbt.manifest_path, root):
        dbt_cli(dbt).cli(["parse", "--quiet"], target_path=dbt.target_path).wait()
    return dbt


def dbt_cli(dbt: DbtProject) -> DbtCliResource:
    return DbtCliResource(
        project_dir=dbt, profiles_dir=str(dbt.project_dir), dbt_executable=DBT_EXECUTABLE
    )


def _stale(manifest: Path, root: Path) -> bool:
    if not manifest.exists():
        return True
    built = manifest.stat().st_mtime
    for name in _PROJECT_INPUTS:
        path = root / name
        files = [path] if path.is_file() else path.rglob("*") if path.is_dir() else []
        if any(f.stat().st_mtime > built for f in files):
            return True
    return False


def build_definitions(lakehouse: LakehouseResource | None = None) -> Definitions:
    """The code location's definitions, with ``lakehouse`` as the default locations (default:
    ``data/demo``, or ``LAKEHOUSE_LAKE`` / ``LAKEHOUSE_DUCKDB`` from the environment)."""
    dbt = dbt_project()
    # a bronze source's dbt tests are checks on its bronze asset, which dbt's step runs
    translator = LakehouseDbtTranslator(
        settings=DagsterDbtTranslatorSettings(enable_source_tests_as_checks=True)
    )
    dbt_models = dbt_models_asset(dbt, translator)
    models = {key.path[-1]: key for key in dbt_models.keys}

    def model_key(name: str) -> AssetKey:
        return models[name]

    return Definitions(
        assets=[
            bronze_tables,
            dbt_models,
            export_asset(model_key),
            online_store_asset(model_key, dbt.manifest_path),
        ],
        asset_checks=[gate_asset_check(model_key, dbt.manifest_path)],
        jobs=[nightly_job],
        schedules=[nightly_schedule],
        sensors=[landing_sensor],
        resources={
            RESOURCE: lakehouse or LakehouseResource(),
            "dbt": dbt_cli(dbt),
        },
    )
