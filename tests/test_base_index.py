"""The base index (`sync_bases` in index.db): derived from the bases refs, caught up with only
what changed, rebuilt when lost, and what lets reconcile skip unchanged paths by their hashes.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

import blocksync
from blocksync.index.base_index import BaseEntry, BaseIndex, git_blob_id
from blocksync.shared.wit import PermissionLevel, PermissionRule
from blocksync.store.bases import SyncBases
from blocksync.store.gitstore import GitStore
from blocksync.sync.folder.config import FileSourceSpec
from blocksync.sync.folder.source import FileSource
from blocksync.sync.protocol import NoChange, Resolved

AUTHOR = "test:author"


@pytest.fixture
def gitstore(store_path: Path) -> Iterator[GitStore]:
    store = GitStore(store_path / "repo")
    yield store
    store.close()


@pytest.fixture
def index(store_path: Path) -> Iterator[BaseIndex]:
    found = BaseIndex(store_path / "index.db")
    yield found
    found.close()


def expected(bases: SyncBases) -> dict[str, BaseEntry]:
    """What the index must say, read the slow way: every binding and base from git."""
    out = {}
    for binding in bases.bindings():
        found = bases.get(binding.path)
        assert found is not None
        data = found[1].encode("utf-8")
        out[binding.path] = BaseEntry(
            binding.path,
            binding.owner,
            binding.label,
            git_blob_id(data),
            hashlib.sha256(data).hexdigest(),
        )
    return out


def test_the_index_follows_every_update_of_the_ref(gitstore: GitStore, index: BaseIndex) -> None:
    bases = SyncBases(gitstore, "notes")
    assert index.entries(bases) == {}
    with bases.update("one", AUTHOR) as tx:
        for i in range(20):
            tx.set_base(f"p{i}.md", "alice", f"l{i}", f"text {i}\n")
    assert index.entries(bases) == expected(bases)
    with bases.update("two", AUTHOR) as tx:
        tx.set_base("p1.md", "alice", "l1", "changed\n")
        tx.forget("p2.md")
        tx.set_base("new/ünï.md", "alice", "new", "")
    got = index.entries(bases)
    assert (
        got == expected(bases)
        and "p2.md" not in got
        and got["new/ünï.md"].base_blob == (git_blob_id(b""))
    )
    with bases.update("all gone", AUTHOR) as tx:
        for path in list(got):
            tx.forget(path)
    assert index.entries(bases) == {}


def test_sources_are_indexed_apart(gitstore: GitStore, index: BaseIndex) -> None:
    a, b = SyncBases(gitstore, "a"), SyncBases(gitstore, "b")
    with a.update("a", AUTHOR) as tx:
        tx.set_base("x", "alice", "x", "from a\n")
    with b.update("b", AUTHOR) as tx:
        tx.set_base("x", "bob", "x", "from b\n")
    assert index.entries(a) == expected(a) and index.entries(b) == expected(b)
    assert index.entries(a) != index.entries(b)


def test_a_lost_or_damaged_index_is_rebuilt_from_git(
    store_path: Path, gitstore: GitStore, index: BaseIndex
) -> None:
    bases = SyncBases(gitstore, "notes")
    with bases.update("one", AUTHOR) as tx:
        tx.set_base("a", "alice", "a", "A\n")
        tx.set_base("b", "alice", "b", "B\n")
    index.entries(bases)
    conn = sqlite3.connect(store_path / "index.db")
    # an indexed commit git does not have, and rows that lie: a rebuild from the ref
    conn.execute("UPDATE sync_bases_heads SET head = ?", ["0" * 40])
    conn.execute("UPDATE sync_bases SET base_sha256 = 'lie'")
    conn.commit()
    assert index.entries(bases) == expected(bases)
    conn.execute("DROP TABLE sync_bases")
    conn.execute("DROP TABLE sync_bases_heads")
    conn.commit()
    conn.close()
    again = BaseIndex(store_path / "index.db")  # the tables are created again, then filled
    try:
        assert again.entries(bases) == expected(bases)
    finally:
        again.close()


# -- reconcile through the index ---------------------------------------------------------------


@pytest.fixture
def source(ws: blocksync.Workspace, tmp_path: Path) -> Iterator[FileSource]:
    root = (tmp_path / "files").resolve()
    root.mkdir()
    spec = FileSourceSpec(
        "notes",
        "alice",
        "n",
        (root,),
        permission_rules=(PermissionRule("**", PermissionLevel.READ_WRITE),),
    )
    with FileSource(spec, ws.blocks) as fs:
        yield fs


def test_reconcile_keeps_the_index_at_the_ref_it_wrote(source: FileSource) -> None:
    root = source.spec.paths[0]
    for i in range(5):
        (root / f"f{i}.md").write_text(f"file {i}\n")
    assert all(isinstance(r, Resolved) for r in source.reconcile_outcome().results)
    index = source.base_index()
    conn = sqlite3.connect(index.path)
    (head,) = conn.execute("SELECT head FROM sync_bases_heads WHERE source = 'notes'").fetchone()
    conn.close()
    head_now = source.bases.head()
    assert head_now is not None and head == head_now.decode(), "recorded without a catch-up"
    assert index.entries(source.bases) == expected(source.bases)


def test_a_same_size_edit_with_the_old_mtime_is_seen(
    source: FileSource, ws: blocksync.Workspace
) -> None:
    root = source.spec.paths[0]
    f = root / "a.md"
    f.write_text("aaaa\n")
    source.reconcile_outcome()
    before = f.stat()
    f.write_text("bbbb\n")
    os.utime(f, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert source.reconcile(["a.md"]) == [Resolved("a.md", "disk->agent")]
    assert ws.blocks.read("alice", source.block_of("a.md").label).content == "bbbb\n"


def test_a_block_edited_back_to_its_base_is_unchanged(
    source: FileSource, ws: blocksync.Workspace
) -> None:
    root = source.spec.paths[0]
    (root / "a.md").write_text("base\n")
    source.reconcile_outcome()
    label = source.block_of("a.md").label
    ws.blocks.update("alice", label, "other\n", author="agent:a")
    ws.blocks.update("alice", label, "base\n", author="agent:a")
    assert source.reconcile_outcome().results == [NoChange("a.md")]


def test_bases_written_by_another_writer_are_caught_up(
    source: FileSource, ws: blocksync.Workspace, store_path: Path
) -> None:
    """A base advanced behind the index's back (another process, a resolution) is read from
    the ref's changes, never taken from a stale row."""
    root = source.spec.paths[0]
    (root / "a.md").write_text("one\n")
    source.reconcile_outcome()
    label = source.block_of("a.md").label
    (root / "a.md").write_text("two\n")
    ws.blocks.update("alice", label, "two\n", author="agent:a")
    git = GitStore(store_path / "repo")
    try:
        with SyncBases(git, "notes").update("elsewhere", AUTHOR) as tx:
            tx.set_base("a.md", "alice", label, "two\n")
    finally:
        git.close()
    assert source.reconcile_outcome().results == [NoChange("a.md")]
