"""Tools end to end: the tool box over a Python tool, a JavaScript tool (componentize-js) and the
built-in conflict/history tools; schemas checked at load, params before the call, output after."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import blocksync
from blocksync.agents.tools import TOOL_NAME, compile_schema
from blocksync.errors import (
    ConflictNotFound,
    PluginCallFailed,
    ToolInputInvalid,
    ToolNotFound,
    ToolOutputInvalid,
    ToolSchemaInvalid,
)

from .conftest import assert_git_fsck
from .plugin_builds import built_js_plugin, built_plugin
from .stores import share_compile_cache

BUILTINS = [
    "blocksync_conflicts_list",
    "blocksync_conflict_show",
    "blocksync_conflict_resolve",
    "blocksync_block_history",
    "blocksync_block_rollback",
]


@pytest.fixture(scope="module")
def components() -> dict[str, Path]:
    return {"echo_tool": built_plugin("echo_tool"), "js_tool": built_js_plugin("js_tool")}


def _plugin(key: str, path: Path, config: dict[str, str] | None = None) -> str:
    lines = [f"[agents.alice.data_sources.{key}]", 'type = "wasm"', f'path = "{path}"']
    if config:
        lines.append("config = { " + ", ".join(f'{k} = "{v}"' for k, v in config.items()) + " }")
    return "\n".join(lines) + "\n"


@pytest.fixture
def notes(tmp_path: Path) -> Path:
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "a.md").write_text("line1\nline2\nline3\n")
    return folder


def _store(root: Path, tables: str) -> Path:
    blocksync.init(root, author="test:setup").close()
    share_compile_cache(root)
    with (root / "blocksync.toml").open("a") as f:
        f.write("\n" + tables)
    return root


@pytest.fixture
def store(tmp_path: Path, components: dict[str, Path], notes: Path) -> Iterator[Path]:
    js = components["js_tool"]
    root = _store(
        tmp_path / "store",
        f'[agents.alice.data_sources.notes]\ntype = "file"\npaths = ["{notes}"]\n'
        'permission_rules = [{ pattern = "**", permission = "admin" }]\n\n'
        + _plugin("echo", components["echo_tool"])
        + "\n"
        + _plugin("wc", js)
        + "\n"
        + _plugin("wc_bad", js, {"mode": "bad-output", "name": "word_count_bad_output"})
        + "\n"
        + _plugin("wc_fail", js, {"mode": "fail", "name": "word_count_fail"})
        + "\n"
        + _plugin("wc_schema", js, {"mode": "bad-schema", "name": "word_count_bad_schema"}),
    )
    yield root
    assert_git_fsck(root / "repo")


@pytest.fixture
def ws(store: Path) -> Iterator[blocksync.Workspace]:
    with blocksync.open(store, author="human:test") as workspace:
        yield workspace


# -- listing -------------------------------------------------------------------------------------


def test_list_shows_builtin_and_plugin_tools_with_schemas_and_usage_rules(
    ws: blocksync.Workspace,
) -> None:
    entries = {e.name: e for e in ws.tools.list()}
    assert list(entries)[:5] == BUILTINS
    assert {"echo", "word_count", "word_count_bad_output", "word_count_fail"} <= set(entries)
    assert "word_count_bad_schema" not in entries  # refused at load, named in problems()
    assert all(TOOL_NAME.fullmatch(name) for name in entries)
    wc = entries["word_count"]
    assert (wc.origin, wc.plugin) == ("plugin", "wc") and wc.version is not None
    assert wc.usage_rule == "Use it to count words; it never reads or changes memory."
    assert isinstance(wc.parameters_schema, dict) and wc.parameters_schema["required"] == ["text"]
    assert entries["echo"].usage_rule == "Use it to test that tools work; never for real answers."
    assert entries["blocksync_conflicts_list"].origin == "builtin"
    spec = wc.function_spec()["function"]
    assert spec["name"] == "word_count" and "Usage: Use it to count words" in spec["description"]
    (problem,) = ws.tools.problems()
    assert problem.plugin == "wc_schema"
    assert "tool 'word_count_bad_schema': its parameters schema is not a valid JSON Schema" in (
        problem.error
    )
    assert "at /properties/text/type" in problem.error


def test_schema_that_is_not_json_schema_refuses_the_tool_naming_plugin_and_call(
    ws: blocksync.Workspace,
) -> None:
    with pytest.raises(ToolSchemaInvalid) as info:
        ws.tools.call("wc_schema", {"text": "a"})
    err = info.value
    assert (err.plugin, err.call, err.schema) == (
        "wc_schema",
        "tool.parameters-schema",
        "parameters",
    )
    assert err.pointer == "/properties/text/type" and err.keyword in ("anyOf", "enum")
    assert err.exit_code == 1


@pytest.mark.parametrize(
    ("text", "pointer", "keyword"),
    [
        ("not json", "", ""),
        ("[1, 2]", "", "type"),
        ('{"type": "nope"}', "/type", "anyOf"),
        ('{"properties": {"a": {"minimum": "one"}}}', "/properties/a/minimum", "type"),
        ('{"$schema": "https://example.com/unknown"}', "/$schema", "$schema"),
    ],
)
def test_compile_schema_points_into_a_broken_schema(text: str, pointer: str, keyword: str) -> None:
    with pytest.raises(ToolSchemaInvalid) as info:
        compile_schema(text, plugin="p", version="v1", tool="t", which="output")
    assert info.value.pointer == pointer
    assert info.value.keyword == keyword or not keyword
    assert "plugin 'p' (v1) tool.output-schema: tool 't'" in str(info.value)


def test_remote_refs_are_never_fetched() -> None:
    _, validator = compile_schema(
        '{"$ref": "http://127.0.0.1:9/never.json"}',
        plugin="p",
        version="v",
        tool="t",
        which="parameters",
    )
    with pytest.raises(Exception, match="never.json|Unresolvable"):
        list(validator.iter_errors({}))


# -- calls ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["echo", "word_count"])
def test_meta_carries_agent_and_call_id_through_python_and_js_tools(
    ws: blocksync.Workspace, name: str
) -> None:
    params: dict[str, Any] = {"text": "to be or not to be"}
    call = ws.tools.run(name, params, agent="alice", call_id="call-42")
    assert call.call_id == "call-42" and call.agent == "alice" and call.origin == "plugin"
    if name == "echo":
        assert call.output == {
            "echo": "to be or not to be",
            "agent": "alice",
            "call": "call-42",
            "meta_keys": ["agent_id", "call_id", "tool"],
        }
    else:
        assert call.output["words"] == 6 and call.output["language"] == "javascript"
        assert call.output["top"] == [["be", 2], ["to", 2], ["not", 1]]
        assert call.output["meta"] == {"agent_id": "alice", "call_id": "call-42", "tool": name}
    fresh = ws.tools.run(name, params)
    assert re.fullmatch(r"call-[0-9a-f]{32}", fresh.call_id) and fresh.agent is None


def test_a_plugin_key_names_its_tool_too(ws: blocksync.Workspace) -> None:
    assert ws.tools.get("wc").name == "word_count"
    assert ws.tools.call("wc", {"text": "a"})["words"] == 1


@pytest.mark.parametrize(
    ("tool", "params", "pointer", "keyword"),
    [
        ("word_count", {}, "/text", "required"),
        ("word_count", {"text": 7}, "/text", "type"),
        ("word_count", {"text": "a", "top": 0}, "/top", "minimum"),
        ("word_count", {"text": "a", "colour": "red"}, "/colour", "additionalProperties"),
        ("word_count", ["text"], "", "type"),
        ("echo", {"text": "a", "times": "2"}, "/times", "type"),
        # the failing tool is never called: the params are refused first
        ("word_count_fail", {"text": 1}, "/text", "type"),
        ("blocksync_block_history", {"owner": "alice"}, "/label", "required"),
        ("blocksync_conflict_resolve", {"id": "x", "take": "theirs"}, "/take", "enum"),
    ],
)
def test_invalid_params_name_the_field_and_the_tool_is_not_called(
    ws: blocksync.Workspace, tool: str, params: Any, pointer: str, keyword: str
) -> None:
    with pytest.raises(ToolInputInvalid) as info:
        ws.tools.call(tool, params, agent="alice", call_id="c-1")
    err = info.value
    assert (err.tool, err.call_id, err.pointer, err.keyword) == (tool, "c-1", pointer, keyword)
    assert err.exit_code == 2
    assert f"at {pointer or '/'} ({keyword})" in str(err) and "call c-1" in str(err)


def test_params_that_are_not_json_are_refused(ws: blocksync.Workspace) -> None:
    with pytest.raises(ToolInputInvalid, match="json"):
        ws.tools.call("word_count", {"text": float("nan")})


def test_output_failing_its_schema_is_withheld_naming_plugin_call_and_field(
    ws: blocksync.Workspace,
) -> None:
    with pytest.raises(ToolOutputInvalid) as info:
        ws.tools.call("word_count_bad_output", {"text": "a b"}, call_id="c-7")
    err = info.value
    assert (err.plugin, err.call, err.tool, err.call_id) == (
        "wc_bad",
        "tool.execute",
        "word_count_bad_output",
        "c-7",
    )
    assert (err.pointer, err.keyword) == ("/words", "type") and err.exit_code == 1
    assert "'2' is not of type 'integer'" in str(err)


def test_a_failing_tool_is_a_plugin_call_failure(ws: blocksync.Workspace) -> None:
    with pytest.raises(PluginCallFailed, match="word_count was told to fail") as info:
        ws.tools.call("word_count_fail", {"text": "a"})
    assert info.value.call == "tool.execute" and info.value.exit_code == 1


def test_unknown_tool(ws: blocksync.Workspace) -> None:
    with pytest.raises(ToolNotFound, match="no tool named 'nope'") as info:
        ws.tools.call("nope", {})
    assert "word_count" in info.value.known and info.value.exit_code == 4


# -- the built-in conflict and history tools -----------------------------------------------------


def _conflict(ws: blocksync.Workspace, notes: Path) -> tuple[str, str]:
    ws.reconcile(["notes"])
    (label,) = [b.label for b in ws.blocks.list("alice") if b.label.endswith("a.md")]
    (notes / "a.md").write_text("line1 disk\nline2\nline3\n")
    ws.blocks.update("alice", label, "line1 agent\nline2\nline3\n")
    assert ws.reconcile(["notes"]).exit_code == 3
    return label, ws.conflicts.list()[0].id


def test_conflict_tools_list_show_and_resolve_as_the_calling_agent(
    ws: blocksync.Workspace, notes: Path
) -> None:
    label, cid = _conflict(ws, notes)
    listed = ws.tools.call("blocksync_conflicts_list", {}, agent="alice")["conflicts"]
    assert [(c["id"], c["path"], c["status"]) for c in listed] == [(cid, "a.md", "open")]
    assert "disk" not in listed[0]  # the listing leaves the contents out
    shown = ws.tools.call("blocksync_conflict_show", {"id": cid[:8]}, agent="alice")
    assert (shown["disk"], shown["agent"], shown["base"]) == (
        "line1 disk\nline2\nline3\n",
        "line1 agent\nline2\nline3\n",
        "line1\nline2\nline3\n",
    )
    with pytest.raises(ToolInputInvalid) as info:  # neither take nor content
        ws.tools.call("blocksync_conflict_resolve", {"id": cid}, agent="alice")
    assert info.value.keyword == "anyOf"
    done = ws.tools.call(
        "blocksync_conflict_resolve",
        {"id": cid, "content": "line1 both\nline2\nline3\n"},
        agent="alice",
    )
    assert (done["status"], done["resolution"], done["resolved_by"]) == (
        "resolved",
        "manual",
        "agent:alice",
    )
    assert (notes / "a.md").read_text() == "line1 both\nline2\nline3\n"
    assert ws.blocks.read("alice", label).content == "line1 both\nline2\nline3\n"
    assert ws.tools.call("blocksync_conflicts_list", {})["conflicts"] == []
    resolved = ws.tools.call("blocksync_conflicts_list", {"status": "resolved"})["conflicts"]
    assert [c["id"] for c in resolved] == [cid]
    with pytest.raises(ConflictNotFound):
        ws.tools.call("blocksync_conflict_show", {"id": "ffffffffffff"})


def test_history_and_rollback_tools(ws: blocksync.Workspace) -> None:
    ws.blocks.create("alice", "persona", "v1\n")
    ws.blocks.update("alice", "persona", "v2\n")
    history = ws.tools.call("blocksync_block_history", {"owner": "alice", "label": "persona"})
    assert [v["version"] for v in history["versions"]] == [1, 2]
    rolled = ws.tools.call(
        "blocksync_block_rollback",
        {"owner": "alice", "label": "persona", "version": 1},
        agent="alice",  # an agent rolls back its own blocks (tests/test_agent_tool_owners.py)
    )
    assert (rolled["version"], rolled["content"]) == (3, "v1\n")
    last = ws.tools.call(
        "blocksync_block_history", {"owner": "alice", "label": "persona", "limit": 1}
    )["versions"]
    assert [(v["version"], v["author"]) for v in last] == [(3, "agent:alice")]
    # with who made it, where, in which run (none here), checked against its output schema
    assert (last[0]["made_by"], last[0]["machine"], last[0]["run_id"]) == (
        "agent:alice",
        ws.config.machine,
        None,
    )
    assert ws.blocks.read("alice", "persona").content == "v1\n"


def test_builtin_tools_need_no_plugin(store_path: Path) -> None:
    with blocksync.open(store_path) as ws:
        assert [e.name for e in ws.tools.list()] == BUILTINS
        assert ws.tools.problems() == []
        for entry in ws.tools.list():
            for schema in (entry.parameters_schema, entry.output_schema):
                compile_schema(
                    json.dumps(schema), plugin="b", version="v", tool="t", which="parameters"
                )


# -- CLI -----------------------------------------------------------------------------------------
