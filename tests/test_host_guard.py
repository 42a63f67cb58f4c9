"""The plugin host around a guest: host functions that raise anything, from several threads,
past the call's time limit, and guests stuck where the limit cannot reach (issue 12, items 3,
4, 6 and 8).

Real components on real wasmtime: echo_block (its ``reconcile`` calls the host's
``sync.bindings``, which these tests replace to misbehave) and hostile_block built with WASI
(mode ``fifo``: it opens a FIFO in its granted folder). What could take the process down runs in
a subprocess, so that a crash fails the test instead of ending the test run.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

import blocksync
from blocksync import deadlines
from blocksync.errors import PluginTrapped, TransportError
from blocksync.plugins import HostServices, WasmDataBlock, load
from blocksync.plugins.host.fetch import HttpPolicy, request

from .conftest import ROOT
from .plugin_builds import built_plugin
from .stores import make_store
from .test_host_functions import answering_bindings


@pytest.fixture(scope="module")
def echo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store with the echo_block plugin as source ``echo`` of alice."""
    return make_store(
        tmp_path_factory.mktemp("guard") / "store",
        {
            "echo": {
                "path": built_plugin("echo_block"),
                "config": {"files": "a.md=x"},
                "limits": {"timeout": 2},
            }
        },
    )


def _plugin(ws: blocksync.Workspace, key: str, bindings: Any) -> Any:
    spec = dataclasses.replace(ws.plugins.specs["echo"], key=key)
    return load(
        spec, HostServices(ws.blocks, ws.notifications), ws.cache_path, answering_bindings(bindings)
    )


def _run(script: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        check=False,
    )


@pytest.mark.parametrize("raised", ["KeyboardInterrupt()", "SystemExit(3)"])
def test_a_base_exception_in_a_host_function_never_crashes_the_process(
    echo: Path, raised: str
) -> None:
    """Before: wasmtime-py's component path let it unwind through C frames (SIGSEGV, 139).
    Now the call traps, the exception is raised again once the plugin call is over, and the
    plugin works on."""
    done = _run(f"""
        import dataclasses, blocksync
        from blocksync.plugins import HostServices, WasmDataBlock, load
        ws = blocksync.open({str(echo)!r})
        calls = []
        def bindings():
            calls.append(1)
            if len(calls) == 1:
                raise {raised}
            return []
        spec = dataclasses.replace(ws.plugins.specs["echo"], key="base-exception")
        from blocksync.plugins.host.hostfuncs import NoBases
        class Bases(NoBases):
            def bindings(self):
                return bindings()
        plugin = load(spec, HostServices(ws.blocks, ws.notifications), ws.cache_path,
                      lambda host, exports: Bases())
        source = WasmDataBlock(plugin)
        try:
            source.reconcile(["a.md"])
        except BaseException as exc:
            print("raised", type(exc).__name__)
        print("then", len(source.reconcile(["a.md"])))
        plugin.close()
        ws.close()
    """)
    assert done.returncode == 0, (done.returncode, done.stderr[-3000:])
    name = raised.split("(")[0]
    assert done.stdout.split("\n")[:2] == [f"raised {name}", "then 1"], done.stdout


def test_host_errors_stay_on_their_own_thread(echo: Path) -> None:
    """Four threads, each its own plugin whose host function fails its own way (two raise
    their own error, two answer a value that cannot be lowered): every failure names its own
    thread's error, never another's, never a bare "python exception"."""
    calls = 150
    with blocksync.open(echo) as ws:

        def raising(i: int) -> Any:
            def bindings() -> Any:
                raise ValueError(f"error of thread {i}")

            return bindings

        def unlowerable(i: int) -> Any:
            return lambda: 40 + i  # not a list

        plugins = [_plugin(ws, f"t{i}", (raising if i % 2 else unlowerable)(i)) for i in range(4)]
        seen: dict[int, Counter[str]] = {i: Counter() for i in range(4)}

        def work(i: int) -> None:
            source = WasmDataBlock(plugins[i])
            for _ in range(calls):
                try:
                    source.reconcile(["a.md"])
                    seen[i]["no error"] += 1
                except PluginTrapped as exc:
                    seen[i][str(exc).split(": ", 1)[1]] += 1

        threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for plugin in plugins:
            plugin.close()
    for i in range(4):
        own = (
            f"host function bindings failed: ValueError: error of thread {i}"
            if i % 2
            else "host function bindings failed: TypeError: expected list value"
        )
        assert seen[i] == Counter({own: calls}), (i, seen[i])


