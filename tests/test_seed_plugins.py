"""A plugin written against the seed's functions alone (issue 15, item 2): fixtures/plugins/
seed_only keeps its own bases, never calls ``sync``, and returns ``needs-resolution(path, disk,
agent)`` without ``sync.report-conflict``. The host binds its paths by seed means (the label
namespace, or the ``BlockRef`` its ``load`` returns, with what ``load`` writes held back),
records bases and conflicts for it, and carries resolutions to its source through ``save`` /
``delete``. Real wasmtime, git (checked with the git CLI), SQLite."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import blocksync

from .conftest import assert_git_fsck
from .plugin_builds import built_plugin
from .stores import base_of, make_store

OWNER = "alice"
KEY = "seed"


@pytest.fixture(scope="module")
def wasm() -> Path:
    return built_plugin("seed_only")


class Rig:
    def __init__(self, tmp: Path, wasm: Path, **table: Any) -> None:
        self.root = tmp / "notes"
        self.root.mkdir()
        table.update(path=wasm, dir=self.root, dir_mode="read-write")
        table["config"] = {"owner": OWNER, "permission": "admin"}
        self.store = make_store(tmp / "store", {KEY: table})
        self.ws = blocksync.open(self.store, author="human:test")

    def write(self, path: str, text: str) -> None:
        (self.root / path).write_text(text, encoding="utf-8")

    def read(self, path: str) -> str | None:
        file = self.root / path
        return file.read_text(encoding="utf-8") if file.exists() else None

    def block(self, path: str) -> str | None:
        if not self.ws.blocks.exists(OWNER, "note:" + path):
            return None
        return self.ws.blocks.read(OWNER, "note:" + path).content

    def base(self, path: str) -> str | None:
        return base_of(self.ws, KEY, path)

    def close(self) -> None:
        assert self.ws.fsck().ok
        self.ws.close()
        assert_git_fsck(self.store / "repo")


@pytest.fixture(params=["load", "namespace"])
def rig(request: pytest.FixtureRequest, tmp_path: Path, wasm: Path) -> Iterator[Rig]:
    """Bound through what ``load`` returns, or through the table's label namespace."""
    table = {"label_namespace": "note:"} if request.param == "namespace" else {}
    rig = Rig(tmp_path, wasm, **table)
    yield rig
    rig.close()


def test_the_host_records_bases_for_a_plugin_that_keeps_its_own(rig: Rig) -> None:
    rig.write("a.md", "one\n")
    report = rig.ws.reconcile().sources[0]
    assert report.error is None and report.resolved == [("a.md", "disk->agent")]
    assert (rig.block("a.md"), rig.base("a.md")) == ("one\n", "one\n")
    rig.ws.blocks.update(OWNER, "note:a.md", "agent\n")
    assert rig.ws.reconcile().sources[0].resolved == [("a.md", "agent->disk")]
    assert (rig.read("a.md"), rig.base("a.md")) == ("agent\n", "agent\n")
    (rig.root / "a.md").unlink()
    assert rig.ws.reconcile().sources[0].resolved == [("a.md", "delete-block")]
    assert (rig.block("a.md"), rig.base("a.md")) == (None, None)


def test_an_unbound_conflict_is_recorded_and_load_clobbers_nothing(rig: Rig) -> None:
    rig.ws.blocks.create(OWNER, "note:b.md", "the agent's\n")
    rig.write("b.md", "the disk's\n")
    report = rig.ws.reconcile().sources[0]
    assert report.error is None and report.needs_resolution == ["b.md"], report.skipped
    (conflict,) = rig.ws.conflicts.list()
    assert (conflict.owner, conflict.label) == (OWNER, "note:b.md")
    assert (conflict.disk, conflict.agent, conflict.base) == ("the disk's\n", "the agent's\n", None)
    assert rig.block("b.md") == "the agent's\n"  # load's write was held back
    again = rig.ws.reconcile()  # the same conflict, not a new one
    assert [c.id for c in rig.ws.conflicts.list()] == [conflict.id] and again.open_conflicts == 1


@pytest.mark.parametrize("take", ["agent", "disk", "merged"])
def test_resolutions_reach_the_source_through_save(rig: Rig, take: str) -> None:
    rig.ws.blocks.create(OWNER, "note:b.md", "the agent's\n")
    rig.write("b.md", "the disk's\n")
    rig.ws.reconcile()
    (conflict,) = rig.ws.conflicts.list()
    if take == "merged":
        chosen = "by hand\n"
        done = rig.ws.conflicts.resolve(conflict.id, take="merged", content=chosen)
    else:
        chosen = conflict.agent if take == "agent" else conflict.disk
        done = rig.ws.conflicts.resolve(conflict.id, take=take)  # type: ignore[arg-type]
    assert done.status == "resolved"
    assert (rig.read("b.md"), rig.block("b.md"), rig.base("b.md")) == (chosen,) * 3
    after = rig.ws.reconcile()
    assert after.open_conflicts == 0 and not after.sources[0].needs_resolution


def test_a_deletion_resolution_goes_through_delete(rig: Rig) -> None:
    rig.write("c.md", "one\n")
    rig.ws.reconcile()
    (rig.root / "c.md").unlink()
    rig.ws.blocks.update(OWNER, "note:c.md", "edited\n")
    assert rig.ws.reconcile().sources[0].needs_resolution == ["c.md"]
    (conflict,) = rig.ws.conflicts.list()
    assert conflict.base == "one\n" and conflict.agent == "edited\n"
    rig.ws.conflicts.resolve(conflict.id, take="agent")
    assert (rig.read("c.md"), rig.base("c.md")) == ("edited\n", "edited\n")


