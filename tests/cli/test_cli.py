"""The command line: thin commands, JSON output, and every bad input a clear error, no traceback."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result

import blocksync
from blocksync.cli import cli
from blocksync.index.versions import VersionIndex

from ..conftest import git


def run(store: Path, *args: str, input: bytes | str | None = None) -> Result:
    result = CliRunner().invoke(
        cli,
        ["--store", str(store), "--author", "human:tester", *args],
        input=input,
        catch_exceptions=False,
    )
    assert "Traceback" not in result.output
    return result


def snapshot(store: Path) -> tuple[str, object]:
    """Everything a failed write must leave alone: main's commit and every index row."""
    head = git(store / "repo", "rev-parse", "--verify", "-q", "refs/heads/main").strip()
    index = VersionIndex.open(store / "index.db")
    try:
        return head, index.dump()
    finally:
        index.close()


@pytest.fixture
def alice(store_path: Path) -> Path:
    assert (
        run(
            store_path,
            "block",
            "create",
            "alice",
            "notes",
            "--content",
            "hello\n",
            "--char-limit",
            "20",
        ).exit_code
        == 0
    )
    return store_path


def test_round_trip_with_json(alice: Path) -> None:
    out = run(alice, "block", "update", "alice", "notes", "--content", "bye\n", "--json")
    assert out.exit_code == 0
    assert json.loads(out.output)["version"] == 2
    read = json.loads(run(alice, "block", "read", "alice", "notes", "--json").output)
    assert read["content"] == "bye\n" and read["char_limit"] == 20 and read["label"] == "notes"
    history = json.loads(run(alice, "block", "history", "alice", "notes", "--json").output)
    assert [h["version"] for h in history] == [1, 2]
    for entry in history:
        assert {"version", "commit", "author", "message", "timestamp"} <= entry.keys()
        assert entry["author"] == "human:tester"
    listed = json.loads(run(alice, "block", "list", "alice", "--json").output)
    assert [b["label"] for b in listed] == ["notes"]
    assert listed[0]["owner"] == "alice" and listed[0]["char_limit"] == 20  # meta flattened
    diff = json.loads(run(alice, "block", "diff", "alice", "notes", "--json").output)
    assert "-hello\n+bye\n" in diff["unified"]
    chars = json.loads(run(alice, "block", "diff", "alice", "notes", "--chars", "--json").output)
    assert ["insert", "bye"] in chars["chars"]


def test_content_from_file_and_stdin(alice: Path, tmp_path: Path) -> None:
    f = tmp_path / "c.txt"
    f.write_bytes(b"from a file\r\n")
    assert run(alice, "block", "update", "alice", "notes", "--file", str(f)).exit_code == 0
    assert run(alice, "block", "read", "alice", "notes").stdout_bytes == b"from a file\r\n"
    assert run(alice, "block", "update", "alice", "notes", input=b"piped\n").exit_code == 0
    assert run(alice, "block", "read", "alice", "notes").output == "piped\n"


def test_metadata_only_update_keeps_content(alice: Path) -> None:
    assert run(alice, "block", "update", "alice", "notes", "--description", "d").exit_code == 0
    read = json.loads(run(alice, "block", "read", "alice", "notes", "--json").output)
    assert read["content"] == "hello\n" and read["description"] == "d" and read["version"] == 2


def test_no_char_limit_removes_the_limit(alice: Path) -> None:
    assert run(alice, "block", "update", "alice", "notes", "--content", "x" * 21).exit_code == 2
    assert run(alice, "block", "update", "alice", "notes", "--no-char-limit").exit_code == 0
    assert run(alice, "block", "update", "alice", "notes", "--content", "x" * 21).exit_code == 0


def test_delete_and_rollback_bring_it_back(alice: Path) -> None:
    assert run(alice, "block", "delete", "alice", "notes").exit_code == 0
    assert run(alice, "block", "read", "alice", "notes").exit_code == 4
    assert run(alice, "block", "rollback", "alice", "notes", "1").exit_code == 0
    assert run(alice, "block", "read", "alice", "notes").output == "hello\n"


