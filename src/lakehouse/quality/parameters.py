"""The gate's data-dependent bounds: GX suite parameters read from ``expectations/parameters.yml``
(``default``, then the section of the environment), then an optional flat YAML file; and
``--suggest``, which proposes bounds from the observed values of the kept runs.

Suites name a bound as ``{"$PARAMETER": "<name>"}``; GX substitutes the value when the
checkpoint runs. The one owner of the order in which the sources apply is :func:`load`.
"""

from __future__ import annotations

import difflib
import json
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lakehouse.quality.numbers import significant
from lakehouse.quality.record import SuiteError

FILE = "parameters.yml"
DEFAULT_SECTION = "default"
ENV_VARIABLE = "LAKEHOUSE_ENV"
FILE_VARIABLE = "LAKEHOUSE_GATE_PARAMETERS"
RUNTIME = ("as_of",)  # supplied by the gate itself, never from a file
MAX_FILE_BYTES = 1_000_000  # a parameters file is a few dozen lines; anything bigger is not one
MAX_MAGNITUDE = 1e15  # bounds are counts, shares, hours and means: larger is a typo
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


def load(
    folder: Path,
    env: str | None = None,
    extra: Path | None = None,
    known: Iterable[str] | None = None,
) -> Parameters:
    """``default``, then the ``env`` section (``$LAKEHOUSE_ENV`` when not given), then
    ``extra`` (``$LAKEHOUSE_GATE_PARAMETERS`` when not given). Every file is untrusted: a
    duplicate key, a name no suite uses (``known``: the names the suites use), a value that is
    not a finite number of sane size, or a file too big is refused naming file and key."""
    known = set(known) if known is not None else None
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
        if layer is not None and not isinstance(layer, dict):
            raise SuiteError(f"{source}: expected `name: value` lines, not {_short(layer)}")
        for name, value in (layer or {}).items():
            if name in RUNTIME:
                raise SuiteError(f"{source}: {name!r} is set by the gate at run time")
            if not isinstance(name, str):
                raise SuiteError(f"{source}: {_short(name)} is not a parameter name")
            if known is not None and name not in known:
                close = difflib.get_close_matches(name, sorted(known), n=1)
                raise SuiteError(
                    f"{source}: {name!r} is not a parameter of any suite"
                    + (f" (did you mean {close[0]!r}?)" if close else "")
                )
            values[name] = _number_value(source, name, value)
            sources[name] = source
    return Parameters(values, sources, env)


def _number_value(source: str, name: str, value: Any) -> int | float:
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise SuiteError(f"{source}: {name} must be a number, not {_short(value)}")
    if isinstance(value, float) and not math.isfinite(value):
        raise SuiteError(f"{source}: {name} must be a finite number, not {value}")
    if abs(value) > MAX_MAGNITUDE:
        raise SuiteError(
            f"{source}: {name} is {_short(value)}, beyond ±{MAX_MAGNITUDE:.0e}: not a bound"
        )
    return value


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:57]}..."


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader, but a key given twice is an error (YAML says keys are unique;
    PyYAML silently keeps the last) and an integer too long to convert is one too."""


def _mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"key {key!r} is given twice", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


def _integer(loader: _StrictLoader, node: yaml.ScalarNode) -> int:
    if len(str(node.value)) > 40:
        raise yaml.constructor.ConstructorError(
            None, None, f"the number {str(node.value)[:20]}... has too many digits", node.start_mark
        )
    return yaml.SafeLoader.construct_yaml_int(loader, node)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)
_StrictLoader.add_constructor("tag:yaml.org,2002:int", _integer)


def _read(path: Path) -> dict[str, Any]:
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise SuiteError(
                f"{path}: {path.stat().st_size:,} bytes is too big for gate parameters "
                f"(at most {MAX_FILE_BYTES:,})"
            )
        data = yaml.load(path.read_text(), Loader=_StrictLoader) or {}
    except (OSError, UnicodeDecodeError, ValueError, yaml.YAMLError) as error:
        cause = " ".join(str(error).split())[:300]
        raise SuiteError(f"{path}: cannot read gate parameters ({cause})") from None
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


def suggest(
    quality_dir: Path,
    parameters: Parameters,
    margin: float = 0.1,
    skipped: list[str] | None = None,
) -> list[Suggestion]:
    """For every parameter a kept run compared an observed value against: the observed range
    over the kept runs (``<quality_dir>/runs/*/result.json``), widened by ``margin`` of its
    size (at least ``margin`` of the value itself), as a lower or an upper bound. A run that
    cannot be read as the gate writes it is left out whole and named in ``skipped``; a run
    counts for a parameter only when it gave that parameter a finite value."""
    observed: dict[str, list[float]] = {}
    side: dict[str, str] = {}
    where: dict[str, str] = {}
    fraction: dict[str, bool] = {}
    for result in sorted((quality_dir / "runs").glob("*/result.json")):
        try:
            found = _observations(json.loads(result.read_text()))
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as error:
            if skipped is not None:
                skipped.append(f"{result}: {type(error).__name__}: {_short(str(error))}")
            continue
        for name, (value, kwarg, place, is_fraction) in found.items():
            observed.setdefault(name, []).append(value)
            side[name] = "max" if kwarg.startswith("max") else "min"
            where[name] = place
            fraction[name] = is_fraction
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


def _observations(run: Any) -> dict[str, tuple[float, str, str, bool]]:
    """One kept run's observed values per parameter: (value, kwarg, where, is a fraction).
    Raises on anything not shaped as the gate writes it."""
    found: dict[str, tuple[float, str, str, bool]] = {}
    for table in run["tables"]:
        for r in table["results"]:
            value = r.get("observed_value")
            parameters = r.get("parameters") or {}
            if not isinstance(parameters, dict):
                raise TypeError(f"parameters of {r['name']} is not a mapping")
            place = f"{table['table']}: {r['name']}"
            if not isinstance(value, int | float) or isinstance(value, bool):
                continue
            if not math.isfinite(value):  # NaN, infinite: no observation
                continue
            for kwarg, name in parameters.items():
                if name in RUNTIME:
                    continue
                found[str(name)] = (float(value), str(kwarg), place, r.get("type") in FRACTIONS)
    return found


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
