"""Store checks: is the repository whole, and does the version index match it?"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from dulwich.objects import Blob, Commit, ObjectID, ShaFile, Tree
from dulwich.repo import Repo

from . import layout
from .blocks import MAIN, block_problem
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
    except Exception as exc:  # noqa: BLE001 - dulwich raises several unrelated types for a broken repo
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
            except Exception as exc:  # noqa: BLE001 - missing object, bad zlib, malformed tree: all damage
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
    """Every entry under blocks/ must be a block (:func:`blocksync.store.blocks.block_problem`)."""
    get = repo.object_store.__getitem__
    commit = get(head)
    assert isinstance(commit, Commit)
    root = get(commit.tree)
    assert isinstance(root, Tree)
    format_ = _format(get, root, report)
    if layout.BLOCKS not in root or format_ is None:
        return
    _check_folder(get, root[layout.BLOCKS][1], (layout.BLOCKS,), format_, report)


def _format(get: Callable[[ObjectID], ShaFile], root: Tree, report: FsckReport) -> int | None:
    """The store format main's tree says it has (None: one this code cannot check)."""
    if layout.FORMAT_FILE not in root:
        return layout.OLDEST_FORMAT
    blob = get(root[layout.FORMAT_FILE][1])
    found = layout.parse_format(blob.as_raw_string()) if isinstance(blob, Blob) else None
    if found is None or not layout.OLDEST_FORMAT < found <= layout.FORMAT:
        report.add(
            "blocks",
            f"main's {layout.FORMAT_FILE.decode()} file names no format "
            f"this blocksync reads (up to {layout.FORMAT})",
        )
        return None
    return found


def _check_folder(
    get: Callable[[ObjectID], ShaFile],
    sha: ObjectID,
    path: tuple[bytes, ...],
    format_: int,
    report: FsckReport,
) -> None:
    """Check the folders of blocks below ``path`` (the tree ``sha``), down to their depth (of
    store format ``format_``), each in the fan-out folder its name belongs in."""
    tree = get(sha)
    if not isinstance(tree, Tree):
        report.add("blocks", f"{layout.shown(path)} is not a folder")
        return
    for entry in tree.items():
        where = (*path, entry.path)
        if len(where) < 1 + layout.key_depth(format_):
            _check_folder(get, entry.sha, where, format_, report)
            continue
        key = where[1:]  # the block folder's names below blocks/
        problem = None if format_ == 1 else layout.key_problem(key)
        problem = problem or block_problem(get, key[0], key[-1], entry.mode, entry.sha)
        if problem is not None:
            report.add("blocks", f"{layout.shown(where)} {problem}")
            continue
        report.blocks += 1
