"""Plugin tools over MCP: ``blocksync mcp --agent alice`` offers the tools of alice's plugins
as ``plugin_<name>``, with their schemas, through the tool box's checks and owner rule.

Real components (the componentize-py and componentize-js fixtures of tests/test_tools.py, from
the suite's build cache), real wasmtime, the installed ``blocksync`` started by the MCP SDK's own
stdio client.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from mcp import ClientSession

import blocksync
from blocksync.errors import AgentNotAllowed

from .plugin_builds import built_js_plugin, built_plugin
from .test_mcp import TOOLS, grant, ok, refused, served

ECHO_CAP_MIB = 1  # alice's echo: a result over this is a trap (result-size)


def _plugin(agent: str, key: str, path: Path, **config: str) -> str:
    lines = [
        f"[agents.{agent}.data_sources.{key}]",
        'type = "wasm"',
        f'path = "{path}"',
        'source_kind = "tool"',
    ]
    if config:
        lines.append("config = { " + ", ".join(f'{k} = "{v}"' for k, v in config.items()) + " }")
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def components() -> dict[str, Path]:
    return {"echo": built_plugin("echo_tool"), "js": built_js_plugin("js_tool")}


@pytest.fixture
def store(store_path: Path, components: dict[str, Path]) -> Path:
    """alice: echo (results capped), word_count, one that fails, one whose schema is no JSON
    Schema and one that is no component; bob: a word count of his own."""
    junk = store_path / "junk.wasm"
    junk.write_bytes(b"not a component")
    js = components["js"]
    tables = [
        _plugin("alice", "echo", components["echo"])
        + f"limits = {{ result_mb = {ECHO_CAP_MIB} }}\n",
        _plugin("alice", "wc", js),
        _plugin("alice", "wc_fail", js, mode="fail", name="word_count_fail"),
        _plugin("alice", "wc_schema", js, mode="bad-schema", name="word_count_bad_schema"),
        _plugin("alice", "junk", junk),
        _plugin("bob", "bob_wc", js, name="bob_count"),
    ]
    with open(store_path / "blocksync.toml", "a", encoding="utf-8") as f:
        f.write("\n" + "\n".join(tables))
    return store_path


def server_errors(store: Path) -> str:
    return (store.parent / "mcp-server.err").read_text(encoding="utf-8")


def test_the_agents_plugin_tools_are_listed_with_their_schemas(store: Path) -> None:
    async def scenario(session: ClientSession) -> dict[str, Any]:
        first = {t.name: t for t in (await session.list_tools()).tools}
        again = {t.name: t for t in (await session.list_tools()).tools}
        assert first == again
        return first

    tools = served(store, scenario)
    mine = {"plugin_echo", "plugin_word_count", "plugin_word_count_fail"}
    assert set(tools) == TOOLS | mine  # not bob's, not the broken ones
    wc = tools["plugin_word_count"]
    assert wc.input_schema == {
        "type": "object",
        "properties": {
            "text": {"type": "string", "description": "The text to count words in."},
            "top": {
                "type": "integer",
                "minimum": 1,
                "maximum": 100,
                "description": "How many frequent words to return.",
            },
        },
        "required": ["text"],
        "additionalProperties": False,
    }
    assert wc.description is not None and wc.description.startswith("Counts the words")
    assert "Usage: Use it to count words" in wc.description
    assert wc.output_schema is not None and wc.output_schema["required"] == [
        "words",
        "top",
        "meta",
        "language",
    ]
    assert tools["plugin_echo"].input_schema["required"] == ["text"]
    assert wc.annotations is not None and not wc.annotations.read_only_hint
    # the plugins that offer no tool are named on standard error, once each
    errors = server_errors(store).splitlines()
    for key, why in [("wc_schema", "not a valid JSON Schema"), ("junk", "junk.wasm")]:
        (line,) = [e for e in errors if f"warning: plugin {key!r} offers no tool" in e]
        assert why in line, line
    assert not [e for e in errors if "bob_wc" in e]


def test_a_plugin_tool_answers_through_mcp(store: Path) -> None:
    async def scenario(session: ClientSession) -> None:
        counted = await ok(session, "plugin_word_count", {"text": "to be or not to be", "top": 1})
        assert (counted["words"], counted["top"], counted["language"]) == (
            6,
            [["be", 2]],
            "javascript",
        )
        assert counted["meta"]["agent_id"] == "alice"
        assert counted["meta"]["tool"] == "word_count"
        echoed = await ok(session, "plugin_echo", {"text": "hi", "times": 2})
        assert (echoed["echo"], echoed["agent"]) == ("hihi", "alice")

    served(store, scenario)


def test_bad_plugin_calls_are_tool_errors_and_the_server_goes_on(store: Path) -> None:
    big = ECHO_CAP_MIB * (1 << 20) + 1

    async def scenario(session: ClientSession) -> None:
        bad: list[tuple[str, Any, str]] = [
            ("plugin_word_count", {"text": 7}, "at /text (type)"),
            ("plugin_word_count", {}, "at /text (required)"),
            ("plugin_word_count", {"text": "a", "colour": "red"}, "/colour"),
            ("plugin_word_count_fail", {"text": "a"}, "word_count was told to fail"),
            ("plugin_echo", {"text": "x", "times": big}, "over the cap of 1 MiB"),
            # a plugin tool only by its MCP name; a built-in only by its own
            ("word_count", {"text": "a"}, "no tool named 'word_count'"),
            ("plugin_wc", {"text": "a"}, "no tool named 'plugin_wc'"),
            ("plugin_blocksync_block_list", {}, "no tool named 'plugin_blocksync_block_list'"),
            ("plugin_word_count_bad_schema", {"text": "a"}, "no tool named"),
        ]
        for name, args, said in bad:
            assert said in await refused(session, name, args), (name, args)
        for unknown in ("plugin_nope", "blocksync_nope"):
            missing = await refused(session, unknown, {})
            # what alice is offered, as MCP names it
            assert "plugin_word_count" in missing and "bob_count" not in missing, missing
        assert (await ok(session, "plugin_word_count", {"text": "still here"}))["words"] == 2

    served(store, scenario)


def test_another_agents_plugin_tool_is_neither_offered_nor_called(store: Path) -> None:
    async def scenario(session: ClientSession) -> None:
        names = {t.name for t in (await session.list_tools()).tools}
        assert "plugin_bob_count" not in names
        said = await refused(session, "plugin_bob_count", {"text": "a"})
        assert "agent 'alice' may not call tool 'bob_count' of plugin 'bob_wc' of 'bob'" in said
        assert "may_act_for" in said
        grant(store, "alice", "bob")  # from the next call on
        names = {t.name for t in (await session.list_tools()).tools}
        assert "plugin_bob_count" in names
        assert (await ok(session, "plugin_bob_count", {"text": "a b"}))["words"] == 2

    served(store, scenario)


def test_bobs_server_offers_his_tool_and_not_alices(store: Path) -> None:
    async def scenario(session: ClientSession) -> set[str]:
        counted = await ok(session, "plugin_bob_count", {"text": "a"})
        assert counted["meta"]["agent_id"] == "bob"
        assert "may not call tool 'echo'" in await refused(session, "plugin_echo", {"text": "a"})
        return {t.name for t in (await session.list_tools()).tools}

    names = served(store, scenario, agent="bob")
    assert names - TOOLS == {"plugin_bob_count"}
    assert "plugin 'wc_schema'" not in server_errors(store)  # alice's problem, not bob's


def test_the_owner_rule_is_the_tool_boxs_for_every_caller(store: Path) -> None:
    """``ws.tools`` (what ``blocksync tool run --agent`` calls) applies the same rule."""
    with blocksync.open(store) as ws:
        with pytest.raises(AgentNotAllowed) as info:
            ws.tools.call("bob_count", {"text": "a"}, agent="alice")
        assert (info.value.agent, info.value.owner) == ("alice", "bob")
        assert ws.tools.call("bob_count", {"text": "a"}, agent="bob")["words"] == 1
        assert ws.tools.call("bob_count", {"text": "a"})["words"] == 1  # no agent: everything
        assert "bob_count" in {e.name for e in ws.tools.list()}
        assert "bob_count" not in {e.name for e in ws.tools.list("alice")}
        assert {p.plugin for p in ws.tools.problems("bob")} == set()
        assert {p.plugin for p in ws.tools.problems("alice")} == {"wc_schema", "junk"}
        out = json.dumps(ws.tools.call("echo", {"text": "a"}, agent="alice"))
        assert '"agent": "alice"' in out


def test_wrong_plugin_tables_leave_the_built_in_tools_serving(store_path: Path) -> None:
    with blocksync.open(store_path) as ws:
        ws.blocks.create("alice", "persona", "I like tea.\n")
    with open(store_path / "blocksync.toml", "a", encoding="utf-8") as f:
        f.write(_plugin("alice", "late", store_path / "x.wasm") + 'limits = { timeout = "soon" }\n')

    async def scenario(session: ClientSession) -> set[str]:
        read = await ok(session, "blocksync_block_read", {"owner": "alice", "label": "persona"})
        assert read["content"] == "I like tea.\n"
        assert "no tool named" in await refused(session, "plugin_late", {})
        return {t.name for t in (await session.list_tools()).tools}

    assert served(store_path, scenario) == TOOLS
    (line,) = [e for e in server_errors(store_path).splitlines() if "warning:" in e]
    assert line.startswith("warning: no plugin tool is offered: [agents.alice.data_sources.late]")
    assert "limits.timeout" in line
