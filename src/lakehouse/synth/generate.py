"""Generate a landing folder: the history, then the nights after it (one module above
:mod:`history` and :mod:`nights`, so neither imports the other back)."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from pathlib import Path

from lakehouse.synth.history import (
    MANIFEST,
    GenerateConfig,
    GenerateReport,
    ProgressFn,
    existing_world,
    refuse_another_world,
    write_history,
)
from lakehouse.synth.nights import append_nights


def generate(config: GenerateConfig, progress: ProgressFn | None = None) -> GenerateReport:
    """Write users/, photos/, embeddings/ and events/ under ``config.out``: the history
    (``days`` up to ``end``), then ``nights`` nights after it. A folder that already holds
    this world (same seed and sizes) keeps its files and gets only the missing nights."""
    report = progress or (lambda step, done, total: None)
    out = Path(config.out)
    stats, have = existing_world(out, config)
    if stats is None:
        refuse_another_world(out, config)
        stats, have = write_history(out, config, report), 0
    want = max(have, config.nights)
    if want > have:
        append_nights(out, config, have, want, stats, report)
    result = GenerateReport(
        {
            k: (str(v) if isinstance(v, datetime) else v)
            for k, v in {**asdict(config), "nights": want}.items()
            if k != "out"  # paths in the manifest are relative to the landing folder
        },
        stats,
    )
    staged = out / f".{MANIFEST}.tmp"
    staged.write_text(result.to_json())
    staged.replace(out / MANIFEST)
    return result
