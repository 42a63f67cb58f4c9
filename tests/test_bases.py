"""Sync bases in git: round trips, one commit per update, the binding rules, concurrent writers.

Every test runs on a real store; real git (`fsck --strict`, `cat-file`, `log`) checks what was
written, byte for byte.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import multiprocessing
import random
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dulwich.objects import Blob
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

import blocksync
from blocksync.errors import (
    AlreadyBound,
    ConcurrentUpdate,
    InvalidContent,
    InvalidLabel,
    UsageError,
)
from blocksync.store import gitstore as gitstore_module
from blocksync.store.bases import BaseChange, Binding, SyncBases, ref_name
from blocksync.store.gitstore import GitStore

from .conftest import assert_git_fsck, examples, git

NASTY_PATHS = [
    "a.md",
    "src/deep/folder/file.md",
    "../escape",
    "/etc/passwd",
    ".git/config",
    "with space and\ttab",
    "line\nbreak",
    "nul\x00inside",
    "ünïcødé/日本語/🎉.md",
    "C:\\windows\\path.txt",
    "%2F looks encoded",
    "x" * 4000,
    "trailing/",
    "\u2028separator",
]
NASTY_CONTENTS = [
    "",
    "\x00",
    "\x00\x01\x02 binary-ish",
    "crlf\r\nlines\r\n",
    "no trailing newline",
    "\n\n\n",
    "<<<<<<< ours\nx\n=======\ny\n>>>>>>> theirs\n",
    "ünïcødé 日本語 🎉\n",
    " \t leading and trailing whitespace \t ",
    "a\rlone carriage return",
]


def raw_git(repo: Path, *args: str) -> bytes:
    """Real git, output as bytes (text mode would turn CRLF into LF)."""
    done = subprocess.run(["git", "--git-dir", str(repo), *args], capture_output=True, check=False)
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout


@pytest.fixture
def repo(store_path: Path) -> Path:
    return store_path / "repo"


@pytest.fixture
def gitstore(repo: Path) -> Iterator[GitStore]:
    store = GitStore(repo)
    yield store
    store.close()


def key(path: str) -> str:
    return hashlib.sha256(path.encode("utf-8")).hexdigest()


def commits(repo: Path, source: str) -> list[str]:
    return git(repo, "rev-list", ref_name(source).decode()).split()


# -- round trips ----------------------------------------------------------------------------


def test_nasty_paths_and_contents_round_trip(repo: Path, gitstore: GitStore) -> None:
    bases = SyncBases(gitstore, "notes")
    assert bases.get("a.md") is None and bases.bindings() == [] and bases.head() is None
    pairs = {p: NASTY_CONTENTS[i % len(NASTY_CONTENTS)] for i, p in enumerate(NASTY_PATHS)}
    with bases.update("first sync", "reconciler:notes") as tx:
        for i, (path, content) in enumerate(pairs.items()):
            tx.set_base(path, "alice", f"file:{i}", content)
            assert tx.get(path) == (Binding(path, "alice", f"file:{i}"), content)
        assert bases.get("a.md") is None  # not before the commit
    assert tx.commit_id is not None and bases.head() == tx.commit_id.encode()

    def check(b: SyncBases) -> None:
        for i, (path, content) in enumerate(pairs.items()):
            binding = Binding(path, "alice", f"file:{i}")
            assert b.get(path) == (binding, content)
            assert b.binding_for_block("alice", binding.label) == binding
        assert b.bindings() == sorted(
            (Binding(p, "alice", f"file:{i}") for i, p in enumerate(pairs)),
            key=lambda x: x.path,
        )
        assert b.binding_for_block("alice", "nothing") is None
        assert b.binding_for_block("bob", "file:0:a.md") is None

    check(bases)
    reopened = GitStore(repo)  # nothing lives in memory only
    try:
        check(SyncBases(reopened, "notes"))
    finally:
        reopened.close()
    assert SyncBases(gitstore, "other").bindings() == []  # sources do not share bases
    assert_git_fsck(repo)


def test_real_git_shows_the_bases(repo: Path, gitstore: GitStore) -> None:
    bases = SyncBases(gitstore, "notes")
    path, content = "docs/ünï\r\ncode.md", "base\r\nwith \x00 and no newline"
    with bases.update("record a base", "reconciler:notes") as tx:
        tx.set_base(path, "alice", "file:1:docs", content)
    folder = f"refs/sync/notes:bases/{key(path)[:2]}/{key(path)}"
    assert raw_git(repo, "cat-file", "-p", f"{folder}/base") == content.encode()
    binding = raw_git(repo, "cat-file", "-p", f"{folder}/binding.json")
    assert json.loads(binding) == {"label": "file:1:docs", "owner": "alice", "path": path}
    assert list(json.loads(binding)) == ["label", "owner", "path"]  # sorted keys
    # the block index entry is the same blob
    fan = hashlib.sha256(b"file%3A1%3Adocs").hexdigest()  # fanned out as main's blocks
    entry = f"blocks/alice/{fan[:2]}/{fan[2:4]}/file%3A1%3Adocs"
    index = raw_git(repo, "cat-file", "-p", f"refs/sync/notes:{entry}")
    assert index == binding
    assert raw_git(repo, "cat-file", "-p", "refs/sync/notes:format") == b"2\n"
    log = git(repo, "log", "--format=%an|%s", "refs/sync/notes")
    assert log == "reconciler:notes|record a base\n"
    assert_git_fsck(repo)


# -- commits --------------------------------------------------------------------------------


def test_one_commit_per_update_with_a_linear_history(repo: Path, gitstore: GitStore) -> None:
    bases = SyncBases(gitstore, "src")
    for i in range(3):
        with bases.update(f"sync {i}", f"run-{i}") as tx:
            tx.set_base(f"p{i}", "a", f"l{i}", f"v{i}")
            tx.set_base("shared", "a", "shared", f"shared {i}")
    assert len(commits(repo, "src")) == 3
    roots = git(repo, "rev-list", "--max-parents=0", "refs/sync/src").split()
    assert roots == [commits(repo, "src")[-1]]  # only the first commit has no parent
    assert git(repo, "log", "--format=%an|%s", "refs/sync/src").splitlines() == [
        "run-2|sync 2",
        "run-1|sync 1",
        "run-0|sync 0",
    ]
    # the history of one base, through plain git
    shared = f"bases/{key('shared')[:2]}/{key('shared')}/base"
    assert len(git(repo, "log", "--format=%H", "refs/sync/src", "--", shared).split()) == 3
    assert git(repo, "show", f"refs/sync/src~2:{shared}") == "shared 0"
    assert_git_fsck(repo)


def test_no_change_writes_no_commit(repo: Path, gitstore: GitStore) -> None:
    bases = SyncBases(gitstore, "src")
    with bases.update("nothing", "me") as tx:
        tx.forget("never bound")
    assert tx.commit_id is None and bases.head() is None
    with bases.update("one", "me") as tx:
        tx.set_base("p", "a", "l", "text")
    head = bases.head()
    for act in (
        lambda t: None,
        lambda t: t.set_base("p", "a", "l", "text"),  # the same base again
        lambda t: t.forget("other"),
        lambda t: (t.set_base("q", "a", "q", "x"), t.forget("q")),  # staged, then undone
        lambda t: (t.forget("p"), t.set_base("p", "a", "l", "text")),
    ):
        with bases.update("no-op", "me") as tx:
            act(tx)
        assert tx.commit_id is None and bases.head() == head
    assert len(commits(repo, "src")) == 1


def test_an_exception_inside_the_block_writes_nothing(repo: Path, gitstore: GitStore) -> None:
    bases = SyncBases(gitstore, "src")
    with pytest.raises(RuntimeError), bases.update("never", "me") as tx:
        tx.set_base("p", "a", "l", "text")
        raise RuntimeError("boom")
    assert bases.head() is None and not (repo / "refs" / "sync" / "src").exists()
    with bases.update("one", "me") as tx:
        tx.set_base("p", "a", "l", "v1")
    head = bases.head()
    with pytest.raises(AlreadyBound), bases.update("half", "me") as tx:
        tx.set_base("q", "a", "q", "fine")
        tx.forget("p")
        tx.set_base("r", "a", "q", "refused: block a/q is bound to q in this transaction")
    assert bases.head() == head and bases.get("q") is None and bases.get("p") is not None


def test_everything_forgotten_leaves_an_empty_tree(repo: Path, gitstore: GitStore) -> None:
    bases = SyncBases(gitstore, "src")
    with bases.update("add", "me") as tx:
        tx.set_base("p", "a", "l", "text")
    with bases.update("drop", "me") as tx:
        tx.forget("p")
    assert tx.commit_id is not None
    assert bases.get("p") is None and bases.bindings() == []
    assert bases.binding_for_block("a", "l") is None
    tree = git(repo, "ls-tree", "-r", "--name-only", "refs/sync/src")
    assert tree == "format\n"  # nothing but the store format the tree is written in
    assert_git_fsck(repo)


def test_changes_lists_what_moved_since_a_commit(repo: Path, gitstore: GitStore) -> None:
    bases = SyncBases(gitstore, "src")
    assert bases.changes(None) == []
    with bases.update("one", "me") as tx:
        tx.set_base("keep", "o", "keep", "same")
        tx.set_base("edit", "o", "edit", "v1")
        tx.set_base("drop", "o", "drop", "gone soon")
    first = tx.commit_id
    assert first is not None
    with bases.update("two", "me") as tx:
        tx.set_base("edit", "o", "edit", "v2\r\n")
        tx.forget("drop")
        tx.set_base("new", "o", "new", "")

    def blob(content: str) -> str:
        done = subprocess.run(
            ["git", "hash-object", "--stdin"],
            input=content.encode(),
            capture_output=True,
            check=True,
        )
        return done.stdout.decode().strip()

    assert bases.changes(first) == [
        BaseChange("drop", None, None),
        BaseChange("edit", Binding("edit", "o", "edit"), blob("v2\r\n")),
        BaseChange("new", Binding("new", "o", "new"), blob("")),
    ]
    assert [c.path for c in bases.changes(None)] == ["edit", "keep", "new"]
    assert bases.changes(tx.commit_id) == []
    with pytest.raises(UsageError):
        bases.changes("HEAD")


# -- bindings -------------------------------------------------------------------------------


def test_rebinding_is_refused_unless_forgotten_first(gitstore: GitStore) -> None:
    bases = SyncBases(gitstore, "src")
    with bases.update("bind", "me") as tx:
        tx.set_base("p", "alice", "a", "text")
        tx.set_base("q", "alice", "b", "other")
    head = bases.head()
    with pytest.raises(AlreadyBound) as info, bases.update("rebind path", "me") as tx:
        tx.set_base("p", "alice", "c", "text")
    err = info.value
    assert (err.source, err.path, err.owner, err.label) == ("src", "p", "alice", "c")
    assert (err.bound_path, err.bound_owner, err.bound_label) == ("p", "alice", "a")
    assert "forget" in str(err) and "'p'" in str(err)
    with pytest.raises(AlreadyBound) as info, bases.update("a second path", "me") as tx:
        tx.set_base("r", "alice", "a", "text")
    assert info.value.bound_path == "p"
    assert bases.head() == head

    # forget first, in the same transaction: the path moves to another block, the block to
    # another path
    with bases.update("rebind", "me") as tx:
        tx.forget("p")
        tx.set_base("p", "alice", "c", "new")
        tx.forget("q")
        tx.set_base("r", "alice", "b", "moved")
    assert bases.get("p") == (Binding("p", "alice", "c"), "new")
    assert bases.get("q") is None
    assert bases.binding_for_block("alice", "a") is None
    assert bases.binding_for_block("alice", "b") == Binding("r", "alice", "b")
    assert bases.binding_for_block("alice", "c") == Binding("p", "alice", "c")


def test_two_paths_swap_blocks_in_one_transaction(gitstore: GitStore) -> None:
    bases = SyncBases(gitstore, "src")
    with bases.update("bind", "me") as tx:
        tx.set_base("p", "o", "a", "1")
        tx.set_base("q", "o", "b", "2")
    with bases.update("swap", "me") as tx:
        tx.forget("p")
        tx.forget("q")
        tx.set_base("q", "o", "a", "1")
        tx.set_base("p", "o", "b", "2")
    assert bases.binding_for_block("o", "a") == Binding("q", "o", "a")
    assert bases.binding_for_block("o", "b") == Binding("p", "o", "b")


def _reads(
    repo: Path, monkeypatch: pytest.MonkeyPatch, method: str, message: str, numbers: range
) -> list[bytes]:
    """The ids GitStore.``method`` is asked for by a transaction, on a fresh handle (no tree
    read before), setting the base of ``p<i>`` (bound to ``o``/``l<i>``) to "new" for each
    of ``numbers``."""
    fresh = GitStore(repo)
    read: list[bytes] = []
    real = getattr(GitStore, method)
    monkeypatch.setattr(GitStore, method, lambda self, sha: read.append(sha) or real(self, sha))
    try:
        with SyncBases(fresh, "src").update(message, "me") as tx:
            for i in numbers:
                tx.set_base(f"p{i}", "o", f"l{i}", "new")
    finally:
        fresh.close()
    return read


def test_a_new_base_of_a_bound_path_reads_nothing_of_its_block(
    repo: Path, gitstore: GitStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The tree holds each binding both ways: a path that keeps its block keeps its entry
    under ``blocks/`` too, so a run re-basing such paths reads none of the block's fan-out
    folders (a read per path, most of a reconcile's bases commit once)."""
    bases = SyncBases(gitstore, "src")
    with bases.update("bind", "me") as tx:
        for i in range(40):
            tx.set_base(f"p{i}", "o", f"l{i}", "old")
    tree = git(repo, "rev-parse", "refs/sync/src^{tree}").strip()
    block_way = set(
        git(repo, "ls-tree", "-r", "-t", "--format=%(objectname)", tree, "blocks").split()
    )
    read = _reads(repo, monkeypatch, "tree", "rebase", range(40))
    assert read and not {sha.decode() for sha in read} & block_way
    assert SyncBases(gitstore, "src").get("p7") == (Binding("p7", "o", "l7"), "new")
    assert SyncBases(gitstore, "src").binding_for_block("o", "l7") == Binding("p7", "o", "l7")
    assert_git_fsck(repo)


