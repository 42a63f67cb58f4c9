"""Notifications from plugins and the state of data streams, stored durably in ``index.db``.

Unlike the version index, none of this can be re-derived from block history, so every row is
also kept in git, as a record on ``refs/blocksync/records`` (:mod:`blocksync.store.records`; the
kinds :data:`NOTIFICATION_RECORDS`, :data:`STREAM_RECORDS`, :data:`CURSOR_RECORDS`), written
in the same transaction as the row (git first): one records commit per pull, per ack, per
notification emitted outside a pull, per change of a stream's state. Three tables:

``notifications``
    one row per notification: ``source`` (the plugin's table key), ``text``, ``blocks`` (JSON:
    ``[block_id, label, agent_id, version]`` per reference, ``version`` null for a block that
    does not exist), ``missing`` (JSON: the indexes of those), ``origin`` (``emit``: pushed with
    ``host.emit-notification``; ``pull``: returned by ``pull``), ``call`` (the plugin call it
    came from, when known), ``cursor`` (for a pull: the cursor it advanced to), ``created_at``,
    ``acked``, ``acked_at``.
``streams``
    one row per data stream: the host's lifecycle ``state`` (stopped / running / paused), the
    ``owner`` it was started for, its ``cursor``, how many notifications it ``delivered`` by pull
    and in how many ``pulls``, and the ``last_error`` of a pull.
``stream_cursors``
    every cursor a stream's pulls advanced to, in order (``seq``): what "a cursor going
    backwards" is checked against.

Block references are resolved when a notification is stored: each reference is looked up in the
block store (by owner and label) and stored with the block's real id and its version then. A
reference to a block that does not exist is kept, with a null version, and listed in
``missing_blocks``: never dropped.

A pull is one unit: the notifications the plugin emitted during it, those it returned and the new
cursor are written in ONE SQLite transaction after the call returned (see :meth:`record_pull`);
while the call runs, :meth:`capture` holds its emitted notifications and its ``set-cursor``.
"""

from __future__ import annotations

import builtins
import json
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import sqlite_utils

from blocksync.errors import (
    AccessDenied,
    ConcurrencyError,
    IndexCorrupt,
    NotificationNotFound,
    PullRefused,
)
from blocksync.shared.wit import BlockRef, Notification

from .db import IndexDb, Migrations, attach, preparer, timestamp
from .sqlitetable import Recorder, RecordKind, Staged, follow, recorded

#: a block reference -> (its canonical reference, its current version), or None: no such block
Resolver = Callable[[BlockRef], "tuple[BlockRef, int] | None"]

_SCHEMA = (
    (
        "CREATE TABLE IF NOT EXISTS notifications ("
        " id INTEGER PRIMARY KEY AUTOINCREMENT, source TEXT NOT NULL, text TEXT NOT NULL,"
        " blocks TEXT NOT NULL, created_at TEXT NOT NULL, acked INTEGER NOT NULL DEFAULT 0)"
    ),
    (
        "CREATE TABLE IF NOT EXISTS streams ("
        " key TEXT PRIMARY KEY, state TEXT NOT NULL DEFAULT 'stopped', owner TEXT,"
        " cursor TEXT, delivered INTEGER NOT NULL DEFAULT 0, pulls INTEGER NOT NULL DEFAULT 0,"
        " updated_at TEXT NOT NULL, last_error TEXT)"
    ),
    (
        "CREATE TABLE IF NOT EXISTS stream_cursors ("
        " stream TEXT NOT NULL, seq INTEGER NOT NULL, cursor TEXT NOT NULL,"
        " notifications INTEGER NOT NULL, pulled_at TEXT NOT NULL,"
        " PRIMARY KEY (stream, seq), UNIQUE (stream, cursor))"
    ),
)
#: columns added to ``notifications`` after its first version (stores made before get them)
_ADDED = {
    "missing": "TEXT NOT NULL DEFAULT '[]'",
    "origin": "TEXT NOT NULL DEFAULT 'emit'",
    "call": "TEXT NOT NULL DEFAULT ''",
    "cursor": "TEXT",
    "acked_at": "TEXT",
}
_COLUMNS = "id, source, text, blocks, created_at, acked, missing, origin, call, cursor, acked_at"

#: the schema of the tables this module owns, in order (see :mod:`blocksync.index.db`)
MIGRATIONS = Migrations("notifications")


@MIGRATIONS(name="notifications_tables")
def _create_tables(db: sqlite_utils.Database) -> None:
    for statement in _SCHEMA:
        db.execute(statement)


