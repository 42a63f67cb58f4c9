"""Store settings and the ref lock: durable mode, config errors, a lock left behind."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import blocksync

from .conftest import git


def test_durable_store_commits_and_git_reads_it(store_path: Path) -> None:
    toml = store_path / "blocksync.toml"
    toml.write_text(toml.read_text().replace("durable = false", "durable = true"))
    with blocksync.open(store_path) as ws:
        assert ws.blocks.durable
        ws.blocks.create("a", "b", "durable\n")
        ws.blocks.update("a", "b", "still durable\n")
    assert (
        git(store_path / "repo", "show", f"main:{blocksync.BlockStore.git_path('a', 'b')}/content")
        == "still durable\n"
    )


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("[store]\ndurable = 'yes'\n", "durable must be true or false"),
        ("[store]\nfast = true\n", "[store] has unknown key(s) fast"),
        ("[nonsense]\n", "unknown top-level key(s) nonsense"),
        # a table nothing reads is a typo, not silently ignored
        ('[plugins]\ndir = "x"\n', "unknown top-level key(s) plugins"),
        ("agents = 3\n", "[agents] must be a table"),
    ],
)
def test_bad_store_settings_are_named(store_path: Path, toml: str, message: str) -> None:
    (store_path / "blocksync.toml").write_text(toml)
    with pytest.raises(blocksync.ConfigError, match=re.escape(message)):
        blocksync.open(store_path)


def test_a_lock_left_behind_is_reported_and_nothing_is_lost(ws: blocksync.Workspace) -> None:
    ws.blocks.create("a", "b", "before\n")
    head = ws.blocks.head()
    lock = ws.repo_path / "refs" / "heads" / "main.lock"
    lock.write_text("left by a killed writer\n")
    try:
        with pytest.raises(blocksync.ConcurrentUpdate, match="main.lock stays locked"):
            ws.blocks.update("a", "b", "after\n")
        assert ws.blocks.head() == head
        assert ws.blocks.read("a", "b").content == "before\n"
    finally:
        lock.unlink()
    ws.blocks.update("a", "b", "after\n")
    assert ws.blocks.read("a", "b").content == "after\n"
