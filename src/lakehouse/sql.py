"""Text into DuckDB SQL, the one way: names and values quoted, and the rule for text that a
template puts between quotes unescaped (dbt vars, a manifest's lake) refused.

A leaf module (standard library only). Values that can be bound parameters are; these are
for what SQL cannot take as a parameter (a table name, a path inside a table function,
CASE arms of a vocabulary).
"""

from __future__ import annotations

import re

# quotes, a backslash or a control character: unsafe where a template quotes without escaping
_UNEMBEDDABLE = re.compile(r"['\"\\\x00-\x1f]")


def identifier(name: str) -> str:
    """A DuckDB identifier in double quotes, so a name is never read as SQL."""
    return '"' + name.replace('"', '""') + '"'


def string(value: str) -> str:
    """A DuckDB string literal, so a value (a path, a category) is never read as SQL."""
    return "'" + value.replace("'", "''") + "'"


def embeddable(text: str) -> bool:
    """Whether ``text`` may be placed between quotes by a template that does not escape
    (dbt renders ``'{{ var('lake_root') }}'``): no quote, backslash or control character."""
    return _UNEMBEDDABLE.search(text) is None
