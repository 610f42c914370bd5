"""What the gate writes: JSON for machines, JUnit XML for CI, HTML for people (with a trend
chart over the kept runs), and the history of runs, so the next one can say what changed.
GX's own Data Docs site is built next to them by the checkpoint (``data_docs/``)."""

from __future__ import annotations

import html
import json
import math
from dataclasses import asdict
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

from lakehouse.quality.numbers import format_value, is_number, significant
from lakehouse.quality.record import BLOCKING, RESULT_FILE
from lakehouse.quality.runner import DATA_DOCS, UNITS, RunReport
from lakehouse.storage import write_atomic

__all__ = ["CHANGE_THRESHOLD", "changes", "html_report", "junit", "write_reports"]

CHANGE_THRESHOLD = 0.05  # a metric "changed since the last run" when it moved more than 5%
TREND_RUNS = 30  # runs the trend chart shows (the newest)
RUNS = "runs"


def to_dict(report: RunReport) -> dict[str, Any]:
    return {
        "run_id": report.run_id,
        "started_at": report.started_at,
        "as_of": report.as_of,
        "env": report.env,
        "passed": report.passed,
        "blocking_failures": len(report.blocking_failures),
        "warnings": len(report.warnings),
        "infos": len(report.infos),
        "parameters": report.parameters,
        "data_docs": report.data_docs,
        "seconds": report.seconds,
        "tables": [
            {
                **{k: v for k, v in asdict(t).items() if k != "results"},
                "results": [asdict(r) for r in t.results],
            }
            for t in report.tables
        ],
    }


def write_reports(report: RunReport, out: Path) -> dict[str, Any]:
    """Write result.json, junit.xml and report.html for this run, keep it in the history, and
    return it with the changes since the previous run."""
    out.mkdir(parents=True, exist_ok=True)
    data = to_dict(report)
    previous = _latest(out)
    data["changes"] = changes(previous, data) if previous else []
    data["change_threshold"] = CHANGE_THRESHOLD
    run_dir = out / RUNS / f"{report.started_at[:19].replace(':', '')}-{report.run_id}"
    run_dir.mkdir(parents=True, exist_ok=True)
    history = [*_history(out), data]
    text = json.dumps(data, indent=2, default=str)
    page = html_report(data, history[-TREND_RUNS:])
    for folder in (run_dir, out):  # each file whole or not at all; result.json, read by
        write_atomic(folder / "junit.xml", junit(report))  # export, last
        write_atomic(folder / "report.html", page)
        write_atomic(folder / RESULT_FILE, text)
    return data


def _latest(out: Path) -> dict[str, Any] | None:
    """The previous run, or None (also when its result.json cannot be read: a run that did
    not write it atomically, or a hand edit; this run replaces it)."""
    path = out / RESULT_FILE
    try:
        return json.loads(path.read_text()) if path.exists() else None
    except ValueError:
        return None


def _history(out: Path) -> list[dict[str, Any]]:
    runs = []
    for path in sorted((out / RUNS).glob("*/" + RESULT_FILE)):
        try:
            runs.append(json.loads(path.read_text()))
        except ValueError:
            continue
    return runs


def metrics(run: dict[str, Any]) -> dict[tuple[str, str], float]:
    """The numbers a run observed: rows per table and every numeric observed value of a
    whole-table expectation (shares, means, ages, row counts), keyed by (table, name)."""
    found: dict[tuple[str, str], float] = {}
    for table in run.get("tables", []):
        found[(table["table"], "rows")] = float(table["rows"])
        for r in table.get("results", []):
            value = r.get("observed_value")
            if r.get("rows") == "all" and is_number(value):
                found[(table["table"], r["name"])] = float(value)
    return found


