"""Provenance per version: who made it, on which machine, in which run -- as git commit trailers
real git reads, served by the version index, restored by ``index rebuild``."""

from __future__ import annotations

import sqlite3
import subprocess
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import blocksync
from blocksync import ConfigError, RunNotFound, UsageError
from blocksync.runner import run_sync
from blocksync.store import provenance
from blocksync.store.provenance import Provenance

from .conftest import git
from .test_git_compat import interpret_trailers

MACHINE = "laptop-1"


def configure(store: Path, extra: str = "") -> None:
    """``[store] machine`` (the template's ``[store]`` table, rewritten) and more config."""
    config = store / "blocksync.toml"
    text = config.read_text(encoding="utf-8")
    config.write_text(
        text.replace("[store]\n", f'[store]\nmachine = "{MACHINE}"\n', 1) + extra,
        encoding="utf-8",
    )


@pytest.fixture
def notes(store_path: Path, tmp_path: Path) -> Path:
    """The folder of file source ``notes`` of agent alice (empty), on machine laptop-1."""
    folder = tmp_path / "notes"
    folder.mkdir()
    configure(
        store_path, f'\n[agents.alice.data_sources.notes]\ntype = "file"\npaths = ["{folder}"]\n'
    )
    return folder


def trailers_of(repo: Path, commit: str) -> dict[str, str]:
    """The trailers real git parses in a commit's message (``git interpret-trailers``)."""
    message = git(repo, "log", "-1", "--format=%B", commit)
    return dict(line.split(": ", 1) for line in interpret_trailers(message).splitlines())


def test_every_commit_names_its_author_and_machine(store_path: Path) -> None:
    configure(store_path)
    with blocksync.open(store_path, author="human:ana") as ws:
        ws.blocks.create("alice", "notes", "hi\n")
        ws.blocks.update("alice", "notes", "hey\n", author="agent:alice", message="edit\n\nwhy")
        first, second = ws.blocks.history("alice", "notes")
    repo = store_path / "repo"
    assert trailers_of(repo, first.commit) == {
        "Blocksync-Author": "human:ana",
        "Blocksync-Machine": MACHINE,
    }
    assert trailers_of(repo, second.commit)["Blocksync-Author"] == "agent:alice"
    body = git(repo, "log", "-1", "--format=%B", second.commit)
    assert body == f"edit\n\nwhy\n\nBlocksync-Author: agent:alice\nBlocksync-Machine: {MACHINE}\n\n"
    # the index serves them, and the message as it was given
    assert (second.made_by, second.machine, second.run_id) == ("agent:alice", MACHINE, None)
    assert second.message == "edit\n\nwhy" and second.author == "agent:alice"


def test_the_machine_defaults_to_the_host_name(ws: blocksync.Workspace) -> None:
    import socket

    ws.blocks.create("alice", "notes", "hi\n")
    (version,) = ws.blocks.history("alice", "notes")
    assert version.machine == socket.gethostname().strip()


@pytest.mark.parametrize(
    "value",
    ['"two\\nlines"', '"tab\\there"', '" padded "', '""', "42", '"bell\\u0007"'],
)
def test_a_machine_name_a_trailer_cannot_carry_is_refused(store_path: Path, value: str) -> None:
    with blocksync.open(store_path) as ws:
        ws.blocks.create("alice", "notes", "hi\n")
    head = git(store_path / "repo", "rev-parse", "main")
    config = store_path / "blocksync.toml"
    before = config.read_text(encoding="utf-8")
    config.write_text(before.replace("[store]\n", f"[store]\nmachine = {value}\n", 1))
    with pytest.raises(ConfigError, match=r"\[store\] machine must be one line"):
        blocksync.open(store_path)
    assert git(store_path / "repo", "rev-parse", "main") == head  # nothing written
    config.write_text(before)
    with blocksync.open(store_path) as ws:
        assert ws.blocks.read("alice", "notes").content == "hi\n"


def test_a_reconcile_run_is_logged_and_its_commits_name_it(store_path: Path, notes: Path) -> None:
    (notes / "a.md").write_text("from disk\n")
    with blocksync.open(store_path, author="human:ana") as ws:
        dry = ws.reconcile(dry_run=True)
        assert ws.runs.list() == []  # a dry run writes nothing, not even a run row
        report = ws.reconcile()
        (summary,) = ws.blocks.list("alice")
        (version,) = ws.blocks.history("alice", summary.label)
        run = ws.runs.get(report.run_id)
    assert dry.run_id != report.run_id
    assert (version.made_by, version.machine, version.run_id) == (
        "source:notes",
        MACHINE,
        report.run_id,
    )
    assert trailers_of(store_path / "repo", version.commit)["Blocksync-Run"] == report.run_id
    assert run.command == "blocksync reconcile" and run.status == "finished"
    assert run.exit_code == 0 and run.resolved == 1 and run.seconds is not None
    assert run.report is not None
    (entry,) = run.report["sources"]
    assert entry["source"] == "notes" and entry["resolved"][0]["path"] == "a.md"


def test_a_sync_run_names_itself_in_every_commit_and_logs_once(
    store_path: Path, notes: Path
) -> None:
    (notes / "a.md").write_text("one\n")
    (notes / "b.md").write_text("two\n")
    with blocksync.open(store_path) as ws:
        report = run_sync(ws)
        runs = ws.runs.list()
        versions = [ws.blocks.history("alice", b.label)[-1] for b in ws.blocks.list("alice")]
    assert [r.id for r in runs] == [report.run_id]  # its reconcile is part of it, not a run
    assert runs[0].command == "blocksync sync"
    assert {v.run_id for v in versions} == {report.run_id}


