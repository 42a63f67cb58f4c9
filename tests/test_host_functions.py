"""Host functions (WIT `host`, `sync`, `http`) called by real guests against a real store.

The guests are the SDK fixtures echo_block (memory, log, get-config, sync), echo_stream
(emit-notification, get-config) and kitchen_sink (http-get, http-post, http.request), built with
componentize-py, configured in blocksync.toml and obtained through ``ws.plugins``. Commits are
checked with the real git CLI, HTTP goes to a real server on 127.0.0.1 started here.

About `sync`: `merge3`, `block-history` and `block-read-at` are host functions of their own.
`base`, `bindings`, `set-base` and `forget` keep a data-block source's sync bases: a plugin a
store loads (``ws.plugins``) gets them backed by ``refs/sync/<key>`` (tests/test_plugin_sync.py);
`define` without them (as below, called directly) answers "no bases". Some tests supply bases
themselves through the runtime's documented ``sync_bases`` parameter (a small dict).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.metadata import version as package_version
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from wasmtime.component import Variant

import blocksync
from blocksync.errors import PluginCallFailed, PluginTrapped
from blocksync.plugins import HostServices, WasmDataBlock, load
from blocksync.plugins.host.hostfuncs import HOST, HTTP, SYNC, HostContext, NoBases, define
from blocksync.plugins.tooling.build import build, guest_sdk_dir, wit_dir
from blocksync.shared.wit import BlockRef, VersionInfo
from blocksync.store.blocks import BlockStore
from blocksync.sync.protocol import NeedsResolution, NoChange, Resolved

from .conftest import assert_git_fsck, git
from .plugin_builds import CACHE, _files, built_plugins
from .stores import make_store

ROOT = Path(__file__).resolve().parent.parent
NO_BASES = "sync bases are kept only for data-block sources during reconcile"


# --------------------------------------------------------------------------------------------
# Plugins, a store, a server


#: A WASI guest writing to its real stdout/stderr (fd 1 and 2), which the SDK's print() redirect
#: never touches: the host must capture those bytes as log lines too.
RAW_STDIO_APP = """\
import os

from pattern_extension_api import ToolExtension, register_extension


class RawStdio(ToolExtension):
    needs_filesystem = True  # a WASI build: the guest has a real stdout and stderr

    def name(self):
        return "raw-stdio"

    def description(self):
        return "writes to file descriptors 1 and 2"

    def parameters_schema(self):
        return {"type": "object"}

    def output_schema(self):
        return {"type": "null"}

    def execute(self, params, meta):
        os.write(1, b"raw stdout line\\npartial ")
        os.write(1, b"line\\n")
        os.write(2, b"raw stderr line\\n")
        os.write(1, b"no newline at the end")
        return None


