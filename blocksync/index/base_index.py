"""The base index: every source's bindings and base hashes, in ``index.db`` tables
``sync_bases`` and ``sync_bases_heads`` -- what reconcile needs to tell an unchanged path
without reading git.

Derived entirely from the refs (like the version index): :meth:`BaseIndex.entries` first
catches the rows of a source up with its ref through :meth:`SyncBases.changes` (O(changed
paths)), in one SQLite transaction with the commit they describe, so a killed writer leaves the
rows of the old commit or the new one. A missing table or an indexed commit git no longer has
is rebuilt from the ref. Writers :meth:`~BaseIndex.record` what they just committed. The sync
bases themselves (git) are :mod:`blocksync.store.bases`; the newest block contents it is compared
with come from the version index's API (:mod:`blocksync.index.versions`).
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import sqlite_utils

from blocksync.errors import BlocksyncError, IndexCorrupt

from .db import IndexDb, Migrations, attach
from .versions import VersionIndex

__all__ = ["MIGRATIONS", "BaseEntry", "BaseIndex", "git_blob_id"]

_IN_CHUNK = 900  # bound parameters per query (SQLite's default limit is 999)
_DELETE = "DELETE FROM sync_bases WHERE source = ? AND path = ?"
_REPLACE = "INSERT OR REPLACE INTO sync_bases VALUES (?, ?, ?, ?, ?, ?)"
#: the schema of the tables this module owns, in order (see :mod:`blocksync.index.db`)
MIGRATIONS = Migrations("base_index")


class BaseEntry(NamedTuple):
    """One bound path as the base index holds it: its block and its base's hashes (a named
    tuple: a run over 100,000 paths makes one of each, and a tuple is made three times faster
    than a frozen dataclass)."""

    path: str
    owner: str
    label: str
    base_blob: str  # git blob id of the base text
    base_sha256: str  # sha256 hex of the base text's UTF-8 bytes (what a file's bytes hash to)


def git_blob_id(data: bytes) -> str:
    """The git blob id of ``data`` (what a tree entry holding it names)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


# What the index reads of the sync bases in git (:mod:`blocksync.store.bases`): Protocols, so
# the index needs nothing of the store above it (the store's bases fill them).


class Bound(Protocol):
    """A binding: the block (owner, label) a path mirrors."""

    @property
    def owner(self) -> str: ...
    @property
    def label(self) -> str: ...


class Changed(Protocol):
    """A path whose binding or base differs between two commits of a source's ref."""

    @property
    def path(self) -> str: ...
    @property
    def binding(self) -> Bound | None: ...
    @property
    def base_blob(self) -> str | None: ...


class BasesLog(Protocol):
    """One source's bases ref, read as a log of changes (``SyncBases``)."""

    @property
    def source(self) -> str: ...
    def head(self) -> bytes | None: ...
    def changes(self, since: str | None) -> Sequence[Changed]: ...
    def text(self, blob: str) -> str: ...


class Committed(Protocol):
    """A written bases transaction (``BasesTransaction``): what it changed, on which commit."""

    commit_id: str | None
    parent_id: str | None

    def written(self) -> Iterable[tuple[str, Bound | None, str | None]]: ...


@MIGRATIONS(name="sync_bases_tables")
def _create_tables(db: sqlite_utils.Database) -> None:
    db.execute(
        "CREATE TABLE IF NOT EXISTS sync_bases (source TEXT NOT NULL, path TEXT NOT NULL, "
        "owner TEXT NOT NULL, label TEXT NOT NULL, base_blob TEXT NOT NULL, "
        "base_sha256 TEXT NOT NULL, PRIMARY KEY (source, path))"
    )
    db.execute(
        "CREATE TABLE IF NOT EXISTS sync_bases_heads (source TEXT PRIMARY KEY, head TEXT NOT NULL)"
    )


def _recreate(index_db: IndexDb) -> None:
    """Derived rows: tables dropped since their migration are made again (then refilled from
    the refs)."""
    with index_db.reading():
        _create_tables(index_db.db)


