"""The Python guest SDK (`blocksync/guest/pattern_extension_api`) and `blocksync.plugins.tooling.build`.

Every reference guest in fixtures/plugins/ is built with componentize-py (cached, see
plugin_builds.py) and checked two ways:

* statically, with wasmtime's component type introspection: the right
  `pattern:extension/<iface>@0.1.0` exports with exactly the WIT's functions, and no `wasi:*`
  import unless the plugin declared `needs_filesystem`;
* by calling exports through a deliberately tiny wasmtime host defined here (the real host lives
  in blocksync.plugins' runtime): adapters, JSON conversion, the lazy singleton, print() to the
  host log, exceptions to `err` strings, host `err`s to HostError.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
from wasmtime import Store, WasiConfig, WasmtimeError
from wasmtime.component import Component, FuncType, Linker, Record, Variant

from blocksync.errors import PluginBuildError, UsageError
from blocksync.plugins import runtime
from blocksync.plugins.host.runtime import UNLIMITED_FUEL
from blocksync.plugins.tooling.build import (
    WORLDS,
    build,
    guest_sdk_dir,
    inspect_source,
    shipped_modules,
    wit_dir,
)

from .plugin_builds import (
    CACHE,
    FIXTURES,
    build_failure,
    build_info,
    built_plugin,
    built_plugins,
    compiled_component,
)

PACKAGE = "pattern:extension"
VERSION = "0.1.0"

#: fixture -> interfaces its component must export (the rest of the WIT's exports it must not)
BUILDABLE = {
    "echo_block": ("data-block",),
    "echo_files": ("data-block",),
    "files": ("data-block",),
    "truth_tool": ("tool",),
    "echo_stream": ("data-stream",),
    "feed": ("data-stream",),
    "echo_tool": ("tool",),
    "stream_tool": ("data-stream", "tool"),
    "kitchen_sink": ("data-block", "data-stream", "tool"),
    "hostile_other_agent": ("data-block",),
    "hostile_readonly": ("data-block",),
    "hostile_delete": ("data-block",),
    "hostile_paths": ("data-block",),
    "hostile_http": ("tool",),
    "hostile_bigresult": ("tool",),
    "hostile_membomb": ("tool",),
    "s3": ("data-block",),
}
NEEDS_WASI = {"echo_files", "files"}
#: blocksync's own engine: the components compiled for it are the suite's shared ones
ENGINE = runtime().engine
COMPONENTIZE_PY = str(Path(sys.executable).parent / "componentize-py")


def iface(name: str) -> str:
    return f"{PACKAGE}/{name}@{VERSION}"


def wit_functions() -> dict[str, set[str]]:
    """interface -> its function names, read from wit/pattern.wit."""
    text = (wit_dir() / "pattern.wit").read_text(encoding="utf-8")
    found = {}
    for match in re.finditer(r"^interface ([\w-]+) \{(.*?)^\}", text, re.MULTILINE | re.DOTALL):
        found[match.group(1)] = set(re.findall(r"^\s*([\w-]+): func", match.group(2), re.MULTILINE))
    return found


@pytest.fixture(scope="module")
def components() -> dict[str, Path]:
    """Every buildable fixture, cold builds run in parallel."""
    return built_plugins(BUILDABLE)


def component(path: Path) -> Component:
    return compiled_component(path)


# --------------------------------------------------------------------------------------------
# What the components are, before instantiating them


@pytest.mark.parametrize("name", sorted(BUILDABLE))
def test_exports_are_the_wit_interfaces(name: str, components: dict[str, Path]) -> None:
    exports = component(components[name]).type.exports(ENGINE)
    ours = {key for key in exports if key.startswith(PACKAGE)}
    # the worlds with `data-block` export `paging` beside it (a generated world of two does not)
    paged = BUILDABLE[name] in (("data-block",), ("data-block", "data-stream", "tool"))
    paging = {iface("paging")} if paged else set()
    assert ours == {iface(i) for i in BUILDABLE[name]} | paging
    wit = wit_functions()
    for interface in BUILDABLE[name]:
        members = exports[iface(interface)].ty.exports(ENGINE)
        functions = {k for k, v in members.items() if isinstance(v.ty, FuncType)}
        assert functions == wit[interface], interface
    info = build_info(components[name])
    assert tuple(info["interfaces"]) == BUILDABLE[name]
    assert info["sha256"] == hashlib.sha256(components[name].read_bytes()).hexdigest()
    assert info["size"] == components[name].stat().st_size


@pytest.mark.parametrize("name", sorted(BUILDABLE))
def test_only_wasi_plugins_import_wasi(name: str, components: dict[str, Path]) -> None:
    imports = set(component(components[name]).type.imports(ENGINE))
    ours = {iface(i) for i in ("host", "sync", "http", "types")}
    assert ours <= imports
    wasi = {key for key in imports if key.startswith("wasi:")}
    assert build_info(components[name])["wasi"] is (name in NEEDS_WASI)
    if name in NEEDS_WASI:
        assert any(key.startswith("wasi:filesystem/") for key in wasi)
    else:
        assert imports == ours, "a --stub-wasi build must import nothing but the WIT's interfaces"


def test_worlds_are_picked_from_the_source() -> None:
    worlds = {name: inspect_source(FIXTURES / name).world for name in BUILDABLE}
    assert worlds["echo_block"] == "data-block-plugin"
    assert worlds["echo_stream"] == "data-stream-plugin"
    assert worlds["echo_tool"] == "tool-plugin"
    assert worlds["kitchen_sink"] == "pattern-extension"
    assert worlds["stream_tool"] == "data-stream-tool-plugin"  # generated: not in the WIT
    assert set(worlds.values()) - set(WORLDS) == {"data-stream-tool-plugin"}
    assert [e.needs_filesystem for e in inspect_source(FIXTURES / "echo_files").extensions] == [
        True
    ]


def test_the_cache_is_reused(components: dict[str, Path]) -> None:
    before = components["echo_tool"].stat().st_mtime_ns
    assert built_plugin("echo_tool") == components["echo_tool"]
    assert components["echo_tool"].stat().st_mtime_ns == before


def test_sdk_type_checks_against_the_generated_bindings(tmp_path: Path) -> None:
    """mypy --strict on the SDK, with the real `wit_world` bindings componentize-py generates
    (the project-wide mypy cannot see them)."""
    bindings = tmp_path / "bindings"
    subprocess.run(
        [
            COMPONENTIZE_PY,
            "-d",
            str(wit_dir()),
            "-w",
            "pattern-extension",
            "bindings",
            str(bindings),
        ],
        check=True,
        capture_output=True,
    )
    with shipped_modules() as shipped:  # as every build ships them
        shutil.copytree(shipped, bindings, dirs_exist_ok=True)
    # apply.py is checked by the project's own mypy, as blocksync.shared.apply; here, where it is the
    # top-level blocksync_apply, only its types matter (its host-side relative import cannot
    # resolve here)
    (tmp_path / "mypy.ini").write_text(
        "[mypy]\nstrict = True\n[mypy-blocksync_apply]\nfollow_imports = silent\n",
        encoding="utf-8",
    )
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(tmp_path / "mypy.ini")]
        + ["--cache-dir", str(CACHE.parent / "mypy"), "-p", "pattern_extension_api"],
        cwd=guest_sdk_dir(),
        env={"MYPYPATH": str(bindings), "PATH": ""},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


# --------------------------------------------------------------------------------------------
# Broken sources fail clearly (the source is checked before componentize-py runs: a
# componentize_py that does not exist proves it was never started)

NEVER_RUN = "/nonexistent/componentize-py"


def test_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    with pytest.raises(PluginBuildError) as info:
        build(FIXTURES / "broken_syntax", tmp_path / "x.wasm", componentize_py=NEVER_RUN)
    message = str(info.value)
    assert "syntax error" in message and "app.py, line 7" in message
    assert "def name(self) -> str" in message
    assert isinstance(info.value, UsageError) and info.value.exit_code == 2
    assert isinstance(info.value.__cause__, SyntaxError)
    assert not (tmp_path / "x.wasm").exists()


def test_missing_method_names_class_and_methods(tmp_path: Path) -> None:
    with pytest.raises(PluginBuildError) as info:
        build(FIXTURES / "broken_missing_method", tmp_path / "x.wasm", componentize_py=NEVER_RUN)
    assert info.value.missing_methods == {"Half": ["diff", "reconcile"]}
    assert "class Half" in str(info.value) and "diff, reconcile" in str(info.value)


def test_componentize_py_errors_come_through() -> None:
    message = build_failure("broken_import")  # a PluginBuildError's message, and no output
    source = FIXTURES / "broken_import"
    assert message.startswith(f"cannot build plugin {source.resolve()}: componentize-py failed: ")
    assert "ModuleNotFoundError: No module named 'no_such_module_for_blocksync'" in message
    assert f'File "{source.resolve() / "app.py"}", line 3' in message  # was /0/app.py in the guest
    assert "Stack backtrace" not in message and "Caused by" not in message


SOURCE_ERRORS = {
    "no register": ("class A: pass\n", "does not call register_extension"),
    "not a class": ("register_extension(print)\n", "must be given one class defined in app.py"),
    "export name taken": (
        (
            "from pattern_extension_api import ToolExtension, register_extension\n"
            "class Tool(ToolExtension):\n    pass\nregister_extension(Tool)\n"
        ),
        "defines Tool: register_extension() defines DataBlock, DataStream, Tool there",
    ),
    "no SDK base": ("class A:\n    pass\nregister_extension(A)\n", "does not derive from"),
    "two tools": (
        (
            "from pattern_extension_api import *\n"
            "class A(ToolExtension):\n    pass\n"
            "class B(ToolExtension):\n    pass\n"
            "register_extension(A)\nregister_extension(B)\n"
        ),
        "does not implement",  # checked first; with methods it would be "both implement tool"
    ),
    "flag not literal": (
        (
            "import pattern_extension_api as api\n"
            "class A(api.ToolExtension):\n    needs_filesystem = bool(1)\n"
            "register_extension(A)\n"
        ),
        "must be a literal True or False",
    ),
}


@pytest.mark.parametrize("case", sorted(SOURCE_ERRORS))
def test_source_errors(case: str, tmp_path: Path) -> None:
    text, expected = SOURCE_ERRORS[case]
    (tmp_path / "app.py").write_text(text, encoding="utf-8")
    with pytest.raises(PluginBuildError, match=re.escape(expected)):
        build(tmp_path, tmp_path / "x.wasm", componentize_py=NEVER_RUN)


def test_one_interface_per_plugin_and_inherited_methods(tmp_path: Path) -> None:
    tool = "\n".join(
        f"    def {m}(self, *a): pass"
        for m in ("name", "description", "parameters_schema", "output_schema", "execute")
    )
    (tmp_path / "app.py").write_text(
        "from pattern_extension_api import ToolExtension as T, register_extension\n"
        f"class Base(T):\n{tool}\n"
        "class A(Base):\n    needs_filesystem = True\n"
        "class B(Base):\n    pass\n"
        "register_extension(A)\n",
        encoding="utf-8",
    )
    info = inspect_source(tmp_path)
    assert [(e.name, e.interfaces, e.needs_filesystem) for e in info.extensions] == [
        ("A", ("tool",), True)
    ]
    with (tmp_path / "app.py").open("a", encoding="utf-8") as file:
        file.write("register_extension(B)\n")
    with pytest.raises(PluginBuildError, match="A and B both implement tool"):
        inspect_source(tmp_path)


def test_late_imports_are_found(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text(
        "import json\ndef f():\n    import csv\n    from os import path\n", encoding="utf-8"
    )
    assert inspect_source(tmp_path).late_imports == ((3, "csv"), (4, "os"))


def test_world_override_is_checked(tmp_path: Path) -> None:
    source = FIXTURES / "echo_tool"
    with pytest.raises(PluginBuildError, match="unknown world 'nope'"):
        build(source, tmp_path / "x.wasm", world="nope", componentize_py=NEVER_RUN)
    with pytest.raises(PluginBuildError, match="exports data-block, data-stream, which no"):
        build(source, tmp_path / "x.wasm", world="pattern-extension", componentize_py=NEVER_RUN)


# --------------------------------------------------------------------------------------------
# A test-only host: just enough of `host`, `sync` and `http` to run the guests


def rec(**fields: Any) -> Record:
    """A WIT record value (wasmtime reads its fields by their kebab-case names)."""
    record = Record()
    for key, value in fields.items():
        setattr(record, key.replace("_", "-"), value)
    return record


def fields(value: Any) -> dict[str, Any]:
    assert isinstance(value, Record), value
    return dict(vars(value))


class FakeHost:
    """Blocks, bases and HTTP answers in dicts; every call recorded in `calls`."""

    def __init__(self, config: dict[str, str] | None = None) -> None:
        self.config = config or {}
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self.logs: list[tuple[int, str]] = []
        self.notifications: list[tuple[str, list[dict[str, Any]]]] = []
        self.conflicts: list[tuple[str, dict[str, Any], str | None, str]] = []
        self.blocks: dict[tuple[str, str], str] = {}
        self.bases: dict[str, tuple[Record, str]] = {}
        self.versions = {"v1": "first text\n"}
        self.http = {"https://ok.test/": (200, b"hello")}
        self.restore = False

    # host
    def memory_create_block(
        self, owner: str, label: str, description: str, content: str
    ) -> Variant:
        if (owner, label) in self.blocks:
            return Variant("err", f"block {owner}/{label} exists")
        self.blocks[owner, label] = content
        return Variant("ok", f"id:{owner}/{label}")

    def memory_read_block(self, owner: str, label: str) -> Variant:
        if (owner, label) not in self.blocks:
            return Variant("err", f"no block {owner}/{label}")
        return Variant("ok", self.blocks[owner, label])

    def memory_update_block(self, owner: str, label: str, content: str) -> str | None:
        if (owner, label) not in self.blocks:
            return f"no block {owner}/{label}"
        self.blocks[owner, label] = content
        return None

    def memory_delete_block(self, owner: str, label: str) -> str | None:
        return "delete refused" if self.blocks.pop((owner, label), None) is None else None

    def log(self, level: int, message: str) -> None:
        self.logs.append((level, message))

    def http_get(self, url: str, headers_json: str) -> Variant:
        if url not in self.http:
            return Variant("err", f"{url} is not allowed")
        return Variant("ok", f"{self.http[url][1].decode()} {headers_json}")

    def http_post(self, url: str, headers_json: str, body: str) -> Variant:
        return Variant("ok", f"posted {body} {headers_json}")

    def get_config(self, key: str) -> str | None:
        return self.config.get(key)

    def emit_notification(self, notification: Record) -> None:
        blocks = [fields(b) for b in notification.blocks]
        self.notifications.append((notification.text, blocks))

    # sync
    def base(self, path: str) -> tuple[Record, str] | None:
        if path not in self.bases:
            return None
        block, content = self.bases[path]
        return rec(path=path, block=block), content

    def bindings(self) -> list[Record]:
        return [rec(path=path, block=block) for path, (block, _) in self.bases.items()]

    def set_base(self, path: str, block: Record, content: str) -> None:
        self.bases[path] = (block, content)

    def forget(self, path: str) -> None:
        self.bases.pop(path, None)

    def set_bases(self, bases: str) -> None:
        for item in json.loads(bases):
            if item["content"] is None:
                self.bases.pop(item["path"], None)
            else:
                block = rec(**{"block-id": "", "label": item["label"], "agent-id": item["owner"]})
                self.bases[item["path"]] = (block, item["content"])

    def read_blocks(self, owner: str, labels: list[str]) -> Variant:
        return Variant("ok", json.dumps({lb: self.blocks.get((owner, lb)) for lb in labels}))

    def write_blocks(self, writes: str) -> str | None:
        for item in json.loads(writes):
            key, content = (item["owner"], item["label"]), item["content"]
            if content is None:
                self.blocks.pop(key, None)
            else:
                self.blocks[key] = content
        return None

    def states(self, paths: list[str]) -> str:
        return "{}"  # no hashes: every path takes the full way through base and block

    def folder_digests(self) -> Variant:
        return Variant("err", "no folder is granted to this plugin")

    def folder_files(self) -> Variant:
        return Variant("err", "no folder is granted to this plugin")

    def file_digests(self, paths: list[str]) -> Variant:
        return Variant("err", "no folder is granted to this plugin")

    def read_files(self, paths: list[str]) -> Variant:
        return Variant("err", "no folder is granted to this plugin")

    def write_file(self, path: str, content: str, expected: str | None) -> str:
        return "no folder is granted to this plugin"  # result<bool, string>: err untagged

    def remove_file(self, path: str, expected: str) -> str:
        return "no folder is granted to this plugin"

    def prepare_files(self, writes: str) -> str:
        return "no folder is granted to this plugin"

    def flush_files(self) -> None:
        return None

    def dry_run(self) -> bool:
        return False

    def restoring(self) -> bool:
        return self.restore  # a test sets it to replay a stream's start as a restore

    def report_conflict(self, path: str, block: Record, disk: str | None, reason: str) -> None:
        self.conflicts.append((path, fields(block), disk, reason))

    def merge3(self, base: str, disk: str, agent: str) -> Variant:
        if disk == base or agent == base:
            return Variant("ok", agent if disk == base else disk)
        return Variant("err", "both sides changed the same lines")

    def block_history(self, block: Record) -> list[Record]:
        return [
            rec(version_id=v, timestamp="2025-01-01T00:00:00Z", description=None)
            for v in self.versions
        ]

    def block_read_at(self, block: Record, version_id: str) -> Variant:
        if version_id not in self.versions:
            return Variant("err", f"no version {version_id}")
        return Variant("ok", self.versions[version_id])

    def set_cursor(self, cursor: str) -> None:
        self.cursor = cursor  # a stream's pull names its next cursor

    # http
    def request(
        self, method: str, url: str, headers: list[Any], body: bytes | None
    ) -> Record | str:
        if url not in self.http:
            return f"{url} is not allowed"
        status, payload = self.http[url]
        return rec(
            status=status, headers=[("content-type", "text/plain")], body=payload + (body or b"")
        )

    INTERFACES: ClassVar[dict[str, list[str]]] = {
        "host": [
            "memory-create-block",
            "memory-read-block",
            "memory-update-block",
            "memory-delete-block",
            "log",
            "http-get",
            "http-post",
            "get-config",
            "emit-notification",
        ],
        "sync": [
            "base",
            "bindings",
            "states",
            "set-base",
            "forget",
            "set-bases",
            "folder-digests",
            "folder-files",
            "file-digests",
            "read-files",
            "write-file",
            "remove-file",
            "prepare-files",
            "flush-files",
            "read-blocks",
            "write-blocks",
            "dry-run",
            "restoring",
            "report-conflict",
            "merge3",
            "block-history",
            "block-read-at",
            "set-cursor",
        ],
        "http": ["request"],
    }

    def link(self, linker: Linker) -> None:
        with linker.root() as root:
            for interface, names in self.INTERFACES.items():
                with root.add_instance(iface(interface)) as instance:
                    for name in names:
                        instance.add_func(
                            name, self._recorded(name, getattr(self, name.replace("-", "_")))
                        )

    def _recorded(self, name: str, function: Callable[..., Any]) -> Callable[..., Any]:
        def call(store: Any, *args: Any) -> Any:
            self.calls.append((name, args))
            return function(*args)

        return call

    def called(self, name: str) -> list[tuple[Any, ...]]:
        return [args for called, args in self.calls if called == name]


class Guest:
    """One instance of a built fixture, linked to a FakeHost."""

    def __init__(
        self,
        wasm: Path,
        *,
        wasi: bool = False,
        preopen: Path | None = None,
        memory: int | None = None,
        **config: str,
    ) -> None:
        self.host = FakeHost(config)
        linker = Linker(ENGINE)
        if wasi:
            linker.add_wasip2()  # then the store MUST get a WasiConfig, or the process aborts
        self.host.link(linker)
        self.store = Store(ENGINE)
        self.store.set_fuel(UNLIMITED_FUEL)  # the engine meters fuel and epochs: give all of both
        self.store.set_epoch_deadline(10**12)
        if memory is not None:
            self.store.set_limits(memory_size=memory)
        if wasi:
            wasi_config = WasiConfig()
            if preopen is not None:
                wasi_config.preopen_dir(str(preopen), "/data")
            self.store.set_wasi(wasi_config)
        self.instance = linker.instantiate(self.store, component(wasm))

    def __call__(self, interface: str, function: str, *args: Any) -> Any:
        exported = self.instance.get_export_index(self.store, iface(interface))
        index = self.instance.get_export_index(self.store, function, exported)
        assert index is not None, f"{interface}.{function} is not exported"
        func = self.instance.get_func(self.store, index)
        return func(self.store, *args)


@pytest.fixture
def guest(components: dict[str, Path]) -> Iterator[Callable[..., Guest]]:
    yield lambda name, **kwargs: Guest(components[name], **kwargs)


def block_ref(label: str, owner: str = "agent") -> Record:
    return rec(block_id=f"id:{owner}/{label}", label=label, agent_id=owner)


# --------------------------------------------------------------------------------------------
# Calling the guests


def test_nothing_runs_at_instantiation_and_one_instance_serves_all(
    guest: Callable[..., Guest],
) -> None:
    g = guest("echo_block", files="a.md=disk text\n;b.md=b")
    assert g.host.calls == []  # module top level (and its print) ran at build time, not here
    assert g("data-block", "source-id") == "echo:default"
    assert g.host.called("get-config") == [("files",), ("name",)]  # __init__ ran on first call
    g("data-block", "name")
    g("data-block", "block-schema")
    assert g.host.called("get-config") == [("files",), ("name",)]  # ... and only then
    assert (2, "name() called; instances=1") in g.host.logs


def test_print_goes_to_the_host_log(guest: Callable[..., Guest]) -> None:
    g = guest("echo_block")
    assert g("data-block", "name") == "Echo block source"
    assert g.host.logs[-3:] == [
        (2, "name() called; instances=1"),  # stdout -> info
        (3, "a warning on stderr"),  # stderr -> warn
        (2, "no newline yet"),  # flushed when the call returns
    ]


def test_data_block_values_are_converted(guest: Callable[..., Guest]) -> None:
    g = guest("echo_block", files="a.md=disk text\n")
    assert fields(g("data-block", "block-schema")) == {
        "name": "text",
        "description": "plain text",
        "schema-json": '{"type": "string"}',
    }
    rules = [fields(r) for r in g("data-block", "permission-rules")]
    assert rules == [
        {"pattern": "private/**", "permission": "read-only"},
        {"pattern": "**", "permission": "admin"},
    ]
    loaded = fields(g("data-block", "load", "a.md", "agent"))
    assert loaded == {"block-id": "id:agent/a.md", "label": "a.md", "agent-id": "agent"}
    assert g.host.blocks["agent", "a.md"] == "disk text\n"
    assert g.host.bases["a.md"][1] == "disk text\n"
    created = fields(g("data-block", "create", "new.md", None, "agent"))
    assert created["label"] == "new.md" and g.host.blocks["agent", "new.md"] == ""
    history = g("data-block", "history", block_ref("a.md"))
    assert [fields(v)["version-id"] for v in history] == ["v1"]
    diff = g("data-block", "diff", block_ref("a.md"), "v1", None)
    assert diff == Variant("ok", "--- v1\n+++ current\n@@ -1 +1 @@\n-first text\n+disk text\n")
    assert g("data-block", "rollback", block_ref("a.md"), "v1") is None
    assert g.host.blocks["agent", "a.md"] == "first text\n"


def test_reconcile_builds_wit_variants(guest: Callable[..., Guest]) -> None:
    g = guest("echo_block", files="same=s;merge=base\n;fight=base\n;twin=t")
    for path in ("same", "merge", "fight", "twin"):
        g("data-block", "load", path, "agent")
    g.host.blocks["agent", "merge"] = "agent edit\n"  # agent changed: merges cleanly
    g.host.blocks["agent", "fight"] = "agent edit\n"  # all three differ: a conflict
    g.host.bases["fight"] = (block_ref("fight"), "older\n")
    g.host.bases["twin"] = (block_ref("twin"), "older")  # both sides moved to the same text
    results = g("data-block", "reconcile", ["same", "merge", "fight", "twin", "unknown"])
    assert results == [
        Variant("no-change", "same"),
        Variant("resolved", ("merge", "merged")),
        Variant("needs-resolution", ("fight", "base\n", "agent edit\n")),
        Variant("resolved", ("twin", "identical")),
        Variant("no-change", "unknown"),
    ]
    assert g.host.bases["merge"][1] == "agent edit\n"
    assert (2, "reconcile 5 paths; 4 bound") in g.host.logs


def test_exceptions_become_err_strings(guest: Callable[..., Guest]) -> None:
    g = guest("echo_block")
    assert (
        g("data-block", "load", "missing.md", "agent")
        == "FileNotFoundError: no such path: missing.md"
    )
    assert g("data-block", "delete", "missing.md") == "KeyError: 'missing.md'"
    # a host err surfaces in the guest as HostError, and back out as this call's err
    assert g("data-block", "save", block_ref("nobody.md")) == "HostError: no block agent/nobody.md"
    assert g("data-block", "rollback", block_ref("x"), "v9") == "HostError: no version v9"
    traceback = [m for level, m in g.host.logs if level == 1 and "KeyError" in m]
    assert traceback and 'File "/0/app.py"' in traceback[0]
    assert g("data-block", "name") == "Echo block source"  # the instance lives on


def test_a_trap_is_a_trap_with_its_traceback_logged(guest: Callable[..., Guest]) -> None:
    g = guest("echo_stream")
    with pytest.raises(WasmtimeError):
        g("data-stream", "resume")  # no err channel: RuntimeError traps
    errors = [message for level, message in g.host.logs if level == 4]
    assert errors and errors[0].endswith("RuntimeError: cannot resume a stopped stream")
    with pytest.raises(WasmtimeError):
        g("data-stream", "name")  # a trapped instance stays dead


def test_stream_notifications_status_and_pull(guest: Callable[..., Guest]) -> None:
    g = guest("echo_stream", count="3")
    assert g("data-stream", "status") == Variant("stopped")
    assert g("data-stream", "stop") == "RuntimeError: not running"
    assert g("data-stream", "start", "agent") is None
    assert g.host.notifications == [
        (
            "echo stream started for agent",
            [{"block-id": "stream-block", "label": "echo-stream", "agent-id": "agent"}],
        ),
        ("second notification", []),
    ]
    assert g("data-stream", "status") == Variant("running")
    g("data-stream", "pause")
    assert g("data-stream", "status") == Variant("paused")
    assert g("data-stream", "supports-pull") is True
    first = g("data-stream", "pull", 2, None)
    assert [n.text for n in first] == ["event 0", "event 1"]
    assert [n.text for n in g("data-stream", "pull", 10, "2")] == ["event 2"]
    assert g("data-stream", "pull", 10, "x").startswith("ValueError: invalid literal")
    schemas = [fields(s)["schema-json"] for s in g("data-stream", "block-schemas")]
    assert schemas == ['{"type": "string"}', '{"type": "object"}']


def test_a_stream_asks_whether_its_start_is_a_restore(guest: Callable[..., Guest]) -> None:
    g = guest("echo_stream")
    g.host.restore = True
    assert g("data-stream", "start", "agent") is None
    assert (2, "start for agent, restoring: True") in g.host.logs


def test_tool_json_in_and_out(guest: Callable[..., Guest]) -> None:
    g = guest("echo_tool")
    assert g("tool", "name") == "echo"
    assert '"required": ["text"]' in g("tool", "parameters-schema")
    assert g("tool", "output-schema").startswith('{"type": "object"')
    assert g("tool", "usage-rule") == "Use it to test that tools work; never for real answers."
    result = g(
        "tool",
        "execute",
        '{"text": "hi", "times": 2}',
        '{"agent_id": "a1", "call_id": "c9", "x": 1}',
    )
    assert result == Variant(
        "ok",
        '{"echo": "hihi", "agent": "a1", "call": "c9", "meta_keys": ["agent_id", "call_id", "x"]}',
    )
    assert g("tool", "execute", "{}", "{}") == Variant("err", "ValueError: missing 'text'")
    assert g("tool", "execute", "{", "{}") == Variant(
        "err",
        "JSONDecodeError: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)",
    )
    assert g("tool", "execute", "{}", "[]") == Variant(
        "err", "TypeError: meta-json must be a JSON object, not list"
    )


def test_one_class_behind_three_interfaces(guest: Callable[..., Guest]) -> None:
    g = guest("kitchen_sink")
    assert (
        g("data-block", "name") == g("data-stream", "name") == g("tool", "name") == "Kitchen sink"
    )
    assert g("data-stream", "status") == Variant("running")
    assert g("data-stream", "supports-pull") is False and g("data-stream", "pull", 5, None) == []
    assert g("tool", "usage-rule") is None
    assert g("data-block", "delete", "x") == "PermissionError: kitchen sink never deletes"
    get = g("tool", "execute", '{"op": "get", "url": "https://ok.test/"}', "{}")
    assert get == Variant("ok", '{"body": "hello {\\"Accept\\": \\"text/plain\\"}"}')
    post = g("tool", "execute", '{"op": "post", "url": "https://ok.test/", "body": "b"}', "{}")
    assert post == Variant("ok", '{"body": "posted b {\\"X-Kind\\": \\"post\\"}"}')
    put = g(
        "tool",
        "execute",
        '{"op": "request", "method": "put", "url": "https://ok.test/", "body": "!"}',
        "",
    )
    assert put == Variant(
        "ok", '{"status": 200, "ok": true, "text": "hello!", "type": "text/plain"}'
    )
    assert g.host.called("request")[0][:3] == ("PUT", "https://ok.test/", [("X-A", "1")])
    refused = g("tool", "execute", '{"op": "request", "url": "https://evil.test/"}', "")
    assert refused == Variant("err", "HostError: https://evil.test/ is not allowed")


def test_two_classes_two_interfaces(guest: Callable[..., Guest]) -> None:
    g = guest("stream_tool")
    assert g("data-stream", "status") == Variant("paused")
    assert g("tool", "execute", '{"note": "n1"}', "{}") == Variant("ok", "1")
    assert g("tool", "execute", '{"note": "n2"}', "{}") == Variant("ok", "2")
    assert [text for text, _ in g.host.notifications] == ["n1", "n2"]


def test_wasi_plugin_reads_its_preopened_folder(
    guest: Callable[..., Guest], tmp_path: Path
) -> None:
    (tmp_path / "note.md").write_text("from disk\n", encoding="utf-8")
    g = guest("echo_files", wasi=True, preopen=tmp_path)
    assert fields(g("data-block", "load", "note.md", "agent"))["label"] == "note.md"
    assert g.host.blocks["agent", "note.md"] == "from disk\n"
    assert g("data-block", "reconcile", ["note.md", "gone.md"]) == [
        Variant("no-change", "note.md"),
        Variant("resolved", ("gone.md", "deleted")),
    ]
    assert g("data-block", "load", "nope.md", "agent").startswith("FileNotFoundError:")


def test_running_out_of_memory_traps(guest: Callable[..., Guest]) -> None:
    g = guest("hostile_membomb", memory=64 << 20)
    with pytest.raises(WasmtimeError):
        g("tool", "execute", "{}", "{}")  # MemoryError is not turned into an err
