"""Issue 11: files blocksync writes never follow a planted link (item 4); clear errors instead of
``internal error`` (item 15); records and exit codes as the README says (item 17); no raw control
characters from names or plugins reach a terminal (item 10, text output).

Through the installed ``blocksync`` command in a subprocess, and the library; real git (the real
``git`` CLI checks what blocksync says of a damaged repository) and real SQLite.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

import blocksync
from blocksync.agents.tools import compile_schema
from blocksync.errors import RepositoryCorrupt, ToolInputInvalid, ToolSchemaInvalid, UnsafeFile
from blocksync.sync import runlock

from .conftest import git
from .plugin_builds import wat_fixture

ROOT = Path(__file__).resolve().parent.parent
BLOCKSYNC = str(Path(sys.executable).parent / "blocksync")
ENV = {k: v for k, v in os.environ.items() if k not in ("BLOCKSYNC_STORE", "BLOCKSYNC_TRACEBACK")}
ENV["BLOCKSYNC_AUTHOR"] = "human:test"
VICTIM = "precious: do not truncate\n"


def cli(store: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [BLOCKSYNC, "--store", str(store), *args],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=120,
        check=False,
        cwd=cwd,
    )


def one_line(done: subprocess.CompletedProcess[str]) -> str:
    """The single error line a failed command printed (no traceback, no internal error)."""
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: ") and "internal error" not in lines[0]
    return lines[0]


def add_notes(store: Path, notes: Path, agent: str = "bob") -> None:
    with open(store / "blocksync.toml", "a", encoding="utf-8") as f:
        f.write(
            f'\n[agents.{agent}.data_sources.notes]\ntype = "file"\npaths = ["{notes}"]\n'
            'permission_rules = [{ pattern = "**", permission = "admin" }]\n'
        )


# -- item 4: run.lock and the other files blocksync writes never follow a link ------------------


def test_a_symlink_at_run_lock_is_refused_and_its_target_untouched(
    store_path: Path, tmp_path: Path
) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text(VICTIM)
    (store_path / "run.lock").symlink_to(victim)
    for command in (["sync"], ["reconcile"]):
        done = cli(store_path, *command)
        assert done.returncode == 1, done.stderr
        line = one_line(done)
        assert str(store_path / "run.lock") in line and "symbolic link" in line
        assert victim.read_text() == VICTIM
    with pytest.raises(UnsafeFile) as info, runlock.acquire(store_path / "run.lock"):
        pass  # and through the library
    assert info.value.kind == "a symbolic link" and victim.read_text() == VICTIM


def test_a_dangling_symlink_at_run_lock_creates_nothing(store_path: Path, tmp_path: Path) -> None:
    (store_path / "run.lock").symlink_to(tmp_path / "made-by-blocksync")
    assert cli(store_path, "sync").returncode == 1
    assert not (tmp_path / "made-by-blocksync").exists()


@pytest.mark.parametrize("kind", ["fifo", "folder", "hard link"])
def test_run_lock_must_be_a_regular_file_of_its_own(
    store_path: Path, tmp_path: Path, kind: str
) -> None:
    lock = store_path / "run.lock"
    victim = tmp_path / "victim.txt"
    if kind == "fifo":
        os.mkfifo(lock)
    elif kind == "folder":
        lock.mkdir()
    else:
        victim.write_text(VICTIM)
        os.link(victim, lock)
    done = cli(store_path, "sync")
    assert done.returncode == 1, done.stderr
    assert str(lock) in one_line(done)
    if kind == "hard link":
        assert victim.read_text() == VICTIM


def test_config_edits_never_write_through_a_link(store_path: Path, tmp_path: Path) -> None:
    victim = tmp_path / "elsewhere.toml"
    victim.write_text("# my dotfiles keep this\n")
    toml = store_path / "blocksync.toml"
    toml.unlink()
    toml.symlink_to(victim)
    done = cli(store_path, "remote", "add", "hub", str(tmp_path / "hub.git"))
    assert done.returncode == 1, done.stderr
    line = one_line(done)
    assert str(toml) in line and "symbolic link" in line
    assert victim.read_text() == "# my dotfiles keep this\n" and toml.is_symlink()


def test_init_never_writes_through_a_link(tmp_path: Path) -> None:
    store = tmp_path / "store"
    store.mkdir()
    (store / "blocksync.toml").symlink_to(tmp_path / "victim.toml")
    assert cli(store, "init").returncode == 0
    assert not (tmp_path / "victim.toml").exists()

    other = tmp_path / "other"
    other.mkdir()
    (other / "index.db").symlink_to(tmp_path / "victim.db")
    done = cli(other, "init")
    assert done.returncode == 1 and str(other / "index.db") in one_line(done)
    assert not (tmp_path / "victim.db").exists()


def test_an_index_link_is_refused_before_sqlite_opens_it(store_path: Path, tmp_path: Path) -> None:
    victim = tmp_path / "victim.db"
    with sqlite3.connect(victim) as conn:
        conn.execute("CREATE TABLE mine (x)")
    before = victim.read_bytes()
    (store_path / "index.db").unlink()
    (store_path / "index.db").symlink_to(victim)
    done = cli(store_path, "block", "list")
    assert done.returncode == 1 and "symbolic link" in one_line(done)
    assert victim.read_bytes() == before and not Path(f"{victim}-wal").exists()


def test_key_files_are_never_written_through_a_link(tmp_path: Path) -> None:
    (tmp_path / "key").symlink_to(tmp_path / "victim")
    done = cli(tmp_path / "none", "plugin", "keygen", str(tmp_path / "key"))
    assert done.returncode == 2 and "refusing to overwrite a key" in one_line(done)
    assert not (tmp_path / "victim").exists()


def test_the_compile_cache_never_writes_through_a_link(tmp_path: Path) -> None:
    wasm = wat_fixture("hostile_tool", tmp_path)
    store = tmp_path / "store"
    blocksync.init(store).close()
    assert cli(store, "plugin", "inspect", str(wasm)).returncode == 0
    cached = sorted((store / "cache").iterdir())
    assert [p.suffix for p in cached] == [".cwasm", ".stamp"]
    for path in cached:  # links planted where the next compile writes its artifact and stamp
        path.unlink()
        victim = tmp_path / f"victim{path.suffix}"
        victim.write_text(VICTIM)
        path.symlink_to(victim)
    done = cli(store, "plugin", "inspect", str(wasm))
    assert done.returncode == 0 and "loadable: yes" in done.stdout, done.stderr
    for path in cached:
        assert path.is_symlink() and (tmp_path / f"victim{path.suffix}").read_text() == VICTIM


def test_a_run_lock_note_nested_too_deeply_is_no_note(store_path: Path) -> None:
    (store_path / "run.lock").write_text("[" * 2_000)
    assert runlock.read_holder(store_path / "run.lock") == {}


# -- item 15: one clear line, exit 2, naming the key -------------------------------------------

BAD_CONFIGS = {
    "data_sources a number": ("[agents.bob]\ndata_sources = 3\n", "[agents.bob] data_sources"),
    "data_sources a list": ("[agents.bob]\ndata_sources = []\n", "[agents.bob] data_sources"),
    "a source not a table": ("[agents.bob.data_sources]\nnotes = 3\n", "data_sources.notes]"),
    "an agent key": ("[agents.bob]\nplugins = 3\n", "[agents.bob] has unknown key(s) plugins"),
    "no type": ('[agents.bob.data_sources.n]\npaths = ["x"]\n', "no type"),
    "unknown type": ('[agents.bob.data_sources.n]\ntype = "ftp"\n', "type 'ftp' is not supported"),
    "a plugin name": (
        '[agents.bob.data_sources.p]\ntype = "wasm"\npath = "x.wasm"\nname = 3\n',
        ".name",
    ),
    "a rule pattern": (
        (
            '[agents.bob.data_sources.p]\ntype = "wasm"\npath = "x.wasm"\n'
            'permission_rules = [{ pattern = 3, permission = "admin" }]\n'
        ),
        "permission_rules[0].pattern",
    ),
    "deep TOML": ("[store]\nx = " + "[" * 600 + "]" * 600 + "\n", "nest too deeply"),
}
for limit, values in {
    "timeout": ("nan", "inf", "-inf", "-1", "1e308"),
    "memory_mb": ("nan", "inf", "1e308", "1.5", "0"),
    "fuel": ("nan", "1e308", "-5"),
    "http_timeout": ("inf",),
    "pull_batch": ("1e308",),
}.items():
    for value in values:
        BAD_CONFIGS[f"[limits] {limit} = {value}"] = (
            f"[limits]\n{limit} = {value}\n",
            f"[limits].{limit} must be a positive",
        )
        BAD_CONFIGS[f"plugin {limit} = {value}"] = (
            (
                f'[agents.bob.data_sources.p]\ntype = "wasm"\npath = "x.wasm"\n'
                f"limits = {{ {limit} = {value} }}\n"
            ),
            f"[agents.bob.data_sources.p].limits.{limit} must be a positive",
        )


@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_a_wrong_config_value_is_one_line_exit_2(store_path: Path, case: str) -> None:
    toml, named = BAD_CONFIGS[case]
    (store_path / "blocksync.toml").write_text(toml)
    done = cli(store_path, "sync")
    assert done.returncode == 2, done.stdout + done.stderr
    assert named in one_line(done)


def test_deeply_nested_tool_params_are_a_usage_error(store_path: Path) -> None:
    deep = "[" * 30_000 + "]" * 30_000
    done = cli(store_path, "tool", "run", "blocksync_conflicts_list", "--params", deep)
    assert done.returncode == 2
    assert "nests too deeply" in one_line(done)
    nested: list[object] = []
    for _ in range(5_000):  # params built in Python, as a library caller would
        nested = [nested]
    with blocksync.open(store_path) as ws, pytest.raises(ToolInputInvalid, match="too deeply"):
        ws.tools.call("blocksync_conflicts_list", {"status": nested})


def test_deeply_nested_json_from_plugins_and_blocks_is_refused(store_path: Path) -> None:
    deep = '{"items": ' * 3_000 + "{}" + "}" * 3_000
    with pytest.raises(ToolSchemaInvalid, match="nests too deeply"):
        compile_schema(deep, plugin="p", version="v", tool="t", which="output")
    done = cli(store_path, "block", "create", "bob", "x", "--content", "x", "--schema", deep)
    assert done.returncode == 2 and "nests too deeply" in one_line(done)


@pytest.fixture
def damaged(tmp_path: Path) -> tuple[Path, str]:
    """A store whose block bob/plan has a garbled loose content object: (store, its id)."""
    store_path = tmp_path / "store"  # not the store_path fixture: that one must fsck clean
    with blocksync.init(store_path) as ws:
        ws.blocks.create("bob", "plan", "buy milk\n")
        ws.blocks.update("bob", "plan", "buy milk\nbuy bread\n")
        ws.blocks.create("bob", "other", "fine\n")
    sha = git(
        store_path / "repo",
        "rev-parse",
        f"main:{blocksync.BlockStore.git_path('bob', 'plan')}/content",
    ).strip()
    loose = store_path / "repo" / "objects" / sha[:2] / sha[2:]
    loose.chmod(0o644)
    loose.write_bytes(b"garbage, not a zlib stream\n")
    return store_path, sha


def _says_damaged(line: str, store: Path, sha: str) -> None:
    assert f"repository {store / 'repo'} is damaged: object {sha}" in line
    assert f"git --git-dir {store / 'repo'} fsck" in line and "unpack-objects" in line


def test_a_corrupt_object_is_named_with_how_to_recover(damaged: tuple[Path, str]) -> None:
    store, sha = damaged
    real = subprocess.run(
        ["git", "--git-dir", str(store / "repo"), "fsck"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert real.returncode != 0 and sha in real.stdout + real.stderr  # git agrees it is damaged
    for command in (["block", "read", "bob", "plan"], ["block", "diff", "bob", "plan"]):
        done = cli(store, *command)
        assert done.returncode == 1, done.stderr
        _says_damaged(one_line(done), store, sha)
    assert cli(store, "block", "read", "bob", "other").stdout == "fine\n"  # the rest reads
    assert cli(store, "block", "history", "bob", "plan").returncode == 0
    fsck = cli(store, "fsck")
    assert fsck.returncode == 1 and "unpack-objects" in fsck.stdout and sha in fsck.stdout
    with blocksync.open(store) as ws, pytest.raises(RepositoryCorrupt) as info:
        ws.blocks.read("bob", "plan")
    assert info.value.object_id == sha and info.value.exit_code == 1


def test_a_corrupt_meta_object_fails_block_read_clearly(tmp_path: Path) -> None:
    """``block list`` reads index.db alone (issue 14), so it lists on; reading the block
    reads the damaged object and says so."""
    store_path = tmp_path / "store"
    with blocksync.init(store_path) as ws:
        ws.blocks.create("bob", "plan", "x\n", description="a one-off description")
    sha = git(
        store_path / "repo",
        "rev-parse",
        f"main:{blocksync.BlockStore.git_path('bob', 'plan')}/meta.json",
    ).strip()
    loose = store_path / "repo" / "objects" / sha[:2] / sha[2:]
    loose.chmod(0o644)
    loose.write_bytes(zlib.compress(b"blob 3\x00abc"))  # well formed, but not what it is named
    listed = cli(store_path, "block", "list")
    assert listed.returncode == 0 and "a one-off description" in listed.stdout
    done = cli(store_path, "block", "read", "bob", "plan")
    assert done.returncode == 1
    _says_damaged(one_line(done), store_path, sha)


def test_the_recovery_the_error_gives_works(damaged: tuple[Path, str], tmp_path: Path) -> None:
    store, sha = damaged
    # another copy of the repository holding the object, as a remote or a backup does
    backup = tmp_path / "backup.git"
    subprocess.run(["git", "init", "--quiet", "--bare", str(backup)], check=True)
    blob = (
        subprocess.run(
            ["git", "--git-dir", str(backup), "hash-object", "-w", "--stdin"],
            input=b"buy milk\nbuy bread\n",
            capture_output=True,
            check=True,
        )
        .stdout.decode()
        .strip()
    )
    assert blob == sha
    line = one_line(cli(store, "block", "read", "bob", "plan"))
    damaged_file = re.search(r"move the damaged file (\S+) away", line)
    assert damaged_file is not None
    Path(damaged_file.group(1)).rename(tmp_path / "damaged-object")
    subprocess.run(
        f"echo {sha} | git --git-dir {backup} pack-objects --stdout "
        f"| git --git-dir {store / 'repo'} unpack-objects",
        shell=True,
        check=True,
        capture_output=True,
    )
    assert cli(store, "block", "read", "bob", "plan").stdout == "buy milk\nbuy bread\n"
    assert cli(store, "fsck").returncode == 0


# -- item 17: records and exit codes --------------------------------------------------------------


def _conflict(store: Path, notes: Path) -> str:
    notes.mkdir()
    (notes / "a.md").write_text("one\n")
    add_notes(store, notes)
    with blocksync.open(store) as ws:
        ws.reconcile(["notes"])
        (label,) = [b.label for b in ws.blocks.list("bob")]
        ws.blocks.update("bob", label, "agent\n")
        (notes / "a.md").write_text("disk\n")
        ws.reconcile(["notes"])
        (conflict,) = ws.conflicts.list()
    return conflict.id


def _readme_exit_code(meaning: str) -> int:
    """The code of the README's "Exit codes" row that mentions ``meaning``."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    table = readme[readme.index("## Exit codes") :]
    for code, text in re.findall(r"^\| (\d+) \| (.*) \|$", table, re.MULTILINE):
        if meaning in text:
            return int(code)
    raise AssertionError(f"no exit code row mentions {meaning!r}")


