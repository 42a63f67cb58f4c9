"""The library API is the locked API (issue 13 item 3): ``ws.reconcile()``,
``ws.conflicts.resolve()``/``undo()``, ``ws.pull()``/``ws.push()`` and the built-in resolve tool
take ``store/run.lock`` themselves -- a dry run takes none -- with the CLI's error when another
run holds it; the thread holding it may take it again; one reconcile loop reports sources the
deadline left out with a typed flag; a run over a folder source loads no plugin.

The other holder is a real process (the `Holder` of tests/cli/test_run_lock_cli.py: a real sync
stopped inside its first source), or a thread of this one, which the lock tells apart too.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import blocksync
from blocksync.errors import RunLockHeld
from blocksync.sync import runlock
from blocksync.sync.run import Run

from .cli import test_run_lock_cli
from .cli.test_run_lock_cli import Holder
from .cli.test_run_lock_cli import blocksync as cli

notes = test_run_lock_cli.notes  # the fixture: a folder configured as source `notes` of alice


@pytest.fixture
def holder(store_path: Path, notes: Path) -> Iterator[Holder]:
    """A real `blocksync sync` run in another process, holding the lock inside its first source."""
    held = Holder(store_path, "sync")
    try:
        yield held
    finally:
        held.close()


def _conflict(ws: blocksync.Workspace, notes: Path) -> str:
    """An open conflict on notes/a.md: both sides changed differently on the same line."""
    ws.reconcile()
    (block,) = ws.blocks.list("alice")
    (notes / "a.md").write_text("disk line\nsecond line\n", encoding="utf-8")
    ws.blocks.update("alice", block.label, "agent line\nsecond line\n")
    report = ws.reconcile()
    assert report.sources[0].needs_resolution == ["a.md"]
    (conflict,) = ws.conflicts.list()
    return conflict.id


# -- the same error as the command line ------------------------------------------------------------


def test_library_reconcile_fails_as_the_cli_does_while_another_process_holds_the_lock(
    store_path: Path, holder: Holder
) -> None:
    done = cli(store_path, "reconcile")
    assert done.returncode == 75
    with blocksync.open(store_path) as ws, pytest.raises(RunLockHeld) as info:
        ws.reconcile()
    assert info.value.exit_code == 75 and info.value.holder["pid"] == holder.proc.pid
    assert done.stderr.strip() == f"error: {info.value}"
    assert holder.release() == 0


def test_library_reconcile_waits_with_wait_true(store_path: Path, holder: Holder) -> None:
    with blocksync.open(store_path) as ws:
        with pytest.raises(RunLockHeld) as info:  # a bounded wait gives up, saying so
            ws.reconcile(wait=True, timeout=0.1)
        assert info.value.waited > 0 and "waited" in str(info.value)
        released = threading.Thread(target=holder.release)
        released.start()
        report = ws.reconcile(wait=True)  # an unbounded one gets it once the holder lets go
        released.join(60)
    assert report.exit_code == 0 and [s.error for s in report.sources] == [None]


def test_a_dry_run_needs_no_lock(store_path: Path, holder: Holder) -> None:
    with blocksync.open(store_path) as ws:
        report = ws.reconcile(dry_run=True)
    assert report.dry_run and [p for p, _ in report.sources[0].resolved] == ["a.md"]
    assert holder.release() == 0


def test_resolve_undo_pull_push_and_the_resolve_tool_take_the_lock(
    store_path: Path, notes: Path
) -> None:
    with blocksync.open(store_path) as ws:
        ws.add_remote("origin", str(store_path.parent / "nowhere.git"))
    release = threading.Event()
    taken = threading.Event()
    with blocksync.open(store_path, author="human:test") as ws:
        conflict_id = _conflict(ws, notes)

        def hold() -> None:
            with runlock.acquire(store_path / runlock.LOCK_FILE, info={"command": "other"}):
                taken.set()
                release.wait(60)

        thread = threading.Thread(target=hold)
        thread.start()
        try:
            assert taken.wait(30)
            calls = [
                lambda: ws.conflicts.resolve(conflict_id, "disk"),
                lambda: ws.conflicts.undo(conflict_id),
                lambda: ws.pull("origin"),
                lambda: ws.push("origin"),
                lambda: ws.tools.call(
                    "blocksync_conflict_resolve", {"id": conflict_id, "take": "disk"}
                ),
            ]
            for call in calls:
                with pytest.raises(RunLockHeld) as info:
                    call()
                assert info.value.holder["command"] == "other"
            assert ws.conflicts.get(conflict_id).status == "open"  # nothing was done
        finally:
            release.set()
            thread.join(30)
        resolved = ws.conflicts.resolve(conflict_id, "disk", wait=True, timeout=30)
        assert resolved.status == "resolved"
        assert ws.conflicts.undo(conflict_id).status == "open"
        assert runlock.read_holder(store_path / runlock.LOCK_FILE) == {}  # let go each time


# -- re-entrancy: one owner per thread ---------------------------------------------------------------


def test_the_thread_holding_the_lock_may_take_it_again(store_path: Path, notes: Path) -> None:
    with blocksync.open(store_path) as ws, ws.locked("outer run", run_id="r-outer") as outer:
        report = ws.reconcile()  # takes the lock again: the same holder, no deadlock
        assert report.exit_code == 0 and report.sources[0].resolved
        # the outer holder's note stands, through and after the nested take
        note = runlock.read_holder(store_path / runlock.LOCK_FILE)
        assert note["command"] == "outer run" and note["run_id"] == "r-outer"
        assert note == outer.holder

        failures: list[BaseException] = []

        def other_thread() -> None:  # another thread is another owner: it contends
            try:
                ws.reconcile()
            except BaseException as exc:  # noqa: BLE001 -- reported below
                failures.append(exc)

        thread = threading.Thread(target=other_thread)
        thread.start()
        thread.join(60)
        assert len(failures) == 1 and isinstance(failures[0], RunLockHeld)
    assert runlock.read_holder(store_path / runlock.LOCK_FILE) == {}


# -- one loop: the deadline as a typed flag -----------------------------------------------------------


def test_sources_the_deadline_leaves_out_are_flagged_not_parsed(
    store_path: Path, notes: Path
) -> None:
    with blocksync.open(store_path) as ws:
        report = ws.reconcile(run=Run("run-test", timeout=0))
        assert ws.blocks.list("alice") == []  # nothing started
    (entry,) = report.sources
    assert report.run_id == "run-test" and report.exit_code == 1
    assert entry.not_reached == "timeout" and entry.error is not None
    assert "0 s deadline" in entry.error
    assert "not_reached" not in report.to_json()["sources"][0]  # its JSON is as it was


# -- a folder-only run loads no plugin -----------------------------------------------------------------


@pytest.mark.parametrize("plugin", ["missing", "broken"])
def test_a_folder_source_run_loads_no_plugin(store_path: Path, notes: Path, plugin: str) -> None:
    path = store_path / "plugins" / f"{plugin}.wasm"
    if plugin == "broken":
        path.write_bytes(b"\x00asm not a component")
    with open(store_path / "blocksync.toml", "a", encoding="utf-8") as f:
        f.write(f'\n[agents.alice.data_sources.bad]\ntype = "wasm"\npath = "{path}"\n')
    done = cli(store_path, "reconcile", "--source", "notes", "--json")
    assert done.returncode == 0, done.stderr
    with blocksync.open(store_path) as ws:
        untouched = ws.plugins.list()  # what a workspace that tried nothing says of it
    with blocksync.open(store_path) as ws:
        report = ws.reconcile(sources=["notes"])
        assert report.exit_code == 0 and [s.source for s in report.sources] == ["notes"]
        ws.conflicts.list()  # nor does listing conflicts load one
        assert ws.plugins.list() == untouched  # no load tried: no load error kept
        assert not any(entry.loaded for entry in untouched)
        # the plugin is really unusable: a run over every source reports it failed
        everything = ws.reconcile()
    assert [(s.source, s.error is not None) for s in everything.sources] == [
        ("notes", False),
        ("bad", True),
    ]
