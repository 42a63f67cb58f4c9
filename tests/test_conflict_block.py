"""``blocksync:conflicts``: an agent's open conflicts as a block it reads, kept by the host.

A real store with a native folder source making real conflicts; commits counted by the real
git CLI; the command line run as a subprocess; two stores meeting through a bare repository.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

import blocksync
from blocksync.agents.conflict_block import LABEL, MAX_LISTED, NONE_OPEN, not_kept, render
from blocksync.config import toml_table
from blocksync.errors import BlockNotFound, ConfigError, InvalidLabel, NotFound
from blocksync.index.conflicts import Conflict
from blocksync.plugins.source import PluginSource
from blocksync.store.bases import SyncBases
from blocksync.store.gitstore import GitStore

from . import test_reconcile
from .conftest import assert_git_fsck, git
from .plugin_builds import built_plugins
from .stores import make_store, make_store_for
from .test_agent_tool_owners import cli
from .test_reconcile import conflict_on_a

#: the folder of test_reconcile's stores (a.md and b.md), a fixture
notes = test_reconcile.notes


@pytest.fixture
def store(tmp_path: Path, notes: Path) -> Iterator[Path]:
    """alice's file source ``notes`` (admin), and her conflict block; git fsck'd after."""
    rules = [{"pattern": "**", "permission": "admin"}]
    table = {"type": "file", "paths": [str(notes)], "permission_rules": rules}
    extra = toml_table(("agents", "alice"), {"conflict_block": True})
    yield make_store_for(tmp_path / "store", {"alice": {"notes": table}}, extra=extra)
    assert_git_fsck(tmp_path / "store" / "repo")


@pytest.fixture
def ws(store: Path) -> Iterator[blocksync.Workspace]:
    with blocksync.open(store, author="human:test") as workspace:
        yield workspace
        assert workspace.fsck().ok


def commits(ws: blocksync.Workspace) -> int:
    return int(git(ws.repo_path, "rev-list", "--count", "main"))


def block_text(ws: blocksync.Workspace, owner: str = "alice") -> str:
    return ws.blocks.read(owner, LABEL).content


def test_the_block_lists_a_conflict_until_resolved_and_again_after_undo(
    ws: blocksync.Workspace, notes: Path
) -> None:
    ws.reconcile()
    assert block_text(ws) == NONE_OPEN  # the agent has the block from its first run on
    conflict = conflict_on_a(ws, notes)
    text = block_text(ws)
    (line,) = [line for line in text.splitlines() if line.startswith("- ")]
    assert line.startswith(f"- {conflict} notes a.md [file:")
    assert "disk changed, agent changed (both sides changed the same lines)" in line
    assert text.startswith("1 open conflict(s) in blocks of alice")
    assert f"blocksync conflicts resolve {conflict} --take disk|agent|merged" in text
    assert f'ws.conflicts.resolve("{conflict}", take="disk")' in text
    assert f"blocksync conflicts undo {conflict}" in text

    ws.conflicts.resolve(conflict, take="disk")
    assert block_text(ws) == NONE_OPEN
    ws.conflicts.undo(conflict)
    assert block_text(ws) == text  # the same conflict (same id) is open again

    history = ws.blocks.history("alice", LABEL)
    assert [v.version for v in history][-1] == 4  # none, one, none, one: a version each


def test_a_run_with_nothing_new_makes_no_commit(ws: blocksync.Workspace, notes: Path) -> None:
    conflict_on_a(ws, notes)
    before = commits(ws)
    ws.reconcile()  # the conflict is still open, as it was: the block is up to date
    ws.reconcile()
    assert commits(ws) == before
    assert ws.refresh_conflict_blocks() == []
    assert commits(ws) == before


def test_an_agents_edit_is_overwritten_by_the_next_run_and_kept_in_history(
    ws: blocksync.Workspace, notes: Path
) -> None:
    conflict_on_a(ws, notes)
    listed = block_text(ws)
    ws.blocks.update("alice", LABEL, "all fine here\n")
    ws.reconcile()
    assert block_text(ws) == listed
    contents = [
        ws.blocks.read("alice", LABEL, v.version).content for v in ws.blocks.history("alice", LABEL)
    ]
    assert "all fine here\n" in contents


def test_the_built_in_resolve_tool_keeps_it_current(ws: blocksync.Workspace, notes: Path) -> None:
    conflict = conflict_on_a(ws, notes)
    params = {"id": conflict, "take": "agent"}
    ws.tools.call("blocksync_conflict_resolve", params, agent="alice")
    assert block_text(ws) == NONE_OPEN


def test_the_outermost_hold_of_the_lock_refreshes_it_even_when_its_run_fails(
    ws: blocksync.Workspace, notes: Path
) -> None:
    ws.reconcile()
    (a_label,) = [b.label for b in ws.blocks.list("alice") if b.label.endswith("a.md")]
    (notes / "a.md").write_text("line1 disk\nline2\nline3\n")
    ws.blocks.update("alice", a_label, "line1 agent\nline2\nline3\n")
    with pytest.raises(NotFound), ws.locked("a job of mine"):
        assert ws.reconcile().exit_code == 3
        assert block_text(ws) == NONE_OPEN  # an inner hold: the job is not over yet
        ws.conflicts.get("c-0000000000")  # the job fails after the conflict was recorded
    (conflict,) = ws.conflicts.list()
    assert f"- {conflict.id} notes a.md" in block_text(ws)


def test_a_deleted_block_comes_back_on_demand(ws: blocksync.Workspace, notes: Path) -> None:
    conflict = conflict_on_a(ws, notes)
    assert conflict in ws.conflict_block("alice")
    ws.blocks.delete("alice", LABEL)
    assert ws.refresh_conflict_blocks() == ["alice"]
    assert block_text(ws) == ws.conflict_block("alice")


def test_an_agent_without_the_setting_gets_no_block(
    store_path: Path, notes: Path, tmp_path: Path
) -> None:
    other = tmp_path / "other"
    other.mkdir()
    (other / "c.md").write_text("one\n")
    with (store_path / "blocksync.toml").open("a", encoding="utf-8") as f:
        f.write(
            f'\n[agents.bob.data_sources.other]\ntype = "file"\npaths = ["{other}"]\n'
            'permission_rules = [{ pattern = "**", permission = "admin" }]\n'
            "\n[agents.carol]\nconflict_block = false\n"
        )
    with blocksync.open(store_path, author="human:test") as ws:
        ws.reconcile()
        (label,) = [b.label for b in ws.blocks.list("bob")]
        (other / "c.md").write_text("disk\n")
        ws.blocks.update("bob", label, "agent\n")
        assert ws.reconcile().exit_code == 3
        assert ws.refresh_conflict_blocks() == []
        for owner in ("bob", "carol"):
            with pytest.raises(BlockNotFound):
                ws.blocks.read(owner, LABEL)
        assert [b.label for b in ws.blocks.list("bob")] == [label]


def test_sync_from_the_command_line_keeps_it_current(store: Path, notes: Path) -> None:
    with blocksync.open(store, author="human:test") as ws:
        conflict = conflict_on_a(ws, notes)
    done = cli(store, "conflicts", "resolve", conflict, "--take", "agent")
    assert done.returncode == 0, done.stderr
    shown = cli(store, "block", "read", "alice", LABEL)
    assert shown.stdout == NONE_OPEN
    (notes / "a.md").write_text("line1 disk again\nline2\nline3\n")
    with blocksync.open(store, author="human:test") as ws:
        (a_label,) = [b.label for b in ws.blocks.list("alice") if b.label.endswith("a.md")]
        ws.blocks.update("alice", a_label, "line1 agent again\nline2\nline3\n")
    done = cli(store, "sync")
    assert done.returncode == 3, done.stderr
    with blocksync.open(store) as ws:
        (again,) = ws.conflicts.list()
        assert f"- {again.id} notes a.md" in block_text(ws)


@pytest.mark.parametrize("value", ['"yes"', "1", "[true]", "{ on = true }"])
def test_a_non_boolean_setting_is_a_config_error_naming_file_and_key(
    store_path: Path, value: str
) -> None:
    with (store_path / "blocksync.toml").open("a", encoding="utf-8") as f:
        f.write(f"\n[agents.alice]\nconflict_block = {value}\n")
    with pytest.raises(ConfigError) as info:
        blocksync.open(store_path)
    message = str(info.value)
    assert str(store_path / "blocksync.toml") in message
    assert "[agents.alice] conflict_block must be true or false" in message
    done = cli(store_path, "conflicts", "list")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "conflict_block must be true or false" in done.stderr


def test_an_agent_id_that_cannot_own_a_block_is_refused_when_the_store_opens(
    store_path: Path,
) -> None:
    with (store_path / "blocksync.toml").open("a", encoding="utf-8") as f:
        f.write('\n[agents."a\\tb"]\nconflict_block = true\n')
    with pytest.raises(ConfigError, match="conflict_block: the agent id cannot own a block"):
        blocksync.open(store_path)


def test_no_source_binds_a_host_label(store_path: Path) -> None:
    git_store = GitStore(store_path / "repo")
    try:
        bases = SyncBases(git_store, "notes")
        with (
            pytest.raises(InvalidLabel, match="blocksync's own blocks"),
            bases.update("bind", "human:test") as tx,
        ):
            tx.set_base("conflicts", "alice", LABEL, "text\n")
        assert bases.bindings() == []
    finally:
        git_store.close()


def _row(n: int, **sides: str | None) -> Conflict:
    fields: dict[str, object] = dict.fromkeys(Conflict.__dataclass_fields__)
    fields.update(
        id=f"c-{n:010x}",
        seq=n,
        source="notes",
        path=f"p{n}.md",
        owner="alice",
        label=f"file:x:p{n}.md",
        reason="both sides changed the same lines",
        base_hash="b",
        disk_hash="d",
        agent_hash="a",
        status="open",
    )
    fields.update(sides)
    return Conflict(**fields)  # type: ignore[arg-type]


def test_each_side_says_what_it_did_one_line_per_conflict_and_the_rest_counted() -> None:
    rows = [
        _row(1, disk_hash=None),
        _row(2, base_hash=None),
        _row(3, agent_hash="b", path="two\nlines.md"),
    ]
    text = render("alice", rows, total=len(rows))
    lines = [line for line in text.splitlines() if line.startswith("- ")]
    assert "disk deleted, agent changed" in lines[0]
    assert "disk created, agent created" in lines[1]
    assert "notes two\\nlines.md" in lines[2] and "agent unchanged" in lines[2]
    many = render("alice", [_row(n) for n in range(MAX_LISTED)], total=MAX_LISTED + 5)
    assert "- ... and 5 more: blocksync conflicts list" in many
    assert len(render("alice", rows, total=3, limit=80)) <= 80


def test_a_pull_keeps_this_machines_block_without_a_conflict(tmp_path: Path) -> None:
    hub = tmp_path / "hub.git"
    subprocess.run(["git", "init", "-q", "--bare", "--initial-branch=main", str(hub)], check=True)
    stores = []
    for name in ("a", "b"):
        blocksync.init(tmp_path / name).close()
        with (tmp_path / name / "blocksync.toml").open("a", encoding="utf-8") as f:
            f.write("\n[agents.alice]\nconflict_block = true\n")
        ws = blocksync.open(tmp_path / name, author=f"human:{name}")
        ws.add_remote("hub", str(hub))
        stores.append(ws)
    a, b = stores
    try:
        assert a.refresh_conflict_blocks() == ["alice"]
        a.push("hub")
        b.pull("hub")
        assert block_text(b) == NONE_OPEN
        # both machines' copies change since the merge base (agents writing into them)
        a.blocks.update("alice", LABEL, "written on a\n")
        b.blocks.update("alice", LABEL, "written on b\n")
        a.blocks.create("alice", "notes", "from a\n")
        a.push("hub")
        pull = b.pull("hub")
        assert pull.conflicts == [] and b.conflicts.list() == []
        assert b.blocks.read("alice", "notes").content == "from a\n"
        assert block_text(b) == NONE_OPEN  # this machine's view, rewritten after the pull
        # a conflict a pull brings is listed by that pull
        b.push("hub")
        a.pull("hub")
        a.blocks.update("alice", "notes", "edited on a\n")
        b.blocks.update("alice", "notes", "edited on b\n")
        a.push("hub")
        (path, conflict) = b.pull("hub").conflicts[0]
        assert f"- {conflict} remote:hub {path} [notes]: disk changed, agent changed" in (
            block_text(b)
        )
    finally:
        a.close()
        b.close()
    for repo in (hub, tmp_path / "a" / "repo", tmp_path / "b" / "repo"):
        assert_git_fsck(repo)


def test_a_plugins_label_namespace_never_offers_a_host_block(tmp_path: Path) -> None:
    """A namespace covering ``blocksync:`` would offer ``blocksync:conflicts`` to the plugin
    (as the path ``:conflicts`` under ``blocksync``); it is the host's, so it is never a
    candidate. (A namespace under ``blocksync:`` itself is refused when the config is read.)"""
    (wasm,) = built_plugins(["seed_files"]).values()
    root = tmp_path / "notes"
    root.mkdir()
    table = {
        "path": wasm,
        "dir": root,
        "dir_mode": "read-write",
        "config": {"owner": "alice", "permission": "admin"},
        "label_namespace": "blocksync",
    }
    store = make_store(tmp_path / "store", {"notes": table})
    with (store / "blocksync.toml").open("a", encoding="utf-8") as f:
        f.write("\n[agents.alice]\nconflict_block = true\n")
    with blocksync.open(store, author="human:test") as ws:
        assert ws.refresh_conflict_blocks() == ["alice"]
        source = ws.reconciler.source("notes")
        assert isinstance(source, PluginSource)
        assert source.label_namespace() == "blocksync"
        assert source.namespace_candidates({}, set()) == set()
        report = ws.reconcile().sources[0]
        assert report.error is None and report.resolved == []
        assert list(root.iterdir()) == []
    assert_git_fsck(store / "repo")


# -- on demand: `blocksync conflicts block` -------------------------------------------------


def test_the_command_refreshes_on_demand_and_then_finds_it_up_to_date(
    store: Path, notes: Path
) -> None:
    with blocksync.open(store, author="human:test") as ws:
        conflict = conflict_on_a(ws, notes)
        listed = block_text(ws)
        ws.blocks.delete("alice", LABEL)  # written outside a locked run: nothing refreshes it
    done = cli(store, "conflicts", "block", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {
        "format": 1,
        "label": LABEL,
        "written": ["alice"],
        "up_to_date": [],
        "retired": [],
    }
    with blocksync.open(store) as ws:
        assert block_text(ws) == listed and conflict in listed
        before = commits(ws)
    done = cli(store, "conflicts", "block", "--agent", "alice")
    assert (done.returncode, done.stdout, done.stderr) == (0, "alice: up to date\n", "")
    with blocksync.open(store) as ws:
        assert commits(ws) == before  # up to date: no commit
        ws.blocks.update("alice", LABEL, "an agent wrote here\n")
    done = cli(store, "conflicts", "block", "--agent", "alice", "--agent", "alice")
    assert (done.returncode, done.stdout) == (0, "alice: written\n")


def test_the_command_without_agents_configured_says_so(store_path: Path) -> None:
    done = cli(store_path, "conflicts", "block")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "no agent keeps a conflict block (conflict_block = true in [agents.ID])\n"


@pytest.mark.parametrize(
    ("agent", "code", "kind", "said"),
    [
        ("carol", 4, "NotFound", "no agent 'carol' in "),
        ("bob", 2, "UsageError", "[agents.bob] in "),
        ("a\tb", 2, "InvalidLabel", "agent id contains control character"),
        ("", 2, "InvalidLabel", "an empty agent id"),
    ],
)
def test_an_agent_that_keeps_no_block_is_refused_writing_nothing(
    store: Path, agent: str, code: int, kind: str, said: str
) -> None:
    with (store / "blocksync.toml").open("a", encoding="utf-8") as f:
        f.write("\n[agents.bob]\nconflict_block = false\n")
    with blocksync.open(store) as ws:
        assert ws.blocks.head() is None  # alice's block not made yet: a refresh would commit
    done = cli(store, "conflicts", "block", "--agent", agent, "--json")
    assert done.returncode == code and done.stdout == ""
    error = json.loads(done.stderr)
    assert (error["error"]["type"], error["exit_code"]) == (kind, code)
    assert said in error["error"]["message"]
    text = cli(store, "conflicts", "block", "--agent", agent)
    assert text.returncode == code and "Traceback" not in text.stderr
    assert text.stderr.startswith("error: ") and len(text.stderr.splitlines()) == 1
    if agent == "bob":
        assert "does not say conflict_block = true (agents that do: alice)" in text.stderr
    with blocksync.open(store) as ws:
        assert ws.blocks.head() is None  # refused before the lock: nobody's block refreshed
        with pytest.raises(blocksync.BlocksyncError) as refused:
            ws.refresh_conflict_blocks([agent])
        assert refused.value.exit_code == code


# -- turned off: the listing is retired ------------------------------------------------------


def _turn_off(store: Path, how: str) -> None:
    """alice's setting off (``false``) or her table gone (``removed``)."""
    toml = store / "blocksync.toml"
    text = toml.read_text(encoding="utf-8")
    if how == "false":
        text = text.replace("conflict_block = true", "conflict_block = false")
    else:
        text = text.replace("[agents.alice]\nconflict_block = true\n", "")
    assert "conflict_block = true" not in text
    toml.write_text(text, encoding="utf-8")


