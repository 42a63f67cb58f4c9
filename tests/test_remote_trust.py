"""Remotes that cannot be trusted blindly (issue 11, items 11, 12 and 13).

* An unresolved conflict travels: it is recorded in the pushed tree (``conflicts/``), so every
  machine sees it open, and its resolution (or undo) travels back the same way.
* A pull that would delete most of this store's blocks is refused until the user confirms.
* A pull that brings malformed blocks or a tree that is no blocksync store is refused, nothing
  applied; a push into a checked-out main of a non-bare repository is refused, as git does.

Real bare hub repositories (``git init --bare``), real stores, the CLI in subprocesses and the
library API, malformed commits built with the git CLI, and ``git fsck --strict`` on every repo.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import blocksync
from blocksync.runner import run_sync
from blocksync.store import layout

from .conftest import assert_git_fsck, git
from .stores import refs_of

BIN = Path(sys.executable).parent / "blocksync"


def _bare(path: Path) -> Path:
    subprocess.run(["git", "init", "-q", "--bare", "--initial-branch=main", str(path)], check=True)
    return path


def _cli(store: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "BLOCKSYNC_AUTHOR": f"human:{store.name}"}
    return subprocess.run(
        [str(BIN), "--store", str(store), *args],
        input=stdin,
        text=True,
        capture_output=True,
        env=env,
        timeout=120,
        check=False,
    )


def _open_ids(ws: blocksync.Workspace) -> list[str]:
    return [c.id for c in ws.conflicts.list()]


def _hub_paths(hub: Path, folder: str) -> list[str]:
    out = git(hub, "ls-tree", "-r", "--name-only", "main", "--", folder)
    return out.split()


def _v2(path: str) -> str:
    """``blocks/<owner>/<label>/...`` (or ``conflicts/...``) as store format 2 places it:
    below two fan-out folders, the first 2 + 2 hex digits of the sha256 of the label."""
    parts = path.split("/")
    if parts[0] not in ("blocks", "conflicts") or len(parts) < 3:
        return path
    fan = hashlib.sha256(parts[2].encode()).hexdigest()
    return "/".join([*parts[:2], fan[:2], fan[2:4], *parts[2:]])


def _blob(text: str) -> str:
    return subprocess.run(
        ["git", "hash-object", "--stdin"], input=text, text=True, capture_output=True, check=True
    ).stdout.strip()


@pytest.fixture
def machines(tmp_path: Path) -> Iterator[tuple[Path, Path, Path]]:
    """(laptop, server, hub): two stores sharing alice/plan through a bare hub; git fsck after."""
    hub = _bare(tmp_path / "hub.git")
    for name in ("laptop", "server"):
        ws = blocksync.init(tmp_path / name, author=f"human:{name}")
        ws.add_remote("hub", str(hub))
        ws.close()
    plan = "buy milk\nwalk the dog\ncall mum\n"
    assert _cli(tmp_path / "laptop", "block", "create", "alice", "plan", stdin=plan).returncode == 0
    assert _cli(tmp_path / "laptop", "sync").returncode == 0
    assert _cli(tmp_path / "server", "sync").returncode == 0
    yield tmp_path / "laptop", tmp_path / "server", hub
    for repo in (hub, tmp_path / "laptop" / "repo", tmp_path / "server" / "repo"):
        assert_git_fsck(repo)
    for store in (tmp_path / "laptop", tmp_path / "server"):
        assert blocksync.fsck(store).ok


def _bread_and_rice(laptop: Path, server: Path) -> None:
    """The README's walk-through: both edit the first line, laptop syncs, then server."""
    for store, food in ((laptop, "bread"), (server, "rice")):
        done = _cli(
            store, "block", "update", "alice", "plan", stdin=f"buy {food}\nwalk the dog\ncall mum\n"
        )
        assert done.returncode == 0, done.stderr
    assert _cli(laptop, "sync").returncode == 0
    done = _cli(server, "sync")
    assert done.returncode == 3, done.stdout + done.stderr


