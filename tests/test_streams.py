"""Data streams: the lifecycle state machine, pulls with a durable cursor, and `blocksync sync`.

The stream is the `feed` fixture (fixtures/plugins/feed, Python guest SDK) reading a local JSON
feed over the host's HTTP functions; it writes a block per item and names it in a notification.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import blocksync
from blocksync.errors import InvalidTransition, PluginTrapped, PullRefused
from blocksync.index.notifications import NotificationLog, PullCapture
from blocksync.shared.wit import BlockRef, Notification

from .feedserver import FeedServer, feed_server, feed_table
from .plugin_builds import built_plugin
from .stores import make_store

BIN = Path(sys.executable).parent


@pytest.fixture
def server() -> Iterator[FeedServer]:
    with feed_server() as srv:
        yield srv


@pytest.fixture
def store(tmp_path: Path, server: FeedServer) -> Path:
    return make_store(tmp_path / "store", {"feed": feed_table(server)})


def guest_calls(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The calls the feed guest logged (it logs `call <name>` first thing in each)."""
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "blocksync.plugin.feed" and r.getMessage().startswith("call ")
    ]


def texts(ws: blocksync.Workspace) -> list[str]:
    return [n.text for n in ws.notifications.list()]


# --------------------------------------------------------------------------------------------
# lifecycle


def test_valid_transitions_follow_the_state_machine(
    store: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="blocksync.plugin.feed")
    with blocksync.open(store) as ws:
        stream = ws.streams.get("feed")
        assert stream.status().state == "stopped"
        assert stream.start().state == "running"
        assert stream.status().owner == "alice"
        assert stream.pause().state == "paused"
        assert stream.bridge.status().value == "paused"  # the guest followed
        assert stream.resume().state == "running"
        assert stream.stop().state == "stopped"
        assert stream.start("alice").state == "running"
        assert [s.state for s in ws.streams.list()] == ["running"]
    # each valid call reached the guest (after a status check that it is where the host thinks)
    assert guest_calls(caplog) == [
        "call start",
        "call status",
        "call pause",
        "call status",
        "call status",
        "call resume",
        "call status",
        "call stop",
        "call start",
    ]


def test_invalid_transitions_are_refused_without_calling_the_guest(
    store: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="blocksync.plugin.feed")
    with blocksync.open(store) as ws:
        stream = ws.streams.get("feed")
        for action in ("stop", "pause", "resume"):
            with pytest.raises(InvalidTransition) as info:
                getattr(stream, action)()
            assert info.value.exit_code == 2
            assert f"stream 'feed' is stopped: cannot {action} it" in str(info.value)
        assert guest_calls(caplog) == []  # not one guest call
        stream.start()
        calls = len(guest_calls(caplog))
        for action in ("start", "resume"):
            with pytest.raises(InvalidTransition, match=f"is running: cannot {action}"):
                getattr(stream, action)()
        stream.pause()
        calls_after_pause = len(guest_calls(caplog))
        assert calls_after_pause > calls
        for action in ("start", "pause"):
            with pytest.raises(InvalidTransition, match=f"is paused: cannot {action}"):
                getattr(stream, action)()
        with pytest.raises(InvalidTransition, match="is paused: cannot pull it"):
            stream.pull()
        assert len(guest_calls(caplog)) == calls_after_pause
        assert stream.status().state == "paused"


# --------------------------------------------------------------------------------------------
# pull


def test_pull_stores_notifications_with_resolved_blocks_and_advances_the_cursor(
    store: Path, server: FeedServer
) -> None:
    server.add(3)
    with blocksync.open(store) as ws:
        result = ws.streams.get("feed").pull()
        assert (result.previous_cursor, result.cursor, result.returned) == (None, "3", 3)
        assert [n.text for n in result.notifications] == ["item 1", "item 2", "item 3"]
        first = result.notifications[0]
        real = ws.blocks.git_path("alice", "feed:1")
        assert first.blocks == (BlockRef(real, "feed:1", "alice"),)
        assert first.block_versions == (1,) and first.missing_blocks == ()
        assert (first.origin, first.call, first.cursor) == ("pull", "data-stream.pull", "3")
        assert ws.blocks.read("alice", "feed:2").content == "body of item 2\n"
        assert ws.blocks.history("alice", "feed:2")[-1].author == "plugin:feed"
        # nothing new: nothing stored, the cursor stays
        again = ws.streams.get("feed").pull()
        assert (again.returned, again.cursor, again.notifications) == (0, "3", [])
        server.add(2)
        more = ws.streams.get("feed").pull()
        assert [n.text for n in more.notifications] == ["item 4", "item 5"]
        status = ws.streams.get("feed").status()
        assert (status.cursor, status.delivered, status.pulls) == ("5", 5, 3)
        assert ws.notifications.cursors("feed") == ["3", "5"]
    # the plugin was asked for what comes after each stored cursor
    assert [p.split("?")[1] for p in server.requests] == [
        "after=0&limit=1000",
        "after=3&limit=1000",
        "after=3&limit=1000",
    ]