def test_resolving_a_resolved_conflict_says_so_with_the_readme_code(
    store_path: Path, tmp_path: Path
) -> None:
    cid = _conflict(store_path, tmp_path / "notes")
    first = cli(store_path, "conflicts", "resolve", cid, "--take", "disk")
    assert first.returncode == 0, first.stderr
    again = cli(store_path, "conflicts", "resolve", cid, "--take", "agent")
    line = one_line(again)
    assert f"conflict {cid} is not open: it was resolved already (disk) by human:test at " in line
    assert again.returncode == _readme_exit_code("resolved already") == 5


@pytest.mark.parametrize(
    ("toml", "said"),
    [
        ("[agents.bob\n", "is not valid TOML"),
        ("[agents.bob]\ndata_sources = 3\n", "data_sources must be a table"),
        ('[agents.bob.data_sources.n]\ntype = "file"\npaths = 3\n', "paths must be"),
    ],
)
def test_a_broken_config_still_records_the_sync_run(store_path: Path, toml: str, said: str) -> None:
    (store_path / "blocksync.toml").write_text(toml)
    done = cli(store_path, "sync")
    assert done.returncode == 2 and said in one_line(done)
    with sqlite3.connect(store_path / "index.db") as conn:
        rows = conn.execute("SELECT command, status, exit_code, report FROM runs").fetchall()
    assert [(r[0], r[1], r[2]) for r in rows] == [("blocksync sync", "finished", 2)]
    report = json.loads(rows[0][3])
    assert said in report["error"] and report["exit_code"] == 2
    assert runlock.read_holder(store_path / "run.lock") == {}  # the lock was taken and let go