def test_writes_a_plugin_caused_name_the_plugin_and_its_sha256() -> None:
    assert provenance.plugin("s3-notes", "ab" * 32) == "plugin:s3-notes@abababababab"
    assert provenance.remote("hub") == "remote:hub"


def test_history_from_before_trailers_shows_none_and_rebuild_restores_them(
    store_path: Path,
) -> None:
    """A commit without trailers (what an older blocksync wrote) has no provenance, never an
    error; ``index rebuild`` reads the provenance of the others from git again."""
    configure(store_path)
    repo = store_path / "repo"
    with blocksync.open(store_path, author="human:ana") as ws:
        ws.blocks.create("alice", "notes", "old\n")
    # the same tree, committed as an older blocksync would have: no trailers
    tree = git(repo, "rev-parse", "main^{tree}").strip()
    parent = git(repo, "rev-parse", "main").strip()
    old = subprocess.run(
        ["git", "--git-dir", str(repo), "commit-tree", tree, "-m", "create alice/notes"],
        capture_output=True,
        text=True,
        check=True,
        env={
            "GIT_AUTHOR_NAME": "human:old",
            "GIT_AUTHOR_EMAIL": "old@x",
            "GIT_COMMITTER_NAME": "human:old",
            "GIT_COMMITTER_EMAIL": "old@x",
            "PATH": "/usr/bin:/bin",
        },
    ).stdout.strip()
    git(repo, "update-ref", "refs/heads/main", old, parent)
    blocksync.rebuild_index(store_path)
    with blocksync.open(store_path, author="human:ana") as ws:
        ws.blocks.update("alice", "notes", "new\n")
        before = ws.blocks.history("alice", "notes")
    assert [(v.made_by, v.machine, v.run_id) for v in before] == [
        (None, None, None),
        ("human:ana", MACHINE, None),
    ]
    assert before[0].message == "create alice/notes"
    blocksync.rebuild_index(store_path)
    with blocksync.open(store_path) as ws:
        assert ws.blocks.history("alice", "notes") == before


def test_an_index_from_before_provenance_gains_its_columns(store_path: Path) -> None:
    """The migration adds the columns to an index.db made before them; its rows say nothing."""
    with blocksync.open(store_path) as ws:
        ws.blocks.create("alice", "notes", "hi\n")
    db = sqlite3.connect(store_path / "index.db")
    with db:
        for column in ("made_by", "machine", "run_id"):
            db.execute(f"ALTER TABLE versions DROP COLUMN {column}")
        db.execute("DELETE FROM _sqlite_migrations WHERE name = 'versions_provenance'")
    db.close()
    with blocksync.open(store_path) as ws:
        (old,) = ws.blocks.history("alice", "notes")
        assert (old.made_by, old.machine, old.run_id) == (None, None, None)
        ws.blocks.update("alice", "notes", "hey\n", author="agent:alice")
        assert ws.blocks.history("alice", "notes")[-1].made_by == "agent:alice"


def test_a_message_ending_in_trailers_of_its_own_keeps_them(ws: blocksync.Workspace) -> None:
    message = "fix\n\nSigned-off-by: ana\nBlocksync-Run: forged"
    ws.blocks.create("alice", "notes", "x", message=message, author="agent:alice")
    (version,) = ws.blocks.history("alice", "notes")
    assert version.message == message
    assert version.run_id is None and version.made_by == "agent:alice"


lines = st.text(st.characters(blacklist_categories=["Cs"]), max_size=30)


@given(
    message=st.lists(lines, max_size=5).map("\n".join),
    made=st.builds(
        Provenance,
        st.none() | st.just("agent:alice"),
        st.none() | st.just(MACHINE),
        st.none() | st.just("run-x"),
    ),
)
def test_trailers_round_trip(message: str, made: Provenance) -> None:
    """What a writer said comes back as said (but for trailing newlines, which git drops), and
    the trailers as written -- or nothing, and never a piece of the message, without any."""
    body, found = provenance.split(made.message(message))
    if made.trailers():
        assert (body, found) == (message.rstrip("\n"), made)
    else:
        assert body == message.rstrip("\n")


def test_reading_a_message_is_forgiving() -> None:
    for message in ("", "one line", "a\n\nb: c", "a\n\nBlocksync-Author: x\nnot a trailer"):
        assert provenance.split(message) == (message, Provenance())
    assert provenance.split("a\n\nBlocksync-Author: x\nBlocksync-Later: y") == (
        "a",
        Provenance("x"),
    )


def test_the_run_log_refuses_a_limit_below_one_and_unknown_ids(ws: blocksync.Workspace) -> None:
    for limit in (0, -1, True):
        with pytest.raises(UsageError, match="limit must be a whole number of at least 1"):
            ws.runs.list(limit)
    with pytest.raises(RunNotFound, match="no run 'run-nope'") as info:
        ws.runs.get("run-nope")
    assert info.value.exit_code == 4 and info.value.run_id == "run-nope"


def test_a_maker_a_trailer_cannot_carry_is_refused_before_anything_is_staged(
    ws: blocksync.Workspace,
) -> None:
    for bad in ("two\nlines", " padded", ""):
        with pytest.raises(UsageError, match="must be one line"):
            ws.blocks.create("alice", "notes", "x", made_by=bad)
    assert not ws.blocks.exists("alice", "notes")
