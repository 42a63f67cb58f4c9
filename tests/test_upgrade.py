"""Store format 2 and the in-place upgrade from format 1 (issue 14, item 1): a store written in
the old layout (tests/v1store.py, real git plumbing) opened by this code is upgraded in ONE
commit per ref that changes no block; history, diff and rollback go on across it; a store or a
remote of another format is refused with a message naming the upgrade; kill -9 at each step of
the upgrade converges on the next open."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import subprocess
import sys
from pathlib import Path

import pytest

import blocksync
from blocksync.errors import RemoteFormatError, StoreFormatError
from blocksync.store.bases import SyncBases
from blocksync.store.upgrade import MESSAGE, UPGRADE_FAULT_STEPS

from .conftest import ROOT, assert_git_fsck, git
from .stores import refs_of
from .v1store import LONG, LONG_LABEL, NOTES, V1Store, commit_files, run_git, write_v1_store

BIN = Path(sys.executable).parent


def _fan(component: str) -> str:
    digest = hashlib.sha256(component.encode()).hexdigest()
    return f"{digest[:2]}/{digest[2:4]}/{component}"


def _rev(repo: Path, name: str) -> str:
    return git(repo, "rev-parse", name).strip()


def _first_parents(repo: Path, ref: str = "main") -> list[str]:
    return git(repo, "log", "--first-parent", "--format=%s", ref).splitlines()


def _cli(store: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "blocksync"), "--store", str(store), *args],
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.fixture
def v1(tmp_path: Path) -> V1Store:
    return write_v1_store(tmp_path / "store")


def _assert_upgraded(store: V1Store) -> None:
    """What an upgraded store holds: main and the bases each one upgrade commit on top of
    their format-1 history, every block where format 2 puts it, git's own checks clean."""
    repo = store.repo
    last, _ = store.commits[-1]
    assert _rev(repo, "main^") == last
    assert _first_parents(repo)[0] == MESSAGE
    assert [m for m in _first_parents(repo) if m == MESSAGE] == [MESSAGE]
    assert git(repo, "show", "main:format") == "2\n"
    assert _rev(repo, "refs/sync/notes^") == store.bases_commit
    assert git(repo, "show", "refs/sync/notes:format") == "2\n"
    assert git(repo, "show", f"refs/sync/notes:blocks/alice/{_fan('notes')}") == git(
        repo,
        "show",
        "refs/sync/notes:"
        + git(repo, "ls-tree", "--name-only", "-r", "refs/sync/notes", "bases").split()[1],
    )
    # no block changed: the very same folders, moved below their fan-out folders
    assert _rev(repo, f"main:blocks/alice/{_fan('notes')}") == _rev(
        repo, "main^:blocks/alice/notes"
    )
    assert git(repo, "show", f"main:blocks/alice/{_fan(LONG)}/label") == LONG_LABEL
    assert git(
        repo, "ls-tree", "--name-only", f"main:conflicts/alice/{_fan('notes')}/1"
    ).split() == [
        "base",
        "other",
        "reason",
    ]
    # git itself sees the upgrade as pure renames (and the format file)
    status = git(repo, "diff", "-M", "--name-status", "main^", "main").splitlines()
    assert "A\tformat" in status and len(status) == 9
    assert all(line.startswith("R100\t") for line in status if line != "A\tformat")
    assert_git_fsck(repo)


