"""The conflict index: every conflict reconcile could not settle, in ``index.db`` table ``conflicts``.

Modelled on Dolt's conflict tables: a row holds the three sides of one path -- ``base`` (what both
sides held at the last sync), ``disk`` (the outside source) and ``agent`` (the block) -- with
their SHA-256 hashes, so an agent or a human can look at a conflict, decide, and undo the decision.
This module is storage and state machine only. Reading and writing blocks and sources while a
conflict is resolved or undone is the reconcile layer's job; it calls this API around that work.

Life of a row::

    record ──▶ open ──mark_resolved / close("resolved")──▶ resolved
                │  ▲                                          │
                │  └───────────────mark_undone────────────────┘  (only after mark_resolved)
                ├──record (a side moved)──▶ superseded   (superseded_by names the successor)
                └──close("vanished")──────▶ vanished     (reconcile found nothing to resolve)

Decisions:

* **Hashes** are SHA-256 hex of the UTF-8 content; an absent side (deleted, never created) is
  ``None`` in both its content and hash columns. Contents are text: a binary or non-UTF-8 file is
  reported by the reconcile layer, never stored here.
* **Ids** are ``"c-"`` plus 10 hex digits of SHA-256 over ``(source, path, disk, agent, base)``
  hashes: the same conflict detected again while open keeps its id. If that id already names a
  closed row (the sides came back to an earlier state) a counter is mixed into the hash, so ids
  never repeat. :meth:`ConflictIndex.get` accepts any unique prefix, with or without ``c-``.
* **Re-runs never duplicate rows**: ``record`` reads and writes in one ``BEGIN IMMEDIATE``
  transaction, and a partial unique index allows one ``open`` row per ``(source, path)``.
* **Staleness is the caller's check**: before resolving, re-read both sides and call
  :func:`is_current` (or :func:`require_current`, which raises :class:`StaleResolution`).
* **Not raised again**: a conflict resolved by :meth:`ConflictIndex.mark_resolved` is not raised
  again while disk and agent hold exactly what they held when it was resolved (the row's disk and
  agent hashes). Only the newest such decision for the path counts, and only decisions: a row
  that reconcile closed on its own (:meth:`ConflictIndex.close`) is not a decision about those
  sides. ``record`` then returns the resolved row, so the reconcile layer can finish applying it.
* **Undo** reopens the same row (same id) and keeps the undone resolution in ``undone_*``. It is
  refused unless the row was resolved by ``mark_resolved`` and is still the newest row of its
  path: once a later conflict was detected there, restoring the old sides would clobber it.
* **Timestamps** are ISO 8601 UTC with microseconds (``2024-05-01T12:00:00.000000Z``).
* ``resolved_at`` is when a row was closed by a resolution or by reconcile (resolved or
  vanished); a superseded row has ``superseded_by`` and ``updated_at`` instead.
* **Kept in git too**: reconcile cannot re-detect a resolved conflict (nor the sides an undo
  puts back), so every row is also a record on ``refs/blocksync/records`` (:data:`RECORDS`,
  :mod:`blocksync.store.records`), written in the same transaction as the row, git first. Opened
  with ``records=``, the index keeps both; :meth:`ConflictIndex.batch` makes one records
  commit of many writes (a reconcile of one source). ``blocksync index rebuild`` restores the
  table from the ref.
"""

from __future__ import annotations

import builtins
import hashlib
import json
from dataclasses import dataclass, fields
from typing import Any, Literal, get_args

import sqlite_utils

from blocksync.errors import (
    AlreadyResolved,
    AmbiguousConflictId,
    CannotUndo,
    ConflictNotFound,
    ConflictNotOpen,
    InvalidContent,
    StaleResolution,
    UsageError,
)

from .db import Migrations, create_table, preparer, timestamp
from .sqlitetable import RecordKind, SqliteTable, by_id_or_prefix

Status = Literal["open", "resolved", "superseded", "vanished"]
#: what a resolution through the API took; reconcile closing a row may store its own text
Resolution = Literal["disk", "agent", "merged", "manual"]
#: the side a resolution takes (a manual one gives its content instead)
Take = Literal["disk", "agent", "merged"]
#: why a row left ``open``: a resolution, reconcile, or a newer row for the same path
ClosedBy = Literal["resolve", "reconcile", "supersede"]

