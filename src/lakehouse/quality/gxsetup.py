"""Great Expectations imported as the gate uses it: on DuckDB, so without pyspark, and with
its usage analytics off.

GX imports pyspark when it is installed (``great_expectations.compatibility.pyspark``, for
its Spark datasources): 1.3 s, and two FutureWarnings about pandas >= 3 on stderr. The gate
never uses it. For GX's import pyspark is absent (an import of it fails, which GX handles as
"not installed", with its own placeholders); anything imported later sees pyspark as usual,
and a process that imported pyspark already (a Spark build) keeps it.

Every module here that imports GX imports this module first: it has its own import section,
before third-party packages (``[tool.ruff.lint.isort]`` in pyproject.toml).
"""

from __future__ import annotations

import os
import sys

# GX sends usage analytics unless told not to (and this machine has no internet)
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
# what Great Expectations imports when it is installed and the gate never uses
UNUSED_BY_THE_GATE = ("pyspark",)


def _import_gx() -> None:
    if "great_expectations" in sys.modules:
        return
    hidden = [name for name in UNUSED_BY_THE_GATE if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment]  # an import of it raises
    try:
        import great_expectations  # noqa: F401
    finally:
        for name in hidden:
            if name in sys.modules and sys.modules[name] is None:
                del sys.modules[name]


_import_gx()
