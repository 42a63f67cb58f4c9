"""``blocksync mcp`` through the official MCP SDK's own client (issue 16, item 1).

Each test starts the installed ``blocksync ... mcp --agent alice`` as a subprocess with
``mcp.client.stdio.stdio_client`` and talks to it with ``ClientSession``, on a real store: a real
folder source with a real conflict on it, real git (checked with the ``git`` CLI), real SQLite.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.shared.exceptions import MCPError
from mcp.types import TextResourceContents

import blocksync
from blocksync.agents.store_tools import store_tools
from blocksync.agents.tools import ToolBox
from blocksync.errors import AgentNotAllowed, NotFound
from blocksync.shared.wit import BlockRef

from .conftest import git

BLOCKSYNC = str(Path(sys.executable).parent / "blocksync")
ENV = {k: v for k, v in os.environ.items() if not k.startswith("BLOCKSYNC_")}
T = TypeVar("T")

TOOLS = {
    "blocksync_conflicts_list",
    "blocksync_conflict_show",
    "blocksync_conflict_resolve",
    "blocksync_conflict_undo",
    "blocksync_block_read",
    "blocksync_block_list",
    "blocksync_block_update",
    "blocksync_block_history",
    "blocksync_block_rollback",
    "blocksync_reconcile",
    "blocksync_notifications_list",
    "blocksync_notifications_ack",
}


@dataclass(frozen=True)
class Setup:
    store: Path
    notes: Path  # alice's folder, a source of hers
    label: str  # alice's block bound to notes/shop.md
    conflict: str  # the open conflict on it


@pytest.fixture
def setup(store_path: Path, tmp_path: Path) -> Setup:
    """alice: notes/shop.md bound to a block, both sides edited (an open conflict); bob: a
    folder source of his own and a block."""
    notes, bobs = tmp_path / "notes", tmp_path / "bobs"
    notes.mkdir()
    bobs.mkdir()
    (notes / "shop.md").write_text("tea\nbiscuits\n")
    rules = 'permission_rules = [{ pattern = "**", permission = "read-write" }]\n'
    with open(store_path / "blocksync.toml", "a", encoding="utf-8") as f:
        f.write(
            f'\n[agents.alice.data_sources.notes]\ntype = "file"\npaths = ["{notes}"]\n{rules}'
            f'\n[agents.bob.data_sources.bobnotes]\ntype = "file"\npaths = ["{bobs}"]\n{rules}'
        )
    with blocksync.open(store_path, author="test:setup") as ws:
        assert ws.reconcile().exit_code == 0
        (label,) = [b.label for b in ws.blocks.list("alice")]
        ws.blocks.update("alice", label, "black tea\nbiscuits\n")
        ws.blocks.create("bob", "diary", "dear diary\n")
        (notes / "shop.md").write_text("green tea\nbiscuits\n")
        assert ws.reconcile().exit_code == 3
        (conflict,) = ws.conflicts.list()
    return Setup(store_path, notes, label, conflict.id)


def served(
    store: Path,
    scenario: Callable[[ClientSession], Awaitable[T]],
    agent: str = "alice",
    options: Sequence[str] = (),
) -> T:
    """``scenario`` run against ``blocksync --store STORE mcp --agent AGENT [OPTIONS]``, its
    standard error kept beside the store (shown if the scenario fails)."""
    params = StdioServerParameters(
        command=BLOCKSYNC,
        args=["--store", str(store), "mcp", "--agent", agent, *options],
        env=ENV,
    )
    errors = store.parent / "mcp-server.err"

    async def main() -> T:
        with errors.open("w") as errlog:
            async with (
                stdio_client(params, errlog=errlog) as (read, write),
                ClientSession(read, write) as session,
            ):
                await session.initialize()
                return await scenario(session)

    try:
        return asyncio.run(main())
    except BaseException:
        print(errors.read_text(), file=sys.stderr)
        raise


async def ok(session: ClientSession, name: str, args: dict[str, Any]) -> Any:
    result = await session.call_tool(name, args)
    assert not result.is_error, result.content
    (text,) = result.content
    assert text.type == "text" and json.loads(text.text) == result.structured_content
    return result.structured_content


async def refused(session: ClientSession, name: str, args: Any) -> str:
    """The message of a call that must fail as a tool error (not a protocol error)."""
    result = await session.call_tool(name, args)
    assert result.is_error, result.structured_content
    (text,) = result.content
    assert text.type == "text" and text.text.startswith("error: ")
    return text.text


async def resource(session: ClientSession, uri: str) -> Any:
    (contents,) = (await session.read_resource(uri)).contents
    assert isinstance(contents, TextResourceContents) and contents.mime_type == "application/json"
    return json.loads(contents.text)


def test_every_tool_is_listed_with_its_schemas(setup: Setup) -> None:
    async def scenario(session: ClientSession) -> None:
        tools = {t.name: t for t in (await session.list_tools()).tools}
        assert set(tools) == TOOLS
        for tool in tools.values():
            assert tool.description and tool.input_schema["type"] == "object"
            assert tool.output_schema is not None and tool.output_schema["type"] == "object"
            assert tool.annotations is not None
        assert tools["blocksync_block_update"].input_schema["required"] == [
            "owner",
            "label",
            "content",
        ]
        assert "expected_version" in tools["blocksync_block_update"].input_schema["properties"]
        hints = {name: t.annotations.read_only_hint for name, t in tools.items() if t.annotations}
        assert hints["blocksync_block_read"] and hints["blocksync_conflicts_list"]
        assert not hints["blocksync_reconcile"] and not hints["blocksync_block_update"]
        resources = (await session.list_resources()).resources
        assert [r.uri for r in resources] == ["blocksync://conflicts"]
        templates = (await session.list_resource_templates()).resource_templates
        assert [t.uri_template for t in templates] == ["blocksync://conflicts/{id}"]

    served(setup.store, scenario)


def test_an_mcp_client_resolves_a_conflict_end_to_end(setup: Setup) -> None:
    resolved = "green tea\nblack tea\nbiscuits\n"

    async def scenario(session: ClientSession) -> None:
        listed = await resource(session, "blocksync://conflicts")
        assert [c["id"] for c in listed["conflicts"]] == [setup.conflict]
        assert await ok(session, "blocksync_conflicts_list", {}) == listed
        shown = await ok(session, "blocksync_conflict_show", {"id": setup.conflict})
        assert await resource(session, f"blocksync://conflicts/{setup.conflict}") == shown
        assert (shown["base"], shown["disk"], shown["agent"]) == (
            "tea\nbiscuits\n",
            "green tea\nbiscuits\n",
            "black tea\nbiscuits\n",
        )
        # both sides changed the same line: no clean merge, the agent writes the content
        assert "overlap" in await refused(
            session, "blocksync_conflict_resolve", {"id": setup.conflict, "take": "merged"}
        )
        done = await ok(
            session, "blocksync_conflict_resolve", {"id": setup.conflict, "content": resolved}
        )
        assert (done["status"], done["resolved_by"]) == ("resolved", "agent:alice")
        report = await ok(session, "blocksync_reconcile", {})
        assert (report["exit_code"], report["open_conflicts"]) == (0, 0)
        assert [s["source"] for s in report["sources"]] == ["notes"]  # alice's only
        assert await resource(session, "blocksync://conflicts") == {"conflicts": []}

    served(setup.store, scenario)
    assert (setup.notes / "shop.md").read_text() == resolved
    with blocksync.open(setup.store) as ws:
        conflict = ws.conflicts.get(setup.conflict)
        assert (conflict.status, conflict.resolved_by) == ("resolved", "agent:alice")
        block = ws.blocks.read("alice", setup.label)
        assert block.content == resolved and block.version == conflict.result_version
        assert ws.conflicts.list() == []
        path = ws.blocks.git_path("alice", setup.label)
    repo = setup.store / "repo"
    assert git(repo, "show", f"main:{path}/content") == resolved
    assert git(repo, "log", "-1", "--format=%an", "main", "--", path).strip() == "agent:alice"
    assert setup.conflict in git(repo, "log", "--format=%s", "refs/blocksync/records")


def test_each_tool_answers(setup: Setup) -> None:
    with blocksync.open(setup.store) as ws:
        mine = ws.notifications.add("notes", "shop.md was shared", ())
        ws.notifications.add("bobnotes", "bob's news", (BlockRef("", "diary", "bob"),))

    async def scenario(session: ClientSession) -> None:
        listed = await ok(session, "blocksync_block_list", {})
        assert [(b["owner"], b["label"], b["version"]) for b in listed["blocks"]] == [
            ("alice", setup.label, 2)
        ]
        block = await ok(session, "blocksync_block_read", {"owner": "alice", "label": setup.label})
        assert (block["content"], block["version"]) == ("black tea\nbiscuits\n", 2)
        old = await ok(
            session, "blocksync_block_read", {"owner": "alice", "label": setup.label, "version": 1}
        )
        assert old["content"] == "tea\nbiscuits\n"
        written = await ok(
            session,
            "blocksync_block_update",
            {
                "owner": "alice",
                "label": setup.label,
                "content": "oolong\nbiscuits\n",
                "expected_version": 2,
                "message": "switch tea",
            },
        )
        assert written["version"] == 3
        stale = await refused(
            session,
            "blocksync_block_update",
            {"owner": "alice", "label": setup.label, "content": "x\n", "expected_version": 2},
        )
        assert "is at version 3, not at the expected version 2" in stale
        history = await ok(
            session, "blocksync_block_history", {"owner": "alice", "label": setup.label}
        )
        assert [v["version"] for v in history["versions"]] == [1, 2, 3]
        assert history["versions"][-1]["message"] == "switch tea"
        assert history["versions"][-1]["author"].startswith("agent:alice")
        back = await ok(
            session,
            "blocksync_block_rollback",
            {"owner": "alice", "label": setup.label, "version": 2},
        )
        assert (back["version"], back["content"]) == (4, "black tea\nbiscuits\n")
        preview = await ok(session, "blocksync_reconcile", {"dry_run": True})
        assert preview["dry_run"] is True and preview["open_conflicts"] == 1
        news = await ok(session, "blocksync_notifications_list", {})
        assert [n["id"] for n in news["notifications"]] == [mine]  # not bob's
        acked = await ok(session, "blocksync_notifications_ack", {"ids": [mine]})
        assert acked["notifications"][0]["acked"] is True
        assert await ok(session, "blocksync_notifications_list", {}) == {"notifications": []}
        done = await ok(
            session, "blocksync_conflict_resolve", {"id": setup.conflict, "take": "disk"}
        )
        assert done["status"] == "resolved"
        undone = await ok(session, "blocksync_conflict_undo", {"id": setup.conflict})
        assert undone["status"] == "open"

    served(setup.store, scenario)
    with blocksync.open(setup.store) as ws:
        assert ws.conflicts.get(setup.conflict).status == "open"
        assert [n.acked for n in ws.notifications.list()] == [True, False]
        assert ws.blocks.read("alice", setup.label).content == "black tea\nbiscuits\n"


def test_bad_calls_are_tool_errors_and_the_server_goes_on(setup: Setup) -> None:
    label = setup.label

    async def scenario(session: ClientSession) -> None:
        bad: list[tuple[str, Any, str]] = [
            ("blocksync_block_read", {"owner": "alice"}, "at /label (required)"),
            ("blocksync_block_read", {"owner": "alice", "label": 7}, "at /label (type)"),
            ("blocksync_block_update", {"owner": "alice", "label": label}, "/content"),
            ("blocksync_block_list", {"owner": "alice", "colour": "red"}, "/colour"),
            ("blocksync_reconcile", {"dry_run": "yes"}, "at /dry_run (type)"),
            ("blocksync_notifications_ack", {"ids": []}, "at /ids (minItems)"),
            ("blocksync_conflict_resolve", {"id": setup.conflict, "take": "theirs"}, "/take"),
            ("blocksync_nope", {}, "blocksync_nope"),
            ("blocksync_block_read", {"owner": "alice", "label": "missing"}, "no block"),
            (
                "blocksync_block_read",
                {"owner": "alice", "label": label, "version": 9},
                "no version 9",
            ),
            ("blocksync_conflict_show", {"id": "c-0000000000"}, "c-0000000000"),
            ("blocksync_notifications_ack", {"ids": [424242]}, "424242"),
            ("blocksync_reconcile", {"sources": ["elsewhere"]}, "no data source named 'elsewhere'"),
            ("blocksync_reconcile", {"paths": ["../../etc/passwd"]}, "etc/passwd"),
        ]
        for name, args, said in bad:
            assert said in await refused(session, name, args), (name, args)
        with blocksync.open(setup.store) as ws, ws.locked("a test holding the lock"):
            held = await refused(
                session, "blocksync_conflict_resolve", {"id": setup.conflict, "take": "disk"}
            )
            assert "another run holds the store's run lock" in held
            assert "a test holding the lock" in held and "--wait" not in held  # no CLI option
            assert "run lock" in await refused(session, "blocksync_reconcile", {})
        with pytest.raises(MCPError, match="no resource"):
            await session.read_resource("blocksync://elsewhere")
        # still serving, and nothing above changed anything
        block = await ok(session, "blocksync_block_read", {"owner": "alice", "label": label})
        assert block["version"] == 2
        assert (await ok(session, "blocksync_conflicts_list", {}))["conflicts"][0][
            "status"
        ] == "open"

    served(setup.store, scenario, options=["--lock-wait", "0.2"])  # the lock is held here


def test_another_owners_blocks_and_sources_are_refused(setup: Setup) -> None:
    with blocksync.open(setup.store) as ws:
        theirs = ws.notifications.add("bobnotes", "for bob", ())

    async def scenario(session: ClientSession) -> None:
        diary = {"owner": "bob", "label": "diary"}
        for name, args, action in [
            ("blocksync_block_read", diary, "read block 'diary'"),
            ("blocksync_block_update", {**diary, "content": "mine now\n"}, "update block"),
            ("blocksync_block_history", diary, "read the history of block"),
            ("blocksync_block_rollback", {**diary, "version": 1}, "roll back block"),
            ("blocksync_block_list", {"owner": "bob"}, "list the blocks"),
            ("blocksync_reconcile", {"sources": ["bobnotes"]}, "reconcile data source"),
            (
                "blocksync_notifications_ack",
                {"ids": [theirs]},
                f"acknowledge notification {theirs}",
            ),
        ]:
            said = await refused(session, name, args)
            assert f"agent 'alice' may not {action}" in said and "of 'bob'" in said, said
            assert "may_act_for" in said
        assert await ok(session, "blocksync_notifications_list", {"all": True}) == {
            "notifications": []
        }

    served(setup.store, scenario)
    with blocksync.open(setup.store) as ws:
        assert ws.blocks.read("bob", "diary").version == 1
        assert not ws.notifications.list()[0].acked


def grant(store: Path, agent: str, owner: str) -> None:
    with open(store / "blocksync.toml", "a", encoding="utf-8") as f:
        f.write(f'\n[agents.{agent}]\nmay_act_for = ["{owner}"]\n')


def test_may_act_for_lets_an_agent_act_for_another_from_the_next_call_on(setup: Setup) -> None:
    """The store is opened per call: a grant added while the server runs counts at once."""
    update = {
        "owner": "bob",
        "label": "diary",
        "content": "alice was here\n",
        "expected_version": 1,
    }

    async def scenario(session: ClientSession) -> None:
        assert "may_act_for" in await refused(session, "blocksync_block_update", update)
        grant(setup.store, "alice", "bob")
        assert (await ok(session, "blocksync_block_update", update))["version"] == 2
        listed = await ok(session, "blocksync_block_list", {})
        assert {b["owner"] for b in listed["blocks"]} == {"alice", "bob"}

    served(setup.store, scenario)
    with blocksync.open(setup.store) as ws:
        (version,) = [v for v in ws.blocks.history("bob", "diary") if v.version == 2]
        assert version.author.startswith("agent:alice")


def run_cli(store: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``blocksync --store STORE ARGS...`` with nothing on standard input."""
    return subprocess.run(
        [BLOCKSYNC, "--store", str(store), *args],
        capture_output=True,
        text=True,
        env=ENV,
        stdin=subprocess.DEVNULL,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("args", "code", "said"),
    [
        (["mcp", "--agent", "../bob"], 2, "invalid name '../bob'"),
        (["mcp", "--agent", ""], 2, "an empty agent is not allowed"),
        (["mcp"], 2, "Missing option '--agent'"),
    ],
)
def test_the_command_refuses_before_serving(
    store_path: Path, args: list[str], code: int, said: str
) -> None:
    done = run_cli(store_path, *args)
    assert (done.returncode, done.stdout) == (code, "")
    assert said in done.stderr and "Traceback" not in done.stderr