@MIGRATIONS(name="notifications_columns_of_streams")
def _add_columns(db: sqlite_utils.Database) -> None:
    """The columns a table made before streams lacks."""
    have = {r[1] for r in db.execute("PRAGMA table_info(notifications)")}
    for name, decl in _ADDED.items():
        if name not in have:
            db.execute(f"ALTER TABLE notifications ADD COLUMN {name} {decl}")


_prepare = preparer(MIGRATIONS)


#: how rows are kept in git: ``notifications/<id >> 16>/<id >> 8 & 255>/<id>.json`` (one pull's
#: notifications share a folder or two)
NOTIFICATION_RECORDS = RecordKind(
    folder="notifications",
    noun="notification",
    table="notifications",
    columns=tuple(_COLUMNS.split(", ")),
    key=("id",),
    prepare=_prepare,
    numbered=True,
)
#: ``streams/<h[:2]>/<h[2:4]>/<key>.json``
STREAM_RECORDS = RecordKind(
    folder="streams",
    noun="stream",
    table="streams",
    columns=("key", "state", "owner", "cursor", "delivered", "pulls", "updated_at", "last_error"),
    key=("key",),
    prepare=_prepare,
)
#: ``stream-cursors/<h[:2]>/<h[2:4]>/<stream>+<seq>.json``
CURSOR_RECORDS = RecordKind(
    folder="stream-cursors",
    noun="stream cursor",
    table="stream_cursors",
    columns=("stream", "seq", "cursor", "notifications", "pulled_at"),
    key=("stream", "seq"),
    prepare=_prepare,
)


@dataclass(frozen=True)
class StoredNotification:
    id: int
    source: str
    text: str
    blocks: tuple[BlockRef, ...]  # resolved: the real block id where the block exists
    created_at: str
    acked: bool
    #: the references to blocks that did not exist when it was stored (also in ``blocks``)
    missing_blocks: tuple[BlockRef, ...] = ()
    #: per reference in ``blocks``: the block's version when stored, None when missing
    block_versions: tuple[int | None, ...] = ()
    origin: str = "emit"  # "emit" (host.emit-notification) or "pull" (returned by pull)
    call: str = ""  # the plugin call it came from, e.g. "data-stream.start"
    cursor: str | None = None  # for a pull: the cursor that pull advanced to
    acked_at: str | None = None

    def to_json(self) -> dict[str, Any]:
        def ref(b: BlockRef, version: int | None = None) -> dict[str, Any]:
            out: dict[str, Any] = {"block_id": b.block_id, "label": b.label, "agent_id": b.agent_id}
            return out if version is None else {**out, "version": version}

        return {
            "id": self.id,
            "source": self.source,
            "text": self.text,
            "blocks": [
                ref(b, v)
                for b, v in zip(self.blocks, self.block_versions or (None,) * len(self.blocks))
            ],
            "missing_blocks": [ref(b) for b in self.missing_blocks],
            "origin": self.origin,
            "call": self.call,
            "cursor": self.cursor,
            "created_at": self.created_at,
            "acked": self.acked,
            "acked_at": self.acked_at,
        }


@dataclass(frozen=True)
class StreamRow:
    """What ``index.db`` knows of one data stream."""

    key: str
    state: str = "stopped"
    owner: str | None = None
    cursor: str | None = None
    delivered: int = 0
    pulls: int = 0
    updated_at: str | None = None
    last_error: str | None = None


@dataclass
class PullCapture:
    """What a plugin did through the host during one pull: kept until the pull is recorded."""

    source: str
    call: str
    emitted: list[Notification] = field(default_factory=list)
    cursor: str | None = None


def _is_number(text: str | None) -> bool:
    return text is not None and text.isascii() and text.isdigit()