@pytest.mark.parametrize("how", ["false", "removed"])
def test_turned_off_the_listing_is_replaced_by_a_note_and_kept_in_history(
    tmp_path: Path, how: str
) -> None:
    store = tmp_path / "store"
    blocksync.init(store).close()
    with (store / "blocksync.toml").open("a", encoding="utf-8") as f:
        f.write("\n[agents.alice]\nconflict_block = true\n")
    with blocksync.open(store, author="human:test") as ws:
        ws.blocks.create("alice", "notes", "one\n")
        assert ws.refresh_conflict_blocks() == ["alice"]
        assert block_text(ws) == NONE_OPEN
    _turn_off(store, how)
    done = cli(store, "conflicts", "block")  # every locked run does it; this one alone
    assert (done.returncode, done.stdout) == (0, "alice: retired\n"), done.stderr
    with blocksync.open(store, author="human:test") as ws:
        note = block_text(ws)
        assert note == not_kept("alice") and note.count("\n") == 1
        assert "blocksync no longer keeps this block" in note
        assert "blocksync block delete alice blocksync:conflicts" in note
        history = ws.blocks.history("alice", LABEL)
        assert [ws.blocks.read("alice", LABEL, v.version).content for v in history] == [
            NONE_OPEN,
            note,
        ]
        before = commits(ws)
        assert ws.refresh_conflict_blocks() == []  # retired once: nothing more to write
        with ws.locked("a job"):
            pass
        assert commits(ws) == before
        # the note is a block like any: deleting it is the person's choice, and it stays gone
        ws.blocks.delete("alice", LABEL)
        ws.refresh_conflict_blocks()
        with pytest.raises(BlockNotFound):
            ws.blocks.read("alice", LABEL)