@pytest.mark.parametrize(
    ("args", "stdin", "code", "message"),
    [
        (["block", "read", "alice", "nobody"], None, 4, "no block 'nobody'"),
        (["block", "read", "bob", "notes"], None, 4, "for owner 'bob'"),
        (["block", "create", "alice", "", "--content", "x"], None, 2, "empty label"),
        (["block", "create", "", "x", "--content", "x"], None, 2, "empty owner"),
        (["block", "create", "alice", "../../etc/passwd", "--content", "x"], None, 2, "escape"),
        (["block", "create", "alice", "a\nb", "--content", "x"], None, 2, "control character"),
        (["block", "create", "alice", "notes", "--content", "x"], None, 2, "already exists"),
        (
            ["block", "update", "alice", "notes", "--content", "x" * 21],
            None,
            2,
            "over its char_limit of 20",
        ),
        (
            ["block", "update", "alice", "notes", "--char-limit", "9", "--no-char-limit"],
            None,
            2,
            "--char-limit or --no-char-limit, not both",
        ),
        (
            ["block", "update", "alice", "notes"],
            b"ok\n\xc3\x28 bad",
            2,
            "byte 0xc3 at offset 3 (line 2, column 1)",
        ),
        (
            ["block", "update", "alice", "notes", "--content", "x", "--expected-version", "7"],
            None,
            5,
            "not at the expected version 7",
        ),
        (
            ["block", "update", "alice", "notes", "--content", "x", "--file", "-"],
            b"y",
            2,
            "not both",
        ),
        (["block", "read", "alice", "notes", "--version", "9"], None, 4, "has no version 9"),
        (
            ["block", "read", "alice", "notes", "--version", "xyz"],
            None,
            2,
            "neither a version number",
        ),
        (["block", "rollback", "alice", "notes", "12"], None, 4, "has no version 12"),
        (["block", "delete", "alice", "ghost"], None, 4, "no block 'ghost'"),
        (["block", "history", "alice", "ghost"], None, 4, "no block 'ghost'"),
        (
            ["block", "update", "alice", "notes", "--schema", "{nope"],
            None,
            2,
            "schema is not valid JSON",
        ),
        (
            ["block", "update", "alice", "notes", "--char-limit", "3"],
            None,
            2,
            "over its char_limit of 3",
        ),
        (["init"], None, 2, "already exists"),
    ],
)
def test_bad_input_is_a_clear_error_and_changes_nothing(
    alice: Path, args: list[str], stdin: bytes | None, code: int, message: str
) -> None:
    before = snapshot(alice)
    result = run(alice, *args, input=stdin)
    assert result.exit_code == code, result.output
    assert result.output.startswith("error: ") and message in result.output, result.output
    assert snapshot(alice) == before


def test_non_utf8_file_names_the_file(alice: Path, tmp_path: Path) -> None:
    bad = tmp_path / "latin1.txt"
    bad.write_bytes(b"caf\xe9\n")
    result = run(alice, "block", "update", "alice", "notes", "--file", str(bad))
    assert result.exit_code == 2
    assert f"{bad} is not UTF-8 text: byte 0xe9 at offset 3" in result.output


def test_no_store_says_run_init(tmp_path: Path) -> None:
    result = run(tmp_path / "none", "block", "list")
    assert result.exit_code == 4
    assert "run `blocksync init`" in result.output
    assert not (tmp_path / "none").exists()


def test_bad_config_is_named(alice: Path) -> None:
    (alice / "blocksync.toml").write_text("[agents\n", encoding="utf-8")
    result = run(alice, "block", "list")
    assert result.exit_code == 2 and "blocksync.toml is not valid TOML" in result.output


def test_missing_index_fsck_says_so_and_rebuild_repairs(alice: Path) -> None:
    before = snapshot(alice)
    (alice / "index.db").unlink()
    for extra in ("index.db-wal", "index.db-shm"):
        (alice / extra).unlink(missing_ok=True)
    result = run(alice, "block", "read", "alice", "notes")
    assert result.exit_code == 1 and "blocksync index rebuild" in result.output
    result = run(alice, "fsck")
    assert result.exit_code == 1 and "index.db is missing" in result.output
    assert run(alice, "index", "rebuild").exit_code == 0
    assert run(alice, "fsck").exit_code == 0
    assert snapshot(alice) == before


def test_corrupt_index_fsck_says_so_and_rebuild_repairs(alice: Path) -> None:
    before = snapshot(alice)
    (alice / "index.db").write_bytes(b"this is not sqlite" * 100)
    for extra in ("index.db-wal", "index.db-shm"):
        (alice / extra).unlink(missing_ok=True)
    result = run(alice, "fsck", "--json")
    assert result.exit_code == 1
    report = json.loads(result.output)
    assert not report["ok"] and report["problems"][0]["area"] == "index"
    assert run(alice, "block", "list").exit_code == 1
    assert run(alice, "index", "rebuild").exit_code == 0
    assert snapshot(alice) == before


