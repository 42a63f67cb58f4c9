"""The conflict index on a real SQLite file: re-runs, supersession, closing, resolution, undo."""

from __future__ import annotations

import multiprocessing
import re
import sqlite3
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from blocksync.errors import (
    AlreadyResolved,
    AmbiguousConflictId,
    CannotUndo,
    ConcurrencyError,
    ConcurrentUpdate,
    ConflictNotFound,
    ConflictNotOpen,
    IndexCorrupt,
    InvalidContent,
    NotFound,
    StaleResolution,
    UsageError,
)
from blocksync.index import db as index_db
from blocksync.index.conflicts import (
    Conflict,
    ConflictIndex,
    conflict_id,
    is_current,
    require_current,
    side_hash,
)

from .conftest import examples


@pytest.fixture
def index(tmp_path: Path) -> Iterator[ConflictIndex]:
    with ConflictIndex(tmp_path / "index.db") as idx:
        yield idx


def rec(
    index: ConflictIndex,
    path: str = "notes/a.md",
    *,
    base: str | None = "base\n",
    disk: str | None = "disk\n",
    agent: str | None = "agent\n",
    source: str = "files",
    run: str = "run-1",
) -> tuple[Conflict, bool]:
    return index.record(
        source=source,
        path=path,
        owner="agent-1",
        label=f"file:{path}",
        base=base,
        disk=disk,
        agent=agent,
        reason="both sides changed the same lines",
        run_id=run,
    )


# -- record -------------------------------------------------------------------------------


def test_a_new_conflict_is_an_open_row_with_every_column(index: ConflictIndex) -> None:
    row, new = rec(index)
    assert new
    assert re.fullmatch(r"c-[0-9a-f]{10}", row.id)
    assert (row.source, row.path, row.owner, row.label) == (
        "files",
        "notes/a.md",
        "agent-1",
        "file:notes/a.md",
    )
    assert (row.base, row.disk, row.agent) == ("base\n", "disk\n", "agent\n")
    assert row.disk_hash == side_hash("disk\n")
    assert row.status == "open" and row.closed_by is None and row.resolution is None
    assert row.detected_run == "run-1" and row.detected_at == row.updated_at
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", row.detected_at)
    assert index.get(row.id) == row


def test_recording_the_same_conflict_again_returns_the_same_row_unchanged(
    index: ConflictIndex,
) -> None:
    first, new = rec(index, run="run-1")
    again, new_again = rec(index, run="run-2")
    assert new and not new_again
    assert again == first  # not even updated_at or detected_run moved
    assert len(index.list("all")) == 1


def test_ids_are_stable_across_index_files(tmp_path: Path) -> None:
    """An index rebuilt from scratch gives a re-detected conflict the id it had before."""
    ids = []
    for name in ("one.db", "two.db"):
        with ConflictIndex(tmp_path / name) as idx:
            ids.append(rec(idx)[0].id)
    assert (
        ids[0]
        == ids[1]
        == conflict_id(
            "files", "notes/a.md", side_hash("disk\n"), side_hash("agent\n"), side_hash("base\n")
        )
    )


@pytest.mark.parametrize("moved", ["base", "disk", "agent"])
def test_a_side_that_moved_supersedes_the_open_row(index: ConflictIndex, moved: str) -> None:
    old, _ = rec(index)
    sides = {"base": "base\n", "disk": "disk\n", "agent": "agent\n", moved: "moved\n"}
    new_row, new = rec(index, run="run-2", **sides)
    assert new and new_row.id != old.id and new_row.status == "open"
    assert new_row.detected_run == "run-2"
    old_now = index.get(old.id)
    assert old_now.status == "superseded" and old_now.closed_by == "supersede"
    assert old_now.superseded_by == new_row.id
    assert old_now.updated_at >= old.updated_at and old_now.resolved_at is None
    assert index.open_count() == 1
    assert [c.id for c in index.list("superseded")] == [old.id]


