"""One reconcile call of a data-block plugin (the whole run, or one page of a paged run) as one
unit of writes.

While the host drives a plugin's ``reconcile`` (see :class:`blocksync.plugins.PluginSource`), the
plugin's block writes (``memory-*-block``) and base writes (``sync.set-base`` / ``forget``) are
staged here instead of committing one by one; the plugin reads its own writes back. After the
call the host commits the blocks (one commit), then the bases (one commit) — the order in which
a plugin writes a path (block, file, base), kept across the whole call — or discards them (a
dry run, a call refused by the mass-deletion guard).

Why this is safe: the plugin writes its files during the call, before either commit. A run
killed in between leaves files ahead of blocks and bases, which the next run reads as "the
source changed" (or "both changed to the same text") and converges, exactly as for a native
source killed between its file writes and its base update.

Updates and deletions carry the block version the plugin read, so an agent's edit made while
the call ran is never overwritten: such a change is dropped (:attr:`BlockBatch.moved`), with
the base writes of its path, and the path is left for the next run, which decides it again from
its old base. The rest of the call commits: one busy block never fails a batch of thousands.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol, Self

from blocksync.index.base_index import BaseEntry
from blocksync.store.bases import BasesTransaction, Binding, SyncBases
from blocksync.store.blocks import BlockStore, Transaction

from ..errors import BlockNotFound

__all__ = ["BATCH_FAULT_STEPS", "BlockBatch", "ConflictReport", "SyncBatch"]

#: Where a commit of a batch can be cut short: after the plugin wrote its files (the call
#: returned) and before any commit; between the block commit and the bases commit.
#: the steps of a plugin batch a fault hook is called at: the host-side ones of the folder's
#: (``folder_source.FOLDER_FAULT_STEPS``); the outside write happens inside the guest
BATCH_FAULT_STEPS = ("before-block-commit", "before-bases")


class _Host(Protocol):
    batch: BlockBatch | None


@dataclass(frozen=True)
class ConflictReport:
    """What a plugin said of a path it returns as needing resolution (``sync.report-conflict``)."""

    owner: str
    label: str
    disk: str | None
    reason: str


class BlockBatch:
    """The block writes of one call, staged and committed together after it (a stream's
    pull: all of them or, when the pull fails, none)."""

    def __init__(
        self,
        blocks: BlockStore,
        message: str,
        author: str,
        known: Mapping[tuple[str, str], tuple[int, str]] | None = None,
        made_by: str | None = None,
    ) -> None:
        """``known``: (owner, label) -> (newest version, its content blob) of blocks the
        caller read from the version index already: read by their blob, not looked up.
        ``made_by``: who the commit's provenance names (the plugin with its sha256)."""
        self._store = blocks
        self.blocks = Transaction(blocks, message, author, skip_stale=True, made_by=made_by)
        self._seen: dict[tuple[str, str], int] = {}  # block -> the version the plugin read
        self._written: set[tuple[str, str]] = set()
        self._known = known or {}

    @contextmanager
    def attached(self, host: _Host) -> Iterator[Self]:
        """Stage ``host``'s memory writes here for the ``with`` block."""
        host.batch = self
        try:
            yield self
        finally:
            host.batch = None

    # -- blocks, as the host memory functions see them during the call -------------------

    def read(self, owner: str, label: str) -> str:
        key = (owner, label)
        if key in self._written:
            return self.blocks.read(owner, label)[0]
        known = self._known.get(key)
        if known is not None and self._seen.setdefault(key, known[0]) == known[0]:
            # as of the run's start: a write over a version newer than it is refused at commit
            return self._store.read_blob(known[1])
        block = self._store.read(owner, label)  # the newest version (BlockNotFound if none)
        self._seen.setdefault(key, block.version)
        return block.content

    def read_many(self, owner: str, labels: Iterable[str]) -> dict[str, str | None]:
        """:meth:`read` of each of ``labels`` (None: no block). Those neither written nor
        known are read by one index query (:meth:`BlockStore.newest_of`), and the rows of
        all are loaded for the writes that may follow (a page's creates and updates), not
        looked up one block at a time."""
        keys = [(owner, label) for label in dict.fromkeys(labels)]
        # written or known blocks are read as :meth:`read` reads them
        near = {key for key in keys if key in self._written or key in self._known}
        newest = self._store.newest_of(owner, (key[1] for key in keys if key not in near))
        self.blocks.preload(keys)  # after newest_of caught the index up
        found: dict[str, str | None] = {}
        for key in keys:
            label = key[1]
            if key in near:
                try:
                    found[label] = self.read(owner, label)
                except BlockNotFound:
                    found[label] = None
            elif label in newest:
                version, found[label] = newest[label]
                self._seen.setdefault(key, version)
            else:
                found[label] = None
        return found

    def create(self, owner: str, label: str, content: str, description: str) -> None:
        self.blocks.create(owner, label, content, description=description)
        self._written.add((owner, label))

    def update(self, owner: str, label: str, content: str) -> None:
        key = (owner, label)
        expected = None if key in self._written else self._seen.get(key)
        self.blocks.update(owner, label, content, expected_version=expected)
        self._written.add(key)

    def delete(self, owner: str, label: str) -> None:
        key = (owner, label)
        expected = None if key in self._written else self._seen.get(key)
        self.blocks.delete(owner, label, expected_version=expected)
        self._written.add(key)

    def hold(self, owner: str, label: str, content: str | None, description: str) -> None:
        """Make the block hold ``content`` (None: no block), staged; nothing if it does."""
        try:
            current: str | None = self.read(owner, label)
        except BlockNotFound:
            current = None
        if content == current:
            return
        key = (owner, label)
        expected = None if key in self._written else self._seen.get(key)
        self.blocks.hold(owner, label, content, expected_version=expected, description=description)
        self._written.add(key)

    def commit_blocks(self) -> dict[tuple[str, str], int]:
        """The staged blocks as one commit; the new version of every block written."""
        return dict(self.blocks.commit().versions)


