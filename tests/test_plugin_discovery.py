"""Discovery: ``.wasm`` files in ``store/plugins/`` are listed with what they are, each optional
``<name>.toml`` manifest only ASKS and the config GRANTS, and one broken plugin or manifest
never hides the others. Real components: the hand-written WAT tool (compiles in milliseconds)
and the componentize-py ``echo_tool``."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import blocksync
from blocksync.errors import ConfigError, NotFound, PluginRefused
from blocksync.plugins.discovery import parse_manifest, shortfalls
from blocksync.plugins.registry import PluginEntry
from blocksync.plugins.spec import PluginSpec

from .plugin_builds import built_plugin, wat_fixture
from .stores import make_store

GOOD_MANIFEST = """
name = "Echo"
description = "Repeats the given text."
version = "1.2.0"
agent = "alice"

[needs]
limits = { timeout = 5 }
"""


@pytest.fixture(scope="module")
def echo_tool() -> Path:
    return built_plugin("echo_tool")


def open_store(
    tmp: Path, sources: dict[str, dict[str, Any]], files: dict[str, Path | bytes | str]
) -> blocksync.Workspace:
    """A store whose plugins/ folder holds ``files`` (a .wasm copied or bytes; a .toml text)."""
    root = make_store(tmp / "store", sources)
    folder = root / "plugins"
    folder.mkdir(exist_ok=True)
    for name, content in files.items():
        target = folder / name
        if isinstance(content, Path):
            shutil.copyfile(content, target)
        elif isinstance(content, bytes):
            target.write_bytes(content)
        else:
            target.write_text(content, encoding="utf-8")
    return blocksync.open(root, author="human:test")


@pytest.fixture
def wat(tmp_path: Path) -> Path:
    return wat_fixture("hostile_tool", tmp_path)


@pytest.fixture
def ws(tmp_path: Path, echo_tool: Path, wat: Path) -> Iterator[blocksync.Workspace]:
    ws = open_store(
        tmp_path, {}, {"echo.wasm": echo_tool, "echo.toml": GOOD_MANIFEST, "wat.wasm": wat}
    )
    yield ws
    ws.close()


def by_key(entries: list[PluginEntry]) -> dict[str, PluginEntry]:
    keys = [e.key for e in entries]
    assert len(keys) == len(set(keys)), keys
    return {e.key: e for e in entries}


def test_a_discovered_plugin_is_listed_with_what_it_is(
    ws: blocksync.Workspace, echo_tool: Path, wat: Path
) -> None:
    entries = by_key(ws.plugins.list())
    assert set(entries) == {"echo", "wat"}
    echo = entries["echo"]
    sha = hashlib.sha256(echo_tool.read_bytes()).hexdigest()
    assert echo.discovered and not echo.configured and not echo.loaded
    assert echo.interfaces == ("tool",)
    assert echo.name == "Echo" and echo.description == "Repeats the given text."
    assert echo.version == "1.2.0"  # the manifest's; the sha256 identifies the file
    assert echo.sha256 == sha and echo.size == echo_tool.stat().st_size
    assert echo.trust == "unsigned" and echo.last_error is None
    assert echo.agent is None  # a manifest's `agent` is a hint: it attaches nothing
    assert echo.manifest == ws.root / "plugins" / "echo.toml"
    plain = entries["wat"]
    wat_sha = hashlib.sha256(wat.read_bytes()).hexdigest()
    assert plain.version == f"sha256:{wat_sha[:12]}" and plain.sha256 == wat_sha
    assert plain.name == "wat" and plain.manifest is None and plain.interfaces == ("tool",)
    # machine-readable, and nothing was loaded or attached by listing
    assert json.loads(json.dumps([e.to_json() for e in entries.values()]))[0]["key"] == "echo"
    assert ws.plugins.specs == {} and ws.plugins.data_block_keys() == []


def test_a_discovered_plugin_without_config_is_attached_to_nothing(
    ws: blocksync.Workspace,
) -> None:
    with pytest.raises(NotFound, match="discovered in .* but no .* attached to no agent"):
        ws.plugins.get("echo")
    with pytest.raises(NotFound):
        ws.plugins.tool("wat")
    assert not any(e.loaded for e in ws.plugins.list())


def test_configured_and_discovered_make_one_entry(tmp_path: Path, wat: Path) -> None:
    ws = open_store(
        tmp_path,
        {"mytool": {"path": "plugins/wat.wasm", "name": "My tool", "source_kind": "tool"}},
        {
            "wat.wasm": wat,
            "wat.toml": 'description = "hostile"\n[needs]\nlimits = { timeout = 1 }\n',
            "other.wasm": wat,
        },
    )
    try:
        entries = by_key(ws.plugins.list())
        assert set(entries) == {"mytool", "other"}
        mine = entries["mytool"]
        assert mine.configured and mine.discovered and mine.agent == "alice"
        assert mine.name == "My tool" and mine.description == "hostile" and not mine.loaded
        assert mine.path == ws.root / "plugins" / "wat.wasm"
        assert ws.plugins.tool("mytool").name() == "hostile-tool"
        assert by_key(ws.plugins.list())["mytool"].loaded
        other = entries["other"]
        assert not other.configured and other.discovered and other.sha256 == mine.sha256
    finally:
        ws.close()


NEEDY = """
[needs]
dir = true
dir_mode = "read-write"
hosts = ["api.example.com", "s3.example.com:9000", "ok.example.com"]
limits = { timeout = 60, memory_mb = 64 }
"""


def test_a_manifest_asking_more_than_granted_is_refused_naming_each_difference(
    tmp_path: Path, wat: Path
) -> None:
    ws = open_store(
        tmp_path,
        {
            "needy": {
                "path": "plugins/needy.wasm",
                "allowed_hosts": ["ok.example.com", "s3.example.com"],
            }
        },
        {"needy.wasm": wat, "needy.toml": NEEDY},
    )
    try:
        with pytest.raises(PluginRefused) as info:
            ws.plugins.get("needy")
        message = str(info.value)
        assert "needy.toml asks for more than [agents.alice.data_sources.needy] grants" in message
        assert "needs a folder (needs.dir), but the config grants none" in message
        assert "needs its folder read-write (needs.dir_mode)" in message
        assert "needs host api.example.com (needs.hosts)" in message
        assert "needs limits.timeout = 60, above the 10 the config grants" in message
        # what is granted is not named: a host covered by a port-less entry, a smaller limit
        assert "needs host s3.example.com:9000" not in message
        assert "needs host ok.example.com" not in message
        assert "memory_mb" not in message
        entry = by_key(ws.plugins.list())["needy"]
        assert not entry.loaded and entry.last_error is not None
        assert "needs host api.example.com" in entry.last_error
    finally:
        ws.close()


def test_a_manifest_within_the_grants_loads(tmp_path: Path, wat: Path) -> None:
    grants = tmp_path / "granted"
    grants.mkdir()
    ws = open_store(
        tmp_path,
        {
            "needy": {
                "path": "plugins/needy.wasm",
                "dir": grants,
                "dir_mode": "read-write",
                "allowed_hosts": ["api.example.com", "*.example.com"],
                "limits": {"timeout": 60},
            }
        },
        {"needy.wasm": wat, "needy.toml": NEEDY},
    )
    try:
        assert ws.plugins.tool("needy").name() == "hostile-tool"
        assert by_key(ws.plugins.list())["needy"].last_error is None
    finally:
        ws.close()


def test_shortfalls_compare_with_effective_limits(tmp_path: Path) -> None:
    manifest = tmp_path / "m.toml"
    manifest.write_text("[needs]\nlimits = { fuel = 1000, result_mb = 4 }\n", encoding="utf-8")
    needs = parse_manifest(manifest).needs
    unlimited = PluginSpec(key="k", agent="a", path=tmp_path / "m.wasm")
    assert shortfalls(needs, unlimited) == []  # no fuel limit grants any fuel


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('name = "x"\n\n[needs\ndir = true\n', "is not valid TOML: .*line 3"),
        ("needz = 1\n", "unknown key\\(s\\) needz"),
        ('[needs]\ndir = "yes"\n', "\\[needs\\].dir must be true or false"),
        ("[needs]\nlimits = { speed = 3 }\n", "unknown limit 'speed'"),
        ('[needs]\nhosts = "a.com"\n', "\\[needs\\].hosts must be a list"),
    ],
)
def test_a_malformed_manifest_is_listed_as_the_plugins_error_and_others_are_fine(
    tmp_path: Path, wat: Path, text: str, expected: str
) -> None:
    ws = open_store(
        tmp_path,
        {"bad": {"path": "plugins/bad.wasm"}},
        {
            "bad.wasm": wat,
            "bad.toml": text,
            "good.wasm": wat,
            "good.toml": GOOD_MANIFEST,
            "garbage.wasm": b"not wasm at all",
        },
    )
    try:
        entries = by_key(ws.plugins.list())
        bad = entries["bad"]
        assert bad.last_error is not None
        assert f"plugin manifest {ws.root / 'plugins' / 'bad.toml'}" in bad.last_error
        assert re.search(expected, bad.last_error), bad.last_error
        assert bad.interfaces == ("tool",)  # the component itself was still described
        assert entries["good"].last_error is None and entries["good"].version == "1.2.0"
        garbage = entries["garbage"]
        assert garbage.last_error is not None and "is not a WebAssembly file" in garbage.last_error
        assert garbage.interfaces == () and garbage.size == len(b"not wasm at all")
        with pytest.raises(ConfigError, match="bad.toml"):
            ws.plugins.get("bad")
    finally:
        ws.close()
