"""index.db: one connection per workspace, registered migrations, old files upgraded (issue 13,
item 4)."""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest
import sqlite_utils

import blocksync
from blocksync.errors import IndexCorrupt
from blocksync.index import conflicts, notifications, runs, statcache, versions
from blocksync.index.base_index import MIGRATIONS as BASE_MIGRATIONS
from blocksync.index.base_index import BaseIndex
from blocksync.index.conflicts import ConflictIndex
from blocksync.index.db import IndexDb, Migrations
from blocksync.index.notifications import NotificationLog
from blocksync.index.runs import RunLog, Summary
from blocksync.index.versions import VersionIndex

#: every migration set, by the name its rows carry in _sqlite_migrations
SETS = {
    "versions": versions.MIGRATIONS,
    "conflicts": conflicts.MIGRATIONS,
    "runs": runs.MIGRATIONS,
    "notifications": notifications.MIGRATIONS,
    "base_index": BASE_MIGRATIONS,
    "statcache": statcache.MIGRATIONS,
}


@pytest.fixture
def ws(tmp_path: Path) -> Iterator[blocksync.Workspace]:
    with blocksync.init(tmp_path / "store") as opened:
        yield opened


def _every_table(ws: blocksync.Workspace) -> list[object]:
    """Every table module's object a workspace hands out (the base index as plugins get it)."""
    return [
        ws.blocks,
        ws.conflict_index,
        ws.run_log(),
        ws.notifications,
        BaseIndex(ws.blocks.index_db),
        statcache.StatCache(ws.blocks.index_db, "notes"),
    ]


def _open_files(path: Path) -> int:
    """How many descriptors of this process have ``path`` open (one per SQLite connection)."""
    fds = Path("/proc/self/fd")
    if not fds.is_dir():
        pytest.skip("needs /proc")
    count = 0
    for fd in fds.iterdir():
        try:
            count += Path(os.readlink(fd)) == path.resolve()
        except OSError:
            continue
    return count


def test_one_connection_per_workspace(ws: blocksync.Workspace) -> None:
    tables = _every_table(ws)
    ws.conflicts.list("all")
    ws.notifications.list()
    assert all(getattr(t, "index_db", getattr(t, "db", None)) is ws.index_db for t in tables)
    assert _open_files(ws.index_path) == 1


def test_synchronous_normal_and_wal_on_every_tables_connection(
    ws: blocksync.Workspace, tmp_path: Path
) -> None:
    alone = tmp_path / "alone.db"
    handles = (
        [ws.index_db]
        + [
            t.db
            for t in (ConflictIndex(alone), RunLog(alone), NotificationLog(alone), BaseIndex(alone))
        ]
        + [VersionIndex.open(alone, create=True).index_db]
    )
    for handle in handles:
        assert handle.conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
        assert handle.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    for handle in handles[1:]:
        handle.close()


def test_migrations_are_applied_once_and_recorded(ws: blocksync.Workspace) -> None:
    _every_table(ws)
    db = sqlite_utils.Database(sqlite3.connect(ws.index_path))
    rows = list(db["_sqlite_migrations"].rows)
    names = [(r["migration_set"], r["name"]) for r in rows]
    assert len(names) == len(set(names))
    for name, migrations in SETS.items():
        assert [n for s, n in names if s == name] == [
            m.name for m in migrations.pending(sqlite_utils.Database(memory=True))
        ]
    ws.close()
    with blocksync.open(ws.root) as again:  # reopened: nothing applied a second time
        _every_table(again)
        assert len(list(db["_sqlite_migrations"].rows)) == len(rows)
    db.close()


def test_a_registered_migration_runs_once(tmp_path: Path) -> None:
    ran: list[str] = []
    migrations = Migrations("test")

    @migrations(name="first")
    def first(db: sqlite_utils.Database) -> None:
        ran.append("first")
        db.execute("CREATE TABLE t (x)")

    with closing(IndexDb.open(tmp_path / "index.db")) as handle:
        handle.migrate(migrations)
        handle.migrate(migrations)

        @migrations(name="second")
        def second(db: sqlite_utils.Database) -> None:
            ran.append("second")
            db.execute("ALTER TABLE t ADD COLUMN y")

        handle.migrate(migrations)
        assert handle.applied(migrations) == ["first", "second"]
    assert ran == ["first", "second"]


def test_a_failing_migration_leaves_nothing_and_stays_pending(tmp_path: Path) -> None:
    migrations = Migrations("test")

    @migrations(name="broken")
    def broken(db: sqlite_utils.Database) -> None:
        db.execute("CREATE TABLE half (x)")
        raise RuntimeError("boom")

    with closing(IndexDb.open(tmp_path / "index.db")) as handle:
        with pytest.raises(RuntimeError):
            handle.migrate(migrations)
        assert handle.applied(migrations) == []
        assert "half" not in handle.db.table_names()


# -- an index.db written by the code before this module --------------------------------------

