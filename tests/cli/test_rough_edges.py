"""The command line as a new user meets it (issue 16, item 5): options where they are typed,
paths as a shell gives them, one JSON shape with its format, errors as JSON, a quiet summary,
one meaning of --timeout, and examples in every --help.

CliRunner in this process (with the real current folder, moved by ``monkeypatch.chdir``) or the
installed ``blocksync`` in a subprocess where a terminal or a log file is the point.
"""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result

import blocksync
from blocksync.cli import cli

from ..plugin_builds import built_plugin
from ..stores import make_store
from ..test_sync import ENV, add_source

BLOCKSYNC = str(Path(sys.executable).parent / "blocksync")


def run(*args: str, input: str | None = None) -> Result:
    result = CliRunner().invoke(cli, list(args), input=input, catch_exceptions=False)
    assert "Traceback" not in result.output
    return result


def installed(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [BLOCKSYNC, *args], capture_output=True, text=True, env=ENV, cwd=cwd, check=False
    )
    assert "Traceback" not in done.stderr, done.stderr
    return done


@pytest.fixture
def notes(store_path: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "shopping.md").write_text("tea\n", encoding="utf-8")
    (folder / "todo.md").write_text("write\n", encoding="utf-8")
    add_source(store_path, "notes", folder)
    return folder


def _conflict(store: Path, notes: Path) -> str:
    """An open conflict on shopping.md (both sides changed its one line)."""
    assert run("--store", str(store), "reconcile").exit_code == 0
    with blocksync.open(store) as ws:
        (block,) = [b for b in ws.blocks.list("alice") if b.label.endswith("shopping.md")]
        ws.blocks.update("alice", block.label, "black tea\n")
    (notes / "shopping.md").write_text("green tea\n", encoding="utf-8")
    assert run("--store", str(store), "reconcile").exit_code == 3
    with blocksync.open(store) as ws:
        (conflict,) = ws.conflicts.list()
    return conflict.id


# -- --store / --author / --json after the command --------------------------------------------


def test_store_and_author_are_taken_after_the_command(store_path: Path, tmp_path: Path) -> None:
    made = run("block", "create", "alice", "a", "--content", "x", "--store", str(store_path))
    assert made.exit_code == 0, made.output
    update = ["block", "update", "alice", "a", "--content", "y"]
    assert run(*update, "--author", "agent:late", "--store", str(store_path)).exit_code == 0
    history = json.loads(
        run("block", "history", "alice", "a", "--store", str(store_path), "--json").output
    )
    assert history[-1]["author"] == "agent:late"
    # after the command wins over before it
    listed = run(
        "--store", str(tmp_path / "elsewhere"), "block", "list", "--store", str(store_path)
    )
    assert listed.exit_code == 0 and "alice\ta\tv2" in listed.output
    # `blocksync push --store laptop`, the case that failed
    assert run("push", "--store", str(store_path)).exit_code == 0
    assert json.loads(run("push", "--json", "--store", str(store_path)).output) == []


def test_json_before_the_command(store_path: Path) -> None:
    run("--store", str(store_path), "block", "create", "alice", "a", "--content", "x")
    listed = json.loads(run("--json", "--store", str(store_path), "block", "list").output)
    assert [(b["format"], b["label"]) for b in listed] == [(1, "a")]


def test_a_command_that_prints_no_json_refuses_it(store_path: Path) -> None:
    for args in (["--json", "demo"], ["demo", "--json"]):
        result = run("--store", str(store_path), *args)
        assert result.exit_code == 2
        error = json.loads(result.output)  # the refusal is itself a JSON error
        assert (
            error["error"]["type"] == "UsageError" and "prints no JSON" in error["error"]["message"]
        )


def test_every_command_takes_them(store_path: Path) -> None:
    for path, command in _commands(cli):
        names = {o for p in command.params if isinstance(p, click.Option) for o in p.opts}
        assert {"--store", "--author", "--json"} <= names, path


def test_a_command_s_own_options_are_kept() -> None:
    """A command added later that declares --json (under another name) or --store itself
    keeps its own: the machinery adds only what a command lacks."""
    from blocksync.cli import _Commands

    group = _Commands("later")

    @group.command()
    @click.option("--json", "lines", is_flag=True)
    @click.option("--store", "where")
    def watch(lines: bool, where: str | None) -> None:
        click.echo(f"lines={lines} where={where}")

    result = CliRunner().invoke(group, ["watch", "--json", "--store", "here"])
    assert result.output == "lines=True where=here\n"
    assert [o for p in watch.params for o in p.opts].count("--json") == 1