def changes(
    previous: dict[str, Any], current: dict[str, Any], threshold: float = CHANGE_THRESHOLD
) -> list[dict[str, Any]]:
    """Every metric that moved by more than ``threshold`` (relative) since the previous run."""
    before, now = metrics(previous), metrics(current)
    moved = []
    for key, value in now.items():
        if key not in before:
            continue
        was = before[key]
        relative = (value - was) / abs(was) if was else (math.inf if value else 0.0)
        if abs(relative) > threshold:
            moved.append(
                {
                    "table": key[0],
                    "metric": key[1],
                    "previous": significant(was),
                    "current": significant(value),
                    "relative_change": None if math.isinf(relative) else round(relative, 4),
                }
            )
    return moved


def junit(report: RunReport) -> bytes:
    """The run as JUnit XML: a blocking failure is a ``<failure>``; a warning-level failure
    is a ``<skipped type="warning">`` (JUnit has no warning state; CI test views show a
    skipped case apart from a passing one, as cfn-lint's JUnit output does), counted in
    ``skipped``, so it never reads as a pass nor turns the build red."""
    warned = [r for t in report.tables for r in t.results if not r.success]
    suites = ET.Element(
        "testsuites",
        name="lakehouse data-quality gate",
        tests=str(sum(len(t.results) for t in report.tables)),
        failures=str(len(report.blocking_failures)),
        skipped=str(sum(r.severity != BLOCKING for r in warned)),
        time=str(report.seconds),
    )
    for table in report.tables:
        failed = [r for r in table.results if not r.success and r.severity == BLOCKING]
        warnings = [r for r in table.results if not r.success and r.severity != BLOCKING]
        suite = ET.SubElement(
            suites,
            "testsuite",
            name=table.table,
            tests=str(len(table.results)),
            failures=str(len(failed)),
            skipped=str(len(warnings)),
        )
        for result in table.results:
            case = ET.SubElement(
                suite, "testcase", classname=f"quality.{table.table}", name=result.name
            )
            if result.success:
                continue
            detail = describe(asdict(result))
            if result.severity == BLOCKING:
                ET.SubElement(
                    case, "failure", message=f"critical: {result.name}: {detail}"
                ).text = f"{detail}\nexamples: {result.examples!r}"
            else:
                message = f"{result.severity}: {result.name}: {detail}"
                ET.SubElement(case, "skipped", type=result.severity, message=message)
                ET.SubElement(case, "system-out").text = f"{result.severity}: {detail}"
    return ET.tostring(suites, encoding="utf-8", xml_declaration=True)


def describe(result: dict[str, Any]) -> str:
    """``observed X, expected Y`` (or the error), as console, JUnit and HTML show it."""
    if result.get("error"):
        return f"error: {result['error']}"
    text = f"observed {_observed(result)}"
    if result["observed_value"] is None and result.get("element_count"):
        text = f"observed {result['unexpected_count']:,} of {result['element_count']:,} rows"
    if result.get("unexpected_count"):
        percent = result.get("unexpected_percent")
        share = f" ({significant(percent)}%)" if is_number(percent) else ""
        text = f"{result['unexpected_count']:,} unexpected rows{share}"
        if result.get("observed_value") is not None and result["type"] != (
            "unexpected_rows_expectation"
        ):
            text += f", observed {_observed(result)}"
    return f"{text}; expected {result['expected']}"


def _observed(result: dict[str, Any]) -> str:
    value = result["observed_value"]
    unit = UNITS.get(result["type"], "") if is_number(value) else ""
    return f"{format_value(value)}{unit}"


# ---------------------------------------------------------------- HTML


