"""SIGINT and SIGTERM during a run: recorded by a handler, acted on at the run's safe points.

A writer run (``blocksync sync``, ``reconcile``, ``pull``, ``push``, ``conflicts
resolve``/``undo``) holds the run lock inside :func:`handling`. The first signal is only
*recorded*: Python runs signal handlers on the main thread alone, while plugin calls run on
worker threads (a thread cannot be stopped safely, and a call is bounded by its time limit
anyway), and an exception raised wherever the main thread happens to be could land inside a
host function, a git compare-and-swap or an SQLite transaction. The run looks at the request
at its safe points instead -- before each source, remote and stream; between the files of a
folder source's write (the block commit of the batch finishes first); after a plugin's call
and its commits -- leaves what it did not start for the next run, and raises
:class:`~blocksync.errors.Interrupted` (exit 130 for SIGINT, 143 for SIGTERM).

A second signal exits at once (``os._exit`` with the same code): nothing is finished or
recorded, which is as safe as ``kill -9`` -- every write of the store is atomic (git
compare-and-swap, temp file and rename, one SQLite transaction), the run lock is an ``flock``
that goes with the process, and the next run marks the row ``interrupted``.

The library installs no handler on import. A library user (an agent) reconciling from the main
thread may opt in the same way, and look at the request at its own safe points::

    from blocksync import interrupts

    with interrupts.handling():
        report = ws.reconcile()  # stops between sources and between files when signalled
        interrupts.check("after reconcile")  # raises Interrupted if it was

Outside :func:`handling` (or off the main thread, where handlers cannot be installed)
:func:`requested` is always None: nothing changes for code that did not opt in.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from .errors import Interrupted

__all__ = ["check", "handling", "reason", "requested"]

SIGNALS = (signal.SIGINT, signal.SIGTERM)

_active = False  # a handling() block is open (in this process, on the main thread)
_received: int | None = None  # the first signal it received


def requested() -> int | None:
    """The number of the signal that asked the current run to stop, or None."""
    return _received


def reason() -> str | None:
    """Why what a run did not start was left (a path, a source), or None: not interrupted."""
    if _received is None:
        return None
    return f"not reached: interrupted by {signal.Signals(_received).name}; left for the next run"


def check(detail: str) -> None:
    """A safe point: raise :class:`Interrupted` (``detail``: how far the run got) if asked to."""
    if _received is not None:
        raise Interrupted(_received, detail)


def _handle(signum: int, frame: FrameType | None) -> None:
    global _received
    name = signal.Signals(signum).name
    if _received is not None:  # the second: at once, with nothing more written
        _say(f"{name} again: exiting now")
        os._exit(128 + signum)
    _received = signum
    _say(f"{name}: stopping at the next safe point (send it again to exit at once)")


def _say(line: str) -> None:
    """One line on standard error, from a signal handler: a raw write, and a closed or broken
    stderr is no reason to raise into whatever the main thread was doing."""
    try:
        os.write(2, f"\n{line}\n".encode())
    except OSError:
        pass


@contextmanager
def handling() -> Iterator[None]:
    """Record SIGINT and SIGTERM for the ``with`` block (see the module docstring); the
    previous handlers come back after it. Nested blocks share the outer one; off the main
    thread this does nothing."""
    global _active, _received
    if _active or threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.getsignal(sig) for sig in SIGNALS}
    _active, _received = True, None
    try:
        for sig in SIGNALS:
            signal.signal(sig, _handle)
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)
        _active, _received = False, None
