"""The stat cache of folder sources: git's index idea, in ``index.db`` table ``folder_stats``.

For each file a folder source has read, the row keeps what ``fstat`` said of it then (size,
``mtime_ns``, ``ctime_ns``, inode) and the sha256 of the bytes read, keyed by (source, path).
A later run that finds the very same stat trusts the sha256 without opening the file; any other
stat, or any doubt, reads the file. The row is a hint, never the truth: content decides.

**Racy timestamps** (git's ``Documentation/technical/racy-git.txt``): a file changed again
within the timestamp granularity of the read keeps the stat the row holds, with other bytes.
So each row carries ``cached_ns``, a moment no later than the ``fstat`` it records, and a row
whose file's mtime or ctime is not older than ``cached_ns`` less the racy window is never
trusted: the file is re-hashed (and the row re-stamped) until it has been still for that long.
The window follows the file system's granularity, read off the file's own mtime (git compares
with its index file's mtime, a timestamp of the same clock: we have no file of ours beside
every folder). A whole-second mtime is a file system that keeps seconds (ext3, HFS+) or two
(FAT), or a time set by hand: :data:`RACY_NS`, two seconds. A finer one comes from the
kernel's coarse clock, at most a tick (1-10 ms) behind the clock ``cached_ns`` is read from:
:data:`FINE_RACY_NS`, ten ticks, leaves room for that and for a file server's clock a little
behind ours. (A run right after an edit, as ``watch`` makes, re-hashes only what changed in
the last moment, not in the last two seconds.) A row stamped in the future (the clock moved
back since) is not trusted either. ctime, which no program can set, makes ``touch -d`` and
``os.utime`` to an old time a miss; the inode makes a file replaced by a rename
(``os.replace``) one.

The table is derived and disposable: a damaged or missing one costs a run its shortcut, never
its answer (reads fall back to hashing, writes re-create the table or are dropped).

**Clean paths** (tables ``folder_clean*``, per source): what a run over all paths needs
to call most paths unchanged without a row per path -- every bound path, with the stat its file
had when it was last found to hold its base's bytes while its block held the base too (or
:data:`NOT_CLEAN`), and the labels of blocks that may name a path not bound to them. It is
valid for the commits of main and of the source's bases ref it names (``key``); the source
patches it forward from the changes since (O(changes)). A path listed with the very stat the
survey finds is unchanged on both sides: the stat was taken, not racy, when that was true, and
neither side moved since. Two blobs and a few rows, read at once, instead of 10,000 rows.

It is kept in three tables, so that a run which changed a few paths writes a few rows, not
the whole of it again (a 10,000-path source's row is ~600 KB; rewritten by every run that
changed anything, it also drove SQLite's WAL to a checkpoint every few runs): ``folder_clean``
(key, stamp, named labels: small, written by every save), ``folder_clean_base`` (every path and
stat, two blobs) and ``folder_clean_changes`` (a row per path changed since the base; a path
bound no more has no stat). Once the changes pass :func:`most_changes` of the base's size, the
next save writes a new base and drops them (log-structured, like git's split index).
"""

from __future__ import annotations

import json
import sqlite3
import struct
import time
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from itertools import chain
from typing import Any

import sqlite_utils

from blocksync.fs.disk import FileStat

from .db import IndexDb, Migrations

__all__ = ["FINE_RACY_NS", "MIGRATIONS", "NOT_CLEAN", "RACY_NS", "Clean", "Seen", "StatCache"]

#: the schema of the table this module owns (see :mod:`blocksync.index.db`)
MIGRATIONS = Migrations("statcache")
TABLE = "folder_stats"
#: how long a file with a whole-second mtime must have been still before its row is trusted
#: (see the module docstring)
RACY_NS = 2_000_000_000
#: the same for a file whose mtime has a fraction of a second (a file system keeping finer ones)
FINE_RACY_NS = 100_000_000
CLEAN_TABLE = "folder_clean"
CLEAN_BASE_TABLE = "folder_clean_base"
CLEAN_CHANGES_TABLE = "folder_clean_changes"
#: the stat of a bound path not known to be clean: no file has a negative size
NOT_CLEAN: FileStat = (-1, -1, -1, -1)
#: how the clean base keeps one path's stat: four 64-bit integers, in this machine's order
_STAT = struct.Struct("=4q")