def trend_series(history: list[dict[str, Any]]) -> dict[str, list[float | None]]:
    """Per chart: one value per run (None where a run did not measure it): row volume of
    every table, every freshness age, every value share (labels, splits, event types)."""
    wanted: dict[str, tuple[str, str]] = {}
    for run in history:
        for table in run.get("tables", []):
            wanted.setdefault(f"rows: {table['table']}", (table["table"], "rows"))
            for r in table.get("results", []):
                if r["type"] == "expect_column_max_to_be_recent":
                    label = f"hours since newest {r['kwargs'].get('column')}: {table['table']}"
                elif r["type"] == "expect_column_value_share_to_be_between":
                    label = (
                        f"share {r['kwargs'].get('column')}={r['kwargs'].get('value')}: "
                        f"{table['table']}"
                    )
                else:
                    continue
                wanted.setdefault(label, (table["table"], r["name"]))
    per_run = [metrics(run) for run in history]
    return {label: [m.get(key) for m in per_run] for label, key in wanted.items()}


def trend_svg(series: dict[str, list[float | None]], width: int = 300, height: int = 90) -> str:
    """Small multiples, one inline SVG panel per series: the line over the runs, its range and
    the latest value."""
    panels = []
    for label, values in series.items():
        points = [(i, v) for i, v in enumerate(values) if v is not None]
        if not points:
            continue
        low = min(v for _, v in points)
        high = max(v for _, v in points)
        span = (high - low) or (abs(high) or 1.0)
        steps = max(len(values) - 1, 1)

        def xy(
            i: int, v: float, steps: int = steps, low: float = low, span: float = span
        ) -> tuple[float, float]:
            return 10 + i * (width - 20) / steps, height - 18 - (v - low) / span * (height - 40)

        line = " ".join(f"{x:.1f},{y:.1f}" for x, y in (xy(i, v) for i, v in points))
        dots = "".join(
            f"<circle cx='{x:.1f}' cy='{y:.1f}' r='3' fill='#1f6fb2'/>"
            for x, y in (xy(i, v) for i, v in points)
        )
        latest = points[-1][1]
        panels.append(
            f"<figure class='trend'><svg xmlns='http://www.w3.org/2000/svg' width='{width}' "
            f"height='{height}' role='img' aria-label='{html.escape(label)}'>"
            f"<rect width='{width}' height='{height}' fill='#f7f9fc' stroke='#ccd'/>"
            f"<polyline points='{line}' fill='none' stroke='#1f6fb2' stroke-width='2'/>{dots}"
            f"<text x='6' y='12' font-size='10' fill='#555'>max {format_value(high)}</text>"
            f"<text x='6' y='{height - 4}' font-size='10' fill='#555'>min {format_value(low)}"
            f" · latest {format_value(latest)} · {len(points)} run(s)</text></svg>"
            f"<figcaption>{html.escape(label)}</figcaption></figure>"
        )
    return "".join(panels)


