"""`store/run.lock` beyond sync: reconcile, conflicts resolve and conflicts undo take it too.

Real processes on both sides: the holder is a real `run_sync` (or `ws.reconcile()`) in another
process, stopped inside its first source until a line arrives on its standard input; the
contenders are the installed `blocksync` command. A dry run writes nothing and takes no lock.
"""

from __future__ import annotations

import json
import select
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from blocksync.sync import runlock

from ..test_sync import BLOCKSYNC, ENV, add_source, runs

#: a real run (`run_sync` or `ws.reconcile()`) that stops inside its first source until told
HOLDER = textwrap.dedent(
    """
    import sys
    import blocksync
    from blocksync.runner import run_sync

    def hold(name, position, count):
        print("inside", name, flush=True)
        sys.stdin.readline()

    def run_reconcile(ws, progress):
        return ws.reconcile(progress=progress)

    run = run_sync if sys.argv[2] == "sync" else run_reconcile
    with blocksync.open(sys.argv[1], author="test:holder") as ws:
        report = run(ws, progress=hold)
    print("done", report.exit_code, flush=True)
    """
)


class Holder:
    """A real sync or reconcile run in another process, held inside its first source."""

    def __init__(self, store: Path, run: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(store), run],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=ENV,
        )
        line = self._line(30)
        if not line.startswith("inside"):  # it failed: say why (its stderr is at EOF then)
            pytest.fail(line + (self.proc.stderr.read() if self.proc.stderr else ""))

    def _line(self, timeout: float) -> str:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        assert ready, "the holder did not answer"
        return self.proc.stdout.readline()

    def release(self) -> int:
        assert self.proc.stdin is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()
        assert self._line(30).startswith("done")
        return self.proc.wait(30)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(30)
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture
def notes(store_path: Path, tmp_path: Path) -> Path:
    """A folder with one file, configured as source `notes` of agent alice."""
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "a.md").write_text("first line\nsecond line\n", encoding="utf-8")
    add_source(store_path, "notes", folder)
    return folder


@pytest.fixture
def hold(store_path: Path) -> Iterator[Any]:
    """``hold("sync")`` or ``hold("reconcile")`` starts a holder, killed at the end if left."""
    holders: list[Holder] = []

    def start(run: str) -> Holder:
        holders.append(Holder(store_path, run))
        return holders[-1]

    yield start
    for h in holders:
        h.close()


def blocksync(store: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [BLOCKSYNC, "--store", str(store), *args],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=timeout,
        check=False,
    )
    assert "Traceback" not in done.stderr and "internal error" not in done.stderr, done.stderr
    return done


