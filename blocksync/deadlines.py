"""The time left to the work in progress on this thread, for waits that would outlast it.

A plugin call has a time limit, and the epoch deadline that enforces it stops only the guest's
own code: a host function the guest calls (an HTTP request, a block write waiting its turn for
a ref) runs on until it returns. So the plugin host sets the call's deadline here around each
host function, and every wait that can block consults :func:`left` to wait no longer than
what remains. Outside such a scope nothing is bounded beyond the wait's own cap.

A context variable, not a global: plugins call host functions on their own threads at once.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_deadline: ContextVar[float | None] = ContextVar("blocksync_deadline", default=None)


@contextmanager
def until(deadline: float | None) -> Iterator[None]:
    """Bound the waits of the ``with`` block by ``deadline`` (``time.monotonic()``; None: none)."""
    token = _deadline.set(deadline)
    try:
        yield
    finally:
        _deadline.reset(token)


def left(cap: float) -> float:
    """Seconds a wait may take: ``cap``, or less when the deadline comes sooner (never < 0)."""
    deadline = _deadline.get()
    if deadline is None:
        return cap
    return max(0.0, min(cap, deadline - time.monotonic()))


def expired_at(deadline: float | None) -> bool:
    """Whether ``deadline`` (``time.monotonic()``; None: none) has passed."""
    return deadline is not None and time.monotonic() >= deadline
