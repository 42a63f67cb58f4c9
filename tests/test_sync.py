"""`blocksync sync`, the cron job: run lock, run log, exit codes, report, timeout.

Real stores, real file sources, real processes: the lock is held by a real `run_sync` in another
process (stopped inside its first source by a progress callback that waits on its standard
input), a killed holder is killed with SIGKILL, and every exit code comes from the real command.
"""

from __future__ import annotations

import json
import os
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

import blocksync
from blocksync.errors import ConfigError, RunLockHeld
from blocksync.index.runs import RunLog, Summary
from blocksync.runner import run_sync
from blocksync.sync import runlock

from .terminal import run_on_terminal

BLOCKSYNC = str(Path(sys.executable).parent / "blocksync")
ENV = {**os.environ, "BLOCKSYNC_AUTHOR": "human:test"}
ENV.pop("BLOCKSYNC_STORE", None)

#: a real sync run that stops inside its first source until a line arrives on its stdin
HOLDER = textwrap.dedent(
    """
    import sys
    import blocksync
    from blocksync.runner import run_sync

    def hold(name, position, count):
        print("inside", name, flush=True)
        sys.stdin.readline()

    with blocksync.open(sys.argv[1], author="test:holder") as ws:
        report = run_sync(ws, progress=hold)
    print("done", report.exit_code, flush=True)
    """
)


def add_source(store: Path, key: str, folder: Path, agent: str = "alice") -> None:
    with open(store / "blocksync.toml", "a", encoding="utf-8") as f:
        f.write(f'\n[agents.{agent}.data_sources.{key}]\ntype = "file"\npaths = ["{folder}"]\n')


def sync(store: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [BLOCKSYNC, "--store", str(store), "sync", *args],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=timeout,
        check=False,
    )


def sync_json(store: Path, *args: str) -> tuple[int, dict[str, Any]]:
    done = sync(store, "--json", *args)
    assert done.stdout, done.stderr
    return done.returncode, json.loads(done.stdout)


def cli(store: Path, *args: str) -> str:
    done = subprocess.run(
        [BLOCKSYNC, "--store", str(store), *args],
        capture_output=True,
        text=True,
        env=ENV,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def runs(store: Path) -> list[Any]:
    with RunLog(store / "index.db") as log:
        return log.list()


@pytest.fixture
def notes(store_path: Path, tmp_path: Path) -> Path:
    """A folder with one file, configured as source `notes` of agent alice."""
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "a.md").write_text("first line\nsecond line\n", encoding="utf-8")
    add_source(store_path, "notes", folder)
    return folder


class Holder:
    """A real sync run in another process, held inside its first source."""

    def __init__(self, store: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(store)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=ENV,
        )
        line = self._line(30)
        assert line.startswith("inside"), line + (
            self.proc.stderr.read() if self.proc.stderr else ""
        )

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

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.kill()
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture
def holder(store_path: Path, notes: Path) -> Iterator[Holder]:
    h = Holder(store_path)
    try:
        yield h
    finally:
        h.close()


# -- the run lock, between real processes -------------------------------------------------------


def test_a_second_run_exits_75_at_once_naming_the_holder(store_path: Path, holder: Holder) -> None:
    start = time.monotonic()
    done = sync(store_path, timeout=30)
    elapsed = time.monotonic() - start
    assert done.returncode == 75, done.stderr
    assert elapsed < 10  # the holder never lets go: anything but "at once" would hang
    assert f"pid {holder.proc.pid}" in done.stderr and "blocksync sync" in done.stderr
    assert "--wait" in done.stderr and done.stdout == ""
    # it did not start: one row, the holder's, still running
    assert [r.status for r in runs(store_path)] == ["running"]
    assert holder.release() == 0
    assert [(r.status, r.exit_code) for r in runs(store_path)] == [("finished", 0)]


def _wait_until_open(pid: int, path: Path, timeout: float = 60) -> None:
    """Return once process ``pid`` holds ``path`` open (its descriptors in /proc)."""
    wanted = os.path.realpath(path)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            fds = list(Path(f"/proc/{pid}/fd").iterdir())
            if any(os.path.realpath(fd) == wanted for fd in fds):
                return
        except OSError:
            pass  # a descriptor closed while we looked: look again
        time.sleep(0.05)
    raise AssertionError(f"process {pid} never opened {path}")


