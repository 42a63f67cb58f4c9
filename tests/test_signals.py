"""SIGINT and SIGTERM during a locked run (issue 12, item 5).

Real processes, real stores: the installed `blocksync` command is sent a real signal while it
is inside a plugin call (the `hostile_block` fixture in mode `timeout`, which loops until its
time limit stops it) or while it writes thousands of files into a folder. When to send it is
decided by what the process shows -- its progress line on a pseudo-terminal, the first file
appearing in the folder -- never by a sleep. Then: the documented exit code (130 for SIGINT,
143 for SIGTERM), the `runs` row, the lock free for the next run, real `git fsck` and
`blocksync fsck` clean, every file and block holding its old or its new content.
"""

from __future__ import annotations

import os
import pty
import select
import signal
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

import blocksync
from blocksync.fs.disk import is_temp_name
from blocksync.index.runs import RunLog, Summary
from blocksync.store.records import Records
from blocksync.sync.folder.source import root_tag

from .conftest import assert_git_fsck
from .plugin_builds import built_plugin
from .stores import make_store_for
from .test_sync import BLOCKSYNC, ENV, Holder, add_source, runs

#: the hostile plugin's time limit: long enough that a signal sent once its source started
#: lands inside its call (or its loading), short enough to keep the tests quick
LIMIT = 3.0
FILES = 3000


def hostile_store(tmp_path: Path) -> tuple[Path, Path]:
    """A store with a folder source `notes` (a few files) and, after it, the hostile plugin."""
    folder = tmp_path / "notes"
    folder.mkdir()
    for i in range(20):
        (folder / f"n{i:02}.md").write_text(f"note {i}\n", encoding="utf-8")
    store = make_store_for(
        tmp_path / "store",
        {
            "alice": {
                "hostile": {
                    "path": str(built_plugin("hostile_block")),
                    "config": {"mode": "timeout"},
                    "limits": {"timeout": LIMIT},
                }
            }
        },
    )
    add_source(store, "notes", folder)
    return store, folder


class Terminal:
    """`blocksync ARGS` with its stdout and stderr on a pseudo-terminal, so it shows progress."""

    def __init__(self, store: Path, *args: str) -> None:
        self.master, slave = pty.openpty()
        try:
            self.proc = subprocess.Popen(
                [BLOCKSYNC, "--store", str(store), *args],
                stdin=subprocess.DEVNULL,
                stdout=slave,
                stderr=slave,
                env=ENV,
            )
        finally:
            os.close(slave)
        self.text = ""

    def _read(self, timeout: float) -> bool:
        ready, _, _ = select.select([self.master], [], [], timeout)
        if not ready:
            return False
        try:
            chunk = os.read(self.master, 4096)
        except OSError:  # EIO: the process closed its end
            return False
        self.text += chunk.decode("utf-8", "replace")
        return bool(chunk)

    def wait_for(self, needle: str) -> None:
        while needle not in self.text:
            assert self._read(60), f"never showed {needle!r}: {self.text!r}"

    def finish(self) -> int:
        while self._read(60):
            pass
        code = self.proc.wait(60)
        os.close(self.master)
        return code


@pytest.fixture
def terminals() -> Iterator[list[Terminal]]:
    started: list[Terminal] = []
    yield started
    for t in started:
        if t.proc.poll() is None:
            t.proc.kill()
            t.proc.wait()


def cli(store: Path, *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [BLOCKSYNC, "--store", str(store), *args],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=120,
        check=False,
    )
    assert "Traceback" not in done.stderr, done.stderr
    return done


def assert_store_sound(store: Path) -> None:
    assert_git_fsck(store / "repo")
    done = cli(store, "fsck")
    assert done.returncode == 0, done.stdout + done.stderr


def assert_files_match_blocks(store: Path, folder: Path, expected: dict[str, str]) -> None:
    """Each file of ``expected`` (name -> content) is absent (old) or holds its content (new),
    and its block, when there is one, holds the same; no temp file is left in the folder."""
    tag = root_tag(folder)
    with blocksync.open(store) as ws:
        for name, content in expected.items():
            path = folder / name
            if path.exists():
                assert path.read_text(encoding="utf-8") == content, name
            assert ws.blocks.read("alice", f"file:{tag}:{name}").content == content, name
    assert not [p.name for p in folder.iterdir() if is_temp_name(p.name)]


def assert_one_interrupt_line(text: str, name: str) -> None:
    assert "Traceback" not in text and "internal error" not in text, text
    lines = [line for line in text.splitlines() if f"interrupted by {name}" in line]
    assert len(lines) == 1, text
    assert "nothing half-done" in lines[0]


