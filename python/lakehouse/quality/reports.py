"""What the gate writes: JSON for machines, JUnit XML for CI, HTML for people, and a history
of runs so the next one can say what changed."""

from __future__ import annotations

import html
import json
import math
from dataclasses import asdict
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

from lakehouse.quality.record import RESULT_FILE
from lakehouse.quality.runner import RunReport
from lakehouse.storage import write_atomic


def to_dict(report: RunReport) -> dict[str, Any]:
    return {
        "run_id": report.run_id,
        "started_at": report.started_at,
        "as_of": report.as_of,
        "passed": report.passed,
        "blocking_failures": len(report.blocking_failures),
        "warnings": len(report.warnings),
        "tables": [
            {
                **{k: v for k, v in asdict(t).items() if k != "results"},
                "results": [{**asdict(r), "name": r.name} for r in t.results],
            }
            for t in report.tables
        ],
    }


def write_reports(report: RunReport, out: Path) -> dict[str, Any]:
    """Write result.json, junit.xml and report.html for this run, keep it in the history, and
    return the changes since the previous run."""
    out.mkdir(parents=True, exist_ok=True)
    data = to_dict(report)
    previous = _latest(out)
    data["changes"] = changes(previous, data) if previous else []
    run_dir = out / "runs" / f"{report.started_at[:19].replace(':', '')}-{report.run_id}"
    run_dir.mkdir(parents=True, exist_ok=True)
    text = json.dumps(data, indent=2, default=str)
    for folder in (run_dir, out):  # each file whole or not at all; result.json, read by
        write_atomic(folder / "junit.xml", junit(report))  # export, last
        write_atomic(folder / "report.html", html_report(data))
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


def changes(previous: dict[str, Any], current: dict[str, Any]) -> list[dict[str, Any]]:
    """Row volume and every numeric profile metric (null fractions, shares, means) that
    moved since the previous run."""
    before = {t["table"]: t for t in previous.get("tables", [])}
    moved = []
    for table in current["tables"]:
        old = before.get(table["table"])
        if not old:
            continue
        metrics = {"rows": (old["rows"], table["rows"])}
        for name, value in table["profile"].items():
            if isinstance(value, int | float) and isinstance(old["profile"].get(name), int | float):
                metrics[name] = (old["profile"][name], value)
        for name, (was, now) in metrics.items():
            # parallel float aggregation differs in the last digits from run to run
            if not math.isclose(was, now, rel_tol=1e-9, abs_tol=1e-12):
                moved.append(
                    {
                        "table": table["table"],
                        "metric": name,
                        "previous": was,
                        "current": now,
                        "relative_change": (now - was) / was if was else None,
                    }
                )
    return moved


def junit(report: RunReport) -> bytes:
    suites = ET.Element(
        "testsuites",
        name="lakehouse data-quality gate",
        tests=str(sum(len(t.results) for t in report.tables)),
        failures=str(len(report.blocking_failures)),
    )
    for table in report.tables:
        failed = [r for r in table.results if not r.success and r.severity == "blocking"]
        suite = ET.SubElement(
            suites,
            "testsuite",
            name=table.table,
            tests=str(len(table.results)),
            failures=str(len(failed)),
            time=str(table.seconds),
        )
        for result in table.results:
            case = ET.SubElement(
                suite, "testcase", classname=f"quality.{table.table}", name=result.name
            )
            if result.success:
                continue
            detail = (
                f"observed={result.observed_value!r} unexpected={result.unexpected_count} "
                f"examples={result.examples!r} {result.error or ''}"
            ).strip()
            if result.severity == "blocking":
                ET.SubElement(case, "failure", message=f"blocking: {result.name}").text = detail
            else:
                ET.SubElement(case, "system-out").text = f"warning: {detail}"
    return ET.tostring(suites, encoding="utf-8", xml_declaration=True)


def html_report(data: dict[str, Any]) -> str:
    esc = html.escape
    rows = []
    for table in data["tables"]:
        for r in table["results"]:
            state = "pass" if r["success"] else ("fail" if r["severity"] == "blocking" else "warn")
            rows.append(
                f"<tr class='{state}'><td>{esc(table['table'])}</td><td>{esc(r['name'])}</td>"
                f"<td>{esc(r['severity'])}</td><td>{state}</td>"
                f"<td>{esc(str(r['observed_value']))}</td><td>{r['unexpected_count']}</td>"
                f"<td>{esc(str(r['examples']))}</td><td>{esc(r['error'] or r['notes'])}</td></tr>"
            )
    moved = "".join(
        f"<li>{esc(c['table'])}.{esc(c['metric'])}: {c['previous']} &rarr; {c['current']}</li>"
        for c in data.get("changes", [])
    )
    verdict = "PASSED" if data["passed"] else "BLOCKED"
    return f"""<!doctype html><html><head><meta charset="utf-8">
<title>Data-quality gate {esc(data["run_id"])}: {verdict}</title>
<style>body{{font-family:sans-serif}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px;font-size:13px}} .fail{{background:#fdd}}
.warn{{background:#ffd}} .pass{{background:#efe}}</style></head><body>
<h1>Data-quality gate: {verdict}</h1>
<p>run {esc(data["run_id"])}, as of {esc(data["as_of"])}: {data["blocking_failures"]} blocking
failure(s), {data["warnings"]} warning(s).</p>
<h2>Changes since the previous run</h2><ul>{moved or "<li>none recorded</li>"}</ul>
<table><tr><th>table</th><th>expectation</th><th>severity</th><th>result</th>
<th>observed</th><th>unexpected</th><th>examples</th><th>notes</th></tr>
{"".join(rows)}</table></body></html>"""