def test_a_transaction_reads_each_folder_once(
    repo: Path, gitstore: GitStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The checks of a transaction's paths (their bindings, their blocks' entries) load the
    fan-out folders its commit then edits: each is read from git once, even when the store's
    tree cache no longer holds it (at 100,000 paths it holds a few percent of them; a first
    sync's commits read every folder three or four times)."""
    bases = SyncBases(gitstore, "src")
    with bases.update("bind", "me") as tx:
        for i in range(40):
            tx.set_base(f"p{i}", "o", f"l{i}", "old")
    root = git(repo, "rev-parse", "refs/sync/src^{tree}").strip().encode()
    monkeypatch.setattr(gitstore_module, "TREE_CACHE", 0)
    read = _reads(repo, monkeypatch, "object", "more", range(30, 70))  # ten re-based, 30 new
    again = {sha for sha in read if read.count(sha) > 1}
    assert len(read) > 40 and again <= {root}, again  # the root: checked for its format too
    for i in (0, 35, 69):
        assert bases.get(f"p{i}") == (Binding(f"p{i}", "o", f"l{i}"), "new" if i >= 30 else "old")
    assert_git_fsck(repo)


def test_a_lost_race_replays_and_keeps_both_writes(repo: Path, gitstore: GitStore) -> None:
    bases = SyncBases(gitstore, "src")
    other = SyncBases(GitStore(repo), "src")
    with bases.update("slow writer", "slow") as tx:
        tx.set_base("slow", "o", "slow", "s")
        with other.update("fast writer", "fast") as fast:
            fast.set_base("fast", "o", "fast", "f")
    assert bases.get("slow") is not None and bases.get("fast") is not None
    assert git(repo, "log", "--format=%s", "refs/sync/src").splitlines() == [
        "slow writer",
        "fast writer",
    ]


def test_a_replay_rechecks_the_binding_rules(repo: Path, gitstore: GitStore) -> None:
    bases = SyncBases(gitstore, "src")
    other = SyncBases(GitStore(repo), "src")
    with pytest.raises(AlreadyBound), bases.update("slow writer", "slow") as tx:
        tx.set_base("p", "o", "mine", "s")
        with other.update("fast writer", "fast") as fast:
            fast.set_base("p", "o", "theirs", "f")
    assert bases.get("p") == (Binding("p", "o", "theirs"), "f")
    assert len(commits(repo, "src")) == 1


def test_a_stuck_lock_ends_in_concurrent_update(
    repo: Path, gitstore: GitStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("blocksync.store.gitstore.MAX_ATTEMPTS", 3)
    bases = SyncBases(gitstore, "src")
    lock = repo / "refs" / "sync" / "src.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    lock.touch()
    with pytest.raises(ConcurrentUpdate) as info, bases.update("blocked", "me") as tx:
        tx.set_base("p", "o", "l", "x")
    assert info.value.attempts == 3 and str(lock) in str(info.value)
    lock.unlink()
    assert bases.head() is None


# -- names and input ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "source",
    ["", "a..b", "x.lock", "end.", "../up", "a/./b", "new\nline", "nul\x00", "\udc80", "x" * 300],
)
def test_unsafe_source_names_are_refused(gitstore: GitStore, source: str) -> None:
    with pytest.raises(InvalidLabel):
        SyncBases(gitstore, source)


@pytest.mark.parametrize(
    ("source", "ref"),
    [
        ("notes", "refs/sync/notes"),
        ("my-notes_2.v1", "refs/sync/my-notes_2.v1"),
        ("Alice's notes", "refs/sync/Alice%27s%20notes"),
        (".hidden", "refs/sync/%2Ehidden"),
        ("a/b", "refs/sync/a%2Fb"),
        ("@", "refs/sync/%40"),
        ("ü", "refs/sync/%C3%BC"),
    ],
)
def test_safe_source_names_become_one_ref_component(
    repo: Path, gitstore: GitStore, source: str, ref: str
) -> None:
    bases = SyncBases(gitstore, source)
    assert bases.ref.decode() == ref
    with bases.update("m", "me") as tx:
        tx.set_base("p", "o", "l", "x")
    assert git(repo, "log", "--format=%s", ref) == "m\n"
    assert git(repo, "check-ref-format", ref) == ""


def test_bad_input_is_refused_before_anything_is_staged(gitstore: GitStore) -> None:
    bases = SyncBases(gitstore, "src")
    with pytest.raises(UsageError):
        bases.update("m", "bad <author>").__enter__()
    with pytest.raises(UsageError):
        bases.update("nul \x00 message", "me").__enter__()
    with bases.update("m", "me") as tx:
        with pytest.raises(UsageError):
            tx.set_base("", "o", "l", "x")
        with pytest.raises(UsageError):
            tx.set_base("lone \udc80 surrogate", "o", "l", "x")
        with pytest.raises(InvalidContent):
            tx.set_base("p", "o", "l", "lone \udc80 surrogate")
        with pytest.raises(InvalidLabel):
            tx.set_base("p", "o", "../l", "x")
        with pytest.raises(InvalidLabel):
            tx.set_base("p", "", "l", "x")
        with pytest.raises(UsageError):
            tx.forget("")
    assert tx.commit_id is None and bases.head() is None
    with pytest.raises(UsageError):
        bases.get("")
    with pytest.raises(InvalidLabel):
        bases.binding_for_block("o", "")


# -- concurrent processes -------------------------------------------------------------------


def _writer(repo: str, source: str, worker: int, count: int, go: Any) -> None:
    store = GitStore(Path(repo))
    bases = SyncBases(store, source)
    go.wait()
    for i in range(count):
        with bases.update(f"worker {worker} write {i}", f"worker-{worker}") as tx:
            tx.set_base(f"w{worker}/p{i}", f"agent{worker}", f"l{i}", f"content {worker} {i}\n")
            # every writer also rewrites its own "latest" path each time
            tx.set_base(f"latest-{worker}", f"agent{worker}", "latest", f"{i}")
        # a breath between updates: an update now takes about a millisecond, and on a busy
        # machine one process could otherwise finish all of its before another starts
        time.sleep(random.uniform(0, 0.004))
    store.close()


def test_processes_updating_one_source_lose_nothing(repo: Path, gitstore: GitStore) -> None:
    ctx = multiprocessing.get_context("spawn")
    workers, count = 3, 25
    go = ctx.Barrier(workers)
    procs = [
        ctx.Process(target=_writer, args=(str(repo), "shared", w, count, go))
        for w in range(workers)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    bases = SyncBases(gitstore, "shared")
    for w in range(workers):
        for i in range(count):
            assert bases.get(f"w{w}/p{i}") == (
                Binding(f"w{w}/p{i}", f"agent{w}", f"l{i}"),
                f"content {w} {i}\n",
            )
        assert bases.get(f"latest-{w}") == (
            Binding(f"latest-{w}", f"agent{w}", "latest"),
            f"{count - 1}",
        )
    assert len(bases.bindings()) == workers * (count + 1)
    assert len(commits(repo, "shared")) == workers * count  # one commit per update, none lost
    authors = git(repo, "log", "--format=%an", "refs/sync/shared").split()
    switches = sum(a != b for a, b in itertools.pairwise(authors))
    assert switches > workers - 1, "the writers never interleaved: the test proved nothing"
    git(repo, "fsck", "--strict", "--no-progress")


# -- a state machine against a dict ---------------------------------------------------------

PATHS = st.sampled_from(["a", "b/c", "ü d", "\x00", "a/../b"])
BLOCKS = st.sampled_from([("o", "x"), ("o", "y"), ("p", "x")])
CONTENTS = st.sampled_from(["", "\x00", "l1\r\nl2", "no newline", "text\n"])
OPS = st.lists(
    st.one_of(
        st.tuples(st.just("set"), PATHS, BLOCKS, CONTENTS),
        st.tuples(st.just("forget"), PATHS, st.none(), st.none()),
    ),
    max_size=4,
)


class BasesMachine(RuleBasedStateMachine):
    """SyncBases must behave like a dict path -> (owner, label, content), one-to-one on blocks,
    whose transactions are all or nothing."""

    def __init__(self) -> None:
        super().__init__()
        self.tmp = tempfile.TemporaryDirectory(prefix="blocksync-bases-")
        self.repo = Path(self.tmp.name) / "store" / "repo"
        blocksync.init(self.repo.parent).close()
        self.git = GitStore(self.repo)
        self.source = "machine"
        self.bases = SyncBases(self.git, self.source)
        self.model: dict[str, tuple[str, str, str]] = {}
        self.commits = 0

    def _apply(self, model: dict[str, tuple[str, str, str]], op: tuple[Any, ...]) -> bool:
        """Apply ``op`` to ``model``; False where SyncBases must refuse it."""
        kind, path, block, content = op
        if kind == "forget":
            model.pop(path, None)
            return True
        bound = model.get(path)
        if bound is not None and bound[:2] != block:
            return False
        if any(p != path and v[:2] == block for p, v in model.items()):
            return False
        model[path] = (*block, content)
        return True

    @rule(ops=OPS)
    def transaction(self, ops: list[tuple[Any, ...]]) -> None:
        after = dict(self.model)
        ok = all(self._apply(after, op) for op in ops)
        head = self.bases.head()
        try:
            with self.bases.update("tx", "machine") as tx:
                for kind, path, block, content in ops:
                    if kind == "set":
                        tx.set_base(path, block[0], block[1], content)
                    else:
                        tx.forget(path)
        except AlreadyBound:
            assert not ok
            assert self.bases.head() == head
            return
        assert ok
        changed = after != self.model
        assert (tx.commit_id is not None) == changed
        want = [
            BaseChange(p, None, None)
            if p not in after
            else BaseChange(
                p, Binding(p, *after[p][:2]), Blob.from_string(after[p][2].encode()).id.decode()
            )
            for p in sorted(self.model.keys() | after.keys())
            if self.model.get(p) != after.get(p)
        ]
        assert self.bases.changes(None if head is None else head.decode()) == want
        self.commits += changed
        self.model = after

    @precondition(lambda self: bool(self.model))
    @rule(data=st.data(), block=BLOCKS, content=CONTENTS)
    def rebind(self, data: st.DataObject, block: tuple[str, str], content: str) -> None:
        """Forget, then bind again in the same transaction: the one way to move a binding."""
        path = data.draw(st.sampled_from(sorted(self.model)))
        others = [("forget", p, None, None) for p, v in self.model.items() if v[:2] == block]
        self.transaction([("forget", path, None, None), *others, ("set", path, block, content)])

    @precondition(lambda self: self.commits > 0)
    @rule()
    def reopen(self) -> None:
        self.git.close()
        self.git = GitStore(self.repo)
        self.bases = SyncBases(self.git, self.source)

    @invariant()
    def matches_the_model(self) -> None:
        for path in ["a", "b/c", "ü d", "\x00", "a/../b"]:
            want = self.model.get(path)
            got = self.bases.get(path)
            assert got == (None if want is None else (Binding(path, *want[:2]), want[2]))
        assert self.bases.bindings() == [
            Binding(p, o, l) for p, (o, l, _) in sorted(self.model.items())
        ]
        for owner, label in [("o", "x"), ("o", "y"), ("p", "x")]:
            paths = [p for p, v in self.model.items() if v[:2] == (owner, label)]
            found = self.bases.binding_for_block(owner, label)
            assert found == (Binding(paths[0], owner, label) if paths else None)

    def teardown(self) -> None:
        try:
            head = self.bases.head()
            count = 0 if head is None else len(commits(self.repo, self.source))
            assert count == self.commits
            assert_git_fsck(self.repo)
        finally:
            self.git.close()
            self.tmp.cleanup()


TestBasesMachine = BasesMachine.TestCase
TestBasesMachine.settings = settings(
    max_examples=examples(60),
    stateful_step_count=12,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