def test_a_format_1_store_is_upgraded_on_open_and_history_goes_on(v1: V1Store) -> None:
    with blocksync.open(v1.root) as ws:
        path = ws.blocks.git_path("alice", "notes")
        assert path == f"blocks/alice/{_fan('notes')}"
        history = ws.blocks.history("alice", "notes")
        # the versions written in format 1, by the commits that wrote them: the upgrade
        # commit is no version of any block
        assert [(v.version, v.commit) for v in history] == [
            (1, v1.commits[0][0]),
            (2, v1.commits[1][0]),
            (3, v1.commits[4][0]),
        ]
        assert [v.author for v in history] == ["agent:alice"] * 3
        assert ws.blocks.read("alice", "notes").content == NOTES[2]
        assert ws.blocks.read("alice", "notes", 1).content == NOTES[0]
        assert ws.blocks.diff("alice", "notes", 1, 3).new == NOTES[2]
        assert [v.deleted for v in ws.blocks.history("bob", "plan")] == [False, True]
        assert ws.blocks.read("alice", LONG_LABEL).content == "long\n"
        assert [(b.owner, b.label) for b in ws.blocks.list()] == [
            ("alice", LONG_LABEL),
            ("alice", "notes"),
        ]
        bases = SyncBases(ws.blocks.git, "notes")
        found = bases.get("notes.md")
        assert found is not None and found[1] == NOTES[2]
        assert bases.binding_for_block("alice", "notes") is not None
        assert [b.path for b in bases.bindings()] == ["notes.md"]
        _assert_upgraded(v1)
        # rollback across the upgrade: version 1's content as version 4, in format 2
        assert ws.blocks.rollback("alice", "notes", 1).version == 4
        assert ws.blocks.diff("alice", "notes").unified.count("-three") == 1
        assert ws.fsck().ok
    repo = v1.repo
    assert git(repo, "show", f"main:{path}/content") == NOTES[0]
    # git log of the block's folder: its versions since the upgrade (the ones before are under
    # the format-1 path, blocks/<owner>/<label>, as history wrote them)
    assert git(repo, "log", "--format=%s", "--", path).splitlines() == [
        "roll back alice/notes to version 1",
        MESSAGE,
    ]
    old = git(repo, "log", "--format=%s", "--", "blocks/alice/notes").splitlines()
    assert old == [MESSAGE, "update alice/notes", "update alice/notes", "create"]
    assert _cli(v1.root, "block", "path", "alice", "notes").stdout == path + "\n"
    # opened again: nothing more to do
    head = _rev(repo, "main")
    blocksync.open(v1.root).close()
    assert _rev(repo, "main") == head
    assert _cli(v1.root, "fsck").returncode == 0
    assert_git_fsck(repo)


def test_an_index_rebuilt_from_scratch_reads_each_commit_in_its_own_format(v1: V1Store) -> None:
    with blocksync.open(v1.root) as ws:
        ws.blocks.update("alice", "notes", "four\n")
        before = [(v.version, v.commit, v.message) for v in ws.blocks.history("alice", "notes")]
    (v1.root / "index.db").unlink()
    assert _cli(v1.root, "index", "rebuild").returncode == 0
    with blocksync.open(v1.root) as ws:
        after = [(v.version, v.commit, v.message) for v in ws.blocks.history("alice", "notes")]
        assert after == before and len(after) == 4
        assert ws.blocks.read("alice", "notes", 2).content == NOTES[1]


def test_an_index_that_followed_format_1_follows_the_upgrade_commit_as_no_change(
    v1: V1Store,
) -> None:
    """The usual case: the old code's index is up to date with main when the new code opens."""
    from blocksync.index.db import IndexDb
    from blocksync.index.versions import VersionIndex
    from blocksync.store.blocks import BlockStore

    db = IndexDb.open(v1.root / "index.db", create=False)
    store = BlockStore(v1.repo, VersionIndex.open(db), "t")
    store.catch_up_index()  # reads format-1 commits, as the old code had
    versions = [v.version for v in store.history("alice", "notes")]
    store.close()
    db.close()
    with blocksync.open(v1.root) as ws:
        assert [v.version for v in ws.blocks.history("alice", "notes")] == versions == [1, 2, 3]
        _assert_upgraded(v1)
        assert ws.blocks.update("alice", "notes", "x\n").version == 4


def _open(root: str) -> None:
    blocksync.open(root).close()


