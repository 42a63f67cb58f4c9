"""The native file source: the whole truth table on real files and real blocks, its laws, its
bad input, and kill -9 at every write step.

Every test runs on real folders in tmp_path and a real store (`blocksync.init`); real git
(`fsck --strict`) checks the repository afterwards (the `store_path` fixture, or explicitly).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import blocksync
from blocksync.errors import (
    AccessDenied,
    AlreadyExists,
    ConfigError,
    MergeConflict,
    NotFound,
    UsageError,
)
from blocksync.fs.disk import Folder
from blocksync.shared.wit import PermissionLevel, PermissionRule
from blocksync.sync.folder.config import FileSourceSpec, parse_file_source
from blocksync.sync.folder.source import FOLDER_FAULT_STEPS, FileSource
from blocksync.sync.protocol import (
    DataBlock,
    NeedsResolution,
    NoChange,
    ReconcileResult,
    Resolved,
    Skipped,
)

from .conftest import ROOT, assert_git_fsck, examples

AGENT = "alice"
KEY = "notes"
LEVELS = ("read-only", "read-write", "admin")
BASE = "one\ntwo\nthree\nfour\nfive\n"


# -- helpers ---------------------------------------------------------------------------------


def make_spec(root: Path, level: str = "read-write", **kw: Any) -> FileSourceSpec:
    rules = (PermissionRule("**", PermissionLevel(level)),)
    return FileSourceSpec(KEY, AGENT, "Alice's notes", (root,), permission_rules=rules, **kw)


@dataclass
class Rig:
    """A store, a folder and a file source over it."""

    ws: blocksync.Workspace
    root: Path
    fs: FileSource

    def file(self, path: str) -> Path:
        return self.root / path

    def write(self, path: str, text: str) -> None:
        f = self.file(path)
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(text.encode("utf-8"))  # bytes: no newline translation, CRLF stays CRLF

    def disk(self, path: str) -> str | None:
        f = self.file(path)
        return f.read_bytes().decode("utf-8") if f.exists() else None

    def label(self, path: str) -> str:
        return self.fs.block_of(path).label

    def agent(self, path: str) -> str | None:
        label = self.label(path)
        if not self.ws.blocks.exists(AGENT, label):
            return None
        return self.ws.blocks.read(AGENT, label).content

    def set_agent(self, path: str, text: str | None) -> None:
        label = self.label(path)
        if text is None:
            self.ws.blocks.delete(AGENT, label, author="agent:alice")
        elif self.ws.blocks.exists(AGENT, label):
            self.ws.blocks.update(AGENT, label, text, author="agent:alice")
        else:
            self.ws.blocks.create(AGENT, label, text, author="agent:alice")

    def set_disk(self, path: str, text: str | None) -> None:
        if text is None:
            self.file(path).unlink()
        else:
            self.write(path, text)

    def base(self, path: str) -> str | None:
        found = self.fs.bases.get(path)
        return None if found is None else found[1]

    def reconcile(self, *paths: str) -> list[ReconcileResult]:
        return self.fs.reconcile(list(paths))

    def snapshot(self) -> tuple[object, ...]:
        """Everything a reconcile could write: main, the bases ref, every file's bytes."""
        files = {
            str(p.relative_to(self.root)): p.read_bytes()
            for p in sorted(self.root.rglob("*"))
            if p.is_file()
        }
        return self.ws.blocks.head(), self.fs.bases.head(), files


@pytest.fixture
def rig_factory(ws: blocksync.Workspace, tmp_path: Path) -> Iterator[Callable[..., Rig]]:
    made: list[FileSource] = []

    def make(level: str = "read-write", **kw: object) -> Rig:
        root = (tmp_path / f"files{len(made)}").resolve()
        root.mkdir()
        fs = FileSource(make_spec(root, level, **kw), ws.blocks)
        made.append(fs)
        return Rig(ws, root, fs)

    yield make
    for fs in made:
        fs.close()


@pytest.fixture
def rig(rig_factory: Callable[..., Rig]) -> Rig:
    return rig_factory("admin")


def synced(rig: Rig, path: str = "a.md", text: str = BASE) -> None:
    rig.write(path, text)
    assert rig.reconcile(path) == [Resolved(path, "disk->agent")]
    assert rig.base(path) == rig.agent(path) == text


# -- the truth table, scenario by scenario, for each permission ------------------------------

DISK_EDIT = BASE.replace("one", "ONE")  # first line
AGENT_EDIT = BASE.replace("five", "FIVE")  # last line: disjoint from DISK_EDIT
MERGED = BASE.replace("one", "ONE").replace("five", "FIVE")
OVERLAP = BASE.replace("one", "uno")  # the same line as DISK_EDIT, differently

