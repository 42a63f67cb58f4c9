"""Real git reads what blocksync writes: history, bytes, authors and metadata agree.

Like dulwich's ``tests/compat``, these run the real git CLI against the store's repository.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import subprocess
from pathlib import Path

import pytest

import blocksync
from blocksync import BlockStore, InvalidLabel, UsageError, names

from .conftest import assert_git_fsck, git

LABELS = [
    "file:3fa2c1d0:src/a.md",
    "with space",
    "ünïcødé 🐍",
    "%41",
    "A",
    ".hidden",
    "a/b/c",
    "...",
    "-rf *?[x]",
    ":(glob)**",
    "🐍" * 21,  # 252 encoded bytes: just under the limit
]
OWNERS = ["alice", "agent:ünï 😀"]
CONTENTS = [
    "",
    "\x00",
    "one\r\ntwo\r\n",
    "no trailing newline",
    "\r",
    "x" * 10_000,
    "<<<<<<< ours\n=======\n>>>>>>> theirs\n",
    "ünï 😀 ✓\n\\ No newline at end of file",
    "\ufeffbom\x00\x1b[31m\n",
]
AUTHORS = ["agent:alice", "plugin:file-source@1.2.3", "Jane Doe", "human:ü 😀"]


def git_bytes(repo: Path, *args: str) -> bytes:
    done = subprocess.run(["git", "--git-dir", str(repo), *args], capture_output=True, check=False)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    return done.stdout


def git_log(repo: Path, path: str) -> list[tuple[str, str, str]]:
    """(commit, author name, message) of every commit touching ``path``, newest first."""
    out = git(repo, "log", "--format=%H%x1f%an%x1f%B%x1e", "--", path)
    entries = [e.strip("\n") for e in out.split("\x1e") if e.strip("\n")]
    return [tuple(e.split("\x1f")) for e in entries]  # type: ignore[misc]


def interpret_trailers(message: str) -> str:
    """The trailers real git reads in ``message`` (``git interpret-trailers --parse``)."""
    done = subprocess.run(
        ["git", "interpret-trailers", "--parse"],
        input=message,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout


def provenance_paragraph(v: blocksync.Version) -> str:
    """The trailers a version's commit message ends in, as git shows them."""
    found = (("Author", v.made_by), ("Machine", v.machine), ("Run", v.run_id))
    return "\n\n" + "\n".join(f"Blocksync-{k}: {value}" for k, value in found if value)


@pytest.fixture
def busy_ws(ws: blocksync.Workspace) -> blocksync.Workspace:
    """Every block created, edited, deleted, re-created, rolled back, by several authors."""
    blocks = ws.blocks
    for i, (owner, label) in enumerate((o, lbl) for o in OWNERS for lbl in LABELS):
        author = AUTHORS[i % len(AUTHORS)]
        content = CONTENTS[i % len(CONTENTS)]
        blocks.create(owner, label, content, description=f"block {i}", author=author)
        blocks.update(owner, label, content + "\r\nmore", author=AUTHORS[(i + 1) % len(AUTHORS)])
        blocks.update(owner, label, schema='{"type": "object"}', char_limit=20_000, author=author)
        if i % 3 == 0:
            blocks.delete(
                owner, label, author=AUTHORS[(i + 2) % len(AUTHORS)], message="gone\n\nfor now"
            )
            blocks.create(
                owner,
                label,
                CONTENTS[(i + 1) % len(CONTENTS)],
                block_type="archival",
                author=author,
            )
        if i % 2 == 0:
            blocks.rollback(owner, label, 1, author=author)
    with ws.transaction("one commit, many blocks ✓", author="agent:batch") as tx:
        for owner in OWNERS:
            for label in LABELS[:4]:
                tx.update(owner, label, f"batch {owner} {label}\r\n")
    return ws