register_extension(RawStdio)
"""


def raw_stdio_plugin(tmp: Path) -> Path:
    """RAW_STDIO_APP built with componentize-py, cached beside the fixture builds."""
    digest = hashlib.sha256(RAW_STDIO_APP.encode())
    for folder in (guest_sdk_dir(), wit_dir()):
        for path in _files(folder):
            digest.update(path.relative_to(folder).as_posix().encode() + b"\0")
            digest.update(hashlib.sha256(path.read_bytes()).digest())
    digest.update(package_version("componentize-py").encode())
    target = CACHE / f"raw-stdio-{digest.hexdigest()[:32]}.wasm"
    if not target.is_file():
        source = tmp / "raw_stdio"
        source.mkdir()
        (source / "app.py").write_text(RAW_STDIO_APP, encoding="utf-8")
        build(source, target)  # written atomically: a racing run just builds it twice
    return target


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = built_plugins(["echo_block", "echo_stream", "kitchen_sink"])
    out["raw_stdio"] = raw_stdio_plugin(tmp_path_factory.mktemp("raw"))
    return out


class Server(ThreadingHTTPServer):
    """A loopback server recording every connection and request."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.connections = 0
        self.requests: list[tuple[str, str, dict[str, str], bytes]] = []
        self.release = threading.Event()  # ends the slow handlers at teardown

    def verify_request(self, request: Any, client_address: Any) -> bool:
        self.connections += 1
        return True

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class Handler(BaseHTTPRequestHandler):
    server: Server

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self.server.requests.append((self.command, self.path, dict(self.headers.items()), body))
        route = self.path
        if route == "/ok":
            self._send(200, b"hello" + (b":" + body if body else b""), "text/plain")
        elif route == "/bytes":
            self._send(200, b"\x00\xff\xfebinary", "application/octet-stream")
        elif route == "/500":
            self._send(500, b"boom", "text/plain")
        elif route == "/slow":
            self.server.release.wait(5)
            self._send(200, b"late", "text/plain")
        elif route == "/drip":  # headers at once, then one byte every 0.1 s
            self.send_response(200)
            self.send_header("Content-Length", "100")
            self.end_headers()
            for _ in range(100):
                if self.server.release.wait(0.1):
                    return
                try:
                    self.wfile.write(b"x")
                    self.wfile.flush()
                except OSError:
                    return
        elif route == "/big":
            self._send(200, b"x" * (2 << 20), "text/plain")
        elif route == "/redirect":
            self.send_response(302)
            self.send_header("Location", "http://127.0.0.1:1/elsewhere")
            self.send_header("Content-Length", "0")
            self.end_headers()
        else:
            self._send(404, b"no such route", "text/plain")

    do_GET = do_POST = do_PUT = do_DELETE = _answer

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("X-Test", "yes")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    srv = Server()
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.release.set()
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def store(tmp_path: Path, built: dict[str, Path], server: Server) -> Iterator[Path]:
    (tmp_path / "granted").mkdir()
    path = make_store(
        tmp_path / "store",
        {
            "echo": {
                "path": built["echo_block"],
                "config": {"files": "a.md=disk text\n;b.md=b", "name": "main"},
            },
            "stream": {
                "path": built["echo_stream"],
                "source_kind": "stream",
                "config": {"count": 3},
            },
            "sink": {
                "path": built["kitchen_sink"],
                "source_kind": "both",
                "allowed_hosts": [f"127.0.0.1:{server.server_address[1]}"],
                "limits": {"http_timeout": 0.5, "http_response_mb": 1},
            },
            # a granted folder beside the store (never one containing it)
            "raw": {"path": built["raw_stdio"], "dir": str(tmp_path / "granted")},
            # get-config of values that are not strings: JSON text
            "cfg_int": {"path": built["echo_block"], "config": {"name": 42}},
            "cfg_float": {"path": built["echo_block"], "config": {"name": 1.5}},
            "cfg_bool": {"path": built["echo_block"], "config": {"name": True}},
            "cfg_list": {"path": built["echo_block"], "config": {"name": [1, "two"]}},
            "cfg_table": {"path": built["echo_block"], "config": {"name": {"a": 1, "b": "é"}}},
            "cfg_none": {"path": built["echo_block"]},
        },
    )
    yield path
    assert_git_fsck(path / "repo")


@pytest.fixture
def ws(store: Path) -> Iterator[blocksync.Workspace]:
    with blocksync.open(store, author="human:test") as workspace:
        yield workspace
        assert workspace.fsck().ok


def authors(ws: blocksync.Workspace, owner: str, label: str) -> list[str]:
    """Authors of the commits touching the block, newest first, as real git reports them."""
    out = git(
        ws.repo_path,
        "log",
        "--format=%an",
        "refs/heads/main",
        "--",
        BlockStore.git_path(owner, label),
    )
    return out.split()


def ref(label: str, owner: str = "alice") -> BlockRef:
    return BlockRef(BlockStore.git_path(owner, label), label, owner)


def failed(call: Callable[..., Any], *args: Any) -> PluginCallFailed:
    with pytest.raises(PluginCallFailed) as info:
        call(*args)
    return info.value


