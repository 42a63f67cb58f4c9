"""Records in git (issue 11, item 16): what index.db holds that git did not, now under
``refs/blocksync/records``, so that deleting index.db and running `index rebuild` loses nothing.

Real stores, real git (`git log`, `git ls-tree`, `git fsck --strict`), real SQLite, the CLI
through the venv's `blocksync` script, and a real SIGKILL of a writer half-way.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import blocksync
from blocksync.index.runs import RunLog

from .conftest import assert_git_fsck, git
from .feedserver import FeedServer, feed_server, feed_table
from .stores import make_store

BLOCKSYNC = str(Path(sys.executable).parent / "blocksync")
REF = "refs/blocksync/records"


def cli(store: Path, *args: str, code: int = 0) -> str:
    done = subprocess.run(
        [BLOCKSYNC, "--store", str(store), "--author", "human:test", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == code, (args, done.returncode, done.stdout, done.stderr)
    return done.stdout + done.stderr


def lose_index(store: Path) -> None:
    for name in ("index.db", "index.db-wal", "index.db-shm"):
        (store / name).unlink(missing_ok=True)


def record_log(store: Path) -> list[str]:
    """The subjects of the records commits, newest first."""
    return git(store / "repo", "log", "--format=%s", REF).splitlines()


@pytest.fixture
def notes(tmp_path: Path) -> Path:
    folder = tmp_path / "notes"
    folder.mkdir()
    for name in ("a.md", "b.md", "c.md"):
        (folder / name).write_text(f"{name} line1\nline2\n")
    return folder


@pytest.fixture
def store(store_path: Path, notes: Path) -> Path:
    with (store_path / "blocksync.toml").open("a") as f:
        f.write(
            f'\n[agents.bob.data_sources.notes]\ntype = "file"\npaths = ["{notes}"]\n'
            'permission_rules = [{ pattern = "**", permission = "admin" }]\n'
        )
    return store_path


def conflicts_on(store: Path, notes: Path, *names: str) -> dict[str, str]:
    """Edit both sides of each file differently and reconcile: path -> its open conflict id."""
    with blocksync.open(store, author="agent:bob") as ws:
        if not ws.blocks.list("bob"):
            ws.reconcile()
        labels = {b.label.rsplit(":", 1)[-1]: b.label for b in ws.blocks.list("bob")}
        for name in names:
            ws.blocks.update("bob", labels[name], f"{name} agent\nline2\n")
            (notes / name).write_text(f"{name} disk\nline2\n")
        report = ws.reconcile()
        assert sorted(report.sources[0].needs_resolution) == sorted(names)
        return {c.path: c.id for c in ws.conflicts.list()}


def all_conflicts(store: Path) -> list[dict[str, Any]]:
    return json.loads(cli(store, "conflicts", "list", "--status", "all", "--json"))


# -- conflicts --------------------------------------------------------------------------------


def test_rebuild_restores_open_and_resolved_conflicts_and_undo_still_works(
    store: Path, notes: Path
) -> None:
    ids = conflicts_on(store, notes, "a.md", "b.md")
    cli(store, "conflicts", "resolve", ids["a.md"], "--take", "disk")
    before = all_conflicts(store)
    assert sorted(c["status"] for c in before) == ["open", "resolved"]

    lose_index(store)
    cli(store, "index", "rebuild")

    assert all_conflicts(store) == before  # every column, sides and resolution included
    # the resolution is still undoable: both sides go back to what they were when detected
    cli(store, "conflicts", "undo", ids["a.md"])
    assert (notes / "a.md").read_text() == "a.md disk\nline2\n"
    with blocksync.open(store) as ws:
        label = ws.conflicts.get(ids["a.md"]).label
        assert ws.blocks.read("bob", label).content == "a.md agent\nline2\n"
        assert {c.id: c.status for c in ws.conflicts.list("all")} == {
            ids["a.md"]: "open",
            ids["b.md"]: "open",
        }
    assert cli(store, "fsck").startswith("ok")
    assert_git_fsck(store / "repo")


def test_records_are_commits_on_their_own_ref_one_per_reconcile(store: Path, notes: Path) -> None:
    ids = conflicts_on(store, notes, "a.md", "b.md", "c.md")
    cli(store, "conflicts", "resolve", ids["b.md"], "--take", "agent")
    # the run log's rows of the reconcile are records too: left out here
    log = [subject for subject in record_log(store) if not subject.startswith("run ")]
    # the three conflicts of one reconcile are one commit; the resolution another
    assert log[0] == f"conflict {ids['b.md']} resolved (agent) by human:test"
    assert log[1].startswith("reconcile notes (run-") and len(log) == 2
    files = git(store / "repo", "ls-tree", "-r", "--name-only", REF).split()
    folders = {}
    for path, conflict_id in ids.items():
        folder = folders[path] = next(f.rsplit("/", 1)[0] for f in files if f"/{conflict_id}/" in f)
        assert sorted(f for f in files if f.startswith(folder + "/")) == [
            f"{folder}/{side}" for side in ("agent", "base", "disk", "row.json")
        ]
    folder = folders["c.md"]
    row = json.loads(git(store / "repo", "show", f"{REF}:{folder}/row.json"))
    assert row["id"] == ids["c.md"] and row["status"] == "open"
    assert git(store / "repo", "show", f"{REF}:{folder}/disk") == "c.md disk\nline2\n"
    # the ref stays on this machine: it is no branch, and main's history does not contain it
    assert git(store / "repo", "for-each-ref", "--format=%(refname)", "refs/heads").split() == [
        "refs/heads/main"
    ]
    assert_git_fsck(store / "repo")


def test_a_record_touches_a_few_small_trees_however_many_there_are(store_path: Path) -> None:
    with blocksync.open(store_path) as ws:
        index = ws.conflict_index
        with index.batch("many"):
            for i in range(600):
                index.record(
                    source="s",
                    path=f"p{i}",
                    owner="o",
                    label=f"l{i}",
                    base="b",
                    disk=f"d{i}",
                    agent=f"a{i}",
                    reason="r",
                    run_id="run-1",
                )
        index.record(
            source="s",
            path="one more",
            owner="o",
            label="x",
            base=None,
            disk="d",
            agent="a",
            reason="r",
            run_id="run-2",
        )
    changed = git(store_path / "repo", "diff-tree", "-r", "-t", "--name-only", REF + "~1", REF)
    # conflicts/<h>/<h>/<id>/ and its files: the same few trees at 600 records as at one
    trees = [
        p for p in changed.split() if not p.rsplit("/", 1)[-1] in ("row.json", "disk", "agent")
    ]
    assert len(trees) == 4, changed


# -- runs, notifications, streams -------------------------------------------------------------


def test_rebuild_restores_runs_as_the_run_log_lists_them(store: Path, notes: Path) -> None:
    cli(store, "sync")
    (notes / "d.md").write_text("new\n")
    cli(store, "sync")
    with RunLog(store / "index.db") as log:
        before = [run.to_json() for run in log.list()]
    assert len(before) == 2 and {r["status"] for r in before} == {"finished"}
    lose_index(store)
    cli(store, "index", "rebuild")
    with RunLog(store / "index.db") as log:  # as the run log lists them, rebuilt
        assert [run.to_json() for run in log.list()] == before
    # one records commit per run: its row reaches git when the run ends
    assert [s for s in record_log(store) if s.startswith("run ")] == [
        f"run {before[0]['id']} finished: exit 0",
        f"run {before[1]['id']} finished: exit 0",
    ]
    assert cli(store, "fsck").startswith("ok")


@pytest.fixture
def server() -> Iterator[FeedServer]:
    with feed_server() as srv:
        yield srv


def test_rebuild_restores_notifications_acks_stream_state_and_cursors(
    tmp_path: Path, server: FeedServer
) -> None:
    store = make_store(tmp_path / "store", {"feed": feed_table(server)})
    server.add(5)
    with blocksync.open(store) as ws:
        stream = ws.streams.get("feed")
        stream.start()
        stream.pull(limit=3)
        stream.pull(limit=3)
        stream.pause()
        first = ws.notifications.list()[0]
    assert first.text == "feed started for alice"  # emitted by start: outside any pull
    cli(store, "notifications", "ack", str(first.id))
    with blocksync.open(store) as ws:
        notifications = [n.to_json() for n in ws.notifications.list()]
        status = ws.streams.get("feed").status()
        cursors = ws.notifications.cursors("feed")
    assert len(notifications) == 6 and [n["acked"] for n in notifications] == [True] + [False] * 5
    assert (status.state, status.cursor, cursors) == ("paused", "5", ["3", "5"])
    pulls = [s for s in record_log(store) if s.startswith("pull feed")]
    assert len(pulls) == 2  # one records commit per pull, whatever it delivered

    lose_index(store)
    cli(store, "index", "rebuild")

    with blocksync.open(store) as ws:
        assert [n.to_json() for n in ws.notifications.list()] == notifications
        assert ws.streams.get("feed").status() == status
        assert ws.notifications.cursors("feed") == cursors
        # the cursor goes on where it was: a resumed pull delivers the rest, nothing twice
        ws.streams.get("feed").resume()
        server.add(1)
        assert [n.text for n in ws.streams.get("feed").pull().notifications] == ["item 6"]
    assert cli(store, "fsck").startswith("ok")
    assert_git_fsck(store / "repo")


# -- fsck, and which copy wins --------------------------------------------------------------


def test_fsck_names_an_altered_index_row_and_rebuild_puts_back_what_git_holds(
    store: Path, notes: Path
) -> None:
    ids = conflicts_on(store, notes, "a.md")
    cli(store, "conflicts", "resolve", ids["a.md"], "--take", "disk")
    before = all_conflicts(store)
    db = sqlite3.connect(store / "index.db")
    with db:
        db.execute("UPDATE conflicts SET resolved_by = 'mallory'")
    db.close()

    out = cli(store, "fsck", code=1)
    assert (
        f"conflict {ids['a.md']} differs from {REF}: resolved_by is 'mallory' in index.db, "
        "'human:test' in git" in out
    )
    assert "index rebuild" in out

    cli(store, "index", "rebuild")
    assert all_conflicts(store) == before
    assert cli(store, "fsck").startswith("ok")


def test_fsck_names_rows_missing_on_either_side(store: Path, notes: Path) -> None:
    ids = conflicts_on(store, notes, "a.md")
    db = sqlite3.connect(store / "index.db")
    with db:
        db.execute("DELETE FROM conflicts")
        db.execute(
            "INSERT INTO conflicts (id, source, path, owner, label, reason, detected_run,"
            " detected_at, updated_at, status) VALUES ('c-forged', 'notes', 'x.md', 'bob',"
            " 'x', 'r', 'run-x', 'now', 'now', 'open')"
        )
    db.close()
    out = cli(store, "fsck", code=1)
    assert f"conflict {ids['a.md']} is in {REF}, not in index.db" in out
    assert f"conflict c-forged is in index.db, not in {REF}" in out


HOOK = textwrap.dedent("""
    import os, signal, sys
    import blocksync
    from blocksync.store import gitstore, records

    where = sys.argv[2]
    if where == "after-git":  # git has the records commit, index.db has not committed yet
        commit = records.Records.commit
        def die_after(self, conn, staged):
            commit(self, conn, staged)
            if not staged.message.startswith("run "):  # not the run log's row: its work
                os.kill(os.getpid(), signal.SIGKILL)
        records.Records.commit = die_after
    else:  # objects written, the records ref not moved yet
        swap = gitstore.GitStore.swap_ref
        def die_before(self, name, old, new):
            if name == records.REF:
                os.kill(os.getpid(), signal.SIGKILL)
            return swap(self, name, old, new)
        gitstore.GitStore.swap_ref = die_before
    with blocksync.open(sys.argv[1], author="human:test") as ws:
        exec(sys.argv[3])