@pytest.fixture
def in_conflict(machines: tuple[Path, Path, Path]) -> tuple[Path, Path, Path]:
    """``machines`` after the walk-through, once the laptop synced again: both in conflict."""
    _bread_and_rice(machines[0], machines[1])
    assert _cli(machines[0], "sync").returncode == 3
    return machines


BREAD = "buy bread\nwalk the dog\ncall mum\n"
RICE = "buy rice\nwalk the dog\ncall mum\n"
MILK = "buy milk\nwalk the dog\ncall mum\n"


# -- item 11: an open conflict travels ---------------------------------------------------------


def test_an_open_remote_conflict_reaches_the_other_machine(
    machines: tuple[Path, Path, Path],
) -> None:
    laptop, server, hub = machines
    _bread_and_rice(laptop, server)
    done = _cli(laptop, "sync", "--json")
    assert done.returncode == 3, done.stdout + done.stderr  # the laptop sees the conflict too
    (entry,) = [s for s in json.loads(done.stdout)["sources"] if s["source"] == "remote:hub"]
    assert [n["path"] for n in entry["needs_resolution"]] == ["alice/plan"]
    assert entry["needs_resolution"][0]["conflict"].startswith("c-")
    assert not [r for r in entry["resolved"] if r["path"] == "alice/plan"]  # not "remote -> local"
    with blocksync.open(laptop) as lws, blocksync.open(server) as sws:
        (here,) = lws.conflicts.list()
        (there,) = sws.conflicts.list()
        # the same conflict on both machines: same sides, same id
        assert here.id == there.id and here.source == "remote:hub" and here.path == "alice/plan"
        assert (here.base, here.disk, here.agent) == (MILK, BREAD, RICE)
        # meanwhile both blocks hold the side the merge kept (the server's)
        assert lws.blocks.read("alice", "plan").content == RICE
        assert sws.blocks.read("alice", "plan").content == RICE
        assert [b.label for b in lws.blocks.list()] == ["plan"]
    # the conflict is in the pushed tree: base and the waiting side, as blob ids
    assert _hub_paths(hub, "conflicts") == [
        _v2("conflicts/alice/plan/1/base"),
        _v2("conflicts/alice/plan/1/other"),
        _v2("conflicts/alice/plan/1/reason"),
    ]
    listing = git(hub, "ls-tree", "-r", "main", _v2("conflicts/alice/plan/1"))
    assert _blob(MILK) in listing and _blob(BREAD) in listing
    assert "overlapping" in git(hub, "show", "main:" + _v2("conflicts/alice/plan/1/reason"))

    # the server resolves: the resolution travels, the laptop's row closes as resolved remotely
    done = _cli(server, "conflicts", "resolve", here.id, "--take", "disk")
    assert done.returncode == 0, done.stderr
    assert _cli(server, "sync").returncode == 0
    assert _cli(laptop, "sync").returncode == 0
    assert _hub_paths(hub, "conflicts") == []
    with blocksync.open(laptop) as lws:
        assert lws.blocks.read("alice", "plan").content == BREAD
        closed = lws.conflicts.get(here.id)
        assert closed.status == "resolved" and not lws.conflicts.list()
    assert _cli(laptop, "block", "read", "alice", "plan").stdout == BREAD


