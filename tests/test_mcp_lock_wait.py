"""``blocksync mcp --lock-wait SECONDS``: a write meeting the run lock held waits for it.

The holder is a real ``blocksync sync`` run in another process, stopped inside its first source
until told to go on (tests/cli/test_run_lock_cli.py's ``Holder``); the server is the installed
``blocksync`` started by the MCP SDK's own stdio client. When a call starts waiting, the server
says so in a progress notification naming the holder: that is what each test waits for before
it lets the holder go, so no test depends on how long anything takes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mcp import ClientSession

import blocksync
from blocksync.mcp_server import LOCK_WAIT
from blocksync.sync import runlock

from . import test_mcp
from .cli.test_run_lock_cli import Holder
from .test_mcp import Setup, ok, refused, run_cli, served

setup = test_mcp.setup  # the fixture: alice's conflict on notes/shop.md

#: long enough never to run out in a test that releases the holder while the call waits
LONG = "600"
RESOLVE = "blocksync_conflict_resolve"


@pytest.fixture
def holder(setup: Setup) -> Iterator[Holder]:
    """A real ``blocksync sync`` run holding the store's run lock, inside its first source."""
    held = Holder(setup.store, "sync")
    try:
        yield held
    finally:
        held.close()


def release(holder: Holder) -> int:
    """Let the holder's run go on through each of its sources (it stops in every one); its
    exit code."""
    assert holder.proc.stdin is not None
    while True:
        holder.proc.stdin.write("go\n")
        holder.proc.stdin.flush()
        line = holder._line(30)
        if line.startswith("done"):
            return holder.proc.wait(30)
        assert line.startswith("inside"), line


class Waits:
    """A tool call started in the background, and the progress messages the server sent for it."""

    def __init__(self, session: ClientSession, name: str, args: dict[str, Any]) -> None:
        self.messages: list[str] = []
        self.waiting = asyncio.Event()
        self.task = asyncio.create_task(
            session.call_tool(name, args, progress_callback=self._progress)
        )
        # a call the test leaves behind (the server ended under it) fails: that is expected
        self.task.add_done_callback(lambda task: task.cancelled() or task.exception())

    async def _progress(self, progress: float, total: float | None, message: str | None) -> None:
        self.messages.append(message or "")
        self.waiting.set()

    async def started_waiting(self) -> str:
        """The server's message saying the call waits for the lock (the test's cue)."""
        waiting = asyncio.create_task(self.waiting.wait())
        done, _ = await asyncio.wait(
            {waiting, self.task}, timeout=120, return_when="FIRST_COMPLETED"
        )
        assert waiting in done, (
            self.task.result() if self.task in done else "no progress notification"
        )
        return self.messages[0]


def conflict_status(setup: Setup) -> str:
    with blocksync.open(setup.store) as ws:
        return ws.conflicts.get(setup.conflict).status


def lock_is_free(store: Path) -> bool:
    try:
        with runlock.acquire(store / runlock.LOCK_FILE):
            return True
    except blocksync.RunLockHeld:
        return False


def test_a_write_waits_for_the_lock_and_succeeds_once_it_is_free(
    setup: Setup, holder: Holder
) -> None:
    async def scenario(session: ClientSession) -> None:
        call = Waits(session, RESOLVE, {"id": setup.conflict, "take": "disk"})
        said = await call.started_waiting()
        assert f"held by pid {holder.proc.pid}" in said and "running 'blocksync sync'" in said
        # reads answer meanwhile, and see nothing resolved yet
        shown = await ok(session, "blocksync_conflict_show", {"id": setup.conflict})
        assert shown["status"] == "open" and not call.task.done()
        assert await asyncio.to_thread(release, holder) == 0
        result = await call.task
        assert not result.is_error, result.content
        assert result.structured_content is not None
        assert (result.structured_content["status"], result.structured_content["resolved_by"]) == (
            "resolved",
            "agent:alice",
        )

    served(setup.store, scenario, options=["--lock-wait", LONG])
    assert conflict_status(setup) == "resolved"
    assert (setup.notes / "shop.md").read_text() == "green tea\nbiscuits\n"
    assert lock_is_free(setup.store)


