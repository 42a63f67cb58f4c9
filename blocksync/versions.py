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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlite_utils

from .errors import IndexCorrupt
from .safefile import check_regular

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class BlockChange:
    """A block whose folder differs between a commit and its first parent."""

    owner: str
    label: str
    content_blob: str | None  # None: the block is absent (deleted) after the commit
    meta_blob: str | None


@dataclass(frozen=True)
class CommitInfo:
    """What the index needs to know about one commit."""

    sha: str
    parent: str | None
    author: str
    message: str
    timestamp: str
    changes: tuple[BlockChange, ...]


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


CommitReader = Callable[[str], CommitInfo]


class VersionIndex:
    """SQLite tables ``commits`` and ``versions`` (plus ``index_meta``) in ``index.db``."""

    def __init__(self, db: sqlite_utils.Database, path: str) -> None:
        self._db = db
        self.path = path

    @classmethod
    def open(cls, path: Path, *, create: bool = False) -> VersionIndex:
        """Open ``index.db``; refuses a missing, foreign or damaged file unless ``create``."""
        check_regular(path)  # SQLite follows links: one planted here would be written through
        if not create and not path.exists():
            raise IndexCorrupt(str(path), "is missing")
        try:
            conn = sqlite3.connect(path, isolation_level=None, timeout=60, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            index = cls(sqlite_utils.Database(conn), str(path))
            if create:
                index._create_schema()
            index._check_schema()
        except sqlite3.DatabaseError as exc:
            raise IndexCorrupt(str(path), f"cannot be read ({exc})") from exc
        return index

    def close(self) -> None:
        self._db.conn.close()

    def _create_schema(self) -> None:
        with self.write():
            db = self._db
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
                "INSERT OR IGNORE INTO index_meta VALUES ('schema_version', ?)",
                [str(SCHEMA_VERSION)],
            )

    def _check_schema(self) -> None:
        tables = set(self._db.table_names())
        if not {"index_meta", "commits", "versions"} <= tables:
            raise IndexCorrupt(self.path, "is not a blocksync index (tables missing)")
        found = self._meta("schema_version")
        if found != str(SCHEMA_VERSION):
            raise IndexCorrupt(self.path, f"has schema version {found}, expected {SCHEMA_VERSION}")

    # -- transactions ---------------------------------------------------------------------

    @contextmanager
    def write(self) -> Iterator[None]:
        """One IMMEDIATE transaction: concurrent writers queue instead of failing mid-way."""
        conn = self._db.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def _meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM index_meta WHERE key = ?", [key]).fetchone()
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
        self, head: str | None, read_commit: CommitReader, current_main: Callable[[], str | None] | None
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
        seq = self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM commits").fetchone()[0]
        for offset, info in enumerate(reversed(chain), start=1):
            self._apply(info, seq + offset)
        self._set_meta("indexed_head", head)

    def knows(self, sha: str) -> bool:
        """Whether commit ``sha`` is on the indexed first-parent history."""
        return self._known(sha)

    def _known(self, sha: str) -> bool:
        return self._db.execute("SELECT 1 FROM commits WHERE sha = ?", [sha]).fetchone() is not None

    def _apply(self, info: CommitInfo, seq: int) -> None:
        execute = self._db.execute
        execute("INSERT INTO commits VALUES (?, ?, ?)", [info.sha, seq, info.parent])
        for change in info.changes:
            (last,) = execute(
                "SELECT COALESCE(MAX(version), 0) FROM versions WHERE owner = ? AND label = ?",
                [change.owner, change.label],
            ).fetchone()
            execute(
                "INSERT INTO versions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    change.owner,
                    change.label,
                    last + 1,
                    info.sha,
                    int(change.content_blob is None),
                    change.content_blob,
                    change.meta_blob,
                    info.author,
                    info.message,
                    info.timestamp,
                ],
            )

    def reset(self) -> None:
        """Forget every indexed commit; the next catch-up replays main from its first commit."""
        try:
            with self.write():
                self._db.execute("DELETE FROM versions")
                self._db.execute("DELETE FROM commits")
                self._set_meta("indexed_head", None)
        except sqlite3.DatabaseError as exc:
            raise IndexCorrupt(self.path, f"cannot be reset ({exc})") from exc

    # -- queries --------------------------------------------------------------------------

    def history(self, owner: str, label: str) -> list[VersionRow]:
        rows = self._db.execute(
            f"SELECT {_COLUMNS} FROM versions WHERE owner = ? AND label = ? ORDER BY version",
            [owner, label],
        ).fetchall()
        return [_row(r) for r in rows]

    def latest(self, owner: str, label: str) -> VersionRow | None:
        row = self._db.execute(
            f"SELECT {_COLUMNS} FROM versions WHERE owner = ? AND label = ? "
            "ORDER BY version DESC LIMIT 1",
            [owner, label],
        ).fetchone()
        return None if row is None else _row(row)

    def get(self, owner: str, label: str, version: int) -> VersionRow | None:
        row = self._db.execute(
            f"SELECT {_COLUMNS} FROM versions WHERE owner = ? AND label = ? AND version = ?",
            [owner, label, version],
        ).fetchone()
        return None if row is None else _row(row)

    def by_commit_prefix(self, owner: str, label: str, prefix: str) -> list[VersionRow]:
        rows = self._db.execute(
            f"SELECT {_COLUMNS} FROM versions WHERE owner = ? AND label = ? "
            "AND substr(\"commit\", 1, ?) = ? ORDER BY version",
            [owner, label, len(prefix), prefix],
        ).fetchall()
        return [_row(r) for r in rows]

    def latest_versions(self, owner: str | None = None) -> dict[tuple[str, str], int]:
        """The newest version number of every block that exists now (of one owner, or all)."""
        where, params = ("WHERE owner = ?", [owner]) if owner is not None else ("", [])
        rows = self._db.execute(
            "SELECT owner, label, MAX(version), deleted FROM versions "
            f"{where} GROUP BY owner, label",
            params,
        ).fetchall()
        # SQLite returns the bare column `deleted` from the row holding MAX(version)
        return {(o, lbl): v for o, lbl, v, deleted in rows if not deleted}

    def dump(self) -> dict[str, list[tuple[Any, ...]]]:
        """Every row of every table, ordered: two indexes are identical iff dumps are equal."""
        out: dict[str, list[tuple[Any, ...]]] = {}
        for table, order in (("index_meta", "key"), ("commits", "seq"), ("versions", "1, 2, 3")):
            rows = self._db.execute(f"SELECT * FROM {table} ORDER BY {order}").fetchall()
            out[table] = [tuple(r) for r in rows]
        return out

    def integrity_problems(self) -> list[str]:
        rows = self._db.execute("PRAGMA integrity_check").fetchall()
        return [str(r[0]) for r in rows if r[0] != "ok"]


_COLUMNS = (
    'owner, label, version, "commit", deleted, content_blob, meta_blob, author, message, timestamp'
)


def _row(r: tuple[Any, ...]) -> VersionRow:
    return VersionRow(r[0], r[1], r[2], r[3], bool(r[4]), r[5], r[6], r[7], r[8], r[9])


def install(built: Path, path: Path) -> None:
    """Atomically put a closed, freshly built index file in place of ``path``."""
    for stale in (Path(f"{path}-wal"), Path(f"{path}-shm")):
        stale.unlink(missing_ok=True)
    os.replace(built, path)


def remove(path: Path) -> None:
    for file in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        file.unlink(missing_ok=True)
