"""The run log: one row per writer run (``blocksync sync``, ``reconcile``, ``pull``, ``push``)
in ``index.db`` table ``runs``.

A row is written when the run starts (``status = 'running'``) and completed when it ends
(``finished``, with its exit code, summary counts and the whole report as JSON), so a run that
dies half-way is still visible. Unlike the version index, runs cannot be re-derived from block
history: they are history of what the cron job did, kept in their own table beside
``conflicts`` and, like conflicts, as records on ``refs/blocksync/records`` (:data:`RECORDS`,
:mod:`blocksync.store.records`) written in the same transaction, so ``index rebuild`` restores them.
A row reaches git once, when it leaves ``running``: one records commit per run, not two (a
cron job every minute would otherwise add a million commits a year to the ref, and a run that
changed nothing would spend a third of its records time announcing itself). A run killed
mid-way is still a ``running`` row of index.db, and the next run records it ``interrupted``;
``index rebuild`` keeps such a row (git lacks it), ``fsck`` does not count it as a disagreement.

Life of a row::

    start ──▶ running ──finish──▶ finished                    finished_at, exit_code
                 │
                 ├──interrupt──▶ interrupted                  finished_at, exit_code 130/143
                 │   (SIGINT/SIGTERM: it stopped at a safe point and said so)
                 │
                 └──(its process is gone when a later run starts)──▶ interrupted
                                                              no finished_at, no exit_code

Decisions:

* **Ids** are the caller's run ids (``reconcile.new_run_id``: UTC start time and random hex
  digits), the same ids conflicts name as the run that detected them; a taken id is refused.
* **Interrupted runs**: a run stopped by SIGINT or SIGTERM (:mod:`blocksync.interrupts`) records
  its end itself (:meth:`RunLog.interrupt`): ``interrupted``, with the time, the exit code it
  exits with (128 + the signal's number) and the report of what it did before it stopped. A
  process killed mid-run (``kill -9``, a second Ctrl-C) cannot finish its row: :meth:`RunLog.start`
  marks it ``interrupted`` (its ``finished_at`` and ``exit_code`` stay empty: nobody saw it
  end). A caller holding the run lock says so (``exclusive=True``), and then every other
  ``running`` row is dead by definition, since its run would hold the lock; without that, only
  rows whose pid no longer exists here are marked (a reused pid -- pid 1 in containers -- can
  keep such a row ``running`` until an exclusive run starts).
* **Counts** are columns (queryable with plain SQL); the report is kept as JSON text whose shape
  is the sync report's ``to_json()``.
* Every write is one ``BEGIN IMMEDIATE`` transaction on the workspace's ``index.db`` handle,
  like the conflict index (and one records commit, when opened with ``records=``); timestamps are
  ISO 8601 UTC with microseconds.
"""

from __future__ import annotations

import builtins
import json
import os
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, Literal

import sqlite_utils

from blocksync.errors import AmbiguousRunId, RunNotFound, UsageError

from .db import Migrations, create_table, preparer, timestamp
from .sqlitetable import RecordKind, SqliteTable, by_id_or_prefix

Status = Literal["running", "finished", "interrupted"]
#: what every run id starts with (``sync.run.new_run_id``): a prefix may leave it out
_ID_PREFIX = "run-"


@dataclass(frozen=True)
class Summary:
    """The counts a finished run is summed up by (over every source it ran)."""

    sources: int = 0
    failed_sources: int = 0
    resolved: int = 0
    needs_resolution: int = 0
    unchanged: int = 0
    skipped: int = 0
    open_conflicts: int = 0


@dataclass(frozen=True)
class Run:
    """One row of the ``runs`` table."""

    id: str
    seq: int  # insertion order; "newest" means highest seq
    command: str
    status: Status
    pid: int
    started_at: str
    finished_at: str | None
    exit_code: int | None
    sources: int | None
    failed_sources: int | None
    resolved: int | None
    needs_resolution: int | None
    unchanged: int | None
    skipped: int | None
    open_conflicts: int | None
    report: dict[str, Any] | None

    @property
    def seconds(self) -> float | None:
        """How long the run took, start to end (None: nobody saw it end)."""
        if self.finished_at is None:
            return None
        took = _parse_time(self.finished_at) - _parse_time(self.started_at)
        return round(took.total_seconds(), 3)

    def to_json(self) -> dict[str, Any]:
        return {**{f.name: getattr(self, f.name) for f in fields(self)}, "seconds": self.seconds}