def plugin_log(caplog: pytest.LogCaptureFixture, key: str) -> list[tuple[int, str]]:
    return [
        (r.levelno, r.getMessage()) for r in caplog.records if r.name == f"blocksync.plugin.{key}"
    ]


# --------------------------------------------------------------------------------------------
# host: memory-*


def test_memory_functions_commit_as_the_plugin(ws: blocksync.Workspace) -> None:
    echo = ws.plugins.data_block("echo")
    # load = memory-create-block, then sync.set-base (refs/sync/echo: see test_plugin_sync.py)
    assert echo.load("a.md", "alice") == ref("a.md")
    block = ws.blocks.read("alice", "a.md")
    assert block.content == "disk text\n"
    assert block.meta.description == "echoed from the echo_block plugin"
    assert authors(ws, "alice", "a.md") == ["plugin:echo"]

    ws.blocks.update("alice", "a.md", "agent edit\n")
    # diff = sync.block-read-at (from) + host.memory-read-block (to = current)
    assert echo.diff(ref("a.md"), "1", None) == (
        "--- 1\n+++ current\n@@ -1 +1 @@\n-disk text\n+agent edit\n"
    )
    # rollback = sync.block-read-at + host.memory-update-block
    echo.rollback(ref("a.md"), "1")
    assert ws.blocks.read("alice", "a.md").content == "disk text\n"
    assert ws.blocks.read("alice", "a.md").version == 3
    assert authors(ws, "alice", "a.md") == ["plugin:echo", "human:test", "plugin:echo"]
    # the provenance names the plugin's file too: its sha256, as the plugin list shows it
    sha = hashlib.sha256(ws.plugins.specs["echo"].path.read_bytes()).hexdigest()
    made = [v.made_by for v in ws.blocks.history("alice", "a.md")]
    assert made == [f"plugin:echo@{sha[:12]}", "human:test", f"plugin:echo@{sha[:12]}"]
    trailers = git(ws.repo_path, "log", "-1", "--format=%(trailers:key=Blocksync-Author)")
    assert trailers.strip() == f"Blocksync-Author: plugin:echo@{sha[:12]}"
    # history = sync.block-history, newest first
    history = echo.history(ref("a.md"))
    assert [v.version_id for v in history] == ["3", "2", "1"]
    assert all(isinstance(v, VersionInfo) for v in history)
    assert "(plugin:echo)" in (history[0].description or "")
    assert "(human:test)" in (history[1].description or "")
    assert history[0].timestamp[:2] == "20" and "T" in history[0].timestamp


def test_memory_function_errors_reach_the_plugin_as_err(ws: blocksync.Workspace) -> None:
    echo = ws.plugins.data_block("echo")
    ws.blocks.create("alice", "a.md", "already here\n")
    ws.blocks.create("alice", "private/p", "secret\n")
    before = ws.blocks.head()
    cases: list[tuple[tuple[Any, ...], str]] = [
        ((echo.load, "a.md", "alice"), "block 'a.md' for owner 'alice' already exists"),
        (
            (echo.load, "b.md", "bob"),
            "cannot create a block of 'bob': this plugin is attached only to alice",
        ),
        ((echo.diff, ref("missing"), None, None), "no block 'missing' for owner 'alice'"),
        ((echo.rollback, ref("a.md"), "9"), "block alice/a.md has no version 9"),
        # echo_block's own rules: private/** is read-only (reading it is fine, writing is not)
        (
            (echo.rollback, ref("private/p"), "1"),
            (
                "cannot update alice/private/p: the path is read-only for this plugin "
                "(read-write needed)"
            ),
        ),
    ]
    for (call, *args), message in cases:
        assert failed(call, *args).detail == f"HostError: {message}"
    assert ws.blocks.head() == before


def answering_bindings(
    bindings: Callable[[], Any],
) -> Callable[[HostContext, tuple[str, ...]], NoBases]:
    """What ``load(..., sync_bases=...)`` takes: no bases, but ``bindings`` answering bindings."""

    class Bases(NoBases):
        def bindings(self) -> Any:
            return bindings()

    return lambda host, exports: Bases()