STATUSES: tuple[str, ...] = get_args(Status)
RESOLUTIONS: tuple[str, ...] = get_args(Resolution)

#: seconds a writer waits for another process's transaction before giving up

_ID_PREFIX = "c-"
_ID_HEX = 10


@dataclass(frozen=True)
class Conflict:
    """One row of the ``conflicts`` table."""

    id: str
    seq: int  # insertion order; "newest" means highest seq
    source: str
    path: str
    owner: str
    label: str
    base: str | None  # None: the side is absent (no base yet, file deleted, block deleted)
    base_hash: str | None
    disk: str | None
    disk_hash: str | None
    agent: str | None
    agent_hash: str | None
    reason: str
    detected_run: str
    detected_at: str
    updated_at: str
    status: Status
    resolution: str | None
    resolved_by: str | None
    resolved_at: str | None
    result_version: int | None
    closed_by: ClosedBy | None
    superseded_by: str | None
    undone_at: str | None
    undone_by: str | None
    undone_resolution: str | None
    undone_result_version: int | None


_FIELDS = tuple(f.name for f in fields(Conflict))
_COLUMNS = ", ".join(_FIELDS)

_SCHEMA = (
    """
    CREATE TABLE IF NOT EXISTS conflicts (
        seq INTEGER PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        source TEXT NOT NULL,
        path TEXT NOT NULL,
        owner TEXT NOT NULL,
        label TEXT NOT NULL,
        base TEXT,
        base_hash TEXT,
        disk TEXT,
        disk_hash TEXT,
        agent TEXT,
        agent_hash TEXT,
        reason TEXT NOT NULL,
        detected_run TEXT NOT NULL,
        detected_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        status TEXT NOT NULL
            CHECK (status IN ('open', 'resolved', 'superseded', 'vanished')),
        resolution TEXT,
        resolved_by TEXT,
        resolved_at TEXT,
        result_version INTEGER,
        closed_by TEXT CHECK (closed_by IN ('resolve', 'reconcile', 'supersede')),
        superseded_by TEXT,
        undone_at TEXT,
        undone_by TEXT,
        undone_resolution TEXT,
        undone_result_version INTEGER,
        CHECK ((base IS NULL) = (base_hash IS NULL)),
        CHECK ((disk IS NULL) = (disk_hash IS NULL)),
        CHECK ((agent IS NULL) = (agent_hash IS NULL)),
        CHECK ((status = 'open') = (closed_by IS NULL)),
        CHECK ((status = 'superseded') = (superseded_by IS NOT NULL))
    )
    """,
    # the rule "re-runs never duplicate rows", held by SQLite itself
    (
        "CREATE UNIQUE INDEX IF NOT EXISTS conflicts_one_open ON conflicts (source, path) "
        "WHERE status = 'open'"
    ),
    "CREATE INDEX IF NOT EXISTS conflicts_by_path ON conflicts (source, path, seq)",
    "CREATE INDEX IF NOT EXISTS conflicts_by_status ON conflicts (status, source, seq)",
)


#: the schema of the ``conflicts`` table, in order (see :mod:`blocksync.index.db`)
MIGRATIONS = Migrations("conflicts")


@MIGRATIONS(name="conflicts_table")
def _create_table(db: sqlite_utils.Database) -> None:
    create_table(db, "conflicts", _FIELDS, _SCHEMA)


#: how rows are kept in git: ``conflicts/<h[:2]>/<h[2:4]>/<id>/`` holding ``row.json`` and one
#: file per side present (``base``, ``disk``, ``agent``)
RECORDS = RecordKind(
    folder="conflicts",
    noun="conflict",
    table="conflicts",
    columns=_FIELDS,
    key=("id",),
    prepare=preparer(MIGRATIONS),
    files=("base", "disk", "agent"),
)


def side_hash(content: str | None) -> str | None:
    """SHA-256 hex of a conflict side's UTF-8 content; ``None`` for an absent side. Stricter
    than :func:`blocksync.shared.truth.content_hash`: a lone surrogate cannot be stored in a row, so
    it is refused here (``InvalidContent``) rather than hashed."""
    if content is None:
        return None
    try:
        data = content.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidContent(
            f"conflict content is not valid text: {exc.reason} at position {exc.start}"
        ) from exc
    return hashlib.sha256(data).hexdigest()


