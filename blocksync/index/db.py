"""``index.db``: ONE SQLite connection per workspace, shared by every table module.

Every table of ``index.db`` has one owner module (:mod:`~blocksync.index.versions`,
:mod:`~blocksync.index.base_index`, :mod:`~blocksync.index.conflicts`, :mod:`~blocksync.index.runs`,
:mod:`~blocksync.index.notifications` for notifications and stream state), and each owner takes an
:class:`IndexDb` instead of opening the file. This module is the one place that opens it:

* never through a link (:func:`~blocksync.fs.safefile.check_regular`: SQLite follows links, so one
  planted at ``index.db`` would be written through);
* WAL journal (readers in other processes never block the writer), ``synchronous=NORMAL``
  (consistent after a crash; the last transaction may be lost, which an index tolerates: git
  holds what counts), a busy timeout of :data:`BUSY_TIMEOUT` for writers in other processes;
* one write context, :meth:`IndexDb.atomic`: ``BEGIN IMMEDIATE`` (concurrent writers queue
  instead of failing mid-way, and the reads inside see what the writes will change), a
  savepoint when nested;
* schema changes as registered migrations (sqlite-utils' :class:`~sqlite_utils.migrations.
  Migrations`): each owner module declares its ordered set of named migration functions,
  and :meth:`IndexDb.migrate` applies the pending ones once each, recording them in table
  ``_sqlite_migrations``. Every migration is written to be a no-op on a table an older
  blocksync already made (``IF NOT EXISTS``, a column added only when missing, a rebuild
  only of the old shape), so an ``index.db`` from before migrations opens and upgrades.

Threads: plugin host functions run on the plugins' worker threads and reach the version index,
the base index and the notification log from there, so the connection is opened with
``check_same_thread=False`` and every use of it holds :attr:`IndexDb.lock` (an RLock): a
transaction holds it from ``BEGIN`` to ``COMMIT``, a read for its statement(s). One thread's
statements can thus never run inside another thread's transaction (on one connection they
would silently join it), and no two threads ``BEGIN`` at once. The lock is never held across a
plugin call, so a worker thread waiting for it always gets it.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import sqlite_utils
from sqlite_utils.migrations import Migrations

from blocksync.errors import IndexCorrupt
from blocksync.fs.safefile import check_regular

__all__ = [
    "BUSY_TIMEOUT",
    "Connection",
    "DatabaseError",
    "IndexDb",
    "Migrations",
    "OperationalError",
    "attach",
    "check_columns",
    "create_table",
    "open_db",
    "preparer",
    "timestamp",
]

BUSY_TIMEOUT = 60.0
#: what the index hands the modules that mirror its tables elsewhere (store.records): its
#: connection and error types, so no module outside this package imports sqlite3
Connection = sqlite3.Connection
DatabaseError = sqlite3.DatabaseError
OperationalError = sqlite3.OperationalError


def timestamp() -> str:
    """Now, as every table (and the run lock's note) writes times: ISO 8601 UTC, microseconds."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


#: the connection's page cache (SQLite's default is 2 MB); pages are only held once read
CACHE_KIB = 32 * 1024


class IndexDb:
    """One open ``index.db``: the connection, its lock, ``atomic()`` and the migrations."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self.path = path
        self.lock = threading.RLock()
        self.db = sqlite_utils.Database(conn, execute_plugins=False)

    @classmethod
    def open(cls, path: Path, *, create: bool = True) -> IndexDb:
        """Open ``path`` (``create``: a missing file is made; else it is IndexCorrupt)."""
        path = Path(path)
        check_regular(path)
        if not create and not path.exists():
            raise IndexCorrupt(str(path), "is missing")
        try:
            conn = sqlite3.connect(
                path, isolation_level=None, timeout=BUSY_TIMEOUT, check_same_thread=False
            )
        except sqlite3.DatabaseError as exc:
            raise IndexCorrupt(str(path), f"cannot be opened ({exc})") from exc
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            # a folder run reads a few MB of pages (clean paths, stat rows, block heads):
            # SQLite's default 2 MB cache evicted the heads a batch's lookups then read again
            conn.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
            return cls(conn, path)
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise IndexCorrupt(str(path), f"cannot be read ({exc})") from exc
        except BaseException:
            conn.close()
            raise

    @property
    def conn(self) -> sqlite3.Connection:
        return self.db.conn

    def close(self) -> None:
        with self.lock:
            self.db.close()

    @contextmanager
    def reading(self) -> Iterator[sqlite3.Connection]:
        """The connection, for statements outside a transaction of this thread's own."""
        with self.lock:
            yield self.conn

    @contextmanager
    def atomic(self) -> Iterator[sqlite3.Connection]:
        """One ``BEGIN IMMEDIATE`` transaction (a savepoint inside another one): committed when
        the block ends, rolled back when an exception escapes it."""
        with self.lock:
            conn = self.conn
            if conn.in_transaction:
                conn.execute("SAVEPOINT atomic")
                try:
                    yield conn
                except BaseException:
                    if conn.in_transaction:  # SQLite may have rolled back already
                        conn.execute("ROLLBACK TO atomic")
                        conn.execute("RELEASE atomic")
                    raise
                conn.execute("RELEASE atomic")
                return
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    # -- migrations -------------------------------------------------------------------------

    def migrate(self, migrations: Migrations) -> None:
        """Apply the pending migrations of ``migrations``, once each, recorded; the check is a
        read, so an up-to-date table costs no write lock (sqlite3 errors are the caller's to
        translate: each table names what it could not do)."""
        with self.reading():
            if not migrations.pending(self.db):
                return
        with self.atomic():  # re-checked under the write lock: another process may race
            migrations.apply(self.db)

    def applied(self, migrations: Migrations) -> list[str]:
        """The names of the migrations of ``migrations`` applied to this file, in order."""
        with self.reading():
            return [m.name for m in migrations.applied(self.db)]


def open_db(where: Path | IndexDb) -> tuple[IndexDb, bool]:
    """The workspace's handle as given, or (a path) a handle of the table module's own: (it, owned)."""
    if isinstance(where, IndexDb):
        return where, False
    return IndexDb.open(Path(where)), True


def attach(
    where: Path | IndexDb, migrations: Migrations, then: Callable[[IndexDb], None]
) -> tuple[IndexDb, bool]:
    """A table module's start: its handle (:func:`open_db`), its migrations applied, then
    ``then`` (catching up with git); a handle it opened is closed again if any of that fails."""
    db, owned = open_db(where)
    try:
        db.migrate(migrations)
        then(db)
    except BaseException:
        if owned:
            db.close()
        raise
    return db, owned


def preparer(migrations: Migrations) -> Callable[[sqlite3.Connection], None]:
    """``RecordKind.prepare`` of a table: apply its migrations on a connection already inside
    a write transaction (a rebuild restoring records into a fresh file)."""

    def prepare(conn: sqlite3.Connection) -> None:
        migrations.apply(sqlite_utils.Database(conn, execute_plugins=False))

    return prepare


def create_table(
    db: sqlite_utils.Database, table: str, columns: Iterable[str], schema: Sequence[str]
) -> None:
    """A migration's body for one table: ``schema`` (CREATE TABLE IF NOT EXISTS first, then its
    indexes), refusing a table of that name and another shape before indexing it."""
    create, *indexes = schema
    db.execute(create)
    check_columns(db, table, columns)
    for statement in indexes:
        db.execute(statement)


def check_columns(db: sqlite_utils.Database, table: str, columns: Iterable[str]) -> None:
    """IndexCorrupt unless ``table`` has exactly ``columns`` (a table of another program)."""
    found = {r[1] for r in db.execute(f"PRAGMA table_info({table})")}
    if found != set(columns):
        path = db.execute("PRAGMA database_list").fetchone()[2]
        raise IndexCorrupt(
            path,
            f"has a {table} table of another shape (columns {sorted(found ^ set(columns))} differ)",
        )
