"""The CLI side of tests/test_tools.py: the same behaviour through `blocksync` commands."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from blocksync.cli import cli
from tests import test_tools as base

# fixtures and helpers of the library tests, shared (assigned: a fixture is found by name)
BUILTINS = base.BUILTINS
components = base.components
notes = base.notes
store = base.store
ws = base.ws


def run(store: Path, *args: str) -> Any:
    return CliRunner().invoke(cli, ["--store", str(store), *args], catch_exceptions=False)


def test_cli_tool_list(store: Path) -> None:
    result = run(store, "tool", "list")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0].startswith("blocksync_conflicts_list\tbuilt-in\t")
    assert any(line.startswith("word_count\tplugin:wc\t") for line in lines)
    assert "warning: plugin 'wc_schema' offers no tool" in result.stderr
    data = json.loads(run(store, "tool", "list", "--json").stdout)
    names = [t["name"] for t in data["tools"]]
    assert names[:5] == BUILTINS and "echo" in names and "word_count" in names
    assert [p["plugin"] for p in data["problems"]] == ["wc_schema"]
    wc = data["tools"][names.index("word_count")]
    assert (
        wc["usage_rule"]
        and wc["origin"] == "plugin"
        and wc["parameters_schema"]["type"] == "object"
    )


def test_cli_tool_run(store: Path) -> None:
    result = run(
        store, "tool", "run", "word_count", "--params", '{"text": "a a b"}', "--agent", "alice"
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["top"] == [["a", 2], ["b", 1]]
    result = run(
        store,
        "tool",
        "run",
        "echo",
        "--params",
        '{"text": "hi"}',
        "--agent",
        "alice",
        "--call-id",
        "c-9",
        "--json",
    )
    data = json.loads(result.stdout)
    assert (data["tool"], data["call_id"], data["agent"], data["plugin"]) == (
        "echo",
        "c-9",
        "alice",
        "echo",
    )
    assert data["output"]["call"] == "c-9"
    result = run(store, "tool", "run", "blocksync_conflicts_list")  # params default to {}
    assert json.loads(result.stdout) == {"conflicts": []}


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (
            ["word_count", "--params", '{"text": "a", "top": 0}'],
            2,
            "error: tool 'word_count' (plugin 'wc') call call-",
        ),
        (
            ["word_count", "--params", '{"text": "a", "top": 0}'],
            2,
            "at /top (minimum): 0 is less than the minimum of 1",
        ),
        (["word_count", "--params", "{nope"], 2, "error: the params are not JSON"),
        (["word_count_fail", "--params", '{"text": "a"}'], 1, "word_count was told to fail"),
        (["word_count_bad_output", "--params", '{"text": "a"}'], 1, "at /words (type)"),
        (["nope"], 4, "error: no tool named 'nope'"),
        (["wc_schema", "--params", '{"text": "a"}'], 1, "is not a valid JSON Schema"),
    ],
)
def test_cli_tool_run_errors(store: Path, args: list[str], code: int, message: str) -> None:
    result = run(store, "tool", "run", *args)
    assert result.exit_code == code
    assert message in result.stderr and "Traceback" not in result.output
    assert result.stdout == ""


def test_cli_tool_run_refuses_another_agents_plugin_tool(store: Path) -> None:
    """alice's plugins' tools are hers: bob's call is refused (exit 1), naming how to grant it."""
    result = run(store, "tool", "run", "word_count", "--params", '{"text": "a"}', "--agent", "bob")
    assert (result.exit_code, result.stdout) == (1, "")
    assert "agent 'bob' may not call tool 'word_count' of plugin 'wc' of 'alice'" in result.stderr
    assert "may_act_for" in result.stderr
    with (store / "blocksync.toml").open("a") as f:
        f.write('\n[agents.bob]\nmay_act_for = ["alice"]\n')
    result = run(store, "tool", "run", "word_count", "--params", '{"text": "a"}', "--agent", "bob")
    assert result.exit_code == 0 and json.loads(result.stdout)["words"] == 1
