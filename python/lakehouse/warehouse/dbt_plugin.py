"""A dbt-duckdb plugin (``profiles.yml`` -> ``plugins``) that hands DuckDB the PII key.

Personal data leaves staging only as HMAC-SHA256 keyed by ``LAKEHOUSE_PII_SALT``. The key must
never be in SQL text: dbt writes compiled SQL to ``target/`` and its logs, so a salt inside the
SQL would sit next to the hashes it protects. This plugin reads the key from the environment
and sets the two HMAC pads as DuckDB session variables on every connection and cursor dbt
uses, through prepared parameters; the SQL (``macros/pii.sql``) only names the variables.

Without ``LAKEHOUSE_PII_SALT`` it refuses to build, except a warehouse inside the demo folder
(``data/demo``), which uses a fixed, public demo key.
"""

from __future__ import annotations

from typing import Any

from dbt.adapters.duckdb.plugins import BasePlugin

from lakehouse.warehouse.pii import INNER, OUTER, hmac_pads, pii_key


class Plugin(BasePlugin):
    def initialize(self, plugin_config: dict[str, Any]) -> None:
        path = getattr(self.creds, "path", None) if self.creds is not None else None
        self._inner, self._outer = hmac_pads(pii_key(path))

    def configure_connection(self, conn) -> None:
        self._set(conn)

    def configure_cursor(self, cursor) -> None:
        self._set(cursor)

    def _set(self, connection) -> None:
        connection.execute(f"set variable {INNER} = ?", [self._inner])
        connection.execute(f"set variable {OUTER} = ?", [self._outer])