def test_sigint_during_a_plugin_call(tmp_path: Path, terminals: list[Terminal]) -> None:
    """The call in progress finishes (its time limit ends it), then the run stops: exit 130,
    the run row says interrupted with that code, the lock is free, the store is sound."""
    store, folder = hostile_store(tmp_path)
    run = Terminal(store, "sync")
    terminals.append(run)
    run.wait_for("reconciling hostile (2/2)")
    run.proc.send_signal(signal.SIGINT)
    assert run.finish() == 130, run.text
    assert_one_interrupt_line(run.text, "SIGINT")
    assert "2 of 2" in run.text  # the plugin's source ran to its end: no call was cut short

    (row,) = runs(store)
    assert (row.status, row.exit_code) == ("interrupted", 130)
    assert row.finished_at is not None and row.report is not None
    assert row.report["signal"] == "SIGINT"
    hostile = [s for s in row.report["sources"] if s["source"] == "hostile"]
    assert "time" in hostile[0]["error"]  # its call ran until its limit, as without a signal

    assert_store_sound(store)
    assert_files_match_blocks(store, folder, {f"n{i:02}.md": f"note {i}\n" for i in range(20)})
    again = cli(store, "sync")  # the lock is free: this run starts (and the plugin fails again)
    assert again.returncode == 1, again.stderr
    assert [(r.status, r.exit_code) for r in runs(store)] == [("finished", 1), ("interrupted", 130)]


def test_a_second_sigint_exits_at_once(tmp_path: Path, terminals: list[Terminal]) -> None:
    """Inside the plugin's call, a second Ctrl-C does not wait for it: the process leaves at
    once with 130, its row still `running` (nobody finished it), which the next run marks
    interrupted; nothing is damaged and the lock is not left behind."""
    store, folder = hostile_store(tmp_path)
    run = Terminal(store, "sync")
    terminals.append(run)
    run.wait_for("reconciling hostile (2/2)")
    run.proc.send_signal(signal.SIGINT)
    run.wait_for("again to exit at once")  # the first is taken: it waits for the plugin's call
    run.proc.send_signal(signal.SIGINT)
    assert run.finish() == 130, run.text
    assert "Traceback" not in run.text, run.text
    assert [r.status for r in runs(store)] == ["running"]  # it did not wait to record its end

    assert_store_sound(store)
    assert_files_match_blocks(store, folder, {f"n{i:02}.md": f"note {i}\n" for i in range(20)})
    again = cli(store, "sync")
    assert again.returncode == 1, again.stderr
    assert [(r.status, r.exit_code) for r in runs(store)] == [
        ("finished", 1),
        ("interrupted", None),
    ]


def many_blocks(tmp_path: Path) -> tuple[Path, Path, dict[str, str]]:
    """A store whose folder source `notes` is empty while alice has FILES blocks for it: the
    next run writes FILES new files."""
    folder = tmp_path / "notes"
    folder.mkdir()
    store = tmp_path / "store"
    blocksync.init(store, author="test:setup").close()
    add_source(store, "notes", folder)
    expected = {f"f{i:04}.md": f"note {i}\nline two\n" for i in range(FILES)}
    tag = root_tag(folder)
    with blocksync.open(store, author="test:setup") as ws, ws.transaction("seed") as tx:
        for name, content in expected.items():
            tx.create("alice", f"file:{tag}:{name}", content)
    return store, folder, expected


def _first_file(folder: Path, proc: subprocess.Popen[str]) -> None:
    """Until a finished file appears in ``folder`` (a short poll; fails if the run ended)."""
    while not any(n.endswith(".md") for n in os.listdir(folder)):
        assert proc.poll() is None, "the run ended before it wrote a file"
        try:
            proc.wait(0.01)
        except subprocess.TimeoutExpired:
            pass


