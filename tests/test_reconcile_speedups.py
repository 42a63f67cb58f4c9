"""The internals that make a reconcile of many files fast give the very same bytes and answers
as the plain ways they replace: packs written by hand, trees serialized at once, JSON without
the slow encoder, bindings known from the base index (verified against git), the canonical-path
check, files read to their size, and unchanged paths decided without a plan.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
from dulwich.objects import Blob, Tree
from dulwich.repo import Repo
from hypothesis import given, settings
from hypothesis import strategies as st

import blocksync
from blocksync.errors import AlreadyBound, UsageError
from blocksync.fs.disk import Folder
from blocksync.index.base_index import BaseEntry, git_blob_id
from blocksync.shared.wit import PermissionLevel, PermissionRule
from blocksync.store.bases import Binding, SyncBases, _folder_id
from blocksync.store.blocks import BlockMeta, BlockType
from blocksync.store.gitstore import PACK_THRESHOLD, GitStore, TreeEditor, json_document, tree_of
from blocksync.sync.folder.config import FileSourceSpec
from blocksync.sync.folder.source import FileSource
from blocksync.sync.protocol import NoChange, Resolved

from .conftest import assert_git_fsck, examples, git

AGENT = "alice"
TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)


def plain_json(doc: dict[str, object]) -> bytes:
    return (json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()


@settings(max_examples=examples(300), deadline=None)
@given(
    st.dictionaries(
        TEXT,
        st.one_of(TEXT, st.none(), st.integers(), st.booleans(), st.floats(allow_nan=False)),
        max_size=5,
    )
)
def test_json_document_is_json_dumps_byte_for_byte(doc: dict[str, object]) -> None:
    assert json_document(doc) == plain_json(doc)


@settings(max_examples=examples(100), deadline=None)
@given(TEXT, TEXT, TEXT, st.one_of(st.none(), st.integers(min_value=1)))
def test_bindings_and_block_metadata_keep_their_bytes(
    path: str, owner: str, description: str, limit: int | None
) -> None:
    binding = Binding(path, owner, description)
    assert binding.to_json() == plain_json({"label": description, "owner": owner, "path": path})
    meta = BlockMeta(description, BlockType.CORE, '{"type": "text"}', limit)
    assert meta.to_json() == plain_json(
        {
            "block_type": "core",
            "char_limit": limit,
            "description": description,
            "schema": '{"type": "text"}',
        }
    )


@settings(max_examples=examples(200), deadline=None)
@given(
    st.dictionaries(
        st.binary(min_size=1, max_size=6).filter(lambda n: b"/" not in n and b"\0" not in n),
        st.tuples(
            st.sampled_from([0o040000, 0o100644, 0o100755, 0o120000, 0o160000]),
            st.binary(min_size=20, max_size=20),
        ),
        min_size=1,
        max_size=30,
    )
)
def test_tree_of_is_dulwich_tree(entries: dict[bytes, tuple[int, bytes]]) -> None:
    hexed = {name: (mode, sha.hex().encode()) for name, (mode, sha) in entries.items()}
    tree = Tree()
    for name, (mode, sha) in hexed.items():
        tree.add(name, mode, sha)
    built = tree_of(hexed)
    assert built.id == tree.id
    assert built.as_raw_string() == tree.as_raw_string()
    assert {e.path: (e.mode, e.sha) for e in built.items()} == hexed


def test_folder_id_is_the_folder_tree_bases_write() -> None:
    base = Blob.from_string(b"some base\n")
    binding = Blob.from_string(Binding("a/b.md", "alice", "file:x:a/b.md").to_json())
    folder = Tree()
    folder.add(b"binding.json", 0o100644, binding.id)
    folder.add(b"base", 0o100644, base.id)
    assert _folder_id(base.id, binding.id) == folder.id
    assert git_blob_id(b"some base\n").encode() == base.id


def test_a_large_write_is_one_pack_git_and_dulwich_read(tmp_path: Path) -> None:
    repo = tmp_path / "repo.git"
    GitStore.init_bare(repo, blocksync.store.blocks.MAIN)
    store = GitStore(repo)
    blobs = [Blob.from_string(f"blob {i}\n".encode() * (i % 7)) for i in range(PACK_THRESHOLD * 3)]
    blobs.append(blobs[0])  # a duplicate is written once
    big = Blob.from_string(os.urandom(1 << 17))  # a size that takes several header bytes
    root = TreeEditor(store, None)
    for i, blob in enumerate(blobs + [big]):
        root.child(b"d%d" % (i % 5)).set(b"f%03d" % i, 0o100644, blob.id)
    commit, more = store.commit_objects(root, None, "test", "many objects")
    store.write([*blobs, big, *more])
    assert store.swap_ref(blocksync.store.blocks.MAIN, None, commit.id)
    packs = sorted((repo / "objects" / "pack").glob("pack-*.pack"))
    assert len(packs) == 1 and packs[0].with_suffix(".idx").exists()
    assert not list((repo / "objects" / "pack").glob("tmp_*"))
    git(repo, "verify-pack", "-v", str(packs[0].with_suffix(".idx")))
    assert_git_fsck(repo)
    assert git(repo, "cat-file", "-s", big.id.decode()).strip() == str(1 << 17)
    fresh = Repo(str(repo))
    try:
        for blob in blobs + [big]:
            assert fresh.object_store[blob.id].as_raw_string() == blob.as_raw_string()
    finally:
        fresh.close()
    # the writer's own store sees the new pack at once
    assert store.blob(big.id) == big.as_raw_string()
    # the same objects again: the same pack, nothing new
    store.write([*blobs, big, *more])
    assert sorted((repo / "objects" / "pack").glob("pack-*.pack")) == packs
    store.close()


def test_expected_bindings_are_checked_against_git(tmp_path: Path) -> None:
    blocksync.init(tmp_path / "store", author="test:setup").close()
    repo = tmp_path / "store" / "repo"
    bases = SyncBases(GitStore(repo), "src")
    with bases.update("first", "test") as tx:
        tx.set_base("a.md", "alice", "la", "A\n")
        tx.set_base("b.md", "alice", "lb", "B\n")
    right = BaseEntry("a.md", "alice", "la", git_blob_id(b"A\n"), "")
    wrong = BaseEntry("b.md", "alice", "lx", git_blob_id(b"other\n"), "")
    garbage = BaseEntry("c.md", "alice", "lc", "not a blob id", "")
    fresh = SyncBases(GitStore(repo), "src")
    fresh.expect({"a.md": right, "b.md": wrong, "c.md": garbage})
    assert fresh.get("a.md") == (Binding("a.md", "alice", "la"), "A\n")
    assert fresh.get("b.md") == (Binding("b.md", "alice", "lb"), "B\n")  # git, not the hint
    assert fresh.get("c.md") is None
    with pytest.raises(AlreadyBound), fresh.update("rebind", "test") as tx:
        tx.set_base("b.md", "alice", "lx", "B2\n")  # b.md is bound to lb in git
    with fresh.update("second", "test") as tx:
        tx.set_base("b.md", "alice", "lb", "B2\n")
    assert SyncBases(GitStore(repo), "src").get("b.md") == (Binding("b.md", "alice", "lb"), "B2\n")
    assert_git_fsck(repo)


def old_rule_refuses(rel: str) -> bool:
    parts = rel.split("/")
    return not rel or rel.startswith("/") or any(p in ("", ".", "..") for p in parts) or "\0" in rel


@settings(max_examples=examples(500), deadline=None)
@given(st.text(st.sampled_from("a./\0"), max_size=8))
def test_the_canonical_path_check_is_the_old_rule(rel: str) -> None:
    source = FileSource.__new__(FileSource)
    source.spec = FileSourceSpec("s", AGENT, "s", (Path("/nowhere"),))
    if old_rule_refuses(rel):
        with pytest.raises(UsageError):
            source._locate(rel)
    else:
        assert source._locate(rel) == (0, rel)


@pytest.fixture
def source(tmp_path: Path) -> FileSource:
    folder = tmp_path / "folder"
    folder.mkdir()
    ws = blocksync.init(tmp_path / "store", author="test:setup")
    spec = FileSourceSpec(
        "notes",
        AGENT,
        "notes",
        (folder,),
        permission_rules=(PermissionRule("**", PermissionLevel.READ_WRITE),),
    )
    return FileSource(spec, ws.blocks)


def test_files_are_read_whole_whatever_their_size(source: FileSource) -> None:
    folder = source.spec.paths[0]
    sizes = {"empty.md": 0, "small.md": 10, "chunk.md": 1 << 20, "big.md": (1 << 20) * 2 + 3}
    with Folder(folder) as disk:
        for name, size in sizes.items():
            (folder / name).write_bytes(b"x" * size)
            assert disk.read(name) == (b"x" * size, None)
        assert disk.read("missing.md") == (None, None)


def test_unchanged_paths_and_changed_ones_in_one_run(source: FileSource, tmp_path: Path) -> None:
    folder = source.spec.paths[0]
    for i in range(20):
        (folder / f"f{i:02d}.md").write_text(f"file {i}\n")
    first = source.reconcile_outcome()
    assert len(first.results) == 20 and all(isinstance(r, Resolved) for r in first.results)
    (folder / "f03.md").write_text("file 3, edited on disk\n")
    label = source.target("f07.md").label
    source.blocks.update(AGENT, label, "file 7, edited by the agent\n")
    (folder / "new.md").write_text("new\n")
    outcome = source.reconcile_outcome()
    got = {r.path: r for r in outcome.results}
    assert [r.path for r in outcome.results] == sorted(got)  # candidates' order
    assert isinstance(got["f00.md"], NoChange)
    assert outcome.reasons["f00.md"] == "neither side changed since the last sync"
    assert all(isinstance(got[p], Resolved) for p in ("f03.md", "f07.md", "new.md"))
    assert sum(isinstance(r, NoChange) for r in outcome.results) == 18
    assert source.blocks.read(AGENT, source.target("f03.md").label).content == (
        "file 3, edited on disk\n"
    )
    assert (folder / "f07.md").read_text() == "file 7, edited by the agent\n"
    again = source.reconcile_outcome()
    assert all(isinstance(r, NoChange) for r in again.results) and len(again.results) == 21
    assert source.sides("f07.md").base == "file 7, edited by the agent\n"
    digest = hashlib.sha256((folder / "f03.md").read_bytes()).hexdigest()
    assert source.base_index().entries(source.bases)["f03.md"].base_sha256 == digest
    source.close()
    assert_git_fsck(tmp_path / "store" / "repo")