def test_wait_waits_for_the_holder_then_runs(store_path: Path, holder: Holder) -> None:
    waiting = subprocess.Popen(
        [BLOCKSYNC, "--store", str(store_path), "sync", "--wait", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    try:
        # it is waiting once it holds the lock file open (it retries on that descriptor): a
        # fixed sleep was too short for its start on a loaded machine, which then found the
        # lock free and had not waited at all
        _wait_until_open(waiting.pid, store_path / runlock.LOCK_FILE)
        time.sleep(0.5)  # a failed attempt or more behind it
        assert waiting.poll() is None, "it should still be waiting for the lock"
        assert holder.release() == 0
        out, err = waiting.communicate(timeout=60)
    finally:
        if waiting.poll() is None:
            waiting.kill()
            waiting.communicate()
    assert waiting.returncode == 0, err
    report = json.loads(out)
    # it did wait (how long depends on how long its start took on a busy machine)
    assert report["lock_waited"] > 0
    rows = runs(store_path)
    assert [r.id for r in rows] == [report["run_id"], rows[1].id]
    assert [(r.status, r.exit_code) for r in rows] == [("finished", 0), ("finished", 0)]


def test_wait_gives_up_with_75_when_the_timeout_passes(store_path: Path, holder: Holder) -> None:
    start = time.monotonic()
    done = sync(store_path, "--wait", "--timeout", "1", timeout=30)
    assert done.returncode == 75 and "waited 1." in done.stderr, done.stderr
    assert 1 <= time.monotonic() - start < 15


def test_a_killed_holder_does_not_block_the_next_run(store_path: Path, holder: Holder) -> None:
    killed = holder.proc.pid
    holder.kill()
    # the note of the killed run is still in the file: the flock, not the file, is the lock
    assert runlock.read_holder(store_path / "run.lock")["pid"] == killed
    code, report = sync_json(store_path)
    assert code == 0
    rows = runs(store_path)
    assert rows[0].id == report["run_id"]
    assert [(r.status, r.exit_code) for r in rows] == [("finished", 0), ("interrupted", None)]
    assert rows[1].pid == killed and rows[1].finished_at is None
    # and after a clean run the lock file names nobody
    assert runlock.read_holder(store_path / "run.lock") == {}


# -- exit codes through real sources --------------------------------------------------------------


def _label(store: Path, owner: str) -> str:
    (block,) = json.loads(cli(store, "block", "list", owner, "--json"))
    return str(block["label"])


def test_exit_codes_0_3_1_and_the_runs_they_leave(
    store_path: Path, notes: Path, tmp_path: Path
) -> None:
    # 0: a clean first run binds the file to a new block
    code, first = sync_json(store_path)
    assert code == 0 and first["exit_code"] == 0
    (entry,) = first["sources"]
    assert entry["resolved"] == [{"path": "a.md", "resolution": entry["resolved"][0]["resolution"]}]
    label = _label(store_path, "alice")
    assert cli(store_path, "block", "read", "alice", label) == "first line\nsecond line\n"

    # 3: both sides change the same line
    (notes / "a.md").write_text("first line, disk\nsecond line\n", encoding="utf-8")
    cli(
        store_path,
        "block",
        "update",
        "alice",
        label,
        "--content",
        "first line, agent\nsecond line\n",
    )
    code, second = sync_json(store_path)
    assert code == 3 and second["open_conflicts"] == 1
    (needs,) = second["sources"][0]["needs_resolution"]
    assert needs["path"] == "a.md" and second["sources"][0]["error"] is None
    (conflict,) = json.loads(cli(store_path, "conflicts", "list", "--json"))
    assert conflict["path"] == "a.md" and needs["conflict"] == conflict["id"]

    # 1 wins over 3: another source fails (its folder vanishes: the mass-deletion guard)
    work = tmp_path / "work"
    work.mkdir()
    for i in range(6):
        (work / f"w{i}.md").write_text(f"work {i}\n", encoding="utf-8")
    add_source(store_path, "work", work, agent="bob")
    code, third = sync_json(store_path)
    assert code == 3 and third["sources"][1]["resolved"]  # bound, conflict still open
    work.rename(tmp_path / "work-unmounted")
    code, fourth = sync_json(store_path)
    assert code == 1 and fourth["exit_code"] == 1
    by_source = {s["source"]: s for s in fourth["sources"]}
    assert by_source["work"]["error"] and "missing" in by_source["work"]["error"]
    assert by_source["notes"]["error"] is None
    assert [n["path"] for n in by_source["notes"]["needs_resolution"]] == ["a.md"]
    assert fourth["open_conflicts"] == 1

    rows = runs(store_path)
    assert [r.exit_code for r in rows] == [1, 3, 3, 0]
    assert [r.id for r in rows] == [
        fourth["run_id"],
        third["run_id"],
        second["run_id"],
        first["run_id"],
    ]
    assert all(r.status == "finished" and r.command == "blocksync sync" for r in rows)
    assert (rows[0].sources, rows[0].failed_sources, rows[0].needs_resolution) == (2, 1, 1)
    assert rows[0].open_conflicts == 1 and rows[3].resolved == 1
    assert {**rows[0].report, "format": 1} == fourth  # the CLI's JSON adds its format
    # conflicts name the run that detected them
    assert conflict["detected_run"] == second["run_id"]


def test_json_shape(store_path: Path, notes: Path) -> None:
    code, report = sync_json(store_path)
    assert code == 0
    assert set(report) == {
        "format",
        "run_id",
        "command",
        "started_at",
        "finished_at",
        "seconds",
        "lock_waited",
        "timeout",
        "deadline",
        "timed_out",
        "not_reached",
        "sources",
        "streams",
        "summary",
        "open_conflicts",
        "exit_code",
    }
    (entry,) = report["sources"]
    assert set(entry) == {
        "source",
        "resolved",
        "needs_resolution",
        "unchanged",
        "skipped",
        "held",
        "error",
        "seconds",  # how long the source took (for the run log)
    }
    assert isinstance(entry["seconds"], float)
    assert set(report["summary"]) == set(vars(Summary()))
    assert report["summary"]["sources"] == 1 and report["summary"]["resolved"] == 1
    assert report["timeout"] is None and report["timed_out"] is False
    assert report["deadline"] is None
    assert report["started_at"] <= report["finished_at"]


def test_text_report(store_path: Path, notes: Path) -> None:
    done = sync(store_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("sync: 1 source(s) in ")
    assert "notes: 1 resolved, 0 need resolution, 0 unchanged, 0 skipped" in lines
    assert lines[-1] == "open conflicts: 0"
    assert done.stderr == ""  # no progress when the output is not a terminal


def test_progress_on_a_terminal_only(store_path: Path, notes: Path) -> None:
    text = run_on_terminal([BLOCKSYNC, "--store", str(store_path), "sync"], ENV, 30)
    assert "reconciling notes (1/1)" in text and "open conflicts: 0" in text
    assert "reconciling" not in sync(store_path, "--json").stdout


# -- timeout --------------------------------------------------------------------------------------


def test_deadline_zero_reaches_no_source(store_path: Path, notes: Path) -> None:
    code, report = sync_json(store_path, "--deadline", "0")
    assert code == 1 and report["timed_out"] is True and report["not_reached"] == ["notes"]
    (entry,) = report["sources"]
    assert "not reached" in entry["error"] and "deadline" in entry["error"]
    assert cli(store_path, "block", "list", "alice", "--json").strip() == "[]"
    assert runs(store_path)[0].exit_code == 1


def test_sources_past_the_deadline_are_failed_the_running_one_finishes(
    store_path: Path, notes: Path, tmp_path: Path
) -> None:
    other = tmp_path / "other"
    other.mkdir()
    (other / "b.md").write_text("b\n", encoding="utf-8")
    add_source(store_path, "other", other)
    clock = [100.0]

    def slow_source(name: str, position: int, count: int) -> None:
        clock[0] += 10  # the first source takes 10 "seconds" of a 5-second budget

    with blocksync.open(store_path) as ws:
        report = run_sync(ws, deadline=5, now=lambda: clock[0], progress=slow_source)
        assert report.exit_code == 1 and report.not_reached == ["other"]
        first, second = report.sources
        assert first.source == "notes" and first.error is None and first.resolved
        assert second.source == "other" and second.error and "not reached" in second.error
        assert [b.label.endswith(":a.md") for b in ws.blocks.list("alice")] == [True]  # no b.md


# -- failures of the run itself -------------------------------------------------------------------


def test_a_run_that_fails_as_a_whole_still_completes_its_row(store_path: Path) -> None:
    with open(store_path / "blocksync.toml", "a", encoding="utf-8") as f:
        f.write('\n[agents.alice.data_sources.bad]\ntype = "file"\npaths = "not a list"\n')
    done = sync(store_path)
    assert done.returncode == 2 and done.stderr.startswith("error: ") and "paths" in done.stderr
    (row,) = runs(store_path)
    assert row.status == "finished" and row.exit_code == 2 and "paths" in row.report["error"]


def test_no_sources_is_a_clean_run(store_path: Path) -> None:
    code, report = sync_json(store_path)
    assert code == 0 and report["sources"] == [] and report["open_conflicts"] == 0


# -- the lock itself, in one process --------------------------------------------------------------


def test_the_lock_is_exclusive_even_within_one_process(tmp_path: Path) -> None:
    path = tmp_path / "run.lock"
    with runlock.acquire(path, info={"command": "test", "run_id": "r-1"}) as held:
        assert held.holder["pid"] == os.getpid() and held.waited == 0
        assert runlock.read_holder(path)["run_id"] == "r-1"
        with pytest.raises(RunLockHeld) as info, runlock.acquire(path):
            pass
        assert info.value.exit_code == 75 and info.value.holder["run_id"] == "r-1"
        assert "run r-1" in str(info.value)
    with runlock.acquire(path):  # released: free again
        pass


def test_waiting_for_the_lock_honours_its_timeout(tmp_path: Path) -> None:
    path = tmp_path / "run.lock"
    clock = [0.0]
    with (
        runlock.acquire(path),
        pytest.raises(RunLockHeld) as info,
        runlock.acquire(
            path,
            wait=True,
            timeout=2.0,
            clock=lambda: clock[0],
            sleep=lambda s: clock.__setitem__(0, clock[0] + s),
        ),
    ):
        pass
    assert info.value.waited == pytest.approx(2.0)


def test_config_errors_are_not_swallowed_by_the_library(store_path: Path) -> None:
    with open(store_path / "blocksync.toml", "a", encoding="utf-8") as f:
        f.write('\n[agents.alice.data_sources.bad]\ntype = "file"\n')
    with blocksync.open(store_path) as ws, pytest.raises(ConfigError):
        run_sync(ws)


def test_interrupted_rows(tmp_path: Path) -> None:
    """Rows of runs that can no longer finish are marked interrupted when the next run starts."""
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    db = tmp_path / "index.db"
    with RunLog(db) as log:
        log.start("run-dead", "x", pid=int(dead.stdout))
        log.start("run-alive", "x")  # this process: alive
        log.start("run-3", "x")
        assert {r.id: r.status for r in log.list()} == {
            "run-3": "running",
            "run-alive": "running",
            "run-dead": "interrupted",
        }
        # holding the run lock, every other running row is a dead run, whatever its pid
        log.start("run-4", "x", exclusive=True)
        assert [(r.id, r.status) for r in log.list()] == [
            ("run-4", "running"),
            ("run-3", "interrupted"),
            ("run-alive", "interrupted"),
            ("run-dead", "interrupted"),
        ]
        done = log.finish("run-4", exit_code=3, summary=Summary(open_conflicts=2), report={"a": 1})
        assert (done.status, done.exit_code, done.open_conflicts, done.report) == (
            "finished",
            3,
            2,
            {"a": 1},
        )
        assert [r.id for r in log.list(limit=2)] == ["run-4", "run-3"]
        with pytest.raises(blocksync.UsageError):
            log.start("run-4", "x")
