"""The sandbox: hostile plugins are stopped or refused with a clear message naming the plugin and
the reason, the store is left exactly as it was, and the host keeps working.

Two kinds of hostile fixture, both real components on real wasmtime:

* fixtures/wat/hostile_tool.wat, hand-written (compiles in milliseconds): an infinite loop, a
  memory-growth bomb, a trap and a 32 MiB result, one per export;
* guests written with the Python SDK (fixtures/plugins/hostile_*), configured in a real store's
  blocksync.toml under agent alice and obtained through ``ws.plugins``: they write another agent's
  block, write a read-only label, delete without admin, fetch a host outside their allowlist,
  exhaust memory and return too much.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

import blocksync
from blocksync.errors import PluginCallFailed, PluginTrapped
from blocksync.plugins import Limits
from blocksync.shared.wit import BlockRef

from .conftest import assert_git_fsck, git
from .plugin_builds import built_plugins, wat_fixture
from .stores import make_store

ROOT = Path(__file__).resolve().parent.parent
WAT = ROOT / "fixtures" / "wat"

SDK_FIXTURES = (
    "echo_tool",
    "hostile_other_agent",
    "hostile_readonly",
    "hostile_delete",
    "hostile_http",
    "hostile_bigresult",
    "hostile_membomb",
)


# --------------------------------------------------------------------------------------------
# A store with plugins configured in blocksync.toml


def head(store: Path) -> str:
    return git(store / "repo", "rev-parse", "--verify", "refs/heads/main").strip()


def assert_store_healthy(ws: blocksync.Workspace) -> None:
    report = ws.fsck()
    assert report.ok, report.problems
    assert_git_fsck(ws.repo_path)


@pytest.fixture(scope="module")
def built() -> dict[str, Path]:
    return built_plugins(SDK_FIXTURES)


@pytest.fixture(scope="module")
def hostile_wasm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return wat_fixture("hostile_tool", tmp_path_factory.mktemp("wat"))


# --------------------------------------------------------------------------------------------
# The WAT hostile tool: limits


@pytest.fixture
def wat_ws(
    tmp_path: Path, hostile_wasm: Path, built: dict[str, Path]
) -> Iterator[blocksync.Workspace]:
    store = make_store(
        tmp_path / "store",
        {
            # asks for 30 s; the user's [limits] cap gives it 1 s
            "wat": {"path": hostile_wasm, "limits": {"timeout": 30.0, "memory_mb": 64}},
            "wat_fuel": {"path": hostile_wasm, "limits": {"fuel": 10_000_000}},
            "good": {"path": built["echo_tool"]},
        },
        caps={"timeout": 1.0},
    )
    with blocksync.open(store, author="test:author") as ws:
        ws.blocks.create("alice", "notes", "hello\n")
        before = head(store)
        yield ws
        assert head(store) == before, "a plugin failure must not touch the store"
        good = ws.plugins.tool("good")  # the same process still loads and runs a good plugin
        assert json.loads(good.execute('{"text": "ok"}', "{}"))["echo"] == "ok"
        assert_store_healthy(ws)


def test_the_limits_are_the_users_caps(wat_ws: blocksync.Workspace) -> None:
    assert wat_ws.plugins.get("wat").spec.limits == Limits(timeout=1.0, memory_mb=64)
    assert wat_ws.plugins.get("wat_fuel").spec.limits == Limits(timeout=1.0, fuel=10_000_000)


def test_an_infinite_loop_is_stopped_within_its_time_limit_plus_one_second(
    wat_ws: blocksync.Workspace, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="blocksync.plugin.wat")
    plugin = wat_ws.plugins.get("wat")
    tool = wat_ws.plugins.tool("wat")
    timeout = plugin.spec.limits.timeout
    started = time.monotonic()
    with pytest.raises(PluginTrapped) as info:
        tool.description()
    elapsed = time.monotonic() - started
    assert elapsed < timeout + 1.0  # the specification's bound, not a benchmark
    assert elapsed >= timeout * 0.9, "it ran until its limit"
    error = info.value
    assert error.reason == "timeout"
    assert (error.plugin, error.version, error.call) == ("wat", plugin.version, "tool.description")
    assert str(error) == (
        f"plugin 'wat' ({plugin.version}) tool.description: stopped after its time limit of 1 s"
    )
    assert [r.getMessage() for r in caplog.records if r.name == "blocksync.plugin.wat"] == [
        "about to spin"
    ]
    # the same Plugin object serves the next call, from a fresh instance
    assert wat_ws.plugins.get("wat") is plugin
    assert tool.name() == "hostile-tool"
    assert tool.usage_rule() is None


def test_a_loop_in_one_plugin_does_not_hold_up_another(wat_ws: blocksync.Workspace) -> None:
    spinning = wat_ws.plugins.tool("wat")
    good = wat_ws.plugins.tool("good")
    good.name()  # instantiated before the clock starts
    failures: list[BaseException] = []

    def spin() -> None:
        try:
            spinning.description()
        except PluginTrapped as exc:
            failures.append(exc)

    thread = threading.Thread(target=spin)
    thread.start()
    time.sleep(0.1)
    assert good.name() == "echo"
    assert thread.is_alive(), "the good plugin answered while the other one still spun"
    thread.join(5)
    assert [getattr(f, "reason", None) for f in failures] == ["timeout"]


def test_a_memory_bomb_is_stopped_at_the_memory_cap(wat_ws: blocksync.Workspace) -> None:
    tool = wat_ws.plugins.tool("wat")
    with pytest.raises(PluginTrapped) as info:
        tool.parameters_schema()
    assert info.value.reason == "trap"
    assert info.value.call == "tool.parameters-schema"
    assert "memory growth refused at its cap of 64 MiB" in str(info.value)
    assert str(info.value).startswith("plugin 'wat' (sha256:")
    assert tool.name() == "hostile-tool"


def test_a_trap_discards_the_instance(wat_ws: blocksync.Workspace) -> None:
    plugin = wat_ws.plugins.get("wat")
    tool = wat_ws.plugins.tool("wat")
    assert tool.name() == "hostile-tool"
    first = plugin._live
    with pytest.raises(PluginTrapped) as info:
        tool.output_schema()
    assert info.value.reason == "trap"
    assert "tool.output-schema: trapped: " in str(info.value)
    assert "unreachable" in str(info.value)
    assert plugin._live is None
    assert tool.name() == "hostile-tool"
    assert plugin._live is not None and plugin._live is not first


def test_an_oversized_result_is_refused(wat_ws: blocksync.Workspace) -> None:
    tool = wat_ws.plugins.tool("wat")
    with pytest.raises(PluginTrapped) as info:
        tool.execute("{}", "{}")
    assert info.value.reason == "result-size"
    assert "tool.execute: result of 33554450 bytes is over the cap of 16 MiB" in str(info.value)
    assert tool.name() == "hostile-tool"


def test_fuel_stops_the_loop(wat_ws: blocksync.Workspace) -> None:
    tool = wat_ws.plugins.tool("wat_fuel")
    started = time.monotonic()
    with pytest.raises(PluginTrapped) as info:
        tool.description()
    assert time.monotonic() - started < 1.0, "fuel, not the clock, stopped it"
    assert info.value.reason == "fuel"
    assert str(info.value).endswith("tool.description: ran out of fuel (10000000)")
    assert tool.name() == "hostile-tool"  # fuel is refilled for every call
    assert tool.name() == "hostile-tool"


def test_every_failure_in_a_row_then_normal_service(wat_ws: blocksync.Workspace) -> None:
    tool = wat_ws.plugins.tool("wat")
    reasons = []
    for call in (tool.output_schema, tool.parameters_schema, lambda: tool.execute("{}", "{}")):
        with pytest.raises(PluginTrapped) as info:
            call()
        reasons.append(info.value.reason)
        assert tool.name() == "hostile-tool"
    assert reasons == ["trap", "trap", "result-size"]


# --------------------------------------------------------------------------------------------
# SDK hostile guests against a real store


class Recorder(ThreadingHTTPServer):
    """A loopback HTTP server that counts every connection it accepts."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.connections = 0

    def verify_request(self, request: Any, client_address: Any) -> bool:
        self.connections += 1
        return True


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    do_PUT = do_POST = do_GET

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def server() -> Iterator[Recorder]:
    srv = Recorder()
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def sdk_ws(tmp_path: Path, built: dict[str, Path]) -> Iterator[blocksync.Workspace]:
    store = make_store(
        tmp_path / "store",
        {
            "other": {"path": built["hostile_other_agent"], "config": {"victim": "bob"}},
            "readonly": {"path": built["hostile_readonly"]},
            "narrowed": {
                "path": built["hostile_readonly"],
                "permission_rules": [
                    {"pattern": "free/**", "permission": "read-only"},
                    {"pattern": "**", "permission": "admin"},  # cannot widen readonly/**
                ],
            },
            "deleter": {"path": built["hostile_delete"], "config": {"owner": "alice"}},
            "fetch": {"path": built["hostile_http"], "allowed_hosts": ["127.0.0.1:1"]},
            "big": {
                "path": built["hostile_bigresult"],
                "limits": {"result_mb": 1},
                "config": {"description_mib": 2},
            },
            "bomb": {"path": built["hostile_membomb"], "limits": {"memory_mb": 64}},
            "good": {"path": built["echo_tool"]},
        },
    )
    with blocksync.open(store, author="test:author") as ws:
        ws.blocks.create("bob", "diary", "bob's own words\n")
        ws.blocks.create("alice", "notes", "alice's notes\n")
        ws.blocks.create("alice", "readonly/locked", "do not touch\n")
        before = head(store)
        yield ws
        assert head(store) == before, "a refused plugin must not touch the store"
        assert ws.blocks.read("bob", "diary").content == "bob's own words\n"
        assert ws.blocks.read("alice", "notes").content == "alice's notes\n"
        assert ws.blocks.read("alice", "readonly/locked").content == "do not touch\n"
        assert [(b.owner, b.label) for b in ws.blocks.list()] == [
            ("alice", "notes"),
            ("alice", "readonly/locked"),
            ("bob", "diary"),
        ]
        good = ws.plugins.tool("good")
        assert json.loads(good.execute('{"text": "still ok"}', "{}"))["echo"] == "still ok"
        assert_store_healthy(ws)


