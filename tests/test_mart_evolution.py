"""One contract per mart, owned by dbt's YAML: a column an analyst adds to a mart (its SQL
and its YAML, nothing else) is checked by the gate, exported to the shards and their
manifest, and read by the loader. The gate's schema checks of a contracted model come from
dbt's manifest; no suite restates the column list or the types."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from lakehouse.export import export_model
from lakehouse.loader import ShardDataset
from lakehouse.quality import validate
from lakehouse.warehouse import run_dbt
from tests.conftest import NIGHT, BuiltWarehouse

REPO = Path(__file__).resolve().parents[1]
MODEL = "photo_popularity_training"
COLUMN = """      - name: is_popular
        data_type: boolean
        description: likes_7d >= var popular_likes_threshold (label).
        data_tests: [not_null]
"""


def _project_copy(target: Path) -> Path:
    target.mkdir()
    for name in ("dbt_project.yml", "profiles.yml"):
        shutil.copy(REPO / name, target / name)
    for folder in ("models", "macros", "seeds", "expectations", "tests/dbt"):
        shutil.copytree(REPO / folder, target / folder)
    (target / ".duckdb").symlink_to(REPO / ".duckdb")  # the installed DuckDB extensions
    return target


def test_a_column_an_analyst_adds_to_a_mart_reaches_the_gate_shards_and_loader(
    built_warehouse: BuiltWarehouse, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = _project_copy(tmp_path / "project")
    # the copy's own dbt artifacts, not the session's (conftest points every build there)
    monkeypatch.setenv("DBT_TARGET_PATH", str(tmp_path / "target"))
    sql = project / "models" / "marts" / f"{MODEL}.sql"  # the analyst's two edits
    sql.write_text(
        sql.read_text().replace(
            "        labels.is_popular,\n",
            "        labels.is_popular,\n        photos.width = photos.height as is_square,\n",
        )
    )
    yaml = project / "models" / "marts" / "_marts__models.yml"
    assert COLUMN in yaml.read_text()
    yaml.write_text(
        yaml.read_text().replace(
            COLUMN,
            COLUMN + "      - name: is_square\n        data_type: boolean\n"
            "        description: A square photo (width = height).\n",
        )
    )
    warehouse, lake = tmp_path / "warehouse.duckdb", str(built_warehouse.lake)
    built = run_dbt(lake, warehouse, project=project, quiet=True)
    assert built.success, (built.error, built.failures)

    report, _ = validate(warehouse, lake, out=tmp_path / "quality", project=project, as_of=NIGHT)
    assert report.passed, [(r.table, r.name, r.observed_value) for r in report.blocking_failures]
    (mart,) = [t for t in report.tables if t.table == MODEL]
    checked = {r.name: r for r in mart.results}
    assert checked["column_types"].success  # derived from dbt's manifest, with the new column
    listed = checked["expect_table_columns_to_match_ordered_list"]
    assert listed.success and "is_square" in str(listed.kwargs)

    folder, manifest = export_model(
        warehouse, MODEL, tmp_path / "shards", quality_dir=tmp_path / "quality",
        project=project, lake=lake,
    )  # fmt: skip
    assert "is_square" in manifest.columns
    ds = ShardDataset(folder, "train", batch_size=256, columns=["photo_id", "is_square"])
    squares = torch.cat([batch["is_square"] for batch in ds])
    assert len(squares) == ds.num_samples and squares.any() and not squares.all()
