"""The CLI side of tests/test_plugin_load.py: the same behaviour through `blocksync` commands."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from click.testing import CliRunner, Result

from blocksync.cli import cli
from tests import test_plugin_load as base

# fixtures and helpers of the library tests, shared (assigned: a fixture is found by name)
REFUSALS = base.REFUSALS
cli_store = base.cli_store
deserialized = base.deserialized
echo_tool = base.echo_tool
wasm = base.wasm


def inspect(store: Path, path: Path, *extra: str) -> Result:
    result = CliRunner().invoke(
        cli, ["--store", str(store), "plugin", "inspect", str(path), *extra], catch_exceptions=False
    )
    assert "Traceback" not in result.output
    return result


def test_inspect_a_good_component(echo_tool: Path, cli_store: Path) -> None:
    sha = hashlib.sha256(echo_tool.read_bytes()).hexdigest()
    result = inspect(cli_store, echo_tool)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == f"{echo_tool}: {echo_tool.stat().st_size:,} bytes, sha256 {sha}"
    assert lines[1] == "exports: tool@0.1.0"
    assert lines[2].startswith("imports: ") and lines[2].endswith("; no WASI")
    assert "pattern:extension/host@0.1.0" in lines[2]
    assert lines[3] == "loadable: yes"

    result = inspect(cli_store, echo_tool, "--json")
    assert result.exit_code == 0
    doc = json.loads(result.output)
    assert doc == {
        "format": 1,
        "path": str(echo_tool),
        "sha256": sha,
        "size": echo_tool.stat().st_size,
        "exports": {"tool": "0.1.0"},
        "imports": doc["imports"],
        "wasi": False,
        "label_namespace": None,  # no data-block export
        "loadable": True,
        "problem": None,
    }
    assert {
        "pattern:extension/host@0.1.0",
        "pattern:extension/sync@0.1.0",
        "pattern:extension/http@0.1.0",
    } <= set(doc["imports"])


def test_inspect_a_refused_component_exits_1(wasm: dict[str, Path], tmp_path: Path) -> None:
    store = tmp_path / "no-store"  # no cache folder: inspect compiles without caching
    result = inspect(store, wasm["wrong_types"])
    assert result.exit_code == 1
    assert "exports: tool@0.1.0" in result.output
    assert "refused: tool.name has type () -> u32; expected () -> string" in result.output
    assert not store.exists()

    result = inspect(store, wasm["future_version"], "--json")
    assert result.exit_code == 1
    doc = json.loads(result.output)
    assert doc["loadable"] is False and doc["exports"] == {"tool": "0.2.0"}
    assert doc["problem"] == "exports tool@0.2.0; this blocksync supports tool@0.1.0"
    assert doc["imports"] == ["pattern:extension/host@0.1.0"]

    result = inspect(store, wasm["wants_wasi_http"], "--json")
    assert result.exit_code == 1
    assert "wasi:http/outgoing-handler@0.2.0" in json.loads(result.output)["problem"]


def test_inspect_a_file_that_is_no_component(wasm: dict[str, Path], tmp_path: Path) -> None:
    for name in ("random", "core_module", "truncated"):
        result = inspect(tmp_path, wasm[name])
        assert result.exit_code == 1
        assert result.output.startswith(f"error: plugin '{name}.wasm' (sha256:")
        assert REFUSALS[name] in result.output