def test_an_undo_in_a_new_process_reaches_the_source_through_save(rig: Rig) -> None:
    # the route is the plugin's kind (it never calls sync), not this process's memory
    rig.ws.blocks.create(OWNER, "note:b.md", "the agent's\n")
    rig.write("b.md", "the disk's\n")
    rig.ws.reconcile()
    (conflict,) = rig.ws.conflicts.list()
    rig.ws.conflicts.resolve(conflict.id, take="agent")
    assert rig.read("b.md") == "the agent's\n"
    rig.ws.close()
    rig.ws = blocksync.open(rig.store, author="human:test")
    undone = rig.ws.conflicts.undo(conflict.id)
    assert undone.status == "open"
    assert (rig.read("b.md"), rig.block("b.md")) == ("the disk's\n", "the agent's\n")


def test_a_dry_run_changes_nothing_a_later_run_decides_from(rig: Rig) -> None:
    # the seed has no dry run: a plugin keeping its own bases must not be told to reconcile
    # in one, or the bases it moved would turn the disk's edit into the agent's to overwrite
    rig.write("a.md", "one\n")
    rig.ws.reconcile()
    rig.write("a.md", "two\n")
    dry = rig.ws.reconcile(dry_run=True).sources[0]
    assert dry.error is not None and "it has no dry run" in dry.error
    assert (rig.read("a.md"), rig.block("a.md")) == ("two\n", "one\n")
    assert rig.ws.reconcile().sources[0].resolved == [("a.md", "disk->agent")]
    assert (rig.read("a.md"), rig.block("a.md")) == ("two\n", "two\n")


def test_a_failing_namespace_call_keeps_what_the_first_call_moved(
    tmp_path: Path, wasm: Path
) -> None:
    # unpaged, the namespace's new paths get a reconcile call of their own after the plugin's
    # own run; the plugin moved its own bases in that first call, so its block writes must be
    # kept whatever the second call does, or the next run takes the disk's edit for the old
    # side and overwrites it with the block
    rig = Rig(tmp_path, wasm, label_namespace="note:")
    rig.write("a.md", "one\n")
    rig.ws.reconcile()
    rig.write("a.md", "two\n")
    # a path the plugin cannot write (a.md is a file, not a folder): its call fails
    rig.ws.blocks.create(OWNER, "note:a.md/b.md", "agent\n")
    report = rig.ws.reconcile().sources[0]
    assert report.error is not None and "a.md/b.md" in report.error
    assert (rig.read("a.md"), rig.block("a.md"), rig.base("a.md")) == ("two\n",) * 3
    rig.ws.blocks.delete(OWNER, "note:a.md/b.md")
    assert rig.ws.reconcile().sources[0].error is None
    assert (rig.read("a.md"), rig.block("a.md")) == ("two\n", "two\n")
    rig.close()


def test_a_deleted_side_is_recorded_as_deleted_and_taking_it_converges(rig: Rig) -> None:
    # the seed's needs-resolution gives the source's side as text, "" for a deleted path too:
    # taken as an empty file, taking that side left an empty block, and the plugin (its own
    # base untouched) found the same conflict again on every run
    rig.write("c.md", "one\n")
    rig.ws.reconcile()
    (rig.root / "c.md").unlink()
    rig.ws.blocks.update(OWNER, "note:c.md", "edited\n")
    rig.ws.blocks.create(OWNER, "note:empty.md", "the agent's\n")
    rig.write("empty.md", "")  # an empty file is there: its side stays ""
    assert sorted(rig.ws.reconcile().sources[0].needs_resolution) == ["c.md", "empty.md"]
    found = {c.path: c for c in rig.ws.conflicts.list()}
    assert found["empty.md"].disk == ""
    conflict = found["c.md"]
    assert (conflict.disk, conflict.agent, conflict.base) == (None, "edited\n", "one\n")
    rig.ws.conflicts.resolve(conflict.id, take="disk")
    assert (rig.read("c.md"), rig.block("c.md"), rig.base("c.md")) == (None, None, None)
    after = rig.ws.reconcile()
    assert after.open_conflicts == 1 and after.sources[0].needs_resolution == ["empty.md"]
    assert (rig.read("c.md"), rig.block("c.md")) == (None, None)


def test_a_refused_mass_deletion_keeps_the_edits_the_plugin_made_in_that_call(rig: Rig) -> None:
    # the plugin moved its own bases in the refused call: the host keeps what it wrote but
    # the block deletions, or the next run would take the disk's edit for the old side
    names = [f"n{i:02}.md" for i in range(12)]
    for name in [*names, "keep.md"]:
        rig.write(name, f"{name}\n")
    rig.ws.reconcile()
    for name in names:
        (rig.root / name).unlink()
    rig.write("keep.md", "edited on disk\n")
    refused = rig.ws.reconcile().sources[0]
    assert refused.error is not None and "mass" in refused.error.lower(), refused.error
    assert all(rig.block(name) == f"{name}\n" for name in names)  # no block deleted
    assert rig.block("keep.md") == "edited on disk\n"
    again = rig.ws.reconcile().sources[0]
    assert again.error is None, again.error
    assert (rig.read("keep.md"), rig.block("keep.md")) == ("edited on disk\n",) * 2
    # the refused deletions are undone at the source: the kept blocks come back as files
    assert all(rig.read(name) == rig.block(name) == f"{name}\n" for name in names)
    assert rig.ws.reconcile().sources[0].resolved == []  # settled
