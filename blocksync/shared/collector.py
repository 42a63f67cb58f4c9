"""Pausing Python's cyclic garbage collector around work that builds many objects that live on.

A full collection scans every tracked object the process holds: with a store's caches and a
reconcile's plans that is tens of milliseconds, and a run that allocates a few hundred thousand
objects (a survey of 10,000 files, the trees of two commits) triggers one, which finds next to
nothing to free (reference counting frees the rest). Paused, the collection runs once the work
is done, where it is due anyway; the objects it would free in between are reference cycles,
which the writers here break themselves once they are done with them.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["paused"]


@contextmanager
def paused(*, promote: bool = False) -> Iterator[None]:
    """No cyclic garbage collection inside the ``with`` block; left alone if the program
    turned the collector off itself (or an outer block did).

    ``promote``: for a block whose objects all live on (a listing of 100,000 blocks). The
    objects it made are still counted as young, so the first allocation after it walks them
    all (a fifth of that listing) only to move them on; promoted, every young object joins
    the oldest generation unwalked instead (``gc.freeze`` and ``gc.unfreeze``: moved to the
    permanent generation and back into the oldest). Young garbage cycles then wait for a full
    collection, hence not for work that leaves cycles behind. Not done when the program froze
    objects itself: unfreezing would release them too."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        if promote and gc.get_freeze_count() == 0:
            gc.freeze()
            gc.unfreeze()
        gc.enable()