def popen(store: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [BLOCKSYNC, "--store", str(store), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )


def finish(proc: subprocess.Popen[str]) -> tuple[str, str]:
    try:
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert "Traceback" not in err, err
    return out, err


def assert_held_by(done: subprocess.CompletedProcess[str], holder: Holder, command: str) -> None:
    assert done.returncode == 75, (done.returncode, done.stdout, done.stderr)
    assert done.stdout == ""
    assert done.stderr.startswith("error: another run holds the run lock ")
    assert f"pid {holder.proc.pid}" in done.stderr and f"running '{command}'" in done.stderr
    assert "--wait" in done.stderr and len(done.stderr.splitlines()) == 1


def blocks(store: Path) -> list[Any]:
    done = blocksync(store, "block", "list", "--json")
    assert done.returncode == 0, done.stderr
    return list(json.loads(done.stdout))


# -- reconcile -------------------------------------------------------------------------------------


def test_reconcile_exits_75_at_once_while_a_sync_holds_the_lock(
    store_path: Path, notes: Path, hold: Any
) -> None:
    holder = hold("sync")
    start = time.monotonic()
    done = blocksync(store_path, "reconcile", timeout=30)
    assert time.monotonic() - start < 10  # at once: the holder never lets go by itself
    assert_held_by(done, holder, "blocksync sync")
    assert blocks(store_path) == []  # it did not start
    assert holder.release() == 0
    assert len(blocks(store_path)) == 1  # the holder's run, not the refused one, bound the file


def test_a_reconcile_holds_the_lock_against_reconcile_and_sync(
    store_path: Path, notes: Path, hold: Any
) -> None:
    holder = hold("reconcile")
    note = runlock.read_holder(store_path / runlock.LOCK_FILE)
    assert note["command"] == "blocksync reconcile" and str(note["run_id"]).startswith("run-")
    again = blocksync(store_path, "reconcile", timeout=30)
    assert_held_by(again, holder, "blocksync reconcile")
    assert f"run {note['run_id']}" in again.stderr
    as_json = blocksync(store_path, "reconcile", "--json", timeout=30)  # the error in JSON
    assert as_json.returncode == 75 and as_json.stdout == ""
    error = json.loads(as_json.stderr)
    assert error["format"] == 1 and error["exit_code"] == 75
    assert error["error"]["type"] == "RunLockHeld"
    assert f"run {note['run_id']}" in error["error"]["message"]
    cron = blocksync(store_path, "sync", timeout=30)
    assert_held_by(cron, holder, "blocksync reconcile")
    # the refused sync did not start: the one row is the holder's own reconcile, still going
    assert [(r.id, r.command, r.status) for r in runs(store_path)] == [
        (note["run_id"], "blocksync reconcile", "running")
    ]
    assert holder.release() == 0
    assert runlock.read_holder(store_path / runlock.LOCK_FILE) == {}


def test_reconcile_wait_runs_once_the_holder_releases(
    store_path: Path, notes: Path, hold: Any
) -> None:
    holder = hold("sync")
    waiting = popen(store_path, "reconcile", "--wait", "--json")
    try:
        time.sleep(1.5)
        assert waiting.poll() is None, "it should still be waiting for the lock"
        assert holder.release() == 0
    finally:
        out, err = finish(waiting)
    assert waiting.returncode == 0, err
    report = json.loads(out)
    assert report["exit_code"] == 0 and report["dry_run"] is False
    (entry,) = report["sources"]
    assert entry["unchanged"] == 1  # the holder's sync bound the file before it ran


def test_reconcile_wait_gives_up_with_75_when_the_timeout_passes(
    store_path: Path, notes: Path, hold: Any
) -> None:
    holder = hold("sync")
    start = time.monotonic()
    done = blocksync(store_path, "reconcile", "--wait", "--timeout", "1", timeout=30)
    assert done.returncode == 75 and "waited 1." in done.stderr, done.stderr
    assert f"pid {holder.proc.pid}" in done.stderr
    assert 1 <= time.monotonic() - start < 15


def test_reconcile_deadline_reports_sources_not_reached(store_path: Path, notes: Path) -> None:
    done = blocksync(store_path, "reconcile", "--deadline", "0", "--json")
    assert done.returncode == 1, done.stderr
    (entry,) = json.loads(done.stdout)["sources"]
    assert "not reached" in entry["error"] and "0 s deadline" in entry["error"]
    assert blocks(store_path) == []


def test_reconcile_timeout_is_the_lock_wait_only(store_path: Path, notes: Path) -> None:
    """--timeout bounds the wait for the run lock, never the run: with the lock free, a
    timeout of 0 reconciles every source."""
    done = blocksync(store_path, "reconcile", "--wait", "--timeout", "0", "--json")
    assert done.returncode == 0, done.stderr
    (entry,) = json.loads(done.stdout)["sources"]
    assert entry["error"] is None and [r["path"] for r in entry["resolved"]] == ["a.md"]


def test_dry_run_needs_no_lock(store_path: Path, notes: Path, hold: Any) -> None:
    holder = hold("sync")
    done = blocksync(store_path, "reconcile", "--dry-run", "--json", timeout=30)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["dry_run"] is True
    (entry,) = report["sources"]
    assert [r["path"] for r in entry["resolved"]] == ["a.md"] and entry["error"] is None
    assert blocks(store_path) == []  # it wrote nothing
    # the lock is still the holder's, untouched by the dry run
    assert runlock.read_holder(store_path / runlock.LOCK_FILE)["pid"] == holder.proc.pid
    text = blocksync(store_path, "reconcile", "--dry-run", timeout=30)
    assert text.returncode == 0 and "(dry run: nothing written)" in text.stdout
    assert holder.release() == 0


def test_an_unknown_source_is_still_exit_4(store_path: Path, notes: Path) -> None:
    done = blocksync(store_path, "reconcile", "--source", "nope")
    assert done.returncode == 4 and "no data source named 'nope'" in done.stderr


# -- conflicts resolve / undo ----------------------------------------------------------------------


def _open_conflict(store: Path, notes: Path) -> str:
    """Bind notes/a.md, change both sides of the same line, reconcile: one open conflict."""
    assert blocksync(store, "reconcile").returncode == 0
    (block,) = blocks(store)
    (notes / "a.md").write_text("first line, disk\nsecond line\n", encoding="utf-8")
    updated = blocksync(
        store,
        "block",
        "update",
        "alice",
        block["label"],
        "--content",
        "first line, agent\nsecond line\n",
    )
    assert updated.returncode == 0, updated.stderr
    assert blocksync(store, "reconcile").returncode == 3
    (conflict,) = json.loads(blocksync(store, "conflicts", "list", "--json").stdout)
    return str(conflict["id"])


def test_resolve_and_undo_take_the_lock(store_path: Path, notes: Path, hold: Any) -> None:
    conflict = _open_conflict(store_path, notes)

    holder = hold("sync")
    refused = blocksync(store_path, "conflicts", "resolve", conflict, "--take", "disk", timeout=30)
    assert_held_by(refused, holder, "blocksync sync")
    assert (notes / "a.md").read_text(encoding="utf-8") == "first line, disk\nsecond line\n"
    (still,) = json.loads(blocksync(store_path, "conflicts", "list", "--json").stdout)
    assert still["id"] == conflict and still["status"] == "open"

    # --wait: resolved once the cron run is over
    waiting = popen(
        store_path, "conflicts", "resolve", conflict, "--take", "agent", "--wait", "--json"
    )
    try:
        time.sleep(1.5)
        assert waiting.poll() is None, "it should still be waiting for the lock"
        assert holder.release() == 0
    finally:
        out, err = finish(waiting)
    assert waiting.returncode == 0, err
    resolved = json.loads(out)
    assert resolved["id"] == conflict and resolved["status"] == "resolved"
    assert (notes / "a.md").read_text(encoding="utf-8") == "first line, agent\nsecond line\n"

    holder = hold("sync")
    refused = blocksync(store_path, "conflicts", "undo", conflict, timeout=30)
    assert_held_by(refused, holder, "blocksync sync")
    gave_up = blocksync(
        store_path, "conflicts", "undo", conflict, "--wait", "--timeout", "1", timeout=30
    )
    assert gave_up.returncode == 75 and "waited 1." in gave_up.stderr, gave_up.stderr
    assert (notes / "a.md").read_text(encoding="utf-8") == "first line, agent\nsecond line\n"
    assert holder.release() == 0
    undone = blocksync(store_path, "conflicts", "undo", conflict)
    assert undone.returncode == 0 and undone.stdout == f"reopened {conflict}\n", undone.stderr
    assert (notes / "a.md").read_text(encoding="utf-8") == "first line, disk\nsecond line\n"


def test_gc_takes_the_run_lock_and_reports_json(store_path: Path, notes: Path, hold: Any) -> None:
    holder = hold("sync")
    done = blocksync(store_path, "gc", timeout=30)
    assert done.returncode == 75 and f"pid {holder.proc.pid}" in done.stderr, done.stderr
    assert holder.release() == 0  # its writes are what there is to pack
    done = blocksync(store_path, "gc", "--json", "--grace", "0", timeout=60)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["packs_after"] == 1 and result["loose_after"] == 0
    assert result["packed"] > 0 and result["bytes_after"] > 0
    text = blocksync(store_path, "gc", timeout=60)
    assert text.returncode == 0 and "objects packed" in text.stdout, text.stderr
