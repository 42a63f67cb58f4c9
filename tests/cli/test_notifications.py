"""The CLI side of tests/test_notifications.py: the same behaviour through `blocksync` commands."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from click.testing import CliRunner, Result

import blocksync
from blocksync.cli import cli
from tests import test_notifications as base

from ..feedserver import FeedServer

# fixtures and helpers of the library tests, shared (assigned: a fixture is found by name)
server = base.server
store = base.store


def run(store: Path, *args: str) -> Result:
    result = CliRunner().invoke(cli, ["--store", str(store), *args], catch_exceptions=False)
    assert "Traceback" not in result.output
    return result


def test_the_notifications_command(store: Path, server: FeedServer) -> None:
    server.add(2, refs=["ghost"])
    with blocksync.open(store) as ws:
        ws.streams.get("feed").pull()
    out = run(store, "notifications")
    assert out.exit_code == 0
    assert out.output.splitlines() == [
        "   1  feed  item 1",
        "      block alice/feed:1 v1",
        "      MISSING block alice/ghost",
        "   2  feed  item 2",
        "      block alice/feed:2 v1",
        "      MISSING block alice/ghost",
    ]
    doc = json.loads(run(store, "notifications", "--json").output)
    assert [n["id"] for n in doc] == [1, 2]
    first: dict[str, Any] = doc[0]
    assert first["blocks"][0] == {
        "block_id": blocksync.BlockStore.git_path("alice", "feed:1"),
        "label": "feed:1",
        "agent_id": "alice",
        "version": 1,
    }
    assert first["missing_blocks"] == [{"block_id": "ghost", "label": "ghost", "agent_id": "alice"}]
    assert (first["origin"], first["cursor"], first["acked"]) == ("pull", "2", False)
    out = run(store, "notifications", "ack", "1")
    assert (out.exit_code, out.output) == (0, "acknowledged 1 notification(s)\n")
    assert [n["id"] for n in json.loads(run(store, "notifications", "--json").output)] == [2]
    everything = run(store, "notifications", "--all").output
    assert "   1  feed  item 1  (acked)" in everything
    out = run(store, "notifications", "ack", "2", "77")
    assert out.exit_code == 4 and "error: no notification with id 77" in out.output
    acked = json.loads(run(store, "notifications", "ack", "2", "--json").output)
    assert acked[0]["acked"] is True
    assert run(store, "notifications").output == ""
    assert run(store, "notifications", "ack").exit_code == 2  # ids are required
