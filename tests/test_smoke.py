from __future__ import annotations

import blocksync

from .conftest import git


def test_create_read_update_history(ws: blocksync.Workspace) -> None:
    ws.blocks.create("alice", "notes", "one\n")
    ws.blocks.update("alice", "notes", "two\n")
    assert ws.blocks.read("alice", "notes").content == "two\n"
    assert [v.version for v in ws.blocks.history("alice", "notes")] == [1, 2]
    log = git(ws.repo_path, "log", "--format=%H", "--", ws.blocks.git_path("alice", "notes"))
    assert log.split() == [v.commit for v in reversed(ws.blocks.history("alice", "notes"))]