def changed_sides(conflict: Conflict, disk: str | None, agent: str | None) -> tuple[str, ...]:
    """The sides (``"disk"``, ``"agent"``) that no longer hold what the conflict recorded."""
    moved = []
    if side_hash(disk) != conflict.disk_hash:
        moved.append("disk")
    if side_hash(agent) != conflict.agent_hash:
        moved.append("agent")
    return tuple(moved)


def is_current(conflict: Conflict, disk: str | None, agent: str | None) -> bool:
    """Whether disk and agent, as the caller just read them, still hold the conflict's sides."""
    return not changed_sides(conflict, disk, agent)


def require_current(conflict: Conflict, disk: str | None, agent: str | None) -> None:
    """Raise :class:`StaleResolution` unless both sides still hold what the conflict recorded."""
    moved = changed_sides(conflict, disk, agent)
    if moved:
        raise StaleResolution(conflict.id, moved)


def conflict_id(
    source: str,
    path: str,
    disk_hash: str | None,
    agent_hash: str | None,
    base_hash: str | None,
    attempt: int = 0,
) -> str:
    """The id of a conflict; ``attempt`` > 0 picks another when the first is taken."""
    key: list[object] = [source, path, disk_hash, agent_hash, base_hash]
    if attempt:
        key.append(attempt)
    digest = hashlib.sha256(json.dumps(key).encode("utf-8")).hexdigest()
    return _ID_PREFIX + digest[:_ID_HEX]


def _row(values: tuple[Any, ...]) -> Conflict:
    return Conflict(*values)


