"""lakehouse: raw app logs -> Delta Lake bronze -> dbt/DuckDB marts -> Arrow shards -> PyTorch.

Each layer is a subpackage with a small public surface:
``synth`` (sample data), ``ingest`` (landing -> bronze Delta tables); the CLI in
``lakehouse.cli`` only parses arguments and calls them.
"""

__version__ = "0.1.0"
