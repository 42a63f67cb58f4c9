"""Notifications: emitted and pulled ones stored durably, block references resolved, acknowledged
through the library and the command line."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import blocksync
from blocksync.errors import AccessDenied, NotificationNotFound
from blocksync.index.notifications import NotificationLog, PullCapture
from blocksync.shared.wit import BlockRef, Notification

from .feedserver import FeedServer, feed_server, feed_table
from .plugin_builds import built_plugin
from .stores import make_store


@pytest.fixture
def server() -> Iterator[FeedServer]:
    with feed_server() as srv:
        yield srv


@pytest.fixture
def store(tmp_path: Path, server: FeedServer) -> Path:
    return make_store(
        tmp_path / "store",
        {
            "feed": feed_table(server),
            "echo": {"path": built_plugin("echo_stream"), "source_kind": "stream"},
        },
    )


def test_emitted_notifications_are_stored_with_their_call_and_resolved_blocks(store: Path) -> None:
    with blocksync.open(store) as ws:
        ws.blocks.create("alice", "echo-stream", "the block the echo stream names")
        ws.streams.get("echo").start()  # emits two notifications during start
        ws.streams.get("feed").start()
        stored = ws.notifications.list()
    assert [(n.source, n.text, n.origin, n.call) for n in stored] == [
        ("echo", "echo stream started for alice", "emit", "data-stream.start"),
        ("echo", "second notification", "emit", "data-stream.start"),
        ("feed", "feed started for alice", "emit", "data-stream.start"),
    ]
    # the echo stream names its block "stream-block": resolved to the real block by owner+label
    real = blocksync.BlockStore.git_path("alice", "echo-stream")
    assert stored[0].blocks == (BlockRef(real, "echo-stream", "alice"),)
    assert stored[0].block_versions == (1,) and stored[0].missing_blocks == ()
    with blocksync.open(store) as ws:  # durable
        assert ws.notifications.list() == stored


def test_an_emitted_reference_to_no_block_is_kept_and_reported(store: Path) -> None:
    with blocksync.open(store) as ws:
        ws.streams.get("echo").start()
        first = ws.notifications.list()[0]
    ref = BlockRef("stream-block", "echo-stream", "alice")
    assert first.blocks == (ref,) and first.missing_blocks == (ref,)
    assert first.block_versions == (None,)


def test_list_unacked_and_ack(store: Path, server: FeedServer) -> None:
    server.add(3)
    with blocksync.open(store) as ws:
        ws.streams.get("feed").pull()
        ids = [n.id for n in ws.notifications.list(unacked=True)]
        assert len(ids) == 3
        done = ws.notifications.ack(ids[:2])
        assert [n.acked for n in done] == [True, True] and all(n.acked_at for n in done)
        assert [n.id for n in ws.notifications.list(unacked=True)] == ids[2:]
        assert len(ws.notifications.list()) == 3
        assert ws.notifications.ack(ids[:1])[0].acked_at == done[0].acked_at  # again: no change
        with pytest.raises(NotificationNotFound, match="no notification with id 999") as info:
            ws.notifications.ack([ids[2], 999])
        assert info.value.exit_code == 4
        assert [n.id for n in ws.notifications.list(unacked=True)] == ids[2:]  # none acked
        assert ws.notifications.list(source="echo") == []


def test_a_pull_is_one_transaction(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A failure while storing a pull (here the second insert) stores none of it and leaves the
    cursor where it was."""
    log = NotificationLog(tmp_path / "index.db")
    try:
        capture = PullCapture("s", "data-stream.pull", [Notification("emitted", ())])
        log.record_pull("s", "v1", capture, [Notification("a", ())], None, "1")
        original = log._insert
        calls = []

        def failing(*args: Any) -> int:
            calls.append(args)
            if len(calls) == 2:
                raise sqlite3.OperationalError("disk I/O error")
            return original(*args)

        monkeypatch.setattr(log, "_insert", failing)
        with pytest.raises(blocksync.IndexCorrupt):
            log.record_pull(
                "s",
                "v1",
                PullCapture("s", "data-stream.pull"),
                [Notification("b", ()), Notification("c", ())],
                "1",
                "3",
            )
        assert [n.text for n in log.list()] == ["emitted", "a"]
        assert log.stream("s").cursor == "1" and log.cursors("s") == ["1"]
    finally:
        log.close()


def test_set_cursor_outside_a_pull_is_refused(tmp_path: Path) -> None:
    log = NotificationLog(tmp_path / "index.db")
    try:
        with pytest.raises(AccessDenied, match="only for a data stream, during its pull"):
            log.set_cursor("s", "1")
        with log.capture("s", "data-stream.pull") as capture:
            log.set_cursor("s", "7")
            log.add("s", "held", ())
            log.add("other", "not held", ())
        assert capture.cursor == "7" and [n.text for n in capture.emitted] == ["held"]
        assert [n.text for n in log.list()] == ["not held"]
    finally:
        log.close()


def test_a_store_made_before_streams_keeps_its_notifications(tmp_path: Path) -> None:
    """index.db from before these columns: the old rows read back, the columns are added."""
    path = tmp_path / "index.db"
    conn = sqlite3.connect(path)
    conn.execute(
        "CREATE TABLE notifications (id INTEGER PRIMARY KEY AUTOINCREMENT, source TEXT NOT NULL,"
        " text TEXT NOT NULL, blocks TEXT NOT NULL, created_at TEXT NOT NULL,"
        " acked INTEGER NOT NULL DEFAULT 0)"
    )
    conn.execute(
        "INSERT INTO notifications (source, text, blocks, created_at) VALUES"
        " ('p', 'old', '[[\"b\", \"l\", \"alice\"]]', '2026-01-01T00:00:00Z')"
    )
    conn.commit()
    conn.close()
    log = NotificationLog(path)
    try:
        (old,) = log.list()
        assert (old.text, old.blocks, old.origin, old.block_versions) == (
            "old",
            (BlockRef("b", "l", "alice"),),
            "emit",
            (None,),
        )
    finally:
        log.close()
