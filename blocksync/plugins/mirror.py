"""The host's side of a plugin that mirrors its granted folder one to one (WIT
``paging.mirrors-folder``): the folder listed by the host, and the paths neither side changed
since their base found by the host, so that the plugin's ``reconcile`` gets only the others.

Found as the native folder source finds them, with its code (the seam: the folder's scan of
:mod:`blocksync.fs.disk` through the plugin's :class:`~blocksync.plugins.host.hostfuncs.HostContext`,
and :class:`blocksync.sync.folder.hashing.Hashing` over the source's rows of the stat cache): a
bound path is unchanged when its block's newest content blob is its base's and its file's
sha256 is its base's, the sha256 taken from the stat cache when the file's listed stat matches
a trusted row (git's racy rule applies), else read. Sound because "neither side changed since
the base" is a no-change for any plugin whose declaration is true; anything else (an unbound
path, a file gone, a block changed or gone, a file that cannot be read) is the plugin's to decide.

A nothing-changed run reads no entry, block or stat row per path: the source's clean row
(:mod:`blocksync.sync.folder.clean`, the native folder source's) holds every bound path with the
stat its file had when it was last found to hold its base while its block did too, patched
forward from what changed on main and on the plugin's bases ref since; a file listed with that
very stat is unchanged on both sides. Only the other paths are looked up as above.

While a run lasts, its :class:`Hashing` and its open folder are the host context's, so
``sync.file-digests`` takes a file's sha256 from the stat cache too, and the plugin's
``sync.prepare-files`` stages temp files that its ``write-file`` calls then take; what was read
is recorded once the run is done (the plugin's ``sync.read-files`` too: a first sync's reads),
less the paths whose files the plugin's decisions may have written.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Mapping
from contextlib import contextmanager

from blocksync.fs.disk import FileStat, Folder
from blocksync.index.base_index import BaseEntry
from blocksync.index.statcache import Clean
from blocksync.shared import progress
from blocksync.shared.apply import sha256
from blocksync.store.blocks import BlockStore
from blocksync.sync.folder.clean import BasesWritten, CleanRows, Snapshot, unchanged
from blocksync.sync.folder.hashing import Hashing

from .host.hostfuncs import Files, HostContext, folder_path_problem
from .syncbases import PluginBases

__all__ = ["Latest", "Mirror"]

#: (owner, label) -> (newest version, its content blob) of existing blocks
Latest = Mapping[tuple[str, str], tuple[int, str]]


class _MirrorRows(CleanRows):
    """A mirrored plugin's clean row: keyed to its granted folder too."""

    def eligible(self, path: str) -> bool:
        # a path the host would report as skipped (the listing's check) is never clean
        return folder_path_problem(path) is None