@MIGRATIONS(name="folder_stats_table")
def _create_table(db: sqlite_utils.Database) -> None:
    db.execute(
        f"CREATE TABLE IF NOT EXISTS {TABLE} (source TEXT NOT NULL, path TEXT NOT NULL, "
        "size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, ctime_ns INTEGER NOT NULL, "
        "inode INTEGER NOT NULL, sha256 TEXT NOT NULL, cached_ns INTEGER NOT NULL, "
        "PRIMARY KEY (source, path)) WITHOUT ROWID"
    )


@MIGRATIONS(name="folder_clean_table")
def _create_clean(db: sqlite_utils.Database) -> None:
    db.execute(
        f"CREATE TABLE IF NOT EXISTS {CLEAN_TABLE} (source TEXT PRIMARY KEY, key TEXT NOT NULL, "
        "stamp INTEGER NOT NULL, paths TEXT NOT NULL, stats BLOB NOT NULL, named TEXT NOT NULL)"
    )


@MIGRATIONS(name="folder_clean_in_parts")
def _split_clean(db: sqlite_utils.Database) -> None:
    """The clean paths in three tables (module docstring); the one-row table they were kept
    in is dropped: a cache, made again by the next run over all paths."""
    db.execute(f"DROP TABLE IF EXISTS {CLEAN_TABLE}")
    db.execute(
        f"CREATE TABLE {CLEAN_TABLE} (source TEXT PRIMARY KEY, key TEXT NOT NULL, "
        "stamp INTEGER NOT NULL, named TEXT NOT NULL)"
    )
    db.execute(
        f"CREATE TABLE IF NOT EXISTS {CLEAN_BASE_TABLE} (source TEXT PRIMARY KEY, "
        "paths TEXT NOT NULL, stats BLOB NOT NULL)"
    )
    db.execute(
        f"CREATE TABLE IF NOT EXISTS {CLEAN_CHANGES_TABLE} (source TEXT NOT NULL, "
        "path TEXT NOT NULL, size INTEGER, mtime_ns INTEGER, ctime_ns INTEGER, inode INTEGER, "
        "PRIMARY KEY (source, path)) WITHOUT ROWID"
    )


