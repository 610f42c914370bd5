"""Where dbt runs the transforms: the engines ``lakehouse build/run --engine`` accepts and the
default the environment selects. A leaf module (standard library only), so the CLI can offer
``--engine`` on an install without the pipeline's packages."""

from __future__ import annotations

import os

ENGINES = ("duckdb", "spark")
# the profiles.yml output that runs dbt-spark
SPARK_TARGET = "spark"
ENV_TARGET = "LAKEHOUSE_DBT_TARGET"  # profiles.yml's target


def default_engine(env: dict[str, str] | None = None) -> str:
    """spark when ``LAKEHOUSE_DBT_TARGET`` (the profile's target) selects it, else duckdb."""
    env = os.environ if env is None else env
    return "spark" if env.get(ENV_TARGET) == SPARK_TARGET else "duckdb"
