"""The version index: one SQLite row per block version, derived entirely from git.

History is a query over ``(owner, label)``, O(versions of that block), instead of a walk of the
commit graph. The index follows ``refs/heads/main`` by *catching up*: starting from a commit it
walks first parents back to the newest commit it already knows and replays the ones in between,
oldest first. Writers prime it with what they just committed, so the usual cost of keeping up is
one insert; a writer killed after moving the ref but before indexing is caught up by the next
reader. Rebuilding replays the whole first-parent chain through the same code, which is why a
rebuilt index is identical to an incrementally kept one.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlite_utils

from blocksync.errors import IndexCorrupt

from .db import IndexDb, Migrations

SCHEMA_VERSION = 1
#: labels per `IN (...)` query (SQLite allows 32,766 parameters since 3.32; older ones 999)
_IN_CHUNK = 900

#: a block's metadata as the index keeps it: description, block_type, schema, char_limit
MetaFields = tuple[str, str, str, int | None]
#: ``index_meta`` key set while some metadata blob of ``versions`` has no ``metas`` row (an
#: index.db from before ``metas``): the block store reads them from git once, then clears it
METAS_MISSING = "metas_missing"


@dataclass(frozen=True)
class BlockChange:
    """A block whose folder differs between a commit and its first parent."""

    owner: str
    label: str
    content_blob: str | None  # None: the block is absent (deleted) after the commit
    meta_blob: str | None
    #: the parsed ``meta_blob`` (None: not known to the reader; the store fills it in later)
    meta: MetaFields | None = None


@dataclass(frozen=True)
class CommitInfo:
    """What the index needs to know about one commit."""

    sha: str
    parent: str | None
    author: str
    message: str  # without its provenance trailers (blocksync.store.provenance)
    timestamp: str
    changes: tuple[BlockChange, ...]
    #: its provenance trailers (None: the commit does not say)
    made_by: str | None = None
    machine: str | None = None
    run_id: str | None = None


@dataclass(frozen=True)
class Head:
    """A block's newest version as the index's ``heads`` row has it."""

    version: int
    deleted: bool
    content_blob: str | None
    meta_blob: str | None
    meta: MetaFields | None  # parsed ``meta_blob`` (None: not in ``metas``)


@dataclass(frozen=True)
class VersionRow:
    owner: str
    label: str
    version: int
    commit: str
    deleted: bool
    content_blob: str | None
    meta_blob: str | None
    author: str
    message: str
    timestamp: str
    made_by: str | None = None
    machine: str | None = None
    run_id: str | None = None


CommitReader = Callable[[str], CommitInfo]


#: the schema of the tables this module owns, in order (see :mod:`blocksync.index.db`)
MIGRATIONS = Migrations("versions")


@MIGRATIONS(name="versions_tables")
def _create_tables(db: sqlite_utils.Database) -> None:
    """``index_meta``, ``commits`` and ``versions`` (a store made before migrations has them)."""
    db.table("index_meta").create({"key": str, "value": str}, pk="key", if_not_exists=True)
    db.table("commits").create(
        {"sha": str, "seq": int, "parent": str}, pk="sha", if_not_exists=True
    )
    db.table("versions").create(
        {
            "owner": str,
            "label": str,
            "version": int,
            "commit": str,
            "deleted": int,
            "content_blob": str,
            "meta_blob": str,
            "author": str,
            "message": str,
            "timestamp": str,
        },
        pk=("owner", "label", "version"),
        not_null={"owner", "label", "version", "commit", "deleted"},
        if_not_exists=True,
    )
    db.table("versions").create_index(["commit"], if_not_exists=True)
    # MAX(seq) on every catch-up must not scan the whole history
    db.table("commits").create_index(["seq"], unique=True, if_not_exists=True)
    db.execute(
        "INSERT OR IGNORE INTO index_meta VALUES ('schema_version', ?)", [str(SCHEMA_VERSION)]
    )


#: ``heads``: every block's newest version (deletions included, so numbering goes on after a
#: re-create), kept by the catch-up beside ``versions``; ``metas``: each metadata blob parsed.
#: Together they list blocks without reading git (issue 14: 100,000 blocks in < 100 ms). A
#: listing joins them for the small ``id`` of a metadata blob (an int per row costs less to
#: fetch than 40 hex digits); ids depend on the order blobs were met, so dumps leave them out.
_HEADS_SCHEMA = (
    (
        "CREATE TABLE IF NOT EXISTS heads (owner TEXT NOT NULL, label TEXT NOT NULL,"
        " version INTEGER NOT NULL, deleted INTEGER NOT NULL, content_blob TEXT,"
        " meta_blob TEXT, PRIMARY KEY (owner, label)) WITHOUT ROWID"
    ),
    (
        "CREATE TABLE IF NOT EXISTS metas (id INTEGER PRIMARY KEY, blob TEXT NOT NULL UNIQUE,"
        " description TEXT NOT NULL, block_type TEXT NOT NULL, schema TEXT NOT NULL,"
        " char_limit INTEGER)"
    ),
)


@MIGRATIONS(name="versions_heads_and_metas")
def _add_heads(db: sqlite_utils.Database) -> None:
    """``heads`` from ``versions`` (SQL alone); ``metas`` needs git, so it is left to the
    block store (:data:`METAS_MISSING`)."""
    for statement in _HEADS_SCHEMA:
        db.execute(statement)
    db.execute(
        "INSERT OR REPLACE INTO heads SELECT v.owner, v.label, v.version, v.deleted,"
        " v.content_blob, v.meta_blob FROM versions v JOIN (SELECT owner, label,"
        " MAX(version) AS version FROM versions GROUP BY owner, label) USING"
        " (owner, label, version)"
    )
    if db.execute("SELECT 1 FROM versions WHERE meta_blob IS NOT NULL LIMIT 1").fetchone():
        db.execute("INSERT OR REPLACE INTO index_meta VALUES (?, '1')", [METAS_MISSING])


#: the provenance columns of ``versions`` (a commit's trailers; see blocksync.store.provenance)
_PROVENANCE = ("made_by", "machine", "run_id")


@MIGRATIONS(name="versions_provenance")
def _add_provenance(db: sqlite_utils.Database) -> None:
    """Who made each version, where, in which run: NULL for the rows indexed before, whose
    commits predate the trailers (``index rebuild`` reads them all from git again)."""
    have = {c.name for c in db.table("versions").columns}
    for column in _PROVENANCE:
        if column not in have:
            db.execute(f"ALTER TABLE versions ADD COLUMN {column} TEXT")


class VersionIndex:
    """SQLite tables ``commits`` and ``versions`` (plus ``index_meta``) in ``index.db``."""

    def __init__(self, index_db: IndexDb, *, owned: bool = False) -> None:
        """Use :meth:`open`. ``owned``: :meth:`close` closes ``index_db`` too."""
        self.index_db = index_db
        self._db = index_db.db
        self.path = str(index_db.path)
        self._owned = owned

    @classmethod
    def open(cls, where: Path | IndexDb, *, create: bool = False) -> VersionIndex:
        """The version index of ``where`` (the workspace's open ``index.db``, or a file opened
        for this index alone); refuses a missing, foreign or damaged file unless ``create``."""
        if isinstance(where, IndexDb):
            index_db, owned = where, False
        else:
            index_db, owned = IndexDb.open(where, create=create), True
        index = cls(index_db, owned=owned)
        try:
            if not create:
                index._check_tables()
            index_db.migrate(MIGRATIONS)
            index._check_schema()
        except sqlite3.DatabaseError as exc:
            index.close()
            raise IndexCorrupt(index.path, f"cannot be read ({exc})") from exc
        except BaseException:
            index.close()
            raise
        return index

    def close(self) -> None:
        if self._owned:
            self.index_db.close()

    def _check_tables(self) -> None:
        with self.index_db.reading():
            tables = set(self._db.table_names())
        if not {"index_meta", "commits", "versions"} <= tables:
            raise IndexCorrupt(self.path, "is not a blocksync index (tables missing)")

    def _check_schema(self) -> None:
        found = self._meta("schema_version")
        if found != str(SCHEMA_VERSION):
            raise IndexCorrupt(self.path, f"has schema version {found}, expected {SCHEMA_VERSION}")

    # -- transactions ---------------------------------------------------------------------

    def write(self) -> AbstractContextManager[sqlite3.Connection]:
        """One IMMEDIATE transaction: concurrent writers queue instead of failing mid-way."""
        return self.index_db.atomic()

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """Every row of a query (under the database's lock: see :mod:`blocksync.index.db`)."""
        with self.index_db.reading() as conn:
            return conn.execute(sql, list(params)).fetchall()

    def _first_row(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """The first row of a query, None if none."""
        rows = self._rows(sql, params)
        return rows[0] if rows else None

    def _meta(self, key: str) -> str | None:
        row = self._first_row("SELECT value FROM index_meta WHERE key = ?", [key])
        return None if row is None else str(row[0])

    def _set_meta(self, key: str, value: str | None) -> None:
        if value is None:
            self._db.execute("DELETE FROM index_meta WHERE key = ?", [key])
        else:
            self._db.execute("INSERT OR REPLACE INTO index_meta VALUES (?, ?)", [key, value])

    # -- following git --------------------------------------------------------------------

    def indexed_head(self) -> str | None:
        return self._meta("indexed_head")

    def catch_up(
        self,
        head: str | None,
        read_commit: CommitReader,
        current_main: Callable[[], str | None] | None = None,
    ) -> None:
        """Make the index describe exactly the first-parent history ending at ``head``.

        ``current_main`` reads main again. With it, a ``head`` the index has already passed is
        not an error: another process moved main and indexed it after the caller read the ref,
        and the index follows main as it is now instead.
        """
        try:
            if head == self.indexed_head():
                return
            with self.write():
                self._catch_up_locked(head, read_commit, current_main)
        except sqlite3.DatabaseError as exc:
            raise IndexCorrupt(self.path, f"cannot be updated ({exc})") from exc

    def _catch_up_locked(
        self,
        head: str | None,
        read_commit: CommitReader,
        current_main: Callable[[], str | None] | None,
    ) -> None:
        indexed = self.indexed_head()  # re-read: another process may have moved it meanwhile
        if head == indexed:
            return
        if (head is None or self._known(head)) and current_main is not None:
            # Main only moves forward (compare-and-swap onto a child of itself), and whoever
            # indexed a commit read it from main first, so main read now, under the write
            # lock, is the indexed head or a descendant -- unless main really went backwards.
            head = current_main()
            if head == indexed:
                return
        if head is None or self._known(head):
            raise IndexCorrupt(
                self.path, f"is ahead of the repository (indexed {indexed}, main is {head})"
            )
        chain: list[CommitInfo] = []
        sha: str | None = head
        while sha is not None and not self._known(sha):
            info = read_commit(sha)
            chain.append(info)
            sha = info.parent
        if sha != indexed:
            raise IndexCorrupt(
                self.path, f"does not follow the repository (indexed {indexed}, main is {head})"
            )
        seq = self._first_row("SELECT COALESCE(MAX(seq), 0) FROM commits")[0]
        for offset, info in enumerate(reversed(chain), start=1):
            self._apply(info, seq + offset)
        self._set_meta("indexed_head", head)

    def knows(self, sha: str) -> bool:
        """Whether commit ``sha`` is on the indexed first-parent history."""
        return self._known(sha)

    def _known(self, sha: str) -> bool:
        return self._first_row("SELECT 1 FROM commits WHERE sha = ?", [sha]) is not None

    def _apply(self, info: CommitInfo, seq: int) -> None:
        # a commit changes each block once: its rows written in one statement per table
        execute = self._db.execute
        execute("INSERT INTO commits VALUES (?, ?, ?)", [info.sha, seq, info.parent])
        last = self._versions([(change.owner, change.label) for change in info.changes])
        versions, heads, metas = [], [], []
        for change in info.changes:
            key = (change.owner, change.label)
            block = [*key, last.get(key, 0) + 1]
            blobs = [int(change.content_blob is None), change.content_blob, change.meta_blob]
            versions.append(
                [
                    *block,
                    info.sha,
                    *blobs,
                    info.author,
                    info.message,
                    info.timestamp,
                    info.made_by,
                    info.machine,
                    info.run_id,
                ]
            )
            heads.append(block + blobs)
            if change.meta_blob is None:
                continue
            if change.meta is None:
                self._set_meta(METAS_MISSING, "1")
            else:
                metas.append([change.meta_blob, *change.meta])
        conn = self._db.conn
        conn.executemany(_INSERT_VERSION, versions)
        conn.executemany("INSERT OR REPLACE INTO heads VALUES (?, ?, ?, ?, ?, ?)", heads)
        conn.executemany(_ADD_META, metas)

    def _versions(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], int]:
        """(owner, label) -> its newest version in ``heads``, of ``keys`` that have one."""
        query = "SELECT owner, label, version FROM heads WHERE owner = ? AND label IN"
        return {(owner, label): v for owner, label, v in self._rows_of_keys(query, keys)}

    def _rows_of_keys(self, query: str, keys: Iterable[tuple[str, str]]) -> list[Any]:
        """The rows of ``query`` (ending in ``owner = ? AND label IN``) for ``keys``: a query
        per owner and chunk of the parameters SQLite takes. (A row value, ``(owner, label) IN
        (VALUES ...)``, reads every row of the table: SQLite uses no index for it.)"""
        by_owner: dict[str, list[str]] = {}
        for owner, label in keys:
            by_owner.setdefault(owner, []).append(label)
        rows: list[Any] = []
        for owner, labels in by_owner.items():
            for start in range(0, len(labels), _IN_CHUNK):
                chunk = labels[start : start + _IN_CHUNK]
                rows += self._rows(f"{query} ({', '.join('?' * len(chunk))})", [owner, *chunk])
        return rows

    def reset(self) -> None:
        """Forget every indexed commit; the next catch-up replays main from its first commit."""
        try:
            with self.write():
                for table in ("versions", "commits", "heads", "metas"):
                    self._db.execute(f"DELETE FROM {table}")
                self._set_meta(METAS_MISSING, None)
                self._set_meta("indexed_head", None)
        except sqlite3.DatabaseError as exc:
            raise IndexCorrupt(self.path, f"cannot be reset ({exc})") from exc

    # -- queries --------------------------------------------------------------------------

    def history(self, owner: str, label: str) -> list[VersionRow]:
        rows = self._rows(
            f"SELECT {_COLUMNS} FROM versions WHERE owner = ? AND label = ? ORDER BY version",
            [owner, label],
        )
        return [_row(r) for r in rows]

    def latest(self, owner: str, label: str) -> VersionRow | None:
        row = self._first_row(
            f"SELECT {_COLUMNS} FROM versions WHERE owner = ? AND label = ? "
            "ORDER BY version DESC LIMIT 1",
            [owner, label],
        )
        return None if row is None else _row(row)

    def get(self, owner: str, label: str, version: int) -> VersionRow | None:
        row = self._first_row(
            f"SELECT {_COLUMNS} FROM versions WHERE owner = ? AND label = ? AND version = ?",
            [owner, label, version],
        )
        return None if row is None else _row(row)

    def by_commit_prefix(self, owner: str, label: str, prefix: str) -> list[VersionRow]:
        rows = self._rows(
            f"SELECT {_COLUMNS} FROM versions WHERE owner = ? AND label = ? "
            'AND substr("commit", 1, ?) = ? ORDER BY version',
            [owner, label, len(prefix), prefix],
        )
        return [_row(r) for r in rows]

    def head(self, owner: str, label: str) -> Head | None:
        """The block's newest version as ``heads`` has it, with its parsed metadata when
        ``metas`` has that (one lookup by primary key: what a transaction checks per block)."""
        row = self._first_row(_HEAD, [owner, label])
        if row is None:
            return None
        meta = None if row[4] is None else (row[4], row[5], row[6], row[7])
        return Head(row[0], bool(row[1]), row[2], row[3], meta)

    def heads_of(self, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], Head]:
        """:meth:`head` of each (owner, label) of ``keys`` that has a row, in a query per
        :data:`_IN_CHUNK` parameters (what a transaction of many blocks checks)."""
        found: dict[tuple[str, str], Head] = {}
        for row in self._rows_of_keys(_HEADS_OF, dict.fromkeys(keys)):
            meta = None if row[6] is None else (row[6], row[7], row[8], row[9])
            found[(row[0], row[1])] = Head(row[2], bool(row[3]), row[4], row[5], meta)
        return found

    def versions_of_commit(self, sha: str) -> dict[tuple[str, str], int]:
        """(owner, label) -> the version commit ``sha`` made of each block it changed (one
        query, by the ``commit`` index)."""
        rows = self._rows('SELECT owner, label, version FROM versions WHERE "commit" = ?', [sha])
        return {(owner, label): version for owner, label, version in rows}

    def latest_contents(self, owner: str) -> dict[str, tuple[int, str]]:
        """Label -> (newest version, its content blob id) of every existing block of ``owner``."""
        rows = self._rows(
            "SELECT label, version, content_blob FROM heads WHERE owner = ? AND deleted = 0",
            [owner],
        )
        return {label: (version, blob) for label, version, blob in rows}

    def labels_under(self, owner: str, prefix: str) -> list[str]:
        """The labels of ``owner``'s existing blocks that start with ``prefix``, sorted: a
        range of the key (from ``prefix`` to the string after every one starting with it),
        not a pass over every block of the owner."""
        after = _after_prefix(prefix)
        sql = "SELECT label FROM heads WHERE owner = ? AND label >= ? AND deleted = 0"
        params = [owner, prefix]
        if after is not None:
            sql, params = sql + " AND label < ?", [*params, after]
        # the range holds exactly the labels under the prefix; without an end, those after it
        return [label for (label,) in self._rows(sql, params) if label.startswith(prefix)]

    def owners_with(self, label: str) -> list[str]:
        """The owners of an existing block labelled ``label``, sorted: a seek per owner in
        ``heads`` (a query of the label alone would read every row: it is no key prefix)."""
        return [owner for (owner,) in self._rows(_OWNERS_WITH, [label])]

    def listing(self, owner: str | None = None) -> list[tuple[str, list[Listed]]]:
        """Every block that exists now (of one owner, or all), by owner: (label, newest
        version, its ``metas`` id), sorted by owner and label (the primary key's order)."""
        with self.index_db.reading() as conn:
            if owner is None:
                owners = [r[0] for r in conn.execute("SELECT DISTINCT owner FROM heads")]
            else:
                owners = [owner]
            return [(o, conn.execute(_LISTING, [o]).fetchall()) for o in owners]

    def metas(self) -> dict[int, tuple[str, MetaFields]]:
        """Every metadata blob indexed, by ``metas`` id: (blob, parsed); few, blocks share them."""
        rows = self._rows("SELECT id, blob, description, block_type, schema, char_limit FROM metas")
        return {r[0]: (r[1], (r[2], r[3], r[4], r[5])) for r in rows}

    def missing_metas(self) -> list[str] | None:
        """The metadata blobs of ``versions`` without a ``metas`` row; None (no query) unless
        :data:`METAS_MISSING` says there may be some."""
        if self._meta(METAS_MISSING) is None:
            return None
        rows = self._rows(
            "SELECT DISTINCT meta_blob FROM versions WHERE meta_blob IS NOT NULL"
            " AND meta_blob NOT IN (SELECT blob FROM metas)"
        )
        return [r[0] for r in rows]

    def add_metas(self, metas: dict[str, MetaFields]) -> None:
        """Record parsed metadata blobs (read from git by the store), and that none is missing."""
        try:
            with self.write():
                self._db.conn.executemany(
                    _ADD_META, [(blob, *fields) for blob, fields in metas.items()]
                )
                self._set_meta(METAS_MISSING, None)
        except sqlite3.DatabaseError as exc:
            raise IndexCorrupt(self.path, f"cannot be updated ({exc})") from exc

    def latest_contents_of(self, owner: str, labels: Iterable[str]) -> dict[str, tuple[int, str]]:
        """``latest_contents`` of ``labels`` only (a page of a plugin reconcile): lookups by
        the primary key, not a pass over every version of the owner."""
        found: dict[str, tuple[int, str]] = {}
        wanted = list(dict.fromkeys(labels))
        for start in range(0, len(wanted), _IN_CHUNK):
            chunk = wanted[start : start + _IN_CHUNK]
            rows = self._rows(  # heads: one row per block, its newest version
                "SELECT label, version, deleted, content_blob FROM heads WHERE owner = ? "
                f"AND label IN ({', '.join('?' * len(chunk))})",
                [owner, *chunk],
            )
            found.update((label, (v, blob)) for label, v, deleted, blob in rows if not deleted)
        return found

    def parent_of(self, sha: str) -> tuple[bool, str | None]:
        """Is ``sha`` indexed, and its first parent (None: it is the first commit)."""
        row = self._first_row("SELECT parent FROM commits WHERE sha = ?", [sha])
        return row is not None, None if row is None or row[0] is None else str(row[0])

    def changed_since(self, sha: str | None) -> list[tuple[str, str]] | None:
        """(owner, label) of every block a commit indexed after ``sha`` (None: before the
        first) changed; None when ``sha`` is not on the indexed history (nothing can be said)."""
        row = (
            (0,) if sha is None else self._first_row("SELECT seq FROM commits WHERE sha = ?", [sha])
        )
        if row is None:
            return None
        rows = self._rows(
            'SELECT DISTINCT owner, label FROM versions WHERE "commit" IN '
            "(SELECT sha FROM commits WHERE seq > ?)",
            [row[0]],
        )
        return [(owner, label) for owner, label in rows]

    def dump(self) -> dict[str, list[tuple[Any, ...]]]:
        """Every row of every table, ordered: two indexes are identical iff dumps are equal."""
        out: dict[str, list[tuple[Any, ...]]] = {}
        tables = (
            ("index_meta", "key"),
            ("commits", "seq"),
            ("versions", "1, 2, 3"),
            ("heads", "1, 2"),
            ("metas", "blob"),
        )
        for table, order in tables:
            columns = _META_COLUMNS if table == "metas" else "*"
            rows = self._rows(f"SELECT {columns} FROM {table} ORDER BY {order}")
            out[table] = [tuple(r) for r in rows]
        return out

    def integrity_problems(self) -> list[str]:
        rows = self._rows("PRAGMA integrity_check")
        return [str(r[0]) for r in rows if r[0] != "ok"]