def refused(call: Any, *args: Any) -> PluginCallFailed:
    with pytest.raises(PluginCallFailed) as info:
        call(*args)
    return info.value


def test_writing_another_agents_block_is_refused(sdk_ws: blocksync.Workspace) -> None:
    source = sdk_ws.plugins.data_block("other")
    version = sdk_ws.plugins.get("other").version
    bob = "this plugin is attached only to alice"
    cases = {
        "load": (source.load, ("diary", "alice"), f"cannot create a block of 'bob': {bob}"),
        "create": (source.create, ("new", "x", "alice"), f"cannot create a block of 'bob': {bob}"),
        "save": (
            source.save,
            (BlockRef("", "diary", "alice"),),
            f"cannot update a block of 'bob': {bob}",
        ),
        "delete": (source.delete, ("diary",), f"cannot delete a block of 'bob': {bob}"),
        "diff": (
            source.diff,
            (BlockRef("", "diary", "alice"), None, None),
            f"cannot read a block of 'bob': {bob}",
        ),
    }
    for function, (call, args, reason) in cases.items():
        error = refused(call, *args)
        assert (error.plugin, error.version, error.call) == (
            "other",
            version,
            f"data-block.{function}",
        )
        assert (
            str(error) == f"plugin 'other' ({version}) data-block.{function}: HostError: {reason}"
        )


