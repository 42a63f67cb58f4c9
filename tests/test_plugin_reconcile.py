"""WASM data-block plugins driven by the reconciler (blocksync.plugins.PluginSource): the ``files``
plugin (fixtures/plugins/files, built with componentize-py) configured in blocksync.toml, reached
through ``ws.reconcile`` and ``ws.conflicts`` exactly as a native file source is; the hostile
``hostile_paths`` plugin for malformed answers. Real git (checked with the git CLI), real SQLite."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

import blocksync
from blocksync.errors import AccessDenied, ConfigError, PluginCallFailed, StaleResolution
from blocksync.plugins.batch import BATCH_FAULT_STEPS, SyncBatch

from .conftest import assert_git_fsck
from .plugin_builds import built_plugins
from .stores import base_of, make_store, refs_of

KEY = "notes"
OWNER = "alice"
BASE = "one\ntwo\nthree\n"


@pytest.fixture(scope="module")
def built() -> dict[str, Path]:
    return built_plugins(["files", "hostile_paths"])


def label(path: str) -> str:
    return f"file:{KEY}:{path}"


class Rig:
    def __init__(
        self,
        tmp: Path,
        wasm: Path,
        permission: str = "admin",
        caps: dict[str, Any] | None = None,
        **table: Any,
    ) -> None:
        """``table``: more of the source's table (limits, ...); ``caps``: [limits]."""
        self.root = tmp / "notes"
        self.root.mkdir()
        self.store = make_store(
            tmp / "store",
            {
                KEY: {
                    "path": wasm,
                    "dir": self.root,
                    "dir_mode": "read-write",
                    "config": {"owner": OWNER, "tag": KEY, "permission": permission},
                    **table,
                },
            },
            caps=caps,
        )
        self.ws = blocksync.open(self.store, author="human:test")

    def write(self, path: str, text: str) -> None:
        file = self.root / path
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text(text, encoding="utf-8")

    def read(self, path: str) -> str | None:
        file = self.root / path
        return file.read_text(encoding="utf-8") if file.exists() else None

    def block(self, path: str) -> str | None:
        if not self.ws.blocks.exists(OWNER, label(path)):
            return None
        return self.ws.blocks.read(OWNER, label(path)).content

    def base(self, path: str) -> str | None:
        return base_of(self.ws, KEY, path)

    def refs(self, *, records: bool = True) -> dict[str, str]:
        return refs_of(self.ws.repo_path, records=records)

    def commits(self, ref: str) -> int:
        """How many commits ``ref`` has (0: no such ref yet)."""
        out = subprocess.run(
            ["git", "-C", str(self.ws.repo_path), "rev-list", "--count", ref, "--"],
            capture_output=True,
            text=True,
            check=False,
        )
        return int(out.stdout) if out.returncode == 0 else 0

    def synced(self, *paths: str) -> None:
        for path in paths:
            self.write(path, BASE)
        report = self.ws.reconcile()
        assert report.sources[0].error is None


R = TypeVar("R", bound=Rig)


def checked(rig: R) -> Iterator[R]:
    """Yield ``rig``; then its store must pass both fscks (ours and git's)."""
    yield rig
    assert rig.ws.fsck().ok
    rig.ws.close()
    assert_git_fsck(rig.store / "repo")


@pytest.fixture
def rig(tmp_path: Path, built: dict[str, Path]) -> Iterator[Rig]:
    yield from checked(Rig(tmp_path, built["files"]))


