"""The CLI side of tests/test_streams.py: the same behaviour through `blocksync` commands."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from click.testing import CliRunner

import blocksync
from blocksync.cli import cli
from blocksync.errors import InvalidTransition
from blocksync.index.runs import RunLog
from blocksync.runner import run_sync
from tests import test_streams as base

from ..feedserver import FeedServer, feed_table
from ..stores import make_store

# fixtures and helpers of the library tests, shared (assigned: a fixture is found by name)
guest_calls = base.guest_calls
server = base.server
store = base.store


def test_state_is_persisted_and_a_new_process_restores_the_guest(
    store: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with blocksync.open(store) as ws:
        ws.streams.get("feed").start()
        ws.streams.get("feed").pause()
    caplog.set_level(logging.DEBUG, logger="blocksync.plugin.feed")
    with blocksync.open(store) as ws:  # a fresh plugin instance, stopped inside
        stream = ws.streams.get("feed")
        assert stream.status().state == "paused"
        with pytest.raises(InvalidTransition):
            stream.pause()
        assert guest_calls(caplog) == []
        assert stream.resume().state == "running"
        # the guest was brought back to the stored state first, then resumed
        assert guest_calls(caplog) == ["call status", "call start", "call pause", "call resume"]
        assert stream.bridge.status().value == "running"
    done = CliRunner().invoke(cli, ["--store", str(store), "stream", "stop", "feed"])
    assert done.exit_code == 0 and done.output == "feed: stopped\n"
    done = CliRunner().invoke(cli, ["--store", str(store), "stream", "stop", "feed"])
    assert done.exit_code == 2 and "stream 'feed' is stopped: cannot stop it" in done.output


def test_the_text_of_stream_pull(store: Path, server: FeedServer) -> None:
    server.add(1, refs=["nowhere"])
    done = CliRunner().invoke(cli, ["--store", str(store), "stream", "pull", "feed"])
    assert done.exit_code == 0, done.output
    assert done.output.splitlines() == [
        "feed: 1 notification(s), cursor None -> 1",
        "   1  feed  item 1",
        "      block alice/feed:1 v1",
        "      MISSING block alice/nowhere",
    ]
    listed = CliRunner().invoke(cli, ["--store", str(store), "stream", "list", "--json"])
    (entry,) = json.loads(listed.output)
    assert (entry["key"], entry["cursor"], entry["delivered"], entry["state"]) == (
        "feed",
        "1",
        1,
        "stopped",
    )


def test_sync_pulls_every_pull_capable_stream(tmp_path: Path, server: FeedServer) -> None:
    store = make_store(
        tmp_path / "store",
        {
            "feed": feed_table(server, limits={"pull_batch": 2}),
            "quiet": feed_table(
                server, config={"pull": "false"}
            ),  # supports-pull false: not pulled
        },
    )
    server.add(5)
    with blocksync.open(store) as ws:
        report = run_sync(ws)
    assert report.exit_code == 0
    (entry,) = report.streams
    assert (entry.stream, entry.pulled, entry.pulls, entry.cursor, entry.error) == (
        "feed",
        5,
        4,
        "5",
        None,
    )
    with RunLog(store / "index.db") as log:
        row = log.get(report.run_id)
    assert row.report["streams"] == [entry.to_json()]
    # the command line: text and JSON; a second run has nothing new
    done = CliRunner().invoke(cli, ["--store", str(store), "sync"])
    assert done.exit_code == 0, done.output
    assert "stream feed: 0 notification(s) in 1 pull(s), cursor 5" in done.output
    server.add(1)
    done = CliRunner().invoke(cli, ["--store", str(store), "sync", "--json"])
    doc = json.loads(done.output)
    assert doc["streams"][0]["pulled"] == 1 and doc["exit_code"] == 0


def test_sync_reports_a_failing_stream_and_exits_1(tmp_path: Path, server: FeedServer) -> None:
    store = make_store(
        tmp_path / "store",
        {
            "broken": feed_table(
                server, config={"url": "http://127.0.0.1:9/nothing"}, allowed_hosts=["127.0.0.1:9"]
            ),
            "feed": feed_table(server),
            "paused": feed_table(server),
        },
    )
    server.add(2)
    with blocksync.open(store) as ws:
        ws.streams.get("paused").start()
        ws.streams.get("paused").pause()
        report = run_sync(ws)
    assert report.exit_code == 1
    by = {s.stream: s for s in report.streams}
    assert by["broken"].error is not None and "data-stream.pull" in by["broken"].error
    assert by["feed"].pulled == 2 and by["feed"].error is None  # the others still ran
    assert by["paused"].skipped == "paused" and by["paused"].error is None
    done = CliRunner().invoke(cli, ["--store", str(store), "sync"])
    assert done.exit_code == 1
    assert "stream broken: FAILED: plugin 'broken'" in done.output
    assert "stream paused: skipped (paused)" in done.output
