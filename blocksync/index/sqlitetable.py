"""One table of ``index.db``, as the conflict index and the run log use it.

On the workspace's :class:`~blocksync.index.db.IndexDb` (WAL, ``synchronous=NORMAL``, every write
one ``BEGIN IMMEDIATE`` transaction so concurrent writers queue, up to its busy timeout, instead
of interleaving; its lock for threads), with the table's schema as registered migrations, and
sqlite3 errors translated: a busy database is a :class:`ConcurrentUpdate`, anything else an
:class:`IndexCorrupt`.

Tables whose rows git does not hold otherwise (conflicts, runs, notifications, streams) are kept
in the repository too, as records (:mod:`blocksync.store.records`). Such a table is opened with a
:class:`Recorder` and describes its rows with a :class:`RecordKind`; each write transaction
then names the rows it changed (:meth:`Staged.add`), and before SQLite commits, the recorder
writes them to git as one commit. Git first: a process killed between the two leaves git
ahead, and the next transaction (or the next open) catches the table up from git. Writes
inside :meth:`SqliteTable.batch` share one transaction and so one records commit.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, Protocol, Self, TypeVar

from blocksync.errors import ConcurrentUpdate, IndexCorrupt

from . import db as index_db
from .db import IndexDb, Migrations, attach

#: the key of one row: the values of its kind's key columns
Key = tuple[Any, ...]
_Row = TypeVar("_Row")
#: rows of a table by a ``WHERE ...`` clause and its parameters
Select = Callable[[str, list[Any]], Sequence[_Row]]


def by_id_or_prefix(
    select: Select[_Row],
    wanted: str,
    id_prefix: str,
    missing: Callable[[], Exception],
    ambiguous: Callable[[list[_Row]], Exception],
) -> _Row:
    """The row of a table keyed by ``id`` (and ordered by ``seq``) that ``wanted`` names: its
    whole id, or a prefix of one row's id (``id_prefix``, what every id starts with, may be
    left out). ``missing()`` when none does, ``ambiguous(some matches)`` when several do."""
    exact = select("WHERE id = ?", [wanted])
    if exact:
        return exact[0]
    prefix = wanted if wanted.startswith(id_prefix) else id_prefix + wanted
    if len(prefix) <= len(id_prefix):
        raise missing()
    matches = select("WHERE substr(id, 1, ?) = ? ORDER BY seq DESC LIMIT 6", [len(prefix), prefix])
    if not matches:
        raise missing()
    if len(matches) > 1:
        raise ambiguous(list(matches))
    return matches[0]


@dataclass(frozen=True, eq=False)
class RecordKind:
    """How the rows of one table are kept as records in git (see :mod:`blocksync.store.records`)."""

    folder: str  # its folder in the records tree
    noun: str  # what a message calls one row: "conflict", "run", ...
    table: str
    columns: tuple[str, ...]  # every column: a record holds the whole row
    key: tuple[str, ...]  # the columns that name a row
    #: creates the table (and brings an older one up to date) on a connection
    prepare: Callable[[sqlite3.Connection], None]
    #: text columns kept as files of their own beside the row (a conflict's three sides)
    files: tuple[str, ...] = ()
    #: the key is one growing number, and rows come in batches (a pull's notifications): one
    #: record holds the rows of 256 consecutive numbers, one JSON line each
    numbered: bool = False
    #: rows in a passing state that git does not hold yet (a run's row while it runs): the
    #: table records such a row when it leaves that state, so an index.db row it holds that
    #: git lacks is no disagreement, and a reload from git keeps it
    in_flight: Callable[[dict[str, Any]], bool] | None = None


@dataclass
class Staged:
    """The rows one write transaction changed, by kind and key (in the order named)."""

    message: str
    rows: dict[tuple[str, Key], tuple[RecordKind, Key]] = field(default_factory=dict)
    #: a batch's message stands: the writes inside it do not each say what they did
    fixed: bool = False

    def add(self, kind: RecordKind, *key: Any) -> None:
        self.rows.setdefault((kind.folder, key), (kind, key))

    def say(self, message: str) -> None:
        """What the records commit says it records (unless a batch said it)."""
        if not self.fixed:
            self.message = message


class Recorder(Protocol):
    """Keeps record tables and their copy in git in step (:class:`blocksync.store.records.Records`)."""

    def follow(self, conn: sqlite3.Connection) -> None:
        """Catch the tables up with git, in a transaction of its own (when git is ahead)."""

    def catch_up(self, conn: sqlite3.Connection) -> None:
        """The same, inside the caller's write transaction."""

    def commit(self, conn: sqlite3.Connection, staged: Staged) -> None:
        """Write the staged rows, as they are now, to git as one commit (inside the caller's
        transaction, before it commits)."""