_COLUMNS = (
    'owner, label, version, "commit", deleted, content_blob, meta_blob, author, message, timestamp,'
    " made_by, machine, run_id"
)
_INSERT_VERSION = f"INSERT INTO versions ({_COLUMNS}) VALUES ({', '.join('?' * 13)})"


_META_COLUMNS = "blob, description, block_type, schema, char_limit"
_HEAD = (
    "SELECT h.version, h.deleted, h.content_blob, h.meta_blob, m.description, m.block_type,"
    " m.schema, m.char_limit FROM heads h LEFT JOIN metas m ON m.blob = h.meta_blob"
    " WHERE h.owner = ? AND h.label = ?"
)
_HEADS_OF = (
    "SELECT h.owner, h.label, h.version, h.deleted, h.content_blob, h.meta_blob, m.description,"
    " m.block_type, m.schema, m.char_limit FROM heads h LEFT JOIN metas m ON m.blob = h.meta_blob"
    " WHERE h.owner = ? AND h.label IN"
)
#: each owner found by a seek past the one before (SQLite's skip-scan, spelled out), then
#: its row of the label by the primary key: O(owners), whatever the number of blocks
_OWNERS_WITH = (
    "WITH RECURSIVE o(owner) AS (SELECT min(owner) FROM heads"
    " UNION ALL SELECT (SELECT min(owner) FROM heads WHERE owner > o.owner) FROM o"
    " WHERE o.owner IS NOT NULL)"
    " SELECT h.owner FROM o JOIN heads h ON h.owner = o.owner AND h.label = ?"
    " WHERE h.deleted = 0 ORDER BY h.owner"
)
_ADD_META = f"INSERT OR IGNORE INTO metas ({_META_COLUMNS}) VALUES (?, ?, ?, ?, ?)"
_LISTING = (
    "SELECT h.label, h.version, m.id FROM heads h LEFT JOIN metas m ON m.blob = h.meta_blob"
    " WHERE h.owner = ? AND h.deleted = 0 ORDER BY h.label"
)
#: a block as :meth:`VersionIndex.listing` gives it: label, newest version, ``metas`` id
#: (None: its metadata blob is not parsed yet)
Listed = tuple[str, int, int | None]


def _row(r: tuple[Any, ...]) -> VersionRow:
    return VersionRow(
        r[0], r[1], r[2], r[3], bool(r[4]), r[5], r[6], r[7], r[8], r[9], r[10], r[11], r[12]
    )


def install(built: Path, path: Path) -> None:
    """Atomically put a closed, freshly built index file in place of ``path``."""
    for stale in (Path(f"{path}-wal"), Path(f"{path}-shm")):
        stale.unlink(missing_ok=True)
    os.replace(built, path)


def remove(path: Path) -> None:
    for file in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        file.unlink(missing_ok=True)


def _after_prefix(prefix: str) -> str | None:
    """The least string greater than every string starting with ``prefix`` (SQLite compares
    text by its UTF-8 bytes, i.e. by code points): its last character's successor; None when
    there is none to take (U+10FFFF, or the successor would be a surrogate: no UTF-8)."""
    if not prefix:
        return None
    last = ord(prefix[-1])
    if last == 0x10FFFF or 0xD7FF <= last <= 0xDFFF:
        return None
    return prefix[:-1] + chr(last + 1)