@pytest.mark.parametrize(
    ("command", "sig", "code"),
    [("sync", signal.SIGTERM, 143), ("reconcile", signal.SIGINT, 130)],
)
def test_a_signal_during_a_folder_write(
    tmp_path: Path, command: str, sig: signal.Signals, code: int
) -> None:
    """Stopped between two files: the files written have their new content and their bases,
    the rest is left for the next run, which converges."""
    store, folder, expected = many_blocks(tmp_path)
    proc = subprocess.Popen(
        [BLOCKSYNC, "--store", str(store), command, "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    try:
        _first_file(folder, proc)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == code, (out, err)
    assert out == ""  # no report: the run did not complete
    assert_one_interrupt_line(err, sig.name)
    if command == "sync":
        (row,) = runs(store)
        assert (row.status, row.exit_code, row.report and row.report["signal"]) == (
            "interrupted",
            code,
            sig.name,
        )
    assert_store_sound(store)
    assert_files_match_blocks(store, folder, expected)

    again = cli(store, "sync", "--json")  # the lock is free, and the rest is written now
    assert again.returncode == 0, again.stdout + again.stderr
    assert sorted(os.listdir(folder)) == sorted(expected)
    assert_files_match_blocks(store, folder, expected)
    third = cli(store, "sync", "--json")
    assert '"resolved": []' in third.stdout  # converged: nothing left to do


def _has_open(pid: int, path: Path) -> bool:
    """Whether process ``pid`` has ``path`` open (Linux: its /proc/PID/fd links)."""
    fds = Path(f"/proc/{pid}/fd")
    try:
        links = [os.readlink(fd) for fd in fds.iterdir()]
    except OSError:  # it is starting or ending: not yet (or no longer)
        return False
    return str(path) in links


def test_a_signal_while_waiting_for_the_lock(tmp_path: Path) -> None:
    """`--wait` behind another run: SIGTERM stops the wait (143) and nothing is written."""
    store, _, _ = many_blocks(tmp_path)
    holder = Holder(store)  # a real sync, held inside its first source: it holds the lock
    waiter: subprocess.Popen[str] | None = None
    try:
        waiter = subprocess.Popen(
            [BLOCKSYNC, "--store", str(store), "reconcile", "--wait"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=ENV,
        )
        while not _has_open(waiter.pid, store / "run.lock"):  # it is trying for the lock
            assert waiter.poll() is None, waiter.communicate()
        waiter.send_signal(signal.SIGTERM)
        out, err = waiter.communicate(timeout=120)
        assert waiter.returncode == 143, (out, err)
        assert_one_interrupt_line(err, "SIGTERM")
        assert holder.release() == 0
    finally:
        holder.close()
        if waiter is not None and waiter.poll() is None:
            waiter.kill()
            waiter.communicate()
    assert [r.status for r in runs(store)] == ["finished"]  # the holder's; none of the waiter


#: the `runs` table as stores made before signals were recorded have it: its check refuses an
#: exit code on an interrupted row
OLD_RUNS = """
    CREATE TABLE runs (
        seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, command TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('running', 'finished', 'interrupted')),
        pid INTEGER NOT NULL, started_at TEXT NOT NULL, finished_at TEXT, exit_code INTEGER,
        sources INTEGER, failed_sources INTEGER, resolved INTEGER, needs_resolution INTEGER,
        unchanged INTEGER, skipped INTEGER, open_conflicts INTEGER, report TEXT,
        CHECK ((status = 'finished') = (exit_code IS NOT NULL))
    )
"""


def test_an_older_runs_table_takes_an_interrupted_row(store_path: Path) -> None:
    """The old table is rebuilt with today's checks, keeping its rows; the interrupted row (with
    its exit code) is kept in git too, so `index rebuild` brings it back as it was."""
    db = store_path / "index.db"
    with sqlite3.connect(db) as conn:
        conn.execute("DROP TABLE IF EXISTS runs")
        conn.execute(OLD_RUNS)
        conn.execute(
            "INSERT INTO runs (id, command, status, pid, started_at, finished_at, exit_code) "
            "VALUES ('run-old', 'blocksync sync', 'finished', 1, '2024-01-01', '2024-01-01', 0)"
        )
    conn.close()
    records = Records(store_path / "repo")
    try:
        with RunLog(db, records=records) as log:
            log.start("run-new", "blocksync sync", exclusive=True)
            row = log.interrupt(
                "run-new", exit_code=143, summary=Summary(), report={"signal": "SIGTERM"}
            )
    finally:
        records.close()
    assert (row.status, row.exit_code, row.report) == ("interrupted", 143, {"signal": "SIGTERM"})
    assert row.finished_at is not None
    with sqlite3.connect(db) as conn:
        (sql,) = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'runs'").fetchone()
        with pytest.raises(sqlite3.IntegrityError):  # a running row still has no exit code
            conn.execute("UPDATE runs SET status = 'running' WHERE id = 'run-new'")
    conn.close()
    assert "(status = 'finished') = (exit_code IS NOT NULL)" not in sql

    blocksync.rebuild_index(store_path)
    assert [(r.id, r.status, r.exit_code) for r in runs(store_path)] == [
        ("run-new", "interrupted", 143),
        ("run-old", "finished", 0),
    ]