def test_demo_leaves_an_existing_store_untouched(store_path: Path, tmp_path: Path) -> None:
    with blocksync.open(store_path) as ws:
        ws.blocks.create("alice", "notes", "mine\n")
    toml = (store_path / "blocksync.toml").read_bytes()
    refs = git(store_path / "repo", "show-ref")
    done = cli(store_path, "demo", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "fsck: ok" in done.stdout and "temporary store" in done.stdout
    assert (store_path / "blocksync.toml").read_bytes() == toml
    assert git(store_path / "repo", "show-ref") == refs
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store"]  # no folder left beside it


def test_demo_creates_its_own_store_with_its_folder_outside(tmp_path: Path) -> None:
    store = tmp_path / "store"
    for _ in range(2):
        done = cli(store, "demo")
        assert done.returncode == 0, done.stderr
    folder = tmp_path / "store-demo-notes"
    assert sorted(p.name for p in folder.iterdir()) == ["persona.md", "todo.md"]
    assert "demo-notes" in (store / "blocksync.toml").read_text()  # the demo's own store
    assert not (store / "demo-notes").exists()


# -- item 10: text output escapes what it did not write ---------------------------------------

HOSTILE = "evil\x1b]0;owned\x07\x1b[2J\rname.md"  # control characters: skipped, with a reason
SHOWN = "evil\\x1b]0;owned\\x07\\x1b[2J\\rname.md"
SYNCED = "csi\x9b31mname\u202e.md"  # C1 CSI and a bidi override are valid in labels
UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202e]")  # all but \t and \n


