"""A dbt-duckdb plugin (``profiles.yml`` -> ``plugins``) that hands DuckDB the PII key.

Personal data leaves staging only as HMAC-SHA256 keyed by ``LAKEHOUSE_PII_SALT``. The key must
never be in SQL text: dbt writes compiled SQL to ``target/`` and its logs, so a salt inside the
SQL would sit next to the hashes it protects. This plugin reads the key from the environment
and sets the two HMAC pads as DuckDB session variables on every connection and cursor dbt
uses, through prepared parameters; the SQL (``macros/pii.sql``) only names the variables.

It also bounds DuckDB's memory when the profile gives it a ``memory_limit`` (profiles.yml
passes ``LAKEHOUSE_DUCKDB_MEMORY_LIMIT``, e.g. ``4GB``): DuckDB then spills to a temporary
folder next to the warehouse file instead of taking up to 80% of the machine's memory.

Without ``LAKEHOUSE_PII_SALT`` it refuses the commands that compute models (``build``, ``run``,
...), except into a warehouse inside the demo folder (``data/demo``), which uses a fixed,
public demo key; commands that hash nothing (``test``, ``source freshness``, ``docs``,
``parse``, ...) run without one.
"""

from __future__ import annotations

from typing import Any

from dbt.adapters.duckdb.plugins import BasePlugin

from lakehouse.warehouse.pii import INNER, OUTER, hmac_pads, pii_key

# dbt commands that compute models, so hash personal data: they need the key
COMPUTING = {"build", "run", "retry", "snapshot", "clone", "show", "run-operation"}


class Plugin(BasePlugin):
    def initialize(self, plugin_config: dict[str, Any]) -> None:
        path = getattr(self.creds, "path", None) if self.creds is not None else None
        self._memory_limit = str(plugin_config.get("memory_limit") or "").strip()
        self._pads: tuple[bytes, bytes] | None = None
        try:
            self._pads = hmac_pads(pii_key(path))
        except RuntimeError:
            if _command() in COMPUTING:
                raise  # nothing that hashes runs without the key

    def configure_connection(self, conn) -> None:
        if self._memory_limit:
            try:
                conn.execute(f"set memory_limit = '{self._memory_limit.replace(chr(39), '')}'")
            except Exception as error:  # duckdb's own parser error, named for the user
                raise RuntimeError(
                    f"LAKEHOUSE_DUCKDB_MEMORY_LIMIT={self._memory_limit!r} is not a DuckDB "
                    f"memory size (e.g. 4GB, 512MB): {error}"
                ) from None
        self._set(conn)

    def configure_cursor(self, cursor) -> None:
        self._set(cursor)

    def _set(self, connection) -> None:
        if self._pads is None:  # a command that hashes nothing, run without a key
            return
        inner, outer = self._pads
        connection.execute(f"set variable {INNER} = ?", [inner])
        connection.execute(f"set variable {OUTER} = ?", [outer])


def _command() -> str | None:
    from dbt.flags import get_flags

    return getattr(get_flags(), "WHICH", None)
