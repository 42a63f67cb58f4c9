"""The single-update path reads main's ref file directly (issue 14: a commit per update must
cost little); whatever else git may have made of the ref is still read through dulwich."""

from __future__ import annotations

from pathlib import Path

import blocksync

from .conftest import assert_git_fsck, git


def test_a_packed_main_is_read_and_moved(store_path: Path) -> None:
    with blocksync.open(store_path) as ws:
        ws.blocks.create("alice", "notes", "one\n")
    repo = store_path / "repo"
    git(repo, "pack-refs", "--all", "--prune")  # no loose refs/heads/main any more
    assert not (repo / "refs" / "heads" / "main").exists()
    with blocksync.open(store_path) as ws:
        assert ws.blocks.read("alice", "notes").content == "one\n"
        block = ws.blocks.update("alice", "notes", "two\n", expected_version=1)
        assert block.version == 2
    assert git(repo, "rev-parse", "refs/heads/main").strip() == block.commit
    assert_git_fsck(repo)


def test_objects_of_every_size_read_back_with_git(store_path: Path) -> None:
    """Small objects and large ones are deflated with different zlib settings."""
    texts = ["", "x", "line\n" * 300, "".join(chr(0x400 + i % 500) for i in range(70_000))]
    with blocksync.open(store_path) as ws:
        for i, text in enumerate(texts):
            block = ws.blocks.create("alice", f"b{i}", text)
            path = f"{ws.blocks.git_path('alice', f'b{i}')}/content"
            shown = git(store_path / "repo", "show", f"{block.commit}:{path}")
            assert shown == text


def test_trees_of_every_size_read_back_with_git(store_path: Path) -> None:
    """Trees are stored as they are when small and Huffman-coded when big: git reads both,
    from a pack (a transaction of many blocks) and as loose objects (a single update)."""
    repo = store_path / "repo"
    with blocksync.open(store_path) as ws:
        with ws.transaction("many", "me") as tx:
            for i in range(120):
                tx.create("alice", f"b{i}", f"text {i}\n")
        ws.blocks.update("alice", "b7", "changed\n")
        changed, packed = (ws.blocks.git_path("alice", label) for label in ("b7", "b8"))
    owner = "/".join(changed.split("/")[:2])  # blocks/<owner>: a fan-out folder per block
    assert len(git(repo, "ls-tree", "--name-only", f"main:{owner}").split()) > 60  # > 1 KB
    assert git(repo, "show", f"main:{changed}/content") == "changed\n"
    assert git(repo, "show", f"main~1:{packed}/content") == "text 8\n"
    assert_git_fsck(repo)