def test_git_log_lists_exactly_the_history(busy_ws: blocksync.Workspace) -> None:
    repo = busy_ws.repo_path
    for owner in OWNERS:
        for label in LABELS:
            history = busy_ws.blocks.history(owner, label)
            log = git_log(repo, BlockStore.git_path(owner, label))
            assert [c for c, _, _ in log] == [v.commit for v in reversed(history)], (owner, label)
            assert [(a, m) for _, a, m in log] == [
                (v.author, v.message + provenance_paragraph(v)) for v in reversed(history)
            ]
    # the deleted-and-re-created block: git shows the deletion as its own commit
    history = busy_ws.blocks.history(OWNERS[0], LABELS[0])
    assert [v.deleted for v in history] == [False, False, False, True, False, False, False]
    deletion = history[3].commit
    status = git(repo, "show", "--format=", "--name-status", deletion).split("\n")
    path = BlockStore.git_path(OWNERS[0], LABELS[0])
    assert sorted(s for s in status if s) == [f"D\t{path}/content", f"D\t{path}/meta.json"]
    assert_git_fsck(repo)


def test_git_show_gives_each_version_byte_for_byte(busy_ws: blocksync.Workspace) -> None:
    repo = busy_ws.repo_path
    checked = 0
    for owner in OWNERS:
        for label in LABELS:
            path = BlockStore.git_path(owner, label)
            for version in busy_ws.blocks.history(owner, label):
                if version.deleted:
                    done = subprocess.run(
                        ["git", "--git-dir", str(repo), "show", f"{version.commit}:{path}/content"],
                        capture_output=True,
                        check=False,
                    )
                    assert done.returncode != 0  # the deletion commit has no such file
                    continue
                block = busy_ws.blocks.read(owner, label, version=version.version)
                shown = git_bytes(repo, "show", f"{version.commit}:{path}/content")
                assert shown == block.content.encode("utf-8")
                meta = json.loads(
                    git_bytes(repo, "cat-file", "-p", f"{version.commit}:{path}/meta.json")
                )
                assert meta == {
                    "description": block.description,
                    "block_type": block.block_type.value,
                    "schema": block.schema,
                    "char_limit": block.char_limit,
                }
                checked += 1
    assert checked >= 90  # every non-deleted version of 22 blocks


ODD_AUTHORS = ["a  b", "tab\there", '"quoted"', "a,b;c", ".", "é\u200b", "bell\x07"]


def test_git_sees_authors_and_messages(ws: blocksync.Workspace) -> None:
    repo = ws.repo_path
    for i, author in enumerate(AUTHORS + ODD_AUTHORS):
        ws.blocks.create(
            "alice", f"note {i}", "x\n", author=author, message=f"made by {author}\n\nwhy: ✓"
        )
        head = ws.blocks.head()
        assert head is not None
        fields = (
            git(repo, "show", "-s", "--format=%an%x1f%cn%x1f%ae%x1f%B", head)
            .rstrip("\n")
            .split("\x1f")
        )
        assert fields[0] == fields[1] == author
        assert fields[2].endswith("@blocksync.invalid")
        machine = ws.config.machine
        trailers = f"Blocksync-Author: {author}\nBlocksync-Machine: {machine}"
        # the message as given, then our trailers as a paragraph of their own: git's trailer
        # parser reads ours, never the message's own last line ("why: ✓" looks like one)
        assert fields[3] == f"made by {author}\n\nwhy: ✓\n\n{trailers}"
        parsed = interpret_trailers(fields[3])
        assert parsed == trailers + "\n"
        version = ws.blocks.history("alice", f"note {i}")[0]
        assert version.author == author and version.message == f"made by {author}\n\nwhy: ✓"
        assert (version.made_by, version.machine, version.run_id) == (author, machine, None)
    assert git(repo, "symbolic-ref", "HEAD").strip() == "refs/heads/main"
    assert_git_fsck(repo)
    assert git(repo, "rev-parse", "HEAD").strip() == ws.blocks.head()