@contextmanager
def recorded(db: IndexDb, recorder: Recorder | None, message: str) -> Iterator[Staged]:
    """One IMMEDIATE transaction whose staged rows reach git before it commits."""
    with db.atomic() as conn:
        if recorder is not None:
            recorder.catch_up(conn)
        staged = Staged(message)
        yield staged
        if recorder is not None and staged.rows:
            recorder.commit(conn, staged)


def follow(db: IndexDb, *, recorder: Recorder | None) -> None:
    """Catch the record tables of ``db`` up with git (a table opened with records does)."""
    if recorder is not None:
        with db.reading() as conn:
            recorder.follow(conn)


class SqliteTable:
    """Subclasses name their ``TABLE``, its ``COLUMNS`` and the ``MIGRATIONS`` that make it
    (whose first checks the shape: a table of another shape is refused)."""

    TABLE: ClassVar[str]
    COLUMNS: ClassVar[Sequence[str]]
    MIGRATIONS: ClassVar[Migrations]

    def __init__(self, where: Path | IndexDb, *, records: Recorder | None = None) -> None:
        """``where``: the workspace's open ``index.db`` (a path: a handle of this table's own,
        closed by :meth:`disconnect`). ``records``: keep the rows in git too (None: in
        index.db only)."""
        self.path = Path(where) if not isinstance(where, IndexDb) else where.path
        self._records = records
        self._staged: Staged | None = None  # the open write transaction's
        with self._translate(f"cannot store {self.TABLE}"):
            self.db, self._owned = attach(where, self.MIGRATIONS, partial(follow, recorder=records))

    @property
    def _conn(self) -> sqlite3.Connection:
        return self.db.conn

    def disconnect(self) -> None:
        """Close the handle if the table opened it (the workspace closes its own)."""
        if self._owned:
            self.db.close()

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
                    f"{self.path} ({self.TABLE})",
                    1,
                    f"another writer held it over {index_db.BUSY_TIMEOUT:g} s",
                ) from exc
            raise IndexCorrupt(str(self.path), f"{doing} ({exc})") from exc
        except sqlite3.DatabaseError as exc:
            raise IndexCorrupt(str(self.path), f"{doing} ({exc})") from exc

    @contextmanager
    def _write(self, doing: str, message: str | None = None) -> Iterator[Staged]:
        """One IMMEDIATE transaction: the reads inside it see what the writes will change.

        Inside :meth:`batch` it is a savepoint of the batch's transaction instead (a failing
        write undoes its own changes only). ``message``: of the records commit (the write may
        say more with :meth:`Staged.say`); a batch's commit takes the batch's.
        """
        with self.db.lock, self._translate(doing):
            if self._staged is not None:
                with self.db.atomic():  # a savepoint
                    yield self._staged
                return
            with recorded(self.db, self._records, message or f"{self.TABLE} changed") as staged:
                self._staged = staged
                try:
                    yield staged
                finally:
                    self._staged = None

    @contextmanager
    def batch(self, message: str) -> Iterator[None]:
        """Writes inside the ``with`` block share one transaction and one records commit
        (``message``); an exception escaping it undoes them all."""
        with self._write(f"cannot store {self.TABLE}", message) as staged:
            staged.fixed = True
            yield

    @contextmanager
    def _read(self) -> Iterator[None]:
        with self.db.lock, self._translate(f"cannot read {self.TABLE}"):
            yield