#: the schema main's code made before index_db.py (versions through sqlite-utils, the runs
#: table with its first CHECK, notifications before streams added columns)
OLD_SCHEMA = [
    "CREATE TABLE [index_meta] ([key] TEXT PRIMARY KEY, [value] TEXT)",
    "CREATE TABLE [commits] ([sha] TEXT PRIMARY KEY, [seq] INTEGER, [parent] TEXT)",
    (
        "CREATE TABLE [versions] ([owner] TEXT NOT NULL, [label] TEXT NOT NULL,"
        " [version] INTEGER NOT NULL, [commit] TEXT NOT NULL, [deleted] INTEGER NOT NULL,"
        " [content_blob] TEXT, [meta_blob] TEXT, [author] TEXT, [message] TEXT, [timestamp] TEXT,"
        " PRIMARY KEY ([owner], [label], [version]))"
    ),
    "CREATE INDEX [idx_versions_commit] ON [versions] ([commit])",
    "CREATE UNIQUE INDEX [idx_commits_seq] ON [commits] ([seq])",
    "INSERT INTO index_meta VALUES ('schema_version', '1')",
    *conflicts._SCHEMA,
    runs._SCHEMA[0].replace(
        "CHECK (status <> 'finished' OR exit_code IS NOT NULL),\n"
        "        CHECK (status <> 'running' OR exit_code IS NULL)",
        runs._OLD_CHECK,
    ),
    runs._SCHEMA[1],
    (
        "CREATE TABLE notifications (id INTEGER PRIMARY KEY AUTOINCREMENT, source TEXT NOT NULL,"
        " text TEXT NOT NULL, blocks TEXT NOT NULL, created_at TEXT NOT NULL,"
        " acked INTEGER NOT NULL DEFAULT 0)"
    ),
    *notifications._SCHEMA[1:],
    (
        "CREATE TABLE sync_bases (source TEXT NOT NULL, path TEXT NOT NULL, owner TEXT NOT NULL,"
        " label TEXT NOT NULL, base_blob TEXT NOT NULL, base_sha256 TEXT NOT NULL,"
        " PRIMARY KEY (source, path))"
    ),
    "CREATE TABLE sync_bases_heads (source TEXT PRIMARY KEY, head TEXT NOT NULL)",
    (
        "INSERT INTO runs (id, command, status, pid, started_at, finished_at, exit_code)"
        " VALUES ('run-old', 'sync', 'finished', 1, 't0', 't1', 0)"
    ),
    (
        "INSERT INTO notifications (source, text, blocks, created_at)"
        " VALUES ('feed', 'old news', '[]', 't0')"
    ),
]


def _old_index(path: Path) -> None:
    conn = sqlite3.connect(path)
    for statement in OLD_SCHEMA:
        conn.execute(statement)
    conn.commit()
    conn.close()


def test_the_old_schema_really_is_old(tmp_path: Path) -> None:
    """The fixture's runs table refuses what today's accepts (else the upgrade proves nothing)."""
    _old_index(tmp_path / "index.db")
    conn = sqlite3.connect(tmp_path / "index.db")
    with pytest.raises(sqlite3.IntegrityError):
        conn.execute(
            "INSERT INTO runs (id, command, status, pid, started_at, exit_code)"
            " VALUES ('r', 'sync', 'interrupted', 1, 't', 130)"
        )
    conn.close()


def test_an_index_db_of_the_code_before_opens_and_upgrades(tmp_path: Path) -> None:
    root = tmp_path / "store"
    blocksync.init(root).close()
    for name in ("index.db", "index.db-wal", "index.db-shm"):
        (root / name).unlink(missing_ok=True)
    _old_index(root / "index.db")

    with blocksync.open(root) as ws:
        with ws.transaction("a block") as tx:
            tx.create("alice", "notes", "kept\n")
        assert ws.blocks.read("alice", "notes").content == "kept\n"
        # RunLog's rebuild ran: an interrupted run may now carry its exit code; old rows kept
        with ws.run_log() as log:
            log.start("run-new", "sync")
            log.interrupt("run-new", exit_code=130, summary=Summary(), report={})
            assert [r.id for r in log.list()] == ["run-new", "run-old"]
        # the columns streams added are there, the old row reads back
        (old,) = ws.notifications.list()
        assert (old.text, old.origin, old.missing_blocks) == ("old news", "emit", ())
        ws.conflicts.list("all")
        BaseIndex(ws.index_db)
        statcache.StatCache(ws.index_db, "notes")
        for name, migrations in SETS.items():
            assert ws.index_db.applied(migrations) == [
                m.name for m in migrations.pending(sqlite_utils.Database(memory=True))
            ], name
    assert blocksync.fsck(root).ok


def test_a_foreign_file_is_refused_not_migrated(tmp_path: Path) -> None:
    path = tmp_path / "index.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE other (x)")
    conn.commit()
    conn.close()
    with pytest.raises(IndexCorrupt, match="not a blocksync index"):
        VersionIndex.open(path)
    with closing(IndexDb.open(path)) as handle:
        assert handle.db.table_names() == ["other"]


# -- threads ---------------------------------------------------------------------------------


def test_a_transaction_holds_the_connection_against_other_threads(tmp_path: Path) -> None:
    """Plugin host functions run on worker threads: none may run a statement inside another
    thread's transaction (on one connection it would silently join it)."""
    with closing(IndexDb.open(tmp_path / "index.db")) as handle:
        got: list[bool] = []

        def other() -> None:
            taken = handle.lock.acquire(blocking=False)
            got.append(taken)
            if taken:
                handle.lock.release()

        with handle.atomic() as conn:
            conn.execute("CREATE TABLE t (x)")
            thread = threading.Thread(target=other)
            thread.start()
            thread.join()
        assert got == [False]
        thread = threading.Thread(target=other)
        thread.start()
        thread.join()
        assert got == [False, True]


def test_a_nested_atomic_is_a_savepoint(tmp_path: Path) -> None:
    with closing(IndexDb.open(tmp_path / "index.db")) as handle:
        with handle.atomic() as conn:
            conn.execute("CREATE TABLE t (x)")
            conn.execute("INSERT INTO t VALUES (1)")
            with pytest.raises(RuntimeError), handle.atomic():
                conn.execute("INSERT INTO t VALUES (2)")
                raise RuntimeError("inner")
        assert handle.conn.execute("SELECT x FROM t").fetchall() == [(1,)]