def test_a_plugin_source_is_reconciled_in_one_commit_per_side(rig: Rig) -> None:
    for i in range(20):
        rig.write(f"d{i % 3}/f{i}.md", f"file {i}\n")
    main, bases = rig.commits("main"), rig.commits(f"refs/sync/{KEY}")
    report = rig.ws.reconcile()
    (source,) = report.sources
    assert source.source == KEY and source.error is None
    assert len(source.resolved) == 20 and report.exit_code == 0
    # one block commit and one bases commit for the whole call, not one per path
    assert rig.commits("main") == main + 1
    assert rig.commits(f"refs/sync/{KEY}") == bases + 1
    assert rig.block("d1/f4.md") == "file 4\n" and rig.base("d1/f4.md") == "file 4\n"
    # the versions name the plugin with its file's sha256, and the run they were made in
    sha = hashlib.sha256(rig.ws.plugins.specs[KEY].path.read_bytes()).hexdigest()
    (made,) = rig.ws.blocks.history(OWNER, label("d1/f4.md"))
    assert (made.made_by, made.run_id) == (f"plugin:{KEY}@{sha[:12]}", report.run_id)
    again = rig.ws.reconcile()
    assert again.sources[0].unchanged == 20 and not again.sources[0].resolved


def test_plugin_conflicts_reach_the_index_with_three_sides(rig: Rig) -> None:
    rig.synced("edit.md", "gone.md")
    rig.write("edit.md", "one\nTWO on disk\nthree\n")
    rig.ws.blocks.update(OWNER, label("edit.md"), "one\nTWO by agent\nthree\n")
    (rig.root / "gone.md").unlink()
    rig.ws.blocks.update(OWNER, label("gone.md"), "changed while deleted on disk\n")
    report = rig.ws.reconcile()
    assert sorted(report.sources[0].needs_resolution) == ["edit.md", "gone.md"]
    assert report.open_conflicts == 2 and report.exit_code == 3
    rows = {c.path: c for c in rig.ws.conflicts.list()}
    edit, gone = rows["edit.md"], rows["gone.md"]
    assert (edit.source, edit.owner, edit.label) == (KEY, OWNER, label("edit.md"))
    assert (edit.base, edit.disk, edit.agent) == (
        BASE,
        "one\nTWO on disk\nthree\n",
        "one\nTWO by agent\nthree\n",
    )
    assert edit.reason == "both sides changed the same lines"
    assert gone.disk is None and gone.agent == "changed while deleted on disk\n"
    assert "deleted" in gone.reason
    # a re-run finds the same rows
    rig.ws.reconcile()
    assert {c.id for c in rig.ws.conflicts.list()} == {edit.id, gone.id}