""")


def killed(store: Path, where: str, code: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", HOOK, str(store), where, code],
        timeout=120,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == -9, done.stderr


def test_killed_after_git_before_index_db_git_wins(store: Path, notes: Path) -> None:
    ids = conflicts_on(store, notes, "a.md")
    killed(store, "after-git", f"ws.conflicts.resolve({ids['a.md']!r}, take='disk')")
    # index.db never committed the resolution; git did: the next reader catches index.db up
    (row,) = all_conflicts(store)
    assert (row["status"], row["resolution"], row["resolved_by"]) == (
        "resolved",
        "disk",
        "human:test",
    )
    assert cli(store, "fsck").startswith("ok")
    cli(store, "conflicts", "undo", ids["a.md"])
    assert (notes / "a.md").read_text() == "a.md disk\nline2\n"


def test_killed_mid_reconcile_after_git_keeps_every_conflict(store: Path, notes: Path) -> None:
    cli(store, "reconcile")
    with blocksync.open(store, author="agent:bob") as ws:
        for block in ws.blocks.list("bob"):
            ws.blocks.update("bob", block.label, "agent\n")
    for name in ("a.md", "b.md", "c.md"):
        (notes / name).write_text("disk\n")
    killed(store, "after-git", "ws.reconcile()")
    assert cli(store, "fsck").startswith("ok")
    assert sorted(c["path"] for c in all_conflicts(store)) == ["a.md", "b.md", "c.md"]


def test_a_killed_run_is_recorded_interrupted_by_the_next_one(store: Path, notes: Path) -> None:
    """A run's row reaches git when it ends: one killed mid-way is index.db's only, which is
    no disagreement for fsck, survives a rebuild from a readable index.db, and is recorded as
    interrupted by the next run."""
    cli(store, "reconcile")
    with blocksync.open(store, author="agent:bob") as ws:
        (block,) = [b for b in ws.blocks.list("bob") if b.label.endswith("a.md")]
        ws.blocks.update("bob", block.label, "agent\n")
    (notes / "a.md").write_text("disk\n")
    killed(store, "after-git", "ws.reconcile()")  # once its conflict is in git
    with RunLog(store / "index.db") as log:
        dead = log.list()[0]
    assert dead.status == "running"
    assert not any(subject.startswith(f"run {dead.id}") for subject in record_log(store))
    assert cli(store, "fsck").startswith("ok")
    cli(store, "index", "rebuild")
    with RunLog(store / "index.db") as log:
        assert log.get(dead.id).status == "running"
    cli(store, "reconcile", code=3)  # the conflict the killed run found is open
    with RunLog(store / "index.db") as log:
        assert log.get(dead.id).status == "interrupted"
    lose_index(store)  # git holds it now
    cli(store, "index", "rebuild")
    with RunLog(store / "index.db") as log:
        assert log.get(dead.id).status == "interrupted"
    assert cli(store, "fsck").startswith("ok")


def test_killed_before_the_ref_moves_leaves_both_as_they_were(store: Path, notes: Path) -> None:
    ids = conflicts_on(store, notes, "a.md")
    head = git(store / "repo", "rev-parse", REF)
    killed(
        store,
        "before-ref",
        f"ws.conflict_index.mark_resolved({ids['a.md']!r}, "
        "resolution='disk', resolver='x', result_version=None)",
    )
    assert git(store / "repo", "rev-parse", REF) == head
    assert [c["status"] for c in all_conflicts(store)] == ["open"]
    assert cli(store, "fsck").startswith("ok")
    assert_git_fsck(store / "repo")


def test_index_db_is_the_only_copy_when_the_ref_is_gone(store: Path, notes: Path) -> None:
    """A store whose index.db holds rows its repository lacks (written before records existed,
    or the ref deleted): they are written to git, not dropped."""
    ids = conflicts_on(store, notes, "a.md")
    before = all_conflicts(store)
    git(store / "repo", "update-ref", "-d", REF)
    assert cli(store, "conflicts", "list").startswith(ids["a.md"])  # reading puts them back
    assert (
        git(store / "repo", "log", "--format=%s", REF).split("\n")[0] == "records kept by index.db"
    )
    lose_index(store)
    cli(store, "index", "rebuild")
    assert all_conflicts(store) == before
    assert cli(store, "fsck").startswith("ok")


def test_records_never_travel_to_a_remote(store: Path, notes: Path, tmp_path: Path) -> None:
    conflicts_on(store, notes, "a.md")
    hub = tmp_path / "hub.git"
    subprocess.run(["git", "init", "-q", "--bare", str(hub)], check=True)
    cli(store, "remote", "add", "hub", str(hub))
    cli(store, "push", "hub")
    assert git(hub, "for-each-ref", "--format=%(refname)").split() == ["refs/heads/main"]


def test_a_store_with_records_but_no_block_yet_is_whole(store_path: Path) -> None:
    cli(store_path, "sync")  # a run row: the records ref exists before main does
    assert len(record_log(store_path)) == 1
    assert cli(store_path, "fsck").startswith("ok")