class Mirror:
    """One run over a mirrored folder: open it with :meth:`opened`, :meth:`load` the clean
    row, :meth:`list` the folder (inside the listing's batch, which collects what cannot be
    synced), take the :meth:`quick` paths, look the others up (:meth:`entries`,
    :meth:`latest`), start :meth:`hashing` them, find the :meth:`unchanged` ones, and say
    what the run did with :meth:`done`."""

    def __init__(
        self, host: HostContext, bases: PluginBases, blocks: BlockStore, folder: Folder
    ) -> None:
        self._host = host
        self._bases = bases
        self._cache = bases.stat_cache()
        self._folder = folder
        self._rows = _MirrorRows(
            self._cache, bases.index(), bases.bases, blocks, f"mirror\0{host.spec.dir}"
        )
        self._clean: Clean | None = None
        self._snap: Snapshot | None = None
        self._files: Files | None = None
        self._hashing: Hashing | None = None

    @classmethod
    @contextmanager
    def opened(cls, host: HostContext, bases: PluginBases, blocks: BlockStore) -> Iterator[Mirror]:
        """The plugin's granted folder opened for one run; the run's hashing leaves the host
        context with it (a later ``file-digests`` must not trust this run's listed stats)."""
        with host.granted() as folder:
            host.folder = folder  # the plugin's file writes of the run go through it
            try:
                yield cls(host, bases, blocks, folder)
            finally:
                host.hashing = host.folder = None

    @property
    def clean(self) -> Clean:
        assert self._clean is not None, "load() first"
        return self._clean

    def load(self) -> Clean:
        """The clean row, valid for main and the bases as they are now."""
        self._clean, self._snap = self._rows.load()
        return self._clean

    def list(self) -> Files:
        """The folder's files as ``sync.folder-files`` lists them, with their stats."""
        self._files = self._host.listed(self._folder, stats=True, bound=self.clean.bound)
        return self._files

    def quick(self, listed: Iterable[str]) -> set[str]:
        """The ``listed`` paths found unchanged by their stat alone (the clean row's)."""
        assert self._files is not None, "list() first"
        bound, stats = self.clean.bound, self._files.stats
        return {path for path in listed if path in bound and stats.get(path) == bound[path]}

    def entries(self, paths: Iterable[str]) -> dict[str, BaseEntry]:
        """The base index's entries of the bound ``paths``."""
        bound = self.clean.bound
        wanted = [path for path in paths if path in bound]
        if self._snap is not None:
            return {path: self._snap.entries[path] for path in wanted if path in self._snap.entries}
        return self._rows.index.entries_of(self._rows.key, wanted)

    def latest(self, entries: Mapping[str, BaseEntry]) -> Latest:
        """The newest version and content blob of the blocks ``entries`` bind (that exist)."""
        if self._snap is not None:
            return self._snap.latest
        return self._latest_of(entries)

    def _latest_of(self, entries: Mapping[str, BaseEntry]) -> Latest:
        """``latest`` as the version index has it now."""
        labels: dict[str, set[str]] = {}
        for entry in entries.values():
            labels.setdefault(entry.owner, set()).add(entry.label)
        index = self._rows.index
        return {
            (owner, label): row
            for owner, wanted in labels.items()
            for label, row in index.latest_contents_of(owner, wanted).items()
        }

    def hashing(self, only: Collection[str] | None) -> Hashing:
        """Start the run's hashing: of ``only`` (None: of every path), whose stat cache rows
        are read; ``file-digests`` takes hashes from it while the run lasts."""
        assert self._files is not None, "list() first"
        self._hashing = self._host.hashing = Hashing(self._cache, self._files.stats, only)
        return self._hashing

    def unchanged(
        self, paths: Iterable[str], bound: Mapping[str, BaseEntry], latest: Latest
    ) -> set[str]:
        """The bound ``paths`` whose block and file both still hold their base."""
        files, hashing = self._files, self._hashing
        assert files is not None and hashing is not None, "list() and hashing() first"
        found: set[str] = set()
        for path in progress.counted(list(paths), f"hashing {self._host.spec.key}"):
            entry = bound.get(path)
            if entry is None or path not in files.stats:  # unbound, or no file as listed
                continue
            newest = latest.get((entry.owner, entry.label))
            if newest is None or newest[1] != entry.base_blob:
                continue  # the block changed (or is gone): its file is the plugin's to read
            digest = hashing.known(path)
            if digest is None:
                digest = hashing.read(path, self._folder, path, listed=True).sha256
            if unchanged(entry, digest, latest):
                found.add(path)
        return found

    def done(
        self,
        asked: Collection[str],
        rewritten: Collection[str],
        considered: Collection[str],
        found: Iterable[str],
        commits: tuple[Iterable[str], Iterable[BasesWritten]],
    ) -> None:
        """Keep what this run read in the stat cache, less the rows of ``rewritten`` (paths
        whose files the plugin's decisions may have rewritten: not left alone nor taken in to
        their blocks; a file it rewrote otherwise has a newer ctime than its row anyway), and
        of any path not ``considered`` (gone from the source); and the clean row: the paths
        ``found`` unchanged by their hashes clean, those the plugin was ``asked`` about not,
        moved over the run's own ``commits`` (of main, of the bases)."""
        hashing, clean = self._hashing, self.clean
        assert hashing is not None, "hashing() first"
        every = set(considered)
        if self._rows.orphans_possible(clean, every):
            self._cache.known_paths()
        hashing.record(rewritten, keep_only=every)
        states = {path: hashing.settled(path) for path in found}
        states.update((path, None) for path in asked)
        self._rows.found(clean, states)
        based = self._rows.advance(clean, *commits)
        kept = set(asked).difference(rewritten)
        self._taken_in(clean, [path for path in based if path in kept], based)
        self._rows.save(clean, hashing.stamp)

    def _taken_in(
        self, clean: Clean, paths: Iterable[str], based: Mapping[str, str | None]
    ) -> None:
        """Clean the ``paths`` whose files the run left as it read them, now that their base
        (``based``: what the run's own bases commits gave them) and their block hold that
        very text too: a first sync's paths, taken in to new blocks. Checked here, on the
        index, not taken from the plugin's word; the native source's run does the same."""
        hashing = self._hashing
        assert hashing is not None
        read: dict[str, tuple[FileStat, str]] = {}  # path -> its stat and sha256, as read
        for path in paths:
            text, stat, digest = based[path], hashing.settled(path), hashing.digest(path)
            if (
                text is not None
                and stat is not None
                and digest == sha256(text.encode("utf-8"))  # the index entry is this run's
                and self._rows.eligible(path)
            ):
                read[path] = stat, digest
        entries = self._rows.index.entries_of(self._rows.key, read)
        latest = self._latest_of(entries)
        for path, (stat, digest) in read.items():
            entry = entries.get(path)
            if entry is not None and unchanged(entry, digest, latest):
                clean.still(path, stat)