#: per level: (result kind, resolution, disk afterwards, agent afterwards, base afterwards)
Expect = tuple[str, str | None, str | None, str | None, str | None]
N: None = None  # absent: no file, no block, no base
#: scenario -> (synced first?, the file before reconcile, the block before reconcile, Expect
#: by level). The spec is DESIGN.md's table; these are its rows as files and blocks.
SCENARIOS: dict[str, tuple[bool, str | None, str | None, dict[str, Expect]]] = {
    "new file -> new block": (
        False,
        "new\n",
        N,
        {lvl: ("resolved", "disk->agent", "new\n", "new\n", "new\n") for lvl in LEVELS},
    ),
    "disk edit -> block updated": (
        True,
        DISK_EDIT,
        BASE,
        {lvl: ("resolved", "disk->agent", DISK_EDIT, DISK_EDIT, DISK_EDIT) for lvl in LEVELS},
    ),
    "block edit -> file written": (
        True,
        BASE,
        AGENT_EDIT,
        {
            "read-only": ("conflict", N, BASE, AGENT_EDIT, BASE),
            "read-write": ("resolved", "agent->disk", AGENT_EDIT, AGENT_EDIT, AGENT_EDIT),
            "admin": ("resolved", "agent->disk", AGENT_EDIT, AGENT_EDIT, AGENT_EDIT),
        },
    ),
    "disjoint edits -> merged into both": (
        True,
        DISK_EDIT,
        AGENT_EDIT,
        {
            "read-only": ("resolved", "disk->agent", DISK_EDIT, DISK_EDIT, DISK_EDIT),
            "read-write": ("resolved", "merged", MERGED, MERGED, MERGED),
            "admin": ("resolved", "merged", MERGED, MERGED, MERGED),
        },
    ),
    "overlapping edits -> conflict": (
        True,
        DISK_EDIT,
        OVERLAP,
        {
            "read-only": ("resolved", "disk->agent", DISK_EDIT, DISK_EDIT, DISK_EDIT),
            "read-write": ("conflict", N, DISK_EDIT, OVERLAP, BASE),
            "admin": ("conflict", N, DISK_EDIT, OVERLAP, BASE),
        },
    ),
    "identical edits": (
        True,
        DISK_EDIT,
        DISK_EDIT,
        {lvl: ("resolved", "identical", DISK_EDIT, DISK_EDIT, DISK_EDIT) for lvl in LEVELS},
    ),
    "file deleted": (
        True,
        N,
        BASE,
        {
            "read-only": ("conflict", N, N, BASE, BASE),
            "read-write": ("conflict", N, N, BASE, BASE),
            "admin": ("resolved", "delete-block", N, N, N),
        },
    ),
    "block deleted": (
        True,
        BASE,
        N,
        {
            "read-only": ("conflict", N, BASE, N, BASE),
            "read-write": ("conflict", N, BASE, N, BASE),
            "admin": ("resolved", "delete-source", N, N, N),
        },
    ),
    "file deleted, block changed": (
        True,
        N,
        AGENT_EDIT,
        {lvl: ("conflict", N, N, AGENT_EDIT, BASE) for lvl in LEVELS},
    ),
    "block deleted, file changed": (
        True,
        DISK_EDIT,
        N,
        {lvl: ("conflict", N, DISK_EDIT, N, BASE) for lvl in LEVELS},
    ),
    "both deleted -> binding dropped": (
        True,
        N,
        N,
        {lvl: ("resolved", "both-deleted", N, N, N) for lvl in LEVELS},
    ),
    "new block -> new file": (
        False,
        N,
        "from the agent\n",
        {
            "read-only": ("conflict", N, N, "from the agent\n", N),
            "read-write": (
                "resolved",
                "agent->disk",
                "from the agent\n",
                "from the agent\n",
                "from the agent\n",
            ),
            "admin": (
                "resolved",
                "agent->disk",
                "from the agent\n",
                "from the agent\n",
                "from the agent\n",
            ),
        },
    ),
    "no base, both differ -> conflict": (
        False,
        "disk side\n",
        "agent side\n",
        {lvl: ("conflict", N, "disk side\n", "agent side\n", N) for lvl in LEVELS},
    ),
    "no base, both the same": (
        False,
        "same\n",
        "same\n",
        {lvl: ("resolved", "identical", "same\n", "same\n", "same\n") for lvl in LEVELS},
    ),
}


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_truth_table_on_real_files(
    rig_factory: Callable[..., Rig], scenario: str, level: str
) -> None:
    rig = rig_factory(level)
    path = "docs/a.md"
    was_synced, disk, agent, expected = SCENARIOS[scenario]
    if was_synced:
        synced(rig, path)
    if disk != rig.disk(path):
        rig.set_disk(path, disk)
    if agent != rig.agent(path):
        rig.set_agent(path, agent)
    before = rig.snapshot()

    kind, resolution, disk_after, agent_after, base_after = expected[level]
    (result,) = rig.reconcile(path)
    if kind == "resolved":
        assert resolution is not None and result == Resolved(path, resolution)
    else:
        assert result == NeedsResolution(path, disk or "", agent or "")
        assert rig.snapshot() == before, "a conflict writes nothing"
        assert rig.fs.skipped == []
    assert (rig.disk(path), rig.agent(path), rig.base(path)) == (
        disk_after,
        agent_after,
        base_after,
    )

    # the next reconcile with nothing changed: no-change once resolved, the same conflict else
    after = rig.snapshot()
    (again,) = rig.reconcile(path)
    assert again == (result if kind == "conflict" else NoChange(path))
    assert rig.snapshot() == after