class DictBases(NoBases):
    """Sync bases in a dict, supplied through ``load(..., sync_bases=...)``: a stand-in for the
    reconciler of issue 4, so that flows needing a base (delete among them) can run today.
    ``merge3`` is deliberately not supplied: the host's own answers."""

    def __init__(self) -> None:
        self.bases: dict[str, tuple[Any, str]] = {}

    @staticmethod
    def _binding(path: str, block: Any) -> SimpleNamespace:
        return SimpleNamespace(path=path, block=block)

    def base(self, path: str) -> Any:
        found = self.bases.get(path)
        return None if found is None else (self._binding(path, found[0]), found[1])

    def bindings(self) -> list[Any]:
        return [self._binding(p, b) for p, (b, _) in self.bases.items()]

    def set_base(self, path: str, block: Any, content: str) -> None:
        self.bases[path] = (block, content)

    def forget(self, path: str) -> None:
        self.bases.pop(path, None)

    def factory(self, host: HostContext, exports: tuple[str, ...]) -> DictBases:
        return self


def test_memory_delete_and_the_flows_that_need_sync_bases(
    ws: blocksync.Workspace, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="blocksync.plugin.echo-bases")
    bases = DictBases()
    spec = dataclasses.replace(ws.plugins.specs["echo"], key="echo-bases")
    plugin = load(spec, HostServices(ws.blocks, ws.notifications), ws.cache_path, bases.factory)
    try:
        echo = WasmDataBlock(plugin)
        plugin.host.plugin_rules = tuple(echo.permission_rules())  # as PluginSet does

        block = echo.load("a.md", "alice")
        assert block == ref("a.md")
        assert bases.bases["a.md"][1] == "disk text\n"
        assert echo.reconcile(["a.md", "b.md"]) == [NoChange("a.md"), NoChange("b.md")]
        assert (logging.INFO, "reconcile 2 paths; 1 bound") in plugin_log(caplog, "echo-bases")

        ws.blocks.update("alice", "a.md", "agent edit\n")
        # the agent side changed: the host's merge3 merges, the block and the base advance
        assert echo.reconcile(["a.md"]) == [Resolved("a.md", "merged")]
        assert ws.blocks.read("alice", "a.md").content == "agent edit\n"
        assert bases.bases["a.md"][1] == "agent edit\n"
        # both sides changed the same line since an older base: merge3 refuses, a conflict
        bases.bases["a.md"] = (bases.bases["a.md"][0], "older\n")
        ws.blocks.update("alice", "a.md", "agent again\n")
        assert echo.reconcile(["a.md"]) == [
            NeedsResolution("a.md", "agent edit\n", "agent again\n")
        ]

        echo.save(block)  # memory-read-block + set-base
        assert bases.bases["a.md"][1] == "agent again\n"

        echo.delete("a.md")  # base + memory-delete-block (admin: echo's `**` rule) + forget
        assert not ws.blocks.exists("alice", "a.md")
        assert bases.bases == {}
        # (the clean merge equalled the agent's text: updating to it wrote no commit)
        assert authors(ws, "alice", "a.md") == [
            "plugin:echo-bases",
            "human:test",
            "human:test",
            "plugin:echo-bases",
        ]
        message = git(ws.repo_path, "log", "-1", "--format=%s", "refs/heads/main")
        assert message.strip() == "delete alice/a.md"
    finally:
        plugin.close()


def test_a_host_value_that_cannot_be_lowered_traps_that_call_only(ws: blocksync.Workspace) -> None:
    """A host-side bug (here: `bindings` answering 42, not a list) is that call's trap, naming
    plugin, call and host function (the guard lowers the value itself, so the error never
    reaches wasmtime-py's process-wide slot); the next call gets a fresh instance."""
    spec = dataclasses.replace(ws.plugins.specs["echo"], key="echo-buggy-host")
    plugin = load(
        spec,
        HostServices(ws.blocks, ws.notifications),
        ws.cache_path,
        answering_bindings(lambda: 42),
    )
    try:
        echo = WasmDataBlock(plugin)
        for _ in range(2):
            with pytest.raises(PluginTrapped) as info:
                echo.reconcile(["a.md"])
            assert info.value.reason == "trap"
            assert str(info.value) == (
                f"plugin 'echo-buggy-host' ({plugin.version}) data-block.reconcile: "
                "host function bindings failed: TypeError: expected list value"
            )
            assert echo.name() == "Echo block source"
    finally:
        plugin.close()