def test_sides_coming_back_to_an_earlier_state_get_a_fresh_id(index: ConflictIndex) -> None:
    first, _ = rec(index, disk="one\n")
    rec(index, disk="two\n")
    back, new = rec(index, disk="one\n")
    assert new and back.id != first.id
    assert re.fullmatch(r"c-[0-9a-f]{10}", back.id)
    assert index.get(first.id).status == "superseded"
    assert len({c.id for c in index.list("all")}) == 3


def test_each_path_and_source_has_its_own_open_row(index: ConflictIndex) -> None:
    a, _ = rec(index, "a.md")
    b, _ = rec(index, "b.md")
    c, _ = rec(index, "a.md", source="other")
    assert len({a.id, b.id, c.id}) == 3
    assert index.open_count() == 3 and index.open_count("files") == 2


# -- close (reconcile found the path settled) ---------------------------------------------


def test_close_as_resolved_records_reconciles_account(index: ConflictIndex) -> None:
    row, _ = rec(index)
    closed = index.close(
        "files",
        "notes/a.md",
        status="resolved",
        resolution="merged",
        resolver="reconcile",
        result_version=7,
    )
    assert [c.id for c in closed] == [row.id]
    (done,) = closed
    assert (done.status, done.closed_by, done.resolution, done.resolved_by) == (
        "resolved",
        "reconcile",
        "merged",
        "reconcile",
    )
    assert done.result_version == 7 and done.resolved_at is not None
    assert index.open_count() == 0
    assert (
        index.close(
            "files",
            "notes/a.md",
            status="resolved",
            resolution="merged",
            resolver="reconcile",
            result_version=7,
        )
        == []
    )


def test_close_as_vanished(index: ConflictIndex) -> None:
    row, _ = rec(index)
    (gone,) = index.close(
        "files",
        "notes/a.md",
        status="vanished",
        resolution=None,
        resolver=None,
        result_version=None,
    )
    assert gone.id == row.id and gone.status == "vanished" and gone.resolution is None
    assert index.list() == [] and [c.id for c in index.list("vanished")] == [row.id]


def test_close_only_touches_its_own_path(index: ConflictIndex) -> None:
    rec(index, "a.md")
    rec(index, "b.md")
    index.close(
        "files", "a.md", status="vanished", resolution=None, resolver=None, result_version=None
    )
    assert [c.path for c in index.list()] == ["b.md"]


def test_close_refuses_other_statuses(index: ConflictIndex) -> None:
    with pytest.raises(UsageError):
        index.close(
            "files",
            "a.md",
            status="superseded",  # type: ignore[arg-type]
            resolution=None,
            resolver=None,
            result_version=None,
        )


# -- resolution and "not raised again" ----------------------------------------------------


def test_a_resolved_conflict_is_not_raised_again_while_the_sides_hold_what_they_did(
    index: ConflictIndex,
) -> None:
    row, _ = rec(index)
    done = index.mark_resolved(row.id, resolution="agent", resolver="agent-1", result_version=4)
    assert (
        done.status,
        done.closed_by,
        done.resolution,
        done.resolved_by,
        done.result_version,
    ) == ("resolved", "resolve", "agent", "agent-1", 4)
    again, new = rec(index, run="run-2")
    assert not new and again == done
    assert index.open_count() == 0 and len(index.list("all")) == 1


def test_it_is_raised_again_when_the_losing_side_changes(index: ConflictIndex) -> None:
    row, _ = rec(index)
    index.mark_resolved(row.id, resolution="agent", resolver="agent-1", result_version=4)
    fresh, new = rec(index, disk="edited again\n", run="run-2")
    assert new and fresh.status == "open" and fresh.id != row.id
    assert index.get(row.id).status == "resolved"  # the decision itself stays on record


