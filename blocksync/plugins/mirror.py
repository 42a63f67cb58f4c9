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

While a run lasts, its :class:`Hashing` and its open folder are the host context's, so
``sync.file-digests`` takes a file's sha256 from the stat cache too, and the plugin's
``sync.prepare-files`` stages temp files that its ``write-file`` calls then take; what was read
is recorded once the run is done, less the paths the plugin decided something for (it may have
written their files).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager

from blocksync.fs.disk import Folder
from blocksync.index.base_index import BaseEntry
from blocksync.index.statcache import StatCache
from blocksync.shared import progress
from blocksync.sync.folder.hashing import Hashing

from .host.hostfuncs import Files, HostContext

__all__ = ["Latest", "Mirror"]

#: owner -> label -> (newest version, its content blob) of every existing block
Latest = Mapping[str, Mapping[str, tuple[int, str]]]


class Mirror:
    """One run over a mirrored folder: open it with :meth:`opened`, :meth:`list` it (inside
    the listing's batch, which collects what cannot be synced), find the :meth:`unchanged`
    paths, and :meth:`record` what was read."""

    def __init__(self, host: HostContext, cache: StatCache, folder: Folder) -> None:
        self._host = host
        self._cache = cache
        self._folder = folder
        self._files: Files | None = None
        self._hashing: Hashing | None = None

    @classmethod
    @contextmanager
    def opened(cls, host: HostContext, cache: StatCache) -> Iterator[Mirror]:
        """The plugin's granted folder opened for one run; the run's hashing leaves the host
        context with it (a later ``file-digests`` must not trust this run's listed stats)."""
        with host.granted() as folder:
            host.folder = folder  # the plugin's file writes of the run go through it
            try:
                yield cls(host, cache, folder)
            finally:
                host.hashing = host.folder = None

    def list(self) -> Files:
        """The folder's files as ``sync.folder-files`` lists them, with their stats."""
        self._files = self._host.listed(self._folder, stats=True)
        self._hashing = self._host.hashing = Hashing(self._cache, self._files.stats)
        return self._files

    def unchanged(
        self, paths: Iterable[str], bound: Mapping[str, BaseEntry], latest: Latest
    ) -> set[str]:
        """The bound ``paths`` whose block and file both still hold their base."""
        files, hashing = self._files, self._hashing
        assert files is not None and hashing is not None, "list() first"
        found: set[str] = set()
        for path in progress.counted(list(paths), f"hashing {self._host.spec.key}"):
            entry = bound.get(path)
            if entry is None or path not in files.stats:  # unbound, or no file as listed
                continue
            newest = latest.get(entry.owner, {}).get(entry.label)
            if newest is None or newest[1] != entry.base_blob:
                continue  # the block changed (or is gone): its file is the plugin's to read
            digest = hashing.known(path)
            if digest is None:
                digest = hashing.read(path, self._folder, path, listed=True).sha256
            if digest == entry.base_sha256:
                found.add(path)
        return found

    def record(self, decided: Iterable[str], considered: Iterable[str]) -> None:
        """Keep what this run read in the stat cache, less the rows of ``decided`` (paths the
        plugin decided something other than no-change for: it may have rewritten them), and
        of any path not ``considered`` (gone from the source)."""
        if self._hashing is not None:
            self._hashing.record(decided, keep_only=set(considered))
