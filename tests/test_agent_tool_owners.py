"""The built-in agent tools act for the calling agent only (issue 11, item 5).

An agent reads and changes its own blocks and conflicts; ``[agents.<id>] may_act_for`` grants it
others'; a call naming no agent (a human, a program without ``agent=``) acts on everything as
before. Through the installed ``blocksync`` command in a subprocess and through the library, on a
real folder source, real git and real SQLite.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import blocksync
from blocksync.errors import AccessDenied, AgentNotAllowed, ConfigError

BLOCKSYNC = str(Path(sys.executable).parent / "blocksync")
ENV = {k: v for k, v in os.environ.items() if k != "BLOCKSYNC_STORE"}
ENV["BLOCKSYNC_AUTHOR"] = "human:test"


def cli(store: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [BLOCKSYNC, "--store", str(store), *args],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=120,
        check=False,
    )


def tool(
    store: Path, name: str, params: dict[str, object], agent: str | None = None
) -> subprocess.CompletedProcess[str]:
    return cli(
        store,
        "tool",
        "run",
        name,
        "--params",
        json.dumps(params),
        *(("--agent", agent) if agent else ()),
    )


def configure(store: Path, notes: Path, extra: str = "") -> None:
    with open(store / "blocksync.toml", "a", encoding="utf-8") as f:
        f.write(
            f'\n[agents.bob.data_sources.notes]\ntype = "file"\npaths = ["{notes}"]\n'
            'permission_rules = [{ pattern = "**", permission = "admin" }]\n' + extra
        )


@pytest.fixture
def bobs(store_path: Path, tmp_path: Path) -> tuple[Path, str, str]:
    """A store where bob owns a bound block with two versions and an open conflict on it:
    (store, the block's label, the conflict's id)."""
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "plan.md").write_text("buy milk\n")
    configure(store_path, notes)
    with blocksync.open(store_path, author="test:setup") as ws:
        ws.reconcile(["notes"])
        (label,) = [b.label for b in ws.blocks.list("bob")]
        ws.blocks.update("bob", label, "buy bread\n")
        (notes / "plan.md").write_text("buy rice\n")
        assert ws.reconcile(["notes"]).exit_code == 3
        (conflict,) = ws.conflicts.list()
    return store_path, label, conflict.id


def test_an_agent_cannot_roll_back_anothers_block(bobs: tuple[Path, str, str]) -> None:
    store, label, _ = bobs
    done = tool(
        store,
        "blocksync_block_rollback",
        {"owner": "bob", "label": label, "version": 1},
        agent="mallory",
    )
    assert done.returncode == 1, done.stderr
    (line,) = done.stderr.splitlines()
    assert line.startswith("error: agent 'mallory' may not roll back block")
    assert "of 'bob'" in line and "may_act_for" in line and "[agents.mallory]" in line
    with blocksync.open(store) as ws:
        assert ws.blocks.read("bob", label).version == 2  # nothing was rolled back
    own = tool(
        store,
        "blocksync_block_rollback",
        {"owner": "bob", "label": label, "version": 1},
        agent="bob",
    )
    assert own.returncode == 0, own.stderr
    assert json.loads(own.stdout)["version"] == 3


def test_an_agent_cannot_resolve_anothers_conflict(bobs: tuple[Path, str, str]) -> None:
    store, label, cid = bobs
    done = tool(store, "blocksync_conflict_resolve", {"id": cid, "take": "agent"}, agent="mallory")
    assert done.returncode == 1, done.stderr
    (line,) = done.stderr.splitlines()
    assert f"agent 'mallory' may not resolve conflict {cid} of 'bob'" in line
    with blocksync.open(store) as ws:
        assert ws.conflicts.get(cid).status == "open"
        assert ws.blocks.read("bob", label).content == "buy bread\n"
    own = tool(store, "blocksync_conflict_resolve", {"id": cid, "take": "agent"}, agent="bob")
    assert own.returncode == 0, own.stderr
    assert json.loads(own.stdout)["resolved_by"] == "agent:bob"


def test_reading_tools_follow_the_same_rule(bobs: tuple[Path, str, str]) -> None:
    store, label, cid = bobs
    listed = tool(store, "blocksync_conflicts_list", {}, agent="mallory")
    assert listed.returncode == 0 and json.loads(listed.stdout) == {"conflicts": []}
    listed = tool(store, "blocksync_conflicts_list", {}, agent="bob")
    assert [c["id"] for c in json.loads(listed.stdout)["conflicts"]] == [cid]
    shown = tool(store, "blocksync_conflict_show", {"id": cid}, agent="mallory")
    assert shown.returncode == 1 and f"may not read conflict {cid} of 'bob'" in shown.stderr
    history = tool(
        store, "blocksync_block_history", {"owner": "bob", "label": label}, agent="mallory"
    )
    assert history.returncode == 1 and "may not read the history of block" in history.stderr


def test_a_call_without_an_agent_acts_as_before(bobs: tuple[Path, str, str]) -> None:
    store, label, cid = bobs
    listed = tool(store, "blocksync_conflicts_list", {})
    assert [c["id"] for c in json.loads(listed.stdout)["conflicts"]] == [cid]
    done = tool(store, "blocksync_block_rollback", {"owner": "bob", "label": label, "version": 1})
    assert done.returncode == 0, done.stderr


def test_may_act_for_grants_another_owner(bobs: tuple[Path, str, str]) -> None:
    store, _label, cid = bobs
    with open(store / "blocksync.toml", "a", encoding="utf-8") as f:
        f.write('\n[agents.mallory]\nmay_act_for = ["bob"]\n')
    listed = tool(store, "blocksync_conflicts_list", {}, agent="mallory")
    assert [c["id"] for c in json.loads(listed.stdout)["conflicts"]] == [cid]
    done = tool(store, "blocksync_conflict_resolve", {"id": cid, "take": "disk"}, agent="mallory")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["resolved_by"] == "agent:mallory"
    # the grant is one way: bob may not act for mallory
    with blocksync.open(store) as ws:
        ws.blocks.create("mallory", "secret", "mine\n")
        with pytest.raises(AgentNotAllowed):
            ws.tools.call(
                "blocksync_block_history", {"owner": "mallory", "label": "secret"}, agent="bob"
            )


def test_the_library_raises_access_denied_with_its_data(bobs: tuple[Path, str, str]) -> None:
    store, label, _ = bobs
    with blocksync.open(store) as ws, pytest.raises(AccessDenied) as info:
        ws.tools.call(
            "blocksync_block_rollback",
            {"owner": "bob", "label": label, "version": 1},
            agent="mallory",
        )
    err = info.value
    assert isinstance(err, AgentNotAllowed) and err.exit_code == 1
    assert (err.agent, err.owner) == ("mallory", "bob")


@pytest.mark.parametrize("value", ['"bob"', "3", "[3]", '[""]', '["bob", ["x"]]', "{ bob = true }"])
def test_may_act_for_must_be_a_list_of_agent_ids(store_path: Path, value: str) -> None:
    with open(store_path / "blocksync.toml", "a", encoding="utf-8") as f:
        f.write(f"\n[agents.mallory]\nmay_act_for = {value}\n")
    with pytest.raises(ConfigError, match=r"\[agents.mallory\] may_act_for must be a list"):
        blocksync.open(store_path)
    done = cli(store_path, "tool", "list")
    assert done.returncode == 2
    (line,) = done.stderr.splitlines()
    assert "may_act_for must be a list of agent ids" in line