def test_writing_a_read_only_label_is_refused(sdk_ws: blocksync.Workspace) -> None:
    source = sdk_ws.plugins.data_block("readonly")
    error = refused(source.load, "readonly/locked", "alice")
    assert error.plugin == "readonly" and error.call == "data-block.load"
    assert error.detail == (
        "HostError: cannot update alice/readonly/locked: the path is read-only for this plugin "
        "(read-write needed)"
    )
    error = refused(source.save, BlockRef("", "readonly/locked", "alice"))
    assert "cannot update alice/readonly/locked: the path is read-only" in error.detail
    error = refused(source.create, "readonly/new", "planted\n", "alice")
    assert "cannot create alice/readonly/new: the path is read-only" in error.detail
    # the user's rules narrow the plugin's, never widen them
    narrowed = sdk_ws.plugins.data_block("narrowed")
    error = refused(narrowed.create, "free/note", "x", "alice")
    assert error.plugin == "narrowed"
    assert "cannot create alice/free/note: the path is read-only for this plugin" in error.detail
    error = refused(narrowed.load, "readonly/locked", "alice")
    assert "cannot update alice/readonly/locked: the path is read-only" in error.detail


def test_deleting_without_admin_is_refused(sdk_ws: blocksync.Workspace) -> None:
    source = sdk_ws.plugins.data_block("deleter")
    for call, args in ((source.delete, ("notes",)), (source.load, ("notes", "alice"))):
        error = refused(call, *args)
        assert error.plugin == "deleter"
        assert error.detail == (
            "HostError: cannot delete alice/notes: the path is read-write for this plugin "
            "(admin needed)"
        )
    assert sdk_ws.blocks.exists("alice", "notes")


