"""Where dbt runs the transforms: the engines ``lakehouse build/run --engine`` accepts and the
default the environment selects. A leaf module (standard library only), so the CLI can offer
``--engine`` on an install without the pipeline's packages."""

from __future__ import annotations

import os

# duckdb: dbt-duckdb on the warehouse file; spark: dbt-spark's session method (a SparkSession
# in dbt's own process); spark-thrift: dbt-spark's thrift method against a Spark Thrift Server
# on a cluster (`lakehouse spark-cluster start` runs one on this machine)
ENGINES = ("duckdb", "spark", "spark-thrift")
# the profiles.yml output each Spark engine runs
SPARK_TARGETS = {"spark": "spark", "spark-thrift": "spark_thrift"}
SPARK_TARGET = SPARK_TARGETS["spark"]
ENV_TARGET = "LAKEHOUSE_DBT_TARGET"  # profiles.yml's target


def is_spark(engine: str) -> bool:
    """Whether dbt runs on Spark (either method) for this engine."""
    return engine in SPARK_TARGETS


def default_engine(env: dict[str, str] | None = None) -> str:
    """The Spark engine whose target ``LAKEHOUSE_DBT_TARGET`` (the profile's target) selects,
    else duckdb."""
    env = os.environ if env is None else env
    by_target = {target: engine for engine, target in SPARK_TARGETS.items()}
    return by_target.get(env.get(ENV_TARGET, ""), "duckdb")