def test_a_stale_open_row_gives_way_to_the_decision_it_came_back_to(index: ConflictIndex) -> None:
    row, _ = rec(index)
    index.mark_resolved(row.id, resolution="disk", resolver="human", result_version=2)
    moved, _ = rec(index, disk="elsewhere\n")
    back, new = rec(index)
    assert not new and back.id == row.id
    assert index.get(moved.id).superseded_by == row.id
    assert index.open_count() == 0


def test_only_the_newest_decision_of_a_path_counts(index: ConflictIndex) -> None:
    first, _ = rec(index)
    index.mark_resolved(first.id, resolution="agent", resolver="a", result_version=2)
    second, _ = rec(index, disk="second\n", agent="second too\n")
    index.mark_resolved(second.id, resolution="disk", resolver="a", result_version=3)
    back, new = rec(index)  # the sides of the first decision, which the second overrode
    assert new and back.id not in (first.id, second.id)


def test_rows_reconcile_closed_itself_are_not_decisions(index: ConflictIndex) -> None:
    row, _ = rec(index)
    index.close(
        "files",
        "notes/a.md",
        status="resolved",
        resolution="identical",
        resolver="reconcile",
        result_version=None,
    )
    again, new = rec(index)
    assert new and again.id != row.id and again.status == "open"


def test_mark_resolved_twice_is_a_clear_error(index: ConflictIndex) -> None:
    row, _ = rec(index)
    index.mark_resolved(row.id, resolution="merged", resolver="agent-1", result_version=3)
    with pytest.raises(AlreadyResolved) as info:
        index.mark_resolved(row.id, resolution="disk", resolver="agent-2", result_version=4)
    err = info.value
    assert isinstance(err, ConflictNotOpen) and isinstance(err, ConcurrencyError)
    assert err.exit_code == 5 and err.conflict_id == row.id and err.resolved_by == "agent-1"
    assert row.id in str(err) and "agent-1" in str(err) and "undo" in str(err)
    assert index.get(row.id).resolution == "merged"  # the first decision stands


def test_resolving_a_superseded_conflict_names_its_successor(index: ConflictIndex) -> None:
    old, _ = rec(index)
    new_row, _ = rec(index, agent="newer\n")
    with pytest.raises(ConflictNotOpen) as info:
        index.mark_resolved(old.id, resolution="agent", resolver="a", result_version=None)
    assert info.value.superseded_by == new_row.id and new_row.id in str(info.value)


def test_resolving_a_vanished_conflict_is_refused(index: ConflictIndex) -> None:
    row, _ = rec(index)
    index.close(
        "files",
        "notes/a.md",
        status="vanished",
        resolution=None,
        resolver=None,
        result_version=None,
    )
    with pytest.raises(ConflictNotOpen, match="vanished"):
        index.mark_resolved(row.id, resolution="agent", resolver="a", result_version=None)


def test_an_unknown_resolution_is_a_usage_error(index: ConflictIndex) -> None:
    row, _ = rec(index)
    with pytest.raises(UsageError, match="disk, agent, merged, manual"):
        index.mark_resolved(
            row.id,
            resolution="ours",  # type: ignore[arg-type]
            resolver="a",
            result_version=None,
        )
    assert index.get(row.id).status == "open"


# -- undo ---------------------------------------------------------------------------------


def test_undo_reopens_the_same_row_and_keeps_what_was_undone(index: ConflictIndex) -> None:
    row, _ = rec(index)
    index.mark_resolved(row.id, resolution="disk", resolver="agent-1", result_version=5)
    undone = index.mark_undone(row.id, resolver="human")
    assert undone.id == row.id and undone.status == "open" and undone.closed_by is None
    assert (undone.resolution, undone.resolved_by, undone.resolved_at, undone.result_version) == (
        None,
        None,
        None,
        None,
    )
    assert (undone.undone_resolution, undone.undone_result_version, undone.undone_by) == (
        "disk",
        5,
        "human",
    )
    assert undone.undone_at is not None
    # the reconcile layer restores both sides; the next run finds the very same conflict
    again, new = rec(index, run="run-3")
    assert not new and again == undone
    redone = index.mark_resolved(row.id, resolution="agent", resolver="human", result_version=6)
    assert redone.resolution == "agent" and redone.undone_resolution == "disk"