def test_a_locked_run_retires_a_listing_of_resolved_conflicts(store: Path, notes: Path) -> None:
    with blocksync.open(store, author="human:test") as ws:
        conflict = conflict_on_a(ws, notes)
        assert conflict in block_text(ws)
    _turn_off(store, "false")
    with blocksync.open(store, author="human:test") as ws:
        ws.conflicts.resolve(conflict, take="disk")  # a locked run: its end retires the block
        assert block_text(ws) == not_kept("alice")
        assert conflict not in block_text(ws)
    # turned on again: the listing is back
    toml = store / "blocksync.toml"
    toml.write_text(
        toml.read_text(encoding="utf-8").replace("conflict_block = false", "conflict_block = true"),
        encoding="utf-8",
    )
    with blocksync.open(store, author="human:test") as ws:
        ws.reconcile()
        assert block_text(ws) == NONE_OPEN


def test_only_a_listing_this_machine_wrote_is_retired(tmp_path: Path) -> None:
    """A listing written on another machine (it came by pull) is that machine's to keep, and
    a block someone wrote into after the setting went off is theirs: neither is retired."""
    store = tmp_path / "store"
    blocksync.init(store).close()
    toml = store / "blocksync.toml"
    text = toml.read_text(encoding="utf-8").replace("[store]\n", '[store]\nmachine = "m1"\n', 1)
    toml.write_text(text + "\n[agents.alice]\nconflict_block = true\n[agents.bob]\n", "utf-8")
    with blocksync.open(store, author="human:test") as ws:
        assert ws.refresh_conflict_blocks() == ["alice"]
        ws.blocks.create("bob", LABEL, "bob's own words\n")  # not blocksync's listing
    text = toml.read_text(encoding="utf-8").replace('machine = "m1"', 'machine = "m2"')
    toml.write_text(text.replace("conflict_block = true", "conflict_block = false"), "utf-8")
    with blocksync.open(store, author="human:test") as ws:
        assert ws.refresh_conflict_blocks() == []
        assert block_text(ws) == NONE_OPEN  # m1's listing, left to m1
        assert block_text(ws, "bob") == "bob's own words\n"
    text = toml.read_text(encoding="utf-8").replace('machine = "m2"', 'machine = "m1"')
    toml.write_text(text, "utf-8")
    with blocksync.open(store, author="human:test") as ws:
        assert ws.refresh_conflict_blocks() == ["alice"]  # back on m1: its own listing retired
        assert block_text(ws) == not_kept("alice")
        ws.blocks.update("alice", LABEL, "alice keeps notes here now\n")
        assert ws.refresh_conflict_blocks() == []
        assert block_text(ws) == "alice keeps notes here now\n"
        assert block_text(ws, "bob") == "bob's own words\n"


def test_a_short_char_limit_gets_the_note_cut_to_fit(tmp_path: Path) -> None:
    store = tmp_path / "store"
    blocksync.init(store).close()
    toml = store / "blocksync.toml"
    toml.write_text(toml.read_text("utf-8") + "\n[agents.alice]\nconflict_block = true\n", "utf-8")
    with blocksync.open(store, author="human:test") as ws:
        ws.refresh_conflict_blocks()
        ws.blocks.update("alice", LABEL, "x\n", char_limit=40)  # someone set a limit ...
        assert ws.refresh_conflict_blocks() == ["alice"]  # ... which the listing keeps
    _turn_off(store, "false")
    with blocksync.open(store, author="human:test") as ws:
        assert ws.refresh_conflict_blocks() == ["alice"]
        assert block_text(ws) == not_kept("alice")[:40]
        assert ws.blocks.read("alice", LABEL).meta.char_limit == 40
