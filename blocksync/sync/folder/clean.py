"""A source's clean row (:class:`blocksync.index.statcache.Clean`) kept valid: loaded and patched
forward to main and the source's bases as they are now, or made from a full snapshot; moved
over the run's own commits; saved.

One implementation for every source that mirrors a folder: the native folder source and a
plugin declaring ``paging.mirrors-folder`` (:mod:`blocksync.plugins.mirror`). What is true of
both: a bound path is clean with the stat its file had, not racy, when its file held its base's
bytes and its block held the base too; a change of its block on main (the version index's
``changed_since``), of its binding or base on the bases ref (``SyncBases.changes``), or of the
row's ``scheme`` makes it not clean. A source with more to say (the native label scheme: blocks
whose labels name paths not bound to them) overrides the hooks of :class:`CleanRows`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from blocksync.errors import BlocksyncError
from blocksync.fs.disk import FileStat
from blocksync.index.base_index import BaseEntry, BaseIndex, Bound
from blocksync.index.statcache import Clean, StatCache
from blocksync.store.bases import SyncBases
from blocksync.store.blocks import BlockStore

__all__ = ["BasesWritten", "CleanRows", "Snapshot", "unchanged"]

#: a bases commit of a run: (its parent, the commit, what it set: path, binding, base text)
BasesWritten = tuple[str | None, str, Sequence[tuple[str, Bound | None, str | None]]]
Latest = Mapping[tuple[str, str], tuple[int, str]]


@dataclass
class Snapshot:
    """Every bound path with its base's hashes (the base index, caught up with the ref) and
    the newest content blob of the blocks."""

    entries: dict[str, BaseEntry]
    bound_blocks: dict[tuple[str, str], str]  # (owner, label) -> path
    latest: dict[tuple[str, str], tuple[int, str]]  # (owner, label) -> (version, content blob)


def unchanged(entry: BaseEntry, disk_hash: str | None, latest: Latest) -> bool:
    """Are the file (its bytes' sha256 ``disk_hash``) and the block of bound path ``entry``
    both its base (``latest``: the newest version and content blob of each block)?"""
    if disk_hash is None or disk_hash != entry.base_sha256:
        return False
    newest = latest.get((entry.owner, entry.label))
    return newest is not None and newest[1] == entry.base_blob


class CleanRows:
    """The clean row of the source whose ``bases`` these are. ``scheme``: what else the row
    depends on (a change makes a new one: e.g. the folder it was found in)."""

    def __init__(
        self,
        cache: StatCache,
        index: BaseIndex,
        bases: SyncBases,
        blocks: BlockStore,
        scheme: str,
    ) -> None:
        self.cache = cache
        self.index = index
        self.bases = bases
        self.blocks = blocks
        self.scheme = scheme
        self.key = bases.source

    # -- hooks of a source's own ---------------------------------------------------------

    def owners(self) -> set[str]:
        """Owners whose blocks a full snapshot holds besides those of bound paths."""
        return set()

    def eligible(self, path: str) -> bool:
        """May bound ``path`` be clean at all (a path the source would not sync never is)?"""
        return True

    def made(self, clean: Clean, snap: Snapshot) -> None:
        """``clean`` was just made from ``snap``."""

    def block_changed(self, clean: Clean, owner: str, label: str) -> None:
        """Block (``owner``, ``label``) changed since ``clean`` was valid."""

    def rebound(self, clean: Clean, path: str, binding: Bound | None) -> None:
        """``path``'s binding or base changed (``binding`` None: forgotten)."""

    def named_paths(self, owner: str, labels: Iterable[str]) -> dict[str, str]:
        """Path -> label: where blocks ``labels`` of ``owner`` are most likely bound (looked
        up there first; the others by a pass over the bindings)."""
        return {}

    # -- the row -------------------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        """Every bound path and the newest content of every block of their owners (and of
        :meth:`owners`); the bases are told what they hold."""
        entries = self.index.entries(self.bases)
        self.bases.expect(entries)  # spares reading the bindings a write checks (verified)
        self.blocks.catch_up_index()
        latest: dict[tuple[str, str], tuple[int, str]] = {}
        for owner in self.owners() | {e.owner for e in entries.values()}:
            for label, row in self.index.latest_contents(owner).items():
                latest[(owner, label)] = row
        bound = {(e.owner, e.label): e.path for e in entries.values()}
        return Snapshot(entries, bound, latest)

    def load(self) -> tuple[Clean, Snapshot | None]:
        """The clean paths, valid for main and the bases as they are now: the saved ones
        patched forward, else made from a full snapshot (returned too)."""
        bases_head = self.index.catch_up(self.bases)
        self.blocks.catch_up_index()
        key = [self.index.blocks_head(), bases_head, self.scheme]
        found = self.cache.clean()
        if found is not None and found.stamp <= self.cache.now() and self.patch(found, key):
            return found, None
        snap = self.snapshot()
        stamp = self.cache.now()
        trusted = self.cache.trusted(stamp)
        clean = Clean(key, stamp)
        for path, entry in snap.entries.items():
            row = trusted.get(path)
            ok = row is not None and unchanged(entry, row[1], snap.latest) and self.eligible(path)
            clean.still(path, row[0] if ok and row is not None else None)
        self.made(clean, snap)
        return clean, snap

    def patch(self, clean: Clean, key: list[str | None]) -> bool:
        """Bring ``clean`` forward to ``key``: paths whose block or base changed since are no
        longer clean. False: it cannot be."""
        if len(clean.key) != 3 or clean.key[2] != key[2]:
            return False
        since_blocks, since_bases = clean.key[0], clean.key[1]
        if since_blocks != key[0]:
            changed = self.index.blocks_changed_since(since_blocks)
            if changed is None:
                return False
            by_owner: dict[str, list[str]] = {}
            for owner, label in changed:
                by_owner.setdefault(owner, []).append(label)
                self.block_changed(clean, owner, label)
            for owner, labels in by_owner.items():
                for path in self.bound_paths(owner, labels):
                    clean.still(path, None)
        if since_bases != key[1]:
            try:
                changes = self.bases.changes(since_bases)
            except BlocksyncError:
                return False
            self.rebind(clean, [(c.path, c.binding) for c in changes])
        if clean.key != key:
            clean.key, clean.dirty = key, True
        return True

    def bound_paths(self, owner: str, labels: list[str]) -> list[str]:
        """The paths bound to blocks ``labels`` of ``owner``."""
        named = self.named_paths(owner, labels)
        found = self.index.entries_of(self.key, named)
        paths = [
            path
            for path, entry in found.items()
            if (entry.owner, entry.label) == (owner, named[path])
        ]
        others = set(labels).difference(named[path] for path in paths)
        return paths + list(self.index.paths_of_blocks(self.key, owner, others).values())

    def rebind(self, clean: Clean, changes: Iterable[tuple[str, Bound | None]]) -> None:
        """Paths whose binding or base changed (binding None: forgotten) are not clean."""
        for path, binding in changes:
            if binding is None:
                clean.forget(path)
                clean.rebound = True  # a stat row may be left over
            else:
                clean.still(path, None)
            self.rebound(clean, path, binding)

    def orphans_possible(self, clean: Clean, every: set[str]) -> bool:
        """May the stat cache hold rows of paths that are no candidate (to drop)? Rows are
        written for candidates only: when bindings changed, or when there are more rows
        than candidates, some may be left over (a row of a path never bound and gone is
        left for then: only a hint, and of a stat that no longer exists)."""
        if clean.rebound:
            return True
        rows = self.cache.count()
        return rows is not None and rows > len(every)

    def found(self, clean: Clean, paths: Mapping[str, FileStat | None]) -> None:
        """What a run found of bound ``paths`` it decided: clean with that stat, or not (None)."""
        bound = clean.bound
        for path, stat in paths.items():
            if path in bound:
                clean.still(path, stat)

    def advance(
        self, clean: Clean, blocks_written: Iterable[str], bases_written: Iterable[BasesWritten]
    ) -> dict[str, str | None]:
        """Move ``clean``'s key over this run's own commits of main and of the bases, when
        nobody else's came between (what they changed is of paths the run decided: not clean,
        unless :meth:`found` says so after); path -> the base the run's commits gave it."""
        for commit in blocks_written:
            if self.index.blocks_parent(commit) != (True, clean.key[0]):
                break  # the next run reads what changed since from the version index
            clean.key = [commit, clean.key[1], clean.key[2]]
            clean.dirty = True
        based: dict[str, str | None] = {}
        for parent, commit, written in bases_written:
            if parent != clean.key[1]:
                break  # another writer came between: the next run reads the changes from git
            self.rebind(clean, [(path, binding) for path, binding, _ in written])
            based.update((path, text) for path, _, text in written)
            clean.key = [clean.key[0], commit, clean.key[2]]
            clean.dirty = True
        return based

    def save(self, clean: Clean, stamp: int) -> None:
        """Keep ``clean`` if it changed; ``stamp``: taken before any stat it holds."""
        if clean.dirty:
            clean.stamp = max(clean.stamp, stamp)
            self.cache.save_clean(clean)