def test_read_only_block_edit_stays_in_history(rig_factory: Callable[..., Rig]) -> None:
    rig = rig_factory("read-only")
    synced(rig)
    rig.set_agent("a.md", AGENT_EDIT)
    rig.set_disk("a.md", DISK_EDIT)
    assert rig.reconcile("a.md") == [Resolved("a.md", "disk->agent")]
    contents = [
        rig.ws.blocks.read(AGENT, rig.label("a.md"), v.version).content
        for v in rig.ws.blocks.history(AGENT, rig.label("a.md"))
    ]
    assert contents == [BASE, AGENT_EDIT, DISK_EDIT]


def test_one_commit_per_side_per_call_with_source_author(rig: Rig) -> None:
    for name in ("a.md", "b.md", "c.md"):
        rig.write(name, f"{name}\n")
    main_before = rig.ws.blocks.head()
    results = rig.reconcile("a.md", "b.md", "c.md")
    assert [r.path for r in results] == ["a.md", "b.md", "c.md"]
    commit = rig.ws.blocks.head()
    assert commit is not None and commit != main_before
    history = rig.ws.blocks.history(AGENT, rig.label("a.md"))
    assert [v.author for v in history] == ["source:notes"]
    assert "notes" in history[0].message
    log = subprocess.run(
        ["git", "--git-dir", str(rig.ws.repo_path), "log", "--format=%an|%s", "refs/sync/notes"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert len(log) == 1 and log[0].startswith("source:notes|")
    for name in ("a.md", "b.md", "c.md"):
        assert rig.base(name) == f"{name}\n"


def test_clean_merge_is_the_same_as_git_merge_file(rig: Rig, tmp_path: Path) -> None:
    synced(rig)
    rig.set_disk("a.md", DISK_EDIT)
    rig.set_agent("a.md", AGENT_EDIT)
    rig.reconcile("a.md")
    files = []
    for name, text in (("ours", DISK_EDIT), ("base", BASE), ("theirs", AGENT_EDIT)):
        (tmp_path / name).write_text(text)
        files.append(str(tmp_path / name))
    done = subprocess.run(
        ["git", "merge-file", "-p", *files], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0 and done.stdout == rig.disk("a.md") == rig.agent("a.md")


# -- the law: reconcile twice changes nothing the second time; nothing is ever lost ------------

NASTY = [
    "",
    "\x00",
    "\x00\x01 binary-ish but UTF-8\n",
    "crlf\r\nlines\r\n",
    "no trailing newline",
    "<<<<<<< HEAD\nours\n=======\ntheirs\n>>>>>>> branch\n",
    "ünïcødé 日本語 🎉\n",
    "\u2028line separator\u2029\n",
    "\n\n\n",
    "\r",
]
contents = st.one_of(st.sampled_from(NASTY), st.text(max_size=40))
sides = st.one_of(st.none(), contents)
LAW_PATHS = itertools.count()


@settings(
    max_examples=examples(60),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    base=contents,
    disk=sides,
    agent=sides,
    level=st.sampled_from(LEVELS),
    bound=st.booleans(),
)
def test_law_second_reconcile_reports_only_no_change(
    ws: blocksync.Workspace,
    base: str,
    disk: str | None,
    agent: str | None,
    level: str,
    bound: bool,
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)  # as given, not resolved: a symlinked temp folder must work too
        with FileSource(make_spec(root, level), ws.blocks) as fs:
            rig = Rig(ws, root, fs)
            path = f"law-{next(LAW_PATHS)}.md"  # a fresh path (and block) per example
            if bound:
                rig.write(path, base)
                assert rig.reconcile(path) == [Resolved(path, "disk->agent")]
            if disk != rig.disk(path):
                rig.set_disk(path, disk)
            if agent != rig.agent(path):
                rig.set_agent(path, agent)

            (first,) = rig.reconcile(path)
            # nothing lost: in sync with the edits kept, or a conflict holding both sides
            if isinstance(first, NeedsResolution):
                assert (first.disk, first.agent) == (disk or "", agent or "")
                assert (rig.disk(path), rig.agent(path)) == (disk, agent)
            else:
                assert rig.disk(path) == rig.agent(path) == rig.base(path)
                if disk is not None and agent is not None and level != "read-only":
                    for side, other in ((disk, agent), (agent, disk)):
                        if side != (base if bound else None) and other == (base if bound else None):
                            assert rig.disk(path) == side  # the only edit survives
            after = rig.snapshot()
            (second,) = rig.reconcile(path)
            assert second == (first if isinstance(first, NeedsResolution) else NoChange(path))
            assert rig.snapshot() == after
            for name in os.listdir(root):
                assert not name.startswith(".blocksync-"), "no temp file left behind"


# -- selection: include/exclude patterns, recursive ------------------------------------------


def _tree(root: Path) -> None:
    for rel in (
        "a.md",
        "b.txt",
        "sub/c.md",
        "build/d.md",
        "sub/build/e.md",
        "sub/deep/f.md",
        "skip.md",
        ".blocksync-0123.tmp",
    ):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(rel + "\n")


def test_include_and_exclude_patterns(rig_factory: Callable[..., Rig]) -> None:
    rig = rig_factory(include_patterns=("*.md",), exclude_patterns=("build/", "/skip.md"))
    _tree(rig.root)
    assert rig.fs.candidates() == ["a.md", "sub/c.md", "sub/deep/f.md"]
    results = rig.fs.reconcile(rig.fs.candidates())
    assert all(isinstance(r, Resolved) for r in results) and len(results) == 3
    # an excluded file asked for by name is left alone, and said so
    assert rig.reconcile("b.txt", "build/d.md") == []
    assert [s.path for s in rig.fs.skipped] == ["b.txt", "build/d.md"]
    assert all("not selected" in s.reason for s in rig.fs.skipped)
    assert not rig.ws.blocks.exists(AGENT, rig.label("b.txt"))


def test_not_recursive(rig_factory: Callable[..., Rig]) -> None:
    rig = rig_factory(recursive=False)
    _tree(rig.root)
    assert rig.fs.candidates() == ["a.md", "b.txt", "skip.md"]


def test_candidates_are_bound_paths_files_and_new_blocks(rig: Rig) -> None:
    synced(rig, "kept.md")
    rig.file("kept.md").unlink()  # still bound: still a candidate
    rig.write("new.md", "new\n")
    rig.ws.blocks.create(AGENT, rig.fs.block_of("from-agent.md").label, "hi\n")
    rig.ws.blocks.create(AGENT, "unrelated", "not a file\n")
    assert rig.fs.candidates() == ["from-agent.md", "kept.md", "new.md"]
    outcome = rig.fs.reconcile_outcome()
    assert outcome.results == [
        Resolved("from-agent.md", "agent->disk"),
        Resolved("kept.md", "delete-block"),
        Resolved("new.md", "disk->agent"),
    ]
    assert rig.disk("from-agent.md") == "hi\n"


# -- paths and labels -------------------------------------------------------------------------


def test_label_scheme_and_block_owner(rig: Rig) -> None:
    synced(rig, "src/a.md")
    tag = hashlib.sha256(str(rig.root).encode()).hexdigest()[:8]
    ref = rig.fs.block_of("src/a.md")
    assert ref.label == f"file:{tag}:src/a.md"
    assert ref.agent_id == AGENT
    component = f"file%3A{tag}%3Asrc%2Fa.md"
    fan = hashlib.sha256(component.encode()).hexdigest()
    assert ref.block_id == f"blocks/{AGENT}/{fan[:2]}/{fan[2:4]}/{component}"
    binding, _ = rig.fs.bases.get("src/a.md") or (None, None)
    assert binding is not None and (binding.owner, binding.label) == (AGENT, ref.label)


def test_several_roots_prefix_paths_with_their_index(
    ws: blocksync.Workspace, tmp_path: Path
) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    for root in (one, two):
        root.mkdir()
        (root / "a.md").write_text(f"{root.name}\n")
    spec = replace(make_spec(one, "read-write"), paths=(one.resolve(), two.resolve()))
    with FileSource(spec, ws.blocks) as fs:
        assert fs.candidates() == ["0:a.md", "1:a.md"]
        assert fs.reconcile(["0:a.md", "1:a.md"]) == [
            Resolved("0:a.md", "disk->agent"),
            Resolved("1:a.md", "disk->agent"),
        ]
        assert fs.block_of("0:a.md").label != fs.block_of("1:a.md").label
        assert ws.blocks.read(AGENT, fs.block_of("1:a.md").label).content == "two\n"
        for bad in ("a.md", "2:a.md", "01:a.md", "x:a.md", "0:../a.md"):
            with pytest.raises(UsageError):
                fs.reconcile([bad])


@pytest.mark.parametrize(
    "bad",
    ["../escape.md", "/etc/passwd", "a/../../b", "a//b", "./a.md", "a/./b", "", "a/", "x\x00y"],
)
def test_paths_outside_the_roots_are_refused(rig: Rig, bad: str) -> None:
    rig.write("a.md", "a\n")
    before = rig.snapshot()
    with pytest.raises(UsageError, match="outside its root|non-empty"):
        rig.reconcile("a.md", bad)  # one bad path refuses the whole call, before any write
    assert rig.snapshot() == before


def test_missing_root_is_an_error_not_a_mass_deletion(rig: Rig) -> None:
    synced(rig)
    moved = rig.root.with_name("moved-away")
    rig.root.rename(moved)
    try:
        before = rig.snapshot()
        with pytest.raises(NotFound, match="refusing to treat its files as deleted"):
            rig.fs.reconcile_outcome()
        assert rig.snapshot() == before and rig.agent("a.md") == BASE
    finally:
        moved.rename(rig.root)


# -- files that are not text ------------------------------------------------------------------


def test_non_utf8_file_is_reported_and_untouched(rig: Rig) -> None:
    data = b"\x89PNG\r\n\x1a\n\x00\xff\xfe binary"
    rig.file("image.png").write_bytes(data)
    synced(rig, "a.md")
    rig.file("a.md").write_bytes(b"now \xff not text\n")  # a bound file that turned binary
    before = rig.snapshot()
    outcome = rig.fs.reconcile_outcome()
    assert outcome.results == []
    assert [s.path for s in outcome.skipped] == ["a.md", "image.png"]
    assert all("not UTF-8" in s.reason for s in outcome.skipped)
    assert rig.fs.skipped == outcome.skipped
    assert rig.snapshot() == before
    assert rig.file("image.png").read_bytes() == data
    assert rig.agent("a.md") == BASE and rig.base("a.md") == BASE
    assert not rig.ws.blocks.exists(AGENT, rig.label("image.png"))


def test_symlinks_are_not_followed(rig: Rig, tmp_path: Path) -> None:
    outside = tmp_path / "outside.md"
    outside.write_text("secret\n")
    (rig.root / "link.md").symlink_to(outside)
    (rig.root / "dir").symlink_to(tmp_path, target_is_directory=True)
    assert rig.fs.candidates() == []
    assert rig.reconcile("link.md", "dir/outside.md") == []
    assert [s.path for s in rig.fs.skipped] == ["link.md", "dir/outside.md"]
    assert outside.read_text() == "secret\n"


# -- writes: atomic, compare-and-swap ---------------------------------------------------------


def test_write_file_atomically(tmp_path: Path) -> None:
    target = tmp_path / "deep" / "new.md"
    with Folder(tmp_path) as folder:
        assert folder.write("deep/new.md", b"a\r\nb", None)
        assert target.read_bytes() == b"a\r\nb"
        target.chmod(0o640)
        assert not folder.write("deep/new.md", b"lost", None)  # expected absent: it exists
        assert not folder.write("deep/new.md", b"lost", "0" * 64)  # expected other content
        assert target.read_bytes() == b"a\r\nb"
        assert folder.write("deep/new.md", b"c\n", folder.digest("deep/new.md"))
        folder.sync()
    assert target.read_text() == "c\n"
    assert (target.stat().st_mode & 0o777) == 0o640, "the file keeps its permission bits"
    assert sorted(p.name for p in target.parent.iterdir()) == ["new.md"], "no temp left behind"


def test_file_changed_between_classification_and_write_is_not_overwritten(rig: Rig) -> None:
    synced(rig)
    rig.set_agent("a.md", AGENT_EDIT)
    racer = "someone typed this meanwhile\n"

    def fault(step: str) -> None:
        if step == "before-file-write":
            rig.write("a.md", racer)

    rig.fs.fault = fault
    assert rig.reconcile("a.md") == [NeedsResolution("a.md", racer, AGENT_EDIT)]
    rig.fs.fault = None
    assert rig.disk("a.md") == racer
    assert rig.base("a.md") == BASE, "the base does not advance"
    # the next run sees the racer's edit as a disk change against the old base
    assert rig.reconcile("a.md") == [NeedsResolution("a.md", racer, AGENT_EDIT)]


def test_file_deleted_between_classification_and_write(rig: Rig) -> None:
    synced(rig)
    rig.set_agent("a.md", AGENT_EDIT)
    rig.fs.fault = lambda step: rig.file("a.md").unlink() if step == "before-file-write" else None
    assert rig.reconcile("a.md") == [NeedsResolution("a.md", "", AGENT_EDIT)]
    assert not rig.file("a.md").exists()


def test_write_steps_happen_in_order(rig: Rig) -> None:
    synced(rig, "merge.md")
    rig.set_disk("merge.md", DISK_EDIT)
    rig.set_agent("merge.md", AGENT_EDIT)
    steps: list[str] = []
    rig.fs.fault = steps.append
    rig.reconcile("merge.md")
    assert steps == list(FOLDER_FAULT_STEPS)


# -- kill -9 at every write step --------------------------------------------------------------

CHILD = """
import json, os, sys
from pathlib import Path
import blocksync
from blocksync.sync.folder.config import FileSourceSpec
from blocksync.sync.folder.source import FileSource
from blocksync.shared.wit import PermissionLevel, PermissionRule
store, root, step, paths = json.loads(sys.argv[1])
def fault(name):
    if name == step:
        os._exit(9)
spec = FileSourceSpec("notes", "alice", "n", (Path(root),),
                      permission_rules=(PermissionRule("**", PermissionLevel.ADMIN),))
with blocksync.open(store) as ws:
    with FileSource(spec, ws.blocks, fault=fault) as fs:
        fs.reconcile(paths)
print("finished without reaching", step)
"""

# path -> (synced first?, disk edit, agent edit, final disk == final agent)
KILL_PLAN: dict[str, tuple[bool, str | None, str | None, str | None]] = {
    "to-agent.md": (True, DISK_EDIT, BASE, DISK_EDIT),
    "new-file.md": (False, "brand new\n", None, "brand new\n"),
    "to-disk.md": (True, BASE, AGENT_EDIT, AGENT_EDIT),
    "merged.md": (True, DISK_EDIT, AGENT_EDIT, MERGED),
    "identical.md": (True, DISK_EDIT, DISK_EDIT, DISK_EDIT),
    "file-deleted.md": (True, None, BASE, None),
    "block-deleted.md": (True, BASE, None, None),
    "sub/new-block.md": (False, None, "from the agent\r\n", "from the agent\r\n"),
}
KILL_CONFLICT = "conflict.md"


@pytest.mark.parametrize("step", FOLDER_FAULT_STEPS)
def test_kill_9_at_each_write_step_leaves_old_or_new_and_converges(rig: Rig, step: str) -> None:
    old: dict[str, tuple[str | None, str | None]] = {}
    for path, (was_synced, disk, agent, _final) in KILL_PLAN.items():
        if was_synced:
            synced(rig, path)
        old[path] = (rig.disk(path), rig.agent(path))
    synced(rig, KILL_CONFLICT)
    for path, (_s, disk, agent, _final) in KILL_PLAN.items():
        if disk != rig.disk(path):
            rig.set_disk(path, disk)
        if agent != rig.agent(path):
            rig.set_agent(path, agent)
    rig.set_disk(KILL_CONFLICT, DISK_EDIT)
    rig.set_agent(KILL_CONFLICT, OVERLAP)
    for path in KILL_PLAN:
        old[path] = (
            old[path][0] if KILL_PLAN[path][0] else None,
            old[path][1] if KILL_PLAN[path][0] else None,
        )
    paths = sorted([*KILL_PLAN, KILL_CONFLICT])

    arg = json.dumps([str(rig.ws.root), str(rig.root), step, paths])
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", CHILD, arg],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 9, done.stdout + done.stderr

    # every file and block holds its old content or its new one, never anything else
    for path, (_s, disk, agent, final) in KILL_PLAN.items():
        old_disk, old_agent = old[path]
        assert rig.disk(path) in (old_disk, disk, final), path
        assert rig.agent(path) in (old_agent, agent, final), path
    assert (rig.disk(KILL_CONFLICT), rig.agent(KILL_CONFLICT)) == (DISK_EDIT, OVERLAP)
    # the only leftovers are temp files the killed run wrote ahead of its writes (invisible to
    # a listing), and the next listing of the folder removes them: none outlives it
    left = [p.name for p in rig.root.rglob(".blocksync-*")]
    assert all(name.startswith(".blocksync-") and name.endswith(".tmp") for name in left), left
    with Folder(rig.root) as folder:
        assert not [f for f in folder.scan().files if ".blocksync-" in f]
    assert not [p for p in rig.root.rglob(".blocksync-*")], "no temp file outlives a listing"
    assert_git_fsck(rig.ws.repo_path)

    # the next run converges ...
    results = {r.path: r for r in rig.reconcile(*paths)}
    assert results.pop(KILL_CONFLICT) == NeedsResolution(KILL_CONFLICT, DISK_EDIT, OVERLAP)
    assert all(not isinstance(r, NeedsResolution) for r in results.values()), results
    for path, (_s, _d, _a, final) in KILL_PLAN.items():
        assert rig.disk(path) == rig.agent(path) == rig.base(path) == final, path
    # ... and the one after it has nothing left to do
    third = rig.reconcile(*paths)
    assert third == [
        NeedsResolution(KILL_CONFLICT, DISK_EDIT, OVERLAP) if p == KILL_CONFLICT else NoChange(p)
        for p in paths
    ]


# -- the DataBlock functions ------------------------------------------------------------------


def test_is_a_data_block_source(rig: Rig) -> None:
    fs = rig.fs
    assert isinstance(fs, DataBlock)
    assert fs.source_id() == "file:notes"
    assert fs.name() == "Alice's notes"
    assert json.loads(fs.block_schema().schema_json) == {"type": "text"}
    assert fs.permission_rules() == [PermissionRule("**", PermissionLevel.ADMIN)]


def test_create_load_save_history_rollback_diff_delete(rig: Rig) -> None:
    fs = rig.fs
    ref = fs.create("new/a.md", "first\n", AGENT)
    assert rig.disk("new/a.md") == rig.agent("new/a.md") == rig.base("new/a.md") == "first\n"
    with pytest.raises(AlreadyExists):
        fs.create("new/a.md", "again\n", AGENT)

    rig.write("b.md", "b\n")
    ref_b = fs.load("b.md", AGENT)
    assert ref_b.label == rig.label("b.md") and rig.agent("b.md") == "b\n"
    with pytest.raises(NotFound):
        fs.load("missing.md", AGENT)
    with pytest.raises(AccessDenied):
        fs.load("b.md", "mallory")

    rig.ws.blocks.update(AGENT, ref.label, "second\n")
    fs.save(ref)
    assert rig.disk("new/a.md") == "second\n"

    history = fs.history(ref)
    assert [v.version_id for v in history] == ["2", "1"]  # newest first
    assert "--- " in fs.diff(ref, "1", "2") and "+second" in fs.diff(ref, "1", "2")

    fs.rollback(ref, "1")
    assert rig.agent("new/a.md") == "first\n" and rig.disk("new/a.md") == "second\n"
    assert [v.version_id for v in fs.history(ref)][:1] == ["3"]
    fs.save(ref)  # the file follows the rollback
    assert rig.disk("new/a.md") == "first\n"

    rig.write("new/a.md", "an edit no reconcile has seen\n")
    with pytest.raises(MergeConflict, match="reconcile it before deleting"):
        fs.delete("new/a.md")
    assert rig.agent("new/a.md") == "first\n"
    fs.reconcile(["new/a.md"])
    fs.delete("new/a.md")
    assert rig.disk("new/a.md") is None and rig.agent("new/a.md") is None
    assert rig.base("new/a.md") is None
    assert fs.reconcile(["new/a.md"]) == [NoChange("new/a.md")]


def test_save_merges_a_disk_edit_instead_of_overwriting_it(rig: Rig) -> None:
    synced(rig)
    rig.set_agent("a.md", AGENT_EDIT)
    rig.set_disk("a.md", DISK_EDIT)
    rig.fs.save(rig.fs.block_of("a.md"))
    assert rig.disk("a.md") == MERGED
    rig.set_agent("a.md", OVERLAP)
    rig.set_disk("a.md", "something else\n")
    with pytest.raises(MergeConflict, match="needs resolution"):
        rig.fs.save(rig.fs.block_of("a.md"))
    assert rig.disk("a.md") == "something else\n"


def test_permissions_guard_single_operations(rig_factory: Callable[..., Rig]) -> None:
    ro, rw = rig_factory("read-only"), rig_factory("read-write")
    with pytest.raises(AccessDenied, match="read-only"):
        ro.fs.create("x.md", "x\n", AGENT)
    assert ro.disk("x.md") is None
    synced(rw)
    with pytest.raises(AccessDenied, match="admin needed"):
        rw.fs.delete("a.md")
    assert rw.disk("a.md") == rw.agent("a.md") == BASE
    synced(ro, "r.md")
    ro.set_agent("r.md", AGENT_EDIT)
    with pytest.raises(AccessDenied):
        ro.fs.save(ro.fs.block_of("r.md"))
    assert ro.disk("r.md") == BASE


def test_config_rules_narrow_never_widen(ws: blocksync.Workspace, tmp_path: Path) -> None:
    root = (tmp_path / "f").resolve()
    root.mkdir()
    spec = replace(
        make_spec(root, "read-write"),
        permission_rules=(
            PermissionRule("secret/**", PermissionLevel.READ_ONLY),
            PermissionRule("**", PermissionLevel.READ_WRITE),
        ),
    )
    narrow = [PermissionRule("**", PermissionLevel.ADMIN)]  # asks for more: ignored
    with FileSource(spec, ws.blocks, config_rules=narrow) as fs:
        assert fs.level("a.md") is PermissionLevel.READ_WRITE
        assert fs.level("secret/a.md") is PermissionLevel.READ_ONLY
    with FileSource(
        spec, ws.blocks, config_rules=[PermissionRule("**", PermissionLevel.READ_ONLY)]
    ) as fs:
        assert fs.level("a.md") is PermissionLevel.READ_ONLY


# -- configuration ----------------------------------------------------------------------------

WHERE = r"\[agents\.alice\.data_sources\.notes\]"


def test_parse_file_source(tmp_path: Path) -> None:
    spec = parse_file_source(
        AGENT,
        KEY,
        {
            "type": "file",
            "name": "Notes",
            "paths": ["../rel", str(tmp_path / "abs")],
            "recursive": False,
            "include_patterns": ["*.md"],
            "exclude_patterns": ["build/"],
            "permission_rules": [{"pattern": "**", "permission": "admin"}],
        },
        tmp_path / "store",
    )
    assert spec == FileSourceSpec(
        KEY,
        AGENT,
        "Notes",
        ((tmp_path / "rel").resolve(), (tmp_path / "abs").resolve()),
        False,
        ("*.md",),
        ("build/",),
        (PermissionRule("**", PermissionLevel.ADMIN),),
    )
    default = parse_file_source(AGENT, KEY, {"type": "file", "paths": ["../x"]}, tmp_path / "store")
    assert (
        default.name,
        default.recursive,
        default.include_patterns,
        default.exclude_patterns,
        default.permission_rules,
    ) == (KEY, True, ("**",), (), (PermissionRule("**", PermissionLevel.READ_WRITE),))


@pytest.mark.parametrize(
    ("table", "key"),
    [
        ({"type": "wasm", "paths": ["x"]}, "type"),
        ({"paths": ["x"]}, "type"),
        ({"type": "file", "paths": ["x"], "colour": "red"}, "colour"),
        ({"type": "file"}, "paths"),
        ({"type": "file", "paths": []}, "paths"),
        ({"type": "file", "paths": "x"}, "paths"),
        ({"type": "file", "paths": ["x", "x/y"]}, "paths"),
        ({"type": "file", "paths": ["x"], "recursive": "yes"}, "recursive"),
        ({"type": "file", "paths": ["x"], "name": 3}, "name"),
        ({"type": "file", "paths": ["x"], "include_patterns": "*.md"}, "include_patterns"),
        ({"type": "file", "paths": ["x"], "exclude_patterns": ["[oops"]}, "exclude_patterns"),
        (
            {"type": "file", "paths": ["x"], "permission_rules": [{"pattern": "**"}]},
            "permission_rules",
        ),
        (
            {
                "type": "file",
                "paths": ["x"],
                "permission_rules": [{"pattern": "**", "permission": "root"}],
            },
            "permission_rules",
        ),
    ],
)
def test_parse_file_source_errors_name_table_and_key(
    tmp_path: Path, table: dict[str, object], key: str
) -> None:
    with pytest.raises(ConfigError, match=WHERE) as info:
        parse_file_source(AGENT, KEY, table, tmp_path)
    assert key in str(info.value)


def test_parse_file_source_refuses_a_key_that_cannot_name_bases(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"data_sources\.a\.\.b"):
        parse_file_source(AGENT, "a..b", {"type": "file", "paths": ["x"]}, tmp_path)


def test_reconcile_all_skips_nothing_silently(rig: Rig) -> None:
    """Every candidate is either in the results or in skipped, exactly once."""
    _tree(rig.root)
    (rig.root / "bad.bin").write_bytes(b"\xff")
    outcome = rig.fs.reconcile_outcome()
    seen = [r.path for r in outcome.results] + [s.path for s in outcome.skipped]
    assert sorted(seen) == rig.fs.candidates()
    assert outcome.skipped == [Skipped("bad.bin", outcome.skipped[0].reason)]
    assert set(outcome.reasons) == {r.path for r in outcome.results}
