"""Carry out what the truth table decided: the block first, then the outside, then the base.

:func:`blocksync.shared.truth.decide` says what to do with one path; this module does it, the same way for
every source: the native folder source, and every Python plugin built on the guest SDK's
``SyncedSource`` (which ships this very file as ``blocksync_apply``, beside ``blocksync_truth``).
A source brings two adapters:

* an :class:`Outside` (the port to the outside store: a folder, a bucket): list, read, and a
  compare-and-swap ``write`` / ``remove`` that refuses when the path no longer holds what it held
  when it was read;
* an :class:`Inside` (the block store and the sync bases, as the source reaches them).

The order is the protocol: (1) the blocks, (2) the outside, each path re-checked by its expected
hash, (3) the bases, last. An outside may also offer ``prepare(writes)``, called with every
(path, bytes) of (2) before the first of them: a folder writes its temp files ahead there and
makes them durable at once (one flush instead of one per file); each write still re-checks its
path's hash right before it replaces anything, and ``written`` drops what no write took. A run killed at any point leaves each path with its old or its new
content on each side, and the next run converges. An outside path that changed between the read
and the write is not overwritten: the path becomes a conflict (:data:`CHANGED_WHILE_WRITING`).

Standard library only, and nothing of blocksync but the truth table, for the reason truth.py gives.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Protocol, TypeVar

# One file, two homes. On the host this is `blocksync.shared.apply`, a module of a package, and the
# relative import finds `blocksync.shared.truth`. A guest build copies it to the top of the guest's path
# as `blocksync_apply` (plugins/build.py, SHIPPED_MODULES), where it has no package (`__package__`
# is empty) and the table sits beside it as `blocksync_truth`. Both names hold the same file.
if __package__:
    from .truth import Action, Decision
else:  # pragma: no cover - runs inside plugins
    from blocksync_truth import Action, Decision  # type: ignore[import-not-found, no-redef]

__all__ = [
    "BLOCK_ACTIONS",
    "CHANGED_WHILE_DELETING",
    "CHANGED_WHILE_WRITING",
    "OUTSIDE_ACTIONS",
    "UNRECORDED",
    "Change",
    "DeleteRefused",
    "Inside",
    "NothingToDelete",
    "Outside",
    "Unreadable",
    "Unwritable",
    "apply",
    "delete",
    "read_text",
    "sha256",
    "text_of",
]

#: the actions that write the block, and those that write the outside
BLOCK_ACTIONS = frozenset({Action.TO_AGENT, Action.MERGED, Action.DELETE_AGENT})
OUTSIDE_ACTIONS = frozenset({Action.TO_DISK, Action.MERGED, Action.DELETE_DISK})

CHANGED_WHILE_WRITING = "the outside changed while reconcile was writing it"
CHANGED_WHILE_DELETING = "it changed while it was being deleted"
UNRECORDED = "has changes no reconcile has recorded; reconcile it before deleting it"


class Unreadable(Exception):
    """Raised by :meth:`Outside.read` for what is no text to sync (a FIFO, a link, bytes that
    are not UTF-8): that path is left alone, never the rest."""


class Unwritable(Exception):
    """Raised by :meth:`Outside.write` / :meth:`Outside.remove` when the path cannot be written
    now (its message says why): that path is left for the next run, never the rest."""


class DeleteRefused(RuntimeError):
    """A delete that would lose text, or that the outside refused: see :func:`delete`."""


class NothingToDelete(FileNotFoundError):
    """A delete of a path no side holds."""


class Outside(Protocol):
    """The outside side of a source: what a person or another program edits. Paths are
    ``/``-separated; hashes are the sha256 hex digests of the bytes."""

    # list_paths, not list: a method named `list` would shadow the builtin in the class bodies
    # that implement it, and their `-> list[str]` annotations with it
    def list_paths(self) -> list[str]:
        """Every path the outside holds now (temporary objects of its writes left out)."""
        ...

    def read(self, path: str) -> bytes | None:
        """The content of ``path``, None when there is none; :class:`Unreadable` for what is
        no object to sync."""
        ...

    def write(self, path: str, data: bytes, expected: str | None) -> bool:
        """Store ``data`` at ``path`` unless its content's sha256 is no longer ``expected``
        (None: the path must be absent): then write nothing and return False. Atomic: a reader
        sees the old or the new content, never a mix."""
        ...

    def remove(self, path: str, expected: str) -> bool:
        """Delete ``path`` unless its content's sha256 is no longer ``expected`` (False then)."""
        ...


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def text_of(data: bytes) -> str:
    """``data`` as text; :class:`Unreadable` when it is not UTF-8."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Unreadable(
            f"not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}): "
            "binary files are left alone"
        ) from None


def read_text(outside: Outside, path: str) -> tuple[str | None, str | None]:
    """(text, sha256 of its bytes) of ``path`` now, (None, None) when absent; Unreadable."""
    data = outside.read(path)
    if data is None:
        return None, None
    return text_of(data), sha256(data)


@dataclass
class Change:
    """One path: its three sides as they were decided on, the decision, and what became of it."""

    path: str
    owner: str  # the block's
    label: str
    base: str | None
    outside: str | None
    outside_hash: str | None  # sha256 of the outside bytes read (None: absent)
    agent: str | None
    decision: Decision
    #: why the path was left for the next run (set by apply or by an Inside)
    skipped: str | None = None
    #: set when applying found a conflict the decision did not foresee (the reason)
    conflict: str | None = None
    #: the outside text when that conflict was found
    outside_now: str | None = None

    @property
    def needs_resolution(self) -> bool:
        return self.conflict is not None or self.decision.action is Action.CONFLICT

    @property
    def reason(self) -> str:
        return self.conflict or self.decision.reason

    def sides_now(self) -> tuple[str | None, str | None]:
        """(outside, block) as a conflict reports them: as decided on, or, when the outside
        changed while it was written, as found then (the block holding what it was given)."""
        if self.conflict is None:
            return self.outside, self.agent
        merged = self.decision.action is Action.MERGED
        return self.outside_now, self.decision.content if merged else self.agent


C = TypeVar("C", bound=Change)
C_contra = TypeVar("C_contra", bound=Change, contravariant=True)


class Inside(Protocol[C_contra]):
    """The block store and the sync bases of a source, as it reaches them."""

    def write_blocks(self, changes: Sequence[C_contra]) -> None:
        """Make each change's block hold ``decision.content`` (None: delete it); set
        ``skipped`` on a change whose block could not be written."""
        ...

    def written(self) -> None:
        """Every outside write of the call is done (or failed): make them durable before any
        base advances."""
        ...

    def write_bases(self, changes: Sequence[C_contra]) -> None:
        """Set each change's base to ``decision.content`` (None: forget the path)."""
        ...

    def stopped(self) -> str | None:
        """Why no further outside path may be written now (a signal came); None: go on."""
        ...


