"""The reconcile truth table (DESIGN.md, "Reconcile semantics") as one pure function.

Three contents per path: ``base`` (what both sides held at the last successful sync), ``disk`` (the
outside source now) and ``agent`` (the block now); ``None`` means absent (no base yet, file
missing, block missing). :func:`decide` says what to do with them, and nothing else: no I/O, no
clock, no mtime, contents compared by equality (which is what comparing their hashes decides).

This module imports only the standard library and nothing of blocksync: the native file source
uses it directly, and the guest SDK ships this very file inside every Python plugin, where
blocksync does not exist. For the same reason the three-way merge is passed in (the host's
``blocksync.store.merge.merge3``, or the ``sync.merge3`` host import inside a plugin).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

__all__ = [
    "ADMIN",
    "PERMISSIONS",
    "READ_ONLY",
    "READ_WRITE",
    "Action",
    "Decision",
    "Merge",
    "content_hash",
    "decide",
]

READ_ONLY = "read-only"  # the agent may not change the source: disk wins, agent writes refused
READ_WRITE = "read-write"  # both directions, merge
ADMIN = "admin"  # read-write, and deletions carry over to the other side
PERMISSIONS = (READ_ONLY, READ_WRITE, ADMIN)

#: ``merge(base, disk, agent)``: the merged text, or ``None`` when any change overlaps another.
Merge = Callable[[str, str, str], "str | None"]


class Action(str, Enum):
    """What reconcile does with one path. The value is the resolution name reports show."""

    NO_CHANGE = "no-change"
    TO_AGENT = "disk->agent"  # block updated (or created) from disk
    TO_DISK = "agent->disk"  # source written (or created) from the block
    IDENTICAL = "identical"  # both changed to the same text: only the base advances
    MERGED = "merged"  # clean three-way merge: both sides get `content`
    DELETE_AGENT = "delete-block"  # source deleted, block unchanged, permission admin
    DELETE_DISK = "delete-source"  # block deleted, source unchanged, permission admin
    FORGET = "both-deleted"  # both gone: the binding and base are dropped
    CONFLICT = "needs-resolution"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Decision:
    action: Action
    #: what both sides hold afterwards (the new base; for NO_CHANGE the unchanged base); None when
    #: deleted, forgotten or conflict
    content: str | None
    #: one readable sentence, always set: why a conflict, or what was done
    reason: str

    @property
    def outcome(self) -> str:
        """The WIT ``reconcile-result`` case: "no-change", "needs-resolution" or "resolved"."""
        if self.action is Action.NO_CHANGE:
            return "no-change"
        if self.action is Action.CONFLICT:
            return "needs-resolution"
        return "resolved"


def content_hash(text: str) -> str:
    """sha256 hex of the text's UTF-8 bytes (lone surrogates pass through, as in the merge)."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def _conflict(reason: str) -> Decision:
    return Decision(Action.CONFLICT, None, reason)


def decide(
    base: str | None,
    disk: str | None,
    agent: str | None,
    permission: str,
    merge: Merge,
) -> Decision:
    """Decide one path from its base, disk and agent contents under ``permission``.

    ``permission`` is "read-only", "read-write" or "admin"; anything else is a ValueError.
    ``merge(base, disk, agent)`` is called only when both sides changed to different texts under
    a permission that allows writing the source; it returns the merged text or None on overlap.
    """
    if permission not in PERMISSIONS:
        raise ValueError(
            f"unknown permission {permission!r}; expected one of {', '.join(PERMISSIONS)}"
        )
    writable = permission != READ_ONLY
    admin = permission == ADMIN

    if base is None:
        return _without_base(disk, agent, writable)

    # -- deletions (base present) ---------------------------------------------------------------
    if disk is None and agent is None:
        return Decision(Action.FORGET, None, "both sides were deleted; the binding is dropped")
    if disk is None:
        if agent != base:
            return _conflict("the source was deleted but the block changed")
        if admin:
            return Decision(
                Action.DELETE_AGENT, None, "the source was deleted, so the block was deleted too"
            )
        return _conflict("the source was deleted, and only admin permission may delete the block")
    if agent is None:
        if disk != base:
            return _conflict("the block was deleted but the source changed")
        if admin:
            return Decision(
                Action.DELETE_DISK, None, "the block was deleted, so the source was deleted too"
            )
        if not writable:
            return _conflict("the block was deleted, but the source is read-only for this agent")
        return _conflict("the block was deleted, and only admin permission may delete the source")

    # -- both present (base present) ------------------------------------------------------------
    disk_changed = disk != base
    agent_changed = agent != base
    if not disk_changed and not agent_changed:
        return Decision(Action.NO_CHANGE, base, "neither side changed since the last sync")
    if not agent_changed:
        return Decision(Action.TO_AGENT, disk, "the source changed; the block was updated")
    if not disk_changed:
        if writable:
            return Decision(Action.TO_DISK, agent, "the block changed; the source was written")
        return _conflict("the block changed, but the source is read-only for this agent")
    if disk == agent:
        return Decision(Action.IDENTICAL, disk, "both sides made the same change")
    if not writable:
        return Decision(
            Action.TO_AGENT,
            disk,
            "both sides changed and the source is read-only for this agent, so the source wins "
            "(the block's edit stays in its history)",
        )
    merged = merge(base, disk, agent)
    if merged is None:
        return _conflict("both sides changed the same lines")
    return Decision(Action.MERGED, merged, "both sides changed different lines; merged cleanly")


def _without_base(disk: str | None, agent: str | None, writable: bool) -> Decision:
    """No successful sync yet: never guess a base (an empty one least of all)."""
    if disk is None and agent is None:
        return Decision(Action.NO_CHANGE, None, "neither side exists and there is no base")
    if agent is None:
        return Decision(Action.TO_AGENT, disk, "a new source file; a block was created from it")
    if disk is None:
        if writable:
            return Decision(Action.TO_DISK, agent, "a new block; the source was created from it")
        return _conflict("a new block, but the source is read-only for this agent")
    if disk == agent:
        return Decision(Action.IDENTICAL, disk, "no base yet and both sides hold the same text")
    return _conflict("no base yet and both sides differ")
