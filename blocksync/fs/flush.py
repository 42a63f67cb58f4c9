"""Making many writes durable at once: their fsyncs issued together.

An atomic write orders two things: the temp file's bytes reach the disk before its rename, and
the rename before whatever relies on it (a sync base advancing). One ``fsync`` per file and one
per folder does that, at a journal commit each when they come one after another: a reconcile
writing 100 files in 60 folders waits for 160 commits (0.5 ms each on a quiet ext4 disk, several
ms on a busy one). Issued from a pool of threads, fsyncs that wait at the same time share their
commits (ext4's, xfs's and btrfs's group commit): measured here, 100 files and their folders in
23 ms instead of 56 quiet, 54 instead of 420 busy. Each descriptor is still fsynced itself: the
same guarantee as the loop, in any filesystem.

:func:`start` issues them without waiting: the caller goes on with work that does not depend on
them (a reconcile commits its blocks meanwhile) and waits (:meth:`Flushing.wait`) right before
what does (renaming a temp file over its file). The threads are kept for the next batch (one
pool per process: a forked child makes its own), so a batch does not pay for starting them.

Not ``syncfs(2)``, which would flush in one call: it writes back every dirty page of the whole
filesystem, other programs' included, and took 470 ms where these fsyncs took 40.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported by the first batch: a command that writes none never pays for it
    from concurrent.futures import Future, ThreadPoolExecutor

__all__ = ["BATCH", "WORKERS", "Flushing", "fsync_all", "start"]

#: below this many descriptors, fsync them one by one (handing them to threads costs more)
BATCH = 4
#: threads fsyncing at once
WORKERS = 16

_pool: tuple[int, ThreadPoolExecutor] | None = None
_pool_lock = threading.Lock()


class Flushing:
    """fsyncs under way (:func:`start`); :meth:`wait` for them."""

    def __init__(self, futures: list[Future[OSError | None]], errors: list[OSError]) -> None:
        self._futures = futures
        self._errors = errors

    def wait(self) -> None:
        """Return once every fsync is done; the first error, once every one was tried."""
        errors, self._errors = self._errors, []
        futures, self._futures = self._futures, []
        errors += [error for future in futures if (error := future.result()) is not None]
        if errors:
            raise errors[0]


def start(fds: Sequence[int]) -> Flushing:
    """Issue an fsync of every descriptor of ``fds`` (past :data:`BATCH` of them, together, on
    the pool's threads; fewer, at once here). The descriptors stay open until it is waited for."""
    futures: list[Future[OSError | None]] = []
    errors: list[OSError] = []
    pool = _executor() if len(fds) >= BATCH else None
    for fd in fds:
        try:
            if pool is not None:
                futures.append(pool.submit(_fsync, fd))
                continue
        except RuntimeError:  # no thread to be had (the interpreter is exiting): fsynced here
            pass
        if (error := _fsync(fd)) is not None:
            errors.append(error)
    return Flushing(futures, errors)


def fsync_all(fds: Sequence[int]) -> None:
    """fsync every descriptor of ``fds`` (past :data:`BATCH` of them, together); the first
    error, once every one was tried."""
    start(fds).wait()


def _executor() -> ThreadPoolExecutor:
    global _pool
    from concurrent.futures import ThreadPoolExecutor

    with _pool_lock:
        if _pool is None or _pool[0] != os.getpid():  # a fork's child has none of the threads
            _pool = (
                os.getpid(),
                ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="blocksync-fsync"),
            )
        return _pool[1]


def _fsync(fd: int) -> OSError | None:
    try:
        os.fsync(fd)
    except OSError as exc:
        return exc
    return None