def _parse_time(stamp: str) -> datetime:
    """A timestamp of :func:`~blocksync.index.db.timestamp` (``...Z``, microseconds)."""
    return datetime.fromisoformat(stamp)


_SUMMARY = tuple(f.name for f in fields(Summary))
_FIELDS = tuple(f.name for f in fields(Run))
_COLUMNS = ", ".join(_FIELDS)

_SCHEMA = (
    """
    CREATE TABLE IF NOT EXISTS runs (
        seq INTEGER PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        command TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('running', 'finished', 'interrupted')),
        pid INTEGER NOT NULL,
        started_at TEXT NOT NULL,
        finished_at TEXT,
        exit_code INTEGER,
        sources INTEGER,
        failed_sources INTEGER,
        resolved INTEGER,
        needs_resolution INTEGER,
        unchanged INTEGER,
        skipped INTEGER,
        open_conflicts INTEGER,
        report TEXT,
        CHECK (status <> 'finished' OR exit_code IS NOT NULL),
        CHECK (status <> 'running' OR exit_code IS NULL)
    )
    """,
    "CREATE INDEX IF NOT EXISTS runs_by_status ON runs (status)",
)


#: the check of tables made before runs stopped by a signal recorded their exit code
_OLD_CHECK = "CHECK ((status = 'finished') = (exit_code IS NOT NULL))"


#: the schema of the ``runs`` table, in order (see :mod:`blocksync.index.db`)
MIGRATIONS = Migrations("runs")


@MIGRATIONS(name="runs_table")
def _create_table(db: sqlite_utils.Database) -> None:
    create_table(db, "runs", _FIELDS, _SCHEMA)


@MIGRATIONS(name="runs_exit_code_when_interrupted")
def _allow_exit_code_when_interrupted(db: sqlite_utils.Database) -> None:
    """Rebuild a ``runs`` table made with :data:`_OLD_CHECK` (which refuses an exit code on an
    interrupted row) with today's checks, keeping every row."""
    found = db.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'runs'")
    if _OLD_CHECK not in found.fetchone()[0]:
        return
    db.execute("ALTER TABLE runs RENAME TO runs_old")
    db.execute("DROP INDEX IF EXISTS runs_by_status")
    for statement in _SCHEMA:
        db.execute(statement)
    db.execute(f"INSERT INTO runs (seq, {_COLUMNS}) SELECT seq, {_COLUMNS} FROM runs_old")
    db.execute("DROP TABLE runs_old")


#: how rows are kept in git: ``runs/<h[:2]>/<h[2:4]>/<run id>.json``
RECORDS = RecordKind(
    folder="runs",
    noun="run",
    table="runs",
    columns=_FIELDS,
    key=("id",),
    prepare=preparer(MIGRATIONS),
    in_flight=lambda row: row["status"] == "running",
)