def test_undo_of_an_open_conflict_is_refused(index: ConflictIndex) -> None:
    row, _ = rec(index)
    with pytest.raises(CannotUndo, match="open, not resolved"):
        index.mark_undone(row.id)


def test_undo_of_what_reconcile_closed_is_refused(index: ConflictIndex) -> None:
    row, _ = rec(index)
    index.close(
        "files",
        "notes/a.md",
        status="resolved",
        resolution="merged",
        resolver="reconcile",
        result_version=2,
    )
    with pytest.raises(CannotUndo, match="reconcile closed it"):
        index.mark_undone(row.id)


def test_undo_after_the_path_moved_on_is_refused(index: ConflictIndex) -> None:
    row, _ = rec(index)
    index.mark_resolved(row.id, resolution="agent", resolver="a", result_version=2)
    later, _ = rec(index, disk="later\n", agent="later too\n")
    with pytest.raises(CannotUndo) as info:
        index.mark_undone(row.id)
    assert later.id in str(info.value)
    assert index.get(row.id).status == "resolved"


# -- get ----------------------------------------------------------------------------------


def test_get_by_id_and_by_unique_prefix(index: ConflictIndex) -> None:
    row, _ = rec(index)
    assert index.get(row.id) == row
    assert index.get(row.id[:5]) == row  # "c-abc"
    assert index.get(row.id[2:7]) == row  # the "c-" may be left out
    assert index.get(" " + row.id.upper() + " ") == row


def test_an_unknown_id_is_conflict_not_found_naming_it(index: ConflictIndex) -> None:
    rec(index)
    for wanted in ("c-0000000000", "nope", "c-", ""):
        with pytest.raises(ConflictNotFound) as info:
            index.get(wanted)
        assert isinstance(info.value, NotFound) and info.value.exit_code == 4
        assert repr(wanted) in str(info.value) and info.value.conflict_id == wanted
    with pytest.raises(ConflictNotFound):
        index.mark_resolved("c-0000000000", resolution="disk", resolver="a", result_version=None)
    with pytest.raises(ConflictNotFound):
        index.mark_undone("c-0000000000")


def test_an_ambiguous_prefix_lists_the_candidates(index: ConflictIndex) -> None:
    ids = [rec(index, f"p{i}.md")[0].id for i in range(17)]  # 17 ids: two share a first digit
    shared = next(i[2] for i in ids if sum(j[2] == i[2] for j in ids) > 1)
    with pytest.raises(AmbiguousConflictId) as info:
        index.get(shared)
    assert info.value.exit_code == 2 and len(info.value.matches) >= 2
    assert all(m.startswith("c-" + shared) for m in info.value.matches)


# -- list and counts ----------------------------------------------------------------------


def test_list_filters_by_status_and_source_newest_first(index: ConflictIndex) -> None:
    a, _ = rec(index, "a.md")
    b, _ = rec(index, "b.md", source="s3")
    c, _ = rec(index, "c.md")
    index.mark_resolved(a.id, resolution="disk", resolver="x", result_version=None)
    c2, _ = rec(index, "c.md", disk="moved\n")
    assert [r.id for r in index.list()] == [c2.id, b.id]
    assert [r.id for r in index.list("open", source="files")] == [c2.id]
    assert [r.id for r in index.list("resolved")] == [a.id]
    assert [r.id for r in index.list("superseded")] == [c.id]
    assert [r.id for r in index.list("all")] == [c2.id, c.id, b.id, a.id]
    assert [r.id for r in index.list("all", source="s3")] == [b.id]
    assert index.list("all", source="nowhere") == []
    assert (index.open_count(), index.open_count("files"), index.open_count("s3")) == (2, 1, 1)
    with pytest.raises(UsageError, match="open, resolved, superseded, vanished or all"):
        index.list("closed")