@pytest.mark.parametrize("take", ["disk", "agent", "merged"])
def test_resolving_a_plugin_conflict_writes_both_sides_and_the_base(rig: Rig, take: str) -> None:
    rig.synced("a.md")
    rig.write("a.md", "ONE\ntwo\nthree\n")
    rig.ws.blocks.update(OWNER, label("a.md"), "one\ntwo\nTHREE\nfour\n")
    # a clean merge is done by reconcile itself: make it overlap for a conflict
    rig.write("a.md", "ONE\ntwo\nthree\nfour on disk\n")
    (conflict,) = (rig.ws.reconcile(), rig.ws.conflicts.list())[1]
    if take == "merged":
        chosen = "settled by hand\n"
        done = rig.ws.conflicts.resolve(
            conflict.id, take="merged", content=chosen, resolver="human:me"
        )
    else:
        chosen = conflict.disk if take == "disk" else conflict.agent
        done = rig.ws.conflicts.resolve(conflict.id, take=take, resolver="human:me")  # type: ignore[arg-type]
    assert done.status == "resolved" and done.resolved_by == "human:me"
    assert rig.read("a.md") == chosen and rig.block("a.md") == chosen and rig.base("a.md") == chosen
    assert done.result_version == rig.ws.blocks.read(OWNER, label("a.md")).version
    if take != "agent":  # the agent's side was already a version
        log = subprocess.run(
            ["git", "-C", str(rig.ws.repo_path), "log", "-1", "--format=%s%n%an", "main"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert conflict.id in log and "human:me" in log
        # a resolution is its resolver's, not the plugin's
        assert rig.ws.blocks.history(OWNER, label("a.md"))[-1].made_by == "human:me"
    after = rig.ws.reconcile()
    assert after.sources[0].unchanged == 1 and after.open_conflicts == 0


def test_undo_puts_back_both_sides_and_the_conflict(rig: Rig) -> None:
    rig.synced("a.md")
    rig.write("a.md", "disk\n")
    rig.ws.blocks.update(OWNER, label("a.md"), "agent\n")
    rig.ws.reconcile()
    (conflict,) = rig.ws.conflicts.list()
    rig.ws.conflicts.resolve(conflict.id, take="agent")
    assert rig.read("a.md") == "agent\n"
    rig.ws.conflicts.undo(conflict.id)
    assert (rig.read("a.md"), rig.block("a.md"), rig.base("a.md")) == ("disk\n", "agent\n", BASE)
    report = rig.ws.reconcile()
    assert report.sources[0].needs_resolution == ["a.md"]


def test_a_stale_plugin_conflict_is_refused_and_nothing_is_written(rig: Rig) -> None:
    rig.synced("a.md")
    rig.write("a.md", "disk\n")
    rig.ws.blocks.update(OWNER, label("a.md"), "agent\n")
    rig.ws.reconcile()
    (conflict,) = rig.ws.conflicts.list()
    rig.write("a.md", "disk, edited again\n")
    before = rig.refs()
    with pytest.raises(StaleResolution, match="disk"):
        rig.ws.conflicts.resolve(conflict.id, take="agent")
    assert rig.refs() == before
    assert (rig.read("a.md"), rig.block("a.md")) == ("disk, edited again\n", "agent\n")


def test_a_dry_run_through_a_plugin_writes_nothing(rig: Rig) -> None:
    rig.synced("a.md", "b.md")
    rig.write("a.md", "disk edit\n")
    rig.ws.blocks.update(OWNER, label("b.md"), "agent edit\n")
    rig.write("new.md", "new\n")
    before = rig.refs()
    report = rig.ws.reconcile(dry_run=True)
    assert sorted(report.sources[0].resolved) == [
        ("a.md", "disk->agent"),
        ("b.md", "agent->disk"),
        ("new.md", "disk->agent"),
    ]
    assert rig.refs() == before
    assert (rig.read("b.md"), rig.block("a.md"), rig.block("new.md")) == (BASE, BASE, None)
    assert rig.ws.conflicts.list(status="all") == []


def test_most_files_gone_aborts_the_plugin_source_and_commits_nothing(rig: Rig) -> None:
    paths = [f"f{i}.md" for i in range(10)]
    rig.synced(*paths)
    for path in paths[:8]:
        (rig.root / path).unlink()
    before = rig.refs(records=False)  # a failed run still records itself in the run log
    report = rig.ws.reconcile()
    (source,) = report.sources
    assert source.error is not None and "8 of its 10 synced paths are missing" in source.error
    assert report.exit_code == 1
    assert rig.refs(records=False) == before and all(rig.block(p) == BASE for p in paths)
    # named paths are reconciled: deletions the user asks for go through
    named = rig.ws.reconcile(paths=paths[:2])
    assert named.sources[0].resolved == [(p, "delete-block") for p in paths[:2]]
    assert rig.block(paths[0]) is None


def test_an_agent_edit_during_the_call_is_never_overwritten(rig: Rig) -> None:
    """The batch's writes carry the version the plugin read: a write over an agent's newer
    version (made before the write, or before the commit) is dropped with its path's base write,
    and the rest of the batch commits."""
    rig.synced("a.md", "b.md", "c.md")
    bases = rig.ws.reconciler.source(KEY).bases.bases
    batch = SyncBatch(rig.ws.blocks, bases, "reconcile", "plugin:notes", dry_run=False)
    assert batch.read(OWNER, label("a.md")) == BASE
    rig.ws.blocks.update(OWNER, label("a.md"), "the agent, first\n")
    batch.update(OWNER, label("a.md"), "from disk\n")
    batch.bases.set_base("a.md", OWNER, label("a.md"), "from disk\n")
    assert batch.read(OWNER, label("b.md")) == BASE
    batch.update(OWNER, label("b.md"), "from disk\n")
    batch.bases.set_base("b.md", OWNER, label("b.md"), "from disk\n")
    assert batch.read(OWNER, label("c.md")) == BASE
    batch.update(OWNER, label("c.md"), "from disk\n")
    batch.bases.set_base("c.md", OWNER, label("c.md"), "from disk\n")
    rig.ws.blocks.update(OWNER, label("b.md"), "the agent, meanwhile\n")
    batch.commit()
    assert batch.moved == {"a.md", "b.md"}
    assert (rig.block("a.md"), rig.block("b.md"), rig.block("c.md")) == (
        "the agent, first\n",
        "the agent, meanwhile\n",
        "from disk\n",
    )
    assert (rig.base("a.md"), rig.base("b.md"), rig.base("c.md")) == (BASE, BASE, "from disk\n")


def test_malformed_and_unasked_answers_are_skipped(tmp_path: Path, built: dict[str, Path]) -> None:
    store = make_store(tmp_path / "store", {"bad": {"path": built["hostile_paths"]}})
    with blocksync.open(store) as ws:
        report = ws.reconcile(paths=["asked.md", "unbound.md", "silent.md"])
        (source,) = report.sources
        assert source.error is None and source.unchanged == 1 and not source.resolved
        reasons = dict(source.skipped)
        assert "was answered twice" in reasons["asked.md"]
        assert "not canonical" in reasons["../outside.md"]
        assert "is empty" in reasons[""]
        assert "control character" in reasons["line\nbreak.md"]
        assert "was not asked about" in reasons["unasked.md"]
        assert "named no block" in reasons["unbound.md"]
        assert "gave no result" in reasons["silent.md"]
        assert ws.conflicts.list(status="all") == []
        assert ws.fsck().ok


KILL_CHILD = """
import json, os, sys
import blocksync
store, step = json.loads(sys.argv[1])
def fault(name):
    if name == step:
        os._exit(9)
with blocksync.open(store) as ws:
    ws.reconciler.source("notes").fault = fault
    ws.reconcile()
print("finished without reaching", step)
"""


@pytest.mark.parametrize("step", BATCH_FAULT_STEPS)
def test_kill_9_between_the_call_and_its_commits_converges(rig: Rig, step: str) -> None:
    rig.synced("to-agent.md", "to-disk.md", "merged.md", "deleted.md")
    rig.write("to-agent.md", "disk edit\n")
    rig.ws.blocks.update(OWNER, label("to-disk.md"), "agent edit\n")
    rig.write("merged.md", "ONE\ntwo\nthree\n")
    rig.ws.blocks.update(OWNER, label("merged.md"), "one\ntwo\nTHREE\n")
    (rig.root / "deleted.md").unlink()
    rig.write("new.md", "brand new\n")
    child = subprocess.run(
        [sys.executable, "-c", KILL_CHILD, json.dumps([str(rig.store), step])],
        capture_output=True,
        text=True,
        check=False,
    )
    assert child.returncode == 9, child.stdout + child.stderr
    assert_git_fsck(rig.store / "repo")
    expected = {
        "to-agent.md": "disk edit\n",
        "to-disk.md": "agent edit\n",
        "merged.md": "ONE\ntwo\nTHREE\n",
        "deleted.md": None,
        "new.md": "brand new\n",
    }
    for path, new in expected.items():  # each side holds its old or its new content
        assert rig.read(path) in (new, BASE if path != "new.md" else None), path
    report = rig.ws.reconcile()
    assert report.sources[0].error is None and report.open_conflicts == 0
    for path, new in expected.items():
        assert rig.read(path) == new and rig.block(path) == new and rig.base(path) == new, path
    assert rig.ws.reconcile().sources[0].unchanged == 4


def test_a_read_only_plugin_source_carries_disk_to_agent_only(
    tmp_path: Path, built: dict[str, Path]
) -> None:
    """Read-only: the agent may not change the source. The source's changes still reach the
    block (the host lets a reconcile it drives write read-only blocks); the agent's do not reach
    the source; when both changed the source wins and the agent's edit stays in history."""
    rig = Rig(tmp_path, built["files"], permission="read-only")
    try:
        rig.synced("a.md", "b.md", "c.md")
        assert rig.block("a.md") == BASE
        rig.write("a.md", "disk edit\n")
        rig.ws.blocks.update(OWNER, label("b.md"), "agent edit\n")
        rig.write("c.md", "disk wins\n")
        rig.ws.blocks.update(OWNER, label("c.md"), "agent loses\n")
        report = rig.ws.reconcile()
        assert sorted(report.sources[0].resolved) == [
            ("a.md", "disk->agent"),
            ("c.md", "disk->agent"),
        ]
        assert report.sources[0].needs_resolution == ["b.md"]
        assert (rig.block("a.md"), rig.read("b.md"), rig.block("c.md")) == (
            "disk edit\n",
            BASE,
            "disk wins\n",
        )
        history = rig.ws.blocks.history(OWNER, label("c.md"))
        assert (
            rig.ws.blocks.read(OWNER, label("c.md"), history[-2].version).content == "agent loses\n"
        )
        # outside a reconcile the plugin may not write a read-only block on its own
        files = rig.ws.plugins.data_block(KEY)
        with pytest.raises(PluginCallFailed, match="read-only"):
            files.create("new.md", "x\n", OWNER)
    finally:
        rig.ws.close()


def test_cron_sync_reconciles_plugin_sources_too(rig: Rig) -> None:
    rig.synced("a.md")
    rig.write("a.md", "disk\n")
    rig.ws.blocks.update(OWNER, label("a.md"), "agent\n")
    rig.write("b.md", "new\n")
    out = subprocess.run(
        [
            str(Path(sys.executable).parent / "blocksync"),
            "--store",
            str(rig.store),
            "sync",
            "--json",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 3, out.stderr
    report = json.loads(out.stdout)
    (source,) = report["sources"]
    assert source["source"] == KEY
    (conflict,) = rig.ws.conflicts.list()
    assert source["needs_resolution"] == [{"path": "a.md", "conflict": conflict.id}]
    assert source["resolved"] == [{"path": "b.md", "resolution": "disk->agent"}]
    assert report["open_conflicts"] == 1


def test_folder_digests_list_the_granted_folder_without_following_links(rig: Rig) -> None:
    """sync.folder-digests, what lets the files plugin pass over unchanged files: regular files
    under the grant with the sha256 of their bytes; links (even to files inside) left out."""
    rig.write("a.md", "one\n")
    rig.write("sub/b.md", "two\n")
    (rig.root / "link.md").symlink_to(rig.root / "a.md")
    (rig.root / "out").symlink_to("/etc", target_is_directory=True)
    host = rig.ws.plugins.get(KEY).host
    assert json.loads(host.folder_digests()) == {
        "a.md": hashlib.sha256(b"one\n").hexdigest(),
        "sub/b.md": hashlib.sha256(b"two\n").hexdigest(),
    }
    report = rig.ws.reconcile()
    assert sorted(p for p, _ in report.sources[0].resolved) == ["a.md", "sub/b.md"]


def test_folder_digests_without_a_grant_is_an_error(tmp_path: Path, built: dict[str, Path]) -> None:
    store = make_store(tmp_path / "store", {"bad": {"path": built["hostile_paths"]}})
    with blocksync.open(store) as ws, pytest.raises(AccessDenied, match="no folder is granted"):
        ws.plugins.get("bad").host.folder_digests()


def test_reading_conflicts_loads_no_plugin(rig: Rig) -> None:
    """Listing and showing conflicts need only the index: no data source is opened for them."""
    rig.synced("a.md")
    rig.write("a.md", "disk\n")
    rig.ws.blocks.update(OWNER, label("a.md"), "agent\n")
    rig.ws.reconcile()
    with blocksync.open(rig.store) as fresh:
        (conflict,) = fresh.conflicts.list()
        assert fresh.conflicts.get(conflict.id).path == "a.md"
        assert [e.loaded for e in fresh.plugins.list()] == [False]
        fresh.conflicts.resolve(conflict.id, take="disk")  # resolving opens the source
        assert [e.loaded for e in fresh.plugins.list()] == [True]


# -- trust (issue 11): a hostile folder never hangs, fails or escapes the files plugin ----------


def test_fifos_links_and_odd_names_in_the_plugins_folder_are_skipped_not_fatal(rig: Rig) -> None:
    """A FIFO where a synced file was (its read would block the host inside WASI, past any time
    limit), a link, a name that is not UTF-8 and a git folder: each is reported, the rest syncs."""
    rig.synced("a.md", "pipe.md")
    (rig.root / "pipe.md").unlink()
    os.mkfifo(rig.root / "pipe.md")
    (rig.root / "link.md").symlink_to(rig.root / "a.md")
    (rig.root / os.fsdecode(b"caf\xe9.md")).write_text("latin-1 name\n")
    subprocess.run(["git", "init", "-q", str(rig.root)], check=True)
    rig.write("a.md", "edited\n")
    done = subprocess.run(
        [
            str(Path(sys.executable).parent / "blocksync"),
            "--store",
            str(rig.store),
            "sync",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    (entry,) = json.loads(done.stdout)["sources"]
    reasons = {s["path"]: s["reason"] for s in entry["skipped"]}
    assert "FIFO" in reasons["pipe.md"] and "symbolic link" in reasons["link.md"]
    assert "not UTF-8" in reasons["caf\\xe9.md"]
    assert [r["path"] for r in entry["resolved"]] == ["a.md"]
    assert rig.block("pipe.md") == BASE, "a FIFO is not a deleted file"
    assert not any(".git" in b.label for b in rig.ws.blocks.list(OWNER))


def test_a_plugin_folder_containing_the_store_is_refused(
    tmp_path: Path, built: dict[str, Path]
) -> None:
    store = make_store(
        tmp_path / "store",
        {
            KEY: {
                "path": built["files"],
                "dir": "..",
                "dir_mode": "read-write",
                "config": {"owner": OWNER, "tag": KEY},
            },
        },
    )
    with blocksync.open(store) as ws, pytest.raises(ConfigError, match=r"\.dir: '\.\.'.*store"):
        ws.reconcile()


def test_a_busy_agent_leaves_its_paths_for_the_next_run_not_the_whole_call(rig: Rig) -> None:
    """An agent writing a block while the plugin's call runs: that path is skipped with the
    reason, every other path of the call commits, and the next run merges both edits."""
    rig.synced("a.md", "b.md")
    rig.write("a.md", BASE + "disk line\n")
    rig.write("b.md", BASE + "disk line\n")
    source = rig.ws.reconciler.source(KEY)

    def agent_writes(step: str) -> None:
        if step == "before-block-commit":
            rig.ws.blocks.update(OWNER, label("a.md"), "agent line\n" + BASE)

    source.fault = agent_writes  # type: ignore[attr-defined]
    outcome = source.reconcile_outcome()
    assert [s.path for s in outcome.skipped] == [
        "a.md"
    ] and "left for the next run" in outcome.skipped[0].reason
    assert [r.path for r in outcome.results] == ["b.md"]
    source.fault = None  # type: ignore[attr-defined]
    assert rig.ws.reconcile().exit_code == 0
    assert rig.block("a.md") == rig.read("a.md") == "agent line\n" + BASE + "disk line\n"
