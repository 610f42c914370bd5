"""Rich progress for long steps; silent when output is not a terminal (CI logs stay clean)."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from lakehouse.printable import shown

if TYPE_CHECKING:
    from lakehouse.ingest import FileResult


def make_console(stderr: bool = False) -> Console:
    """Long lines (paths) are never hard-wrapped; logs get room for the summary tables; no
    ``:name:`` in a file's content is turned into an emoji."""
    stream = sys.stderr if stderr else sys.stdout
    return Console(
        stderr=stderr, soft_wrap=True, width=None if stream.isatty() else 120, emoji=False
    )


class RichIngestProgress:
    """Bytes of landing files read, across all files, with the current file's name."""

    def __init__(self, console: Console) -> None:
        self._progress = Progress(
            TextColumn("[bold]ingest[/] {task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=console,
            disable=not console.is_terminal,
            transient=True,
        )
        self._task = self._progress.add_task("", total=0)

    def start(self, total_bytes: int) -> None:
        self._progress.update(self._task, total=total_bytes)
        self._progress.start()

    def file_started(self, name: str, size: int) -> None:
        # the file's name is text from outside: never markup, never a control sequence
        self._progress.update(self._task, description=shown(name.rsplit("/", 1)[-1]))

    def advance(self, nbytes: int) -> None:
        self._progress.advance(self._task, nbytes)

    def file_done(self, result: FileResult) -> None:
        """Per-file outcomes are summarised by the CLI after the run."""

    def stop(self) -> None:
        self._progress.stop()


class RichStepProgress:
    """Progress over named steps of known size (the generator's days)."""

    def __init__(self, console: Console, label: str) -> None:
        self._progress = Progress(
            TextColumn(f"[bold]{label}[/] {{task.description}}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=console,
            disable=not console.is_terminal,
            transient=True,
        )
        self._tasks: dict[str, int] = {}

    def __call__(self, step: str, done: int, total: int) -> None:
        if step not in self._tasks:
            self._tasks[step] = self._progress.add_task(step, total=total)
        self._progress.update(self._tasks[step], completed=done, total=total)

    def __enter__(self) -> RichStepProgress:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()


class RichRowProgress:
    """Rows written so far, for steps whose total is not known up front."""

    def __init__(self, console: Console, label: str) -> None:
        self._progress = Progress(
            TextColumn(f"[bold]{label}[/]"),
            BarColumn(),
            TextColumn("{task.completed:,} rows"),
            console=console,
            disable=not console.is_terminal,
            transient=True,
        )
        self._task = self._progress.add_task(label, total=None)

    def __call__(self, rows: int) -> None:
        self._progress.advance(self._task, rows)

    def __enter__(self) -> RichRowProgress:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()
