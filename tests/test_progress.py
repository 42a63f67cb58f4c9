"""The progress protocol (blocksync.shared.progress): what the library reports, to whom.

A recording :class:`Progress` stands in for a display: each phase of a run opens its task with
a description naming what it works on, and a loop's task is advanced once per item.
"""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import blocksync
from blocksync.plugins import inspect_file
from blocksync.shared import progress
from blocksync.shared.progress import SILENT, counted, reporting, size_text

from .plugin_builds import wat_fixture


@dataclass
class Recorded:
    description: str
    total: int | None
    done: int = 0
    finished: bool = False

    def advance(self, steps: int = 1) -> None:
        self.done += steps


class Recorder:
    def __init__(self) -> None:
        self.tasks: list[Recorded] = []

    @contextmanager
    def task(self, description: str, total: int | None = None) -> Iterator[Recorded]:
        task = Recorded(description, total)
        self.tasks.append(task)
        try:
            yield task
        finally:
            task.finished = True

    def named(self, start: str) -> list[Recorded]:
        return [t for t in self.tasks if t.description.startswith(start)]


def test_silent_unless_a_caller_chooses() -> None:
    assert progress.current() is SILENT
    recorder = Recorder()
    with reporting(recorder):
        assert progress.current() is recorder
        seen = threading.Thread(target=lambda: results.append(progress.current()))
        results: list[object] = []
        seen.start()
        seen.join()
        assert results == [SILENT]  # another thread reports nothing unless given it
    assert progress.current() is SILENT


def test_counted_advances_once_per_item_and_finishes_on_break() -> None:
    recorder = Recorder()
    with reporting(recorder):
        assert list(counted(["a", "b", "c"], "three")) == ["a", "b", "c"]
        for item in counted(["x", "y"], "stopped early"):
            if item == "x":
                break
    whole, stopped = recorder.tasks
    assert (whole.description, whole.total, whole.done, whole.finished) == ("three", 3, 3, True)
    assert (stopped.total, stopped.done, stopped.finished) == (2, 0, True)


def test_a_folder_reconcile_reports_each_phase(store_path: Path, tmp_path: Path) -> None:
    folder = tmp_path / "notes"
    folder.mkdir()
    for i in range(5):
        (folder / f"{i}.md").write_text(f"note {i}\n", encoding="utf-8")
    with open(store_path / "blocksync.toml", "a", encoding="utf-8") as f:
        f.write(f'\n[agents.alice.data_sources.notes]\ntype = "file"\npaths = ["{folder}"]\n')
    recorder = Recorder()
    with blocksync.open(store_path) as ws, reporting(recorder):
        report = ws.reconcile()
    assert len(report.sources[0].resolved) == 5
    assert [t.description for t in recorder.named("reconciling")] == ["reconciling notes (1/1)"]
    assert recorder.named("listing notes")
    (hashing,) = recorder.named("hashing notes")
    assert hashing.total == hashing.done == 5
    assert [t.description for t in recorder.named("writing")] == ["writing 5 changes of notes"]
    assert all(t.finished for t in recorder.tasks)


def test_compiling_names_the_file_and_its_size_first_use_only(tmp_path: Path) -> None:
    component = wat_fixture("no_interfaces", tmp_path)
    recorder = Recorder()
    with reporting(recorder):
        inspect_file(component, tmp_path / "cache")  # a cache of its own: nothing compiled yet
        inspect_file(component, tmp_path / "cache")  # loaded in this process already
    size = size_text(component.stat().st_size)
    assert [t.description for t in recorder.tasks] == [
        f"compiling no_interfaces.wasm ({size}), first use only"
    ]


def test_sizes_read_as_people_read_them() -> None:
    assert size_text(40) == "40 bytes"
    assert size_text(18_612_345) == "18.6 MB"
    assert size_text(1_000) == "1.0 KB"
    assert size_text(2_500_000_000) == "2.5 GB"


def test_pushing_and_pulling_report_their_remote(tmp_path: Path) -> None:
    hub = tmp_path / "hub.git"
    subprocess.run(["git", "init", "-q", "--bare", str(hub)], check=True)
    recorder = Recorder()
    with blocksync.init(tmp_path / "a") as a, blocksync.init(tmp_path / "b") as b:
        a.add_remote("hub", str(hub))
        b.add_remote("hub", str(hub))
        a.blocks.create("alice", "notes", "hello\n")
        with reporting(recorder):
            a.push("hub")
            b.pull("hub")
        assert b.blocks.read("alice", "notes").content == "hello\n"
    assert recorder.named("pushing to hub") and recorder.named("fetching from hub")
    assert all(t.finished for t in recorder.tasks)
