"""One table of ``index.db`` on its own connection, as the conflict index and the run log use it.

WAL journal (readers never block the writer), ``synchronous=NORMAL`` (consistent after a crash;
the last transaction may be lost, which these tables tolerate), every write one ``BEGIN
IMMEDIATE`` transaction so concurrent writers queue (up to :data:`BUSY_TIMEOUT`) instead of
interleaving, a lock for threads sharing one instance, and sqlite3 errors translated: a busy
database is a :class:`ConcurrentUpdate`, anything else an :class:`IndexCorrupt`.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import ClassVar, Self

from .errors import ConcurrentUpdate, IndexCorrupt

BUSY_TIMEOUT = 60.0


class SqliteTable:
    """Subclasses name their ``TABLE``, its ``COLUMNS`` and the ``SCHEMA`` statements
    (CREATE TABLE first, then its indexes); a table of another shape is refused."""

    TABLE: ClassVar[str]
    COLUMNS: ClassVar[Sequence[str]]
    SCHEMA: ClassVar[Sequence[str]]

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.RLock()
        try:
            self._conn = sqlite3.connect(
                path, isolation_level=None, timeout=BUSY_TIMEOUT, check_same_thread=False
            )
        except sqlite3.DatabaseError as exc:
            raise IndexCorrupt(str(path), f"cannot be opened ({exc})") from exc
        try:
            with self._translate(f"cannot store {self.TABLE}"):
                self._conn.execute("PRAGMA journal_mode=WAL")
                self._conn.execute("PRAGMA synchronous=NORMAL")
                with self._write(f"cannot store {self.TABLE}"):
                    table, *indexes = self.SCHEMA
                    self._conn.execute(table)
                    self._check_shape()
                    for statement in indexes:
                        self._conn.execute(statement)
        except BaseException:
            self._conn.close()
            raise

    def _check_shape(self) -> None:
        found = {r[1] for r in self._conn.execute(f"PRAGMA table_info({self.TABLE})")}
        if found != set(self.COLUMNS):
            raise IndexCorrupt(
                str(self.path),
                f"has a {self.TABLE} table of another shape (columns "
                f"{sorted(found ^ set(self.COLUMNS))} differ)",
            )

    def disconnect(self) -> None:
        self._conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.disconnect()

    @contextmanager
    def _translate(self, doing: str) -> Iterator[None]:
        try:
            yield
        except sqlite3.OperationalError as exc:
            text = str(exc).lower()
            if "locked" in text or "busy" in text:
                raise ConcurrentUpdate(
                    f"{self.path} ({self.TABLE})", 1,
                    f"another writer held it over {BUSY_TIMEOUT:g} s",
                ) from exc
            raise IndexCorrupt(str(self.path), f"{doing} ({exc})") from exc
        except sqlite3.DatabaseError as exc:
            raise IndexCorrupt(str(self.path), f"{doing} ({exc})") from exc

    @contextmanager
    def _write(self, doing: str) -> Iterator[None]:
        """One IMMEDIATE transaction: the reads inside it see what the writes will change."""
        with self._lock, self._translate(doing):
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:  # SQLite may have rolled back already
                    conn.execute("ROLLBACK")
                raise

    @contextmanager
    def _read(self) -> Iterator[None]:
        with self._lock, self._translate(f"cannot read {self.TABLE}"):
            yield