def test_a_host_function_past_the_time_limit_fails_the_call_as_a_timeout(echo: Path) -> None:
    with blocksync.open(echo) as ws:

        def slow() -> list[Any]:
            time.sleep(3)  # past the 2 s limit
            return []

        plugin = _plugin(ws, "slow-host", slow)
        try:
            with pytest.raises(PluginTrapped) as info:
                WasmDataBlock(plugin).reconcile(["a.md"])
            assert info.value.reason == "timeout"
            assert "in host function bindings" in str(info.value)
        finally:
            plugin.close()


class _Slow(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        time.sleep(5)

    def log_message(self, *args: Any) -> None:
        pass


def test_an_http_request_waits_no_longer_than_the_call_has_left() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Slow)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = server.server_address[1]
        policy = HttpPolicy((f"127.0.0.1:{port}",), 30.0, 1 << 20)
        url = f"http://127.0.0.1:{port}/"
        with deadlines.until(time.monotonic() + 0.5), pytest.raises(TransportError) as info:
            request(policy, "GET", url, [], None)
        seconds = float(str(info.value).rsplit("within ", 1)[1].split(" s")[0])
        assert seconds <= 0.5  # its own 30 s cap gave way to the call's deadline
    finally:
        server.shutdown()
        server.server_close()


def test_a_guest_stuck_in_a_wasi_call_fails_as_a_timeout_and_the_process_exits(
    tmp_path: Path,
) -> None:
    """A FIFO opened through WASI blocks in wasmtime, where the epoch deadline never looks:
    the caller stops waiting, the call fails with reason timeout, the plugin serves on, and the
    process (its stuck daemon thread abandoned) exits as usual."""
    granted = tmp_path / "granted"
    granted.mkdir()
    os.mkfifo(granted / "fifo")
    wasm = built_plugin("hostile_block", wasi=True)
    store = make_store(
        tmp_path / "store",
        {
            "stuck": {
                "path": wasm,
                "dir": str(granted),
                "config": {"mode": "fifo"},
                "limits": {"timeout": 1},
            },
            "fine": {"path": wasm, "config": {"mode": "ok"}},
        },
    )
    done = _run(
        f"""
        import json, threading, time, blocksync
        ws = blocksync.open({str(store)!r})
        plugin = ws.plugins.get("stuck")
        queued = []  # a call queued behind the stuck one runs once its thread is abandoned
        def behind():
            time.sleep(0.5)
            queued.append(plugin.call("data-block", "name"))
        thread = threading.Thread(target=behind)
        thread.start()
        first = ws.reconcile(sources=["stuck"]).sources[0].error
        thread.join()
        fine = ws.reconcile(sources=["fine"]).sources[0].error
        print(json.dumps([first, fine, queued]))
    """,
        timeout=120,
    )
    assert done.returncode == 0, (done.returncode, done.stderr[-3000:])
    stuck, fine, queued = json.loads(done.stdout.strip().splitlines()[-1])
    assert "data-block.reconcile" in stuck and "time limit of 1 s" in stuck, stuck
    assert "stuck in a WASI call" in stuck, stuck
    assert fine is None
    assert queued == ["Hostile block source"]