def _alive(pid: int) -> bool:
    """Whether a process with this pid exists here (one we may not signal still exists)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _row(values: tuple[Any, ...]) -> Run:
    data = dict(zip(_FIELDS, values))
    data["report"] = json.loads(data["report"]) if data["report"] is not None else None
    return Run(**data)


class RunLog(SqliteTable):
    """The ``runs`` table of ``index.db`` (a context manager; on the workspace's
    :class:`~blocksync.index.db.IndexDb`)."""

    TABLE = "runs"
    COLUMNS = _FIELDS
    MIGRATIONS = MIGRATIONS

    def close(self) -> None:
        self.disconnect()

    def _select(self, where: str, params: builtins.list[Any]) -> builtins.list[Run]:
        rows = self._conn.execute(f"SELECT {_COLUMNS} FROM runs {where}", params).fetchall()
        return [_row(r) for r in rows]

    def _fetch(self, run_id: str) -> Run:
        found = self._select("WHERE id = ?", [run_id])
        if not found:
            raise RunNotFound(run_id)
        return found[0]

    def _find(self, run_id: str) -> Run:
        """The row named by an id or a unique id prefix (``run-`` may be left out)."""
        return by_id_or_prefix(
            self._select,
            run_id.strip(),
            _ID_PREFIX,
            lambda: RunNotFound(run_id),
            lambda matches: AmbiguousRunId(run_id, [m.id for m in matches]),
        )

    # -- the API --------------------------------------------------------------------------

    def start(
        self,
        run_id: str,
        command: str,
        *,
        exclusive: bool = False,
        pid: int | None = None,
        started_at: str | None = None,
    ) -> Run:
        """Record that run ``run_id`` of ``command`` started now (or at ``started_at``, a
        :func:`~blocksync.index.db.timestamp`: a run recorded once it knows it is worth a row,
        as ``blocksync watch`` records its rounds), and mark dead runs interrupted.

        ``exclusive``: the caller holds the run lock, so no other run is still going. The new
        row is index.db's only until it ends (module docstring); the dead runs it marks are
        recorded now.
        """
        with self._write("cannot record a run", f"run {run_id} started: {command}") as staged:
            running = self._conn.execute(
                "SELECT id, pid FROM runs WHERE status = 'running'"
            ).fetchall()
            for stale_id, stale_pid in running:
                if exclusive or not _alive(stale_pid):
                    staged.add(RECORDS, stale_id)
                    self._conn.execute(
                        "UPDATE runs SET status = 'interrupted' WHERE id = ?", [stale_id]
                    )
            try:
                self._conn.execute(
                    "INSERT INTO runs (id, command, status, pid, started_at) "
                    "VALUES (?, ?, 'running', ?, ?)",
                    [
                        run_id,
                        command,
                        os.getpid() if pid is None else pid,
                        started_at or timestamp(),
                    ],
                )
            except sqlite3.IntegrityError as exc:
                raise UsageError(f"run id {run_id!r} is taken already") from exc
            return self._fetch(run_id)

    def finish(
        self,
        run_id: str,
        *,
        exit_code: int,
        summary: Summary,
        report: Mapping[str, Any],
        finished_at: str | None = None,
    ) -> Run:
        """Complete the row of ``run_id`` with its outcome (``finished_at`` default: now)."""
        return self._end(run_id, "finished", exit_code, summary, report, finished_at)

    def _end(
        self,
        run_id: str,
        status: Status,
        exit_code: int,
        summary: Summary,
        report: Mapping[str, Any],
        finished_at: str | None,
    ) -> Run:
        doc = json.dumps(report, ensure_ascii=False, sort_keys=True)
        counts = [getattr(summary, name) for name in _SUMMARY]
        assignments = ", ".join(f"{name} = ?" for name in _SUMMARY)
        with self._write(
            "cannot record a run", f"run {run_id} {status}: exit {exit_code}"
        ) as staged:
            self._fetch(run_id)
            staged.add(RECORDS, run_id)
            self._conn.execute(
                f"UPDATE runs SET status = ?, finished_at = ?, exit_code = ?, "
                f"{assignments}, report = ? WHERE id = ?",
                [status, finished_at or timestamp(), exit_code, *counts, doc, run_id],
            )
            return self._fetch(run_id)

    def interrupt(
        self, run_id: str, *, exit_code: int, summary: Summary, report: Mapping[str, Any]
    ) -> Run:
        """Complete the row of ``run_id``, stopped by a signal, as ``interrupted`` (now)."""
        return self._end(run_id, "interrupted", exit_code, summary, report, None)

    def get(self, run_id: str) -> Run:
        """The run ``run_id`` names: its whole id, or a prefix of one run's id (``run-`` may
        be left out). :class:`RunNotFound`, or :class:`AmbiguousRunId` naming the matches."""
        with self.db.lock, self._translate("cannot read runs"):
            return self._find(run_id)

    def list(self, limit: int | None = None) -> builtins.list[Run]:
        """Runs, newest first (at most ``limit`` of them, a whole number >= 1)."""
        if limit is not None and (type(limit) is not int or limit < 1):
            raise UsageError(f"limit must be a whole number of at least 1, not {limit!r}")
        tail, params = ("LIMIT ?", [limit]) if limit is not None else ("", [])
        with self.db.lock, self._translate("cannot read runs"):
            return self._select(f"ORDER BY seq DESC {tail}", params)
