"""Loading a plugin: everything unfit is refused before any of its code runs, and the compile
cache only ever deserializes artifacts this program wrote.

Real wasmtime throughout: the hand-written WAT fixtures in fixtures/wat/ (compiled in
milliseconds) and one componentize-py component (echo_tool) for `blocksync plugin inspect`.

"Before any code runs" is observed, not assumed: the *probe* variants of the WAT fixtures get a
core start function that calls the host's `log` as soon as the component is instantiated, so a
refused plugin must leave no record under its logger (and the accepted control shows the probe
does fire once the plugin is really instantiated).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import wasmtime
from wasmtime.component import Component

import blocksync
from blocksync.errors import PluginRefused
from blocksync.plugins import Limits, PluginSpec, load, runtime
from blocksync.plugins.host import cache as cache_mod

from .plugin_builds import built_plugin
from .stores import share_compile_cache

ROOT = Path(__file__).resolve().parent.parent
WAT = ROOT / "fixtures" / "wat"

#: the start function the probe variants get: it logs "about to spin" at instantiation
ANCHOR = '(import "host" "log" (func $log (param i32 i32 i32)))'
PROBE = (
    ANCHOR
    + "\n    (func $boot (call $log (i32.const 2) (i32.const 32) (i32.const 13)))"
    + ("\n    (start $boot)")
)


def compile_wat(text: str, out: Path) -> Path:
    out.write_bytes(wasmtime.wat2wasm(text))
    return out


@pytest.fixture(scope="module")
def wasm(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every WAT fixture as a .wasm file, plus probe variants and non-components."""
    folder = tmp_path_factory.mktemp("wasm")
    out = {}
    for source in sorted(WAT.glob("*.wat")):
        text = source.read_text(encoding="utf-8")
        out[source.stem] = compile_wat(text, folder / f"{source.stem}.wasm")
        if ANCHOR in text:
            assert text.count(ANCHOR) == 1
            probe = text.replace(ANCHOR, PROBE)
            out[f"probe_{source.stem}"] = compile_wat(probe, folder / f"probe_{source.stem}.wasm")
    good = out["hostile_tool"].read_bytes()
    (folder / "truncated.wasm").write_bytes(good[: len(good) // 2])
    out["truncated"] = folder / "truncated.wasm"
    (folder / "random.wasm").write_bytes(os.urandom(4096))
    out["random"] = folder / "random.wasm"
    # the component preamble (magic, version 0x0d, layer 1) followed by noise
    (folder / "random_component.wasm").write_bytes(b"\0asm\x0d\x00\x01\x00" + os.urandom(4096))
    out["random_component"] = folder / "random_component.wasm"
    (folder / "empty.wasm").write_bytes(b"")
    out["empty"] = folder / "empty.wasm"
    return out


def spec(key: str, path: Path, **kwargs: object) -> PluginSpec:
    return PluginSpec(key=key, agent="alice", path=path, **kwargs)  # type: ignore[arg-type]


def plugin_records(caplog: pytest.LogCaptureFixture, key: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == f"blocksync.plugin.{key}"]


# --------------------------------------------------------------------------------------------
# Refusals


REFUSALS = {
    # fixture: (what the message must say, after "plugin '<key>' (<version>) load: ")
    "truncated": "is not a valid component: unexpected end-of-file",
    "random": "is not a WebAssembly file",
    "random_component": "is not a valid component",
    "empty": "is not a WebAssembly file",
    "core_module": "is a core WebAssembly module, not a component",
    "probe_wrong_types": "tool.name has type () -> u32; expected () -> string",
    "probe_future_version": "exports tool@0.2.0; this blocksync supports tool@0.1.0",
    "no_interfaces": (
        "exports none of the pattern:extension interfaces (data-block, data-stream, tool)"
    ),
    "probe_wants_wasi_http": (
        "imports what the host does not provide: wasi:http/outgoing-handler@0.2.0"
    ),
}


@pytest.mark.parametrize("fixture", sorted(REFUSALS))
def test_unfit_files_are_refused_naming_plugin_and_reason(
    fixture: str, wasm: dict[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    path = wasm[fixture]
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(PluginRefused) as info:
        load(spec(f"bad-{fixture}", path))
    error = info.value
    assert error.plugin == f"bad-{fixture}"
    assert error.version == f"sha256:{sha[:12]}"
    assert error.call == "load"
    assert REFUSALS[fixture] in error.detail
    assert str(error).startswith(f"plugin 'bad-{fixture}' (sha256:{sha[:12]}) load: ")
    assert plugin_records(caplog, f"bad-{fixture}") == [], "refused code must never run"


def test_the_probe_fires_once_a_plugin_is_really_instantiated(
    wasm: dict[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    """The control for the refusals above: the same probe in an acceptable component."""
    caplog.set_level(logging.DEBUG)
    plugin = load(spec("probe", wasm["probe_hostile_tool"]))
    try:
        assert plugin.interfaces == ("tool",)
        assert plugin_records(caplog, "probe") == [], "load() must not instantiate"
        assert plugin.call("tool", "name") == "hostile-tool"
        assert plugin_records(caplog, "probe") == ["about to spin"]
    finally:
        plugin.close()


def test_the_supported_version_is_named(wasm: dict[str, Path]) -> None:
    with pytest.raises(PluginRefused, match=r"supports tool@0\.1\.0$"):
        load(spec("future", wasm["future_version"]))


def test_a_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(PluginRefused, match=r"plugin 'gone' .* load: cannot read .*nope\.wasm"):
        load(spec("gone", tmp_path / "nope.wasm"))


def test_a_missing_granted_folder_is_refused(wasm: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(PluginRefused, match="granted folder .* does not exist"):
        load(spec("nodir", wasm["hostile_tool"], dir=tmp_path / "missing"))


def test_sha256_pin(
    wasm: dict[str, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    path = tmp_path / "pinned.wasm"
    shutil.copyfile(wasm["hostile_tool"], path)
    pin = hashlib.sha256(path.read_bytes()).hexdigest()
    plugin = load(spec("pinned", path, sha256=pin))
    assert plugin.call("tool", "name") == "hostile-tool"
    plugin.close()

    # the file changes into another perfectly valid component: refused before it runs
    shutil.copyfile(wasm["probe_hostile_tool"], path)
    changed = hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(PluginRefused) as info:
        load(spec("pinned", path, sha256=pin))
    assert info.value.plugin == "pinned"
    assert f"has sha256 {changed}, but the config pins {pin}" in str(info.value)
    assert plugin_records(caplog, "pinned") == []


def test_sha256_pin_from_blocksync_toml(wasm: dict[str, Path], tmp_path: Path) -> None:
    store = tmp_path / "store"
    blocksync.init(store, author="test:setup").close()
    path = store / "plugins" / "tool.wasm"
    shutil.copyfile(wasm["hostile_tool"], path)
    pin = hashlib.sha256(path.read_bytes()).hexdigest()
    (store / "blocksync.toml").write_text(
        "[agents.alice.data_sources.pinned]\n"
        'type = "wasm"\npath = "plugins/tool.wasm"\n'
        f'sha256 = "{pin.upper()}"\n',  # hex digits in either case
        encoding="utf-8",
    )
    with blocksync.open(store) as ws:
        assert ws.plugins.tool("pinned").name() == "hostile-tool"
    shutil.copyfile(wasm["wrong_types"], path)
    with (
        blocksync.open(store) as ws,
        pytest.raises(PluginRefused, match=r"plugin 'pinned' .* but the config pins"),
    ):
        ws.plugins.tool("pinned")


# --------------------------------------------------------------------------------------------
# blocksync plugin inspect


@pytest.fixture(scope="module")
def echo_tool() -> Path:
    return built_plugin("echo_tool")


@pytest.fixture
def cli_store(tmp_path: Path) -> Path:
    """A store folder whose cache/ is the shared compile cache (inspect compiles into it)."""
    return share_compile_cache(tmp_path / "store")


# --------------------------------------------------------------------------------------------
# The compile cache


class Entry:
    """The cache files of one component in one cache folder."""

    def __init__(self, folder: Path, wasm: Path) -> None:
        sha = hashlib.sha256(wasm.read_bytes()).hexdigest()
        key = runtime().cache(folder).key(sha)
        self.artifact = folder / f"{key}.cwasm"
        self.stamp = folder / f"{key}.stamp"

    def identity(self) -> dict[str, object]:
        """What an honest stamp says of the artifact as it is now: its sha256 and size."""
        data = self.artifact.read_bytes()
        return {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}

    def stamped(self) -> dict[str, object]:
        recorded: dict[str, object] = json.loads(self.stamp.read_text(encoding="utf-8"))
        return recorded

    def forge_stamp(self) -> None:
        """What only a forger (or silent corruption) could do: make the stamp match again."""
        self.stamp.write_text(json.dumps(self.identity()), encoding="utf-8")


@pytest.fixture
def deserialized(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Paths the cache hands to wasmtime's deserializer (a spy: the real call still happens)."""
    calls: list[str] = []
    real = Component.deserialize_file

    def spy(engine: wasmtime.Engine, path: str) -> Component:
        calls.append(path)
        return real(engine, path)

    monkeypatch.setattr(Component, "deserialize_file", staticmethod(spy))  # cache.py's too
    yield calls


def load_from(folder: Path | None, path: Path, key: str = "cached") -> str:
    """Load ``path`` as a new process would: without the components this process shares."""
    cache_mod._loaded.clear()
    plugin = load(spec(key, path, limits=Limits(timeout=2.0)), cache_folder=folder)
    try:
        return str(plugin.call("tool", "name"))
    finally:
        plugin.close()


def test_sources_of_one_file_share_its_compiled_component(
    wasm: dict[str, Path], tmp_path: Path, deserialized: list[str]
) -> None:
    """Seven sources configured with one file cost one compiled component, not seven."""
    folder = tmp_path / "cache"
    load_from(folder, wasm["hostile_tool"])  # compiled and cached on disk
    deserialized.clear()
    cache_mod._loaded.clear()
    plugins = [
        load(
            spec(f"copy{i}", wasm["hostile_tool"], limits=Limits(timeout=2.0)), cache_folder=folder
        )
        for i in range(3)
    ]
    try:
        assert deserialized == [str(Entry(folder, wasm["hostile_tool"]).artifact)]  # once
        assert len({id(p._version.component) for p in plugins}) == 1
        assert [p.call("tool", "name") for p in plugins] == ["hostile-tool"] * 3
    finally:
        for plugin in plugins:
            plugin.close()


def test_a_load_writes_artifact_and_stamp(
    wasm: dict[str, Path], tmp_path: Path, deserialized: list[str]
) -> None:
    folder = tmp_path / "cache"
    entry = Entry(folder, wasm["hostile_tool"])
    assert load_from(folder, wasm["hostile_tool"]) == "hostile-tool"
    assert entry.artifact.is_file() and entry.stamp.is_file()
    assert entry.stamped() == entry.identity()
    assert deserialized == []  # compiled, not read back
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [entry.artifact.name, entry.stamp.name]
    ), "no temporary files left behind"

    assert load_from(folder, wasm["hostile_tool"]) == "hostile-tool"
    assert deserialized == [str(entry.artifact)]  # the second load uses the artifact


def test_the_key_covers_wasm_wasmtime_version_and_engine_config(wasm: dict[str, Path]) -> None:
    sha = hashlib.sha256(wasm["hostile_tool"].read_bytes()).hexdigest()
    engine_key = runtime().engine_key
    assert "wasmtime 50." in engine_key and "epoch" in engine_key and "fuel" in engine_key
    keys = {
        cache_mod.CompileCache(None, engine_key).key(sha),
        cache_mod.CompileCache(None, engine_key + "; other config").key(sha),
        cache_mod.CompileCache(None, engine_key).key("0" * 64),
    }
    assert len(keys) == 3


@pytest.mark.parametrize("damage", ["garbage", "elf-header-then-garbage", "truncated"])
def test_a_corrupt_artifact_with_a_forged_stamp_is_discarded_and_rebuilt(
    damage: str,
    wasm: dict[str, Path],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    deserialized: list[str],
) -> None:
    folder = tmp_path / "cache"
    entry = Entry(folder, wasm["hostile_tool"])
    load_from(folder, wasm["hostile_tool"])
    good = entry.artifact.read_bytes()
    bad = {
        "garbage": os.urandom(len(good)),
        "elf-header-then-garbage": good[:64] + os.urandom(len(good) - 64),
        "truncated": good[: len(good) // 2],
    }[damage]
    with entry.artifact.open("wb") as file:  # in place: same inode
        file.write(bad)
    entry.forge_stamp()

    assert load_from(folder, wasm["hostile_tool"]) == "hostile-tool"
    assert deserialized == [str(entry.artifact)]  # tried once, refused by wasmtime
    warnings = [r.getMessage() for r in caplog.records if r.name == "blocksync.plugins.host.cache"]
    assert any(w.startswith("discarding unusable compiled plugin") for w in warnings), warnings
    rebuilt = entry.artifact.read_bytes()
    assert rebuilt != bad and rebuilt[:4] == b"\x7fELF"
    assert entry.stamped() == entry.identity()  # a fresh, honest stamp

    assert load_from(folder, wasm["hostile_tool"]) == "hostile-tool"  # and it is good again
    assert deserialized == [str(entry.artifact)] * 2


def test_an_artifact_whose_stamp_does_not_match_is_never_deserialized(
    wasm: dict[str, Path],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    deserialized: list[str],
) -> None:
    """Swap in a *valid* artifact of another component: deserializing it would load the wrong
    code (and be refused for its wrong types). The stamp does not match, so it is recompiled."""
    folder = tmp_path / "cache"
    entry = Entry(folder, wasm["hostile_tool"])
    load_from(folder, wasm["hostile_tool"])
    other = Component(runtime().engine, wasm["wrong_types"].read_bytes()).serialize()
    entry.artifact.write_bytes(other)

    assert load_from(folder, wasm["hostile_tool"]) == "hostile-tool"
    assert deserialized == []
    assert not [r for r in caplog.records if r.name == "blocksync.plugins.host.cache"]
    assert entry.artifact.read_bytes() != other
    assert entry.stamped() == entry.identity()


def test_an_artifact_modified_in_place_with_its_mtime_restored_is_not_trusted(
    wasm: dict[str, Path], tmp_path: Path, deserialized: list[str]
) -> None:
    """Same inode, same size, same mtime: only the content moved."""
    folder = tmp_path / "cache"
    entry = Entry(folder, wasm["hostile_tool"])
    load_from(folder, wasm["hostile_tool"])
    before = entry.artifact.stat()
    data = bytearray(entry.artifact.read_bytes())
    data[len(data) // 2] ^= 0xFF
    with entry.artifact.open("r+b") as file:
        file.write(bytes(data))
    os.utime(entry.artifact, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = entry.artifact.stat()
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == (
        before.st_ino,
        before.st_size,
        before.st_mtime_ns,
    )

    assert load_from(folder, wasm["hostile_tool"]) == "hostile-tool"
    assert deserialized == []
    assert entry.stamped() == entry.identity()


def test_a_cache_copied_elsewhere_is_used_as_it_is(
    wasm: dict[str, Path], tmp_path: Path, deserialized: list[str]
) -> None:
    """The stamp names content, not a file identity: a cache restored by copying (new inodes,
    new ctimes: a CI cache, a backup) is still trusted and read, not recompiled."""
    load_from(tmp_path / "cache", wasm["hostile_tool"])
    shutil.copytree(tmp_path / "cache", tmp_path / "restored")
    restored = Entry(tmp_path / "restored", wasm["hostile_tool"])
    assert load_from(tmp_path / "restored", wasm["hostile_tool"]) == "hostile-tool"
    assert deserialized == [str(restored.artifact)]


def test_a_changed_wasm_never_reuses_the_artifact_of_its_old_content(
    wasm: dict[str, Path], tmp_path: Path, deserialized: list[str]
) -> None:
    """The key is the .wasm's content: the same path with other bytes (same size, same mtime)
    is compiled afresh, never served the old file's native code."""
    folder, plugin = tmp_path / "cache", tmp_path / "plugin.wasm"
    text = (WAT / "hostile_tool.wat").read_text(encoding="utf-8")
    assert '"hostile-tool"' in text
    compile_wat(text, plugin)
    assert load_from(folder, plugin) == "hostile-tool"
    before = plugin.stat()
    compile_wat(text.replace('"hostile-tool"', '"hostile-TOOL"'), plugin)
    os.utime(plugin, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert plugin.stat().st_size == before.st_size

    assert load_from(folder, plugin) == "hostile-TOOL"
    assert deserialized == []
    assert load_from(folder, plugin) == "hostile-TOOL"  # now from its own artifact
    assert deserialized == [str(Entry(folder, plugin).artifact)]


def test_a_missing_or_garbled_stamp_means_recompile(
    wasm: dict[str, Path], tmp_path: Path, deserialized: list[str]
) -> None:
    folder = tmp_path / "cache"
    entry = Entry(folder, wasm["hostile_tool"])
    load_from(folder, wasm["hostile_tool"])
    entry.stamp.unlink()
    assert load_from(folder, wasm["hostile_tool"]) == "hostile-tool"
    entry.stamp.write_text("not json", encoding="utf-8")
    assert load_from(folder, wasm["hostile_tool"]) == "hostile-tool"
    assert deserialized == []
    assert entry.stamped() == entry.identity()


def test_loading_works_without_a_usable_cache_folder(
    wasm: dict[str, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # no cache at all
    assert load_from(None, wasm["hostile_tool"]) == "hostile-tool"

    # a folder that does not exist yet is created
    missing = tmp_path / "not" / "yet"
    assert load_from(missing, wasm["hostile_tool"]) == "hostile-tool"
    assert Entry(missing, wasm["hostile_tool"]).artifact.is_file()

    # a folder that cannot be created (a file is in the way): works, with a warning
    (tmp_path / "a-file").write_text("x", encoding="utf-8")
    blocked = tmp_path / "a-file" / "cache"
    assert load_from(blocked, wasm["hostile_tool"]) == "hostile-tool"
    assert any(
        r.getMessage().startswith("cannot cache compiled plugin")
        for r in caplog.records
        if r.name == "blocksync.plugins.host.cache"
    )

    # a read-only folder (root may still write into it: the load must work either way)
    readonly = tmp_path / "readonly"
    readonly.mkdir()
    readonly.chmod(0o555)
    try:
        assert load_from(readonly, wasm["hostile_tool"]) == "hostile-tool"
        if os.geteuid() != 0:
            assert list(readonly.iterdir()) == []
    finally:
        readonly.chmod(0o755)
