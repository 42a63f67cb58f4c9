"""Progress on a terminal (issue 14): long operations show what they are doing -- a plugin's
first compile above all -- and nothing changes without a terminal or with --json.

The display is tested as a user gets it, on a real pseudo-terminal; BLOCKSYNC_PROGRESS=always
(the same display into a pipe) is tested once, as the switch it is.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import blocksync
from blocksync.shared.progress import size_text

from ..plugin_builds import FIXTURES, wat_fixture
from ..terminal import run_on_terminal

BLOCKSYNC = str(Path(sys.executable).parent / "blocksync")
ENV = {k: v for k, v in os.environ.items() if k not in ("BLOCKSYNC_STORE", "BLOCKSYNC_PROGRESS")}


@pytest.fixture
def store(tmp_path: Path) -> Path:
    """A new store: its compile cache is empty (not the suite's shared one)."""
    blocksync.init(tmp_path / "store").close()
    return tmp_path / "store"


@pytest.fixture
def component(tmp_path: Path) -> Path:
    return wat_fixture("hostile_tool", tmp_path)


def inspect(store: Path, component: Path, *more: str) -> list[str]:
    return [BLOCKSYNC, "--store", str(store), "plugin", "inspect", str(component), *more]


def compiling_line(component: Path) -> str:
    return f"compiling {component.name} ({size_text(component.stat().st_size)}), first use only"


def test_first_use_of_a_plugin_shows_its_compile_on_a_terminal(
    store: Path, component: Path
) -> None:
    first = run_on_terminal(inspect(store, component), ENV)
    assert compiling_line(component) in first
    assert "exports: tool@0.1.0" in first  # and then the command's own output
    again = run_on_terminal(inspect(store, component), ENV)
    assert "compiling" not in again  # compiled once: the store's cache has it


def test_no_progress_without_a_terminal_or_with_json(
    store: Path, component: Path, tmp_path: Path
) -> None:
    piped = subprocess.run(
        inspect(store, component), check=False, capture_output=True, text=True, env=ENV
    )
    assert piped.returncode == 0 and piped.stderr == ""
    # the same command's output where nothing shows progress at all
    other = tmp_path / "other"
    blocksync.init(other).close()
    never = {**ENV, "BLOCKSYNC_PROGRESS": "never"}
    quiet = subprocess.run(
        inspect(other, component), check=False, capture_output=True, text=True, env=never
    )
    assert piped.stdout == quiet.stdout and quiet.stderr == ""

    fresh = tmp_path / "fresh"
    blocksync.init(fresh).close()
    on_terminal = run_on_terminal(inspect(fresh, component, "--json"), ENV)
    assert "compiling" not in on_terminal and "\x1b" not in on_terminal
    assert json.loads(on_terminal)["sha256"]


def test_the_switch_forces_the_display_into_a_pipe(store: Path, component: Path) -> None:
    always = {**ENV, "BLOCKSYNC_PROGRESS": "always"}
    done = subprocess.run(
        inspect(store, component), check=False, capture_output=True, text=True, env=always
    )
    assert done.returncode == 0 and compiling_line(component) in done.stderr
    assert "compiling" not in done.stdout  # progress goes to standard error only


@pytest.mark.slow
def test_plugin_build_inside_a_store_compiles_into_its_cache(store: Path, tmp_path: Path) -> None:
    """The build pays for the compile, so the plugin's first use in the store does not."""
    wasm = tmp_path / "echo.wasm"
    build = [BLOCKSYNC, "--store", str(store), "plugin", "build", str(FIXTURES / "echo_tool")]
    shown = run_on_terminal([*build, "-o", str(wasm)], ENV, 600)
    assert "building echo.wasm with componentize-py" in shown
    assert "compiling echo.wasm" in shown and "built " in shown
    assert list((store / "cache").glob("*.cwasm"))
    assert "compiling" not in run_on_terminal(inspect(store, wasm), ENV)