# -- contents -----------------------------------------------------------------------------

NASTY = [
    "",
    "\x00",
    "a\x00b\x00\n",
    "crlf\r\nline\r\n",
    "no trailing newline",
    "ünïcödé ✓ 😀 \u202e\n",
    "<<<<<<< ours\nx\n=======\ny\n>>>>>>> theirs\n",
]


@pytest.mark.parametrize("content", NASTY)
def test_contents_round_trip_exactly(index: ConflictIndex, content: str) -> None:
    row, _ = rec(index, base=content, disk=content + "d", agent=None)
    got = index.get(row.id)
    assert (got.base, got.disk, got.agent) == (content, content + "d", None)
    assert got.base_hash == side_hash(content) and got.agent_hash is None
    assert rec(index, base=content, disk=content + "d", agent=None) == (got, False)


def test_absent_and_empty_are_different_sides(index: ConflictIndex) -> None:
    absent, _ = rec(index, base=None, disk="d\n", agent=None)
    assert (absent.base, absent.base_hash, absent.agent, absent.agent_hash) == (
        None,
        None,
        None,
        None,
    )
    empty, new = rec(index, base=None, disk="d\n", agent="")
    assert new and empty.agent == "" and empty.agent_hash == side_hash("")
    assert index.get(absent.id).status == "superseded"


def test_content_that_is_not_text_is_refused(index: ConflictIndex) -> None:
    with pytest.raises(InvalidContent) as info:
        rec(index, disk="bad \udc80")
    assert isinstance(info.value.__cause__, UnicodeEncodeError)
    assert index.list("all") == []


# -- staleness helpers --------------------------------------------------------------------


def test_is_current_and_require_current(index: ConflictIndex) -> None:
    row, _ = rec(index, agent=None)
    assert is_current(row, "disk\n", None)
    require_current(row, "disk\n", None)
    assert not is_current(row, "disk\r\n", None)
    assert not is_current(row, "disk\n", "")
    with pytest.raises(StaleResolution) as info:
        require_current(row, "other\n", "now here\n")
    assert info.value.sides == ("disk", "agent") and info.value.exit_code == 5
    assert row.id in str(info.value)


# -- the database itself ------------------------------------------------------------------


def test_sqlite_itself_refuses_a_second_open_row(tmp_path: Path, index: ConflictIndex) -> None:
    rec(index)
    conn = sqlite3.connect(tmp_path / "index.db")
    try:
        with pytest.raises(sqlite3.IntegrityError):
            conn.execute(
                "INSERT INTO conflicts (id, source, path, owner, label, reason, detected_run, "
                "detected_at, updated_at, status) VALUES ('c-x', 'files', 'notes/a.md', 'o', 'l', "
                "'r', 'run', 't', 't', 'open')"
            )
    finally:
        conn.close()


def test_the_table_lives_beside_other_tables_and_reopens(tmp_path: Path) -> None:
    db = tmp_path / "index.db"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE versions (x)")
    conn.commit()
    conn.close()
    with ConflictIndex(db) as idx:
        row, _ = rec(idx)
    with ConflictIndex(db) as idx:
        assert idx.get(row.id) == row


def test_a_damaged_file_is_index_corrupt(tmp_path: Path) -> None:
    db = tmp_path / "index.db"
    db.write_bytes(b"garbage" * 1000)
    with pytest.raises(IndexCorrupt) as info:
        ConflictIndex(db)
    assert isinstance(info.value.__cause__, sqlite3.DatabaseError)


def test_a_conflicts_table_of_another_shape_is_index_corrupt(tmp_path: Path) -> None:
    db = tmp_path / "index.db"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE conflicts (id TEXT, path TEXT)")
    conn.commit()
    conn.close()
    with pytest.raises(IndexCorrupt, match="another shape"):
        ConflictIndex(db)


