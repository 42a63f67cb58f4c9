"""The README's JSON reference cannot drift: each row's top-level fields are compared with what
the command prints (``{a, b, ...}``: at least those; ``{a, b}``: exactly those, besides
``format``). Commands that need a built plugin (plugin build, inspect, check, list, verify,
sign, streams, notifications) are left to their own tests."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from blocksync.cli import cli

from ..test_sync import add_source

README = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")


def reference() -> dict[str, tuple[set[str], bool]]:
    """command -> (documented fields, exact?) from the README's table."""
    section = README.split("## JSON output", 1)[1].split("\n## ", 1)[0]
    found: dict[str, tuple[set[str], bool]] = {}
    for line in section.splitlines():
        if not line.startswith("| `"):
            continue
        names_cell, shape = line.split(" | ", 1)
        names = re.findall(r"`([^`]+)`", names_cell)
        group = names[0].split()[0] if " " in names[0] else ""
        start = shape.find("`{")
        if start < 0:  # "a list of blocks": described in words
            continue
        fields = _top_level(shape[start + 2 :])
        exact = "..." not in fields
        keys = {f.split(":")[0] for f in fields if f and f != "..."}
        for name in names:
            full = name if " " in name or not group else f"{group} {name}"
            found[full] = (keys, exact)
    return found


def _top_level(text: str) -> list[str]:
    """The comma-separated fields of an object written as ``{a, b: [{c, d}], ...}``, up to
    its closing brace (``text`` starts after the opening one)."""
    fields, depth, current = [], 0, ""
    for char in text:
        if char in "[{":
            depth += 1
        elif char in "]}":
            if depth == 0:
                break
            depth -= 1
        if char == "," and depth == 0:
            fields.append(current.strip())
            current = ""
        else:
            current += char
    return [*fields, current.strip()]


def test_the_reference_covers_every_json_command() -> None:
    from .test_rough_edges import _commands

    documented = README.split("## JSON output", 1)[1].split("\n## ", 1)[0]
    for path, command in _commands(cli):
        if any(p.name == "as_json" for p in command.params):
            assert f"`{path}`" in documented or f"`{path.split()[-1]}`" in documented, path


def test_the_reference_matches_what_commands_print(store_path: Path, tmp_path: Path) -> None:
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "a.md").write_text("a\n", encoding="utf-8")
    add_source(store_path, "notes", notes)
    hub = tmp_path / "hub.git"
    subprocess.run(["git", "init", "-q", "--bare", "--initial-branch=main", str(hub)], check=True)

    def run(*args: str) -> Any:
        done = CliRunner().invoke(cli, ["--store", str(store_path), *args, "--json"])
        assert done.exit_code in (0, 3), (args, done.output)
        return json.loads(done.output)

    printed: dict[str, Any] = {
        "init": json.loads(
            CliRunner().invoke(cli, ["init", str(tmp_path / "new"), "--json"]).output
        ),
        "block create": run("block", "create", "alice", "p", "--content", "one"),
        "block update": run("block", "update", "alice", "p", "--content", "two"),
        "block read": run("block", "read", "alice", "p"),
        "block rollback": run("block", "rollback", "alice", "p", "1"),
        "block path": run("block", "path", "alice", "p"),
        "block diff": run("block", "diff", "alice", "p"),
        "block delete": run("block", "delete", "alice", "p"),
        "index rebuild": run("index", "rebuild"),
        "fsck": run("fsck"),
        "gc": run("gc"),
        "reconcile": run("reconcile"),
        "sync": run("sync"),
        "remote add": run("remote", "add", "hub", str(hub)),
        "remote list": run("remote", "list")[0],
        "push": run("push")[0],
        "pull": run("pull"),
        "tool list": run("tool", "list"),
        "tool run": run("tool", "run", "blocksync_conflicts_list"),
        "remote remove": run("remote", "remove", "hub"),
        "plugin new": json.loads(
            CliRunner().invoke(cli, ["plugin", "new", str(tmp_path / "pn"), "--json"]).output
        ),
        "plugin keygen": json.loads(
            CliRunner().invoke(cli, ["plugin", "keygen", str(tmp_path / "k"), "--json"]).output
        ),
    }
    with_block = run("block", "rollback", "alice", "p", "2")  # back, for conflicts below
    assert with_block["version"] == 5
    (notes / "a.md").write_text("disk\n", encoding="utf-8")
    (label,) = [b["label"] for b in run("block", "list", "alice") if b["label"].endswith("a.md")]
    run("block", "update", "alice", label, "--content", "agent\n")
    run("reconcile")
    (conflict,) = run("conflicts", "list")
    printed["conflicts show"] = run("conflicts", "show", conflict["id"])
    printed["conflicts resolve"] = run("conflicts", "resolve", conflict["id"], "--take", "disk")
    printed["conflicts undo"] = run("conflicts", "undo", conflict["id"])

    documented = reference()
    for command, doc in printed.items():
        assert doc["format"] == 1, command
        keys, exact = documented[command]
        actual = set(doc) - {"format"}
        assert keys <= actual, (command, keys - actual)
        if exact:
            assert keys == actual, (command, actual - keys)
