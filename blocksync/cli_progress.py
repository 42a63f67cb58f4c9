"""The CLI's progress display: :class:`blocksync.shared.progress.Progress` drawn by rich on
standard error, for a terminal only.

The only module that imports rich, and only once a task starts: a command that starts none
(``block read``, ``--version``) never loads it. Tasks are transient -- a finished one is erased
-- so what a command prints is the same with or without a terminal, the progress aside.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import IO, TYPE_CHECKING

from .shared.progress import SILENT, Progress
from .text import printable

if TYPE_CHECKING:
    import rich.progress

#: BLOCKSYNC_PROGRESS: ``auto`` (default: when the output is a terminal), ``always`` (also
#: into a pipe, as a terminal would get it: for tests and recordings) or ``never``
ENV = "BLOCKSYNC_PROGRESS"
CHOICES = ("auto", "always", "never")


def for_command(
    as_json: bool, env: Mapping[str, str], stdout: IO[str], stderr: IO[str]
) -> Progress:
    """What a command reports its progress to: a display on ``stderr`` when the command's
    output, ``stdout`` and ``stderr``, goes to a terminal (or ``BLOCKSYNC_PROGRESS=always``);
    nothing for ``--json``, for output redirected, or with ``never``."""
    mode = env.get(ENV, "auto").strip().lower() or "auto"
    if mode not in CHOICES:
        mode = "auto"  # an unknown value is no reason to fail a command
    if as_json or mode == "never":
        return SILENT
    if mode == "auto" and not (stdout.isatty() and stderr.isatty()):
        return SILENT
    return TerminalProgress(stderr, force_terminal=mode == "always")


class _RichTask:
    def __init__(
        self, display: rich.progress.Progress, task_id: rich.progress.TaskID, total: int | None
    ) -> None:
        self._display = display
        self._id = task_id
        self._total = total
        self._done = 0

    def advance(self, steps: int = 1) -> None:
        self._done += steps
        count = f"{self._done:,}" if self._total is None else f"{self._done:,}/{self._total:,}"
        self._display.update(self._id, advance=steps, count=count)


class TerminalProgress:
    """Every task open at a time, one line each, under one live display (thread-safe: plugins
    compile in their own threads)."""

    def __init__(self, stream: IO[str], *, force_terminal: bool = False) -> None:
        self._stream = stream
        self._force = force_terminal
        self._lock = threading.Lock()
        self._display: rich.progress.Progress | None = None
        self._open = 0

    @contextmanager
    def task(self, description: str, total: int | None = None) -> Iterator[_RichTask]:
        from rich.markup import escape

        with self._lock:
            display = self._display or self._start()
            count = "" if total is None else f"0/{total:,}"
            task_id = display.add_task(escape(printable(description)), total=total, count=count)
            self._open += 1
        try:
            yield _RichTask(display, task_id, total)
        finally:
            with self._lock:
                display.remove_task(task_id)
                self._open -= 1
                if not self._open:  # the line is erased before anything else is printed
                    display.stop()
                    self._display = None

    def _start(self) -> rich.progress.Progress:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        console = Console(file=self._stream, force_terminal=self._force or None)
        self._display = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[count]}"),
            TimeElapsedColumn(),
            console=console,
            transient=True,
            # what commands print goes where it always went, untouched
            redirect_stdout=False,
            redirect_stderr=False,
        )
        self._display.start()
        return self._display
