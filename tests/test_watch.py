"""`blocksync watch`: live sync of the file sources, as a user runs it.

A real store with a folder source in tmp_path, the installed `blocksync watch --json` in a
subprocess, real files edited and real blocks written from this process; what the watch did is
read back through the library, polled with a generous deadline (never a wall-clock assertion).
The run lock is held by this process (a real flock) while the watch, another process, waits.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import blocksync
from blocksync.errors import UsageError
from blocksync.sync import runlock
from blocksync.watch import Event, Notice, Round, watch

from .plugin_builds import built_plugins
from .stores import make_store
from .test_sync import BLOCKSYNC, ENV, add_source

#: how long anything the watch should do may take on a busy machine before the test fails
PATIENCE = 60.0


def eventually(check: Callable[[], Any], what: str) -> Any:
    """The first truthy value of ``check()``, asked again until PATIENCE runs out."""
    deadline = time.monotonic() + PATIENCE
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.05)


def content(store: Path, label: str) -> str | None:
    with blocksync.open(store) as ws:
        found = {b.label: b for b in ws.blocks.list("alice")}
        return None if label not in found else ws.blocks.read("alice", label).content


def label_of(store: Path, name: str) -> str | None:
    with blocksync.open(store) as ws:
        return next(
            (b.label for b in ws.blocks.list("alice") if b.label.endswith(":" + name)), None
        )


class Watch:
    """`blocksync watch` in a subprocess; its JSON lines collected as they come."""

    def __init__(self, store: Path, *args: str) -> None:
        self.proc = subprocess.Popen(
            [BLOCKSYNC, "--store", str(store), "watch", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=ENV,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        if "--json" in args:
            self.wait_for("watching")

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in list(self.lines)]

    def wait_for(self, event: str, since: int = 0) -> dict[str, Any]:
        def seen() -> dict[str, Any] | None:
            assert self.proc.poll() is None, self.proc.communicate()
            return next((e for e in self.events()[since:] if e["event"] == event), None)

        found: dict[str, Any] = eventually(seen, f"a {event!r} line")
        return found

    def stop(self, sig: int = signal.SIGINT) -> tuple[int, str]:
        self.proc.send_signal(sig)
        self._reader.join(PATIENCE)  # standard output ends with the process: every line read
        assert self.proc.stderr is not None
        err = self.proc.stderr.read()
        return self.proc.wait(PATIENCE), err

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()


@pytest.fixture
def store(tmp_path: Path) -> Path:
    root = tmp_path / "store"
    blocksync.init(root, author="test:setup").close()
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "a.md").write_text("one\n", encoding="utf-8")
    add_source(root, "notes", notes)
    return root


@pytest.fixture
def watching(store: Path) -> Iterator[Watch]:
    w = Watch(store, "--json")
    try:
        w.wait_for("round")  # the first round: the folder as it was when the watch started
        yield w
    finally:
        w.close()


def test_file_edits_reach_their_blocks_and_block_edits_their_files(
    store: Path, watching: Watch
) -> None:
    notes = store.parent / "notes"
    label = eventually(lambda: label_of(store, "a.md"), "a block for a.md")
    assert content(store, label) == "one\n"

    (notes / "a.md").write_text("two\n", encoding="utf-8")
    eventually(lambda: content(store, label) == "two\n", "the edit in the block")
    (notes / "sub").mkdir()
    (notes / "sub" / "new.md").write_text("new\n", encoding="utf-8")
    eventually(lambda: label_of(store, "sub/new.md"), "a block for a new file in a new folder")

    with blocksync.open(store, author="agent:alice") as ws:
        ws.blocks.update("alice", label, "three, from the agent\n")
    eventually(
        lambda: (notes / "a.md").read_text(encoding="utf-8") == "three, from the agent\n",
        "the block edit in the file",
    )
    code, err = watching.stop()
    assert code == 0, err
    assert "Traceback" not in err
    events = watching.events()
    assert all(e["format"] == 1 for e in events)
    rounds = [e for e in events if e["event"] == "round"]
    assert [r["round"] for r in rounds] == list(range(1, len(rounds) + 1))
    resolved = [(x["path"], x["resolution"]) for r in rounds for x in r["sources"][0]["resolved"]]
    assert ("a.md", "disk->agent") in resolved
    assert ("a.md", "agent->disk") in resolved
    assert any(r["changed"]["blocks"] for r in rounds)
    assert all(r["summary"]["failed_sources"] == 0 and r["errors"] == [] for r in rounds)
    assert events[-1]["event"] == "stopped"


def test_a_vanished_folder_is_waited_for(store: Path, watching: Watch) -> None:
    notes = store.parent / "notes"
    shutil.rmtree(notes)
    missing = watching.wait_for("folder-missing")
    assert missing["source"] == "notes" and missing["folder"] == str(notes)
    notes.mkdir()
    (notes / "b.md").write_text("back\n", encoding="utf-8")
    watching.wait_for("folder-back")
    label = eventually(lambda: label_of(store, "b.md"), "a block for the file of the new folder")
    assert content(store, label) == "back\n"
    (notes / "b.md").write_text("edited after\n", encoding="utf-8")
    eventually(lambda: content(store, label) == "edited after\n", "an edit, watched again")
    code, err = watching.stop(signal.SIGTERM)
    assert code == 0, err
    missing_lines = [e for e in watching.events() if e["event"] == "folder-missing"]
    assert len(missing_lines) == 1  # said once, not once a look
    rounds = [e for e in watching.events() if e["event"] == "round"]
    assert all(not r["errors"] for r in rounds)  # the missing folder was never reconciled


def test_a_held_run_lock_is_waited_for(store: Path, watching: Watch) -> None:
    notes = store.parent / "notes"
    label = eventually(lambda: label_of(store, "a.md"), "a block for a.md")
    before = len(watching.events())
    with runlock.acquire(store / runlock.LOCK_FILE, info={"command": "test holder"}):
        (notes / "a.md").write_text("while locked\n", encoding="utf-8")
        held = watching.wait_for("lock-held", since=before)
        assert "test holder" in held["message"]
        assert content(store, label) == "one\n"  # nothing written without the lock
    eventually(lambda: content(store, label) == "while locked\n", "the edit once the lock is free")
    code, err = watching.stop()
    assert code == 0, err
    assert watching.proc.poll() == 0


def test_only_rounds_that_change_something_are_reported(store: Path, watching: Watch) -> None:
    """Echoes of the watch's own writes, an editor's temporary file and a file left alone
    (not UTF-8) make rounds too, but quiet ones: every line says what changed."""
    notes = store.parent / "notes"
    (notes / "image.bin").write_bytes(b"\xff\xfe not text")
    (notes / ".a.md.swp").write_bytes(b"editor state")
    (notes / ".a.md.swp").unlink()
    label = eventually(lambda: label_of(store, "a.md"), "a block for a.md")
    with blocksync.open(store, author="agent:alice") as ws:
        ws.blocks.update("alice", label, "from the agent\n")
    eventually(
        lambda: (notes / "a.md").read_text(encoding="utf-8") == "from the agent\n", "the file"
    )
    (notes / "a.md").write_text("and back\n", encoding="utf-8")
    eventually(lambda: content(store, label) == "and back\n", "the block")
    code, err = watching.stop()
    assert code == 0, err
    rounds = [e for e in watching.events() if e["event"] == "round"]
    assert len(rounds) >= 3  # the first, agent -> disk, disk -> agent
    for r in rounds:
        assert r["summary"]["resolved"] or r["summary"]["needs_resolution"] or r["errors"], r
    assert not any(label_of(store, name) for name in ("image.bin", ".a.md.swp"))


def test_text_mode_prints_a_line_per_round(store: Path) -> None:
    w = Watch(store)
    try:
        eventually(lambda: any(line.startswith("round 1 ") for line in w.lines), "round 1")
        code, err = w.stop()
    finally:
        w.close()
    assert code == 0 and "Traceback" not in err
    assert w.lines[0].startswith("watching 1 source(s)")
    assert "notes: a.md (disk->agent); 0 open conflict(s)" in w.lines[1]


def _run(store: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [BLOCKSYNC, "--store", str(store), "watch", *args],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=PATIENCE,
        check=False,
    )


def test_bad_input_is_refused(tmp_path: Path) -> None:
    bare = tmp_path / "bare"
    blocksync.init(bare).close()
    done = _run(bare)
    assert done.returncode == 2, done
    assert "no source to watch" in done.stderr and "Traceback" not in done.stderr
    done = _run(tmp_path / "nowhere")
    assert done.returncode != 0 and done.stderr.startswith("error:"), done
    done = _run(bare, "--debounce", "0")
    assert done.returncode == 2 and "--debounce" in done.stderr


def test_the_library_watch_stops_on_its_event(store: Path) -> None:
    """From Python (an agent's process): a thread watches until the event is set."""
    events: list[Event] = []
    stop = threading.Event()
    with blocksync.open(store) as ws:
        thread = threading.Thread(target=watch, args=(ws, events.append), kwargs={"stop": stop})
        thread.start()
        try:
            eventually(lambda: any(isinstance(e, Round) for e in events), "the first round")
            (store.parent / "notes" / "a.md").write_text("from a thread\n", encoding="utf-8")
            label = eventually(lambda: label_of(store, "a.md"), "a block for a.md")
            eventually(lambda: content(store, label) == "from a thread\n", "the edit")
        finally:
            stop.set()
            thread.join(PATIENCE)
    assert not thread.is_alive()
    last = events[-1]
    assert isinstance(last, Notice) and last.event == "stopped"


def test_a_plugin_granted_a_folder_is_watched(tmp_path: Path) -> None:
    """The `files` plugin (a real component) reads its `dir`: an edit there reconciles it,
    and so does an agent's edit of a block bound to it."""
    folder = tmp_path / "plugin-notes"
    folder.mkdir()
    (folder / "a.md").write_text("one\n", encoding="utf-8")
    table = {
        "path": built_plugins(["files"])["files"],
        "dir": str(folder),
        "dir_mode": "read-write",
        "config": {"owner": "alice", "tag": "pnotes", "permission": "admin"},
    }
    store = make_store(tmp_path / "store", {"pnotes": table})
    w = Watch(store, "--json")
    try:
        label = eventually(lambda: label_of(store, "a.md"), "the plugin's block for a.md")
        assert label == "file:pnotes:a.md" and content(store, label) == "one\n"
        (folder / "a.md").write_text("two\n", encoding="utf-8")
        eventually(lambda: content(store, label) == "two\n", "the edit in the block")
        with blocksync.open(store, author="agent:alice") as ws:
            ws.blocks.update("alice", label, "three\n")
        eventually(lambda: (folder / "a.md").read_text(encoding="utf-8") == "three\n", "the file")
        code, err = w.stop()
    finally:
        w.close()
    assert code == 0, err
    rounds = [e for e in w.events() if e["event"] == "round"]
    assert all(not r["errors"] for r in rounds)


def test_a_refused_watcher_falls_back_to_polling(store: Path) -> None:
    """inotify's watch limit or a folder the system refuses to watch cannot be brought about
    here (the tests run as root, and the limit is the whole machine's): the first watcher is
    replaced by one that raises as watchfiles does then. The fallback that follows is real:
    watchfiles' polling, which sees the next edit."""
    from blocksync import watch as watch_mod
    from blocksync.watch.folders import Changes, Folders

    class Refused(Folders):
        def _watch(self, roots: list[Path]) -> Changes:
            if self._polling:
                return super()._watch(roots)
            return refused()

    def refused() -> Changes:
        raise OSError("OS file watch limit reached")  # at the first next(), as watchfiles does
        yield set()

    events: list[Event] = []
    stop = threading.Event()
    watch_mod.Folders = Refused  # type: ignore[misc]
    try:
        with blocksync.open(store) as ws:
            thread = threading.Thread(target=watch, args=(ws, events.append), kwargs={"stop": stop})
            thread.start()
            try:
                eventually(
                    lambda: any(getattr(e, "event", "") == "watch-failed" for e in events),
                    "a watch-failed notice",
                )
                label = eventually(lambda: label_of(store, "a.md"), "a block for a.md")
                (store.parent / "notes" / "a.md").write_text("polled\n", encoding="utf-8")
                eventually(lambda: content(store, label) == "polled\n", "the edit, polled")
            finally:
                stop.set()
                thread.join(PATIENCE)
    finally:
        watch_mod.Folders = Folders  # type: ignore[misc]
    failed = [e for e in events if isinstance(e, Notice) and e.event == "watch-failed"]
    assert len(failed) == 1 and "watch limit" in failed[0].message


@pytest.mark.parametrize(
    "bad",
    [{"plugin_poll": 0.5}, {"plugin_poll": float("nan")}, {"debounce": 0}, {"poll": float("inf")}],
)
def test_the_library_refuses_bad_intervals(store: Path, bad: dict[str, float]) -> None:
    """What the CLI's option types refuse, ``watch()`` refuses too: an agent's process calls it."""
    with blocksync.open(store) as ws, pytest.raises(UsageError, match=next(iter(bad))):
        watch(ws, lambda event: None, **bad)  # type: ignore[arg-type]
