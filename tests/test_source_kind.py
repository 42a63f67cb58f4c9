"""``source_kind`` is checked against what the plugin exports when it is loaded (issue 15, item 5).

A tool declared a stream used to be listed by ``stream list`` and fail at ``stream start``; a
data-block plugin declared a stream was never reconciled. Each mismatch is now a ConfigError at
load that names the config table, the declared kind and the plugin's exports; a correct (or an
undeclared, non-stream) kind loads. Real components, built by componentize-py, in a real store.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

import blocksync
from blocksync.errors import ConfigError

from .plugin_builds import built_plugins
from .stores import make_store
from .test_sync import BLOCKSYNC, ENV

#: fixture -> what it exports
EXPORTS = {
    "echo_tool": "tool",
    "echo_block": "data-block",
    "echo_stream": "data-stream",
    "stream_tool": "data-stream and tool",
    "kitchen_sink": "data-block and data-stream and tool",
}

#: (fixture, declared kind, the fix the error suggests)
MISMATCHES = [
    ("echo_tool", "stream", "tool"),
    ("echo_tool", "both", "tool"),
    ("echo_tool", "block", "tool"),
    ("echo_block", "stream", "block"),
    ("echo_block", "both", "block"),
    ("echo_block", "tool", "block"),
    ("echo_stream", "block", "stream"),
    ("echo_stream", "both", "stream"),
    ("echo_stream", "tool", "stream"),
    ("stream_tool", "both", "stream"),
    ("stream_tool", "block", "stream"),
]
#: (fixture, declared kind or None) that load
MATCHES = [
    ("echo_tool", "tool"),
    ("echo_tool", None),
    ("echo_block", "block"),
    ("echo_block", None),
    ("echo_stream", "stream"),
    ("stream_tool", "stream"),
    ("stream_tool", "tool"),
    ("kitchen_sink", "both"),
    ("kitchen_sink", "block"),
    ("kitchen_sink", "stream"),
    ("kitchen_sink", "tool"),
]


@pytest.fixture(scope="module")
def built() -> dict[str, Path]:
    return built_plugins(EXPORTS)


def _key(name: str, kind: str | None) -> str:
    return f"{name}_{kind or 'undeclared'}"


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, built: dict[str, Path]) -> Path:
    tables = {}
    for name, kind in [(n, k) for n, k, _ in MISMATCHES] + MATCHES + [("echo_stream", None)]:
        table: dict[str, object] = {"path": built[name]}
        if kind is not None:
            table["source_kind"] = kind
        tables[_key(name, kind)] = table
    return make_store(tmp_path_factory.mktemp("kinds") / "store", tables)


@pytest.fixture
def ws(store: Path) -> Iterator[blocksync.Workspace]:
    with blocksync.open(store, author="human:test") as ws:
        yield ws


@pytest.mark.parametrize(("name", "kind", "fix"), MISMATCHES)
def test_a_kind_the_plugin_does_not_export_is_refused_at_load(
    ws: blocksync.Workspace, name: str, kind: str, fix: str
) -> None:
    key = _key(name, kind)
    with pytest.raises(ConfigError) as info:
        ws.plugins.get(key)
    message = str(info.value)
    assert f"[agents.alice.data_sources.{key}]" in message
    assert f'source_kind = "{kind}"' in message
    assert f"exports {EXPORTS[name]} (not " in message
    assert f'declare source_kind = "{fix}"' in message
    # plugin list names it too, without loading it
    (entry,) = [e for e in ws.plugins.list() if e.key == key]
    assert entry.last_error is not None and f'source_kind = "{kind}"' in entry.last_error
    assert not entry.loaded


@pytest.mark.parametrize(("name", "kind"), MATCHES)
def test_a_kind_the_plugin_exports_loads(
    ws: blocksync.Workspace, name: str, kind: str | None
) -> None:
    key = _key(name, kind)
    plugin = ws.plugins.get(key)
    assert " and ".join(plugin.interfaces) == EXPORTS[name]
    (entry,) = [e for e in ws.plugins.list() if e.key == key]
    assert entry.last_error is None
    if kind in ("stream", "both"):
        assert ws.plugins.data_stream(key).name()
    if kind in (None, "block", "both") and "data-block" in plugin.interfaces:
        assert ws.plugins.data_block(key).name()
    if "tool" in plugin.interfaces:
        assert ws.plugins.tool(key).name()  # a tool goes with any kind


def test_an_undeclared_stream_is_refused_naming_the_kind_to_declare(
    ws: blocksync.Workspace,
) -> None:
    with pytest.raises(
        ConfigError, match='a data stream must be declared; declare source_kind = "stream"'
    ):
        ws.plugins.get("echo_stream_undeclared")


def test_only_declared_streams_are_streams(ws: blocksync.Workspace) -> None:
    streams = set(ws.streams.keys())
    assert "echo_tool_tool" not in streams and "echo_tool_undeclared" not in streams
    assert {"echo_stream_stream", "stream_tool_stream", "kitchen_sink_both"} <= streams
    # a block source declared "tool" is not reconciled
    assert "kitchen_sink_tool" not in ws.plugins.block_source_keys()


def test_stream_start_of_a_tool_declared_a_stream_says_why(store: Path) -> None:
    done = subprocess.run(
        [BLOCKSYNC, "--store", str(store), "stream", "start", "echo_tool_both"],
        capture_output=True,
        text=True,
        env=ENV,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert '[agents.alice.data_sources.echo_tool_both]: source_kind = "both"' in done.stderr
    assert 'exports tool (not data-block nor data-stream); declare source_kind = "tool"' in (
        done.stderr
    )


def test_an_unknown_kind_lists_the_four(tmp_path: Path) -> None:
    store = make_store(tmp_path / "store", {"x": {"path": "x.wasm", "source_kind": "sideways"}})
    with blocksync.open(store) as ws, pytest.raises(ConfigError) as info:
        ws.plugins.specs  # noqa: B018 - parsing is what is checked
    assert '"block", "stream", "both" or "tool"' in str(info.value)


def test_stream_list_shows_why_a_stream_was_refused_until_it_loads(
    tmp_path: Path, built: dict[str, Path]
) -> None:
    # stream list loads no plugin: the refusal a command met is kept as the stream's last error
    store = make_store(
        tmp_path / "store", {"feed": {"path": built["echo_stream"], "source_kind": "both"}}
    )
    with blocksync.open(store, author="human:test") as ws:
        (before,) = ws.streams.list()
        assert before.last_error is None
        for act in (lambda: ws.streams.get("feed").start(), lambda: ws.streams.pull("feed")):
            with pytest.raises(ConfigError):
                act()
            (status,) = ws.streams.list()
            assert status.last_error is not None
            assert 'source_kind = "both" uses the plugin as data-block and data-stream' in (
                status.last_error
            )
    config = store / "blocksync.toml"
    config.write_text(config.read_text().replace('"both"', '"stream"'))
    with blocksync.open(store, author="human:test") as ws:
        assert ws.streams.get("feed").start().state == "running"
        (status,) = ws.streams.list()
        assert status.last_error is None
