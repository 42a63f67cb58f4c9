"""Listing blocks reads index.db alone (issue 14): every block's newest version and metadata
are kept there by the version index's catch-up, so ``ws.blocks.list`` reads no git object,
and an index.db from before that upgrades in place to the rows a rebuild from git makes."""

from __future__ import annotations

import gc
import os
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

import blocksync
from blocksync import BlockMeta, BlockSummary, BlockType
from blocksync.errors import IndexCorrupt, RepositoryCorrupt
from blocksync.index import versions

from .conftest import assert_git_fsck


def _fill(ws: blocksync.Workspace) -> list[BlockSummary]:
    """Blocks with every kind of metadata, a deleted one, a re-created one, two owners; and
    the listing they must give."""
    with ws.transaction("seed") as tx:
        tx.create("alice", "notes", "n\n", description="my notes", char_limit=100)
        tx.create("alice", "gone", "g\n")
        tx.create("alice", "again", "a\n", block_type="core", schema='{"type": "object"}')
        tx.create("bob", "x", "x\n", block_type=BlockType.LOG)
    ws.blocks.update("alice", "notes", "n2\n", description="changed")
    ws.blocks.delete("alice", "gone")
    ws.blocks.delete("alice", "again")
    ws.blocks.create("alice", "again", "back\n", description="re-created")
    return [
        BlockSummary("alice", "again", BlockMeta("re-created"), 3),
        BlockSummary("alice", "notes", BlockMeta("changed", BlockType.WORKING, char_limit=100), 2),
        BlockSummary("bob", "x", BlockMeta(block_type=BlockType.LOG), 1),
    ]


@contextmanager
def objects_gone(repo: Path) -> Iterator[None]:
    """Every git object of ``repo`` out of reach (its objects folder moved away) meanwhile."""
    objects, away = repo / "objects", repo / "objects.away"
    os.rename(objects, away)
    try:
        yield
    finally:
        os.rename(away, objects)


def test_list_reads_no_git_object(store_path: Path) -> None:
    with blocksync.open(store_path) as ws:
        expected = _fill(ws)
    with blocksync.open(store_path) as ws, objects_gone(ws.repo_path):
        assert ws.blocks.list() == expected
        assert ws.blocks.list("alice") == expected[:2]
        assert ws.blocks.list("nobody") == []
        with pytest.raises(RepositoryCorrupt):  # the proof that git is out of reach
            ws.blocks.read("alice", "notes")


def test_list_follows_other_writers(store_path: Path) -> None:
    """Another workspace's commits are listed with their new metadata."""
    with blocksync.open(store_path) as reader, blocksync.open(store_path) as writer:
        expected = _fill(writer)
        assert reader.blocks.list() == expected
        writer.blocks.update("bob", "x", description="by the other one")
        (bob,) = reader.blocks.list("bob")
        assert (bob.meta.description, bob.version) == ("by the other one", 2)


def _downgrade(index_db: Path) -> None:
    """Make ``index_db`` what the code before the listing tables left."""
    conn = sqlite3.connect(index_db)
    conn.execute("DROP TABLE heads")
    conn.execute("DROP TABLE metas")
    conn.execute("DELETE FROM _sqlite_migrations WHERE name = 'versions_heads_and_metas'")
    conn.commit()
    conn.close()


def test_an_old_index_db_upgrades_to_the_rows_a_rebuild_makes(store_path: Path) -> None:
    with blocksync.open(store_path) as ws:
        expected = _fill(ws)
    _downgrade(store_path / "index.db")

    with blocksync.open(store_path) as ws:
        assert ws.blocks.list() == expected
        ws.blocks.update("alice", "notes", "n3\n")  # numbering goes on from the old rows
        assert ws.blocks.list("alice")[1].version == 3
    with blocksync.open(store_path) as ws, objects_gone(ws.repo_path):
        assert ws.blocks.list("bob") == expected[2:]
    report = blocksync.fsck(store_path)  # compares every table with a rebuild from git
    assert report.ok, report.problems
    upgraded = versions.VersionIndex.open(store_path / "index.db")
    before = upgraded.dump()
    upgraded.close()
    blocksync.rebuild_index(store_path)
    rebuilt = versions.VersionIndex.open(store_path / "index.db")
    assert rebuilt.dump() == before
    assert {"heads", "metas"} <= set(before)
    rebuilt.close()
    assert_git_fsck(store_path / "repo")


def test_an_index_missing_metadata_rows_says_rebuild(store_path: Path) -> None:
    with blocksync.open(store_path) as ws:
        _fill(ws)
    conn = sqlite3.connect(store_path / "index.db")
    conn.execute("DELETE FROM metas")
    conn.commit()
    conn.close()
    with blocksync.open(store_path) as ws, pytest.raises(IndexCorrupt, match="index rebuild"):
        ws.blocks.list()
    blocksync.rebuild_index(store_path)
    with blocksync.open(store_path) as ws:
        assert len(ws.blocks.list()) == 3


