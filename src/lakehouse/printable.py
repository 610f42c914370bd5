"""The one way text from outside (a file's name or content, an error that quotes them, a
path given on the command line) reaches a terminal: :func:`shown`.

Rich markup in it is escaped (``[bold]`` is printed as it is), and so are the characters a
terminal acts on instead of showing: C0 and C1 controls (ESC starts the sequences that
retitle a terminal or move its cursor; a newline would forge a log line), DEL, and the
Unicode marks that reorder text on screen. Each is printed as its Python escape
(``\\x1b``, ``\\n``, ``\\u202e``), so what is shown can be typed back to find the file.
"""

from __future__ import annotations

import re

from rich.markup import escape

_ACTIVE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_ACTIVE_BUT_NEWLINE = re.compile(
    "[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]"
)


def _escaped(match: re.Match[str]) -> str:
    return match.group().encode("unicode_escape").decode("ascii")


def shown(text: object, *, lines: bool = False, markup: bool = True) -> str:
    """``text`` safe to print: controls escaped, and rich markup too unless ``markup`` is
    False (for a print that reads no markup). ``lines`` keeps newlines, for a message of
    several lines whose every line is printed as text (a dbt error, a YAML proposal)."""
    plain = (_ACTIVE_BUT_NEWLINE if lines else _ACTIVE).sub(_escaped, str(text))
    return escape(plain) if markup else plain