def test_a_missing_store_is_not_found(tmp_path: Path) -> None:
    done = run_cli(tmp_path / "none", "mcp", "--agent", "alice")
    assert done.returncode == 4 and done.stdout == ""
    assert done.stderr.startswith("error: no blocksync store at")


def test_the_same_tools_from_the_library(setup: Setup) -> None:
    """The server's tools are library tools: a call naming no agent acts on everything, as the
    built-in tools do; an agent without a data source has nothing to reconcile."""
    with blocksync.open(setup.store) as ws:
        ws.notifications.add("bobnotes", "for bob", ())
        box = ToolBox(None, store_tools(ws, ws.config.may_act_for))
        listed = box.call("blocksync_block_list", {})
        assert {b["owner"] for b in listed["blocks"]} == {"alice", "bob"}
        preview = box.call("blocksync_reconcile", {"dry_run": True})
        assert [s["source"] for s in preview["sources"]] == ["notes", "bobnotes"]
        mine = box.call("blocksync_reconcile", {"dry_run": True}, agent="alice")
        assert [s["source"] for s in mine["sources"]] == ["notes"]
        assert len(box.call("blocksync_notifications_list", {})["notifications"]) == 1
        with pytest.raises(NotFound, match="agent 'carol' has no data source to reconcile"):
            box.call("blocksync_reconcile", {}, agent="carol")
        with pytest.raises(AgentNotAllowed):
            box.call("blocksync_conflict_undo", {"id": setup.conflict}, agent="carol")
