"""Store checks: is the repository whole, and does the version index match it?"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from dulwich.objects import Blob, Commit, ObjectID, ShaFile, Tree
from dulwich.repo import Repo

from . import names
from .blocks import BLOCKS_DIR, CONTENT_FILE, LABEL_FILE, MAIN, META_FILE, BlockMeta
from .errors import BlocksyncError
from .gitstore import damaged


@dataclass(frozen=True)
class Problem:
    area: str  # "repository", "blocks", "index" or "records"
    message: str


@dataclass
class FsckReport:
    problems: list[Problem] = field(default_factory=list)
    objects_checked: int = 0
    commits: int = 0
    blocks: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, area: str, message: str) -> None:
        self.problems.append(Problem(area, message))


def check_repository(repo_path: Path, report: FsckReport) -> None:
    """Walk every object reachable from every ref, then check the blocks main holds."""
    try:
        repo = Repo(str(repo_path))
    except Exception as exc:  # dulwich raises several unrelated types for a broken repo
        report.add("repository", f"cannot open {repo_path}: {exc}")
        return
    with repo:
        refs = repo.get_refs()
        head = refs.get(MAIN)
        # sync bases (refs/sync/*) and records (refs/blocksync/*: a run, a stream's pull) may
        # be written before any block: main is not due yet
        if head is None and any(
            name != b"HEAD" and not name.startswith((b"refs/sync/", b"refs/blocksync/"))
            for name in refs
        ):
            report.add("repository", "refs/heads/main is missing")
        seen: set[bytes] = set()
        todo = [sha for name, sha in refs.items() if name != b"HEAD"]
        while todo:
            sha = todo.pop()
            if sha in seen:
                continue
            seen.add(sha)
            try:
                obj: ShaFile = repo.object_store[sha]
                obj.check()
            except Exception as exc:  # missing object, bad zlib, malformed tree: all "damage"
                what = "is missing" if isinstance(exc, KeyError) else f"is damaged ({exc})"
                report.add("repository", damaged(repo_path, sha.decode(), what).detail)
                continue
            report.objects_checked += 1
            if isinstance(obj, Commit):
                report.commits += 1
                todo.append(obj.tree)
                todo.extend(obj.parents)
            elif isinstance(obj, Tree):
                todo.extend(entry.sha for entry in obj.items() if entry.mode != 0o160000)
        if head is not None and report.ok:
            _check_blocks(repo, head, report)


def _check_blocks(repo: Repo, head: ObjectID, report: FsckReport) -> None:
    """Every folder under blocks/ must decode to a name and hold content + valid meta.json."""
    commit = repo.object_store[head]
    assert isinstance(commit, Commit)
    root = repo.object_store[commit.tree]
    assert isinstance(root, Tree)
    if BLOCKS_DIR.encode() not in root:
        return
    blocks = repo.object_store[root[BLOCKS_DIR.encode()][1]]
    assert isinstance(blocks, Tree)
    for owner in blocks.items():
        owner_tree = repo.object_store[owner.sha]
        for label in owner_tree.items() if isinstance(owner_tree, Tree) else ():
            where = f"{BLOCKS_DIR}/{owner.path.decode()}/{label.path.decode()}"
            try:
                names.decode(owner.path)
                folder = repo.object_store[label.sha]
                assert isinstance(folder, Tree), "not a folder"
                if names.is_hashed(label.path):  # a long label: kept whole beside it
                    whole = repo.object_store[folder[LABEL_FILE][1]]
                    assert isinstance(whole, Blob), "its label is not a file"
                    names.check_hashed(label.path, whole.as_raw_string().decode("utf-8"))
                else:
                    names.decode(label.path)
                content = repo.object_store[folder[CONTENT_FILE][1]]
                meta = repo.object_store[folder[META_FILE][1]]
                assert isinstance(content, Blob) and isinstance(meta, Blob), "not files"
                content.as_raw_string().decode("utf-8")
                BlockMeta.from_json(meta.as_raw_string())
            except (BlocksyncError, KeyError, ValueError, AssertionError) as exc:
                report.add("blocks", f"{where} is malformed: {exc}")
                continue
            report.blocks += 1
