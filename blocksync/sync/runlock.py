"""``store/run.lock``: one writer run at a time.

Taken by every writer of the library API -- ``ws.reconcile()`` (not a dry run: it writes
nothing), ``ws.conflicts.resolve()``/``undo()`` (and so the built-in resolve tool),
``ws.pull()``/``ws.push()`` -- through :meth:`blocksync.workspace.Workspace.locked`, and by the
command line's writers through them, so a resolution or a hand-run reconcile never interleaves
with a cron run, nor two of them with each other.

The lock is an exclusive ``fcntl.flock`` on the file, not the file's existence: the kernel drops
it when the holder's last descriptor closes, so a run killed by ``kill -9``, an OOM kill or a
power cut never leaves a stale lock behind and there is nothing to clean up by hand. The file
itself stays (deleting a lock file races with a process that has it open) and holds a small JSON
note of who holds it -- pid, command, run id, start time -- for the message a second run prints.
That note is only a hint: the flock decides, and a killed holder's note is simply overwritten by
the next run.

Decisions:

* ``flock``, not ``fcntl``/``lockf`` record locks: those belong to the process and vanish when
  *any* descriptor of the file closes (a second ``open`` in the same process would silently
  unlock it); flock locks belong to the open file description, so two opens conflict even within
  one process, which is also what lets tests hold the lock from a thread.
* The descriptor is close-on-exec (Python's default), so plugins or git processes started while
  a run holds the lock neither inherit nor prolong it.
* The file is opened with ``O_NOFOLLOW`` and must be a regular file with no other hard link
  (:func:`blocksync.fs.safefile.open_regular`): the lock truncates and writes its note in place, so
  a link planted at ``run.lock`` would otherwise truncate whatever it points to. Such a file is
  :class:`~blocksync.errors.UnsafeFile`, naming it; nothing is written.
* **Re-entrant per thread, one owner per thread**: :func:`hold` (what the library takes) lets
  the thread that holds the lock take it again -- ``blocksync sync`` holds it for the whole run
  and calls ``ws.reconcile()``, ``ws.pull()`` and ``ws.push()``, which take it too -- without a
  second ``flock`` (which would conflict with the first even in one process and so deadlock a
  waiting caller). The nested take waits for nothing and writes no note: the outer holder's
  note stays. Any other thread, in this process or another, is another owner and contends
  for the lock as usual. :func:`acquire` itself stays exclusive even within one thread.
* Waiting polls with a short non-blocking retry instead of a blocking ``flock``: a blocking call
  cannot honour a timeout without signals, and signals belong to the application, not a library.
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from blocksync import interrupts
from blocksync.errors import RunLockHeld
from blocksync.fs.safefile import open_regular
from blocksync.index.db import timestamp
from blocksync.text import parse_json

LOCK_FILE = "run.lock"
#: first and longest pause between attempts while waiting for the lock, in seconds
POLL_FIRST = 0.02
POLL_MAX = 0.25
_NOTE_MAX = 4096


@dataclass(frozen=True)
class RunLock:
    """A held lock: where it is, what this run wrote into it, and how long it waited for it."""

    path: Path
    holder: dict[str, object] = field(default_factory=dict)
    waited: float = 0.0


def read_holder(path: Path) -> dict[str, object]:
    """The note the current (or last) holder wrote; empty if there is none or it is unreadable
    (a link at ``path`` is not followed: its target is nobody's note)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return {}
    try:
        return _note(fd)
    finally:
        os.close(fd)


def _note(fd: int) -> dict[str, object]:
    try:
        data = os.pread(fd, _NOTE_MAX, 0)
        note = parse_json(data.decode("utf-8")) if data else {}
    except (OSError, ValueError):
        return {}
    return dict(note) if isinstance(note, dict) else {}


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


@contextmanager
def acquire(
    path: Path,
    wait: bool = False,
    timeout: float | None = None,
    *,
    info: Mapping[str, object] | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[RunLock]:
    """Hold the run lock at ``path`` for the ``with`` block.

    Busy: raises :class:`RunLockHeld` naming the holder at once, or with ``wait`` retries until
    the lock is free or ``timeout`` seconds (``None``: no limit) have passed. ``info`` (e.g.
    ``command``, ``run_id``) goes into the note other runs see, beside this process's pid and the
    time it took the lock.
    """
    path = Path(path)
    fd = open_regular(path, os.O_RDWR | os.O_CREAT, 0o644, single_link=True)
    try:
        started = clock()
        pause = POLL_FIRST
        waited = 0.0  # exactly 0 when the lock was free at the first attempt
        while not _try_lock(fd):
            waited = clock() - started
            if not wait or (timeout is not None and waited >= timeout):
                raise RunLockHeld(str(path), _note(fd), waited if wait else 0.0)
            if timeout is not None:
                pause = min(pause, max(timeout - waited, 0.0))
            sleep(pause)
            pause = min(pause * 2, POLL_MAX)
            waited = clock() - started
        holder: dict[str, object] = {"pid": os.getpid(), "started_at": timestamp(), **(info or {})}
        note = json.dumps(holder, sort_keys=True).encode("utf-8")
        os.ftruncate(fd, 0)
        os.pwrite(fd, note, 0)
        try:
            yield RunLock(path, holder, waited)
        finally:
            # say nothing about a run that is over; the flock itself goes with the close below
            os.ftruncate(fd, 0)
    finally:
        os.close(fd)


#: (device, inode of the lock file, thread ident) -> the lock that thread holds through hold()
_held: dict[tuple[int, int, int], RunLock] = {}
_held_guard = threading.Lock()


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path, follow_symlinks=False)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def wait_interruptibly(pause: float) -> None:
    """The pause between attempts while waiting: inside :func:`blocksync.interrupts.handling`
    a signal ends the wait (nothing was written yet); outside it, a plain sleep."""
    interrupts.check("stopped while waiting for the run lock, before it wrote anything")
    time.sleep(pause)


@contextmanager
def hold(
    path: Path,
    wait: bool = False,
    timeout: float | None = None,
    *,
    info: Mapping[str, object] | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = wait_interruptibly,
) -> Iterator[RunLock]:
    """:func:`acquire`, re-entrant for the thread holding it (see "Decisions" above): taken
    again by that thread, it is the outer hold, with nothing waited and nothing written."""
    path = Path(path)
    known = _identity(path)
    key = None if known is None else (*known, threading.get_ident())
    with _held_guard:
        outer = None if key is None else _held.get(key)
    if outer is not None:
        yield RunLock(outer.path, outer.holder, 0.0)
        return
    with acquire(path, wait, timeout, info=info, clock=clock, sleep=sleep) as lock:
        known = _identity(path)  # the file exists now; it is never replaced while held
        key = None if known is None else (*known, threading.get_ident())
        if key is not None:
            with _held_guard:
                _held[key] = lock
        try:
            yield lock
        finally:
            if key is not None:
                with _held_guard:
                    _held.pop(key, None)
