"""Progress of long operations, as a tiny protocol the library reports to and a front end draws.

The library never draws anything: each phase that can take over a second (compiling a plugin,
building one, listing and hashing a folder, writing a source's changes, pushing to or pulling
from a remote) opens one task on :func:`current` and advances it::

    with progress.current().task(f"hashing {key}", total=len(paths)) as task:
        for path in paths:
            ...
            task.advance()

What reports them is chosen by whoever runs the work, for a ``with`` block (a run, a command),
with :func:`reporting`: the CLI gives a terminal display (``blocksync.cli_progress``, rich), and
nothing is shown otherwise (:data:`SILENT`). It is a context variable, not a parameter threaded
through every layer, because the phases sit deep under unrelated call chains (a plugin compiled
on first use under a reconcile, a tool call or an ``inspect``); work handed to another thread
reports nothing unless that thread is given the reporter too.

Standard library only (``shared``): it costs nothing to import, and has no dependency to carry.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from contextvars import ContextVar
from typing import Protocol, TypeVar

T = TypeVar("T")


class Task(Protocol):
    def advance(self, steps: int = 1) -> None:
        """``steps`` more units of the task's total done."""


class Progress(Protocol):
    def task(self, description: str, total: int | None = None) -> AbstractContextManager[Task]:
        """A task shown while the ``with`` block runs; ``total`` units (None: unknown, a
        spinner). ``description`` is plain text from the library, file names included: a
        front end makes it safe for its display."""


class _NoTask:
    def advance(self, steps: int = 1) -> None:
        pass


class _Silent:
    """Reports nothing: the default, and what a run without a terminal gets."""

    def task(self, description: str, total: int | None = None) -> AbstractContextManager[Task]:
        return nullcontext(_NoTask())


SILENT: Progress = _Silent()

_current: ContextVar[Progress] = ContextVar("blocksync_progress", default=SILENT)


def current() -> Progress:
    """Where the work running now reports its progress (:data:`SILENT` unless a caller chose)."""
    return _current.get()


@contextmanager
def reporting(progress: Progress) -> Iterator[Progress]:
    """Report the progress of the work inside the ``with`` block to ``progress``."""
    token = _current.set(progress)
    try:
        yield progress
    finally:
        _current.reset(token)


def counted(items: Sequence[T], description: str) -> Iterator[T]:
    """``items``, one by one, as a task of ``len(items)`` steps: a loop's progress in its
    ``for`` line (``for path in counted(paths, "hashing notes"):``)."""
    reporter = current()
    if reporter is SILENT:  # the library's usual case: a per-path loop pays nothing per path
        return iter(items)
    return _counted(reporter, items, description)


def _counted(reporter: Progress, items: Sequence[T], description: str) -> Iterator[T]:
    with reporter.task(description, total=len(items)) as task:
        for item in items:
            yield item
            task.advance()


def size_text(size: int) -> str:
    """A byte count as people read it: ``18.6 MB``, ``912.0 KB``, ``40 bytes`` (powers of 1000,
    as file managers show sizes)."""
    if size < 1000:
        return f"{size} bytes"
    value = float(size)
    unit = "bytes"
    for unit in ("KB", "MB", "GB", "TB"):
        value /= 1000
        if value < 1000:
            break
    return f"{value:.1f} {unit}"
