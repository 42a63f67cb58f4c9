"""A standalone `blocksync pull` / `push` is a run in the run log, and its merge commits name it.

Real stores meeting through a real bare repository (and an unreachable port on 127.0.0.1); the
commands run through click's runner; history read with the real git CLI.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import blocksync
from blocksync import interrupts
from blocksync.runner import pull_exit_code
from blocksync.sync.remotes.source import RemotePull
from blocksync.sync.run import Run
from blocksync.sync.runrecord import record_remotes
from blocksync.workspace import PULL_COMMAND

from ..conftest import git
from ..test_remotes import _bare, _free_port
from ..test_remotes import pair as remote_pair
from .test_cli import run

Pair = tuple[blocksync.Workspace, blocksync.Workspace, Path]

pair = remote_pair  # two stores and their hub: a fixture, found by its name


def runs_json(store: Path) -> list[dict[str, Any]]:
    done = run(store, "runs", "--json")
    assert done.exit_code == 0, done.output
    found: list[dict[str, Any]] = json.loads(done.output)
    return found


def moved_apart(a: blocksync.Workspace, b: blocksync.Workspace, *, same_block: bool) -> None:
    """b pulls a's first block (a fast-forward); then each changes the same block, or each
    creates one of its own, and a pushes: b's next pull merges."""
    a.blocks.create("alice", "notes", "base\n")
    assert run(a.root, "push").exit_code == 0
    assert run(b.root, "pull", "hub").exit_code == 0
    if same_block:
        a.blocks.update("alice", "notes", "A\n")
        b.blocks.update("alice", "notes", "B\n")
    else:
        a.blocks.create("alice", "from-a", "a\n")
        b.blocks.create("alice", "from-b", "b\n")
    assert run(a.root, "push", "hub").exit_code == 0


def test_a_pull_that_merges_is_a_run_its_merge_commit_names(pair: Pair) -> None:
    a, b, _ = pair
    moved_apart(a, b, same_block=False)
    done = run(b.root, "pull", "hub")
    assert done.exit_code == 0, done.output
    assert "hub: merged" in done.output

    merge, fast_forward = runs_json(b.root)
    assert (merge["command"], merge["status"], merge["exit_code"]) == (
        "blocksync pull",
        "finished",
        0,
    )
    assert fast_forward["command"] == "blocksync pull" and fast_forward["exit_code"] == 0
    assert fast_forward["report"]["remotes"][0]["action"] == "fast-forward"
    assert fast_forward["resolved"] == 1  # the block the fast-forward brought
    (entry,) = merge["report"]["remotes"]
    assert (entry["remote"], entry["action"], entry["error"]) == ("hub", "merged", None)
    assert (merge["sources"], merge["failed_sources"], merge["resolved"]) == (1, 0, 1)
    assert merge["report"]["not_reached"] == [] and merge["report"]["exit_code"] == 0

    # the real git CLI: the merge commit (two parents) ends in the run's trailer
    repo = b.root / "repo"
    parents = git(repo, "log", "-1", "--format=%P", "main").split()
    assert len(parents) == 2 and parents[0] != parents[1]
    trailers = git(repo, "log", "-1", "--format=%(trailers:only,unfold)", "main")
    assert f"Blocksync-Run: {merge['id']}" in trailers.splitlines()
    assert "Blocksync-Author: remote:hub" in trailers.splitlines()
    assert entry["after"] == git(repo, "rev-parse", "main").strip()
    # and the merge's version of the block it brought names the run too
    (brought,) = b.blocks.history("alice", "from-a")
    assert brought.run_id == merge["id"]

    shown = run(b.root, "runs", "show", merge["id"])
    assert shown.exit_code == 0
    assert "command: blocksync pull" in shown.output
    assert "remote hub: merged -> " in shown.output
    assert "1 block(s) from the remote, 0 conflict(s)" in shown.output


def test_a_pull_that_leaves_conflicts_is_exit_3_in_its_row_too(pair: Pair) -> None:
    a, b, _ = pair
    moved_apart(a, b, same_block=True)
    done = run(b.root, "pull")
    assert done.exit_code == 3
    newest = runs_json(b.root)[0]
    assert (newest["command"], newest["exit_code"], newest["needs_resolution"]) == (
        "blocksync pull",
        3,
        1,
    )
    (conflict,) = b.conflicts.list()
    assert conflict.detected_run == newest["id"]  # the run that found it, as the log says
    assert newest["report"]["remotes"][0]["conflicts"] == [
        {"path": "alice/notes", "conflict": conflict.id}
    ]
    assert newest["open_conflicts"] == 1
    shown = run(b.root, "runs", "show", newest["id"]).output
    assert f"  CONFLICT alice/notes ({conflict.id})" in shown


def test_a_push_is_a_run_and_so_is_the_merge_it_needed(pair: Pair) -> None:
    a, b, hub = pair
    moved_apart(a, b, same_block=False)
    done = run(b.root, "push", "hub")  # the remote moved on: merged first, then pushed
    assert done.exit_code == 0, done.output
    push, pull = runs_json(b.root)
    assert pull["command"] == "blocksync pull"
    assert (push["command"], push["status"], push["exit_code"]) == ("blocksync push", "finished", 0)
    (entry,) = push["report"]["remotes"]
    assert (entry["action"], len(entry["pulls"]), entry["error"]) == ("pushed", 1, None)
    assert push["resolved"] == 1  # what the merge before the push brought
    # the merge the push made names the push's run, here and on the hub
    trailers = git(hub, "log", "-1", "--format=%(trailers:only,unfold)", "main")
    assert f"Blocksync-Run: {push['id']}" in trailers.splitlines()
    shown = run(b.root, "runs", "show", push["id"]).output
    assert "remote hub: pushed " in shown and "after 1 merge(s)" in shown