def test_a_resolution_writes_the_block_and_removes_the_record_in_one_commit(
    in_conflict: tuple[Path, Path, Path],
) -> None:
    laptop, server, _hub = in_conflict
    with blocksync.open(laptop, author="human:laptop") as ws:
        (c,) = ws.conflicts.list()
        ws.conflicts.resolve(c.id, take="disk")  # the laptop's own side, bread
        changed = git(ws.repo_path, "show", "--name-only", "--format=", "main").split()
        assert changed == [
            _v2("blocks/alice/plan/content"),
            _v2("conflicts/alice/plan/1/base"),
            _v2("conflicts/alice/plan/1/other"),
            _v2("conflicts/alice/plan/1/reason"),
        ]
        ws.conflicts.undo(c.id)  # the record comes back with the block, in one commit
        changed = git(ws.repo_path, "show", "--name-only", "--format=", "main").split()
        assert changed[0] == _v2("blocks/alice/plan/content") and len(changed) == 4
        assert ws.blocks.read("alice", "plan").content == RICE
        assert _open_ids(ws) == [c.id]
        ws.conflicts.resolve(c.id, take="disk")
    assert _cli(laptop, "sync").returncode == 0
    assert _cli(server, "sync").returncode == 0
    with blocksync.open(server) as ws:
        assert ws.blocks.read("alice", "plan").content == BREAD and not ws.conflicts.list()
        assert ws.conflicts.get(c.id).status == "resolved"


def test_both_resolving_the_same_way_settles_it(in_conflict: tuple[Path, Path, Path]) -> None:
    laptop, server, _ = in_conflict
    for store in (laptop, server):
        with blocksync.open(store) as ws:
            (c,) = ws.conflicts.list()
            ws.conflicts.resolve(c.id, take="disk")
    assert _cli(laptop, "sync").returncode == 0
    assert _cli(server, "sync").returncode == 0
    assert _cli(laptop, "sync").returncode == 0
    for store in (laptop, server):
        with blocksync.open(store) as ws:
            assert ws.blocks.read("alice", "plan").content == BREAD and not ws.conflicts.list()


def test_resolving_differently_is_a_new_conflict_with_both_choices(
    in_conflict: tuple[Path, Path, Path],
) -> None:
    laptop, server, hub = in_conflict
    choice = {laptop: "disk", server: "agent"}  # laptop takes bread, server keeps rice
    for store in (laptop, server):
        with blocksync.open(store) as ws:
            (c,) = ws.conflicts.list()
            ws.conflicts.resolve(c.id, take=choice[store])  # type: ignore[arg-type]
    assert _cli(laptop, "sync").returncode == 0
    assert _cli(server, "sync").returncode == 3
    assert _cli(laptop, "sync").returncode == 3
    sides = set()
    for store in (laptop, server):
        with blocksync.open(store) as ws:
            (c,) = ws.conflicts.list()
            assert "resolved differently" in c.reason
            sides.add((c.disk, c.agent))
            assert ws.blocks.read("alice", "plan").content == c.agent
    assert sides == {(BREAD, RICE)} or sides == {(RICE, BREAD)}
    assert _hub_paths(hub, "conflicts")


def test_a_block_edited_while_in_conflict_moves_the_conflict_on_every_machine(
    in_conflict: tuple[Path, Path, Path],
) -> None:
    laptop, server, _ = in_conflict
    edited = "buy rice and beans\nwalk the dog\ncall mum\n"
    with blocksync.open(laptop) as ws:
        ws.blocks.update("alice", "plan", edited)  # an agent, not a resolution
    assert _cli(laptop, "sync").returncode == 3
    assert _cli(server, "sync").returncode == 3
    for store in (laptop, server):
        with blocksync.open(store) as ws:
            (c,) = ws.conflicts.list()
            assert (c.base, c.disk, c.agent) == (MILK, BREAD, edited)
            assert ws.blocks.read("alice", "plan").content == edited
    with blocksync.open(server) as ws:
        ws.conflicts.resolve(ws.conflicts.list()[0].id, take="disk")
    assert _cli(server, "sync").returncode == 0
    assert _cli(laptop, "sync").returncode == 0
    with blocksync.open(laptop) as ws:
        assert ws.blocks.read("alice", "plan").content == BREAD and not ws.conflicts.list()


