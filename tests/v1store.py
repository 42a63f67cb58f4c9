"""A store as blocksync wrote it before store format 2: a tiny writer of format-1 trees with
real git's plumbing (hash-object, update-index, write-tree, commit-tree, update-ref), so the
old layout is spelled here, independently of the code under test::

    blocks/<owner>/<label>/{content,meta.json[,label]}     no format file, no fan-out
    conflicts/<owner>/<label>/1/{base,other,reason}
    refs/sync/<source>: bases/<h[:2]>/<h>/{base,binding.json}, blocks/<owner>/<label>
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import blocksync
from blocksync.store.bases import Binding
from blocksync.store.blocks import BlockMeta
from blocksync.store.layout import label_component

META = BlockMeta().to_json()
LONG_LABEL = "file:3fa2c1d0:" + "日本語" * 40  # a long label: its component is hashed
LONG = label_component(LONG_LABEL)
NOTES = ["one\n", "one\ntwo\n", "one\ntwo\nthree\n"]  # alice/notes, version by version


@dataclass
class V1Store:
    root: Path
    #: commit id of every commit on main, oldest first, with the message
    commits: list[tuple[str, str]] = field(default_factory=list)
    bases_commit: str = ""

    @property
    def repo(self) -> Path:
        return self.root / "repo"


def run_git(repo: Path, *args: str, data: bytes | None = None, author: str = "t") -> str:
    env = {
        **os.environ,
        "GIT_DIR": str(repo),
        "GIT_INDEX_FILE": str(repo / "v1-index"),
        "GIT_AUTHOR_NAME": author,
        "GIT_AUTHOR_EMAIL": "v1@blocksync",
        "GIT_COMMITTER_NAME": author,
        "GIT_COMMITTER_EMAIL": "v1@blocksync",
    }
    done = subprocess.run(["git", *args], input=data, capture_output=True, env=env, check=True)
    return done.stdout.decode().strip()


def commit_files(
    repo: Path, ref: str, files: dict[str, bytes | None], message: str, author: str
) -> str:
    """A commit on ``ref`` of its tree with ``files`` (path -> content; None: removed)."""
    (repo / "v1-index").unlink(missing_ok=True)
    parent = subprocess.run(
        ["git", "--git-dir", str(repo), "rev-parse", "--verify", "-q", ref],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    if parent:
        run_git(repo, "read-tree", parent)
    lines = []
    for path, data in files.items():
        if data is None:  # mode 0 removes the entry (no work tree: no --force-remove)
            lines.append(f"0 {'0' * 40}\t{path}\n")
        else:
            blob = run_git(repo, "hash-object", "-w", "--stdin", data=data)
            lines.append(f"100644 {blob}\t{path}\n")
    run_git(repo, "update-index", "--index-info", data="".join(lines).encode())
    tree = run_git(repo, "write-tree")
    (repo / "v1-index").unlink()
    commit = run_git(
        repo, "commit-tree", tree, "-m", message, *(["-p", parent] if parent else []), author=author
    )
    run_git(repo, "update-ref", ref, commit)
    return commit


def _block(owner: str, component: str, content: str) -> dict[str, bytes | None]:
    folder = f"blocks/{owner}/{component}"
    return {f"{folder}/content": content.encode(), f"{folder}/meta.json": META}


def write_v1_store(root: Path) -> V1Store:
    """A store folder (config, index.db) whose repository holds only format-1 commits: five on
    main (alice/notes in three versions, bob/plan created then deleted, a long label, a
    remote's conflict record of alice/notes) and the bases of source ``notes``."""
    blocksync.init(root).close()  # a store with no commit yet: nothing to upgrade
    store = V1Store(root)
    repo = store.repo
    steps: list[tuple[dict[str, bytes | None], str, str]] = [
        (
            _block("alice", "notes", NOTES[0]) | _block("bob", "plan", "a\n"),
            "create",
            "agent:alice",
        ),
        (_block("alice", "notes", NOTES[1]), "update alice/notes", "agent:alice"),
        (
            _block("alice", LONG, "long\n") | {f"blocks/alice/{LONG}/label": LONG_LABEL.encode()},
            "create a long label",
            "human:bob",
        ),
        (
            {"blocks/bob/plan/content": None, "blocks/bob/plan/meta.json": None},
            "delete bob/plan",
            "human:bob",
        ),
        (
            _block("alice", "notes", NOTES[2])
            | {
                "conflicts/alice/notes/1/base": NOTES[0].encode(),
                "conflicts/alice/notes/1/other": b"other side\n",
                "conflicts/alice/notes/1/reason": b"both changed, 1 overlapping region(s)",
            },
            "update alice/notes",
            "agent:alice",
        ),
    ]
    for files, message, author in steps:
        store.commits.append(
            (commit_files(repo, "refs/heads/main", files, message, author), message)
        )
    binding = Binding("notes.md", "alice", "notes").to_json()
    digest = hashlib.sha256(b"notes.md").hexdigest()
    bases = {
        f"bases/{digest[:2]}/{digest}/base": NOTES[2].encode(),
        f"bases/{digest[:2]}/{digest}/binding.json": binding,
        "blocks/alice/notes": binding,
    }
    store.bases_commit = commit_files(repo, "refs/sync/notes", bases, "sync", "reconciler:notes")
    return store
