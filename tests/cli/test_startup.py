"""Start-up (issue 14): a command imports only what it needs, so an agent calling the CLI does
not pay for wasmtime, cryptography, jsonschema or rich on every `--version` or `block read`.

Each command runs in a fresh interpreter (what a user runs), which reports the modules loaded
when the command ended: an eager import added anywhere on these paths fails here.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import blocksync

#: heavy libraries only some commands need (plugins, signatures, tool schemas, progress bars)
HEAVY = ("wasmtime", "cryptography", "jsonschema", "rich", "dulwich.porcelain", "mcp")

#: runs blocksync's CLI as its console script does, then prints the heavy modules loaded
_PROBE = """
import json, sys
from blocksync.cli import main
try:
    main()
except SystemExit:
    pass
heavy = sorted(m for m in sys.modules if m.split(".")[0] in {heavy} or m in {heavy})
print("\\n" + json.dumps(heavy))
"""


def loaded(*args: str) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", _PROBE.format(heavy=repr(set(HEAVY))), *args],
        capture_output=True,
        text=True,
        check=True,
    )
    result: list[str] = json.loads(done.stdout.splitlines()[-1])
    return result


@pytest.fixture
def store(tmp_path: Path) -> Path:
    with blocksync.init(tmp_path / "store") as ws:
        ws.blocks.create("alice", "notes", "hello\n")
    return tmp_path / "store"


@pytest.mark.parametrize("args", [["--version"], ["--help"], ["block", "--help"]])
def test_version_and_help_import_nothing_heavy(args: list[str]) -> None:
    assert loaded(*args) == []


def test_block_read_imports_nothing_heavy(store: Path) -> None:
    assert loaded("--store", str(store), "block", "read", "alice", "notes") == []
    assert loaded("--store", str(store), "block", "list", "--json") == []


def test_import_blocksync_imports_only_the_exception_tree() -> None:
    """The public names stay where they were (``blocksync.Workspace`` ...), imported on first
    use: a library user who opens a store to read blocks does not load the plugin host."""
    probe = (
        "import sys, blocksync; before = set(sys.modules); blocksync.Workspace; "
        "print(sorted(m for m in sys.modules if m.startswith(('blocksync.plugins', 'wasmtime'))))"
        "; print('blocksync.workspace' in before)"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.split("\n")[:2] == ["[]", "False"]