class NotificationLog:
    def __init__(
        self,
        where: Path | IndexDb,
        resolve: Resolver | None = None,
        *,
        records: Recorder | None = None,
    ) -> None:
        """``where``: the workspace's open ``index.db`` (a path: a handle of the log's own).
        ``records``: keep every row in git too (None: in index.db only)."""
        self.path = Path(where) if not isinstance(where, IndexDb) else where.path
        self.resolve = resolve
        self._records = records
        self._captures: dict[str, PullCapture] = {}
        self._calls: dict[str, str] = {}
        self._restoring: set[str] = set()
        try:
            self.db, self._owned = attach(where, MIGRATIONS, partial(follow, recorder=records))
        except sqlite3.DatabaseError as exc:
            raise IndexCorrupt(str(self.path), f"cannot store notifications ({exc})") from exc

    @property
    def _conn(self) -> sqlite3.Connection:
        return self.db.conn

    @contextmanager
    def _write(self, doing: str, message: str) -> Iterator[Staged]:
        """One IMMEDIATE transaction, its rows written to git before it commits."""
        try:
            with recorded(self.db, self._records, message) as staged:
                yield staged
        except sqlite3.DatabaseError as exc:
            raise IndexCorrupt(str(self.path), f"{doing} ({exc})") from exc

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> builtins.list[Any]:
        """Every row of a query (under the database's lock: see :mod:`blocksync.index.db`)."""
        with self.db.reading() as conn:
            return conn.execute(sql, builtins.list(params)).fetchall()

    def close(self) -> None:
        """Close the handle if the log opened it (the workspace closes its own)."""
        if self._owned:
            self.db.close()

    # -- storing ---------------------------------------------------------------------------

    def _resolved(
        self, blocks: Iterable[BlockRef], memo: dict[tuple[str, str], Any] | None = None
    ) -> tuple[str, str]:
        """(blocks JSON, missing JSON) of references looked up in the block store (``memo``:
        what this batch looked up already, by owner and label)."""
        rows: list[list[Any]] = []
        missing: list[int] = []
        for i, ref in enumerate(blocks):
            key = (ref.agent_id, ref.label)
            if memo is not None and key in memo:
                found = memo[key]
            else:
                found = self.resolve(ref) if self.resolve is not None else None
                if memo is not None:
                    memo[key] = found
            if found is None:
                rows.append([ref.block_id, ref.label, ref.agent_id, None])
                missing.append(i)
            else:
                real, version = found
                rows.append([real.block_id, real.label, real.agent_id, version])
        return json.dumps(rows, ensure_ascii=False), json.dumps(missing)

    def _insert(
        self,
        staged: Staged,
        source: str,
        n: Notification,
        origin: str,
        call: str,
        cursor: str | None,
        at: str,
        resolved: tuple[str, str] | None = None,
    ) -> int:
        blocks, missing = self._resolved(n.blocks) if resolved is None else resolved
        cur = self._conn.execute(
            "INSERT INTO notifications (source, text, blocks, created_at, missing, origin, call,"
            " cursor) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [source, n.text, blocks, at, missing, origin, call, cursor],
        )
        new_id = int(cur.lastrowid or 0)
        staged.add(NOTIFICATION_RECORDS, new_id)
        return new_id

    def add(self, source: str, text: str, blocks: tuple[BlockRef, ...]) -> int:
        """Store a notification ``source`` emitted (``host.emit-notification``) now; during a
        pull of ``source`` it is held and stored with the pull instead, and during a restore
        (:meth:`restoring`) one stored already is dropped (0 is returned for both)."""
        capture = self._captures.get(source)
        if capture is not None:
            capture.emitted.append(Notification(text, tuple(blocks)))
            return 0
        # looked up first: the block store may catch its index up, which writes to index.db,
        # and must not wait for the transaction below
        notification = Notification(text, tuple(blocks))
        resolved = self._resolved(notification.blocks)
        with self._write("cannot store a notification", f"notification from {source}") as staged:
            # checked in the write transaction: another process restoring the same stream
            # stores its repeat between a check outside and this write
            if source in self._restoring and self._stored_already(source, notification):
                return 0
            return self._insert(
                staged,
                source,
                notification,
                "emit",
                self._calls.get(source, ""),
                None,
                timestamp(),
                resolved,
            )

    def _stored_already(self, source: str, n: Notification) -> bool:
        """Whether ``source`` stored a notification of the same text about the same blocks (by
        owner and label: ids and versions are the host's, resolved when stored)."""
        refs = [[b.label, b.agent_id] for b in n.blocks]
        rows = self._rows(
            "SELECT blocks FROM notifications WHERE source = ? AND text = ?", [source, n.text]
        )
        return any([ref[1:3] for ref in json.loads(blocks)] == refs for (blocks,) in rows)

    @contextmanager
    def restoring(self, source: str) -> Iterator[None]:
        """While the host restores stream ``source``'s recorded state into a fresh instance
        (it replays ``start``, see ``sync.restoring`` in the WIT): what the stream emits then
        and stored already (same text, same blocks) is dropped, not stored again -- a restore
        must not notify twice what the start it replays notified once."""
        self._restoring.add(source)
        try:
            yield
        finally:
            self._restoring.discard(source)

    def is_restoring(self, source: str) -> bool:
        return source in self._restoring

    @contextmanager
    def during(self, source: str, call: str) -> Iterator[None]:
        """Label what ``source`` emits inside the ``with`` block as coming from ``call``."""
        self._calls[source] = call
        try:
            yield
        finally:
            self._calls.pop(source, None)

    @contextmanager
    def capture(self, source: str, call: str) -> Iterator[PullCapture]:
        """Hold what ``source`` emits, and the cursor it sets, while its pull runs."""
        if source in self._captures:
            raise ConcurrencyError(f"stream {source!r} is already being pulled in this process")
        capture = PullCapture(source, call)
        self._captures[source] = capture
        try:
            yield capture
        finally:
            del self._captures[source]

    def set_cursor(self, source: str, cursor: str) -> None:
        """``sync.set-cursor``: only while a pull of ``source`` runs."""
        capture = self._captures.get(source)
        if capture is None:
            raise AccessDenied("set-cursor is only for a data stream, during its pull")
        capture.cursor = cursor

    def record_pull(
        self,
        stream: str,
        version: str,
        capture: PullCapture,
        pulled: Sequence[Notification],
        expected: str | None,
        cursor: str | None,
    ) -> list[StoredNotification]:
        """Store one pull's notifications (emitted ones first) and its new cursor, in ONE
        transaction. ``expected`` is the cursor the pull was given: if another pull moved it
        meanwhile, nothing is stored (ConcurrencyError). A ``cursor`` going backwards -- one
        this stream used before, or with both decimal numbers not above the current one -- is
        PullRefused, and nothing is stored. ``cursor`` None: the cursor stays."""
        # block references are looked up first: the block store may catch its index up, which
        # writes to index.db, and must not wait for the transaction below
        memo: dict[tuple[str, str], Any] = {}
        emitted = [self._resolved(n.blocks, memo) for n in capture.emitted]
        returned = [self._resolved(n.blocks, memo) for n in pulled]
        at = timestamp()
        message = (
            f"pull {stream}: {len(pulled)} notifications, {len(emitted)} emitted, "
            f"cursor {cursor if cursor is not None else expected}"
        )
        with self._write("cannot store a pull", message) as staged:
            row = self.stream(stream)
            if row.cursor != expected:
                raise ConcurrencyError(
                    f"stream {stream!r}: its cursor moved from {expected!r} to "
                    f"{row.cursor!r} while this pull ran (another pull of it?): "
                    "nothing of this pull was stored; pull again"
                )
            if cursor is not None and cursor != expected or cursor == expected and pulled:
                self._check_forward(stream, version, capture.call, row, cursor)
            ids = [
                self._insert(staged, stream, n, "emit", capture.call, None, at, r)
                for n, r in zip(capture.emitted, emitted)
            ]
            ids += [
                self._insert(staged, stream, n, "pull", capture.call, cursor, at, r)
                for n, r in zip(pulled, returned)
            ]
            self._upsert_stream(row)
            if cursor is not None and cursor != expected:
                seq = self._conn.execute(
                    "SELECT COALESCE(MAX(seq), 0) + 1 FROM stream_cursors WHERE stream = ?",
                    [stream],
                ).fetchone()[0]
                self._conn.execute(
                    "INSERT INTO stream_cursors (stream, seq, cursor, notifications,"
                    " pulled_at) VALUES (?, ?, ?, ?, ?)",
                    [stream, seq, cursor, len(pulled), at],
                )
                staged.add(CURSOR_RECORDS, stream, seq)
            self._conn.execute(
                "UPDATE streams SET cursor = ?, delivered = delivered + ?,"
                " pulls = pulls + 1, updated_at = ?, last_error = NULL WHERE key = ?",
                [row.cursor if cursor is None else cursor, len(pulled), at, stream],
            )
            staged.add(STREAM_RECORDS, stream)
            return self._select(f"WHERE id IN ({','.join('?' * len(ids))})", ids) if ids else []

    def _check_forward(
        self, stream: str, version: str, call: str, row: StreamRow, cursor: str | None
    ) -> None:
        def refuse(detail: str) -> PullRefused:
            return PullRefused(
                stream,
                version,
                call,
                "cursor-backwards",
                detail + f": nothing of this pull was stored, the cursor stays {row.cursor!r}",
            )

        if cursor is None or cursor == row.cursor:
            raise refuse(f"returned notifications without moving its cursor from {row.cursor!r}")
        used = self._conn.execute(
            "SELECT seq FROM stream_cursors WHERE stream = ? AND cursor = ?", [stream, cursor]
        ).fetchone()
        if used is not None:
            raise refuse(f"set the cursor back to {cursor!r}, which its pull #{used[0]} used")
        if _is_number(cursor) and _is_number(row.cursor) and int(cursor) <= int(row.cursor or 0):
            raise refuse(f"set the cursor back from {row.cursor} to {cursor}")

    # -- streams ---------------------------------------------------------------------------

    def stream(self, key: str) -> StreamRow:
        """The stored state of stream ``key`` (a stopped stream with no cursor if none)."""
        found = self._rows(
            "SELECT key, state, owner, cursor, delivered, pulls, updated_at, last_error"
            " FROM streams WHERE key = ?",
            [key],
        )
        return StreamRow(key) if not found else StreamRow(*found[0])

    def _upsert_stream(self, row: StreamRow) -> None:
        self._conn.execute(
            "INSERT OR IGNORE INTO streams (key, state, updated_at) VALUES (?, ?, ?)",
            [row.key, row.state, timestamp()],
        )

    def set_stream_state(self, key: str, state: str, owner: str | None) -> StreamRow:
        with self._write("cannot store a stream's state", f"stream {key} {state}") as staged:
            self._upsert_stream(StreamRow(key))
            self._conn.execute(
                "UPDATE streams SET state = ?, owner = ?, updated_at = ? WHERE key = ?",
                [state, owner, timestamp(), key],
            )
            staged.add(STREAM_RECORDS, key)
            return self.stream(key)

    def set_stream_error(self, key: str, error: str | None) -> None:
        with self._write(
            "cannot store a stream's error",
            f"stream {key}: {'error' if error else 'error cleared'}",
        ) as staged:
            self._upsert_stream(StreamRow(key))
            self._conn.execute(
                "UPDATE streams SET last_error = ?, updated_at = ? WHERE key = ?",
                [error, timestamp(), key],
            )
            staged.add(STREAM_RECORDS, key)

    def cursors(self, key: str) -> list[str]:
        """Every cursor stream ``key``'s pulls advanced to, oldest first."""
        rows = self._rows("SELECT cursor FROM stream_cursors WHERE stream = ? ORDER BY seq", [key])
        return [r[0] for r in rows]

    # -- reading and acknowledging ---------------------------------------------------------

    def _select(self, where: str, params: Sequence[Any] = ()) -> list[StoredNotification]:
        rows = self._rows(f"SELECT {_COLUMNS} FROM notifications {where} ORDER BY id", params)
        return [_stored(r) for r in rows]

    def list(self, unacked: bool = False, source: str | None = None) -> list[StoredNotification]:
        """Every notification (only those not acknowledged yet with ``unacked``), oldest first."""
        clauses: builtins.list[str] = []
        params: builtins.list[Any] = []
        if unacked:
            clauses.append("acked = 0")
        if source is not None:
            clauses.append("source = ?")
            params.append(source)
        return self._select(("WHERE " + " AND ".join(clauses)) if clauses else "", params)

    def ack(self, ids: Iterable[int]) -> builtins.list[StoredNotification]:
        """Acknowledge the notifications ``ids`` (again: no change); NotificationNotFound, and
        nothing acknowledged, if any id is unknown. Returns them."""
        wanted = sorted({int(i) for i in ids})
        if not wanted:
            return []
        marks = ",".join("?" * len(wanted))
        message = f"notifications acknowledged: {', '.join(map(str, wanted[:10]))}" + (
            f" and {len(wanted) - 10} more" if len(wanted) > 10 else ""
        )
        with self._write("cannot acknowledge notifications", message) as staged:
            fresh = {
                r[0]: r[1]
                for r in self._conn.execute(
                    f"SELECT id, acked FROM notifications WHERE id IN ({marks})", wanted
                )
            }
            unknown = [i for i in wanted if i not in fresh]
            if unknown:
                raise NotificationNotFound(unknown)
            self._conn.execute(
                f"UPDATE notifications SET acked = 1, acked_at = ? WHERE acked = 0 AND id IN ({marks})",
                [timestamp(), *wanted],
            )
            for i in wanted:
                if not fresh[i]:
                    staged.add(NOTIFICATION_RECORDS, i)
        return self._select(f"WHERE id IN ({marks})", wanted)


def _stored(r: Sequence[Any]) -> StoredNotification:
    refs = json.loads(r[3])
    missing = set(json.loads(r[6] or "[]"))
    blocks = tuple(BlockRef(b[0], b[1], b[2]) for b in refs)
    versions = tuple(b[3] if len(b) > 3 else None for b in refs)
    return StoredNotification(
        id=r[0],
        source=r[1],
        text=r[2],
        blocks=blocks,
        created_at=r[4],
        acked=bool(r[5]),
        missing_blocks=tuple(b for i, b in enumerate(blocks) if i in missing),
        block_versions=versions,
        origin=r[7],
        call=r[8],
        cursor=r[9],
        acked_at=r[10],
    )