class SyncBatch(BlockBatch):
    """The staged block and base writes of one reconcile call, and the conflicts the plugin
    reported during it."""

    def __init__(
        self,
        blocks: BlockStore,
        bases: SyncBases,
        message: str,
        author: str,
        *,
        dry_run: bool,
        bound: Mapping[str, BaseEntry] | None = None,
        known: Mapping[tuple[str, str], tuple[int, str]] | None = None,
        made_by: str | None = None,
    ) -> None:
        super().__init__(blocks, message, author, known, made_by)
        self.bases = BasesTransaction(bases, message, author)
        self.dry_run = dry_run
        #: the base index's entries as the call began, when the caller read them already
        self.bound = bound
        self.conflicts: dict[str, ConflictReport] = {}
        #: outside paths the host found it cannot sync (``sync.folder-digests``), and why
        self.skipped: dict[str, str] = {}
        #: after :meth:`commit`: paths whose blocks moved during the call (nothing of them kept)
        self.moved: set[str] = set()

    # -- bases ----------------------------------------------------------------------------

    def bindings(self, committed: list[Binding]) -> list[Binding]:
        """``committed`` (the ref's bindings) with this call's staged changes applied."""
        staged = {path: binding for path, binding, _ in self.bases.written()}
        kept = [b for b in committed if b.path not in staged]
        return sorted(kept + [b for b in staged.values() if b is not None], key=lambda b: b.path)

    # -- the end of the call --------------------------------------------------------------

    def commit(self, fault: Callable[[str], None] | None = None) -> dict[tuple[str, str], int]:
        """Blocks first, then bases; the new version of every block written. ``fault`` is
        told each step of :data:`BATCH_FAULT_STEPS` as it is reached (tests kill the process there).
        Paths whose blocks an agent changed meanwhile keep their old bases (:attr:`moved`)."""
        step = fault or (lambda _: None)
        step("before-block-commit")
        versions = self.commit_blocks()
        stale = self.blocks.stale
        if stale:
            self.moved = {
                path
                for path, binding, _ in self.bases.written()
                if binding is not None and (binding.owner, binding.label) in stale
            } | {path for path, e in (self.bound or {}).items() if (e.owner, e.label) in stale}
            self.bases.drop(self.moved)
        step("before-bases")
        self.bases.commit()
        return versions
