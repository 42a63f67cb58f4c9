"""The WIT file is the plugin contract: every function in it has an implementation and a test.

* each function of the exported interfaces `data-block`, `data-stream`, `tool` has a bridge
  method (its snake_case name) in blocksync/plugins/bridges.py, on the host-side Protocol too,
  and a signature in the table the host checks components against at load;
* each function of the imported interfaces `host`, `http`, `sync` is registered by
  ``hostfuncs.define`` (read off a recorder standing in for the linker: it records names, it
  does not replace any behaviour);
* some test calls each of them: a test source calls the bridge method or the registered host
  function by name, or a fixture guest that a test loads calls the import.

Note on `sync`: `base`, `bindings`, `set-base` and `forget` get their real implementation with
the reconciler (issue 4), which supplies them per source through ``sync_bases``; until then
``define`` registers stand-ins answering "no bases" (tests/test_host_functions.py asserts that
behaviour as it is). They stay in the coverage below on purpose: the contract is the WIT file.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from blocksync.plugins import bridges
from blocksync.plugins.host import contract
from blocksync.plugins.host.hostfuncs import (
    HOST,
    HTTP,
    SYNC,
    HostContext,
    HostServices,
    NoBases,
    SyncBaseFunctions,
    define,
)
from blocksync.plugins.spec import PluginSpec
from blocksync.plugins.tooling.build import guest_sdk_dir, wit_dir
from blocksync.sync import protocol as sources

ROOT = Path(__file__).resolve().parent.parent
TESTS = Path(__file__).resolve().parent
GUESTS = ROOT / "fixtures" / "plugins"

EXPORTS = {
    "data-block": (bridges.WasmDataBlock, sources.DataBlock),
    "data-stream": (bridges.WasmDataStream, sources.DataStream),
    "tool": (bridges.WasmTool, sources.Tool),
}
#: exports a plugin may add beside one of those, and the bridge calling them
OPTIONAL_EXPORTS = {"paging": bridges.WasmDataBlock}
IMPORTS = {"host": HOST, "http": HTTP, "sync": SYNC}
#: the sync bases a plugin keeps through the host (blocksync.plugins.syncbases)
SYNC_BASES = {"base", "bindings", "set-base", "forget"}


def wit_functions() -> dict[str, list[str]]:
    """interface -> its function names, in order, read from wit/pattern.wit."""
    text = (wit_dir() / "pattern.wit").read_text(encoding="utf-8")
    found = {}
    for match in re.finditer(r"^interface ([\w-]+) \{(.*?)^\}", text, re.MULTILINE | re.DOTALL):
        found[match.group(1)] = re.findall(r"^\s*([\w-]+): func\(", match.group(2), re.MULTILINE)
    return found


def snake(name: str) -> str:
    return name.replace("-", "_")


def test_the_wit_has_the_interfaces_expected() -> None:
    wit = wit_functions()
    assert set(EXPORTS) | set(OPTIONAL_EXPORTS) | set(IMPORTS) | {"types"} == set(wit)
    assert wit["types"] == []
    assert all(wit[i] for i in (*EXPORTS, *OPTIONAL_EXPORTS, *IMPORTS))
    assert set(OPTIONAL_EXPORTS) == set(contract.OPTIONAL_INTERFACES)
    assert SYNC_BASES <= set(wit["sync"])


def test_every_export_has_a_bridge_method_and_a_checked_signature() -> None:
    wit = wit_functions()
    missing = []
    for interface, (bridge, protocol) in EXPORTS.items():
        for function in wit[interface]:
            method = getattr(bridge, snake(function), None)
            if not callable(method) or method.__module__ != bridges.__name__:
                missing.append(f"{bridge.__name__}.{snake(function)} ({interface}.{function})")
            if not callable(getattr(protocol, snake(function), None)):
                missing.append(f"{protocol.__name__}.{snake(function)} (Protocol)")
        assert sorted(contract.SIGNATURES[interface]) == sorted(wit[interface]), interface
    for interface, bridge in OPTIONAL_EXPORTS.items():
        for function in wit[interface]:
            method = getattr(bridge, snake(function), None)
            if not callable(method) or method.__module__ != bridges.__name__:
                missing.append(f"{bridge.__name__}.{snake(function)} ({interface}.{function})")
        assert sorted(contract.SIGNATURES[interface]) == sorted(wit[interface]), interface
    assert not missing, "WIT functions without a bridge method: " + ", ".join(missing)


class Recorder:
    """Stands in for a wasmtime linker root: records what ``define`` registers."""

    def __init__(self) -> None:
        self.instances: dict[str, dict[str, Callable[..., Any]]] = {}

    @contextmanager
    def add_instance(self, name: str) -> Iterator[SimpleNamespace]:
        functions: dict[str, Callable[..., Any]] = {}
        assert name not in self.instances, f"{name} defined twice"
        self.instances[name] = functions
        yield SimpleNamespace(add_func=functions.__setitem__)


def defined(sync_bases: SyncBaseFunctions | None = None) -> dict[str, dict[str, Any]]:
    recorder = Recorder()
    ctx = HostContext(PluginSpec(key="p", agent="alice", path=Path("p.wasm")), HostServices())
    define(recorder, ctx, sync_bases)
    return recorder.instances


def test_every_import_has_a_host_function() -> None:
    wit = wit_functions()
    instances = defined()
    assert set(instances) == set(IMPORTS.values())
    problems = []
    for interface, name in IMPORTS.items():
        registered = instances[name]
        problems += [
            f"{interface}.{f} is not defined" for f in wit[interface] if f not in registered
        ]
        problems += [
            f"{interface}.{f} is not in the WIT" for f in registered if f not in wit[interface]
        ]
    assert not problems, "; ".join(problems)


def test_sync_bases_replace_the_stand_ins() -> None:
    """The reconciler's bases go in through ``sync_bases`` (issue 4) and take the stand-ins'
    places, with no function added or lost."""
    sentinel = object()

    class Bases(NoBases):
        def base(self, path: str) -> Any:
            return sentinel

    instances = defined(Bases())
    assert instances[SYNC]["base"](None, "x") is sentinel
    assert defined()[SYNC]["base"](None, "x") is None
    assert sorted(instances[SYNC]) == sorted(defined()[SYNC])


def _sources() -> tuple[str, str]:
    """(the test sources but this file, the app.py of every fixture guest a test names, with the
    SDK's SyncedSource when one of them derives from it: its calls run inside those guests)."""
    tests = [
        p.read_text(encoding="utf-8")
        for p in sorted(TESTS.glob("*.py"))
        if p.name != Path(__file__).name
    ]
    joined = "\n".join(tests)
    guests = [
        app.read_text(encoding="utf-8")
        for app in sorted(GUESTS.glob("*/app.py"))
        if re.search(rf"\b{re.escape(app.parent.name)}\b", joined)
    ]
    if any("SyncedSource" in guest for guest in guests):
        guests.append((guest_sdk_dir() / "pattern_extension_api" / "synced.py").read_text("utf-8"))
    return joined, "\n".join(guests)


def test_every_wit_function_is_called_by_a_test() -> None:
    tests, guests = _sources()
    wit = wit_functions()
    missing = []
    for interface in EXPORTS:
        for function in wit[interface]:
            # through a bridge (`.name(`), or Plugin.call/acall("<interface>", "<function>")
            bridge_call = re.search(rf"\.{snake(function)}\(", tests)
            by_name = re.search(rf'\(\s*"{interface}",\s*"{function}"', tests)
            if not (bridge_call or by_name):
                missing.append(f"{interface}.{function}")
    sdk_call = {"host": "host.{}(", "sync": "sync.{}(", "http": "host.http_{}("}
    for interface in IMPORTS:
        for function in wit[interface]:
            from_guest = sdk_call[interface].format(snake(function)) in guests
            from_test = f'["{function}"](' in tests  # a registered host function, called directly
            if not (from_guest or from_test):
                missing.append(f"{interface}.{function}")
    assert not missing, "WIT functions no test calls: " + ", ".join(missing)