class BaseIndex:
    """Every source's bindings and base hashes (see the module's docstring)."""

    def __init__(self, where: Path | IndexDb) -> None:
        """``where``: the workspace's open ``index.db`` (a path: a handle of the index's own,
        closed by :meth:`close`)."""
        self.path = str(where if not isinstance(where, IndexDb) else where.path)
        try:
            self.db, self._owned = attach(where, MIGRATIONS, _recreate)
        except sqlite3.DatabaseError as exc:
            raise IndexCorrupt(self.path, f"cannot be opened for the base index ({exc})") from exc

    def close(self) -> None:
        if self._owned:
            self.db.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        try:
            with self.db.atomic() as conn:
                yield conn
        except sqlite3.DatabaseError as exc:
            raise IndexCorrupt(self.path, f"cannot update the base index ({exc})") from exc

    def _head(self, conn: sqlite3.Connection, source: str) -> str | None:
        row = conn.execute(
            "SELECT head FROM sync_bases_heads WHERE source = ?", [source]
        ).fetchone()
        return None if row is None else str(row[0])

    def _set_head(self, conn: sqlite3.Connection, source: str, head: str | None) -> None:
        if head is None:
            conn.execute("DELETE FROM sync_bases_heads WHERE source = ?", [source])
        else:
            conn.execute("INSERT OR REPLACE INTO sync_bases_heads VALUES (?, ?)", [source, head])

    @staticmethod
    def _put(
        conn: sqlite3.Connection,
        source: str,
        path: str,
        binding: Bound | None,
        blob: str | None,
        sha256: str | None,
    ) -> None:
        if binding is None:
            conn.execute(_DELETE, [source, path])
        else:
            conn.execute(_REPLACE, [source, path, binding.owner, binding.label, blob, sha256])

    def catch_up(self, bases: BasesLog) -> str | None:
        """Make the rows of ``bases.source`` describe its ref as it is now; that commit."""
        head_bytes = bases.head()
        head = None if head_bytes is None else head_bytes.decode("ascii")
        source = bases.source
        with self.db.reading() as conn:
            if self._head(conn, source) == head:
                return head
        with self._write() as conn:
            since = self._head(conn, source)  # re-read under the write lock
            if since == head:
                return head
            try:
                changes = bases.changes(since)
            except BlocksyncError:
                # the indexed commit is gone (or garbage): rebuild from the ref
                conn.execute("DELETE FROM sync_bases WHERE source = ?", [source])
                changes = bases.changes(None)
            for change in changes:
                sha256 = None
                if change.base_blob is not None:
                    sha256 = hashlib.sha256(bases.text(change.base_blob).encode()).hexdigest()
                self._put(conn, source, change.path, change.binding, change.base_blob, sha256)
            self._set_head(conn, source, head)
        return head

    def entries(self, bases: BasesLog) -> dict[str, BaseEntry]:
        """Every bound path of the source as of its ref now (caught up first)."""
        self.catch_up(bases)
        with self.db.reading() as conn:
            rows = conn.execute(
                "SELECT path, owner, label, base_blob, base_sha256 FROM sync_bases "
                "WHERE source = ?",
                [bases.source],
            ).fetchall()
        return {r[0]: BaseEntry(*r) for r in rows}

    def entries_of(self, source: str, paths: Iterable[str]) -> dict[str, BaseEntry]:
        """``entries`` of ``paths`` only (caught up by the caller): lookups by the primary key."""
        head = "SELECT path, owner, label, base_blob, base_sha256 FROM sync_bases WHERE "
        rows = self._rows_in(f"{head}source = ? AND path IN", [source], paths)
        return {r[0]: BaseEntry(*r) for r in rows}

    def paths_of_blocks(self, source: str, owner: str, labels: Iterable[str]) -> dict[str, str]:
        """Label -> the path of ``source`` bound to block (``owner``, label), of ``labels``."""
        query = "SELECT label, path FROM sync_bases WHERE source = ? AND owner = ? AND label IN"
        return dict(self._rows_in(query, [source, owner], labels))

    def _rows_in(self, query: str, params: list[str], values: Iterable[str]) -> list[Any]:
        """The rows of ``query`` (ending in ``IN``) with ``params`` and the list ``values``,
        asked in chunks of bound parameters SQLite takes."""
        wanted = list(values)
        rows: list[Any] = []
        with self.db.reading() as conn:
            for start in range(0, len(wanted), _IN_CHUNK):
                chunk = wanted[start : start + _IN_CHUNK]
                sql = f"{query} ({', '.join('?' * len(chunk))})"
                rows += conn.execute(sql, [*params, *chunk]).fetchall()
        return rows

    def blocks_head(self) -> str | None:
        """The commit of main the version index describes."""
        return VersionIndex(self.db).indexed_head()

    def blocks_parent(self, sha: str) -> tuple[bool, str | None]:
        """Is commit ``sha`` of main indexed, and its parent (None: the first commit)."""
        return VersionIndex(self.db).parent_of(sha)

    def blocks_changed_since(self, sha: str | None) -> list[tuple[str, str]] | None:
        """(owner, label) of the blocks changed on main since ``sha`` (None: cannot tell)."""
        return VersionIndex(self.db).changed_since(sha)

    def latest_contents(self, owner: str) -> dict[str, tuple[int, str]]:
        """Label -> (newest version, its content blob id) of every existing block of ``owner``,
        as the version index in the same file holds them (catch it up first)."""
        return VersionIndex(self.db).latest_contents(owner)

    def labels_under(self, owner: str, prefix: str) -> list[str]:
        """The labels of ``owner``'s existing blocks starting with ``prefix`` (the version
        index's, in the same file: catch it up first)."""
        return VersionIndex(self.db).labels_under(owner, prefix)

    def latest_contents_of(self, owner: str, labels: Iterable[str]) -> dict[str, tuple[int, str]]:
        """``latest_contents`` of ``labels`` only."""
        return VersionIndex(self.db).latest_contents_of(owner, labels)

    def record(self, bases: BasesLog, tx: Committed) -> None:
        """Index what ``tx`` just committed, if the index was at the commit it built on (else
        the next :meth:`catch_up` reads it from git)."""
        if tx.commit_id is None:
            return
        try:
            with self._write() as conn:
                if self._head(conn, bases.source) != tx.parent_id:
                    return
                source = bases.source
                gone, put = [], []
                for path, binding, content in tx.written():
                    if binding is None:
                        gone.append([source, path])
                        continue
                    data = b"" if content is None else content.encode("utf-8")
                    blob, sha256 = git_blob_id(data), hashlib.sha256(data).hexdigest()
                    put.append([source, path, binding.owner, binding.label, blob, sha256])
                conn.executemany(_DELETE, gone)  # in one statement each, not one per path
                conn.executemany(_REPLACE, put)
                self._set_head(conn, source, tx.commit_id)
        except IndexCorrupt:
            pass  # the index is derived: the next catch-up repairs it from git
