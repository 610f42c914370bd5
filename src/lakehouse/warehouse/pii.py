"""The PII key: where it comes from, the demo's public one, and HMAC's padded keys.

Personal data leaves staging only as HMAC-SHA256 keyed by ``LAKEHOUSE_PII_SALT``; the dbt-duckdb
plugin (``dbt_plugin``) hands DuckDB the padded keys outside SQL text.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from lakehouse.layout import DEFAULT_ROOT

ENV_SALT = "LAKEHOUSE_PII_SALT"
DEMO_SALT = "lakehouse-demo-salt-not-a-secret"
INNER, OUTER = "lakehouse_pii_inner", "lakehouse_pii_outer"
_BLOCK = 64  # SHA-256's block size


def hmac_pads(key: bytes) -> tuple[bytes, bytes]:
    """RFC 2104's inner and outer padded keys: HMAC(k, m) = H(outer || H(inner || m))."""
    if len(key) > _BLOCK:
        key = hashlib.sha256(key).digest()
    key = key.ljust(_BLOCK, b"\0")
    return bytes(b ^ 0x36 for b in key), bytes(b ^ 0x5C for b in key)


def in_demo(path: str | Path | None) -> bool:
    """Whether a local path lies in the demo folder (``data/demo`` of the working directory)."""
    if path is None or "://" in str(path):
        return False
    return DEFAULT_ROOT.resolve() in Path(path).resolve().parents


def pii_key(warehouse: str | Path | None, env: dict[str, str] | None = None) -> bytes:
    """The key from the environment; the public demo key only for a warehouse in the demo
    folder. Anything else without a key is refused with what to do."""
    env = os.environ if env is None else env
    salt = env.get(ENV_SALT)
    if salt:
        return salt.encode()
    if in_demo(warehouse):
        return DEMO_SALT.encode()
    raise RuntimeError(
        f"{ENV_SALT} is not set: personal data is hashed with it (HMAC-SHA256), so it must be "
        f"a secret of this deployment, e.g. `export {ENV_SALT}=$(openssl rand -hex 32)` from "
        f"your secret store. Only a warehouse under {DEFAULT_ROOT}/ (the demo) may build "
        "without one."
    )
