"""The CLI side of tests/test_reconcile.py: the same behaviour through `blocksync` commands."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

import blocksync
from blocksync.cli import cli
from tests import test_reconcile as base

# fixtures and helpers of the library tests, shared (assigned: a fixture is found by name)
label = base.label
notes = base.notes
store = base.store
ws = base.ws


def test_cli_reconcile_and_conflicts(store: Path, notes: Path) -> None:
    run = lambda *a: CliRunner().invoke(cli, ["--store", str(store), *a])
    first = run("reconcile", "--json")
    assert first.exit_code == 0, first.output
    doc = json.loads(first.output)
    assert {"run_id", "sources", "open_conflicts"} <= doc.keys()
    assert {r["path"] for r in doc["sources"][0]["resolved"]} == {"a.md", "b.md"}
    with blocksync.open(store) as ws:
        (notes / "a.md").write_text("x disk\n")
        ws.blocks.update("alice", label(ws, "a.md"), "x agent\n")
    result = run("reconcile")
    assert result.exit_code == 3 and "CONFLICT" in result.output
    listed = json.loads(run("conflicts", "list", "--json").output)
    assert {"id", "source", "path", "owner", "label", "status", "reason"} <= listed[0].keys()
    cid = listed[0]["id"]
    shown = run("conflicts", "show", cid[:6])
    assert shown.exit_code == 0 and "x disk" in shown.output and "x agent" in shown.output
    assert run("conflicts", "resolve", cid).exit_code == 2  # neither --take nor --content-file
    assert run("conflicts", "resolve", cid, "--take", "agent").exit_code == 0
    assert (notes / "a.md").read_text() == "x agent\n"
    assert run("conflicts", "resolve", cid, "--take", "disk").exit_code == 5
    assert run("conflicts", "show", "c-ffffffffff").exit_code == 4
    assert run("reconcile", "--source", "nope").exit_code == 4
    assert run("conflicts", "list", "--status", "all", "--json").exit_code == 0