def _steps(ws: blocksync.Workspace, work: Callable[[], object]) -> int:
    """How many SQLite virtual machine steps (in units of 100) ``work`` costs on index.db."""
    count = 0

    def tick() -> int:
        nonlocal count
        count += 1
        return 0

    conn = ws.index_db.conn
    conn.set_progress_handler(tick, 100)
    try:
        work()
    finally:
        conn.set_progress_handler(None, 0)
    return count


def _fill_both(ws: blocksync.Workspace, start: int, stop: int) -> None:
    """Blocks b<start>..b<stop - 1> of alice and of bob, in one transaction."""
    with ws.transaction("fill") as tx:
        for i in range(start, stop):
            tx.create("alice", f"b{i:05d}", f"{i}\n")
            tx.create("bob", f"b{i:05d}", f"{i}\n")


def test_a_transaction_of_a_few_blocks_reads_their_rows_not_every_block(store_path: Path) -> None:
    """What a transaction checks of its blocks (their heads, read in one query for a batch)
    is found by key: the same work whether their owners hold 200 blocks or 4,000 (the query
    of a batch scanned every block of the index)."""
    with blocksync.open(store_path) as ws:

        def touch() -> None:
            blocks = [("alice", "b00001"), ("bob", "b00002"), ("alice", "b00003")]
            with ws.transaction("touch") as tx:
                tx.preload(blocks)  # as a reconcile's batch does
                for owner, label in blocks:
                    tx.update(owner, label, "touched\n")

        _fill_both(ws, 0, 100)
        touch()  # caches and tables warm
        small = _steps(ws, touch)
        _fill_both(ws, 100, 2000)
        touch()
        big = _steps(ws, touch)
    assert big < 2 * small, (small, big)


def test_the_owners_of_a_label_are_found_without_reading_every_block(store_path: Path) -> None:
    """What every locked run asks (whose ``blocksync:conflicts`` list is left to retire): the
    owners of one label, found per owner by key, not by a pass over every block."""
    with blocksync.open(store_path) as ws:
        _fill_both(ws, 0, 100)
        ws.blocks.create("bob", "shared", "x\n")
        assert ws.blocks.owners_with("shared") == ["bob"]
        small = _steps(ws, lambda: ws.blocks.owners_with("shared"))
        _fill_both(ws, 100, 2000)
        ws.blocks.create("alice", "shared", "y\n")
        ws.blocks.delete("bob", "shared")
        assert ws.blocks.owners_with("shared") == ["alice"]
        big = _steps(ws, lambda: ws.blocks.owners_with("shared"))
    assert big < 2 * small + 2, (small, big)


def test_a_listing_leaves_no_collector_pass_over_what_it_built(store_path: Path) -> None:
    """The summaries a listing builds all live on: they join the oldest generation as it
    returns, so no collection right after it walks them (at 100,000 blocks such a pass was
    a fifth of the listing). What the program froze itself (``gc.freeze``) stays frozen."""
    with blocksync.open(store_path) as ws:
        with ws.transaction("seed") as tx:
            for i in range(2000):
                tx.create("alice", f"n{i}", "x")
        gc.collect()
        listed = ws.blocks.list("alice")
        assert gc.get_count()[0] < 100  # what a few allocations since the return count
        oldest = {id(obj) for obj in gc.get_objects(generation=2)}
        assert id(listed[0]) in oldest and id(listed[-1]) in oldest
        program_own = ["an object the program froze"]
        gc.freeze()
        try:
            assert len(ws.blocks.list("alice")) == 2000
            # still in the permanent generation, which no generation's list includes
            assert not any(obj is program_own for obj in gc.get_objects())
        finally:
            gc.unfreeze()
        assert any(obj is program_own for obj in gc.get_objects())  # the check can fail


def test_the_labels_under_a_prefix_are_a_range_not_every_block(store_path: Path) -> None:
    """What a plugin's run asks of its namespace (``file:<tag>:`` labels an agent may have
    created): the labels under the prefix, by a range of the key; blocks of the owner outside
    it cost nothing (the run read every block of the owner, 100,000 at scale)."""
    with blocksync.open(store_path) as ws:
        index = versions.VersionIndex(ws.index_db)
        with ws.transaction("seed") as tx:
            for label in ("ns:a", "ns:b/c", "ns;", "ns", "nt:a", "ns:gone"):
                tx.create("alice", label, "x\n")
            tx.create("bob", "ns:bob", "x\n")
        ws.blocks.delete("alice", "ns:gone")
        assert index.labels_under("alice", "ns:") == ["ns:a", "ns:b/c"]
        assert index.labels_under("alice", "\U0010ffff") == []  # no next character: no bound
        small = _steps(ws, lambda: index.labels_under("alice", "ns:"))
        _fill_both(ws, 0, 2000)
        assert index.labels_under("alice", "ns:") == ["ns:a", "ns:b/c"]
        big = _steps(ws, lambda: index.labels_under("alice", "ns:"))
    assert big < 2 * small + 2, (small, big)