def test_tampered_index_rows_are_found(alice: Path) -> None:
    conn = sqlite3.connect(alice / "index.db")
    conn.execute("UPDATE versions SET author = 'mallory'")
    conn.commit()
    conn.close()
    result = run(alice, "fsck")
    assert result.exit_code == 1 and "table versions" in result.output
    assert run(alice, "index", "rebuild").exit_code == 0
    assert run(alice, "fsck").exit_code == 0


def test_missing_object_is_repository_damage(alice: Path) -> None:
    blob = git(
        alice / "repo",
        "rev-parse",
        f"main:{blocksync.BlockStore.git_path('alice', 'notes')}/content",
    ).strip()
    (alice / "repo" / "objects" / blob[:2] / blob[2:]).unlink()
    result = run(alice, "fsck")
    assert result.exit_code == 1 and f"object {blob}" in result.output
    result = run(alice, "block", "read", "alice", "notes")
    assert result.exit_code == 1 and "is damaged" in result.output
    # put it back so the fixture's git fsck passes
    git_bin = subprocess_git_hash(alice, "hello\n")
    assert git_bin == blob


def subprocess_git_hash(store: Path, content: str) -> str:
    import subprocess

    done = subprocess.run(
        ["git", "--git-dir", str(store / "repo"), "hash-object", "-w", "--stdin"],
        input=content.encode(),
        capture_output=True,
        check=True,
    )
    return done.stdout.decode().strip()


def test_help_for_every_command_works() -> None:
    runner = CliRunner()
    for args in (
        ["--help"],
        ["block", "--help"],
        ["index", "--help"],
        ["fsck", "--help"],
        ["demo", "--help"],
        ["init", "--help"],
    ):
        assert runner.invoke(cli, args).exit_code == 0
    for sub in ("create", "read", "update", "delete", "list", "history", "diff", "rollback"):
        assert runner.invoke(cli, ["block", sub, "--help"]).exit_code == 0


def test_store_defaults_to_environment(alice: Path) -> None:
    result = CliRunner().invoke(
        cli, ["block", "list", "--json"], env={"BLOCKSYNC_STORE": str(alice)}
    )
    assert result.exit_code == 0 and json.loads(result.output)[0]["label"] == "notes"


def test_library_matches_cli(alice: Path) -> None:
    with blocksync.open(alice) as ws:
        assert ws.blocks.read("alice", "notes").content == "hello\n"


def _command_paths(group: click.Group, prefix: tuple[str, ...] = ()) -> list[str]:
    out = []
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            out += _command_paths(command, (*prefix, name))
        else:
            out.append(" ".join((*prefix, name)))
    return out


def test_every_command_is_in_the_readme() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    missing = [c for c in _command_paths(cli) if f"`blocksync {c}" not in readme]
    assert not missing, f"document these commands in the README's table: {missing}"


def test_init_takes_a_path(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["init", str(tmp_path / "elsewhere")])
    assert result.exit_code == 0 and (tmp_path / "elsewhere" / "repo").is_dir()


def test_a_bug_is_an_internal_error_not_a_traceback(
    store_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise ValueError("something impossible")

    monkeypatch.setattr(blocksync.workspace, "fsck", broken)  # a stand-in bug, nothing else
    result = CliRunner().invoke(cli, ["--store", str(store_path), "fsck"])
    assert result.exit_code == 1
    assert "internal error: ValueError: something impossible" in result.output
    assert "Traceback" not in result.output


def test_a_reader_that_goes_away_ends_the_command_quietly(store_path: Path) -> None:
    """`blocksync block list | head -1`: no "error: Broken pipe" once head has what it needs."""
    with blocksync.open(store_path) as ws, ws.transaction("many") as tx:
        for i in range(5000):
            tx.create("alice", f"note-{i:05d}-with-a-longer-label", "x")
    proc = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "blocksync"),
            "--store",
            str(store_path),
            "block",
            "list",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.read(10)
    proc.stdout.close()
    proc.wait(timeout=60)
    assert proc.stderr.read() == b""
    proc.stderr.close()