def test_a_failed_push_is_a_row_with_its_error_and_exit_code(tmp_path: Path) -> None:
    ws = blocksync.init(tmp_path / "s", author="agent:a")
    ws.blocks.create("alice", "notes", "one\n")
    port = _free_port()  # nothing listens there
    ws.add_remote("down", f"git://127.0.0.1:{port}/hub.git")
    ws.add_remote("hub", str(_bare(tmp_path / "hub.git")))
    ws.close()
    store = tmp_path / "s"
    before = git(store / "repo", "rev-parse", "main")

    done = run(store, "push")  # every remote: the first fails, the second is not reached
    assert done.exit_code == 1
    assert "remote 'down'" in done.output
    (row,) = runs_json(store)
    assert (row["command"], row["status"], row["exit_code"]) == ("blocksync push", "finished", 1)
    (entry,) = row["report"]["remotes"]
    assert entry["remote"] == "down" and entry["exit_code"] == 1
    assert "remote 'down'" in entry["error"] and row["report"]["error"] == entry["error"]
    assert row["report"]["not_reached"] == ["hub"]
    assert (row["sources"], row["failed_sources"]) == (1, 1)
    assert git(store / "repo", "rev-parse", "main") == before
    assert "main" not in git(tmp_path / "hub.git", "branch", "--list")

    shown = run(store, "runs", "show", row["id"]).output
    assert "remote down: FAILED (exit 1): remote 'down'" in shown
    assert "not reached: hub" in shown
    assert shown.count("remote 'down'") == 1  # the error is said once

    assert run(store, "push", "hub").exit_code == 0  # the other remote, alone: fine
    assert [r["exit_code"] for r in runs_json(store)] == [0, 1]


def test_a_diverged_remote_fails_the_pull_with_its_own_exit_code(tmp_path: Path) -> None:
    hub = _bare(tmp_path / "hub.git")
    for name in ("x", "y"):
        ws = blocksync.init(tmp_path / name, author=f"agent:{name}")
        ws.blocks.create("alice", "notes", f"{name}\n")
        ws.add_remote("hub", str(hub))
        ws.close()
    assert run(tmp_path / "x", "push").exit_code == 0
    done = run(tmp_path / "y", "--json", "pull")  # no shared history: refused
    assert done.exit_code == 1
    error = json.loads(done.stderr)
    assert error["error"]["type"] == "UnrelatedHistories"
    (row,) = runs_json(tmp_path / "y")
    assert (row["command"], row["exit_code"]) == ("blocksync pull", 1)
    assert row["report"]["remotes"][0]["error"] == error["error"]["message"]


#: a process holding the run lock of the store it is given until its standard input closes
HOLDER = """import sys, blocksync
with blocksync.open(sys.argv[1]) as ws, ws.locked("holder"):
    print("held", flush=True)
    sys.stdin.read()
"""


def test_refused_before_the_run_starts_writes_no_row(tmp_path: Path) -> None:
    ws = blocksync.init(tmp_path / "s")
    ws.add_remote("hub", str(_bare(tmp_path / "hub.git")))
    ws.close()
    store = tmp_path / "s"
    assert run(store, "pull", "nowhere").exit_code == 4  # an unknown remote: not a run
    # another process holds the run lock: exit 75, the run did not start
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            HOLDER,
            str(store),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        assert run(store, "push").exit_code == 75
    finally:
        holder.communicate("", timeout=30)
    assert runs_json(store) == []


def test_a_signal_between_two_remotes_leaves_the_row_interrupted(pair: Pair) -> None:
    """A real SIGINT, sent to this process while the first remote's pull completes: the run
    stops before the second, its row ``interrupted`` with exit 130 and what it did."""
    a, b, hub = pair
    a.blocks.create("alice", "notes", "one\n")
    a.push("hub")
    b.add_remote("again", str(hub))
    run = Run()

    def one(name: str) -> RemotePull:
        pulled = b.pull(name, run.id)
        os.kill(os.getpid(), signal.SIGINT)  # handled: the run is asked to stop
        return pulled

    with (
        pytest.raises(blocksync.Interrupted) as stopped,
        interrupts.handling(),
        b.locked(PULL_COMMAND, run_id=run.id),
        b.blocks.in_run(run.id),
    ):
        record_remotes(
            b.runs,
            run,
            PULL_COMMAND,
            ["hub", "again"],
            one,
            open_conflicts=b.conflict_index.open_count,
            exit_code=pull_exit_code,
        )
    assert stopped.value.exit_code == 130
    (row,) = runs_json(b.root)
    assert (row["id"], row["status"], row["exit_code"]) == (run.id, "interrupted", 130)
    assert [e["remote"] for e in row["report"]["remotes"]] == ["hub"]
    assert row["report"]["remotes"][0]["action"] == "fast-forward"
    assert row["report"]["not_reached"] == ["again"] and row["report"]["signal"] == "SIGINT"
    assert b.blocks.read("alice", "notes").content == "one\n"  # what it did stays done
