"""The gate's data-dependent bounds: GX suite parameters read from ``expectations/parameters.yml``
(``default``, then the section of the environment), then an optional flat YAML file; and
``--suggest``, which proposes bounds from the observed values of the kept runs.

Suites name a bound as ``{"$PARAMETER": "<name>"}``; GX substitutes the value when the
checkpoint runs. The one owner of the order in which the sources apply is :func:`load`.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lakehouse.quality import SuiteError
from lakehouse.quality.numbers import significant

FILE = "parameters.yml"
DEFAULT_SECTION = "default"
ENV_VARIABLE = "LAKEHOUSE_ENV"
FILE_VARIABLE = "LAKEHOUSE_GATE_PARAMETERS"
RUNTIME = ("as_of",)  # supplied by the gate itself, never from a file
# expectations whose observed value is a fraction: a proposed bound stays within 0..1
FRACTIONS = {
    "expect_column_value_share_to_be_between",
    "expect_column_proportion_of_non_null_values_to_be_between",
    "expect_column_proportion_of_unique_values_to_be_between",
}


@dataclass(frozen=True)
class Parameters:
    """Values by name, and where each came from (for the report)."""

    values: dict[str, Any]
    sources: dict[str, str] = field(default_factory=dict)
    env: str | None = None


def load(folder: Path, env: str | None = None, extra: Path | None = None) -> Parameters:
    """``default``, then the ``env`` section (``$LAKEHOUSE_ENV`` when not given), then
    ``extra`` (``$LAKEHOUSE_GATE_PARAMETERS`` when not given)."""
    path = folder / FILE
    sections = _read(path) if path.exists() else {DEFAULT_SECTION: {}}
    env = env or os.environ.get(ENV_VARIABLE) or None
    if DEFAULT_SECTION not in sections:
        raise SuiteError(f"{path}: no `{DEFAULT_SECTION}:` section")
    if env and env != DEFAULT_SECTION and env not in sections:
        raise SuiteError(
            f"{path}: no section for environment {env!r} (sections: "
            f"{', '.join(sorted(sections))}); add one or unset {ENV_VARIABLE}"
        )
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    layers = [(DEFAULT_SECTION, sections[DEFAULT_SECTION], f"{path.name}:{DEFAULT_SECTION}")]
    if env and env != DEFAULT_SECTION:
        layers.append((env, sections[env], f"{path.name}:{env}"))
    extra_text = extra or os.environ.get(FILE_VARIABLE)
    if extra_text:
        extra_path = Path(extra_text)
        if not extra_path.exists():
            raise SuiteError(f"gate parameters file {extra_path} does not exist")
        layers.append(("file", _read(extra_path), str(extra_path)))
    for _, layer, source in layers:
        for name, value in (layer or {}).items():
            if name in RUNTIME:
                raise SuiteError(f"{source}: {name!r} is set by the gate at run time")
            if not isinstance(value, int | float) or isinstance(value, bool):
                raise SuiteError(f"{source}: {name} must be a number, not {value!r}")
            values[name] = value
            sources[name] = source
    return Parameters(values, sources, env)


def _read(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as error:
        raise SuiteError(f"{path}: cannot read gate parameters ({error})") from error
    if not isinstance(data, dict):
        raise SuiteError(f"{path}: expected a mapping of sections (or of name: value)")
    return data


@dataclass(frozen=True)
class Suggestion:
    """A proposed value for one parameter, from the values observed in ``runs`` runs."""

    name: str
    current: Any
    proposed: float
    observed_min: float
    observed_max: float
    runs: int
    expectation: str


def suggest(quality_dir: Path, parameters: Parameters, margin: float = 0.1) -> list[Suggestion]:
    """For every parameter a kept run compared an observed value against: the observed range
    over the kept runs (``<quality_dir>/runs/*/result.json``), widened by ``margin`` of its
    size (at least ``margin`` of the value itself), as a lower or an upper bound."""
    observed: dict[str, list[float]] = {}
    side: dict[str, str] = {}
    where: dict[str, str] = {}
    fraction: dict[str, bool] = {}
    for result in sorted((quality_dir / "runs").glob("*/result.json")):
        try:
            run = json.loads(result.read_text())
        except ValueError:
            continue
        for table in run.get("tables", []):
            for r in table.get("results", []):
                value = r.get("observed_value")
                if not isinstance(value, int | float) or isinstance(value, bool):
                    continue
                for kwarg, name in (r.get("parameters") or {}).items():
                    if name in RUNTIME:
                        continue
                    observed.setdefault(name, []).append(float(value))
                    side[name] = "max" if kwarg.startswith("max") else "min"
                    where[name] = f"{table['table']}: {r['name']}"
                    fraction[name] = r.get("type") in FRACTIONS
    suggestions = []
    for name, values in sorted(observed.items()):
        low, high = min(values), max(values)
        pad = max(high - low, margin * max(abs(low), abs(high)))
        proposed = low - pad if side[name] == "min" else high + pad
        if low >= 0 and side[name] == "min":
            proposed = max(proposed, 0.0)
        if fraction[name]:
            proposed = min(max(proposed, 0.0), 1.0)
        if not fraction[name] and all(v.is_integer() for v in values):  # counts stay whole
            proposed = float(math.floor(proposed) if side[name] == "min" else math.ceil(proposed))
        else:
            proposed = significant(proposed, 3)
        suggestions.append(
            Suggestion(
                name, parameters.values.get(name), proposed, low, high, len(values), where[name]
            )
        )
    return suggestions


def as_yaml(suggestions: list[Suggestion], env: str) -> str:
    """The suggestions as a section of parameters.yml, each with what it was derived from."""
    lines = [f"{env}:"]
    for s in suggestions:
        lines.append(
            f"  {s.name}: {_number(s.proposed)}  # now {s.current}; observed "
            f"{_number(s.observed_min)}..{_number(s.observed_max)} in {s.runs} run(s)"
        )
    return "\n".join(lines) + "\n"


def _number(value: float) -> str:
    """A YAML number (no thousands separators: the section is pasted back into YAML); whole
    values without a decimal point, others to 4 significant digits."""
    return str(int(value)) if float(value).is_integer() else f"{value:.4g}"