class ConflictIndex(SqliteTable):
    """The ``conflicts`` table of ``index.db`` (on the workspace's :class:`~blocksync.index.db.IndexDb`).

    Transactions, error translation and records in git as
    :class:`~blocksync.index.sqlitetable.SqliteTable`. Use it as a context manager, or call
    :meth:`disconnect` (``close`` closes conflicts).
    """

    TABLE = "conflicts"
    COLUMNS = _FIELDS
    MIGRATIONS = MIGRATIONS

    # -- rows -----------------------------------------------------------------------------

    def _select(self, where: str, params: builtins.list[Any]) -> builtins.list[Conflict]:
        rows = self._conn.execute(f"SELECT {_COLUMNS} FROM conflicts {where}", params).fetchall()
        return [_row(r) for r in rows]

    def _fetch(self, id: str) -> Conflict:
        found = self._select("WHERE id = ?", [id])
        if not found:
            raise ConflictNotFound(id)
        return found[0]

    def _find(self, id: str) -> Conflict:
        """The row named by an id or a unique id prefix (``c-`` may be left out)."""
        return by_id_or_prefix(
            self._select,
            id.strip().lower(),
            _ID_PREFIX,
            lambda: ConflictNotFound(id),
            lambda matches: AmbiguousConflictId(id, [m.id for m in matches]),
        )

    def _open_row(self, source: str, path: str) -> Conflict | None:
        found = self._select("WHERE source = ? AND path = ? AND status = 'open'", [source, path])
        return found[0] if found else None

    def _latest_decision(self, source: str, path: str) -> Conflict | None:
        found = self._select(
            "WHERE source = ? AND path = ? AND status = 'resolved' AND closed_by = 'resolve' "
            # seq order is decision order: a decision can only be undone (and so made again
            # later) while it is the newest row of its path
            "ORDER BY seq DESC LIMIT 1",
            [source, path],
        )
        return found[0] if found else None

    def _free_id(self, source: str, path: str, hashes: tuple[str | None, ...]) -> str:
        base_hash, disk_hash, agent_hash = hashes
        attempt = 0
        while True:
            candidate = conflict_id(source, path, disk_hash, agent_hash, base_hash, attempt)
            if not self._conn.execute(
                "SELECT 1 FROM conflicts WHERE id = ?", [candidate]
            ).fetchone():
                return candidate
            attempt += 1

    def _supersede(self, old: str, new: str, now: str) -> None:
        self._stage(old)
        self._conn.execute(
            "UPDATE conflicts SET status = 'superseded', closed_by = 'supersede', "
            "superseded_by = ?, updated_at = ? WHERE id = ?",
            [new, now, old],
        )

    def _stage(self, id: str) -> None:
        """Name a row this write transaction changes: its record is written with it."""
        assert self._staged is not None, "only inside a write transaction"
        self._staged.add(RECORDS, id)

    # -- the API --------------------------------------------------------------------------

    def record(
        self,
        *,
        source: str,
        path: str,
        owner: str,
        label: str,
        base: str | None,
        disk: str | None,
        agent: str | None,
        reason: str,
        run_id: str,
        decisions_hold: bool = True,
    ) -> tuple[Conflict, bool]:
        """Note that reconcile found ``path`` of ``source`` needing resolution.

        Returns the row that stands for it and whether that row is new: the open row with the
        same three hashes (unchanged, not new); else the newest decision whose disk and agent
        hashes are these (not new: it is not raised again), unless ``decisions_hold`` is false
        (a remote's record of the conflict, which says itself that it is open); else a new open
        row, superseding any open row of the path whose sides differ.
        """
        hashes = (side_hash(base), side_hash(disk), side_hash(agent))
        with self._write("cannot record a conflict") as staged:
            current = self._open_row(source, path)
            if current is not None and hashes == (
                current.base_hash,
                current.disk_hash,
                current.agent_hash,
            ):
                return current, False
            now = timestamp()
            decided = self._latest_decision(source, path) if decisions_hold else None
            if decided is not None and hashes[1:] == (decided.disk_hash, decided.agent_hash):
                if current is not None:
                    self._supersede(current.id, decided.id, now)
                    staged.say(f"conflict {current.id} superseded by {decided.id}: {source} {path}")
                return decided, False
            new_id = self._free_id(source, path, hashes)
            if current is not None:
                self._supersede(current.id, new_id, now)
            self._conn.execute(
                "INSERT INTO conflicts (id, source, path, owner, label, base, base_hash, disk, "
                "disk_hash, agent, agent_hash, reason, detected_run, detected_at, updated_at, "
                "status) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'open')",
                [
                    new_id,
                    source,
                    path,
                    owner,
                    label,
                    base,
                    hashes[0],
                    disk,
                    hashes[1],
                    agent,
                    hashes[2],
                    reason,
                    run_id,
                    now,
                    now,
                ],
            )
            self._stage(new_id)
            staged.say(f"conflict {new_id} recorded: {source} {path}")
            return self._fetch(new_id), True

    def close(
        self,
        source: str,
        path: str,
        *,
        status: Literal["resolved", "vanished"],
        resolution: str | None,
        resolver: str | None,
        result_version: int | None,
    ) -> builtins.list[Conflict]:
        """Close the open row of ``path``: reconcile found it resolved, or nothing to resolve.

        ``resolution`` is reconcile's own account (e.g. ``"merged"``, ``"disk -> agent"``).
        Returns the rows closed (none when the path had no open conflict).
        """
        if status not in ("resolved", "vanished"):
            raise UsageError(f"a conflict is closed as 'resolved' or 'vanished', not {status!r}")
        with self._write("cannot close a conflict") as staged:
            rows = self._select("WHERE source = ? AND path = ? AND status = 'open'", [source, path])
            now = timestamp()
            for row in rows:
                self._stage(row.id)
                staged.say(f"conflict {row.id} {status} ({resolver}): {source} {path}")
                self._conn.execute(
                    "UPDATE conflicts SET status = ?, closed_by = 'reconcile', resolution = ?, "
                    "resolved_by = ?, resolved_at = ?, result_version = ?, updated_at = ? "
                    "WHERE id = ?",
                    [status, resolution, resolver, now, result_version, now, row.id],
                )
            return [self._fetch(row.id) for row in rows]

    def get(self, id: str) -> Conflict:
        """The conflict with this id, or the only one whose id starts with it."""
        with self._read():
            return self._find(id)

    def mark_resolved(
        self, id: str, *, resolution: Resolution, resolver: str, result_version: int | None
    ) -> Conflict:
        """Record a decision on an open conflict (the caller has applied it and checked staleness)."""
        if resolution not in RESOLUTIONS:
            raise UsageError(
                f"a resolution takes one of {', '.join(RESOLUTIONS)}, not {resolution!r}"
            )
        with self._write("cannot resolve a conflict") as staged:
            row = self._find(id)
            self._check_open(row)
            self._stage(row.id)
            staged.say(f"conflict {row.id} resolved ({resolution}) by {resolver}")
            now = timestamp()
            self._conn.execute(
                "UPDATE conflicts SET status = 'resolved', closed_by = 'resolve', resolution = ?, "
                "resolved_by = ?, resolved_at = ?, result_version = ?, updated_at = ? WHERE id = ?",
                [resolution, resolver, now, result_version, now, row.id],
            )
            return self._fetch(row.id)

    def mark_undone(self, id: str, *, resolver: str | None = None) -> Conflict:
        """Reopen a conflict resolved by :meth:`mark_resolved`; the caller restores the sides.

        Read ``result_version`` from the returned row's ``undone_result_version``.
        """
        with self._write("cannot undo a conflict") as staged:
            row = self._find(id)
            self._check_undoable(row)
            self._stage(row.id)
            staged.say(f"conflict {row.id} undone by {resolver}")
            now = timestamp()
            self._conn.execute(
                "UPDATE conflicts SET status = 'open', closed_by = NULL, "
                "undone_resolution = resolution, undone_result_version = result_version, "
                "undone_at = ?, undone_by = ?, resolution = NULL, resolved_by = NULL, "
                "resolved_at = NULL, result_version = NULL, updated_at = ? WHERE id = ?",
                [now, resolver, now, row.id],
            )
            return self._fetch(row.id)

    def require_open(self, id: str) -> Conflict:
        """The conflict, if it may be resolved now (checked before the sides are written)."""
        with self._read():
            row = self._find(id)
            self._check_open(row)
            return row

    def require_undoable(self, id: str) -> Conflict:
        """The conflict, if its resolution may be undone now (checked before writing)."""
        with self._read():
            row = self._find(id)
            self._check_undoable(row)
            return row

    @staticmethod
    def _check_open(row: Conflict) -> None:
        if row.status == "resolved":
            raise AlreadyResolved(row.id, row.resolution, row.resolved_by, row.resolved_at)
        if row.status != "open":
            raise ConflictNotOpen(row.id, row.status, superseded_by=row.superseded_by)

    def _check_undoable(self, row: Conflict) -> None:
        if row.status != "resolved":
            raise CannotUndo(row.id, f"it is {row.status}, not resolved")
        if row.closed_by != "resolve":
            raise CannotUndo(
                row.id, "reconcile closed it on its own: there is no resolution to undo"
            )
        newer = self._conn.execute(
            "SELECT id FROM conflicts WHERE source = ? AND path = ? AND seq > ? "
            "ORDER BY seq DESC LIMIT 1",
            [row.source, row.path, row.seq],
        ).fetchone()
        if newer is not None:
            raise CannotUndo(
                row.id, f"the path has moved on since: conflict {newer[0]} was detected after it"
            )

    def open_count(self, source: str | None = None, *, owner: str | None = None) -> int:
        """How many conflicts are open, of one source and/or one owner's blocks, or all."""
        where, params = _where("open", source, owner)
        with self._read():
            (count,) = self._conn.execute(
                f"SELECT COUNT(*) FROM conflicts {where}", params
            ).fetchone()
        return int(count)

    def list(
        self,
        status: str = "open",
        source: str | None = None,
        *,
        owner: str | None = None,
        limit: int | None = None,
    ) -> builtins.list[Conflict]:
        """Conflicts with this status (or ``"all"``), of one source or every one, of one
        owner's blocks or every owner's; newest first, the ``limit`` newest only if given."""
        if status != "all" and status not in STATUSES:
            raise UsageError(
                f"unknown conflict status {status!r}: use one of {', '.join(STATUSES)} or all"
            )
        where, params = _where(status, source, owner)
        where += " ORDER BY seq DESC" + ("" if limit is None else f" LIMIT {int(limit)}")
        with self._read():
            return self._select(where, params)


def _where(status: str, source: str | None, owner: str | None) -> tuple[str, builtins.list[str]]:
    """The WHERE clause (maybe empty) picking rows of ``status`` (``"all"``: any), ``source``
    and ``owner`` (None: any), and its parameters."""
    wanted = {"status": None if status == "all" else status, "source": source, "owner": owner}
    given = {column: value for column, value in wanted.items() if value is not None}
    if not given:
        return "", []
    return "WHERE " + " AND ".join(f"{column} = ?" for column in given), list(given.values())