def test_text_reports_escape_names_and_json_stays_exact(store_path: Path, tmp_path: Path) -> None:
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / HOSTILE).write_text("one\n")
    (notes / SYNCED).write_text("one\n")
    add_notes(store_path, notes)
    synced = cli(store_path, "sync")
    assert synced.returncode == 0, synced.stderr
    assert not UNSAFE.search(synced.stdout + synced.stderr)
    assert f"skipped      {SHOWN}: " in synced.stdout  # the reason quotes the label escaped too
    assert "csi\\x9b31mname\\u202e.md" in synced.stdout
    listed = cli(store_path, "block", "list")
    assert not UNSAFE.search(listed.stdout) and "\\x9b" in listed.stdout
    (label,) = [b["label"] for b in json.loads(cli(store_path, "block", "list", "--json").stdout)]
    assert label.endswith(SYNCED)  # JSON keeps the name exactly

    with blocksync.open(store_path) as ws:
        ws.blocks.update("bob", label, "agent \x1b[31mred\x1b[0m\n")
    (notes / SYNCED).write_text("disk\x07\n")
    reconciled = cli(store_path, "reconcile")
    assert reconciled.returncode == 3 and not UNSAFE.search(reconciled.stdout)
    (conflict,) = json.loads(cli(store_path, "conflicts", "list", "--json").stdout)
    assert conflict["path"] == SYNCED and conflict["agent"] == "agent \x1b[31mred\x1b[0m\n"
    for command in (["conflicts", "list"], ["conflicts", "show", conflict["id"]]):
        done = cli(store_path, *command)
        assert done.returncode == 0 and not UNSAFE.search(done.stdout), done.stdout
    shown = cli(store_path, "conflicts", "show", conflict["id"]).stdout
    assert "agent \\x1b[31mred\\x1b[0m\n" in shown  # content lines kept, escapes shown
    missing = cli(store_path, "block", "read", "bob", "x\u202ey")
    assert missing.returncode == 4 and not UNSAFE.search(missing.stderr)
