"""Reconcile end to end: file sources from blocksync.toml, the conflict index, resolve and undo."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import blocksync
from blocksync.errors import (
    AlreadyResolved,
    CannotUndo,
    ConflictNotFound,
    NotFound,
    StaleResolution,
)

from .conftest import git


@pytest.fixture
def notes(tmp_path: Path) -> Path:
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "a.md").write_text("line1\nline2\nline3\n")
    (folder / "b.md").write_text("hello\n")
    return folder


@pytest.fixture
def store(store_path: Path, notes: Path) -> Path:
    with (store_path / "blocksync.toml").open("a") as f:
        f.write(
            f'\n[agents.alice.data_sources.notes]\ntype = "file"\npaths = ["{notes}"]\n'
            'permission_rules = [{ pattern = "**", permission = "admin" }]\n'
        )
    return store_path


@pytest.fixture
def ws(store: Path) -> Iterator[blocksync.Workspace]:
    with blocksync.open(store, author="human:test") as workspace:
        yield workspace
        assert workspace.fsck().ok


def label(ws: blocksync.Workspace, name: str) -> str:
    (found,) = [b.label for b in ws.blocks.list("alice") if b.label.endswith(name)]
    return found


def conflict_on_a(ws: blocksync.Workspace, notes: Path) -> str:
    ws.reconcile()
    (notes / "a.md").write_text("line1 disk\nline2\nline3\n")
    ws.blocks.update("alice", label(ws, "a.md"), "line1 agent\nline2\nline3\n")
    report = ws.reconcile()
    assert report.sources[0].needs_resolution == ["a.md"] and report.exit_code == 3
    (open_,) = ws.conflicts.list()
    return open_.id


def test_new_files_become_blocks_and_a_second_run_changes_nothing(ws: blocksync.Workspace) -> None:
    first = ws.reconcile()
    assert sorted(p for p, _ in first.sources[0].resolved) == ["a.md", "b.md"]
    assert first.exit_code == 0
    head = ws.blocks.head()
    second = ws.reconcile()
    assert second.sources[0].unchanged == 2 and not second.sources[0].resolved
    assert ws.blocks.head() == head


def test_dry_run_writes_nothing(ws: blocksync.Workspace, notes: Path) -> None:
    report = ws.reconcile(dry_run=True)
    assert report.dry_run and len(report.sources[0].resolved) == 2
    assert ws.blocks.list() == [] and ws.blocks.head() is None


def test_disjoint_edits_merge_into_both_sides(ws: blocksync.Workspace, notes: Path) -> None:
    ws.reconcile()
    (notes / "a.md").write_text("line1 disk\nline2\nline3\n")
    ws.blocks.update("alice", label(ws, "a.md"), "line1\nline2\nline3 agent\n")
    report = ws.reconcile()
    assert report.sources[0].resolved == [("a.md", "merged")]
    merged = "line1 disk\nline2\nline3 agent\n"
    assert (notes / "a.md").read_text() == merged
    assert ws.blocks.read("alice", label(ws, "a.md")).content == merged


def test_conflict_recorded_once_then_resolved_and_undone(
    ws: blocksync.Workspace, notes: Path
) -> None:
    cid = conflict_on_a(ws, notes)
    assert ws.reconcile().exit_code == 3
    assert [c.id for c in ws.conflicts.list()] == [cid]  # a re-run finds the same row
    c = ws.conflicts.get(cid)
    assert (c.base, c.disk, c.agent) == (
        "line1\nline2\nline3\n",
        "line1 disk\nline2\nline3\n",
        "line1 agent\nline2\nline3\n",
    )
    done = ws.conflicts.resolve(cid, take="disk", resolver="agent:alice")
    assert done.status == "resolved" and done.resolution == "disk"
    assert ws.blocks.read("alice", c.label).content == c.disk
    log = git(ws.repo_path, "log", "-1", "--format=%s%n%an", "main")
    assert cid in log and "agent:alice" in log  # the commit names the conflict and resolver
    assert ws.reconcile().exit_code == 0
    with pytest.raises(AlreadyResolved):
        ws.conflicts.resolve(cid, take="agent")
    ws.conflicts.undo(cid)
    assert (notes / "a.md").read_text() == c.disk
    assert ws.blocks.read("alice", c.label).content == c.agent
    assert ws.conflicts.get(cid).status == "open"
    with pytest.raises(CannotUndo):
        ws.conflicts.undo(cid)


def test_manual_content_resolution(ws: blocksync.Workspace, notes: Path) -> None:
    cid = conflict_on_a(ws, notes)
    ws.conflicts.resolve(cid, content="both\n")
    assert (notes / "a.md").read_text() == "both\n"
    assert ws.conflicts.get(cid).resolution == "manual"


def test_a_decided_conflict_recurring_as_it_was_is_held_not_raised(
    ws: blocksync.Workspace, notes: Path
) -> None:
    cid = conflict_on_a(ws, notes)
    ws.conflicts.resolve(cid, content="both\n")
    # both sides go back to exactly what they held when the conflict was decided
    (notes / "a.md").write_text("line1 disk\nline2\nline3\n")
    ws.blocks.update("alice", label(ws, "a.md"), "line1 agent\nline2\nline3\n")
    report = ws.reconcile()
    (source,) = report.sources
    assert source.held == [("a.md", cid)] and source.needs_resolution == []
    assert report.open_conflicts == 0 and report.exit_code == 0
    assert report.to_json()["sources"][0]["held"] == [{"path": "a.md", "conflict": cid}]
    # either side moving on makes it a new conflict again
    (notes / "a.md").write_text("line1 disk, later\nline2\nline3\n")
    assert ws.reconcile().sources[0].needs_resolution == ["a.md"]


def test_stale_resolution_is_refused_and_changes_nothing(
    ws: blocksync.Workspace, notes: Path
) -> None:
    cid = conflict_on_a(ws, notes)
    (notes / "a.md").write_text("moved again\n")
    head = ws.blocks.head()
    with pytest.raises(StaleResolution, match="disk changed"):
        ws.conflicts.resolve(cid, take="agent")
    assert (notes / "a.md").read_text() == "moved again\n" and ws.blocks.head() == head


def test_overlapping_merge_needs_content(ws: blocksync.Workspace, notes: Path) -> None:
    cid = conflict_on_a(ws, notes)
    with pytest.raises(blocksync.UsageError, match="overlap"):
        ws.conflicts.resolve(cid, take="merged")


def test_unknown_source_and_conflict(ws: blocksync.Workspace) -> None:
    with pytest.raises(NotFound, match="no data source named 'nope'"):
        ws.reconcile(["nope"])
    with pytest.raises(ConflictNotFound):
        ws.conflicts.get("c-0000000000")


def test_missing_root_fails_that_source_only(ws: blocksync.Workspace, notes: Path) -> None:
    ws.reconcile()
    for f in notes.iterdir():
        f.unlink()
    notes.rmdir()
    report = ws.reconcile()
    assert report.exit_code == 1 and "missing" in (report.sources[0].error or "")
    assert len(ws.blocks.list("alice")) == 2  # nothing deleted


def test_mass_deletion_guard(ws: blocksync.Workspace, notes: Path) -> None:
    for i in range(8):
        (notes / f"n{i}.md").write_text(f"{i}\n")
    ws.reconcile()
    for i in range(8):
        (notes / f"n{i}.md").unlink()
    report = ws.reconcile()
    assert report.exit_code == 1 and "refusing" in (report.sources[0].error or "")
    assert len(ws.blocks.list("alice")) == 10


def test_a_missing_folder_fails_the_source_even_before_its_first_sync(
    ws: blocksync.Workspace, notes: Path
) -> None:
    for f in notes.iterdir():
        f.unlink()
    notes.rmdir()
    report = ws.reconcile()
    assert report.exit_code == 1 and "missing or unreadable" in (report.sources[0].error or "")