def test_pull_resumes_in_another_process_and_never_delivers_twice(
    store: Path, server: FeedServer
) -> None:
    server.add(5)
    with blocksync.open(store) as ws:
        assert [n.text for n in ws.streams.get("feed").pull(limit=2).notifications] == [
            "item 1",
            "item 2",
        ]
    # a cron run in another process, through the command line
    for expected in (["item 3", "item 4"], ["item 5"], []):
        done = subprocess.run(
            [
                BIN / "blocksync",
                "--store",
                str(store),
                "stream",
                "pull",
                "feed",
                "--limit",
                "2",
                "--json",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        doc = json.loads(done.stdout)
        assert [n["text"] for n in doc["notifications"]] == expected
    server.add(1)
    with blocksync.open(store) as ws:  # and in a new workspace
        assert [n.text for n in ws.streams.get("feed").pull().notifications] == ["item 6"]
        delivered = texts(ws)
    assert delivered == [f"item {i}" for i in range(1, 7)]  # each exactly once, in order


def test_a_trap_mid_pull_stores_nothing_and_the_retry_succeeds(
    tmp_path: Path, server: FeedServer
) -> None:
    store = make_store(tmp_path / "store", {"feed": feed_table(server, limits={"timeout": 1.5})})
    server.add(3)
    with blocksync.open(store) as ws:
        ws.streams.get("feed").pull()
        before = ws.notifications.list()
        server.add(1, urgent=True)  # emitted during the pull, before the trap
        server.add(1, trap=True)  # the guest hangs here until its time limit
        with pytest.raises(PluginTrapped) as info:
            ws.streams.get("feed").pull()
        assert info.value.reason == "timeout"
        assert info.value.plugin == "feed" and info.value.call == "data-stream.pull"
        assert ws.notifications.list() == before  # nothing of that pull: not even the emitted one
        labels = [b.label for b in ws.blocks.list("alice")]
        assert len(labels) == 3, labels  # nor the block item 4 wrote before the trap
        status = ws.streams.get("feed").status()
        assert status.cursor == "3" and status.delivered == 3
        assert status.last_error is not None and "data-stream.pull" in status.last_error
        server.items[-1].pop("trap")  # the feed is fixed: the next pull retries from "3"
        retry = ws.streams.get("feed").pull()
        assert [n.text for n in retry.notifications] == ["urgent: item 4", "item 4", "item 5"]
        assert [n.origin for n in retry.notifications] == ["emit", "pull", "pull"]
        assert retry.cursor == "5" and ws.streams.get("feed").status().last_error is None
        assert texts(ws) == ["item 1", "item 2", "item 3", "urgent: item 4", "item 4", "item 5"]


def test_a_cursor_going_backwards_is_refused(store: Path, server: FeedServer) -> None:
    server.add(3)
    with blocksync.open(store) as ws:
        ws.streams.get("feed").pull()
        before = ws.notifications.list()
        server.rewind = True  # the feed serves item 1.. again, whatever the cursor
        with pytest.raises(PullRefused, match="without moving its cursor from '3'"):
            ws.streams.get("feed").pull()  # items 1-3 again: the cursor stays 3
        with pytest.raises(PullRefused) as info:
            ws.streams.get("feed").pull(limit=2)  # items 1-2: the cursor would go back to 2
        error = info.value
        assert error.reason == "cursor-backwards" and error.exit_code == 1
        assert str(error).startswith("plugin 'feed' (") and "data-stream.pull" in str(error)
        assert "set the cursor back from 3 to 2" in str(error)
        assert ws.notifications.list() == before
        assert ws.streams.get("feed").status().cursor == "3"
        server.rewind = False
        server.add(1)
        assert [n.text for n in ws.streams.get("feed").pull().notifications] == ["item 4"]


def test_cursor_history_refuses_an_opaque_cursor_used_before(tmp_path: Path) -> None:
    """Cursors that are not numbers (page tokens): any cursor used before is backwards, and so is
    returning notifications without moving the cursor."""
    log = NotificationLog(tmp_path / "index.db")
    try:

        def pull(expected: str | None, cursor: str | None, *texts: str) -> None:
            log.record_pull(
                "s",
                "v1",
                PullCapture("s", "data-stream.pull"),
                [Notification(t, ()) for t in texts],
                expected,
                cursor,
            )

        pull(None, "tok-a", "one")
        pull("tok-a", "tok-b", "two")
        with pytest.raises(PullRefused, match="set the cursor back to 'tok-a', which its pull #1"):
            pull("tok-b", "tok-a", "three")
        with pytest.raises(PullRefused, match="without moving its cursor from 'tok-b'"):
            pull("tok-b", "tok-b", "three")
        pull("tok-b", None)  # nothing new: fine, the cursor stays
        assert [n.text for n in log.list()] == ["one", "two"]
        assert log.stream("s").cursor == "tok-b" and log.cursors("s") == ["tok-a", "tok-b"]
        # the pull was given a cursor another pull has moved on from: nothing stored
        with pytest.raises(blocksync.ConcurrencyError, match="moved from 'tok-a' to 'tok-b'"):
            pull("tok-a", "tok-c", "late")
        assert len(log.list()) == 2
    finally:
        log.close()


def test_a_batch_over_the_cap_is_refused(tmp_path: Path, server: FeedServer) -> None:
    store = make_store(tmp_path / "store", {"feed": feed_table(server, limits={"pull_batch": 2})})
    server.add(3)
    server.ignore_limit = True  # the plugin returns all 3 when asked for 2
    with blocksync.open(store) as ws:
        assert ws.plugins.specs["feed"].limits.pull_batch == 2
        with pytest.raises(PullRefused) as info:
            ws.streams.get("feed").pull(limit=50)  # asked for more than the cap: capped
        assert info.value.reason == "batch-too-large"
        assert "returned 3 notifications, over the limit of 2" in str(info.value)
        assert ws.notifications.list() == [] and ws.streams.get("feed").status().cursor is None
        server.ignore_limit = False
        assert ws.streams.get("feed").pull().returned == 2
        assert ws.streams.get("feed").pull().returned == 1


def test_an_unknown_block_reference_is_kept_and_reported(store: Path, server: FeedServer) -> None:
    with blocksync.open(store) as ws:
        ws.blocks.create("alice", "known", "x")
    server.add(1, refs=["known", "ghost"])
    with blocksync.open(store) as ws:
        (n,) = ws.streams.get("feed").pull().notifications
        assert [b.label for b in n.blocks] == ["feed:1", "known", "ghost"]
        assert n.block_versions == (1, 1, None)
        assert n.missing_blocks == (BlockRef("ghost", "ghost", "alice"),)
        assert n.to_json()["missing_blocks"] == [
            {"block_id": "ghost", "label": "ghost", "agent_id": "alice"}
        ]


def test_a_stream_without_set_cursor_counts_what_it_delivered(tmp_path: Path) -> None:
    """The echo stream never calls sync.set-cursor: its cursor is the count delivered so far."""
    store = make_store(
        tmp_path / "store",
        {
            "echo": {
                "path": built_plugin("echo_stream"),
                "source_kind": "stream",
                "config": {"count": 5},
            },
        },
    )
    with blocksync.open(store) as ws:
        stream = ws.streams.get("echo")
        got = [(r.cursor, [n.text for n in r.notifications]) for r in stream.pull_all(limit=2)]
        assert got == [
            ("2", ["event 0", "event 1"]),
            ("4", ["event 2", "event 3"]),
            ("5", ["event 4"]),
            ("5", []),
        ]


# --------------------------------------------------------------------------------------------
# blocksync sync