def test_the_waiter_of_a_call_queued_behind_a_stuck_one_never_takes_its_timeout(
    tmp_path: Path,
) -> None:
    """Whichever waiter finds the running call stuck past its limit abandons the thread: the
    stuck call fails as a timeout, and the call queued behind it runs on the new thread. (The
    waiter of a queued call raised the timeout as its own, its call never run, and reset the
    stuck call's start, so that call's own waiter waited forever: CI hung on it once.) Here
    nothing waits for the stuck call, so only the queued call's waiter can see it."""
    granted = tmp_path / "granted"
    granted.mkdir()
    os.mkfifo(granted / "fifo")
    store = make_store(
        tmp_path / "store",
        {
            "stuck": {
                "path": built_plugin("hostile_block", wasi=True),
                "dir": str(granted),
                "config": {"mode": "fifo"},
                "limits": {"timeout": 1},
            }
        },
    )
    done = _run(
        f"""
        import json, blocksync
        ws = blocksync.open({str(store)!r})
        plugin = ws.plugins.get("stuck")
        stuck = plugin._worker.submit(plugin._call, "data-block", "reconcile", ([],))
        queued = plugin.call("data-block", "name")
        try:
            outcome = repr(stuck.result(timeout=60))
        except Exception as exc:
            outcome = str(exc)
        print(json.dumps([queued, outcome]))
    """,
        timeout=120,
    )
    assert done.returncode == 0, (done.returncode, done.stderr[-3000:])
    queued, stuck = json.loads(done.stdout.strip().splitlines()[-1])
    assert queued == "Hostile block source"
    assert "data-block.reconcile" in stuck and "stuck in a WASI call" in stuck, stuck


def test_plugin_lines_go_to_its_log_file_and_to_the_terminal_only_when_asked(
    tmp_path: Path,
) -> None:
    wasm = built_plugin("hostile_block", wasi=True)
    store = make_store(
        tmp_path / "store",
        {
            "loud": {"path": wasm, "config": {"mode": "print"}},
            "dies": {"path": wasm, "config": {"mode": "raise"}},
        },
    )
    blocksync_cli = str(Path(sys.executable).with_name("blocksync"))
    quiet = subprocess.run(
        [blocksync_cli, "--store", str(store), "sync"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert quiet.returncode == 1, quiet.stderr
    assert "raw stdout line" not in quiet.stdout + quiet.stderr
    assert "raised on purpose" not in quiet.stdout + quiet.stderr
    [failed] = [line for line in quiet.stdout.splitlines() if "FAILED" in line]
    assert failed.startswith("dies: FAILED: plugin 'dies' (sha256:")
    assert "data-block.reconcile" in failed
    logs = store / "logs" / "plugins"
    assert "raw stdout line" in (logs / "loud.log").read_text()
    assert "WARNING raw stderr line" in (logs / "loud.log").read_text()

    for verbose in (["sync", "-v"], ["-v", "sync"]):
        loud = subprocess.run(
            [blocksync_cli, "--store", str(store), *verbose],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert "plugin loud: raw stdout line" in loud.stderr, loud.stderr
        assert "plugin loud: warning: raw stderr line" in loud.stderr
    env = {**os.environ, "BLOCKSYNC_LOG": "debug"}
    debug = subprocess.run(
        [blocksync_cli, "--store", str(store), "sync"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )
    assert "plugin loud: raw stdout line" in debug.stderr, debug.stderr


def test_an_idle_instance_is_dropped_on_its_thread_and_the_next_call_makes_a_new_one(
    echo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime = sys.modules[
        "blocksync.plugins.host.runtime"
    ]  # the package exports a function of that name
    monkeypatch.setattr(runtime, "IDLE_SECONDS", 0.2)
    with blocksync.open(echo) as ws:
        plugin = _plugin(ws, "idle", list)
        try:
            source = WasmDataBlock(plugin)
            assert source.name() == "Echo block source"
            for _ in range(300):  # dropped by its own thread once idle
                if plugin._live is None:
                    break
                time.sleep(0.1)
            assert plugin._live is None
            assert source.name() == "Echo block source"  # a new instance
        finally:
            plugin.close()