def apply(changes: Sequence[C], outside: Outside, inside: Inside[C]) -> list[C]:
    """Carry out decided changes in the protocol's order; the resolved ones are returned (the
    others are no-change, conflicts, ``conflict`` or ``skipped``)."""
    todo = [c for c in changes if c.decision.action not in (Action.NO_CHANGE, Action.CONFLICT)]
    inside.write_blocks([c for c in todo if c.decision.action in BLOCK_ACTIONS])
    try:
        _prepare(outside, inside, todo)
        for change in todo:
            if change.skipped is None and change.decision.action in OUTSIDE_ACTIONS:
                # a signal stops the writes between two paths; the bases of those written
                # still advance below, the others stay as they were for the next run
                change.skipped = inside.stopped()
                if change.skipped is None:
                    _write_outside(change, outside)
    finally:
        inside.written()
    settle = [c for c in todo if c.skipped is None and c.conflict is None]
    if settle:
        inside.write_bases(settle)
    return settle


def _prepare(outside: Outside, inside: Inside[C], todo: Sequence[C]) -> None:
    """Hand the writes to come to an outside that prepares them (see the module docstring)."""
    prepare = getattr(outside, "prepare", None)
    if prepare is None or inside.stopped() is not None:
        return
    prepare(
        [
            (change.path, content.encode("utf-8"))
            for change in todo
            if change.skipped is None
            and change.decision.action in OUTSIDE_ACTIONS
            and (content := change.decision.content) is not None
            and content != change.outside
        ]
    )


def _write_outside(change: Change, outside: Outside) -> None:
    content = change.decision.content
    try:
        if content is None:  # DELETE_DISK: the outside held the base, so it was there
            assert change.outside_hash is not None
            done = outside.remove(change.path, change.outside_hash)
        elif content == change.outside:
            done = True  # it holds the result already
        else:
            done = outside.write(change.path, content.encode("utf-8"), change.outside_hash)
    except Unwritable as exc:
        change.skipped = str(exc)
        return
    if done:
        return
    # changed since it was read: not overwritten; both sides as they are now
    try:
        change.outside_now, _ = read_text(outside, change.path)
    except Unreadable as exc:
        change.skipped = f"it changed while reconcile was writing it: {exc}"
        return
    change.conflict = CHANGED_WHILE_WRITING


def delete(change: C, outside: Outside, inside: Inside[C]) -> None:
    """Delete one path on every side, in the protocol's order: its block, its outside object
    (compare-and-swap), its base. ``change`` holds the three sides as read just before.

    Refused (:class:`DeleteRefused`), touching nothing, when the outside holds text neither the
    base nor the block has; :class:`NothingToDelete` when no side holds the path.
    """
    if change.outside is not None and change.outside not in (change.base, change.agent):
        raise DeleteRefused(UNRECORDED)
    if change.base is None and change.outside is None and change.agent is None:
        raise NothingToDelete("no side holds it")
    gone = replace(change, decision=Decision(Action.DELETE_AGENT, None, "deleted"))
    if change.agent is not None:
        inside.write_blocks([gone])
        if gone.skipped is not None:
            raise DeleteRefused(f"{gone.skipped}; nothing was deleted")
    if change.outside_hash is not None:
        why = CHANGED_WHILE_DELETING
        try:
            removed = outside.remove(change.path, change.outside_hash)
        except Unwritable as exc:
            removed, why = False, str(exc)
        finally:
            inside.written()
        if not removed:
            raise DeleteRefused(
                f"{why}; its block was deleted (its history keeps it), the outside was kept"
            )
    if change.base is not None:
        inside.write_bases([gone])