def test_three_machines_in_conflict_keep_every_side(tmp_path: Path) -> None:
    """Two machines merge the same third machine's edit, each keeping its own side: the
    merge of their two conflicts keeps all three sides, raised one after the other."""
    hub = _bare(tmp_path / "hub.git")
    stores = []
    for name in ("a", "b", "c"):
        ws = blocksync.init(tmp_path / name, author=f"human:{name}")
        ws.add_remote("hub", str(hub))
        stores.append(ws)
    a, b, c = stores
    a.blocks.create("alice", "plan", MILK)
    a.push("hub")
    b.pull("hub")
    c.pull("hub")
    foods = {"bread": BREAD, "rice": RICE, "tea": "buy tea\nwalk the dog\ncall mum\n"}
    for ws, food in zip(stores, foods):
        ws.blocks.update("alice", "plan", foods[food])
    a.push("hub")
    assert b.pull("hub").conflicts and c.pull("hub").conflicts  # each keeps its own side
    b.push("hub")
    pushed = c.push("hub")  # merges b's merge: both sides conflicted
    assert pushed.action == "pushed"
    for ws in stores:
        run_sync(ws)
    seen: set[str] = set()
    for _ in range(3):
        open_rows = [ws.conflicts.list() for ws in stores]
        if not any(open_rows):
            break
        sides = {tuple((r.base, r.disk, r.agent) for r in rows) for rows in open_rows}
        assert len(sides) == 1, open_rows  # every machine sees the same conflict
        (row,) = open_rows[0]
        seen |= {row.disk or "", row.agent or ""}
        stores[0].conflicts.resolve(row.id, take="agent")
        for ws in stores:
            run_sync(ws)
    assert set(foods.values()) <= seen, "a side was dropped without being offered"
    assert not any(ws.conflicts.list() for ws in stores)
    contents = {ws.blocks.read("alice", "plan").content for ws in stores}
    assert len(contents) == 1
    for ws in stores:
        ws.close()
    for repo in [hub] + [tmp_path / n / "repo" for n in "abc"]:
        assert_git_fsck(repo)


