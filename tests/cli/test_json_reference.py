"""The README's JSON reference cannot drift: each row's top-level fields are compared with what
the command prints -- exactly those, besides ``format`` (a row may not end in ``...``: a field
added to a command's output must be added to its row) -- every item's when the command prints
a list. Every row is checked, the commands
needing a built plugin (plugin build, inspect, check, list, sign, verify, streams,
notifications) too, on the fixture plugins the suite builds and caches."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from blocksync.cli import cli
from tests import test_streams as streams

from ..feedserver import FeedServer
from ..plugin_builds import FIXTURES, built_plugin
from ..test_sync import add_source
from ..test_watch import Watch

README = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
SECTION = README.split("## JSON output", 1)[1].split("\n## ", 1)[0]

# the fixtures of the stream tests: a store whose `feed` stream reads a local feed server
server = streams.server
store = streams.store

#: rows described in words: (the row whose fields they print, fields left out)
DESCRIBED = {
    "block list": ("block read", {"content", "commit"}),  # "without `content` and `commit`"
    "block history": ("block delete", set()),  # "a list of versions"
    "conflicts list": ("conflicts show", set()),  # "a list of conflicts"
    "runs show": ("runs", set()),  # "one run, as in `runs`"
}

#: which test checks which rows: together, every row of the table
CHECKED_BY_STORE_TEST = {
    "init", "block create", "block read", "block update", "block rollback", "block list",
    "block delete", "block history", "block path", "block diff", "index rebuild", "fsck", "gc",
    "reconcile", "sync", "runs", "runs show", "conflicts list", "conflicts show", "conflicts block",
    "conflicts resolve", "conflicts undo", "remote add", "remote remove", "remote list", "pull",
    "push", "tool list", "tool run", "plugin new",
}  # fmt: skip
CHECKED_BY_PLUGIN_TEST = {
    "plugin build", "plugin inspect", "plugin list", "plugin check", "plugin keygen",
    "plugin sign", "plugin verify",
}  # fmt: skip
CHECKED_BY_STREAM_TEST = {
    "stream list", "stream start", "stream stop", "stream pause", "stream resume", "stream pull",
    "notifications", "notifications ack",
}  # fmt: skip
CHECKED_BY_WATCH_TEST = {"watch"}


def rows() -> dict[str, str]:
    """command -> what its row says it prints, for every row of the README's table."""
    found: dict[str, str] = {}
    for line in SECTION.splitlines():
        if not line.startswith("| `"):
            continue
        names_cell, shape = line.split(" | ", 1)
        names = re.findall(r"`([^`]+)`", names_cell)
        group = names[0].split()[0] if " " in names[0] else ""
        for name in names:
            found[name if " " in name or not group else f"{group} {name}"] = shape
    return found


def reference() -> dict[str, tuple[set[str], bool]]:
    """command -> (documented fields, exact?), for every row of the README's table."""
    found: dict[str, tuple[set[str], bool]] = {}
    for command, shape in rows().items():
        start = shape.find("`{")
        if start >= 0:
            found[command] = _fields(shape[start + 2 :])
    for command, (like, without) in DESCRIBED.items():
        keys, exact = found[like]
        found[command] = (keys - without, exact)
    return found


def _fields(text: str) -> tuple[set[str], bool]:
    """The field names of an object written as ``{a, b: [{c, d}], ...}`` (``text`` starts after
    its opening brace), and whether they are all of them (no ``...``)."""
    fields = _top_level(text)
    return {f.split(":")[0] for f in fields if f and f != "..."}, "..." not in fields


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

    with_json = {p for p, c in _commands(cli) if any(o.name == "as_json" for o in c.params)}
    assert with_json == set(rows())  # a row for each, and no row for a command not there


def test_every_row_lists_every_field() -> None:
    """No row says ``{a, b, ...}``: a reader learns every field of a shape from the table."""
    inexact = sorted(command for command, (_, exact) in reference().items() if not exact)
    assert inexact == []


def test_every_row_is_checked_against_real_output() -> None:
    tests = [CHECKED_BY_STORE_TEST, CHECKED_BY_PLUGIN_TEST, CHECKED_BY_STREAM_TEST]
    assert set().union(*tests, CHECKED_BY_WATCH_TEST) == set(rows())