def test_a_writer_held_past_the_busy_timeout_is_concurrent_update(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "index.db"
    ConflictIndex(db).disconnect()
    monkeypatch.setattr(index_db, "BUSY_TIMEOUT", 0.05)
    blocker = sqlite3.connect(db, isolation_level=None)
    try:
        with ConflictIndex(db) as idx:
            blocker.execute("BEGIN IMMEDIATE")
            with pytest.raises(ConcurrentUpdate) as info:
                rec(idx)
            assert isinstance(info.value.__cause__, sqlite3.OperationalError)
            blocker.execute("ROLLBACK")
            assert rec(idx)[1]  # the index is usable again once the other writer is done
    finally:
        blocker.close()


# -- two processes ------------------------------------------------------------------------


def _record_many(db: str, disks: list[str], barrier: Any) -> int:
    """Child process: record once per disk content, as fast as possible; count new rows."""
    created = 0
    with ConflictIndex(Path(db)) as idx:
        barrier.wait()
        for disk in disks:
            created += rec(idx, disk=disk)[1]
    return created


def _child(db: str, disks: list[str], barrier: Any, out: Any) -> None:
    out.put(_record_many(db, disks, barrier))


def _run_processes(db: Path, plans: list[list[str]]) -> list[int]:
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(len(plans))
    out = ctx.Queue()
    procs = [ctx.Process(target=_child, args=(str(db), plan, barrier, out)) for plan in plans]
    for p in procs:
        p.start()
    results = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    return results


def test_two_processes_recording_the_same_conflict_make_one_row(tmp_path: Path) -> None:
    db = tmp_path / "index.db"
    ConflictIndex(db).disconnect()
    created = _run_processes(db, [["disk\n"] * 30, ["disk\n"] * 30])
    assert sum(created) == 1
    with ConflictIndex(db) as idx:
        rows = idx.list("all")
    assert len(rows) == 1 and rows[0].status == "open"


def test_two_processes_racing_different_sides_leave_exactly_one_open_row(tmp_path: Path) -> None:
    db = tmp_path / "index.db"
    ConflictIndex(db).disconnect()
    created = _run_processes(db, [["one\n", "two\n"] * 15, ["three\n", "four\n"] * 15])
    with ConflictIndex(db) as idx:
        rows = idx.list("all")
    assert sum(created) == len(rows)
    assert [r.status for r in rows].count("open") == 1
    ids = {r.id for r in rows}
    assert all(r.superseded_by in ids for r in rows if r.status == "superseded")


# -- the state machine against a model ----------------------------------------------------

# few values, so that sides often come back to what an earlier row held
SIDE = st.sampled_from([None, "x\r\n", "\x00y"])


@dataclass
class ModelRow:
    id: str
    path: str
    hashes: tuple[str | None, str | None, str | None]  # base, disk, agent
    status: str = "open"
    closed_by: str | None = None
    superseded_by: str | None = None
    resolution: str | None = None


class ConflictModel(RuleBasedStateMachine):
    """The rules of the module docstring, written the obvious way, against the real index."""

    def __init__(self) -> None:
        super().__init__()
        self.tmp = tempfile.TemporaryDirectory()
        self.index = ConflictIndex(Path(self.tmp.name) / "index.db")
        self.rows: list[ModelRow] = []  # in insertion order

    def teardown(self) -> None:
        self.index.disconnect()
        self.tmp.cleanup()

    def _of(self, path: str) -> list[ModelRow]:
        return [r for r in self.rows if r.path == path]

    @rule(path=st.sampled_from(["a", "b"]), base=SIDE, disk=SIDE, agent=SIDE)
    def record(self, path: str, base: str | None, disk: str | None, agent: str | None) -> None:
        hashes = (side_hash(base), side_hash(disk), side_hash(agent))
        got, new = rec(self.index, path, base=base, disk=disk, agent=agent)
        current = next((r for r in self._of(path) if r.status == "open"), None)
        if current is not None and current.hashes == hashes:
            assert (got.id, new) == (current.id, False)
            return
        decisions = [
            r for r in self._of(path) if r.status == "resolved" and r.closed_by == "resolve"
        ]
        if decisions and decisions[-1].hashes[1:] == hashes[1:]:
            assert (got.id, new) == (decisions[-1].id, False)
            successor = decisions[-1].id
        else:
            assert new and got.id not in {r.id for r in self.rows}
            successor = got.id
            self.rows.append(ModelRow(got.id, path, hashes))
        if current is not None:
            current.status, current.closed_by, current.superseded_by = (
                "superseded",
                "supersede",
                successor,
            )

    @rule(path=st.sampled_from(["a", "b"]), status=st.sampled_from(["resolved", "vanished"]))
    def close(self, path: str, status: str) -> None:
        closed = self.index.close(
            "files",
            path,
            status=status,  # type: ignore[arg-type]
            resolution="auto",
            resolver="reconcile",
            result_version=None,
        )
        expected = [r for r in self._of(path) if r.status == "open"]
        assert [c.id for c in closed] == [r.id for r in expected]
        for r in expected:
            r.status, r.closed_by, r.resolution = status, "reconcile", "auto"

    @rule(
        pick=st.integers(0, 30), resolution=st.sampled_from(["disk", "agent", "merged", "manual"])
    )
    def resolve(self, pick: int, resolution: str) -> None:
        if not self.rows:
            return
        row = self.rows[pick % len(self.rows)]
        if row.status == "open":
            got = self.index.mark_resolved(
                row.id,
                resolution=resolution,  # type: ignore[arg-type]
                resolver="m",
                result_version=1,
            )
            assert got.status == "resolved"
            row.status, row.closed_by, row.resolution = "resolved", "resolve", resolution
        else:
            expected = AlreadyResolved if row.status == "resolved" else ConflictNotOpen
            with pytest.raises(expected):
                self.index.mark_resolved(
                    row.id,
                    resolution=resolution,  # type: ignore[arg-type]
                    resolver="m",
                    result_version=1,
                )

    @rule(path=st.sampled_from(["a", "b"]), resolution=st.sampled_from(["disk", "merged"]))
    def resolve_open(self, path: str, resolution: str) -> None:
        row = next((r for r in self._of(path) if r.status == "open"), None)
        if row is not None:
            self.resolve(self.rows.index(row), resolution)

    @rule(pick=st.integers(0, 30))
    def undo(self, pick: int) -> None:
        if not self.rows:
            return
        row = self.rows[pick % len(self.rows)]
        newest = self._of(row.path)[-1]
        if row.status == "resolved" and row.closed_by == "resolve" and newest is row:
            got = self.index.mark_undone(row.id)
            assert got.status == "open" and got.undone_resolution == row.resolution
            row.status, row.closed_by, row.resolution = "open", None, None
        else:
            with pytest.raises(CannotUndo):
                self.index.mark_undone(row.id)

    @invariant()
    def the_index_matches_the_model(self) -> None:
        stored = self.index.list("all")
        assert [c.id for c in stored] == [r.id for r in reversed(self.rows)]
        for c, r in zip(stored, reversed(self.rows)):
            assert (c.status, c.closed_by, c.superseded_by, c.resolution) == (
                r.status,
                r.closed_by,
                r.superseded_by,
                r.resolution,
            )
            assert (c.base_hash, c.disk_hash, c.agent_hash) == r.hashes
        for path in ("a", "b"):
            assert sum(r.status == "open" for r in self._of(path)) <= 1
        assert self.index.open_count() == sum(r.status == "open" for r in self.rows)


ConflictModel.TestCase.settings = settings(
    max_examples=examples(60), stateful_step_count=30, deadline=None
)
test_conflict_state_machine = ConflictModel.TestCase
