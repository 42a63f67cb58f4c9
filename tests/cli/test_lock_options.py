"""Every command that takes the run lock takes ``--wait`` / ``--timeout``, with one meaning
(issue 15, item 7): wait for the lock (up to SECONDS) instead of exiting 75 at once.

``stream pull`` used to say "pass --wait" and have no such option. Real processes: the holder
is another process holding ``store/run.lock`` until a line arrives on its standard input; the
contenders are the installed ``blocksync`` command.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest

from blocksync import cli as cli_module
from blocksync.sync import runlock

from ..plugin_builds import built_plugin
from ..stores import make_store
from ..test_sync import ENV, add_source
from .test_run_lock_cli import _open_conflict, blocksync, finish, popen

#: a process holding the run lock until told
HOLDER = textwrap.dedent(
    """
    import sys
    from blocksync.sync import runlock

    with runlock.hold(sys.argv[1], info={"command": "test holder"}):
        print("held", flush=True)
        sys.stdin.readline()
    print("released", flush=True)
    """
)

#: every command that takes the run lock, with arguments that get it as far as the lock
LOCKING = {
    "gc": [],
    "reconcile": [],
    "sync": [],
    "conflicts resolve": ["c-nonesuch", "--take", "disk"],
    "conflicts undo": ["c-nonesuch"],
    "conflicts block": [],
    "pull": [],
    "push": [],
    "stream pull": ["echo"],
    "tool run": ["blocksync_conflict_resolve", "--params", '{"id": "c-nonesuch", "take": "disk"}'],
}
#: takes the lock only for a tool that does, on a conflict that exists (see its own test)
AT_ONCE = [path for path in LOCKING if path != "tool run"]


def _command(path: str) -> click.Command:
    command: click.Command = cli_module.cli
    for name in path.split():
        assert isinstance(command, click.Group)
        found = command.commands.get(name)
        assert found is not None, path
        command = found
    return command


def _options(command: click.Command) -> dict[str, click.Parameter]:
    return {p.name or "": p for p in command.params}


class Holder:
    def __init__(self, store: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(store / runlock.LOCK_FILE)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=ENV,
        )
        assert self.proc.stdout is not None
        assert self.proc.stdout.readline().strip() == "held"

    def release(self) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()
        assert self.proc.stdout.readline().strip() == "released"
        self.proc.wait(30)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                stream.close()


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return make_store(
        tmp_path / "store", {"echo": {"path": built_plugin("echo_stream"), "source_kind": "stream"}}
    )


@pytest.fixture
def holder(store: Path) -> Iterator[Holder]:
    held = Holder(store)
    try:
        yield held
    finally:
        held.close()


def test_every_locking_command_takes_wait_and_timeout_with_one_meaning() -> None:
    waits, timeouts = set(), set()
    for path in LOCKING:
        options = _options(_command(path))
        assert {"wait", "timeout"} <= set(options), path
        wait, timeout = options["wait"], options["timeout"]
        assert isinstance(wait, click.Option) and wait.is_flag, path
        assert isinstance(timeout, click.Option) and timeout.metavar == "SECONDS", path
        waits.add(wait.help)
        timeouts.add(timeout.help or "")
    assert len(waits) == 1 and len(timeouts) == 1  # one text: one meaning
    assert "run lock" in (waits.pop() or "") and "run lock" in timeouts.pop()


def test_only_the_commands_that_run_sources_take_a_deadline() -> None:
    """--timeout is the wait for the lock alone; bounding the run is --deadline's (issue 16)."""
    helps = {path: _options(_command(path)).get("deadline") for path in LOCKING}
    assert {path for path, option in helps.items() if option is not None} == {"sync", "reconcile"}
    assert helps["sync"] is not None and helps["reconcile"] is not None
    assert helps["sync"].help == helps["reconcile"].help and "SECONDS" in (helps["sync"].help or "")


def test_no_other_command_takes_them() -> None:
    """A command that takes the lock is in LOCKING; one that does not has no --wait."""

    def walk(group: click.Group, prefix: str) -> Iterator[tuple[str, click.Command]]:
        for name, command in group.commands.items():
            path = f"{prefix} {name}".strip()
            if isinstance(command, click.Group):
                yield from walk(command, path)
            else:
                yield path, command

    with_wait = {path for path, c in walk(cli_module.cli, "") if "wait" in _options(c)}
    assert with_wait == set(LOCKING)


@pytest.mark.parametrize("path", AT_ONCE)
def test_a_held_lock_without_wait_fails_at_once_naming_wait(
    store: Path, holder: Holder, path: str
) -> None:
    done = blocksync(store, *path.split(), *LOCKING[path], timeout=60)
    assert done.returncode == 75, (done.stdout, done.stderr)
    assert "another run holds the run lock" in done.stderr
    assert "test holder" in done.stderr and "pass --wait" in done.stderr


@pytest.mark.parametrize("path", list(LOCKING))
def test_wait_with_a_timeout_gives_up_with_75(store: Path, holder: Holder, path: str) -> None:
    done = blocksync(store, *path.split(), *LOCKING[path], "--wait", "--timeout", "0.2")
    assert done.returncode == 75, (done.stdout, done.stderr)
    assert "another run holds the run lock" in done.stderr and "(waited " in done.stderr


def waits_for(holder: Holder, store: Path, *args: str) -> Any:
    """Run ``blocksync ARGS --wait --json``, see it wait, release the lock: its JSON output."""
    waiting = popen(store, *args, "--wait", "--json")
    try:
        time.sleep(1.0)
        assert waiting.poll() is None, "it should still be waiting for the lock"
        holder.release()
    finally:
        out, err = finish(waiting)
    assert waiting.returncode == 0, err
    return json.loads(out)


def test_stream_pull_waits_and_proceeds_once_released(store: Path, holder: Holder) -> None:
    result = waits_for(holder, store, "stream", "pull", "echo", "--timeout", "120")
    assert result["stream"] == "echo" and result["returned"] == 5 and result["cursor"] == "5"


def test_the_library_pull_takes_the_lock_too(store: Path, holder: Holder) -> None:
    import blocksync as lib

    with lib.open(store) as ws:
        with pytest.raises(lib.RunLockHeld, match="pass --wait"):
            ws.streams.pull("echo")
        assert ws.streams.get("echo").status().cursor is None  # nothing pulled
        holder.release()
        assert ws.streams.pull("echo", wait=True, timeout=30).cursor == "5"


def test_the_readme_shows_them_on_each_and_says_what_they_mean_once() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    rows = [line for line in readme.splitlines() if line.startswith("| `blocksync ")]
    for path in LOCKING:
        (row,) = [r for r in rows if r.startswith(f"| `blocksync {path} ")]
        assert "[--wait] [--timeout S]" in row, row
    assert readme.count("mean the same on every command that takes the run lock") == 1


def test_tool_run_of_the_resolve_tool_fails_at_once_or_waits(store: Path, tmp_path: Path) -> None:
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "a.md").write_text("first line\nsecond line\n", encoding="utf-8")
    add_source(store, "notes", notes)
    conflict = _open_conflict(store, notes)
    args = ["tool", "run", "blocksync_conflict_resolve", "--params"]
    params = json.dumps({"id": conflict, "take": "disk"})
    holder = Holder(store)
    try:
        done = blocksync(store, *args, params)
        assert done.returncode == 75, (done.stdout, done.stderr)
        assert "test holder" in done.stderr and "pass --wait" in done.stderr
        assert waits_for(holder, store, *args, params)["output"]["status"] == "resolved"
    finally:
        holder.close()