@pytest.mark.parametrize(
    "args",
    [
        ["block", "list", "--store"],  # no value
        ["block", "list", "--author"],
        ["block", "list", "--store", "a-file"],  # a file, not a folder
    ],
)
def test_bad_global_options_after_the_command_are_usage_errors(
    store_path: Path, args: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(store_path.parent)
    (store_path.parent / "a-file").write_text("x", encoding="utf-8")
    result = run(*args)
    assert result.exit_code == 2, result.output


# -- reconcile PATH as a shell gives it ---------------------------------------------------------


def _reconciled(result: Result) -> dict[str, list[str]]:
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    return {s["source"]: [r["path"] for r in s["resolved"]] for s in doc["sources"]}


def test_paths_relative_to_the_current_folder(
    store_path: Path, notes: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = str(store_path)
    monkeypatch.chdir(notes.parent)
    got = run("reconcile", "notes/shopping.md", "--store", store, "--json")
    assert _reconciled(got) == {"notes": ["shopping.md"]}
    monkeypatch.chdir(notes)
    assert _reconciled(run("--store", store, "reconcile", "todo.md", "--json")) == {
        "notes": ["todo.md"]
    }
    (notes / "todo.md").write_text("written\n", encoding="utf-8")
    (notes / "shopping.md").write_text("coffee\n", encoding="utf-8")
    got = run("--store", store, "reconcile", "../notes/./todo.md", "--json")
    assert _reconciled(got) == {"notes": ["todo.md"]}  # shopping.md was not asked about


def test_absolute_paths_and_the_old_source_relative_form(
    store_path: Path, notes: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(store_path.parent.parent)  # a folder holding neither
    got = run("--store", str(store_path), "reconcile", str(notes / "todo.md"), "--json")
    assert _reconciled(got) == {"notes": ["todo.md"]}
    # as reports name it: no folder holds ./shopping.md here, the source has shopping.md
    got = run("--store", str(store_path), "reconcile", "shopping.md", "--json")
    assert _reconciled(got) == {"notes": ["shopping.md"]}


@pytest.mark.parametrize("given", ["/etc/passwd", "../../etc/passwd", "nope.md", "a//b"])
def test_a_path_in_no_source_is_a_usage_error_naming_the_folders(
    store_path: Path, notes: Path, monkeypatch: pytest.MonkeyPatch, given: str
) -> None:
    monkeypatch.chdir(store_path.parent)
    with blocksync.open(store_path) as ws:
        before = ws.blocks.head()
    result = run("--store", str(store_path), "reconcile", given)
    assert result.exit_code == 2, result.output
    assert f"{given!r} is in no data source" in result.output
    assert f"notes ({notes})" in result.output
    with blocksync.open(store_path) as ws:
        assert ws.blocks.head() == before and ws.blocks.list("alice") == []


def test_the_shell_form_of_today_silently_unchanged_path(
    store_path: Path, notes: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`notes/shopping.md` from the folder above: the file, not a path no one has."""
    monkeypatch.chdir(notes.parent)
    assert run("--store", str(store_path), "reconcile").exit_code == 0
    (notes / "shopping.md").write_text("coffee\n", encoding="utf-8")
    doc = json.loads(
        run("--store", str(store_path), "reconcile", "notes/shopping.md", "--json").output
    )
    (entry,) = doc["sources"]
    assert entry["resolved"] == [{"path": "shopping.md", "resolution": "disk->agent"}]


def test_a_run_from_a_removed_folder_needs_no_current_folder(
    store_path: Path, notes: Path, tmp_path: Path
) -> None:
    gone = tmp_path / "gone"
    gone.mkdir()
    script = f'cd "{gone}" && rmdir "{gone}" && exec "{BLOCKSYNC}" --store "{store_path}" reconcile'
    done = subprocess.run(
        ["sh", "-c", script], capture_output=True, text=True, env=ENV, check=False
    )
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize(
    ("given", "code", "said"),
    [
        ("notes/ghost.md", 4, "ghost.md"),  # in a source's folder, but the source lacks it
        ("notes", 2, "--source notes"),  # the folder itself: name the source
    ],
)
def test_paths_in_a_folder_that_are_no_file_of_it(
    store_path: Path, notes: Path, monkeypatch: pytest.MonkeyPatch, given: str, code: int, said: str
) -> None:
    monkeypatch.chdir(notes.parent)
    result = run("--store", str(store_path), "reconcile", given)
    assert result.exit_code == code and said in result.output, result.output


def test_a_path_meaning_two_things_is_ambiguous(
    store_path: Path, notes: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """From inside `other/`, `shopping.md` is other's file and, as given, a path of notes."""
    other = tmp_path / "other"
    other.mkdir()
    (other / "shopping.md").write_text("milk\n", encoding="utf-8")
    add_source(store_path, "other", other, agent="bob")
    assert run("--store", str(store_path), "reconcile", "--json").exit_code == 0
    monkeypatch.chdir(other)
    result = run("--store", str(store_path), "reconcile", "shopping.md")
    assert result.exit_code == 2 and "ambiguous" in result.output
    assert "absolute path" in result.output and "--source" in result.output
    # named: --source picks the meaning; the absolute path is always the file
    picked = run(
        "--store", str(store_path), "reconcile", "shopping.md", "--source", "notes", "--json"
    )
    assert json.loads(picked.output)["sources"][0]["source"] == "notes"
    absolute = run("--store", str(store_path), "reconcile", str(other / "shopping.md"), "--json")
    assert [s["source"] for s in json.loads(absolute.output)["sources"]] == ["other"]


def test_a_path_in_a_source_not_named_is_refused(
    store_path: Path, notes: Path, tmp_path: Path
) -> None:
    other = tmp_path / "other"
    other.mkdir()
    add_source(store_path, "other", other, agent="bob")
    result = run(
        "--store", str(store_path), "reconcile", str(notes / "todo.md"), "--source", "other"
    )
    assert result.exit_code == 2 and "not among the sources named" in result.output


def test_a_plugin_sources_granted_dir_is_its_folder(tmp_path: Path) -> None:
    folder = tmp_path / "mirrored"
    folder.mkdir()
    (folder / "a.md").write_text("from the plugin's folder\n", encoding="utf-8")
    (folder / "b.md").write_text("left alone\n", encoding="utf-8")
    store = make_store(
        tmp_path / "store",
        {
            "files": {
                "path": built_plugin("files"),
                "dir": folder,
                "dir_mode": "read-write",
                "config": {"owner": "alice", "tag": "files", "permission": "admin"},
            }
        },
    )
    done = installed("--store", str(store), "reconcile", "mirrored/a.md", "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    (entry,) = json.loads(done.stdout)["sources"]
    assert entry["source"] == "files" and [r["path"] for r in entry["resolved"]] == ["a.md"]
    outside = installed("--store", str(store), "reconcile", "/etc/hosts", cwd=tmp_path)
    assert outside.returncode == 2 and f"files ({folder})" in outside.stderr


# -- JSON: one shape, a format, errors too -------------------------------------------------------


def test_every_top_level_object_has_the_format(store_path: Path, notes: Path) -> None:
    s = str(store_path)
    conflict = _conflict(store_path, notes)
    for args in (
        ["reconcile", "--dry-run"],
        ["conflicts", "show", conflict],
        ["conflicts", "list"],
        ["fsck"],
        ["block", "list"],
        ["tool", "list"],
        ["remote", "list"],
    ):
        doc = json.loads(run("--store", s, *args, "--json").output)
        for item in doc if isinstance(doc, list) else [doc]:
            assert item["format"] == 1 and next(iter(item)) == "format", args


def test_needs_resolution_is_shaped_like_resolved(store_path: Path, notes: Path) -> None:
    conflict = _conflict(store_path, notes)
    (notes / "shopping.md").write_text("green tea!\n", encoding="utf-8")  # a new detection
    doc = json.loads(run("--store", str(store_path), "reconcile", "--json").output)
    (entry,) = doc["sources"]
    (needs,) = entry["needs_resolution"]
    with blocksync.open(store_path) as ws:
        (now,) = ws.conflicts.list()
    assert needs == {"path": "shopping.md", "conflict": now.id} and now.id != conflict
    dry = json.loads(run("--store", str(store_path), "reconcile", "--dry-run", "--json").output)
    assert dry["sources"][0]["needs_resolution"] == [{"path": "shopping.md", "conflict": None}]


def test_conflicts_undo_prints_json(store_path: Path, notes: Path) -> None:
    conflict = _conflict(store_path, notes)
    s = str(store_path)
    assert run("--store", s, "conflicts", "resolve", conflict, "--take", "disk").exit_code == 0
    undone = run("--store", s, "conflicts", "undo", conflict, "--json")
    assert undone.exit_code == 0, undone.output
    doc = json.loads(undone.output)
    assert doc["format"] == 1 and doc["id"] == conflict and doc["status"] == "open"


@pytest.mark.parametrize(
    ("args", "kind", "code"),
    [
        (["block", "read", "alice", "nobody", "--json"], "BlockNotFound", 4),
        (["block", "read", "alice", "--json"], "UsageError", 2),  # click: a missing argument
        (["block", "read", "alice", "x", "--nope", "--json"], "UsageError", 2),
        (["--nope", "--json", "block", "list"], "UsageError", 2),  # the root's own parser
        (["block", "create", "alice", "../x", "--content", "x", "--json"], "InvalidLabel", 2),
        (["conflicts", "resolve", "c-0", "--json"], "UsageError", 2),
    ],
)
def test_errors_under_json_are_json_on_standard_error(
    store_path: Path, args: list[str], kind: str, code: int
) -> None:
    done = installed("--store", str(store_path), *args)
    assert done.returncode == code and done.stdout == ""
    (line,) = done.stderr.splitlines()
    error = json.loads(line)
    assert set(error) == {"format", "error", "exit_code"} and error["format"] == 1
    assert error["exit_code"] == code and error["error"]["type"] == kind
    assert error["error"]["message"]


def test_without_json_errors_stay_text(store_path: Path) -> None:
    done = installed("--store", str(store_path), "block", "read", "alice", "nobody")
    assert done.returncode == 4 and done.stderr.startswith("error: no block 'nobody'")


def test_sync_json_is_one_line_per_run_a_log(store_path: Path, notes: Path, tmp_path: Path) -> None:
    log = tmp_path / "sync.log"
    for _ in range(2):
        with log.open("a", encoding="utf-8") as out:
            code = subprocess.run(
                [BLOCKSYNC, "--store", str(store_path), "sync", "--json"],
                stdout=out,
                env=ENV,
                check=False,
            ).returncode
        assert code == 0
    first, second = (json.loads(line) for line in log.read_text(encoding="utf-8").splitlines())
    assert first["format"] == second["format"] == 1 and first["run_id"] != second["run_id"]
    assert len(first["sources"][0]["resolved"]) == 2 and second["sources"][0]["unchanged"] == 2


# -- --quiet -------------------------------------------------------------------------------------


def test_quiet_prints_the_summary_only(store_path: Path, notes: Path) -> None:
    s = str(store_path)
    text = run("--store", s, "reconcile", "--quiet")
    assert text.exit_code == 0
    assert text.output.splitlines()[1:] == [
        "notes: 2 resolved, 0 need resolution, 0 unchanged, 0 skipped",
        "open conflicts: 0",
    ]
    (notes / "todo.md").write_text("done\n", encoding="utf-8")
    doc = json.loads(run("--store", s, "reconcile", "-q", "--json").output)
    assert doc["sources"] == [
        {
            "source": "notes",
            "counts": {
                "resolved": 1,
                "needs_resolution": 0,
                "unchanged": 1,
                "skipped": 0,
                "held": 0,
            },
            "seconds": doc["sources"][0]["seconds"],
            "error": None,
        }
    ]
    assert isinstance(doc["sources"][0]["seconds"], float)
    synced = installed("--store", s, "sync", "--quiet")
    assert synced.returncode == 0 and "  " not in synced.stdout  # no path lines
    assert "notes: 0 resolved, 0 need resolution, 2 unchanged, 0 skipped" in synced.stdout
    line = json.loads(installed("--store", s, "sync", "--quiet", "--json").stdout)
    assert line["sources"][0]["counts"]["unchanged"] == 2 and line["summary"]["unchanged"] == 2


# -- --timeout is the lock wait, --deadline the run ----------------------------------------------


def test_deadline_and_timeout_are_two_options(store_path: Path, notes: Path) -> None:
    s = str(store_path)
    late = json.loads(installed("--store", s, "sync", "--deadline", "0", "--json").stdout)
    assert late["timed_out"] is True and late["not_reached"] == ["notes"]
    assert late["deadline"] == 0 and late["timeout"] is None
    waited = json.loads(
        installed("--store", s, "sync", "--wait", "--timeout", "0", "--json").stdout
    )
    assert waited["timed_out"] is False and waited["timeout"] == 0
    assert waited["sources"][0]["error"] is None and len(waited["sources"][0]["resolved"]) == 2
    bad = run("--store", s, "sync", "--deadline", "-1")
    assert bad.exit_code == 2 and "--deadline" in bad.output


def test_the_library_splits_them_too(store_path: Path, notes: Path) -> None:
    with blocksync.open(store_path) as ws:
        late = ws.reconcile(deadline=0)
        assert late.sources[0].not_reached == "timeout" and late.exit_code == 1
        assert ws.reconcile(wait=True, timeout=0).exit_code == 0


# -- block create, conflicts, pull ---------------------------------------------------------------


def _on_terminal(argv: list[str]) -> tuple[int, str]:
    """Run ``argv`` with a terminal as its standard input, output and error."""
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=ENV)
        os.close(slave)
        out = b""
        while True:
            ready, _, _ = select.select([master], [], [], 60)
            if not ready:
                break  # it waits for typed input: the wait below fails
            try:
                chunk = os.read(master, 4096)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
        try:
            code = proc.wait(10)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    finally:
        os.close(master)
    return code, out.decode(errors="replace")


def test_block_create_on_a_terminal_without_content_refuses(store_path: Path) -> None:
    code, out = _on_terminal(
        [BLOCKSYNC, "--store", str(store_path), "block", "create", "alice", "a"]
    )
    assert code == 2 and "--empty" in out
    with blocksync.open(store_path) as ws:
        assert ws.blocks.list("alice") == []
    code, out = _on_terminal(
        [BLOCKSYNC, "--store", str(store_path), "block", "create", "alice", "a", "--empty"]
    )
    assert code == 0, out
    with blocksync.open(store_path) as ws:
        assert ws.blocks.read("alice", "a").content == ""


def test_block_create_bad_inputs(store_path: Path) -> None:
    s = str(store_path)
    both = run("--store", s, "block", "create", "alice", "a", "--empty", "--content", "x")
    assert both.exit_code == 2 and "not both" in both.output
    assert run("--store", s, "block", "create", "alice", "a", input="piped\n").exit_code == 0
    again = run("--store", s, "block", "create", "alice", "a", "--content", "y")
    assert again.exit_code == 2 and "already exists" in again.output


def test_conflicts_list_says_when_there_are_none(store_path: Path, notes: Path) -> None:
    s = str(store_path)
    assert run("--store", s, "conflicts", "list").output == "no open conflicts\n"
    assert run("--store", s, "conflicts", "list", "--status", "all").output == "no conflicts\n"
    assert run("--store", s, "conflicts", "list", "--json").output.strip() == "[]"


def test_take_merged_on_overlapping_sides_names_content_file(store_path: Path, notes: Path) -> None:
    conflict = _conflict(store_path, notes)
    result = run("--store", str(store_path), "conflicts", "resolve", conflict, "--take", "merged")
    assert result.exit_code == 2 and "--content-file" in result.output


def test_pull_counts_what_a_fast_forward_brought(tmp_path: Path) -> None:
    hub = tmp_path / "hub.git"
    subprocess.run(["git", "init", "-q", "--bare", "--initial-branch=main", str(hub)], check=True)
    laptop, server = tmp_path / "laptop", tmp_path / "server"
    for store in (laptop, server):
        blocksync.init(store).close()
        assert run("remote", "add", "hub", str(hub), "--store", str(store)).exit_code == 0
    for label in ("a", "b"):
        run("--store", str(laptop), "block", "create", "alice", label, "--content", label)
    assert run("push", "--store", str(laptop)).exit_code == 0
    pulled = run("pull", "--store", str(server))
    assert pulled.exit_code == 0 and "fast-forward" in pulled.output
    assert "2 block(s) from the remote" in pulled.output
    run("--store", str(laptop), "block", "update", "alice", "a", "--content", "a2")
    run("--store", str(laptop), "push")
    doc = json.loads(run("pull", "--json", "--store", str(server)).output)
    (one,) = doc["pulls"]
    assert one["action"] == "fast-forward" and one["merged"] == [
        {"path": "alice/a", "how": "remote"}
    ]


# -- --help ----------------------------------------------------------------------------------------


def _commands(group: click.Group, prefix: str = "") -> Iterator[tuple[str, click.Command]]:
    for name, command in group.commands.items():
        path = f"{prefix} {name}".strip()
        if isinstance(command, click.Group):
            yield from _commands(command, path)
            if not command.invoke_without_command:
                continue
        yield path, command


def test_every_help_has_an_example() -> None:
    def every(group: click.Group, prefix: str = "") -> Iterator[str]:
        yield prefix
        for name, command in group.commands.items():
            path = f"{prefix} {name}".strip()
            if isinstance(command, click.Group):
                yield from every(command, path)
            else:
                yield path

    for path in every(cli):
        result = run(*path.split(), "--help")
        assert result.exit_code == 0, path
        examples = [line.strip() for line in result.output.splitlines() if "Example: " in line]
        assert examples, f"`blocksync {path} --help` has no example line"
        assert examples[0].startswith("Example: ") and "blocksync" in examples[0], path