def check(printed: dict[str, Any], commands: set[str]) -> None:
    """What each command printed has exactly its row's fields, and ``"format": 1`` on each
    object."""
    assert set(printed) == commands
    documented = reference()
    for command, doc in printed.items():
        keys, exact = documented[command]
        items = doc if isinstance(doc, list) else [doc]
        assert items, f"{command} printed an empty list: nothing to check"
        for item in items:
            assert item["format"] == 1, command
            actual = set(item) - {"format"}
            assert exact, f"the row of {command} ends in '...'"
            assert keys == actual, (command, "missing:", keys - actual, "extra:", actual - keys)


def printed_by(store: Path | None, *args: str, codes: tuple[int, ...] = (0,)) -> Any:
    """The JSON ``blocksync [--store STORE] ARGS --json`` prints, run in this process."""
    where = [] if store is None else ["--store", str(store)]
    done = CliRunner().invoke(cli, [*where, *args, "--json"])
    assert done.exit_code in codes, (args, done.output)
    return json.loads(done.stdout)


def test_the_store_commands_print_their_rows(store_path: Path, tmp_path: Path) -> None:
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "a.md").write_text("a\n", encoding="utf-8")
    add_source(store_path, "notes", notes)
    hub = tmp_path / "hub.git"
    subprocess.run(["git", "init", "-q", "--bare", "--initial-branch=main", str(hub)], check=True)

    def run(*args: str) -> Any:
        return printed_by(store_path, *args, codes=(0, 3))

    printed: dict[str, Any] = {
        "init": printed_by(None, "init", str(tmp_path / "new")),
        "block create": run("block", "create", "alice", "p", "--content", "one"),
        "block update": run("block", "update", "alice", "p", "--content", "two"),
        "block read": run("block", "read", "alice", "p"),
        "block rollback": run("block", "rollback", "alice", "p", "1"),
        "block list": run("block", "list", "alice"),
        "block history": run("block", "history", "alice", "p"),
        "block path": run("block", "path", "alice", "p"),
        "block diff": run("block", "diff", "alice", "p"),
        "block delete": run("block", "delete", "alice", "p"),
        "index rebuild": run("index", "rebuild"),
        "fsck": run("fsck"),
        "gc": run("gc"),
        "reconcile": run("reconcile"),
        "sync": run("sync"),
        "remote add": run("remote", "add", "hub", str(hub)),
        "remote list": run("remote", "list"),
        "push": run("push"),
        "pull": run("pull"),
        "tool list": run("tool", "list"),
        "tool run": run("tool", "run", "blocksync_conflicts_list"),
        "remote remove": run("remote", "remove", "hub"),
        "plugin new": printed_by(None, "plugin", "new", str(tmp_path / "pn")),
    }
    printed["runs"] = run("runs")
    # `--chars`: the character diff in place of the unified one
    assert "`chars: [[op, text], ...]` with `--chars`" in rows()["block diff"]
    diff, _ = reference()["block diff"]
    run("block", "create", "alice", "q", "--content", "one")
    run("block", "update", "alice", "q", "--content", "two")
    chars = run("block", "diff", "alice", "q", "--chars")
    assert (chars["format"], set(chars) - {"format"}) == (1, diff - {"unified"} | {"chars"})
    printed["runs show"] = run("runs", "show", printed["sync"]["run_id"])
    with_block = run("block", "rollback", "alice", "p", "2")  # back, for conflicts below
    assert with_block["version"] == 5
    (notes / "a.md").write_text("disk\n", encoding="utf-8")
    (label,) = [b["label"] for b in run("block", "list", "alice") if b["label"].endswith("a.md")]
    run("block", "update", "alice", label, "--content", "agent\n")
    run("reconcile")
    printed["conflicts list"] = run("conflicts", "list")
    conflict = printed["conflicts list"][0]["id"]
    printed["conflicts show"] = run("conflicts", "show", conflict)
    printed["conflicts resolve"] = run("conflicts", "resolve", conflict, "--take", "disk")
    printed["conflicts undo"] = run("conflicts", "undo", conflict)
    printed["conflicts block"] = run("conflicts", "block")
    check(printed, CHECKED_BY_STORE_TEST)