def html_report(data: dict[str, Any], history: list[dict[str, Any]] | None = None) -> str:
    esc = html.escape
    rows = []
    for table in data["tables"]:
        for r in table["results"]:
            state = "pass" if r["success"] else ("fail" if r["severity"] == BLOCKING else "warn")
            shown = "passed" if r["success"] else ("BLOCKS" if state == "fail" else r["severity"])
            if r["error"]:
                observed = f"error: {r['error']}"
            elif r["observed_value"] is None and r["element_count"]:  # a row-by-row check
                observed = f"{r['unexpected_count']:,} of {r['element_count']:,} rows unexpected"
            elif r["observed_value"] is None and r["rows"] == "new":
                observed = "no new rows"
            else:
                observed = format_value(r["observed_value"])
            unexpected = f"{r['unexpected_count']:,}" if r["unexpected_count"] else ""
            rows.append(
                f"<tr class='{state}'><td class='short'>{esc(table['table'])}</td>"
                f"<td class='long'>{esc(r['name'])}</td><td class='short'>{esc(r['severity'])}"
                f"</td><td class='short'>{esc(r['rows'])}</td><td class='short'>{shown}</td>"
                f"<td class='long'>{esc(observed)}</td><td class='long'>{esc(r['expected'])}</td>"
                f"<td class='short'>{unexpected}</td>"
                f"<td class='long'>{esc(format_value(r['examples']) if r['examples'] else '')}"
                f"</td><td class='long'>{esc(r['notes'])}</td></tr>"
            )
    threshold = data.get("change_threshold", CHANGE_THRESHOLD)
    moved = "".join(
        f"<li>{esc(c['table'])} {esc(c['metric'])}: {c['previous']} &rarr; {c['current']}"
        + (f" ({c['relative_change']:+.1%})" if c["relative_change"] is not None else "")
        + "</li>"
        for c in data.get("changes", [])
    )
    failures = "".join(
        f"<li><b>{esc(t['table'])}</b> {esc(r['name'])}: {esc(describe(r))}</li>"
        for t in data["tables"]
        for r in t["results"]
        if not r["success"] and r["severity"] == BLOCKING
    )
    verdict = "PASSED" if data["passed"] else "BLOCKED"
    docs = (
        f"<a href='{DATA_DOCS}/index.html'>Great Expectations Data Docs</a>"
        if data.get("data_docs")
        else ""
    )
    chart = trend_svg(trend_series(history or [data]))
    return f"""<!doctype html><html><head><meta charset="utf-8">
<title>Data-quality gate {esc(data["run_id"])}: {verdict}</title>
<style>body{{font-family:sans-serif;margin:16px}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 6px;font-size:12px;text-align:left}}
td.long{{overflow-wrap:anywhere;min-width:160px}} td.short{{white-space:nowrap}}
.fail{{background:#fdd}} .warn{{background:#ffd}} .pass{{background:#efe}}
.verdict{{padding:10px 16px;color:#fff;font-size:24px;font-weight:bold}}
.PASSED{{background:#2e7d32}} .BLOCKED{{background:#c62828}}
.trends{{display:flex;flex-wrap:wrap;gap:8px}} figure{{margin:0}}
figcaption{{font-size:12px;color:#333}}</style></head><body>
<div class="verdict {verdict}">Data-quality gate: {verdict}</div>
<p>run {esc(data["run_id"])}, as of {esc(data["as_of"])}, environment
{esc(str(data.get("env") or "default"))}: {data["blocking_failures"]} critical failure(s),
{data["warnings"]} warning(s). {docs}</p>
{f"<h2>Blocking</h2><ul>{failures}</ul>" if failures else ""}
<h2>Changed since the previous run (more than {threshold:.0%})</h2>
<ul>{moved or "<li>nothing moved that much</li>"}</ul>
<h2>Trends over the last {len(history or [data])} run(s)</h2>
<div class="trends">{chart}</div>
<h2>Every expectation</h2>
<table><tr><th>table</th><th>expectation</th><th>severity</th><th>rows</th><th>result</th>
<th>observed</th><th>expected</th><th>unexpected</th><th>examples</th><th>notes</th></tr>
{"".join(rows)}</table></body></html>"""


def summary(data: dict[str, Any], out: Path | None = None) -> dict[str, Any]:
    """The run in brief, as ``lakehouse validate --json`` prints it: the verdict, and per
    table its rows and every expectation that did not pass, with observed and expected."""
    return {
        "run_id": data["run_id"],
        "as_of": data["as_of"],
        "env": data.get("env"),
        "passed": data["passed"],
        "blocking_failures": data["blocking_failures"],
        "warnings": data["warnings"],
        "reports": str(out) if out else None,
        "tables": [
            {
                "table": t["table"],
                "rows": t["rows"],
                "new_rows": t["new_rows"],
                "passed": all(r["success"] or r["severity"] != BLOCKING for r in t["results"]),
                "not_passed": [
                    {
                        "name": r["name"],
                        "severity": r["severity"],
                        "observed": r["observed_value"],
                        "expected": r["expected"],
                        "unexpected_count": r["unexpected_count"],
                        "error": r["error"],
                    }
                    for r in t["results"]
                    if not r["success"]
                ],
            }
            for t in data["tables"]
        ],
        "changes": data.get("changes", []),
    }
