"""Bridges: WASM plugins seen through the host-side Protocols (`DataBlock`, `DataStream`, `Tool`).

Every export of the three interfaces is called through WasmDataBlock / WasmDataStream / WasmTool
on real components (the SDK fixtures, built with componentize-py), configured in a real store's
blocksync.toml and obtained through ``ws.plugins``. WIT values come back as the typed values of
blocksync.sync.protocol; a WIT ``result`` error becomes PluginCallFailed naming plugin, version and call.
Also here: the configuration of plugins, calls from many threads and from asyncio, and a granted
folder.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

import blocksync
from blocksync.errors import ConfigError, NotFound, PluginCallFailed, PluginRefused, PluginTrapped
from blocksync.plugins import HostServices, Limits, WasmDataBlock, WasmDataStream, WasmTool, load
from blocksync.shared.wit import (
    BlockRef,
    BlockSchemaSpec,
    Notification,
    PermissionLevel,
    PermissionRule,
    SourceStatus,
    VersionInfo,
)
from blocksync.store.blocks import BlockStore
from blocksync.sync.protocol import DataBlock, DataStream, NeedsResolution, NoChange, Resolved, Tool

from .conftest import assert_git_fsck
from .plugin_builds import built_plugins, wat_fixture
from .stores import make_store_for
from .test_host_functions import DictBases

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ("echo_block", "echo_stream", "echo_tool", "kitchen_sink", "stream_tool", "echo_files")


@pytest.fixture(scope="module")
def built() -> dict[str, Path]:
    return built_plugins(FIXTURES)


@pytest.fixture(scope="module")
def hostile_wasm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return wat_fixture("hostile_tool", tmp_path_factory.mktemp("wat"))


@pytest.fixture
def store(tmp_path: Path, built: dict[str, Path], hostile_wasm: Path) -> Iterator[Path]:
    for name in ("ro", "rw"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "note.md").write_text("from disk\n", encoding="utf-8")
    path = make_store_for(
        tmp_path / "store",
        {
            "alice": {
                "echo": {"path": built["echo_block"]},
                "sink": {"path": built["kitchen_sink"], "source_kind": "both"},
                "sink_stream": {"path": built["kitchen_sink"], "source_kind": "stream"},
                "stream": {"path": built["echo_stream"], "source_kind": "stream"},
                "tool": {"path": built["echo_tool"]},
                "ticks": {"path": built["stream_tool"], "source_kind": "stream"},
                "files_ro": {"path": built["echo_files"], "dir": tmp_path / "ro"},
                "files_rw": {
                    "path": built["echo_files"],
                    "dir": tmp_path / "rw",
                    "dir_mode": "read-write",
                },
                "files_none": {"path": built["echo_files"]},  # no folder granted
                "wat": {"path": hostile_wasm, "limits": {"timeout": 0.5}},
            }
        },
    )
    yield path
    assert_git_fsck(path / "repo")


@pytest.fixture
def ws(store: Path) -> Iterator[blocksync.Workspace]:
    with blocksync.open(store, author="human:test") as workspace:
        yield workspace
        assert workspace.fsck().ok


def failed(call: Callable[..., Any], *args: Any) -> PluginCallFailed:
    with pytest.raises(PluginCallFailed) as info:
        call(*args)
    return info.value


# --------------------------------------------------------------------------------------------
# data-block


def test_every_data_block_export(ws: blocksync.Workspace) -> None:
    sink = ws.plugins.data_block("sink")
    assert isinstance(sink, WasmDataBlock) and isinstance(sink, DataBlock)
    assert sink.source_id() == "kitchen-sink"
    assert sink.name() == "Kitchen sink"
    assert sink.block_schema() == BlockSchemaSpec("text", "plain text", '{"type": "string"}')
    assert sink.permission_rules() == [PermissionRule("**", PermissionLevel.READ_WRITE)]
    assert sink.load("ü/ß ✓.md", "alice") == BlockRef("id-ü/ß ✓.md", "ü/ß ✓.md", "alice")
    assert sink.create("p", None, "alice") == BlockRef("new-p", "p", "alice")
    assert sink.create("p", "content", "alice") == BlockRef("new-p", "p", "alice")
    block = BlockRef("id-p", "p", "alice")
    sink.save(block)  # ok: nothing to return
    assert sink.history(block) == [VersionInfo("v1", "2025-01-01T00:00:00Z", None)]
    sink.rollback(block, "v1")
    assert sink.diff(block, None, "v2") == "None..v2"
    assert sink.diff(block, "v1", None) == "v1..None"
    assert sink.reconcile([]) == []
    paths = [f"notes/{i}.md" for i in range(2000)]
    assert sink.reconcile(paths) == [NoChange(p) for p in paths]

    echo = ws.plugins.data_block("echo")
    assert echo.permission_rules() == [  # the guest returned one rule as a plain tuple
        PermissionRule("private/**", PermissionLevel.READ_ONLY),
        PermissionRule("**", PermissionLevel.ADMIN),
    ]
    assert echo.block_schema().schema_json == '{"type": "string"}'


def test_a_result_error_names_plugin_version_and_call(ws: blocksync.Workspace) -> None:
    sink = ws.plugins.data_block("sink")
    version = ws.plugins.get("sink").version
    error = failed(sink.delete, "x")
    assert (error.plugin, error.version, error.call) == ("sink", version, "data-block.delete")
    assert error.detail == "PermissionError: kitchen sink never deletes"
    assert str(error) == (
        f"plugin 'sink' ({version}) data-block.delete: PermissionError: kitchen sink never deletes"
    )
    assert version.startswith("sha256:")
    assert sink.name() == "Kitchen sink"  # an err is no trap: the instance lives on


def test_reconcile_results_are_typed(ws: blocksync.Workspace) -> None:
    bases = DictBases()
    spec = dataclasses.replace(
        ws.plugins.specs["echo"], config={"files": "same=s;merge=base\n;fight=base\n;twin=t"}
    )
    plugin = load(spec, HostServices(ws.blocks, ws.notifications), ws.cache_path, bases.factory)
    try:
        echo = WasmDataBlock(plugin)
        plugin.host.plugin_rules = tuple(echo.permission_rules())  # as PluginSet does
        for path in ("same", "merge", "fight", "twin"):
            assert echo.load(path, "alice") == BlockRef(
                BlockStore.git_path("alice", path), path, "alice"
            )
        ws.blocks.update("alice", "merge", "agent edit\n")  # only the agent moved: merges
        ws.blocks.update("alice", "fight", "agent edit\n")
        bases.bases["fight"] = (bases.bases["fight"][0], "older\n")  # all three differ
        bases.bases["twin"] = (bases.bases["twin"][0], "older")  # both moved to the same text
        results = echo.reconcile(["same", "merge", "fight", "twin", "unbound"])
        assert results == [
            NoChange("same"),
            Resolved("merge", "merged"),
            NeedsResolution("fight", "base\n", "agent edit\n"),
            Resolved("twin", "identical"),
            NoChange("unbound"),
        ]
        assert [type(r) for r in results] == [
            NoChange,
            Resolved,
            NeedsResolution,
            Resolved,
            NoChange,
        ]
    finally:
        plugin.close()


# --------------------------------------------------------------------------------------------
# data-stream


def test_every_data_stream_export(ws: blocksync.Workspace) -> None:
    stream = ws.plugins.data_stream("stream")
    assert isinstance(stream, WasmDataStream) and isinstance(stream, DataStream)
    version = ws.plugins.get("stream").version
    assert stream.source_id() == "echo-stream"
    assert stream.name() == "Echo stream"
    assert stream.block_schemas() == [
        BlockSchemaSpec("event", "one event", '{"type": "string"}'),
        BlockSchemaSpec("raw", "already JSON text", '{"type": "object"}'),
    ]
    assert stream.status() is SourceStatus.STOPPED
    error = failed(stream.stop)
    assert (error.plugin, error.version, error.call) == ("stream", version, "data-stream.stop")
    assert error.detail == "RuntimeError: not running"
    stream.start("alice")
    assert stream.status() is SourceStatus.RUNNING
    assert failed(stream.start, "alice").detail == "RuntimeError: already running"
    stream.pause()
    assert stream.status() is SourceStatus.PAUSED
    stream.resume()
    assert stream.status() is SourceStatus.RUNNING
    assert stream.supports_pull() is True
    assert stream.pull(2, None) == [Notification("event 0", ()), Notification("event 1", ())]
    assert stream.pull(10, "2") == [Notification(f"event {n}", ()) for n in (2, 3, 4)]
    assert stream.pull(10, "5") == []
    error = failed(stream.pull, 10, "x")
    assert error.call == "data-stream.pull" and error.detail.startswith(
        "ValueError: invalid literal"
    )
    stream.stop()
    assert stream.status() is SourceStatus.STOPPED
    # resume has no err channel: the guest's RuntimeError traps, and the instance is replaced
    with pytest.raises(PluginTrapped) as info:
        stream.resume()
    assert info.value.reason == "trap" and info.value.call == "data-stream.resume"
    assert stream.status() is SourceStatus.STOPPED  # a fresh instance's state
    # the start above emitted notifications, stored with typed block refs
    assert [(n.text, n.blocks) for n in ws.notifications.list()] == [
        ("echo stream started for alice", (BlockRef("stream-block", "echo-stream", "alice"),)),
        ("second notification", ()),
    ]


def test_stream_defaults_and_other_status_values(ws: blocksync.Workspace) -> None:
    sink = ws.plugins.data_stream("sink")
    assert sink.status() is SourceStatus.RUNNING  # the guest returned the name "running"
    assert sink.supports_pull() is False
    assert sink.pull(5, None) == []
    assert sink.block_schemas() == [BlockSchemaSpec("text", "plain text", '{"type": "string"}')]
    sink.start("alice")
    sink.pause()
    sink.resume()
    sink.stop()
    assert ws.plugins.data_stream("ticks").status() is SourceStatus.PAUSED


# --------------------------------------------------------------------------------------------
# tool


def test_every_tool_export(ws: blocksync.Workspace) -> None:
    tool = ws.plugins.tool("tool")
    assert isinstance(tool, WasmTool) and isinstance(tool, Tool)
    version = ws.plugins.get("tool").version
    assert tool.name() == "echo"
    assert tool.description() == "Repeats the given text."
    assert json.loads(tool.parameters_schema())["required"] == ["text"]
    assert json.loads(tool.output_schema())["type"] == "object"
    assert tool.usage_rule() == "Use it to test that tools work; never for real answers."
    out = tool.execute('{"text": "hi", "times": 3}', '{"agent_id": "alice", "call_id": "c1"}')
    assert json.loads(out) == {
        "echo": "hihihi",
        "agent": "alice",
        "call": "c1",
        "meta_keys": ["agent_id", "call_id"],
    }
    error = failed(tool.execute, "{}", "{}")
    assert (error.plugin, error.version, error.call) == ("tool", version, "tool.execute")
    assert str(error) == f"plugin 'tool' ({version}) tool.execute: ValueError: missing 'text'"
    assert ws.plugins.tool("sink").usage_rule() is None


# --------------------------------------------------------------------------------------------
# ws.plugins and blocksync.toml


def test_plugins_by_key(ws: blocksync.Workspace) -> None:
    with pytest.raises(NotFound, match=r"no plugin named 'nope' \(known: echo, files_none, "):
        ws.plugins.tool("nope")
    assert ws.plugins.get("echo") is ws.plugins.get("echo")  # loaded once
    with pytest.raises(
        PluginRefused,
        match=r"plugin 'tool' .*: does not export data-block "
        r"\(it exports tool\)",
    ):
        ws.plugins.data_block("tool")
    with pytest.raises(
        PluginRefused,
        match="does not export data-block "
        r"\(it exports data-stream\)",
    ):
        ws.plugins.data_block("stream")
    # kitchen_sink exports all three; configured as a stream it is not a data-block source
    with pytest.raises(
        PluginRefused,
        match=r"plugin 'sink_stream' \(sha256:\w+\): is configured "
        "with source_kind = 'stream', not as a data-block",
    ):
        ws.plugins.data_block("sink_stream")
    assert ws.plugins.data_stream("sink_stream").name() == "Kitchen sink"
    assert ws.plugins.tool("sink_stream").name() == "Kitchen sink"  # tools go with any kind
    spec = ws.plugins.specs["wat"]
    assert spec.agent == "alice" and spec.owners == frozenset({"alice"})
    assert spec.limits == Limits(timeout=0.5)


BAD_TABLES: dict[str, tuple[dict[str, Any], str]] = {
    "no path": ({}, "`path` (the .wasm file) is required"),
    "type": (
        {"type": "ftp", "path": "x.wasm"},
        'type \'ftp\' is not supported; use "file" or "wasm"',
    ),
    "source_kind": ({"path": "x.wasm", "source_kind": "sideways"}, ".source_kind must be"),
    "dir_mode": ({"path": "x.wasm", "dir_mode": "rw"}, ".dir_mode must be"),
    "config": ({"path": "x.wasm", "config": "x"}, ".config must be a table"),
    "allowed_hosts": ({"path": "x.wasm", "allowed_hosts": "h"}, ".allowed_hosts must be a list"),
    "sha256": ({"path": "x.wasm", "sha256": "abc"}, ".sha256 must be 64 hex digits"),
    "limit value": (
        {"path": "x.wasm", "limits": {"timeout": -1}},
        ".limits.timeout must be a positive number",
    ),
    "limit name": ({"path": "x.wasm", "limits": {"cpu": 1}}, ".limits: unknown limit 'cpu'"),
    "rule shape": (
        {"path": "x.wasm", "permission_rules": [{"pattern": "**"}]},
        ".permission_rules[0] must be { pattern",
    ),
    "rule level": (
        {"path": "x.wasm", "permission_rules": [{"pattern": "**", "permission": "root"}]},
        ".permission_rules[0].permission must be one of read-only, read-write, admin",
    ),
    "unknown key": ({"path": "x.wasm", "colour": "red"}, ": unknown key(s) colour"),
}


@pytest.mark.parametrize("case", sorted(BAD_TABLES))
def test_config_errors_name_the_table(case: str, tmp_path: Path) -> None:
    table, message = BAD_TABLES[case]
    store = make_store_for(tmp_path / "store", {"alice": {"bad": table}})
    with blocksync.open(store) as ws, pytest.raises(ConfigError) as info:
        ws.plugins  # noqa: B018  (the tables are checked on first use)
    assert str(info.value).startswith("[agents.alice.data_sources.bad]")
    assert message in str(info.value)


def test_config_errors_across_tables(tmp_path: Path, built: dict[str, Path]) -> None:
    twice = make_store_for(
        tmp_path / "twice",
        {"alice": {"x": {"path": built["echo_tool"]}}, "bob": {"x": {"path": built["echo_tool"]}}},
    )
    with (
        blocksync.open(twice) as ws,
        pytest.raises(
            ConfigError, match=("data source 'x' is configured for agents 'alice' and 'bob'")
        ),
    ):
        ws.plugins  # noqa: B018
    caps = make_store_for(tmp_path / "caps", {}, extra="[limits]\nwall = 3\n")
    with blocksync.open(caps) as ws, pytest.raises(ConfigError, match=r"\[limits\]: unknown limit"):
        ws.plugins  # noqa: B018


def test_user_caps_bound_what_a_plugin_asks(tmp_path: Path, built: dict[str, Path]) -> None:
    store = make_store_for(
        tmp_path / "store",
        {
            "alice": {
                "t": {
                    "path": built["echo_tool"],
                    "limits": {"timeout": 30.0, "memory_mb": 32, "fuel": 10**12},
                }
            }
        },
        extra="[limits]\ntimeout = 2.0\nmemory_mb = 128\nfuel = 1_000_000_000_000_000\n",
    )
    with blocksync.open(store) as ws:
        assert ws.plugins.specs["t"].limits == Limits(timeout=2.0, memory_mb=32, fuel=10**12)
        assert ws.plugins.tool("t").name() == "echo"


# --------------------------------------------------------------------------------------------
# Many threads, asyncio


def test_calls_from_many_threads_are_serialised(
    ws: blocksync.Workspace, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    ticks = ws.plugins.tool("ticks")
    echo = ws.plugins.data_block("echo")
    barrier = threading.Barrier(8)

    def worker(n: int) -> list[int]:
        barrier.wait()
        out = []
        for i in range(10):
            out.append(int(ticks.execute(json.dumps({"note": f"{n}-{i}"}), "{}")))
            assert echo.name() == "Echo block source"
        return out

    with ThreadPoolExecutor(8) as pool:
        results = [r for batch in pool.map(worker, range(8)) for r in batch]
    # the guest counts its calls: each of the 80 saw a different count, so none overlapped
    assert sorted(results) == list(range(1, 81))
    assert len(ws.notifications.list()) == 80
    threads = {str(r.threadName) for r in caplog.records if r.name == "blocksync.plugin.echo"}
    assert len(threads) == 1 and threads.pop().startswith("plugin-echo")


def test_acall_runs_off_the_event_loop(ws: blocksync.Workspace) -> None:
    plugin = ws.plugins.get("wat")

    async def main() -> tuple[int, list[Any]]:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        task = asyncio.create_task(ticker())
        with pytest.raises(PluginTrapped) as info:
            await plugin.acall("tool", "description")  # loops until its 0.5 s limit
        assert info.value.reason == "timeout"
        during = ticks
        names = await asyncio.gather(*(plugin.acall("tool", "name") for _ in range(5)))
        task.cancel()
        return during, names

    during, names = asyncio.run(main())
    assert during >= 10, "the event loop kept running while the plugin spun (0.5 s)"
    assert names == ["hostile-tool"] * 5


# --------------------------------------------------------------------------------------------
# A granted folder


def test_a_granted_folder_is_readable_and_read_only_by_default(
    ws: blocksync.Workspace, tmp_path: Path
) -> None:
    files = ws.plugins.data_block("files_ro")
    assert ws.plugins.get("files_ro").spec.dir_mode == "read-only"
    assert files.reconcile(["note.md", "gone.md"]) == [
        NoChange("note.md"),
        Resolved("gone.md", "deleted"),
    ]
    assert failed(files.load, "nope.md", "alice").detail.startswith("FileNotFoundError:")
    error = failed(files.create, "new.md", "written by the plugin\n", "alice")
    assert error.call == "data-block.create"
    assert error.detail.startswith("PermissionError: ") and "'/data/new.md'" in error.detail
    assert not (tmp_path / "ro" / "new.md").exists()
    assert sorted(p.name for p in (tmp_path / "ro").iterdir()) == ["note.md"]


def test_a_read_write_folder_is_writable_and_nothing_outside_it(
    ws: blocksync.Workspace, tmp_path: Path
) -> None:
    files = ws.plugins.data_block("files_rw")
    assert ws.plugins.get("files_rw").spec.dir_mode == "read-write"
    # create writes the file, then load's memory-create-block is refused by echo_files' own
    # rule (`**` read-only): the write to the folder happened all the same
    error = failed(files.create, "new.md", "written by the plugin\n", "alice")
    assert error.detail == (
        "HostError: cannot create alice/new.md: the path is read-only for this plugin "
        "(read-write needed)"
    )
    assert (tmp_path / "rw" / "new.md").read_text(encoding="utf-8") == "written by the plugin\n"
    assert failed(files.create, "../escaped.md", "x", "alice").detail.startswith("PermissionError")
    assert not (tmp_path / "escaped.md").exists()
    assert not ws.blocks.exists("alice", "new.md")


def test_the_plugin_reads_the_granted_folders_content(ws: blocksync.Workspace) -> None:
    """What echo_files read reaches a block. Its own rule (`**` read-only) refuses the block
    write through ws.plugins, so this loads it directly and sets read-write rules: a grant made
    here for the test, not something a plugin can do."""
    spec = ws.plugins.specs["files_ro"]
    plugin = load(spec, HostServices(ws.blocks, ws.notifications), ws.cache_path)
    try:
        plugin.host.plugin_rules = (PermissionRule("**", PermissionLevel.READ_WRITE),)
        files = WasmDataBlock(plugin)
        assert files.source_id() == "echo-files:/data"
        assert files.load("note.md", "alice").label == "note.md"
        assert ws.blocks.read("alice", "note.md").content == "from disk\n"
    finally:
        plugin.close()


def test_no_folder_unless_granted(ws: blocksync.Workspace) -> None:
    files = ws.plugins.data_block("files_none")
    assert ws.plugins.get("files_none").spec.dir is None
    error = failed(files.reconcile, ["note.md"])
    assert error.detail.startswith("FileNotFoundError:")
    assert failed(files.load, "note.md", "alice").detail.startswith("FileNotFoundError:")