@pytest.mark.slow  # `plugin build` runs componentize-py: ~10-20 s
def test_the_plugin_commands_print_their_rows(store_path: Path, tmp_path: Path) -> None:
    wasm = store_path / "plugins" / "echo.wasm"
    shutil.copyfile(built_plugin("echo_tool"), wasm)
    key = tmp_path / "k"
    built = tmp_path / "built.wasm"
    printed: dict[str, Any] = {
        "plugin build": printed_by(
            store_path, "plugin", "build", str(FIXTURES / "echo_tool"), "-o", str(built)
        ),
        "plugin inspect": printed_by(store_path, "plugin", "inspect", str(wasm)),
        "plugin check": printed_by(store_path, "plugin", "check", str(wasm)),
        "plugin keygen": printed_by(None, "plugin", "keygen", str(key)),
        "plugin sign": printed_by(None, "plugin", "sign", str(wasm), "--key", str(key)),
        "plugin verify": printed_by(None, "plugin", "verify", str(wasm)),
        "plugin list": printed_by(store_path, "plugin", "list"),
    }
    assert printed["plugin verify"]["state"] == "signed"
    # --source: the source check added to the verdict, or alone for an unsigned plugin
    source = str(FIXTURES / "echo_tool")
    both = printed_by(None, "plugin", "verify", str(wasm), "--source", source)
    alone = printed_by(None, "plugin", "verify", str(built), "--source", source)
    row = rows()["plugin verify"]
    verdict, _ = reference()["plugin verify"]
    assert set(both) - {"format"} == verdict | {"source"}
    assert set(alone) - {"format"} == _fields(row.split("`{")[-1])[0] == {"source", "ok"}
    assert set(both["source"]) == set(alone["source"]) == _fields(row.split("source: {")[1])[0]
    check(printed, CHECKED_BY_PLUGIN_TEST)


def test_the_stream_commands_print_their_rows(store: Path, server: FeedServer) -> None:
    server.add(2, refs=["nowhere"])
    printed: dict[str, Any] = {
        "stream start": printed_by(store, "stream", "start", "feed"),
        "stream pause": printed_by(store, "stream", "pause", "feed"),
        "stream resume": printed_by(store, "stream", "resume", "feed"),
        "stream pull": printed_by(store, "stream", "pull", "feed"),
        "stream stop": printed_by(store, "stream", "stop", "feed"),
        "stream list": printed_by(store, "stream", "list"),
        "notifications ack": printed_by(store, "notifications", "ack", "1"),
        "notifications": printed_by(store, "notifications"),
    }
    assert 1 not in [n["id"] for n in printed["notifications"]]  # acknowledged
    check(printed, CHECKED_BY_STREAM_TEST)


def test_the_watch_lines_are_its_row(store_path: Path, tmp_path: Path) -> None:
    notes = tmp_path / "notes"
    notes.mkdir()
    add_source(store_path, "notes", notes)
    more = tmp_path / "more"
    more.mkdir()
    config = store_path / "blocksync.toml"
    watch = Watch(store_path, "--json")  # waits for its first line, the "watching" notice
    try:
        (notes / "a.md").write_text("a\n", encoding="utf-8")
        watch.wait_for("round")  # a round is printed when it changed something
        valid = config.read_text(encoding="utf-8")
        config.write_text(valid + "\n[agents.alice.data_sources.more\n", encoding="utf-8")
        watch.wait_for("config-invalid")
        fixed = f'[agents.alice.data_sources.more]\ntype = "file"\npaths = ["{more}"]\n'
        config.write_text(valid + fixed, encoding="utf-8")
        watch.wait_for("config-reloaded")
        shutil.rmtree(notes)
        watch.wait_for("folder-missing")
        assert watch.stop()[0] == 0
    finally:
        watch.close()
    events = watch.events()
    assert [e["event"] for e in events if e["event"] != "round"] == [
        "watching",
        "config-invalid",
        "config-reloaded",
        "folder-missing",
        "stopped",
    ]
    # the row's shapes: a round, a notice, a notice about a source (`polling`, checked in
    # tests/test_watch_plugins.py), one about a folder, a configuration used or refused
    round_, notice, _, about_a_folder, reloaded, invalid = (
        _fields(s) for s in rows()["watch"].split("`{")[1:]
    )
    shapes = {
        "round": round_,
        "folder-missing": about_a_folder,
        "config-reloaded": reloaded,
        "config-invalid": invalid,
    }
    for event in events:
        shape = shapes.get(event["event"], notice)
        assert (event["format"], set(event) - {"format"}) == (1, shape[0]), event
        assert shape[1]  # exact: none of them ends in "..."
