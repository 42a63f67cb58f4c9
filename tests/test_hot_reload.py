"""Hot reload: a plugin whose .wasm changes is loaded again and swapped in between calls, in a
host that stays up (the workspace is never reopened). A broken new file leaves the old version
serving, with a warning and the plugin's last error; fixing the file is picked up. Real
components: the componentize-py ``echo_tool`` and ``files``, the WAT ``hostile_tool``."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import blocksync
from blocksync.plugins.registry import PluginEntry

from .plugin_builds import built_plugins, wat_fixture
from .stores import make_store

KEY = "tool"


@pytest.fixture(scope="module")
def built() -> dict[str, Path]:
    return built_plugins(["echo_tool", "files"])


@pytest.fixture(scope="module")
def wat(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("wat")
    return {
        name: wat_fixture(name, folder)
        for name in ("hostile_tool", "core_module", "no_interfaces", "wrong_types")
    }


def replace(target: Path, data: bytes) -> None:
    """Atomically, as a deploy would: a temporary file renamed over the plugin."""
    partial = target.with_name(f".{target.name}.partial")
    partial.write_bytes(data)
    os.replace(partial, target)


def tagged(wasm: Path, tag: bytes) -> bytes:
    """The same component with a custom section appended: a new file (new sha256) that
    behaves the same."""
    name = b"blocksync-test"
    body = bytes([len(name)]) + name + tag
    assert len(body) < 128
    return wasm.read_bytes() + b"\x00" + bytes([len(body)]) + body


def entry(ws: blocksync.Workspace, key: str) -> PluginEntry:
    (found,) = [e for e in ws.plugins.list() if e.key == key]
    return found


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "blocksync.plugins" and r.levelno == logging.WARNING
    ]


@pytest.fixture
def ws(tmp_path: Path, built: dict[str, Path]) -> Iterator[blocksync.Workspace]:
    root = make_store(tmp_path / "store", {KEY: {"path": "plugins/tool.wasm"}})
    (root / "plugins").mkdir(exist_ok=True)
    shutil.copyfile(built["echo_tool"], root / "plugins" / "tool.wasm")
    ws = blocksync.open(root, author="human:test")
    yield ws
    ws.close()


def test_a_changed_file_answers_the_next_call(
    ws: blocksync.Workspace, wat: dict[str, Path]
) -> None:
    tool = ws.plugins.tool(KEY)
    plugin = ws.plugins.get(KEY)
    assert tool.name() == "echo"
    old = plugin.version
    replace(plugin.spec.path, wat["hostile_tool"].read_bytes())
    assert tool.name() == "hostile-tool"  # the same bridge, the same Plugin: a new version
    assert ws.plugins.get(KEY) is plugin and plugin.reloads == 1
    sha = hashlib.sha256(wat["hostile_tool"].read_bytes()).hexdigest()
    assert plugin.version == f"sha256:{sha[:12]}" != old
    assert entry(ws, KEY).sha256 == sha and entry(ws, KEY).last_error is None


def test_touching_the_file_is_no_new_version(ws: blocksync.Workspace) -> None:
    tool = ws.plugins.tool(KEY)
    plugin = ws.plugins.get(KEY)
    assert tool.name() == "echo"
    replace(plugin.spec.path, plugin.spec.path.read_bytes())  # new inode, same sha256
    assert tool.name() == "echo" and plugin.reloads == 0


BROKEN: dict[str, tuple[Callable[[dict[str, Path]], bytes], str]] = {
    "garbage": (lambda w: os.urandom(2048), "is not a WebAssembly file"),
    "core_module": (lambda w: w["core_module"].read_bytes(), "is a core WebAssembly module"),
    "no_interfaces": (lambda w: w["no_interfaces"].read_bytes(), "exports none of the"),
    "wrong_types": (lambda w: w["wrong_types"].read_bytes(), "tool.name has type () -> u32"),
    "truncated": (lambda w: w["hostile_tool"].read_bytes()[:300], "is not a valid component"),
}


@pytest.mark.parametrize("broken", sorted(BROKEN))
def test_a_broken_new_file_leaves_the_old_version_serving_until_fixed(
    ws: blocksync.Workspace, wat: dict[str, Path], caplog: pytest.LogCaptureFixture, broken: str
) -> None:
    caplog.set_level(logging.INFO, logger="blocksync.plugins")
    make, reason = BROKEN[broken]
    tool = ws.plugins.tool(KEY)
    plugin = ws.plugins.get(KEY)
    assert tool.name() == "echo"
    serving = plugin.version
    replace(plugin.spec.path, make(wat))
    assert tool.name() == "echo" and tool.description() == "Repeats the given text."
    assert plugin.version == serving and plugin.reloads == 0
    assert plugin.last_error is not None and reason in plugin.last_error
    (warning,) = warnings(caplog)  # the same broken file is tried once, not on every call
    assert f"plugin {KEY!r}: keeping version {serving}" in warning and reason in warning
    listed = entry(ws, KEY)
    assert listed.loaded and listed.last_error == plugin.last_error
    assert listed.sha256 == serving.removeprefix("sha256:") or listed.version == serving
    # fixed: the next call picks it up and the error is gone
    replace(plugin.spec.path, wat["hostile_tool"].read_bytes())
    assert tool.name() == "hostile-tool"
    assert plugin.reloads == 1 and plugin.last_error is None
    assert entry(ws, KEY).last_error is None


def test_a_pinned_plugin_refuses_a_changed_file(
    tmp_path: Path,
    built: dict[str, Path],
    wat: dict[str, Path],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="blocksync.plugins")
    pin = hashlib.sha256(built["echo_tool"].read_bytes()).hexdigest()
    root = make_store(tmp_path / "store", {KEY: {"path": "plugins/tool.wasm", "sha256": pin}})
    (root / "plugins").mkdir(exist_ok=True)
    shutil.copyfile(built["echo_tool"], root / "plugins" / "tool.wasm")
    with blocksync.open(root, author="human:test") as ws:
        tool = ws.plugins.tool(KEY)
        assert tool.name() == "echo"
        replace(root / "plugins" / "tool.wasm", wat["hostile_tool"].read_bytes())
        assert tool.name() == "echo"
        assert f"but the config pins {pin}" in (ws.plugins.get(KEY).last_error or "")
        assert len(warnings(caplog)) == 1


def test_a_new_manifest_asking_more_refuses_the_new_file(
    ws: blocksync.Workspace, wat: dict[str, Path]
) -> None:
    tool = ws.plugins.tool(KEY)
    assert tool.name() == "echo"
    path = ws.plugins.get(KEY).spec.path
    path.with_suffix(".toml").write_text('[needs]\nhosts = ["evil.example.com"]\n', "utf-8")
    replace(path, wat["hostile_tool"].read_bytes())
    assert tool.name() == "echo"
    assert "needs host evil.example.com" in (ws.plugins.get(KEY).last_error or "")


def test_the_watcher_swaps_without_a_call(ws: blocksync.Workspace, wat: dict[str, Path]) -> None:
    tool = ws.plugins.tool(KEY)
    plugin = ws.plugins.get(KEY)
    assert tool.name() == "echo"
    ws.plugins.watch(interval=0.02)
    try:
        assert ws.plugins.watching
        replace(plugin.spec.path, wat["hostile_tool"].read_bytes())
        deadline = time.monotonic() + 10
        while plugin.reloads == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert plugin.reloads == 1  # no call was made
        assert entry(ws, KEY).sha256 == hashlib.sha256(wat["hostile_tool"].read_bytes()).hexdigest()
        assert tool.name() == "hostile-tool"
    finally:
        ws.plugins.stop_watching()
    assert not ws.plugins.watching


def test_refresh_checks_now(ws: blocksync.Workspace, wat: dict[str, Path]) -> None:
    plugin = ws.plugins.get(KEY)
    assert ws.plugins.refresh() == []
    replace(plugin.spec.path, wat["hostile_tool"].read_bytes())
    assert ws.plugins.refresh() == [KEY] and plugin.reloads == 1


def test_a_swapped_data_block_plugin_keeps_reconciling(
    tmp_path: Path, built: dict[str, Path]
) -> None:
    notes = tmp_path / "notes"
    notes.mkdir()
    root = make_store(
        tmp_path / "store",
        {
            "notes": {
                "path": "plugins/files.wasm",
                "dir": notes,
                "dir_mode": "read-write",
                "config": {"owner": "alice", "tag": "notes", "permission": "admin"},
            }
        },
    )
    (root / "plugins").mkdir(exist_ok=True)
    wasm = root / "plugins" / "files.wasm"
    shutil.copyfile(built["files"], wasm)
    with blocksync.open(root, author="human:test") as ws:
        (notes / "a.md").write_text("one\n", encoding="utf-8")
        report = ws.reconcile()
        assert report.sources[0].error is None and len(report.sources[0].resolved) == 1
        plugin = ws.plugins.get("notes")
        old = plugin.version
        # a new build (same behaviour, new sha256: deterministic, so compiled once per cache)
        replace(wasm, tagged(built["files"], b"v2"))
        (notes / "b.md").write_text("two\n", encoding="utf-8")
        (notes / "a.md").write_text("one, edited\n", encoding="utf-8")
        report = ws.reconcile()
        assert report.sources[0].error is None, report.sources[0].error
        assert plugin.reloads == 1 and plugin.version != old
        assert sorted(p for p, _ in report.sources[0].resolved) == ["a.md", "b.md"]
        assert ws.blocks.read("alice", "file:notes:a.md").content == "one, edited\n"
        assert ws.blocks.read("alice", "file:notes:b.md").content == "two\n"
        # the sync bases talk to the plugin's live host context (it holds the reconcile batch)
        assert ws.plugins._bases["notes"].host is plugin.host
        again = ws.reconcile()
        assert again.sources[0].unchanged == 2 and not again.sources[0].resolved
        assert ws.fsck().ok
