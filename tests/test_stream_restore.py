"""A stream restored into a new process's plugin instance does not start over (issue 15, item 6).

Each process has a fresh plugin instance, so before moving a stream the host replays ``start``
(and ``pause``) into it. That replay used to be a start like any other: a plugin notifying on
start notified again on every ``pause`` / ``resume`` / new process. Now the plugin's
``sync.restoring()`` is true during the replay, and a notification the replay repeats is not
stored again. Real components (``echo_stream`` notifies on every start, unaware of the flag;
``feed`` asks it), a real store, and real ``blocksync`` processes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import blocksync
from blocksync.index.notifications import NotificationLog
from blocksync.shared.wit import BlockRef

from . import test_notifications as base
from .test_sync import cli as run

server = base.server
store = base.store  # the echo and feed streams of alice
ECHO_START = ["echo stream started for alice", "second notification"]


def texts(store: Path, source: str, unacked: bool = False) -> list[str]:
    with blocksync.open(store) as ws:
        return [n.text for n in ws.notifications.list(unacked=unacked, source=source)]


def plugin_log(store: Path, key: str) -> str:
    return (store / "logs" / "plugins" / f"{key}.log").read_text(encoding="utf-8")


@pytest.mark.parametrize("key", ["echo", "feed"])
def test_start_pause_resume_and_a_new_process_notify_once(store: Path, key: str) -> None:
    once = ECHO_START if key == "echo" else ["feed started for alice"]
    with blocksync.open(store) as ws:
        ws.streams.get(key).start()
    assert texts(store, key) == once
    with blocksync.open(store) as ws:  # a new instance: restored, then paused
        assert ws.streams.get(key).pause().state == "paused"
    with blocksync.open(store) as ws:  # restored paused, then resumed
        assert ws.streams.get(key).resume().state == "running"
    assert run(store, "stream", "pause", key) == f"{key}: paused\n"  # a new process
    assert run(store, "stream", "resume", key) == f"{key}: running\n"
    assert texts(store, key, unacked=True) == once  # exactly once, still unacknowledged
    assert texts(store, key) == once
    assert run(store, "stream", "stop", key) == f"{key}: stopped\n"
    assert texts(store, key) == once  # stopping a restored stream adds nothing either


def test_the_plugin_is_told_a_start_is_a_restore(store: Path) -> None:
    with blocksync.open(store) as ws:
        ws.streams.get("echo").start()
    run(store, "stream", "pause", "echo")
    run(store, "stream", "resume", "echo")
    starts = [line for line in plugin_log(store, "echo").splitlines() if "start for alice" in line]
    assert [line.rsplit("restoring: ", 1)[1] for line in starts] == ["False", "True", "True"]
    # the feed asks, and skips its notification itself
    with blocksync.open(store) as ws:
        ws.streams.get("feed").start()
    run(store, "stream", "pause", "feed")
    assert "restored: running for alice" in plugin_log(store, "feed")


def test_a_real_start_after_a_stop_notifies_again(store: Path) -> None:
    with blocksync.open(store) as ws:
        ws.streams.get("echo").start()
    run(store, "stream", "stop", "echo")  # restored, then stopped
    run(store, "stream", "start", "echo")  # a new start: a new event
    assert texts(store, "echo") == ECHO_START * 2


def test_a_restore_stores_what_it_has_not_stored_before(tmp_path: Path) -> None:
    log = NotificationLog(tmp_path / "index.db")
    try:
        block = BlockRef("b", "note", "alice")
        log.add("s", "started", (block,))
        with log.restoring("s"):
            assert log.is_restoring("s") and not log.is_restoring("other")
            assert log.add("s", "started", (block,)) == 0  # a repeat: dropped
            assert log.add("s", "started", ()) > 0  # other blocks: new
            assert log.add("s", "restarted", (block,)) > 0  # other text: new
            assert log.add("other", "started", (block,)) > 0  # another stream's: new
        assert not log.is_restoring("s")
        assert log.add("s", "started", (block,)) > 0  # not a restore: stored as emitted
        assert [n.text for n in log.list(source="s")] == ["started"] * 2 + ["restarted", "started"]
    finally:
        log.close()


def test_two_processes_restoring_at_once_store_a_repeat_once(tmp_path: Path) -> None:
    # Two processes restore one stream at once (pause and resume are not under the run lock),
    # each replaying a start that emits what no start stored before. The other process's
    # insert is made to land between this one's check and its write: a hook in the step
    # between them (a subclass; real SQLite, two handles of one index.db).
    other = NotificationLog(tmp_path / "index.db")

    class Racing(NotificationLog):
        def _resolved(self, *args: Any, **kwargs: Any) -> tuple[str, str]:
            with other.restoring("s"):
                other.add("s", "started", ())
            return super()._resolved(*args, **kwargs)

    log = Racing(tmp_path / "index.db")
    try:
        with log.restoring("s"):
            log.add("s", "started", ())
        assert [n.text for n in log.list(source="s")] == ["started"]
    finally:
        log.close()
        other.close()