@pytest.mark.parametrize(
    ("message", "author"),
    [
        ("nul \x00 inside", "agent:a"),  # git fsck --strict: nulInCommit; git log cuts it there
        ("lone \ud800", "agent:a"),
        ("fine", "trailing "),  # git log would show the name trimmed, unlike our history
        ("fine", " leading"),
        ("fine", "a <b@c>"),
        ("fine", "two\nlines"),
        ("fine", "\udc80"),
    ],
)
def test_what_git_cannot_store_faithfully_is_refused(
    ws: blocksync.Workspace, message: str, author: str
) -> None:
    ws.blocks.create("alice", "notes", "one\n")
    head = ws.blocks.head()
    with pytest.raises(UsageError):
        ws.blocks.update("alice", "notes", "two\n", message=message, author=author)
    # refused on entry, before any change is staged
    with pytest.raises(UsageError), ws.transaction(message, author):
        pytest.fail("the transaction should not have started")
    assert ws.blocks.head() == head
    assert [v.version for v in ws.blocks.history("alice", "notes")] == [1]


def test_git_tree_holds_exactly_the_blocks_under_encoded_names(
    busy_ws: blocksync.Workspace,
) -> None:
    repo = busy_ws.repo_path
    busy_ws.blocks.delete(OWNERS[1], LABELS[2])
    files = git(repo, "ls-tree", "-r", "--name-only", "-z", "main").split("\0")
    assert git(repo, "show", "main:format") == "2\n"
    files = [f for f in files if f and f != "format"]
    folders = sorted({f.rsplit("/", 1)[0] for f in files})
    assert all(f.endswith(("/content", "/meta.json")) for f in files)
    # blocks/<owner>/<f1>/<f2>/<label>: f1, f2 the first hex digits of the label's sha256
    assert all(f.count("/") == 4 and f.startswith("blocks/") for f in folders)
    for folder in folders:
        fan = hashlib.sha256(folder.rsplit("/", 1)[1].encode()).hexdigest()
        assert folder.split("/")[2:4] == [fan[:2], fan[2:4]], folder
    decoded = sorted(
        (names.decode(parts[1]), names.decode(parts[4]))
        for parts in (f.split("/") for f in folders)
    )
    assert decoded == sorted((s.owner, s.label) for s in busy_ws.blocks.list())
    assert (OWNERS[1], LABELS[2]) not in decoded
    # a label past one component's length is kept whole beside a hashed component; a label
    # past the longest a file's path can be is refused, not truncated
    busy_ws.blocks.create("alice", "🐍" * 22, "long\n")
    path = busy_ws.blocks.git_path("alice", "🐍" * 22)
    assert git(repo, "show", f"main:{path}/label") == "🐍" * 22
    assert git(repo, "show", f"main:{path}/content") == "long\n"
    with pytest.raises(InvalidLabel):
        busy_ws.blocks.create("alice", "🐍" * 2049)
    assert_git_fsck(repo)


def test_git_diff_agrees_with_blocksync_diff(busy_ws: blocksync.Workspace) -> None:
    """What changed between two versions, as git's own diff of the content file sees it."""
    repo = busy_ws.repo_path

    def changed(diff: str) -> tuple[list[str], list[str]]:
        lines = diff.split("\n")  # "\n" only: CR is content
        body = [line for line in lines if not line.startswith(("+++ ", "--- "))]
        return sorted(x for x in body if x[:1] == "-"), sorted(x for x in body if x[:1] == "+")

    compared = 0
    for owner, label in [(OWNERS[0], LABELS[1]), (OWNERS[1], LABELS[2]), (OWNERS[0], LABELS[4])]:
        history = [v for v in busy_ws.blocks.history(owner, label) if not v.deleted]
        path = BlockStore.git_path(owner, label)
        for old, new in itertools.pairwise(history):
            ours = busy_ws.blocks.diff(owner, label, old.version, new.version).unified
            theirs = git_bytes(
                repo,
                "diff",
                "--text",
                f"{old.commit}:{path}/content",
                f"{new.commit}:{path}/content",
            ).decode("utf-8")
            assert changed(ours) == changed(theirs), (owner, label, old.version, new.version)
            compared += bool(ours)
    assert compared >= 4
