"""The stat cache of folder sources: git's index idea, in ``index.db`` table ``folder_stats``.

For each file a folder source has read, the row keeps what ``fstat`` said of it then (size,
``mtime_ns``, ``ctime_ns``, inode) and the sha256 of the bytes read, keyed by (source, path).
A later run that finds the very same stat trusts the sha256 without opening the file; any other
stat, or any doubt, reads the file. The row is a hint, never the truth: content decides.

**Racy timestamps** (git's ``Documentation/technical/racy-git.txt``): a file changed again
within the timestamp granularity of the read keeps the stat the row holds, with other bytes.
So each row carries ``cached_ns``, a moment no later than the ``fstat`` it records, and a row
whose file's mtime or ctime is not older than ``cached_ns - RACY_NS`` is never trusted: the file
is re-hashed (and the row re-stamped) until it has been still for that long. ``RACY_NS`` is two
seconds: the coarsest mtime a common file system keeps (FAT), over the second of ext3 and the
kernel's coarse clock ticks. A row stamped in the future (the clock moved back since) is not
trusted either. ctime, which no program can set, makes ``touch -d`` and ``os.utime`` to an old
time a miss; the inode makes a file replaced by a rename (``os.replace``) one.

The table is derived and disposable: a damaged or missing one costs a run its shortcut, never
its answer (reads fall back to hashing, writes re-create the table or are dropped).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass

import sqlite_utils

from blocksync.fs.disk import FileStat

from .db import IndexDb, Migrations

__all__ = ["MIGRATIONS", "RACY_NS", "Seen", "StatCache"]

#: the schema of the table this module owns (see :mod:`blocksync.index.db`)
MIGRATIONS = Migrations("statcache")
TABLE = "folder_stats"
#: how long a file must have been still before its row is trusted (see the module docstring)
RACY_NS = 2_000_000_000


@MIGRATIONS(name="folder_stats_table")
def _create_table(db: sqlite_utils.Database) -> None:
    db.execute(
        f"CREATE TABLE IF NOT EXISTS {TABLE} (source TEXT NOT NULL, path TEXT NOT NULL, "
        "size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, ctime_ns INTEGER NOT NULL, "
        "inode INTEGER NOT NULL, sha256 TEXT NOT NULL, cached_ns INTEGER NOT NULL, "
        "PRIMARY KEY (source, path)) WITHOUT ROWID"
    )


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
        return {
            path: ((size, mtime, ctime, inode), sha)
            for path, size, mtime, ctime, inode, sha, cached in rows
            # only rows this module wrote (integers), neither racy nor from the future
            if type(cached) is int
            and cached <= now
            and type(mtime) is int
            and type(ctime) is int
            and max(mtime, ctime) < cached - RACY_NS
            and type(size) is int
            and type(inode) is int
        }

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
            gone.update(path for path in self._paths if path not in keep_only)
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