# --------------------------------------------------------------------------------------------
# sync without bases (issue 4), seen by a plugin and at the host functions themselves


class Recorder:
    """Stands in for a wasmtime linker root: records what `define` registers (names and the
    real host functions), so they can be listed and called directly."""

    def __init__(self) -> None:
        self.instances: dict[str, dict[str, Callable[..., Any]]] = {}

    @contextmanager
    def add_instance(self, name: str) -> Iterator[SimpleNamespace]:
        functions: dict[str, Callable[..., Any]] = {}
        self.instances[name] = functions
        yield SimpleNamespace(add_func=functions.__setitem__)


def host_functions(ws: blocksync.Workspace, key: str) -> dict[str, dict[str, Callable[..., Any]]]:
    recorder = Recorder()
    ctx = HostContext(ws.plugins.specs[key], HostServices(ws.blocks, ws.notifications))
    define(recorder, ctx)
    return recorder.instances


def test_sync_bases_without_a_source_are_stand_ins(
    ws: blocksync.Workspace, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="blocksync.plugin.echo")
    sync = host_functions(ws, "echo")[SYNC]
    # define() without sync_bases: a plugin sees no bases and cannot record any
    assert sync["base"](None, "a.md") is None
    assert sync["bindings"](None) == []
    assert (
        sync["set-base"](None, "a.md", ref("a.md"), "x") == NO_BASES
    )  # the err of result<_, string>
    assert sync["forget"](None, "a.md") == NO_BASES
    # merge3 is real already (blocksync.store.merge): clean merges, and any overlap is an err
    assert sync["merge3"](None, "a\nb\nc\n", "A\nb\nc\n", "a\nb\nC\n") == Variant("ok", "A\nb\nC\n")
    assert sync["merge3"](None, "a\n", "disk\n", "agent\n") == Variant(
        "err", "conflict: 1 region(s) changed differently on both sides"
    )

    # a plugin loaded by a store's PluginSet gets real bases instead (tests/test_plugin_sync.py)


def test_block_history_and_read_at_as_host_functions(ws: blocksync.Workspace) -> None:
    ws.blocks.create("alice", "h", "one\n")
    ws.blocks.update("alice", "h", "two\n")
    sync = host_functions(ws, "echo")[SYNC]
    arg = SimpleNamespace(**{"block-id": "", "label": "h", "agent-id": "alice"})
    history = sync["block-history"](None, arg)
    assert [v.__dict__["version-id"] for v in history] == ["2", "1"]
    assert sync["block-read-at"](None, arg, "1") == Variant("ok", "one\n")
    assert sync["block-read-at"](None, arg, "7") == Variant("err", "block alice/h has no version 7")
    bob = SimpleNamespace(**{"block-id": "", "label": "h", "agent-id": "bob"})
    assert "attached only to alice" in sync["block-history"](None, bob)


# --------------------------------------------------------------------------------------------
# host: log, get-config, emit-notification


