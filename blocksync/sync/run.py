"""One run of the reconcile loop as a value: its id, its deadline on its clock, and why a step
(a source, a remote, a stream) was not started.

A :class:`Run` replaces the ``(run_id, deadline, now)`` that was threaded through every step,
and :class:`NotReached` the sentence that was parsed back (``startswith("not reached")``) to
tell a step the deadline left out from one a signal left out: an entry that was not started
carries the cause as a flag (``entry.not_reached``) beside the sentence it shows the user.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal, Protocol

from blocksync import interrupts

__all__ = ["Cause", "Entry", "NotReached", "Run", "new_run_id"]

#: why a step was not started: the run's deadline passed, or a signal asked the run to stop
Cause = Literal["timeout", "signal"]


def new_run_id() -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"run-{stamp}-{secrets.token_hex(3)}"


@dataclass(frozen=True)
class NotReached:
    """Why a step is not started: its ``cause``, and the sentence its entry shows."""

    cause: Cause
    reason: str


class Entry(Protocol):
    """A step's entry in a run's report (a source's, a remote's, a stream's)."""

    error: str | None
    not_reached: Cause | None


@dataclass
class Run:
    """One run: ``id`` (what conflicts name as their ``detected_run``), ``timeout`` seconds
    from its start on ``clock`` (``None``: no deadline). The clock starts when the run is made,
    before any wait for the run lock: a run that waits must not pile up behind a stuck one."""

    id: str = field(default_factory=new_run_id)
    timeout: float | None = None
    clock: Callable[[], float] = time.monotonic
    started: float = field(init=False)

    def __post_init__(self) -> None:
        self.started = self.clock()

    @property
    def deadline(self) -> float | None:
        return None if self.timeout is None else self.started + self.timeout

    def elapsed(self) -> float:
        return self.clock() - self.started

    def late(self) -> NotReached | None:
        """Why a step is not to start now -- a signal asked the run to stop
        (:func:`blocksync.interrupts.reason`), or the deadline passed -- or None: start it."""
        why = interrupts.reason()
        if why is not None:
            return NotReached("signal", why)
        deadline = self.deadline
        if deadline is not None and self.clock() >= deadline:
            return NotReached(
                "timeout",
                f"not reached: the run's {self.timeout:g} s deadline passed before it started",
            )
        return None

    def leaves_out(self, entry: Entry) -> bool:
        """True, with ``entry`` marked not reached and why, if its step is not to start now."""
        late = self.late()
        if late is None:
            return False
        entry.error, entry.not_reached = late.reason, late.cause
        return True