def test_the_conflicts_folder_is_no_block(
    machines: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    laptop, server, _ = machines
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "a.md").write_text("from disk\n")
    with open(laptop / "blocksync.toml", "a", encoding="utf-8") as f:
        f.write(
            f'\n[agents.alice.data_sources.notes]\ntype = "file"\npaths = ["{notes}"]\n'
            'permission_rules = [{ pattern = "**", permission = "read-write" }]\n'
        )
    _bread_and_rice(laptop, server)
    done = _cli(laptop, "sync", "--json")
    assert done.returncode == 3, done.stderr
    doc = json.loads(done.stdout)
    (folder,) = [s for s in doc["sources"] if s["source"] == "notes"]
    assert folder["error"] is None and not folder["skipped"] and not folder["needs_resolution"]
    assert folder["unchanged"] + len(folder["resolved"]) == 1
    assert sorted(p.name for p in notes.iterdir()) == ["a.md"]
    listed = _cli(laptop, "block", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    labels = sorted(b["label"] for b in json.loads(listed.stdout))
    assert len(labels) == 2 and labels[1] == "plan" and labels[0].startswith("file:")
    assert _cli(laptop, "fsck").returncode == 0
    assert _cli(laptop, "index", "rebuild").returncode == 0
    assert _cli(laptop, "fsck").returncode == 0
    history = _cli(laptop, "block", "history", "alice", "plan", "--json")
    assert history.returncode == 0 and len(json.loads(history.stdout)) == 3  # milk, bread, rice


# -- item 12: a remote that deleted (almost) every block ---------------------------------------


def test_a_remote_mass_deletion_is_refused_until_confirmed(tmp_path: Path) -> None:
    hub = _bare(tmp_path / "hub.git")
    here, there = tmp_path / "here", tmp_path / "there"
    for store in (here, there):
        with blocksync.init(store) as ws:
            ws.add_remote("hub", str(hub))
    with blocksync.open(here) as ws, ws.transaction("twenty") as tx:
        for i in range(20):
            tx.create("alice", f"b{i:02}", f"note {i}\n")
    assert _cli(here, "sync").returncode == 0
    assert _cli(there, "sync").returncode == 0
    with blocksync.open(there) as ws, ws.transaction("clean up everything") as tx:
        for i in range(20):
            tx.delete("alice", f"b{i:02}")
    assert _cli(there, "sync").returncode == 0
    hub_head = git(hub, "rev-parse", "main")
    head = git(here / "repo", "rev-parse", "main")

    done = _cli(here, "sync")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "remote:hub: FAILED" in done.stdout and "20 of its 20" in done.stdout
    assert "--allow-mass-delete" in done.stdout
    done = _cli(here, "pull")
    assert done.returncode == 1 and "20 of its 20" in done.stderr and "Traceback" not in done.stderr
    assert git(here / "repo", "rev-parse", "main") == head
    assert git(hub, "rev-parse", "main") == hub_head
    assert len(json.loads(_cli(here, "block", "list", "--json").stdout)) == 20
    with blocksync.open(here) as ws:
        with pytest.raises(blocksync.MassDeletionRefused):
            ws.pull("hub")
        assert git(here / "repo", "show-ref", "refs/remotes/hub/main").split()[0] == head.strip()

    done = _cli(here, "sync", "--allow-mass-delete")
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(_cli(here, "block", "list", "--json").stdout) == []
    # deleted blocks come back from their history
    history = json.loads(_cli(here, "block", "history", "alice", "b07", "--json").stdout)
    assert history[-1]["deleted"] and not history[0]["deleted"]
    done = _cli(here, "block", "rollback", "alice", "b07", str(history[0]["version"]))
    assert done.returncode == 0, done.stderr
    assert _cli(here, "block", "read", "alice", "b07").stdout == "note 7\n"
    for repo in (hub, here / "repo", there / "repo"):
        assert_git_fsck(repo)


def test_the_store_setting_confirms_mass_deletions_too(tmp_path: Path) -> None:
    hub = _bare(tmp_path / "hub.git")
    a = blocksync.init(tmp_path / "a")
    a.add_remote("hub", str(hub))
    b = blocksync.init(tmp_path / "b")
    b.add_remote("hub", str(hub))
    with a.transaction("ten") as tx:
        for i in range(10):
            tx.create("alice", f"b{i}", "x\n")
    a.push("hub")
    b.pull("hub")
    with b.transaction("gone") as tx:
        for i in range(9):
            tx.delete("alice", f"b{i}")
    b.push("hub")
    a.blocks.create("alice", "local", "mine\n")  # diverged: a merge, not a fast-forward
    report = run_sync(a)
    (entry,) = [s for s in report.sources if s.source == "remote:hub"]
    assert report.exit_code == 1 and entry.error is not None and "9 of its 11" in entry.error
    assert len(a.blocks.list()) == 11
    b.close()
    a.close()
    toml = tmp_path / "a" / "blocksync.toml"
    toml.write_text(toml.read_text().replace("[store]", "[store]\nallow_mass_delete = true"))
    with blocksync.open(tmp_path / "a") as a:
        assert a.pull("hub").action == "merged"
        assert [x.label for x in a.blocks.list()] == ["b9", "local"]


# -- item 13: malformed remotes ----------------------------------------------------------------


def _hub_commit(hub: Path, entries: dict[str, bytes | None], *, parent: bool = True) -> str:
    """A commit on the hub's main built with git plumbing: ``entries`` maps paths to new file
    contents (None: remove the path), on main's tree (or an empty one)."""
    index = hub / "tmp-index"
    env = {**os.environ, "GIT_INDEX_FILE": str(index), "GIT_DIR": str(hub)}

    def run(*args: str, data: bytes | None = None) -> str:
        done = subprocess.run(["git", *args], input=data, capture_output=True, env=env, check=True)
        return done.stdout.decode().strip()

    index.unlink(missing_ok=True)
    if parent:
        run("read-tree", "main")
    for path, data in entries.items():
        if data is None:
            run("update-index", "--force-remove", path)
        else:
            blob = run("hash-object", "-w", "--stdin", data=data)
            run("update-index", "--add", "--cacheinfo", f"100644,{blob},{path}")
    tree = run("write-tree")
    index.unlink()
    args = ["commit-tree", tree, "-m", "hostile"] + (
        ["-p", run("rev-parse", "main")] if parent else []
    )
    commit = run(*args)
    run("update-ref", "refs/heads/main", commit)
    return commit


META = (
    b'{\n  "block_type": "working",\n  "char_limit": null,\n  "description": "",\n'
    b'  "schema": "{\\"type\\": \\"text\\"}"\n}\n'
)

LONG = layout.label_component("x" * 300)  # a long label's component: the label is kept beside it
MALFORMED_V1_PATHS = {
    "content not UTF-8": (
        {"blocks/alice/bad/content": b"caf\xe9\n", "blocks/alice/bad/meta.json": META},
        "blocks/alice/bad",
    ),
    "meta.json not JSON": (
        {"blocks/alice/bad/content": b"x\n", "blocks/alice/bad/meta.json": b"{nope"},
        "blocks/alice/bad",
    ),
    "meta.json not a block meta": (
        {"blocks/alice/bad/content": b"x\n", "blocks/alice/bad/meta.json": b'{"description": 5}'},
        "blocks/alice/bad",
    ),
    "over its char_limit": (
        {
            "blocks/alice/bad/content": b"much too long\n",
            "blocks/alice/bad/meta.json": META.replace(b"null", b"3"),
        },
        "blocks/alice/bad",
    ),
    "name decodes to ..": (
        {"blocks/alice/%2E%2E/content": b"x\n", "blocks/alice/%2E%2E/meta.json": META},
        "blocks/alice/%2E%2E",
    ),
    "name not canonical": (
        {"blocks/alice/%61b/content": b"x\n", "blocks/alice/%61b/meta.json": META},
        "blocks/alice/%61b",
    ),
    "control character": (
        {"blocks/alice/a%0Ab/content": b"x\n", "blocks/alice/a%0Ab/meta.json": META},
        "blocks/alice/a%0Ab",
    ),
    "lacks content": ({"blocks/alice/bad/meta.json": META}, "blocks/alice/bad"),
    "lacks meta.json": ({"blocks/alice/bad/content": b"x\n"}, "blocks/alice/bad"),
    "junk in a block folder": (
        {
            "blocks/alice/bad/content": b"x\n",
            "blocks/alice/bad/meta.json": META,
            "blocks/alice/bad/extra": b"?",
        },
        "blocks/alice/bad",
    ),
    "a file for a block": ({"blocks/alice/bad": b"x\n"}, "blocks/alice/bad"),
    "junk at the root": ({"README.md": b"# hi\n"}, "README.md"),
    "a long label's file naming another": (
        {
            f"blocks/alice/{LONG}/content": b"x\n",
            f"blocks/alice/{LONG}/meta.json": META,
            f"blocks/alice/{LONG}/label": b"forged",
        },
        f"blocks/alice/{LONG}",
    ),
    "malformed conflict record": (
        {"conflicts/alice/good/1/other": b"\xff"},
        "conflicts/alice/good",
    ),
}


def _sound_block_at(folder: str) -> tuple[dict[str, bytes], str]:
    """A block sound in itself, in ``folder``: (its files, the folder)."""
    return {f"{folder}/content": b"x\n", f"{folder}/meta.json": META}, folder


#: the cases above as a format-2 store holds them (fan-out folders), and format 2's own
MALFORMED = {
    case: ({_v2(path): data for path, data in entries.items()}, _v2(named))
    for case, (entries, named) in MALFORMED_V1_PATHS.items()
} | {
    "a block outside its fan-out folder": _sound_block_at("blocks/alice/00/00/bad"),
    "a block at format 1's depth": _sound_block_at("blocks/alice/bad"),
    "a format file naming no format": ({"format": b"two\n"}, "format"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_a_pull_of_malformed_blocks_is_refused_and_applies_nothing(
    tmp_path: Path, case: str
) -> None:
    entries, named = MALFORMED[case]
    hub = _bare(tmp_path / "hub.git")
    there = blocksync.init(tmp_path / "there")
    there.add_remote("hub", str(hub))
    there.blocks.create("alice", "good", "fine\n")
    there.push("hub")
    here = tmp_path / "here"
    with blocksync.init(here) as ws:
        ws.add_remote("hub", str(hub))
    assert _cli(here, "pull").returncode == 0
    _hub_commit(hub, entries)
    later = {_v2("blocks/alice/later/content"): b"ok\n", _v2("blocks/alice/later/meta.json"): META}
    _hub_commit(hub, later)
    head = git(here / "repo", "rev-parse", "main")
    refs = refs_of(here / "repo", records=False)  # the refused pull is a run the log records
    done = _cli(here, "pull")
    assert done.returncode == 1, done.stdout + done.stderr
    assert named in done.stderr and "nothing" in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert git(here / "repo", "rev-parse", "main") == head
    assert refs_of(here / "repo", records=False) == refs
    listed = _cli(here, "block", "list", "--json")
    assert listed.returncode == 0 and [b["label"] for b in json.loads(listed.stdout)] == ["good"]
    with blocksync.open(here) as ws:
        ws.blocks.update("alice", "good", "changed here\n")  # diverged: a merge is refused too
        with pytest.raises(blocksync.MalformedRemote) as refused:
            ws.pull("hub")
        assert named in str(refused.value)
        assert ws.blocks.read("alice", "good").content == "changed here\n"
        assert not ws.conflicts.list()
        report = run_sync(ws)
        assert report.exit_code == 1
    there.close()
    assert _cli(here, "fsck").returncode == 0
    assert_git_fsck(here / "repo")


def test_a_repository_that_is_no_store_is_refused_into_an_empty_store(tmp_path: Path) -> None:
    other = _bare(tmp_path / "project.git")
    _hub_commit(other, {"README.md": b"# a project\n", "src/main.py": b"print()\n"}, parent=False)
    store = tmp_path / "store"
    with blocksync.init(store) as ws:
        ws.add_remote("project", str(other))
    done = _cli(store, "pull")
    assert done.returncode == 1 and "README.md" in done.stderr and "not a blocksync" in done.stderr
    with blocksync.open(store) as ws:
        assert ws.blocks.head() is None and ws.blocks.list() == []
    assert refs_of(store / "repo", records=False) == {}  # the refused run is only logged


def test_a_push_into_a_checked_out_main_is_refused(tmp_path: Path) -> None:
    work = tmp_path / "work"
    subprocess.run(["git", "init", "-q", "--initial-branch=main", str(work)], check=True)
    subprocess.run(
        [
            "git",
            "-C",
            str(work),
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "commit",
            "-q",
            "--allow-empty",
            "-m",
            "start",
        ],
        check=True,
    )
    before = subprocess.run(
        ["git", "-C", str(work), "rev-parse", "main"], capture_output=True, text=True, check=True
    ).stdout
    store = tmp_path / "store"
    ws = blocksync.init(store)
    ws.add_remote("work", str(work))
    ws.blocks.create("alice", "notes", "x\n")
    ws.close()
    done = _cli(store, "push")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "checked out" in done.stderr and "bare" in done.stderr and "Traceback" not in done.stderr
    assert (
        subprocess.run(
            ["git", "-C", str(work), "rev-parse", "main"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        == before
    )
    # another branch checked out: main is not under anyone's feet, the push goes ahead
    subprocess.run(["git", "-C", str(work), "checkout", "-q", "-b", "other"], check=True)
    subprocess.run(["git", "-C", str(work), "branch", "-q", "-D", "main"], check=True)
    done = _cli(store, "push")
    assert done.returncode == 0, done.stderr
    with blocksync.open(store) as ws:
        head = ws.blocks.head()
    assert (
        subprocess.run(
            ["git", "-C", str(work), "rev-parse", "main"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        == head
    )
    subprocess.run(
        ["git", "-C", str(work), "fsck", "--strict", "--no-progress"],
        check=True,
        capture_output=True,
    )


def test_metadata_changed_on_both_sides_merges_field_by_field(tmp_path: Path) -> None:
    """Found on the way: the merged meta.json was read back before it was written."""
    hub = _bare(tmp_path / "hub.git")
    a, b = (blocksync.init(tmp_path / n) for n in "ab")
    for ws in (a, b):
        ws.add_remote("hub", str(hub))
    a.blocks.create("alice", "x", "hi\n")
    a.push("hub")
    b.pull("hub")
    a.blocks.update("alice", "x", description="from a")
    b.blocks.update("alice", "x", "hi there\n", char_limit=100)
    a.push("hub")
    assert b.pull("hub").merged == [("alice/x", "merged")]
    merged = b.blocks.read("alice", "x")
    assert (merged.content, merged.description, merged.char_limit) == ("hi there\n", "from a", 100)
    b.push("hub")
    a.pull("hub")
    assert a.blocks.read("alice", "x").meta == merged.meta
    for ws in (a, b):
        ws.close()
    for repo in (hub, tmp_path / "a" / "repo", tmp_path / "b" / "repo"):
        assert_git_fsck(repo)


def test_long_labels_travel_merge_and_conflict(tmp_path: Path) -> None:
    """A label too long for one path component (named by its hash, kept whole beside)."""
    hub = _bare(tmp_path / "hub.git")
    a, b = (blocksync.init(tmp_path / n) for n in "ab")
    for ws in (a, b):
        ws.add_remote("hub", str(hub))
    label = "file:3fa2c1d0:" + "日本語のとても長いファイル名" * 20 + ".md"
    a.blocks.create("alice", label, "one\ntwo\nthree\n")
    a.blocks.create("alice", "short", "x\n")
    a.push("hub")
    assert b.pull("hub").action == "fast-forward"  # the check accepts a long label's folder
    a.blocks.update("alice", label, "ONE\ntwo\nthree\n")
    a.blocks.update("alice", "short", "from a\n")
    b.blocks.update("alice", label, "one\ntwo\nTHREE\n")
    b.blocks.update("alice", "short", "from b\n")
    a.push("hub")
    assert [p for p, _ in b.push("hub").pulls[0].conflicts] == ["alice/short"]
    assert b.blocks.read("alice", label).content == "ONE\ntwo\nTHREE\n"  # a clean merge
    a.blocks.update("alice", label, "1\ntwo\nTHREE\n")
    b.blocks.update("alice", label, "uno\ntwo\nTHREE\n")
    a.pull("hub")
    a.push("hub")
    (opened,) = b.pull("hub").conflicts
    assert b.conflicts.get(opened[1]).label == label and len(b.conflicts.list()) == 2
    b.push("hub")
    a.pull("hub")
    rows = {c.label: c for c in a.conflicts.list()}
    assert set(rows) == {label, "short"}
    a.conflicts.resolve(rows[label].id, take="disk")
    a.conflicts.resolve(rows["short"].id, take="agent")
    a.push("hub")
    b.pull("hub")
    assert not b.conflicts.list()
    assert a.blocks.read("alice", label).content == b.blocks.read("alice", label).content
    for ws in (a, b):
        assert blocksync.fsck(ws.root).ok
        ws.close()
    for repo in (hub, tmp_path / "a" / "repo", tmp_path / "b" / "repo"):
        assert_git_fsck(repo)
