"""The hashing phase of a folder source's reconcile: what each file's bytes hash to.

A file's sha256 comes from the stat cache (:mod:`blocksync.index.statcache`) when the survey
listed it with exactly the stat of a trusted row; otherwise the file is read and hashed here,
and what was read is recorded for the next run. This is the one place files are read for a
reconcile's decisions (a progress display of hashing belongs in :meth:`Hashing.read`).

Only a run over all paths takes hints (its survey has every stat at hand); a run over named
paths reads them, and records what it read. A dry run takes hints and records nothing.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from typing import NamedTuple

from blocksync.fs.disk import FileStat, Folder, file_stat
from blocksync.index.statcache import Seen, StatCache, settled
from blocksync.shared.apply import sha256

__all__ = ["Hashing", "Read"]


class Read(NamedTuple):
    """A file as read: its bytes and their sha256, (None, None, None) when there is no file,
    or (None, reason, None) when it cannot be synced (then it is left alone)."""

    data: bytes | None
    unreadable: str | None
    sha256: str | None


class Hashing:
    """One reconcile call's hashing. ``listed``: the survey's stat of each file (None: no
    survey, so no hints); ``cache``: the source's stat cache."""

    def __init__(
        self,
        cache: StatCache,
        listed: Mapping[str, FileStat] | None,
        only: Collection[str] | None = None,
    ) -> None:
        """``only``: the paths hints may be asked for (None: every path; otherwise
        :meth:`record`'s ``keep_only`` knows only rows of these, unless the cache is told of
        the others with :meth:`StatCache.known_paths`)."""
        self._cache = cache
        self.stamp = cache.now()  # before any file recorded below is stat-ed
        self._listed: Mapping[str, FileStat] = listed or {}
        if listed is None:
            self._trusted = {}
        elif only is None:
            self._trusted = cache.trusted(self.stamp)
        else:
            self._trusted = cache.trusted_of(only, self.stamp)
        self._seen: dict[str, Seen] = {}

    def settled(self, path: str) -> FileStat | None:
        """The stat of ``path``'s file as this call found it, if its bytes are known for that
        stat and it is not racy (so a later call may trust it); None otherwise."""
        seen = self._seen.get(path)
        if seen is not None:
            return seen.stat if settled(seen.stat, self.stamp) else None
        return self._listed.get(path) if self.known(path) is not None else None

    def digest(self, path: str) -> str | None:
        """The sha256 of ``path``'s file as this call read it, or as its row vouches for it."""
        seen = self._seen.get(path)
        return seen.sha256 if seen is not None else self.known(path)

    def known(self, path: str) -> str | None:
        """The sha256 of ``path``'s file as its cache row vouches for it (None: read it)."""
        row = self._trusted.get(path)
        if row is None or self._listed.get(path) != row[0]:
            return None
        return row[1]

    def read(self, path: str, folder: Folder, rel: str, *, listed: bool = False) -> Read:
        """Read and hash ``rel`` of ``folder`` (source path ``path``); recorded for the cache."""
        data, unreadable, info = folder.read_stat(rel, listed=listed)
        if data is None:
            return Read(None, unreadable, None)
        digest = sha256(data)
        if info is not None:
            self._seen[path] = Seen(file_stat(info), digest)
        return Read(data, None, digest)

    def record(self, written: Iterable[str], keep_only: Collection[str] | None = None) -> None:
        """Write what this call read to the cache, less the files it then ``written`` (or
        removed, or whose bases it forgot): their rows are dropped. ``keep_only``: every path
        the run considered (a run over all paths): rows of any other path are dropped too."""
        drop = set(written)
        seen = {path: s for path, s in self._seen.items() if path not in drop}
        self._cache.update(seen, self.stamp, drop, keep_only=keep_only)
