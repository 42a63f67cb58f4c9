"""The folder source under a hostile or busy setup (issue 11): it never writes outside its folder,
never syncs the store or VCS metadata, never hangs on a FIFO, never lets one odd path or one busy
agent fail the whole source, and never mass-deletes without confirmation.

Real stores and folders, the real `blocksync` CLI in subprocesses (each under a timeout: a hang is
a failure, not a stuck suite), second processes for the symlink racer and the busy agent.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import blocksync
from blocksync.sync.folder.source import root_tag
from blocksync.sync.protocol import Settlement

from .conftest import assert_git_fsck

BLOCKSYNC = str(Path(sys.executable).parent / "blocksync")
ENV = {k: v for k, v in os.environ.items() if k != "BLOCKSYNC_STORE"}
ENV["BLOCKSYNC_AUTHOR"] = "human:test"
TIMEOUT = 120  # seconds: far beyond any run here; reaching it means a hang


def run(store: Path, *args: str, user: str | None = None) -> subprocess.CompletedProcess[str]:
    cmd = [BLOCKSYNC, "--store", str(store), *args]
    if user is not None:  # as another user, so that permissions hold (root ignores them)
        cmd = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *cmd]
    return subprocess.run(
        cmd, capture_output=True, text=True, env=ENV, timeout=TIMEOUT, check=False
    )


def run_json(store: Path, *args: str) -> tuple[int, dict[str, Any]]:
    done = run(store, *args, "--json")
    assert done.stdout, done.stderr
    return done.returncode, json.loads(done.stdout)


def source_entry(doc: dict[str, Any], key: str = "notes") -> dict[str, Any]:
    (entry,) = [s for s in doc["sources"] if s["source"] == key]
    return entry


def skipped(doc: dict[str, Any], key: str = "notes") -> dict[str, str]:
    return {s["path"]: s["reason"] for s in source_entry(doc, key)["skipped"]}


def add_source(store: Path, folder: Path, key: str = "notes", **extra: str) -> None:
    lines = [
        f"\n[agents.bob.data_sources.{key}]",
        'type = "file"',
        f"paths = [{json.dumps(str(folder))}]",
    ]
    lines += [f"{k} = {v}" for k, v in extra.items()]
    with open(store / "blocksync.toml", "a", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


@pytest.fixture
def notes(store_path: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "notes"
    folder.mkdir()
    add_source(store_path, folder, permission_rules='[{ pattern = "**", permission = "admin" }]')
    return folder


@pytest.fixture
def outside(notes: Path, tmp_path: Path) -> Path:
    """A folder outside the source, and the source's subfolder ``sub``, which the swap tests
    replace by a link to it."""
    folder = tmp_path / "outside"
    folder.mkdir()
    (notes / "sub").mkdir()
    return folder


def label(folder: Path, rel: str) -> str:
    return f"file:{root_tag(folder.resolve())}:{rel}"


def tree(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


# -- 1. writes never follow a swapped symlink out of the folder --------------------------------


def test_a_folder_swapped_for_a_symlink_mid_run_takes_no_write_outside(
    store_path: Path, notes: Path, outside: Path, tmp_path: Path
) -> None:
    """At the 50th file write, `sub` is renamed away and a symlink to `outside` put in its place
    (deterministically, from the fault hook): no file lands in `outside`."""
    (notes / "sub" / "seed.md").write_text("seed\n")
    with blocksync.open(store_path) as ws:
        assert ws.reconcile().exit_code == 0
        with ws.transaction("many") as tx:
            for i in range(300):
                tx.create("bob", label(notes, f"sub/f{i:05d}.md"), f"note {i}\n")
        writes = 0

        def swap(step: str) -> None:
            nonlocal writes
            if step == "before-file-write":
                writes += 1
                if writes == 50:
                    (notes / "sub").rename(tmp_path / "away")
                    (notes / "sub").symlink_to(outside, target_is_directory=True)

        source = ws.reconciler.source("notes")
        source.fault = swap  # type: ignore[attr-defined]
        outcome = source.reconcile_outcome()
    assert list(outside.iterdir()) == [], "a write followed the symlink out of the folder"
    # the folder moved away keeps what was written before; nothing after the swap follows it
    written = sorted(p.name for p in (tmp_path / "away").iterdir())
    assert written == sorted(["seed.md"] + [f"f{i:05d}.md" for i in range(49)])
    reasons = {s.path: s.reason for s in outcome.skipped}
    assert len(reasons) == 251 and all("symbolic link" in r for r in reasons.values()), reasons


RACER = textwrap.dedent(
    """
    import os, sys, time
    notes, outside, away = sys.argv[1:4]
    sub = os.path.join(notes, "sub")
    deadline = time.monotonic() + 60
    while len(os.listdir(sub)) < 20 and time.monotonic() < deadline:
        time.sleep(0.001)
    os.rename(sub, away)
    os.symlink(outside, sub)
    print("swapped", len(os.listdir(away)), flush=True)
    """
)


def test_a_racing_process_swapping_the_folder_for_a_symlink_gets_nothing_outside(
    store_path: Path, notes: Path, outside: Path, tmp_path: Path
) -> None:
    """The issue's repro: 3,000 new blocks under `sub/`, `sync`, and another process swapping
    `sub` for a symlink to `outside` while the files are written."""
    (notes / "sub" / "seed.md").write_text("seed\n")
    assert run(store_path, "sync").returncode == 0
    with blocksync.open(store_path) as ws, ws.transaction("many") as tx:
        for i in range(3000):
            tx.create("bob", label(notes, f"sub/f{i:05d}.md"), f"note {i}\n")
    racer = subprocess.Popen(
        [sys.executable, "-c", RACER, str(notes), str(outside), str(tmp_path / "away")],
        stdout=subprocess.PIPE,
        text=True,
    )
    done = run(store_path, "sync", "--json")
    out, _ = racer.communicate(timeout=TIMEOUT)
    assert out.startswith("swapped"), out
    assert done.returncode in (0, 1, 3), done.stderr
    assert list(outside.iterdir()) == [], "a write followed the symlink out of the folder"
    # nothing lost: every block still holds its note, whatever reached the disk
    with blocksync.open(store_path) as ws:
        assert len([b for b in ws.blocks.list("bob") if ":sub/f" in b.label]) == 3000


def _swap_for_link(notes: Path, tmp_path: Path, outside: Path) -> None:
    """`sub` renamed away, a link to `outside` in its place: what a hostile user does."""
    (notes / "sub").rename(tmp_path / "away")
    (notes / "sub").symlink_to(outside, target_is_directory=True)


def test_a_delete_racing_a_swapped_folder_removes_nothing_outside(
    store_path: Path, notes: Path, outside: Path, tmp_path: Path
) -> None:
    """Files outside with the very names and contents the deletes expect: only the check of the
    folder at delete time keeps them (the swap comes after the files were read)."""
    for i in range(6):
        (notes / "sub" / f"n{i}.md").write_text(f"note {i}\n")
        (outside / f"n{i}.md").write_text(f"note {i}\n")
    with blocksync.open(store_path) as ws:
        assert ws.reconcile().exit_code == 0
        for i in (1, 2):
            ws.blocks.delete("bob", label(notes, f"sub/n{i}.md"))
        source = ws.reconciler.source("notes")

        def swap(step: str) -> None:
            if step == "before-file-write" and not (notes / "sub").is_symlink():
                _swap_for_link(notes, tmp_path, outside)

        source.fault = swap  # type: ignore[attr-defined]
        outcome = source.reconcile_outcome()
    assert sorted(p.name for p in outside.iterdir()) == [f"n{i}.md" for i in range(6)]
    assert {s.path for s in outcome.skipped} == {"sub/n1.md", "sub/n2.md"}


def test_a_resolution_racing_a_swapped_folder_writes_nothing_outside(
    store_path: Path, notes: Path, outside: Path, tmp_path: Path
) -> None:
    """The sides are read, then the folder is swapped before the resolution writes its file."""
    (notes / "sub" / "fight.md").write_text("one\n")
    with blocksync.open(store_path) as ws:
        assert ws.reconcile().exit_code == 0
        ws.blocks.update("bob", label(notes, "sub/fight.md"), "agent\n")
        (notes / "sub" / "fight.md").write_text("disk\n")
        assert ws.reconcile().exit_code == 3
        source = ws.reconciler.source("notes")
        sides = source.sides("sub/fight.md")
        (outside / "fight.md").write_text("disk\n")
        _swap_for_link(notes, tmp_path, outside)
        with pytest.raises(blocksync.SourceChanged, match="symbolic link"):
            chosen = "agent\n"
            source.settle(
                Settlement("sub/fight.md", chosen, chosen, chosen, sides, "resolve", "human:test")
            )
    assert (outside / "fight.md").read_text() == "disk\n"


def test_deletes_and_resolutions_through_a_swapped_folder_never_leave_it(
    store_path: Path, notes: Path, outside: Path, tmp_path: Path
) -> None:
    """The swap done before the commands (the race tests above cover it during them)."""
    for name in ("gone.md", "fight.md"):
        (notes / "sub" / name).write_text("one\n")
    assert run(store_path, "sync").returncode == 0
    with blocksync.open(store_path) as ws:
        ws.blocks.delete("bob", label(notes, "sub/gone.md"))
        ws.blocks.update("bob", label(notes, "sub/fight.md"), "agent\n")
    (notes / "sub" / "fight.md").write_text("disk\n")
    code, doc = run_json(store_path, "reconcile", "sub/fight.md")
    assert code == 3
    # the same names outside, with the contents the writer expects: only the folder check stops it
    _swap_for_link(notes, tmp_path, outside)
    (outside / "gone.md").write_text("one\n")
    (outside / "fight.md").write_text("disk\n")
    conflict = run_json(store_path, "conflicts", "list")[1][0]["id"]
    resolved = run(store_path, "conflicts", "resolve", conflict, "--take", "agent")
    assert resolved.returncode != 0 and "symbolic link" in resolved.stderr, resolved.stderr
    assert "Traceback" not in resolved.stderr
    code, doc = run_json(store_path, "sync")
    assert tree(outside) == {"gone.md": b"one\n", "fight.md": b"disk\n"}
    assert "sub/gone.md" in skipped(doc) and "sub/fight.md" in skipped(doc)


# -- 2. the store is never a source ---------------------------------------------------------------


@pytest.mark.parametrize("where", ["..", ".", "sub"])
def test_a_folder_containing_or_inside_the_store_is_refused(store_path: Path, where: str) -> None:
    (store_path / "sub").mkdir(exist_ok=True)
    add_source(store_path, Path(where))
    before = (store_path / "blocksync.toml").read_bytes()
    for args in (["sync"], ["reconcile"], ["reconcile", "--dry-run"]):
        done = run(store_path, *args)
        assert done.returncode == 2, (args, done.stdout, done.stderr)
        assert "data_sources.notes].paths" in done.stderr and "store" in done.stderr
        assert "Traceback" not in done.stderr
    assert (store_path / "blocksync.toml").read_bytes() == before
    with blocksync.open(store_path) as ws:
        assert ws.blocks.list() == []


def test_the_store_reached_through_a_link_or_a_move_is_never_entered(
    store_path: Path, notes: Path
) -> None:
    (notes / "a.md").write_text("a\n")
    (notes / "store-link").symlink_to(store_path, target_is_directory=True)
    code, doc = run_json(store_path, "sync")
    assert code == 0
    with blocksync.open(store_path) as ws:
        assert [b.label.rsplit(":", 1)[1] for b in ws.blocks.list("bob")] == ["a.md"]
    assert "store-link" in skipped(doc)


# -- 3. version-control metadata is never synced --------------------------------------------------


def test_vcs_metadata_is_never_synced_nor_written(store_path: Path, notes: Path) -> None:
    subprocess.run(["git", "init", "-q", str(notes)], check=True)
    (notes / "readme.md").write_text("hello\n")
    for folder in (".hg", ".SVN", ".jj", ".bzr"):
        (notes / folder).mkdir()
        (notes / folder / "config").write_text("x\n")
    config = (notes / ".git" / "config").read_bytes()
    code, doc = run_json(store_path, "sync")
    assert code == 0
    with blocksync.open(store_path) as ws:
        assert [b.label.rsplit(":", 1)[1] for b in ws.blocks.list("bob")] == ["readme.md"]
        # an agent's block naming .git/config is never written to it
        ws.blocks.create(
            "bob", label(notes, ".git/config"), '[core]\n\tfsmonitor = "touch pwned"\n'
        )
        ws.blocks.create("bob", label(notes, ".Git/hooks/pre-commit"), "#!/bin/sh\ntouch pwned\n")
    code, doc = run_json(store_path, "sync")
    assert code == 0, doc
    assert (notes / ".git" / "config").read_bytes() == config
    assert not (notes / ".Git").exists() or not (notes / ".Git" / "hooks" / "pre-commit").exists()
    assert {".git/config", ".Git/hooks/pre-commit"} <= set(skipped(doc))
    assert all(
        "version-control" in skipped(doc)[p] for p in (".git/config", ".Git/hooks/pre-commit")
    )
    done = run(store_path, "reconcile", ".git/config")
    assert done.returncode == 2 and "version-control" in done.stderr, done.stderr
    subprocess.run(["git", "-C", str(notes), "status"], check=True, capture_output=True)
    assert not (notes / "pwned").exists()


# -- 4. nothing but regular files is opened: FIFOs never hang a run -------------------------------


def test_a_fifo_never_hangs_sync_reconcile_or_a_dry_run(store_path: Path, notes: Path) -> None:
    (notes / "a.md").write_text("a\n")
    os.mkfifo(notes / "pipe.md")
    for args in (["reconcile", "--dry-run"], ["reconcile"], ["sync"]):
        code, doc = run_json(store_path, *args)
        assert code == 0, doc
        assert "FIFO" in skipped(doc)["pipe.md"]
    # an agent creating a block at the FIFO's path: still no hang, nothing written into it
    with blocksync.open(store_path) as ws:
        ws.blocks.create("bob", label(notes, "pipe.md"), "into the pipe\n")
    code, doc = run_json(store_path, "sync")
    assert code == 0 and "FIFO" in skipped(doc)["pipe.md"]
    done = run(store_path, "reconcile", "pipe.md")
    assert done.returncode == 0 and "FIFO" in done.stdout, done.stdout


def test_symlinks_fifos_sockets_and_odd_names_are_all_reported(
    store_path: Path, notes: Path
) -> None:
    import socket

    (notes / "ok.md").write_text("ok\n")
    (notes / "line\nbreak.md").write_text("newline in the name\n")
    (notes / "link.md").symlink_to(notes / "ok.md")
    os.mkfifo(notes / "fifo.md")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(notes / "sock.md"))
    try:
        (notes / os.fsdecode(b"caf\xe9.md")).write_text("latin-1 name\n")
        code, doc = run_json(store_path, "sync")
    finally:
        sock.close()
    assert code == 0, doc
    reasons = skipped(doc)
    assert "symbolic link" in reasons["link.md"]
    assert "FIFO" in reasons["fifo.md"]
    assert "socket" in reasons["sock.md"]
    assert "control character" in reasons["line\nbreak.md"]
    assert "not UTF-8" in reasons["caf\\xe9.md"]
    with blocksync.open(store_path) as ws:
        assert [b.label.rsplit(":", 1)[1] for b in ws.blocks.list("bob")] == ["ok.md"]


# -- 7/8. one odd path never fails the whole source -----------------------------------------------


def test_a_name_that_is_not_utf8_fails_nothing_else(store_path: Path, notes: Path) -> None:
    (notes / "a.md").write_text("a\n")
    (notes / os.fsdecode(b"\xff\xfe.md")).write_text("x\n")
    (notes / os.fsdecode(b"dir\xff")).mkdir()
    (notes / os.fsdecode(b"dir\xff") / "inside.md").write_text("x\n")
    for args in (["reconcile", "--dry-run"], ["sync"]):
        code, doc = run_json(store_path, *args)
        assert code == 0, doc
        assert source_entry(doc)["error"] is None
        assert {"\\xff\\xfe.md", "dir\\xff"} <= set(skipped(doc))
    text = run(store_path, "sync")
    assert text.returncode == 0 and "Traceback" not in text.stderr


@pytest.fixture
def as_nobody() -> Iterator[tuple[Path, str | None]]:
    """A folder and a user to run the CLI as, such that permissions hold: root reads anything,
    so as root the CLI runs as `nobody` in a folder it owns (in /tmp: pytest's are root's)."""
    import tempfile

    if os.geteuid() != 0:
        with tempfile.TemporaryDirectory() as folder:
            yield Path(folder), None
        return
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: permissions cannot be tested")
    folder = Path(tempfile.mkdtemp(prefix="blocksync-nobody-", dir="/tmp"))
    folder.chmod(0o755)
    try:
        yield folder, "65534"
    finally:
        for path in folder.rglob("*"):
            if path.is_dir() and not path.is_symlink():
                path.chmod(0o755)
        shutil.rmtree(folder)


def test_an_unreadable_subfolder_is_skipped_and_its_files_are_not_deleted(
    as_nobody: tuple[Path, str | None],
) -> None:
    base, user = as_nobody
    store_path, notes = base / "store", base / "notes"
    blocksync.init(store_path).close()
    notes.mkdir()
    add_source(store_path, notes, permission_rules='[{ pattern = "**", permission = "admin" }]')
    (notes / "a.md").write_text("a\n")
    (notes / "locked").mkdir()
    for i in range(6):
        (notes / "locked" / f"n{i}.md").write_text(f"n{i}\n")
    if user is not None:
        for path in [base, *base.rglob("*")]:
            os.lchown(path, int(user), int(user))
    assert run(store_path, "sync", user=user).returncode == 0
    (notes / "a.md").write_text("a, edited\n")
    (notes / "locked").chmod(0)
    try:
        done = run(store_path, "sync", "--json", user=user)
    finally:
        (notes / "locked").chmod(0o755)
    assert done.returncode == 0, done.stdout + done.stderr
    doc = json.loads(done.stdout)
    reasons = skipped(doc)
    assert "locked/" in reasons and "cannot be listed" in reasons["locked/"], reasons
    assert dict(source_entry(doc)["resolved"][0]) == {"path": "a.md", "resolution": "disk->agent"}
    with blocksync.open(store_path) as ws:
        assert len(ws.blocks.list("bob")) == 7, "blocks of unlisted files were deleted"
    assert len(list((notes / "locked").iterdir())) == 6


# -- 9. a busy agent never fails the source -------------------------------------------------------


WRITER = textwrap.dedent(
    """
    import random, sys, time
    import blocksync
    store, stop = sys.argv[1], sys.argv[2]
    rng = random.Random(7)
    with blocksync.open(store, author="agent:bob") as ws:
        labels = [b.label for b in ws.blocks.list("bob")]
        n = 0
        print("writing", flush=True)
        import os
        while not os.path.exists(stop):
            label = rng.choice(labels)
            block = ws.blocks.read("bob", label)
            try:  # as a careful agent writes: never over a version it has not read
                ws.blocks.update(
                    "bob", label, block.content + f"agent {n}\\n", expected_version=block.version
                )
                n += 1
            except blocksync.StaleVersion:
                pass
            time.sleep(0.04)  # about 25 updates a second
    print("wrote", n, flush=True)
    """
)


def test_a_busy_agent_never_fails_a_sync_of_thousands_of_changed_files(
    store_path: Path, notes: Path, tmp_path: Path
) -> None:
    count = 3000
    for i in range(count):
        (notes / f"f{i:05d}.md").write_text(f"line {i}\n")
    assert run(store_path, "sync").returncode == 0
    for i in range(count):
        (notes / f"f{i:05d}.md").write_text(f"disk edit {i}\nline {i}\n")
    stop = tmp_path / "stop"
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(store_path), str(stop)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert writer.stdout is not None and writer.stdout.readline().startswith("writing")
        time.sleep(0.3)
        code, doc = run_json(store_path, "sync")
    finally:
        stop.touch()
        out, _ = writer.communicate(timeout=TIMEOUT)
    assert int(out.split()[-1]) > 0
    entry = source_entry(doc)
    assert code in (0, 3), entry["error"]
    assert entry["error"] is None
    done = len(entry["resolved"]) + len(entry["needs_resolution"]) + len(entry["skipped"])
    assert done + entry["unchanged"] == count
    # the next runs converge: every file and its block agree, or a conflict holds both
    for _ in range(3):
        code, doc = run_json(store_path, "sync")
    assert code in (0, 3) and source_entry(doc)["skipped"] == []
    with blocksync.open(store_path) as ws:
        open_paths = {c.path for c in ws.conflicts.list()}
        for i in range(count):
            path = f"f{i:05d}.md"
            text = (notes / path).read_text()
            assert text.startswith(f"disk edit {i}\n"), (path, text)
            if path not in open_paths:
                assert ws.blocks.read("bob", label(notes, path)).content == text
    assert_git_fsck(store_path / "repo")


# -- 12. mass deletions from the agent side need confirmation too ---------------------------------


def test_an_agent_deleting_every_block_does_not_empty_the_folder(
    store_path: Path, notes: Path
) -> None:
    for i in range(20):
        (notes / f"n{i:02d}.md").write_text(f"note {i}\n")
    assert run(store_path, "sync").returncode == 0
    with blocksync.open(store_path) as ws, ws.transaction("clean up") as tx:
        for block in ws.blocks.list("bob"):
            tx.delete("bob", block.label)
    for args in (["sync"], ["reconcile"], ["reconcile", "--dry-run"]):
        code, doc = run_json(store_path, *args)
        assert code == 1, doc
        error = source_entry(doc)["error"]
        assert "20 of its 20 synced paths had their blocks deleted" in error
        assert "--allow-mass-delete" in error
    assert len(list(notes.iterdir())) == 20
    code, doc = run_json(store_path, "sync", "--allow-mass-delete")
    assert code == 0 and len(source_entry(doc)["resolved"]) == 20
    assert list(notes.iterdir()) == []
    # and the README's way back: every deleted block's history keeps its text
    with blocksync.open(store_path) as ws:
        assert len(ws.blocks.history("bob", label(notes, "n07.md"))) == 2


def test_the_config_may_allow_mass_deletions(store_path: Path, notes: Path) -> None:
    for i in range(8):
        (notes / f"n{i}.md").write_text(f"note {i}\n")
    assert run(store_path, "sync").returncode == 0
    for i in range(8):
        (notes / f"n{i}.md").unlink()
    code, doc = run_json(store_path, "sync")
    assert code == 1 and "are missing from the source" in source_entry(doc)["error"]
    toml = store_path / "blocksync.toml"
    toml.write_text(toml.read_text().replace("[store]\n", "[store]\nallow_mass_delete = true\n"))
    code, doc = run_json(store_path, "sync")
    assert code == 0 and len(source_entry(doc)["resolved"]) == 8


# -- 17. temp files of killed writers do not outlive the next run ---------------------------------


def test_leftover_temp_files_are_removed_by_the_next_run(store_path: Path, notes: Path) -> None:
    (notes / "sub").mkdir()
    (notes / "sub" / "a.md").write_text("a\n")
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        leftovers = [
            notes / f".blocksync-{dead}-0123456789abcdef.tmp",
            notes / "sub" / ".blocksync-0123456789abcdef.tmp",
        ]  # an older name
        for path in leftovers:
            path.write_text("half a write")
        old = time.time() - 2 * 3600
        os.utime(leftovers[1], (old, old))
        busy = notes / f".blocksync-{alive.pid}-fedcba9876543210.tmp"
        busy.write_text("being written")
        code, doc = run_json(store_path, "sync")
        assert code == 0 and skipped(doc) == {}
        assert not any(p.exists() for p in leftovers)
        assert busy.exists(), "the temp file of a writer still running was removed"
    finally:
        alive.kill()
        alive.wait()
    with blocksync.open(store_path) as ws:
        assert [b.label.rsplit(":", 1)[1] for b in ws.blocks.list("bob")] == ["sub/a.md"]


# -- 10. names as long as the file system allows ----------------------------------------------------


def test_names_longer_than_one_path_component_sync_and_keep_their_history(
    store_path: Path, notes: Path
) -> None:
    """33 Japanese characters encode to 297 bytes, over one git path component: such a label is
    stored under a hashed component with the whole label beside it; git log, fsck and an index
    rebuild all see the block."""
    long_name = "日本語のとても長いファイル名" * 2 + "です。.md"  # 33 characters
    deep = "/".join(["深い" * 40] * 3) + "/note.md"
    (notes / long_name).write_text("one\n")
    (notes / deep).parent.mkdir(parents=True)
    (notes / deep).write_text("deep\n")
    code, doc = run_json(store_path, "sync")
    assert code == 0 and skipped(doc) == {}, doc
    with blocksync.open(store_path) as ws:
        block = ws.blocks.read("bob", label(notes, long_name))
        assert block.content == "one\n"
        ws.blocks.update("bob", label(notes, long_name), "two\n")
        path = ws.blocks.git_path("bob", label(notes, long_name))
        assert len(path.rsplit("/", 1)[1].encode()) <= 255
    assert run(store_path, "sync").returncode == 0
    assert (notes / long_name).read_text() == "two\n"
    log = subprocess.run(
        ["git", "--git-dir", str(store_path / "repo"), "log", "--format=%s", "--", path],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert len(log) == 2
    blocksync.rebuild_index(store_path)
    with blocksync.open(store_path) as ws:
        assert {b.label for b in ws.blocks.list("bob")} == {
            label(notes, long_name),
            label(notes, deep),
        }
        assert [v.version for v in ws.blocks.history("bob", label(notes, long_name))] == [1, 2]
        assert ws.fsck().ok


# -- 15/17. clear errors and exit codes for what a user types ------------------------------------


@pytest.mark.parametrize(
    "path", ["../../etc/passwd", "/etc/passwd", "a//b", "./a.md", ".git/config"]
)
def test_a_path_no_source_can_have_is_a_usage_error(
    store_path: Path, notes: Path, path: str
) -> None:
    (notes / "a.md").write_text("a\n")
    done = run(store_path, "reconcile", path)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "no path of the data sources" in done.stderr and "notes" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_path_no_source_has_is_not_found(store_path: Path, notes: Path) -> None:
    (notes / "a.md").write_text("a\n")
    done = run(store_path, "reconcile", str(notes / "nonexisting.md"))  # in notes' folder
    assert done.returncode == 4, done.stdout + done.stderr
    assert "no data source has a path 'nonexisting.md'" in done.stderr
    # in no folder, and no source's path as given: a usage error saying both (issue 16)
    done = run(store_path, "reconcile", "nonexisting.md")
    assert done.returncode == 2, done.stdout + done.stderr
    assert "is in no data source" in done.stderr
    assert "no data source has a path 'nonexisting.md'" in done.stderr
    assert run(store_path, "reconcile", "a.md").returncode == 0
    (notes / "a.md").unlink()  # a deleted file is still a path of its source (its base)
    assert run(store_path, "reconcile", "a.md").returncode == 0


def test_a_damaged_object_fails_its_path_not_the_source(store_path: Path, notes: Path) -> None:
    (notes / "a.md").write_text("a\n")
    (notes / "b.md").write_text("b\n")
    assert run(store_path, "sync").returncode == 0
    with blocksync.open(store_path) as ws:
        ws.blocks.update("bob", label(notes, "a.md"), "a, by the agent\n")
        blob = ws.blocks.read("bob", label(notes, "a.md"))
    sha = subprocess.run(
        [
            "git",
            "--git-dir",
            str(store_path / "repo"),
            "rev-parse",
            f"main:{ws.blocks.git_path('bob', label(notes, 'a.md'))}/content",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    loose = store_path / "repo" / "objects" / sha[:2] / sha[2:]
    loose.chmod(0o644)
    original = loose.read_bytes()
    loose.write_bytes(b"garbage, not zlib")
    (notes / "a.md").write_text("a, on disk\n")
    (notes / "b.md").write_text("b, on disk\n")
    try:
        code, doc = run_json(store_path, "sync")
    finally:
        loose.write_bytes(original)  # repaired, for the git fsck after the test
    assert blob.content == "a, by the agent\n"
    reasons = skipped(doc)
    assert code == 0 and source_entry(doc)["error"] is None, doc
    assert "damaged" in reasons["a.md"] and sha in reasons["a.md"]
    assert [r["path"] for r in source_entry(doc)["resolved"]] == ["b.md"]
    assert (notes / "a.md").read_text() == "a, on disk\n"