def most_changes(paths: int) -> int:
    """How many rows of changes the clean paths of a base of ``paths`` paths may gather
    before a save writes a new base: an eighth of it, and never fewer than 1,024 (a small
    source's base costs little to rewrite; a big one's changes little to apply)."""
    return max(1024, paths // 8)


@dataclass
class Clean:
    """A source's clean paths (see the module docstring). ``key``: what they are valid for;
    ``stamp``: no earlier than any stat they hold was taken; ``bound``: every bound path and
    its clean stat (or :data:`NOT_CLEAN`); ``named``: labels of blocks to look at for paths."""

    key: list[str | None]
    stamp: int
    bound: dict[str, FileStat] = field(default_factory=dict)
    named: set[str] = field(default_factory=set)
    dirty: bool = True  # changed since it was saved (or never saved)
    rebound: bool = True  # made, or bindings changed since it was saved (not kept)
    #: the paths whose stat changed since it was loaded or saved (None: bound no more); not
    #: ``whole``, a save writes these only
    changes: dict[str, FileStat | None] = field(default_factory=dict)
    #: made anew, not loaded: a save writes every path (a new base)
    whole: bool = True
    #: how many rows of changes the saved clean paths had gathered since their base
    logged: int = 0

    def still(self, path: str, stat: FileStat | None) -> None:
        """``path`` is bound, clean with ``stat`` (None: not known to be clean)."""
        stat = NOT_CLEAN if stat is None else stat
        if self.bound.get(path) != stat:
            self.bound[path] = stat
            self.dirty = True
            if not self.whole:
                self.changes[path] = stat

    def forget(self, path: str) -> None:
        """``path`` is bound no more."""
        if self.bound.pop(path, None) is not None:
            self.dirty = True
            if not self.whole:
                self.changes[path] = None

    def unname(self, label: str) -> None:
        """Block ``label`` names no path but its own (bound to it)."""
        if label in self.named:
            self.named.discard(label)
            self.dirty = True

    def name(self, label: str) -> None:
        """Block ``label`` may name a path not bound to it."""
        if label not in self.named:
            self.named.add(label)
            self.dirty = True


@dataclass(frozen=True)
class Seen:
    """A file as one run read it: its stat (taken before its bytes) and their sha256."""

    stat: FileStat
    sha256: str


class StatCache:
    """The rows of one source (see the module docstring). Never raises for a damaged table."""

    def __init__(self, db: IndexDb, source: str) -> None:
        self.db = db
        self.source = source
        self._paths: set[str] = set()  # of every row, as :meth:`trusted` read them
        try:
            db.migrate(MIGRATIONS)
        except sqlite3.DatabaseError:
            pass  # a damaged file: every lookup misses, and writes are dropped

    @staticmethod
    def now() -> int:
        """The stamp of a run's rows: taken before any file it records is stat-ed."""
        return time.time_ns()

    def trusted(self, now: int) -> dict[str, tuple[FileStat, str]]:
        """Path -> (stat, sha256) of every row that may be trusted at ``now`` (not racy, not
        from the future, well-formed); {} when the table is damaged or missing."""
        try:
            with self.db.reading() as conn:
                rows = conn.execute(
                    f"SELECT path, size, mtime_ns, ctime_ns, inode, sha256, cached_ns FROM {TABLE} "
                    "WHERE source = ?",
                    [self.source],
                ).fetchall()
        except sqlite3.DatabaseError:
            return {}
        self._paths = {row[0] for row in rows}
        return _trusted(rows, now)

    def trusted_of(self, paths: Iterable[str], now: int) -> dict[str, tuple[FileStat, str]]:
        """:meth:`trusted` of ``paths`` only (lookups by the primary key)."""
        wanted = list(paths)
        found: dict[str, tuple[FileStat, str]] = {}
        try:
            with self.db.reading() as conn:
                for start in range(0, len(wanted), 900):
                    chunk = wanted[start : start + 900]
                    rows = conn.execute(
                        "SELECT path, size, mtime_ns, ctime_ns, inode, sha256, cached_ns FROM "
                        f"{TABLE} WHERE source = ? AND path IN ({', '.join('?' * len(chunk))})",
                        [self.source, *chunk],
                    ).fetchall()
                    found.update(_trusted(rows, now))
        except sqlite3.DatabaseError:
            return {}
        return found

    def count(self) -> int | None:
        """How many rows the source has (None: the table cannot be read)."""
        rows = self._column("count(*)")
        return None if rows is None else int(rows[0])

    def known_paths(self) -> None:
        """Learn the path of every row (what :meth:`update`'s ``keep_only`` drops from)."""
        rows = self._column("path")
        if rows is not None:
            self._paths = set(rows)

    def _column(self, what: str) -> list[Any] | None:
        """``what`` of the source's rows (None: the table cannot be read)."""
        try:
            with self.db.reading() as conn:
                sql = f"SELECT {what} FROM {TABLE} WHERE source = ?"
                return [row[0] for row in conn.execute(sql, [self.source])]
        except sqlite3.DatabaseError:
            return None

    def clean(self) -> Clean | None:
        """The source's clean paths as last saved; None if there are none (or damaged)."""
        source = [self.source]
        try:
            with self.db.atomic() as conn:  # the three tables as one save left them
                meta = conn.execute(
                    f"SELECT key, stamp, named FROM {CLEAN_TABLE} WHERE source = ?", source
                ).fetchone()
                base = conn.execute(
                    f"SELECT paths, stats FROM {CLEAN_BASE_TABLE} WHERE source = ?", source
                ).fetchone()
                changes = conn.execute(
                    "SELECT path, size, mtime_ns, ctime_ns, inode FROM "
                    f"{CLEAN_CHANGES_TABLE} WHERE source = ?",
                    source,
                ).fetchall()
            if meta is None or base is None:
                return None
            (key, stamp, named), (paths, stats) = meta, base
            listed = paths.split("\0") if paths else []
            if len(stats) != _STAT.size * len(listed) or type(stamp) is not int:
                return None
            bound = dict(zip(listed, _STAT.iter_unpack(stats)))
            for path, *stat in changes:
                if stat == [None] * 4:
                    bound.pop(path, None)
                elif all(type(n) is int for n in stat):
                    bound[path] = tuple(stat)
                else:
                    return None
            found = Clean(json.loads(key), stamp, bound, set(json.loads(named)), False, False)
        except (sqlite3.DatabaseError, ValueError, TypeError, struct.error):
            return None
        found.whole, found.logged = False, len(changes)
        return found

    def save_clean(self, clean: Clean | None) -> None:
        """Keep ``clean`` as the source's clean paths (None: forget them): its changes since
        it was loaded, or a new base when it was made anew or the changes grew too many."""
        source = self.source
        try:
            with self.db.atomic() as conn:
                if clean is None:
                    for table in (CLEAN_TABLE, CLEAN_BASE_TABLE, CLEAN_CHANGES_TABLE):
                        conn.execute(f"DELETE FROM {table} WHERE source = ?", [source])
                    return
                logged = clean.logged + len(clean.changes)
                if clean.whole or logged > most_changes(len(clean.bound)):
                    self._save_base(conn, clean.bound)
                    logged = 0
                else:
                    conn.executemany(
                        f"INSERT OR REPLACE INTO {CLEAN_CHANGES_TABLE} VALUES (?, ?, ?, ?, ?, ?)",
                        [
                            (source, path, *(stat or (None,) * 4))
                            for path, stat in clean.changes.items()
                        ],
                    )
                conn.execute(
                    f"INSERT OR REPLACE INTO {CLEAN_TABLE} VALUES (?, ?, ?, ?)",
                    [source, json.dumps(clean.key), clean.stamp, json.dumps(sorted(clean.named))],
                )
        except (sqlite3.DatabaseError, struct.error):
            return  # a hint lost: the next run rebuilds it
        clean.changes, clean.whole, clean.logged = {}, False, logged

    def _save_base(self, conn: sqlite3.Connection, bound: Mapping[str, FileStat]) -> None:
        """Every path and stat of ``bound`` as the base, and no changes since it."""
        numbers = struct.pack(f"={4 * len(bound)}q", *chain.from_iterable(bound.values()))
        conn.execute(f"DELETE FROM {CLEAN_CHANGES_TABLE} WHERE source = ?", [self.source])
        conn.execute(
            f"INSERT OR REPLACE INTO {CLEAN_BASE_TABLE} VALUES (?, ?, ?)",
            [self.source, "\0".join(bound), numbers],
        )

    def update(
        self,
        seen: Mapping[str, Seen],
        stamp: int,
        drop: Iterable[str] = (),
        *,
        keep_only: Collection[str] | None = None,
    ) -> None:
        """Record what a run read (stamped ``stamp``), drop the rows of ``drop``, and with
        ``keep_only`` every row :meth:`trusted` found of a path not in it (a run over all
        paths: the forgotten ones). Nothing to do writes nothing."""
        rows = [
            (self.source, path, *s.stat, s.sha256, stamp)
            for path, s in seen.items()
            if all(type(v) is int for v in s.stat)
        ]
        gone = set(drop)
        if keep_only is not None:
            gone |= self._paths.difference(keep_only)
        if not rows and not gone:
            return
        for attempt in (1, 2):
            try:
                with self.db.atomic() as conn:
                    conn.executemany(
                        f"DELETE FROM {TABLE} WHERE source = ? AND path = ?",
                        [(self.source, path) for path in gone],
                    )
                    conn.executemany(
                        f"INSERT OR REPLACE INTO {TABLE} VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows
                    )
            except sqlite3.DatabaseError:
                if attempt == 2 or not self._repair():
                    return  # the cache stays off until the file is mended
                continue
            self._paths = (self._paths - gone) | {row[1] for row in rows}
            return

    def _repair(self) -> bool:
        """Make a table that could not be written again, empty (its rows are only hints);
        False if even that fails."""
        try:
            with self.db.atomic() as conn:
                conn.execute(f"DROP TABLE IF EXISTS {TABLE}")
                _create_table(sqlite_utils.Database(conn, execute_plugins=False))
        except sqlite3.DatabaseError:
            return False
        self._paths = set()
        return True


def _trusted(rows: Iterable[tuple[object, ...]], now: int) -> dict[str, tuple[FileStat, str]]:
    return {
        path: ((size, mtime, ctime, inode), sha)  # type: ignore[misc]
        for path, size, mtime, ctime, inode, sha, cached in rows
        # only rows this module wrote (integers), neither racy nor from the future
        if type(cached) is int
        and cached <= now
        and type(mtime) is int
        and type(ctime) is int
        and max(mtime, ctime) < cached - racy_ns(mtime)
        and type(size) is int
        and type(inode) is int
    }


def racy_ns(mtime_ns: int) -> int:
    """The racy window of a file with this mtime: :data:`RACY_NS` if it is whole seconds (its
    file system may keep no finer), else :data:`FINE_RACY_NS`."""
    return FINE_RACY_NS if mtime_ns % 1_000_000_000 else RACY_NS


def settled(stat: FileStat, stamp: int) -> bool:
    """May ``stat``, taken no earlier than ``stamp``, be trusted once it is recorded (not racy)?"""
    return max(stat[1], stat[2]) < stamp - racy_ns(stat[1])