def test_a_write_gives_up_after_the_wait_naming_the_holder(setup: Setup, holder: Holder) -> None:
    async def scenario(session: ClientSession) -> None:
        for name, args in [
            (RESOLVE, {"id": setup.conflict, "take": "disk"}),
            ("blocksync_conflict_undo", {"id": setup.conflict}),
            ("blocksync_reconcile", {}),
        ]:
            call = Waits(session, name, args)
            said = (await call.task).content[0]
            assert said.type == "text" and (await call.task).is_error
            assert said.text.startswith("error: another run holds the store's run lock"), said
            assert f"pid {holder.proc.pid}" in said.text and "waited " in said.text, said
            assert "call the tool again once it is done" in said.text
            assert call.messages and f"pid {holder.proc.pid}" in call.messages[0]
        # a dry run takes no lock, and writes that take none do not wait for it
        assert (await ok(session, "blocksync_reconcile", {"dry_run": True}))["dry_run"]
        update = {"owner": "alice", "label": setup.label, "content": "tea\n"}
        assert (await ok(session, "blocksync_block_update", update))["version"] == 3
        assert await asyncio.to_thread(release, holder) == 0
        assert (await ok(session, "blocksync_reconcile", {}))["dry_run"] is False

    served(setup.store, scenario, options=["--lock-wait", "0.5"])


def test_lock_wait_zero_fails_at_once(setup: Setup, holder: Holder) -> None:
    async def scenario(session: ClientSession) -> None:
        call = Waits(session, RESOLVE, {"id": setup.conflict, "take": "disk"})
        said = (await call.task).content[0]
        assert (await call.task).is_error and said.type == "text"
        assert f"pid {holder.proc.pid}" in said.text and "waited" not in said.text
        assert call.messages == []  # it never waited
        assert "run lock" in await refused(session, "blocksync_reconcile", {})

    served(setup.store, scenario, options=["--lock-wait", "0"])
    assert conflict_status(setup) == "open"


def test_a_cancelled_wait_writes_nothing(setup: Setup, holder: Holder) -> None:
    async def scenario(session: ClientSession) -> None:
        call = Waits(session, RESOLVE, {"id": setup.conflict, "take": "disk"})
        await call.started_waiting()
        call.task.cancel()  # the SDK tells the server: notifications/cancelled
        with pytest.raises(asyncio.CancelledError):
            await call.task
        # once a read has answered, the server has seen the cancellation
        await ok(session, "blocksync_conflicts_list", {})
        assert await asyncio.to_thread(release, holder) == 0
        # a write after it runs once the cancelled call is over: it found the conflict open
        assert (await ok(session, "blocksync_reconcile", {"dry_run": True}))["open_conflicts"] == 1
        assert (await ok(session, "blocksync_conflict_show", {"id": setup.conflict}))[
            "status"
        ] == "open"

    served(setup.store, scenario, options=["--lock-wait", LONG])
    assert conflict_status(setup) == "open"
    assert lock_is_free(setup.store)


def test_a_server_ended_while_waiting_leaves_no_lock_and_no_write(
    setup: Setup, holder: Holder
) -> None:
    async def scenario(session: ClientSession) -> None:
        call = Waits(session, RESOLVE, {"id": setup.conflict, "take": "disk"})
        await call.started_waiting()
        # leaving the client's context closes the server's standard input, then ends it

    served(setup.store, scenario, options=["--lock-wait", LONG])
    assert release(holder) == 0
    assert conflict_status(setup) == "open"
    assert lock_is_free(setup.store)
    with blocksync.open(setup.store) as ws:
        assert ws.blocks.read("alice", setup.label).version == 2


@pytest.mark.parametrize("value", ["-1", "abc", "nan", "inf", ""])
def test_a_bad_lock_wait_is_a_usage_error(store_path: Path, value: str) -> None:
    done = run_cli(store_path, "mcp", "--agent", "alice", "--lock-wait", value)
    assert (done.returncode, done.stdout) == (2, "")
    assert "Invalid value for '--lock-wait'" in done.stderr and "Traceback" not in done.stderr


def test_the_default_lock_wait_is_documented() -> None:
    done = run_cli(Path("unused"), "mcp", "--help")
    assert f"[default: {LOCK_WAIT:g}]" in " ".join(done.stdout.split())