def test_http_outside_the_allowlist_is_refused_before_any_request(
    sdk_ws: blocksync.Workspace, server: Recorder
) -> None:
    tool = sdk_ws.plugins.tool("fetch")
    port = server.server_address[1]
    seen = server.connections
    for via in ("get", "post", "request"):
        params = json.dumps({"url": f"http://127.0.0.1:{port}/steal", "via": via})
        error = refused(tool.execute, params, "{}")
        assert error.plugin == "fetch" and error.call == "tool.execute"
        assert error.detail == (
            f"HostError: host 127.0.0.1:{port} is not in the plugin's allowed_hosts (127.0.0.1:1)"
        )
    for url in ("file:///etc/passwd", "gopher://127.0.0.1/", "http:///nohost"):
        error = refused(tool.execute, json.dumps({"url": url, "via": "request"}), "{}")
        assert "only http:// and https:// URLs with a host are allowed" in error.detail
    assert server.connections == seen, "nothing may reach a host outside the allowlist"


def test_a_memory_bomb_guest_is_stopped(sdk_ws: blocksync.Workspace) -> None:
    tool = sdk_ws.plugins.tool("bomb")
    assert sdk_ws.plugins.get("bomb").spec.limits.memory_mb == 64
    with pytest.raises(PluginTrapped) as info:
        tool.execute("{}", "{}")
    assert info.value.plugin == "bomb" and info.value.call == "tool.execute"
    assert info.value.reason == "trap"
    assert "memory growth refused at its cap of 64 MiB" in str(info.value)
    assert tool.name() == "mem-bomb"  # a fresh instance (the old one hoarded all its memory)
    with pytest.raises(PluginTrapped):
        tool.execute("{}", "{}")
    assert tool.name() == "mem-bomb"


def test_a_too_big_result_is_refused(sdk_ws: blocksync.Workspace) -> None:
    tool = sdk_ws.plugins.tool("big")
    with pytest.raises(PluginTrapped) as info:
        tool.execute('{"mib": 2}', "{}")
    assert info.value.reason == "result-size"
    assert info.value.plugin == "big" and info.value.call == "tool.execute"
    assert "is over the cap of 1 MiB" in str(info.value)
    with pytest.raises(PluginTrapped) as info:
        tool.description()  # any call, not only the ones with a result<>
    assert info.value.reason == "result-size" and info.value.call == "tool.description"
    assert tool.name() == "big-result"
    assert len(json.loads(tool.execute('{"mib": 0}', "{}"))) == 0  # under the cap: fine
