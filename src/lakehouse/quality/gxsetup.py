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

import importlib
import importlib.util
import os
import sys
import types

# GX sends usage analytics unless told not to (and this machine has no internet)
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
# what Great Expectations imports when it is installed and the gate never uses
UNUSED_BY_THE_GATE = ("pyspark",)
# what Great Expectations imports at its own import for what the gate never runs (scipy.stats:
# the KL-divergence and KS-test expectations, about 1 s of the gate's start; altair: charts of
# its profilers' renderers, 0.75 s): imported when first used instead, by GX or anyone after it
LOADED_ON_FIRST_USE = ("scipy.stats", "altair")


class _LoadedOnFirstUse(types.ModuleType):
    """Stands in ``sys.modules`` for a module until an attribute of it is read, then imports
    it and hands the attribute over. (importlib.util.LazyLoader would do, but Python 3.11's
    import machinery reads ``__spec__`` of a module already in ``sys.modules``, which loads
    it.)"""

    def __getattr__(self, attribute: str) -> object:
        return getattr(_real(self.__name__), attribute)


def _real(name: str) -> types.ModuleType:
    if isinstance(sys.modules.get(name), _LoadedOnFirstUse):
        del sys.modules[name]
    return importlib.import_module(name)


def _installed(name: str) -> bool:
    """Whether ``name`` can be imported (finding a submodule imports its package, which
    may be missing: then GX's own import names what is)."""
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


def _import_gx() -> None:
    if "great_expectations" in sys.modules:
        return
    for name in LOADED_ON_FIRST_USE:
        if name not in sys.modules and _installed(name):
            sys.modules[name] = _LoadedOnFirstUse(name)
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
