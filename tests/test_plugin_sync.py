"""Sync bases for plugins: the ``sync`` host functions ``base``, ``bindings``, ``set-base`` and
``forget`` of a data-block plugin loaded by a store (``ws.plugins``), kept in the plugin's own
``refs/sync/<key>`` exactly as the native file source keeps its bases.

Driven through the echo_block guest (built with componentize-py), which calls every sync function;
the ref is checked with the real git CLI and read back through :class:`SyncBases`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from wasmtime.component import Record

import blocksync
from blocksync.errors import PluginCallFailed
from blocksync.plugins.host.hostfuncs import HostContext, HostServices, bases_functions
from blocksync.plugins.spec import PluginSpec
from blocksync.plugins.syncbases import PluginBases
from blocksync.store.bases import Binding, SyncBases
from blocksync.store.gitstore import GitStore
from blocksync.sync.protocol import NeedsResolution, NoChange, Resolved

from .conftest import assert_git_fsck, git
from .plugin_builds import built_plugins
from .stores import make_store
from .test_host_functions import plugin_log, ref


@pytest.fixture(scope="module")
def built() -> dict[str, Path]:
    return built_plugins(["echo_block", "echo_stream"])


@pytest.fixture
def ws(tmp_path: Path, built: dict[str, Path]) -> Iterator[blocksync.Workspace]:
    store = make_store(
        tmp_path / "store",
        {
            "echo": {"path": built["echo_block"], "config": {"files": "a.md=disk text\n;b.md=b"}},
            "stream": {"path": built["echo_stream"], "source_kind": "stream"},
        },
    )
    with blocksync.open(store, author="human:test") as workspace:
        yield workspace
        assert workspace.fsck().ok
    assert_git_fsck(store / "repo")


@pytest.fixture
def bases(ws: blocksync.Workspace) -> Iterator[SyncBases]:
    git_store = GitStore(ws.repo_path)
    yield SyncBases(git_store, "echo")
    git_store.close()


def test_set_base_base_and_bindings_through_a_plugin(
    ws: blocksync.Workspace, bases: SyncBases, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="blocksync.plugin.echo")
    echo = ws.plugins.data_block("echo")
    assert echo.load("a.md", "alice") == ref("a.md")  # memory-create-block + set-base
    assert bases.get("a.md") == (Binding("a.md", "alice", "a.md"), "disk text\n")
    assert git(ws.repo_path, "log", "--format=%an|%s", "refs/sync/echo").splitlines() == [
        "plugin:echo|plugin echo: base of a.md"
    ]
    # base (an option<tuple<binding, string>>) and bindings (a list<binding>) lowered back
    assert echo.reconcile(["a.md", "b.md"]) == [NoChange("a.md"), NoChange("b.md")]
    assert (logging.INFO, "reconcile 2 paths; 1 bound") in plugin_log(caplog, "echo")

    ws.blocks.update("alice", "a.md", "agent edit\n")
    assert echo.reconcile(["a.md"]) == [Resolved("a.md", "merged")]
    assert bases.get("a.md") == (Binding("a.md", "alice", "a.md"), "agent edit\n")

    # an older base under both edits: merge3 refuses, nothing moves
    with bases.update("test: older base", "human:test") as tx:
        tx.set_base("a.md", "alice", "a.md", "older\n")
    ws.blocks.update("alice", "a.md", "agent again\n")
    head = bases.head()
    assert echo.reconcile(["a.md"]) == [NeedsResolution("a.md", "agent edit\n", "agent again\n")]
    assert bases.head() == head

    echo.save(ref("a.md"))  # memory-read-block + set-base
    assert bases.get("a.md") == (Binding("a.md", "alice", "a.md"), "agent again\n")

    echo.delete("a.md")  # base + memory-delete-block + forget
    assert bases.get("a.md") is None and bases.bindings() == []
    assert not ws.blocks.exists("alice", "a.md")
    log = git(ws.repo_path, "log", "--format=%an|%s", "refs/sync/echo").splitlines()
    assert log[0] == "plugin:echo|plugin echo: forget a.md"
    assert len(log) == 5  # load, merge, the test's own, save, forget: one commit each


def test_set_base_errors_reach_the_plugin_as_err(ws: blocksync.Workspace, bases: SyncBases) -> None:
    echo = ws.plugins.data_block("echo")
    echo.load("a.md", "alice")
    # b.md's block is a.md's: a binding is one-to-one, AlreadyBound is the err set-base answers
    with bases.update("test: bind b.md", "human:test") as tx:
        tx.forget("a.md")
        tx.set_base("b.md", "alice", "a.md", "b")
    ws.blocks.update("alice", "a.md", "moved\n")
    with pytest.raises(PluginCallFailed) as info:
        echo.save(ref("a.md"))
    assert info.value.call == "data-block.save"
    assert info.value.detail.startswith("HostError: ") and "a.md" in info.value.detail


def test_the_host_functions_themselves(ws: blocksync.Workspace) -> None:
    git_store = GitStore(ws.repo_path)
    try:
        spec = PluginSpec(key="direct", agent="alice", path=Path("direct.wasm"))
        plugin_bases = PluginBases(HostContext(spec, HostServices()), git_store, enabled=False)
        fns = bases_functions(plugin_bases)
        block = SimpleNamespace(**{"block-id": "", "label": "x", "agent-id": "alice"})
        # not (yet) known to be a data-block plugin: no bases, none recorded
        assert fns["base"]("x") is None and fns["bindings"]() == []
        assert "only for data-block sources" in fns["set-base"]("x", block, "t")
        plugin_bases.enabled = True
        assert fns["set-base"]("x", block, "t") is None  # ok of result<_, string>
        found = fns["base"]("x")
        assert isinstance(found[0], Record) and isinstance(found[0].block, Record)
        assert found[0].path == "x" and found[1] == "t"
        assert found[0].block.__dict__ == {
            "block-id": blocksync.BlockStore.git_path("alice", "x"),
            "label": "x",
            "agent-id": "alice",
        }
        assert [b.path for b in fns["bindings"]()] == ["x"]
        bob = SimpleNamespace(**{"block-id": "", "label": "x", "agent-id": "bob"})
        assert fns["set-base"]("y", bob, "t") == (
            "cannot bind 'y' to a block of 'bob': this plugin is attached only to alice"
        )
        assert fns["base"]("") is None  # a path that cannot have a base has none
        assert fns["forget"]("x") is None and fns["bindings"]() == []
    finally:
        git_store.close()


def test_only_data_block_plugins_get_bases(ws: blocksync.Workspace) -> None:
    ws.plugins.data_block("echo")
    ws.plugins.data_stream("stream")
    assert git(ws.repo_path, "for-each-ref", "refs/sync/") == ""  # nothing written by loading