def test_log_and_print_go_to_python_logging(
    ws: blocksync.Workspace, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    echo = ws.plugins.data_block("echo")
    assert echo.name() == "Echo block source"
    assert plugin_log(caplog, "echo") == [
        (logging.DEBUG, "echo_block: started with 2 files"),  # host.log(LogLevel.DEBUG, ...)
        (logging.INFO, "name() called; instances=1"),  # print()
        (logging.WARNING, "a warning on stderr"),  # print(..., file=sys.stderr)
        (logging.INFO, "no newline yet"),  # print(..., end=""), flushed when the call returns
    ]
    caplog.clear()
    failed(echo.load, "missing.md", "alice")  # a guest exception: its traceback at DEBUG
    [(level, traceback)] = plugin_log(caplog, "echo")
    assert level == logging.DEBUG and traceback.startswith("Traceback (most recent call last):")
    assert traceback.endswith("FileNotFoundError: no such path: missing.md")
    assert not [r for r in caplog.records if r.name.startswith("blocksync.plugin.stream")]


def test_a_trap_traceback_is_logged_as_an_error(
    ws: blocksync.Workspace, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    stream = ws.plugins.data_stream("stream")
    with pytest.raises(PluginTrapped):
        stream.resume()  # resume has no err channel: the guest's RuntimeError traps
    errors = [m for level, m in plugin_log(caplog, "stream") if level == logging.ERROR]
    assert errors and errors[-1].endswith("RuntimeError: cannot resume a stopped stream")


def test_raw_guest_stdout_and_stderr_are_logged(
    ws: blocksync.Workspace, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    raw = ws.plugins.tool("raw")
    assert ws.plugins.get("raw").info.wasi
    assert raw.execute("{}", "{}") == "null"
    # each stream in its order (they are files wasmtime writes, read back after the call:
    # see runtime._Capture); stdout first
    assert plugin_log(caplog, "raw") == [
        (logging.INFO, "raw stdout line"),
        (logging.INFO, "partial line"),
        (logging.INFO, "no newline at the end"),  # read when the call returns
        (logging.WARNING, "raw stderr line"),
    ]


def test_get_config_reads_the_plugins_config_table(ws: blocksync.Workspace) -> None:
    expected = {
        "echo": "echo:main",
        "cfg_int": "echo:42",
        "cfg_float": "echo:1.5",
        "cfg_bool": "echo:true",
        "cfg_list": 'echo:[1, "two"]',
        "cfg_table": 'echo:{"a": 1, "b": "\\u00e9"}',
        "cfg_none": "echo:default",  # a missing key is none
    }
    assert {key: ws.plugins.data_block(key).source_id() for key in expected} == expected
    # echo_stream reads `count` (a TOML integer) and serves that many events
    stream = ws.plugins.data_stream("stream")
    assert [n.text for n in stream.pull(10, None)] == ["event 0", "event 1", "event 2"]


def test_emitted_notifications_are_stored_durably(store: Path) -> None:
    with blocksync.open(store) as ws:
        assert ws.notifications.list() == []
        ws.plugins.data_stream("stream").start("alice")
        stored = ws.notifications.list()
    assert [(n.source, n.text, n.blocks, n.acked) for n in stored] == [
        (
            "stream",
            "echo stream started for alice",
            (BlockRef("stream-block", "echo-stream", "alice"),),
            False,
        ),
        ("stream", "second notification", (), False),
    ]
    with blocksync.open(store) as ws:  # after closing and reopening the store
        assert ws.notifications.list() == stored
        assert ws.notifications.list(unacked=True) == stored


# --------------------------------------------------------------------------------------------
# host: http-get / http-post, http: request


def sink_call(ws: blocksync.Workspace, **params: Any) -> Any:
    return json.loads(ws.plugins.tool("sink").execute(json.dumps(params), "{}"))


def test_allowlisted_requests_succeed(ws: blocksync.Workspace, server: Server) -> None:
    del server.requests[:]
    assert sink_call(ws, op="get", url=f"{server.url}/ok") == {"body": "hello"}
    assert sink_call(ws, op="post", url=f"{server.url}/ok", body="b") == {"body": "hello:b"}
    put = sink_call(ws, op="request", method="put", url=f"{server.url}/ok", body="!")
    assert put == {"status": 200, "ok": True, "text": "hello:!", "type": "text/plain"}
    sent = [
        (method, path, headers.get("Accept"), headers.get("X-Kind"), headers.get("X-A"), body)
        for method, path, headers, body in server.requests
    ]
    assert sent == [
        ("GET", "/ok", "text/plain", None, None, b""),
        ("POST", "/ok", None, "post", None, b"b"),
        ("PUT", "/ok", None, None, "1", b"!"),
    ]


def test_http_request_returns_status_headers_and_body_bytes(
    ws: blocksync.Workspace, server: Server
) -> None:
    """The host function itself, as `define` registers it: exact bytes and every header."""
    host = host_functions(ws, "sink")
    response = host[HTTP]["request"](None, "GET", f"{server.url}/bytes", [("X-A", "1")], None)
    assert response.status == 200
    assert response.body == b"\x00\xff\xfebinary"
    assert ("X-Test", "yes") in response.headers
    assert ("Content-Type", "application/octet-stream") in response.headers
    # http-get wants text: a binary body is an error pointing at http.request
    error = host[HOST]["http-get"](None, f"{server.url}/bytes", "{}")
    assert error.tag == "err" and "is not UTF-8 text; use http.request" in error.payload
    assert host[HOST]["http-get"](None, f"{server.url}/ok", "[1]") == Variant(
        "err", "headers-json must be a JSON object of header names to values"
    )


def test_an_http_error_status(ws: blocksync.Workspace, server: Server) -> None:
    request = sink_call(ws, op="request", url=f"{server.url}/500")
    assert request == {"status": 500, "ok": False, "text": "boom", "type": "text/plain"}
    for op in ("get", "post"):
        error = failed(
            ws.plugins.tool("sink").execute,
            json.dumps({"op": op, "url": f"{server.url}/500", "body": ""}),
            "{}",
        )
        method = op.upper()
        assert error.detail == f"HostError: {method} {server.url}/500 answered HTTP 500"


def test_redirects_are_returned_not_followed(ws: blocksync.Workspace, server: Server) -> None:
    seen = server.connections
    result = sink_call(ws, op="request", url=f"{server.url}/redirect")
    assert result["status"] == 302 and result["ok"] is False
    assert server.connections == seen + 1


@pytest.mark.parametrize("route", ["/slow", "/drip"])
def test_a_slow_server_times_out_and_the_call_returns(
    ws: blocksync.Workspace, server: Server, route: str
) -> None:
    tool = ws.plugins.tool("sink")
    timeout = ws.plugins.get("sink").spec.limits.http_timeout
    assert timeout == 0.5
    for op in ("get", "request"):
        started = time.monotonic()
        error = failed(tool.execute, json.dumps({"op": op, "url": f"{server.url}{route}"}), "{}")
        assert time.monotonic() - started < timeout + 1.0
        assert error.plugin == "sink" and error.call == "tool.execute"
        method = "GET"
        assert error.detail == (
            f"HostError: {method} {server.url}{route}: no complete answer within 0.5 s"
        )
    assert tool.name() == "Kitchen sink"


def test_a_response_over_the_cap_is_an_error(ws: blocksync.Workspace, server: Server) -> None:
    tool = ws.plugins.tool("sink")
    for op in ("get", "request"):
        error = failed(tool.execute, json.dumps({"op": op, "url": f"{server.url}/big"}), "{}")
        assert error.detail == (
            f"HostError: GET {server.url}/big: response larger than the cap of 1048576 bytes"
        )


def test_a_host_outside_the_allowlist_is_never_contacted(
    ws: blocksync.Workspace, server: Server
) -> None:
    tool = ws.plugins.tool("sink")
    port = server.server_address[1]
    seen = server.connections
    for url, host in (
        (f"http://localhost:{port}/ok", f"localhost:{port}"),  # same server, another name
        (f"http://127.0.0.1:{port + 1 if port < 65535 else 1}/ok", None),  # another port
    ):
        for op in ("get", "post", "request"):
            error = failed(tool.execute, json.dumps({"op": op, "url": url, "body": ""}), "{}")
            assert "is not in the plugin's allowed_hosts" in error.detail, error.detail
            if host is not None:
                assert f"host {host} is not in" in error.detail
    assert server.connections == seen, "the server must see nothing"
