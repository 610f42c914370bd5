"""Data Docs that render offline.

Great Expectations' Data Docs pages load Bootstrap, jQuery, bootstrap-table, Font Awesome and
Vega from CDNs: without the internet a page is unstyled, its validation and suite lists stay
empty (bootstrap-table fills them) and it shows no pass/fail icons. ``make setup`` installs
the same packages from the npm registry (``package.json`` and ``package-lock.json`` at the
repo root, into ``node_modules/``); after GX builds a site, :func:`serve_offline` copies the
files the pages use into the site's ``static/vendor/`` and points every page at them.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

VENDOR = Path("static") / "vendor"
# each CDN address GX's pages use -> the same file in its npm package
ASSETS = {
    "https://maxcdn.bootstrapcdn.com/bootstrap/4.3.1/css/bootstrap.min.css": (
        "bootstrap/dist/css/bootstrap.min.css"
    ),
    "https://stackpath.bootstrapcdn.com/bootstrap/4.3.1/js/bootstrap.min.js": (
        "bootstrap/dist/js/bootstrap.min.js"
    ),
    "https://code.jquery.com/jquery-3.7.1.min.js": "jquery/dist/jquery.min.js",
    # bootstrap 4.3.1 needs popper.js >= 1.14.7 (the page names 1.12.9)
    "https://cdnjs.cloudflare.com/ajax/libs/popper.js/1.12.9/umd/popper.min.js": (
        "popper.js/dist/umd/popper.min.js"
    ),
    "https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.js": (
        "bootstrap-table/dist/bootstrap-table.min.js"
    ),
    "https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.css": (
        "bootstrap-table/dist/bootstrap-table.min.css"
    ),
    "https://unpkg.com/bootstrap-table@1.19.1/dist/extensions/filter-control/"
    "bootstrap-table-filter-control.min.js": (
        "bootstrap-table/dist/extensions/filter-control/bootstrap-table-filter-control.min.js"
    ),
    "https://unpkg.com/bootstrap-table@1.19.0/dist/extensions/filter-control/"
    "bootstrap-table-filter-control.css": (
        "bootstrap-table/dist/extensions/filter-control/bootstrap-table-filter-control.css"
    ),
    "https://unpkg.com/bootstrap-table@1.19.0/dist/extensions/filter-control/"
    "bootstrap-table-filter-control.min.css": (
        "bootstrap-table/dist/extensions/filter-control/bootstrap-table-filter-control.min.css"
    ),
    "https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/js/"
    "bootstrap-datepicker.min.js": "bootstrap-datepicker/dist/js/bootstrap-datepicker.min.js",
    "https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/css/"
    "bootstrap-datepicker.min.css": "bootstrap-datepicker/dist/css/bootstrap-datepicker.min.css",
    "https://cdn.jsdelivr.net/npm/vega@5": "vega/build/vega.min.js",
    "https://cdn.jsdelivr.net/npm/vega-lite@5": "vega-lite/build/vega-lite.min.js",
    "https://cdn.jsdelivr.net/npm/vega-embed@6": "vega-embed/build/vega-embed.min.js",
    "https://cdnjs.cloudflare.com/ajax/libs/font-awesome/6.6.0/css/all.min.css": (
        "@fortawesome/fontawesome-free/css/all.min.css"
    ),
    "https://cdn.jsdelivr.net/npm/@forevolve/bootstrap-dark@1.1.0/dist/css/"
    "bootstrap-prefers-dark.css": "@forevolve/bootstrap-dark/dist/css/bootstrap-prefers-dark.css",
}
# GX's logo, fetched from its S3 bucket though the site has a copy in static/images/
_LOGO = re.compile(r'"https://great-expectations-web-assets\.s3\.[^"/]+/logo-long\.png(\?[^"]*)?"')
# folders a stylesheet above refers to by relative path (Font Awesome's ../webfonts/)
FOLDERS = ("@fortawesome/fontawesome-free/webfonts",)


def node_modules(project: Path) -> Path:
    return project / "node_modules"


def missing_assets(project: Path) -> list[str]:
    """The npm files a site needs that ``make setup`` has not installed."""
    modules = node_modules(project)
    wanted = [*ASSETS.values(), *FOLDERS]
    return [name for name in wanted if not (modules / name).exists()]


def serve_offline(site: Path, project: Path) -> list[str]:
    """Copy the assets into ``site``'s ``static/vendor/`` and point its pages at them.
    Returns the npm files that were missing (the pages then keep their CDN addresses)."""
    missing = missing_assets(project)
    if missing:
        return missing
    modules, vendor = node_modules(project), site / VENDOR
    for name in ASSETS.values():
        (vendor / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(modules / name, vendor / name)
    for name in FOLDERS:
        shutil.copytree(modules / name, vendor / name, dirs_exist_ok=True)
    for page in site.rglob("*.html"):
        text = page.read_text(encoding="utf-8")
        local = Path(os.path.relpath(vendor, page.parent)).as_posix()
        for address, name in ASSETS.items():
            text = text.replace(f'"{address}"', f'"{local}/{name}"')
        images = Path(os.path.relpath(site / "static" / "images", page.parent)).as_posix()
        text = _LOGO.sub(f'"{images}/logo-long.png"', text)
        page.write_text(text, encoding="utf-8")
    return []