def test_two_processes_opening_at_once_upgrade_once(v1: V1Store) -> None:
    context = multiprocessing.get_context("spawn")
    procs = [context.Process(target=_open, args=(str(v1.root),)) for _ in range(3)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(60)
        assert proc.exitcode == 0
    _assert_upgraded(v1)
    assert git(v1.repo, "log", "--format=%s", "refs/sync/notes").splitlines()[0] == MESSAGE
    assert git(v1.repo, "rev-list", "--count", "refs/sync/notes") == "2\n"


def test_a_store_of_a_newer_format_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    root = tmp_path / "store"
    with blocksync.init(root) as ws:
        ws.blocks.create("alice", "notes", "hi\n")
    commit_files(root / "repo", "refs/heads/main", {"format": b"3\n"}, "from the future", "x")
    head = _rev(root / "repo", "main")
    with pytest.raises(StoreFormatError) as refused:
        blocksync.open(root)
    assert refused.value.found == 3 and "upgrade blocksync" in str(refused.value)
    done = _cli(root, "block", "list")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "format 3" in done.stderr and "upgrade blocksync" in done.stderr
    assert _rev(root / "repo", "main") == head
    # a source's bases of a newer format refuse the open as well, before main is upgraded
    v1 = write_v1_store(tmp_path / "other")
    commit_files(v1.repo, "refs/sync/notes", {"format": b"9\n"}, "future", "x")
    with pytest.raises(StoreFormatError):
        blocksync.open(v1.root)
    assert _rev(v1.repo, "main") == v1.commits[-1][0]


def test_fsck_finds_a_block_outside_its_fan_out_folder(tmp_path: Path) -> None:
    root = tmp_path / "store"
    with blocksync.init(root) as ws:
        ws.blocks.create("alice", "notes", "hi\n")
        meta = git(root / "repo", "show", f"main:{ws.blocks.git_path('alice', 'notes')}/meta.json")
    misplaced = "blocks/alice/00/00/bad"  # sha256 of "bad" starts 2f05
    files = {f"{misplaced}/content": b"x\n", f"{misplaced}/meta.json": meta.encode()}
    commit_files(root / "repo", "refs/heads/main", files, "by hand", "x")
    with blocksync.open(root) as ws:
        report = ws.fsck()
    assert [p.message for p in report.problems] == [
        f"{misplaced} is not in its fan-out folder 2f/05"
    ]
    assert _cli(root, "fsck").returncode == 1


# -- kill -9 at each step of the upgrade --------------------------------------------------------

CHILD = """
import os, sys
from pathlib import Path
from blocksync.index.db import IndexDb
from blocksync.index.versions import VersionIndex
from blocksync.store.blocks import BlockStore
root, kill_at = Path(sys.argv[1]), int(sys.argv[2])
steps = []
def fault(step):
    steps.append(step)
    print(step, flush=True)
    if len(steps) == kill_at:
        os._exit(9)
db = IndexDb.open(root / "index.db", create=False)
store = BlockStore(root / "repo", VersionIndex.open(db), "t")
store.upgrade(fault=fault)
"""

# main's objects and ref, then the bases', then the index follows main
ORDER = ["objects-written", "ref-moved", "objects-written", "ref-moved", "index-updated"]


def _child(root: Path, kill_at: int) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-c", CHILD, str(root), str(kill_at)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def test_the_upgrade_steps_happen_in_order(v1: V1Store) -> None:
    done = _child(v1.root, 0)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ORDER and set(ORDER) == set(UPGRADE_FAULT_STEPS)


@pytest.mark.parametrize("kill_at", range(1, len(ORDER) + 1))
def test_kill_9_at_each_upgrade_step_converges_on_the_next_open(v1: V1Store, kill_at: int) -> None:
    done = _child(v1.root, kill_at)
    assert done.returncode == 9, done.stdout + done.stderr
    assert_git_fsck(v1.repo)
    with blocksync.open(v1.root) as ws:
        assert [v.version for v in ws.blocks.history("alice", "notes")] == [1, 2, 3]
        assert ws.blocks.read("alice", "notes").content == NOTES[2]
        assert ws.fsck().ok
    _assert_upgraded(v1)


# -- remotes across the upgrade -----------------------------------------------------------------


def _hub(path: Path) -> Path:
    subprocess.run(["git", "init", "-q", "--bare", "--initial-branch=main", str(path)], check=True)
    return path


def test_two_machines_in_sync_at_format_1_both_upgrade_and_sync_through_one_remote(
    tmp_path: Path,
) -> None:
    laptop = write_v1_store(tmp_path / "laptop")
    hub = _hub(tmp_path / "hub.git")
    run_git(laptop.repo, "push", "-q", str(hub), "main")  # the old code's push
    server = tmp_path / "server"
    blocksync.init(server).close()
    run_git(server / "repo", "fetch", "-q", str(hub), "main:main")  # in sync at format 1
    for machine in (laptop.root, server):
        with blocksync.open(machine) as ws:  # each upgrades on its own
            ws.add_remote("hub", str(hub))
    with blocksync.open(laptop.root) as ws:
        ws.blocks.update("alice", "notes", "zero\n" + NOTES[2])  # an edit at the top
        ws.blocks.create("alice", "from-laptop", "l\n")
        assert ws.push("hub").action == "pushed"  # the hub's format-1 main is in our history
    with blocksync.open(server) as ws:
        ws.blocks.update("alice", "notes", NOTES[2] + "four\n")  # and one at the bottom
        ws.blocks.create("bob", "from-server", "s\n")
        pushed = ws.push("hub")  # pulls first: a merge whose base is the format-1 commit
        assert pushed.action == "pushed" and pushed.pulls[0].action == "merged"
        assert ws.blocks.read("alice", "notes").content == "zero\n" + NOTES[2] + "four\n"
        # the only conflict: the record written in format 1, carried through both upgrades
        (record,) = ws.conflicts.list()
        assert (record.path, record.disk, record.base) == ("alice/notes", "other side\n", NOTES[0])
        assert ws.fsck().ok
    with blocksync.open(laptop.root) as ws:
        # the laptop's main is the merge's second parent: merged (see RemoteSync), not moved
        assert ws.pull("hub").action == "merged"
        assert ws.blocks.read("alice", "notes").content == "zero\n" + NOTES[2] + "four\n"
        assert ws.blocks.read("bob", "from-server").content == "s\n"
        assert len(ws.blocks.history("alice", "notes")) == 5  # 3 in format 1, 2 since
        assert ws.fsck().ok
    for repo in (laptop.repo, server / "repo", hub):
        assert git(repo, "show", "main:format") == "2\n"
        assert_git_fsck(repo)


def test_a_remote_still_at_format_1_or_newer_is_refused_naming_the_upgrade(tmp_path: Path) -> None:
    old = write_v1_store(tmp_path / "old")
    hub = _hub(tmp_path / "hub.git")
    run_git(old.repo, "push", "-q", str(hub), "main")  # pushed by a machine on the old code
    new = tmp_path / "new"
    with blocksync.init(new) as ws:
        ws.add_remote("hub", str(hub))
        with pytest.raises(RemoteFormatError) as refused:
            ws.pull("hub")
        assert refused.value.found == 1
        assert "format-1" in str(refused.value) and "machine that pushed it" in str(refused.value)
        assert ws.blocks.head() is None
    done = _cli(new, "pull")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "remote 'hub'" in done.stderr and "format-1" in done.stderr
    assert refs_of(new / "repo", records=False) == {}  # the refused run is only logged
    # a newer format on a remote this store shares history with
    with blocksync.open(old.root) as ws:  # upgrades
        ws.add_remote("hub", str(hub))
        assert ws.push("hub").action == "pushed"
    commit_files(hub, "refs/heads/main", {"format": b"3\n"}, "from the future", "x")
    with blocksync.open(old.root) as ws:
        head = ws.blocks.head()
        with pytest.raises(RemoteFormatError) as newer:
            ws.pull("hub")
        assert newer.value.found == 3 and "upgrade blocksync" in str(newer.value)
        assert ws.blocks.head() == head
    assert json.loads(_cli(old.root, "block", "list", "--json").stdout)
