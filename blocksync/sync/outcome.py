"""What a sync found for one path, written to the conflict index.

One rule for the reconciler's sources and for remote pulls: a path that needs resolution opens a
conflict row (or finds the one standing for it), a path in sync closes its open row.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, overload

from blocksync.index.conflicts import Conflict, ConflictIndex

from .protocol import Sides


@dataclass(frozen=True)
class Settled:
    """The path is in sync: its open conflict, if any, closes."""

    status: Literal["resolved", "vanished"]
    resolution: str | None  # how it was resolved (None: nothing needed resolving)
    resolver: str


@dataclass(frozen=True)
class Waiting:
    """The path needs resolution: these sides, for this reason."""

    sides: Sides
    reason: str
    #: false for a remote's record of a conflict, which says itself that it is open (see
    #: :meth:`ConflictIndex.record`)
    decisions_hold: bool = True


@overload
def record_outcome(
    conflicts: ConflictIndex, source: str, path: str, found: Waiting, run_id: str
) -> tuple[Conflict, bool]: ...
@overload
def record_outcome(
    conflicts: ConflictIndex, source: str, path: str, found: Settled, run_id: str
) -> None: ...
def record_outcome(
    conflicts: ConflictIndex, source: str, path: str, found: Waiting | Settled, run_id: str
) -> tuple[Conflict, bool] | None:
    """Record ``found`` for ``path`` of ``source``: for a waiting path, the row that stands for
    it and whether that row is new (an open row, or a decision that still holds); for a settled
    one, None."""
    if isinstance(found, Settled):
        conflicts.close(
            source,
            path,
            status=found.status,
            resolution=found.resolution,
            resolver=found.resolver,
            result_version=None,
        )
        return None
    sides = found.sides
    return conflicts.record(
        source=source,
        path=path,
        owner=sides.owner,
        label=sides.label,
        base=sides.base,
        disk=sides.disk,
        agent=sides.agent,
        reason=found.reason,
        run_id=run_id,
        decisions_hold=found.decisions_hold,
    )


__all__ = ["Settled", "Waiting", "record_outcome"]
