"""BlockStore: memory blocks versioned in a bare git repository (dulwich).

Layout of every commit's tree::

    blocks/<owner>/<label>/content     the block's text
    blocks/<owner>/<label>/meta.json   description, block_type, schema, char_limit

``<owner>`` and ``<label>`` are encoded by :mod:`blocksync.names`, so ``git log --
blocks/<owner>/<label>`` lists exactly the block's versions. Every change is a commit on
``refs/heads/main``; the ref only moves by compare-and-swap, and a writer that lost the race
replays its operations on the new head (re-checking every precondition) or fails cleanly.
"""

from __future__ import annotations

import json
import random
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path
from typing import Literal

from dulwich.errors import NotGitRepository
from dulwich.objects import Blob, Commit, ShaFile, Tree
from dulwich.repo import Repo

from . import names
from .errors import (
    BlockExists,
    BlockNotFound,
    ConcurrentUpdate,
    InvalidContent,
    RepositoryCorrupt,
    StaleVersion,
    StoreNotFound,
    UsageError,
    VersionNotFound,
)
from .text import CharOp, char_diff, unified_diff
from .versions import BlockChange, CommitInfo, VersionIndex, VersionRow

MAIN = b"refs/heads/main"
BLOCKS_DIR = "blocks"
CONTENT_FILE = b"content"
META_FILE = b"meta.json"
TREE_MODE = 0o040000
FILE_MODE = 0o100644
#: Attempts at the compare-and-swap of main before :class:`ConcurrentUpdate`.
MAX_ATTEMPTS = 50
#: Above this many new objects a commit is written as one pack instead of loose objects.
PACK_THRESHOLD = 64


class BlockType(str, Enum):
    CORE = "core"
    WORKING = "working"
    ARCHIVAL = "archival"
    LOG = "log"


DEFAULT_SCHEMA = '{"type": "text"}'


@dataclass(frozen=True)
class BlockMeta:
    description: str = ""
    block_type: BlockType = BlockType.WORKING
    schema: str = DEFAULT_SCHEMA
    char_limit: int | None = None  # None: no limit

    def to_json(self) -> bytes:
        doc = {
            "block_type": self.block_type.value,
            "char_limit": self.char_limit,
            "description": self.description,
            "schema": self.schema,
        }
        return (json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()

    @classmethod
    def from_json(cls, data: bytes) -> BlockMeta:
        doc = json.loads(data)
        return cls(doc["description"], BlockType(doc["block_type"]), doc["schema"], doc["char_limit"])


@dataclass(frozen=True)
class Block:
    """A block as of one version."""

    owner: str
    label: str
    content: str
    meta: BlockMeta
    version: int
    commit: str

    @property
    def description(self) -> str:
        return self.meta.description

    @property
    def block_type(self) -> BlockType:
        return self.meta.block_type

    @property
    def schema(self) -> str:
        return self.meta.schema

    @property
    def char_limit(self) -> int | None:
        return self.meta.char_limit


@dataclass(frozen=True)
class BlockSummary:
    """A block as listed: its metadata and newest version, without the content."""

    owner: str
    label: str
    meta: BlockMeta
    version: int


@dataclass(frozen=True)
class Version:
    """One entry of a block's history."""

    owner: str
    label: str
    version: int
    commit: str
    author: str
    message: str
    timestamp: str
    deleted: bool


@dataclass(frozen=True)
class Diff:
    owner: str
    label: str
    from_version: int | None  # None: before the first version (empty text)
    to_version: int
    old: str
    new: str

    @property
    def unified(self) -> str:
        old_name = f"{self.owner}/{self.label}@{self.from_version or 0}"
        return unified_diff(self.old, self.new, old_name, f"{self.owner}/{self.label}@{self.to_version}")

    @property
    def chars(self) -> list[tuple[CharOp, str]]:
        return char_diff(self.old, self.new)


@dataclass(frozen=True)
class CommitResult:
    """What one transaction wrote: its commit (None if it changed nothing) and new versions."""

    commit: str | None
    versions: dict[tuple[str, str], int] = field(default_factory=dict)


VersionSpec = int | str


def check_content(owner: str, label: str, content: str, meta: BlockMeta) -> None:
    try:
        content.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidContent(
            f"content for {owner}/{label} is not valid text: character {exc.start} "
            f"({content[exc.start]!r}) cannot be encoded as UTF-8"
        ) from exc
    if meta.char_limit is not None and len(content) > meta.char_limit:
        raise InvalidContent(
            f"content for {owner}/{label} is {len(content)} characters, over its char_limit "
            f"of {meta.char_limit}"
        )


def _check_meta(meta: BlockMeta) -> None:
    try:
        json.loads(meta.schema)
    except ValueError as exc:
        raise UsageError(f"schema is not valid JSON: {exc}") from exc
    if meta.char_limit is not None and meta.char_limit < 0:
        raise UsageError(f"char_limit must be positive, not {meta.char_limit}")
    meta.description.encode("utf-8")


class _Tree:
    """A lazily loaded, editable view of one git tree; only edited subtrees are rewritten."""

    def __init__(self, store: BlockStore, sha: bytes | None) -> None:
        self._store = store
        self.sha = sha
        self._entries: dict[bytes, tuple[int, bytes]] | None = None
        self._children: dict[bytes, _Tree] = {}
        self._dirty = False

    def entries(self) -> dict[bytes, tuple[int, bytes]]:
        if self._entries is None:
            self._entries = {}
            if self.sha is not None:
                self._entries = {e.path: (e.mode, e.sha) for e in self._store._tree(self.sha).items()}
        return self._entries

    def child(self, name: bytes) -> _Tree:
        """The subtree ``name`` (empty if absent), to read or edit; written back by write()."""
        if name not in self._children:
            entry = self.entries().get(name)
            self._children[name] = _Tree(self._store, entry[1] if entry else None)
        return self._children[name]

    def set(self, name: bytes, mode: int, sha: bytes) -> None:
        self._children.pop(name, None)
        self.entries()[name] = (mode, sha)
        self._dirty = True

    def remove(self, name: bytes) -> None:
        self._children.pop(name, None)
        if self.entries().pop(name, None) is not None:
            self._dirty = True

    def write(self, out: list[ShaFile]) -> bytes | None:
        """Append rewritten trees to ``out``; returns this tree's sha, None when it is empty."""
        entries = self.entries() if self._children or self._dirty else {}
        for name, sub in self._children.items():
            new = sub.write(out)
            old = entries.get(name)
            if new is None and old is not None:
                del entries[name]
                self._dirty = True
            elif new is not None and (old is None or old[1] != new):
                entries[name] = (TREE_MODE, new)
                self._dirty = True
        self._children.clear()
        if self._dirty:
            self._dirty = False
            if not entries:
                self.sha = None
            else:
                tree = Tree()
                for name, (mode, sha) in entries.items():
                    tree.add(name, mode, sha)
                out.append(tree)
                self.sha = tree.id
        return self.sha


@dataclass
class _Staged:
    content: str
    meta: BlockMeta


class Transaction:
    """Changes staged against one head and committed together, all or nothing.

    Operations check their preconditions at once (so errors surface where they are made) and
    again when replayed on a newer head after a lost compare-and-swap.
    """

    def __init__(self, store: BlockStore, message: str, author: str) -> None:
        self._store = store
        self.message = message
        self.author = author
        self._ops: list[Callable[[], None]] = []
        self._begin(store._head())
        self.result: CommitResult | None = None

    def _begin(self, head: bytes | None) -> None:
        self._head = head
        self._store._catch_up(head)
        self._root = _Tree(self._store, self._store._commit_tree(head))
        self._staged: dict[tuple[str, str], _Staged | None] = {}

    # -- reading through the staged changes -----------------------------------------------

    def _current(self, owner: str, label: str) -> _Staged | None:
        key = (owner, label)
        if key in self._staged:
            return self._staged[key]
        dir_sha = self._store._block_dir(self._root, owner, label)
        if dir_sha is None:
            return None
        content, meta = self._store._read_dir(dir_sha)
        return _Staged(content, meta)

    def read(self, owner: str, label: str) -> tuple[str, BlockMeta]:
        """The block as this transaction sees it (its own changes included)."""
        current = self._current(owner, label)
        if current is None:
            raise BlockNotFound(owner, label)
        return current.content, current.meta

    def exists(self, owner: str, label: str) -> bool:
        return self._current(owner, label) is not None

    # -- changes --------------------------------------------------------------------------

    def _do(self, op: Callable[[], None]) -> None:
        op()
        self._ops.append(op)

    def _check_expected(self, owner: str, label: str, expected: int | None) -> None:
        if expected is None:
            return
        actual = self._store._index.latest(owner, label)
        if actual is None or actual.deleted or actual.version != expected:
            raise StaleVersion(
                owner, label, expected, None if actual is None or actual.deleted else actual.version
            )

    def _stage(self, owner: str, label: str, content: str, meta: BlockMeta) -> None:
        check_content(owner, label, content, meta)
        self._staged[(owner, label)] = _Staged(content, meta)

    def create(
        self,
        owner: str,
        label: str,
        content: str = "",
        *,
        description: str = "",
        block_type: BlockType | str = BlockType.WORKING,
        schema: str = DEFAULT_SCHEMA,
        char_limit: int | None = None,
    ) -> None:
        names.validate(owner, "owner")
        names.validate(label, "label")
        meta = BlockMeta(description, BlockType(block_type), schema, char_limit)
        _check_meta(meta)

        def op() -> None:
            if self.exists(owner, label):
                raise BlockExists(owner, label)
            self._stage(owner, label, content, meta)

        self._do(op)

    def update(
        self,
        owner: str,
        label: str,
        content: str | None = None,
        *,
        description: str | None = None,
        block_type: BlockType | str | None = None,
        schema: str | None = None,
        char_limit: int | None = None,
        expected_version: int | None = None,
    ) -> None:
        """Change content and/or metadata; arguments left as None keep their current value."""
        names.validate(owner, "owner")
        names.validate(label, "label")

        def op() -> None:
            self._check_expected(owner, label, expected_version)
            old_content, old = self.read(owner, label)
            meta = BlockMeta(
                old.description if description is None else description,
                old.block_type if block_type is None else BlockType(block_type),
                old.schema if schema is None else schema,
                old.char_limit if char_limit is None else char_limit,
            )
            _check_meta(meta)
            self._stage(owner, label, old_content if content is None else content, meta)

        self._do(op)

    def delete(self, owner: str, label: str, *, expected_version: int | None = None) -> None:
        names.validate(owner, "owner")
        names.validate(label, "label")

        def op() -> None:
            self._check_expected(owner, label, expected_version)
            self.read(owner, label)  # raises BlockNotFound
            self._staged[(owner, label)] = None

        self._do(op)

    def rollback(self, owner: str, label: str, version: VersionSpec) -> None:
        """Make the content and metadata of ``version`` the block's next version."""
        names.validate(owner, "owner")
        names.validate(label, "label")
        old = self._store.version(owner, label, version)
        if old.deleted:
            raise UsageError(
                f"version {old.version} of {owner}/{label} is its deletion; "
                "roll back to a version that holds content"
            )
        target = self._store.read(owner, label, old.version)

        def op() -> None:
            self._stage(owner, label, target.content, target.meta)

        self._do(op)

    # -- committing -----------------------------------------------------------------------

    def commit(self) -> CommitResult:
        store = self._store
        for attempt in range(1, MAX_ATTEMPTS + 1):
            if attempt > 1:
                time.sleep(random.uniform(0, min(0.05, 0.001 * 2**attempt)))
                self._begin(store._head())
                for op in self._ops:
                    op()
            result = store._write_commit(self._head, self._root, self._staged, self.message, self.author)
            if result is not None:
                self.result = result
                return result
        raise ConcurrentUpdate(MAIN.decode(), MAX_ATTEMPTS)


class BlockStore:
    """Blocks in a bare git repository, with a :class:`VersionIndex` beside it."""

    def __init__(self, repo_path: Path, index: VersionIndex, author: str) -> None:
        try:
            self._repo = Repo(str(repo_path))
        except NotGitRepository as exc:
            raise StoreNotFound(str(repo_path.parent)) from exc
        self.repo_path = repo_path
        self._index = index
        self.author = author
        self._trees: OrderedDict[bytes, Tree] = OrderedDict()
        self._pending: dict[str, CommitInfo] = {}

    @staticmethod
    def init_repo(repo_path: Path) -> None:
        repo = Repo.init_bare(str(repo_path), mkdir=True)
        repo.refs.set_symbolic_ref(b"HEAD", MAIN)
        repo.close()

    def close(self) -> None:
        self._repo.close()

    @staticmethod
    def git_path(owner: str, label: str) -> str:
        """The block's folder in the repository, as ``git log -- <path>`` wants it."""
        return f"{BLOCKS_DIR}/{names.encode(owner)}/{names.encode(label)}"

    # -- git plumbing ---------------------------------------------------------------------

    def _head(self) -> bytes | None:
        try:
            return self._repo.refs[MAIN]
        except KeyError:
            return None

    def _object(self, sha: bytes) -> ShaFile:
        try:
            return self._repo.object_store[sha]
        except KeyError as exc:
            raise RepositoryCorrupt(str(self.repo_path), f"object {sha.decode()} is missing") from exc

    def _tree(self, sha: bytes) -> Tree:
        tree = self._trees.get(sha)
        if tree is None:
            obj = self._object(sha)
            if not isinstance(obj, Tree):
                raise RepositoryCorrupt(str(self.repo_path), f"{sha.decode()} is not a tree")
            tree = self._trees[sha] = obj
            if len(self._trees) > 4096:
                self._trees.popitem(last=False)
        return tree

    def _blob(self, sha: bytes) -> bytes:
        obj = self._object(sha)
        if not isinstance(obj, Blob):
            raise RepositoryCorrupt(str(self.repo_path), f"{sha.decode()} is not a blob")
        return obj.as_raw_string()

    def _commit(self, sha: bytes) -> Commit:
        obj = self._object(sha)
        if not isinstance(obj, Commit):
            raise RepositoryCorrupt(str(self.repo_path), f"{sha.decode()} is not a commit")
        return obj

    def _commit_tree(self, head: bytes | None) -> bytes | None:
        return None if head is None else self._commit(head).tree

    def _lookup(self, tree_sha: bytes | None, *path: bytes) -> bytes | None:
        sha = tree_sha
        for name in path:
            if sha is None:
                return None
            entry = dict((e.path, e.sha) for e in self._tree(sha).items()).get(name)
            sha = entry
        return sha

    def _block_dir(self, root: _Tree, owner: str, label: str) -> bytes | None:
        if root.sha is None:
            return None
        return self._lookup(
            root.sha, BLOCKS_DIR.encode(), names.encode(owner).encode(), names.encode(label).encode()
        )

    def _read_dir(self, dir_sha: bytes) -> tuple[str, BlockMeta]:
        entries = {e.path: e.sha for e in self._tree(dir_sha).items()}
        try:
            content = self._blob(entries[CONTENT_FILE]).decode("utf-8")
            meta = BlockMeta.from_json(self._blob(entries[META_FILE]))
        except (KeyError, ValueError) as exc:
            raise RepositoryCorrupt(
                str(self.repo_path), f"block folder {dir_sha.decode()} is malformed ({exc})"
            ) from exc
        return content, meta

    def _write_commit(
        self,
        head: bytes | None,
        root: _Tree,
        staged: dict[tuple[str, str], _Staged | None],
        message: str,
        author: str,
    ) -> CommitResult | None:
        """Write one commit of ``staged`` on ``head``; None if main moved meanwhile."""
        objects: list[ShaFile] = []
        blocks = root.child(BLOCKS_DIR.encode())
        changes: list[BlockChange] = []
        for (owner, label), state in staged.items():
            owner_tree = blocks.child(names.encode(owner).encode())
            name = names.encode(label).encode()
            before = owner_tree.entries().get(name)
            if state is None:
                if before is not None:
                    owner_tree.remove(name)
                    changes.append(BlockChange(owner, label, None, None))
                continue
            content = Blob.from_string(state.content.encode("utf-8"))
            meta = Blob.from_string(state.meta.to_json())
            folder = Tree()
            folder.add(CONTENT_FILE, FILE_MODE, content.id)
            folder.add(META_FILE, FILE_MODE, meta.id)
            if before is not None and before[1] == folder.id:
                continue  # nothing changed: not a version
            objects += [content, meta, folder]
            owner_tree.set(name, TREE_MODE, folder.id)
            changes.append(BlockChange(owner, label, content.id.decode(), meta.id.decode()))
        if not changes:
            return CommitResult(None)
        new_root = root.write(objects)
        if new_root is None:  # every block deleted: git still wants a tree
            empty = Tree()
            objects.append(empty)
            new_root = empty.id
        commit = Commit()
        commit.tree = new_root
        commit.parents = [] if head is None else [head]
        commit.author = commit.committer = _identity(author)
        commit.author_time = commit.commit_time = int(time.time())
        commit.author_timezone = commit.commit_timezone = 0
        commit.encoding = b"UTF-8"
        commit.message = message.rstrip("\n").encode("utf-8") + b"\n"
        objects.append(commit)
        self._add_objects(objects)
        info = _commit_info(commit, tuple(changes))
        reflog = b"blocksync: " + commit.message.split(b"\n")[0]
        if head is None:
            moved = self._repo.refs.add_if_new(MAIN, commit.id, message=reflog)
        else:
            moved = self._repo.refs.set_if_equals(MAIN, head, commit.id, message=reflog)
        if not moved:
            return None
        self._pending[info.sha] = info
        self._catch_up(commit.id)
        versions = {}
        for change in changes:
            row = self._index.latest(change.owner, change.label)
            assert row is not None and row.commit == info.sha
            versions[(change.owner, change.label)] = row.version
        return CommitResult(info.sha, versions)

    def _add_objects(self, objects: list[ShaFile]) -> None:
        store = self._repo.object_store
        if len(objects) > PACK_THRESHOLD:
            store.add_objects([(obj, None) for obj in objects])
        else:
            for obj in objects:
                store.add_object(obj)

    # -- the version index ----------------------------------------------------------------

    def _catch_up(self, head: bytes | None) -> None:
        self._index.catch_up(None if head is None else head.decode(), self._read_commit_info)
        self._pending.clear()

    def _read_commit_info(self, sha: str) -> CommitInfo:
        """What changed in ``sha`` against its first parent, at block-folder granularity."""
        if sha in self._pending:
            return self._pending[sha]
        commit = self._commit(sha.encode())
        parent = commit.parents[0] if commit.parents else None
        return _commit_info(commit, tuple(self._changed_blocks(self._commit_tree(parent), commit.tree)))

    def _changed_blocks(self, old_root: bytes | None, new_root: bytes) -> Iterator[BlockChange]:
        key = BLOCKS_DIR.encode()
        old_blocks, new_blocks = self._lookup(old_root, key), self._lookup(new_root, key)
        for owner, old_owner, new_owner in self._diff_entries(old_blocks, new_blocks):
            for label, _, new_dir in self._diff_entries(old_owner, new_owner):
                entries = {} if new_dir is None else {e.path: e.sha for e in self._tree(new_dir).items()}
                content, meta = entries.get(CONTENT_FILE), entries.get(META_FILE)
                yield BlockChange(
                    names.decode(owner),
                    names.decode(label),
                    None if content is None else content.decode(),
                    None if meta is None else meta.decode(),
                )

    def _diff_entries(
        self, old: bytes | None, new: bytes | None
    ) -> Iterator[tuple[bytes, bytes | None, bytes | None]]:
        if old == new:
            return
        before = {} if old is None else {e.path: e.sha for e in self._tree(old).items()}
        after = {} if new is None else {e.path: e.sha for e in self._tree(new).items()}
        for name in sorted(before.keys() | after.keys()):
            if before.get(name) != after.get(name):
                yield name, before.get(name), after.get(name)

    # -- public API -----------------------------------------------------------------------

    @contextmanager
    def transaction(self, message: str, author: str | None = None) -> Iterator[Transaction]:
        """Group changes into one commit, written when the block exits without an error."""
        tx = Transaction(self, message, author or self.author)
        yield tx
        tx.commit()

    def _single(self, message: str, author: str | None, act: Callable[[Transaction], None]) -> CommitResult:
        with self.transaction(message, author) as tx:
            act(tx)
        assert tx.result is not None
        return tx.result

    def create(
        self,
        owner: str,
        label: str,
        content: str = "",
        *,
        description: str = "",
        block_type: BlockType | str = BlockType.WORKING,
        schema: str = DEFAULT_SCHEMA,
        char_limit: int | None = None,
        author: str | None = None,
        message: str | None = None,
    ) -> Block:
        self._single(
            message or f"create {owner}/{label}",
            author,
            lambda tx: tx.create(
                owner, label, content, description=description, block_type=block_type,
                schema=schema, char_limit=char_limit,
            ),
        )
        return self.read(owner, label)

    def update(
        self,
        owner: str,
        label: str,
        content: str | None = None,
        *,
        description: str | None = None,
        block_type: BlockType | str | None = None,
        schema: str | None = None,
        char_limit: int | None = None,
        expected_version: int | None = None,
        author: str | None = None,
        message: str | None = None,
    ) -> Block:
        """Write a new version; unchanged content and metadata write nothing."""
        result = self._single(
            message or f"update {owner}/{label}",
            author,
            lambda tx: tx.update(
                owner, label, content, description=description, block_type=block_type,
                schema=schema, char_limit=char_limit, expected_version=expected_version,
            ),
        )
        return self._read_result(owner, label, result)

    def delete(
        self,
        owner: str,
        label: str,
        *,
        expected_version: int | None = None,
        author: str | None = None,
        message: str | None = None,
    ) -> Version:
        result = self._single(
            message or f"delete {owner}/{label}",
            author,
            lambda tx: tx.delete(owner, label, expected_version=expected_version),
        )
        return self.version(owner, label, result.versions[(owner, label)])

    def rollback(
        self,
        owner: str,
        label: str,
        version: VersionSpec,
        *,
        author: str | None = None,
        message: str | None = None,
    ) -> Block:
        old = self.version(owner, label, version)
        result = self._single(
            message or f"roll back {owner}/{label} to version {old.version}",
            author,
            lambda tx: tx.rollback(owner, label, old.version),
        )
        return self._read_result(owner, label, result)

    def _read_result(self, owner: str, label: str, result: CommitResult) -> Block:
        version = result.versions.get((owner, label))
        return self.read(owner, label, version) if version is not None else self.read(owner, label)

    def read(self, owner: str, label: str, version: VersionSpec | None = None) -> Block:
        """The block now, or as of ``version`` (a number, or a commit id or prefix)."""
        if version is None:
            self._catch_up(self._head())
            row = self._index.latest(owner, label)
            if row is None or row.deleted:
                raise BlockNotFound(owner, label)
        else:
            row = self._row(owner, label, version)
            if row.deleted:
                raise VersionNotFound(owner, label, f"{row.version} (the block was deleted then)")
        assert row.content_blob is not None and row.meta_blob is not None
        return Block(
            owner,
            label,
            self._blob(row.content_blob.encode()).decode("utf-8"),
            BlockMeta.from_json(self._blob(row.meta_blob.encode())),
            row.version,
            row.commit,
        )

    def exists(self, owner: str, label: str) -> bool:
        self._catch_up(self._head())
        row = self._index.latest(owner, label)
        return row is not None and not row.deleted

    def list(self, owner: str | None = None) -> list[BlockSummary]:
        """Every block that exists now (of one owner, or of all), sorted by owner and label."""
        head = self._head()
        self._catch_up(head)
        latest = self._index.latest_versions(owner)
        out = []
        for (o, label), version in sorted(latest.items()):
            row = self._index.get(o, label, version)
            assert row is not None and row.meta_blob is not None
            out.append(BlockSummary(o, label, BlockMeta.from_json(self._blob(row.meta_blob.encode())), version))
        return out

    def history(self, owner: str, label: str) -> list[Version]:
        """Every version of the block, oldest first, deletions included."""
        self._catch_up(self._head())
        rows = self._index.history(owner, label)
        if not rows:
            raise BlockNotFound(owner, label)
        return [_version(r) for r in rows]

    def version(self, owner: str, label: str, spec: VersionSpec) -> Version:
        return _version(self._row(owner, label, spec))

    def _row(self, owner: str, label: str, spec: VersionSpec) -> VersionRow:
        self._catch_up(self._head())
        text = str(spec).strip()
        number = text[1:] if text[:1] in ("v", "V") else text
        if number.isdigit() and len(number) < 7:
            row = self._index.get(owner, label, int(number))
            if row is None:
                if self._index.latest(owner, label) is None:
                    raise BlockNotFound(owner, label)
                raise VersionNotFound(owner, label, text)
            return row
        if len(text) < 4 or any(c not in "0123456789abcdef" for c in text.lower()):
            raise UsageError(
                f"version {text!r} is neither a version number nor a commit id (4+ hex digits)"
            )
        rows = self._index.by_commit_prefix(owner, label, text.lower())
        if len(rows) != 1:
            if self._index.latest(owner, label) is None:
                raise BlockNotFound(owner, label)
            raise VersionNotFound(owner, label, text if not rows else f"{text} (ambiguous)")
        return rows[0]

    def diff(
        self,
        owner: str,
        label: str,
        from_version: VersionSpec | None = None,
        to_version: VersionSpec | None = None,
    ) -> Diff:
        """From ``from_version`` (default: the one before ``to``) to ``to_version`` (default: newest)."""
        history = self.history(owner, label)
        to = history[-1] if to_version is None else self.version(owner, label, to_version)
        if from_version is None:
            earlier = [v for v in history if v.version < to.version]
            old = earlier[-1] if earlier else None
        else:
            old = self.version(owner, label, from_version)
        return Diff(
            owner,
            label,
            None if old is None else old.version,
            to.version,
            "" if old is None else self._content_at(owner, label, old),
            self._content_at(owner, label, to),
        )

    def _content_at(self, owner: str, label: str, version: Version) -> str:
        return "" if version.deleted else self.read(owner, label, version.version).content

    def head(self) -> str | None:
        head = self._head()
        return None if head is None else head.decode()

    def catch_up_index(self) -> None:
        """Bring the version index up to date with main (other writers may have moved it)."""
        self._catch_up(self._head())

    def read_commit_info(self, sha: str) -> CommitInfo:
        return self._read_commit_info(sha)


def _identity(author: str) -> bytes:
    if not author or any(c in author for c in "<>\n\r\0"):
        raise UsageError(f"author {author!r} must be non-empty, without '<', '>' or line breaks")
    slug = "".join(c if c.isalnum() or c in "._-" else "-" for c in author)
    return f"{author} <{slug}@blocksync.invalid>".encode("utf-8")


def _commit_info(commit: Commit, changes: tuple[BlockChange, ...]) -> CommitInfo:
    author = commit.author.decode("utf-8", "replace")
    name = author.rsplit(" <", 1)[0]
    stamp = datetime.fromtimestamp(commit.author_time, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return CommitInfo(
        commit.id.decode(),
        commit.parents[0].decode() if commit.parents else None,
        name,
        commit.message.decode("utf-8", "replace").rstrip("\n"),
        stamp,
        changes,
    )


def _version(row: VersionRow) -> Version:
    return Version(
        row.owner, row.label, row.version, row.commit, row.author, row.message, row.timestamp, row.deleted
    )
