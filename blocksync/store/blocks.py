"""BlockStore: memory blocks versioned in a bare git repository (dulwich).

Every block is a folder of main's tree (:mod:`blocksync.store.layout`: ``blocks/<owner>/<label>/``
holding ``content`` and ``meta.json``), so ``git log -- blocks/<owner>/<label>`` lists exactly
the block's versions. Every change is a commit on ``refs/heads/main``; the ref only moves by
compare-and-swap, and a writer that lost the race replays its operations on the new head
(re-checking every precondition) or fails cleanly.
"""

from __future__ import annotations

import builtins
import json
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import Enum
from functools import partial
from itertools import repeat
from pathlib import Path
from typing import NamedTuple

from dulwich.objects import Blob, Commit, ObjectID, ShaFile, Tree
from dulwich.refs import Ref

from blocksync import names
from blocksync.errors import (
    BlockExists,
    BlockNotFound,
    IndexCorrupt,
    InvalidContent,
    InvalidLabel,
    RepositoryCorrupt,
    StaleVersion,
    UsageError,
    VersionNotFound,
)
from blocksync.index.base_index import git_blob_id
from blocksync.index.db import IndexDb
from blocksync.index.versions import (
    BlockChange,
    CommitInfo,
    Head,
    MetaFields,
    VersionIndex,
    VersionRow,
)
from blocksync.shared import collector
from blocksync.text import CharOp, char_diff, parse_json, unified_diff

from . import layout, provenance, upgrade
from .gitstore import (
    FILE_MODE,
    TREE_CACHE,
    TREE_MODE,
    Draft,
    GitStore,
    TreeEditor,
    check_commit_text,
    json_document,
    utf8,
)

MAIN = Ref(b"refs/heads/main")
#: where the sync bases of sources live (:mod:`blocksync.store.bases`), upgraded with main
BASES_PREFIX = b"refs/sync/"


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
        return json_document(doc)

    @classmethod
    def from_json(cls, data: bytes) -> BlockMeta:
        """The metadata ``to_json`` wrote; ValueError for anything else (other keys or types)."""
        doc = json.loads(data)
        if not isinstance(doc, dict) or set(doc) != _META_KEYS:
            raise ValueError(f"not an object of exactly {', '.join(sorted(_META_KEYS))}")
        description, schema, limit = doc["description"], doc["schema"], doc["char_limit"]
        if not isinstance(description, str) or not isinstance(schema, str):
            # a stored document, not an argument: callers report a ValueError as damage
            raise ValueError("description and schema must be text")  # noqa: TRY004
        if limit is not None and (type(limit) is not int or limit < 0):
            raise ValueError(f"char_limit must be null or a whole number >= 0, not {limit!r}")
        return cls(description, BlockType(doc["block_type"]), schema, limit)


class Keep(Enum):
    """An update argument left out: the block keeps what it has. A sentinel, because ``None``
    is a value of ``char_limit`` (no limit): ``update(char_limit=None)`` removes a limit."""

    KEEP = "keep"


KEEP = Keep.KEEP

_META_KEYS = frozenset({"block_type", "char_limit", "description", "schema"})


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


class BlockSummary(NamedTuple):
    """A block as listed: its metadata and newest version, without the content.

    A named tuple rather than a frozen dataclass: a listing builds 100,000 of them at once, and
    a tuple is built in C (:data:`_summary`) while a frozen dataclass runs four
    ``object.__setattr__`` calls of Python per instance (a third of the listing's time).
    """

    owner: str
    label: str
    meta: BlockMeta
    version: int


#: a :class:`BlockSummary` from an (owner, label, meta, version) tuple, without a Python call
_summary = partial(tuple.__new__, BlockSummary)


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
    #: who made it, on which machine, in which run: its commit's trailers (None: not said,
    #: as for every version written before blocksync wrote them); see :mod:`.provenance`
    made_by: str | None = None
    machine: str | None = None
    run_id: str | None = None


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
        return unified_diff(
            self.old, self.new, old_name, f"{self.owner}/{self.label}@{self.to_version}"
        )

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
    utf8(content, f"content for {owner}/{label}", InvalidContent)
    if meta.char_limit is not None and len(content) > meta.char_limit:
        raise InvalidContent(
            f"content for {owner}/{label} is {len(content)} characters, over its char_limit "
            f"of {meta.char_limit}"
        )


def block_problem(
    get: Callable[[ObjectID], ShaFile], owner: bytes, label: bytes, mode: int, sha: ObjectID
) -> str | None:
    """Why the entry ``label`` (``mode``, ``sha``) of the folder ``owner`` under ``blocks/`` is
    no block this store could read (None: it is one). ``get`` reads an object by id.

    Strict on purpose: a block is a folder of exactly ``content`` (UTF-8 text, within its
    char_limit) and ``meta.json`` (as :meth:`BlockMeta.to_json` writes it) -- and ``label`` for
    a long label -- under a name :func:`name_problem` accepts.
    """
    folder = get(sha)
    if mode != TREE_MODE or not isinstance(folder, Tree):
        return "is not a folder"
    problem = name_problem(get, owner, label, folder)
    if problem is not None:
        return problem
    entries = {e.path: e for e in folder.items()}
    wanted = layout.block_files(label)
    if set(entries) != wanted:
        missing = b", ".join(sorted(wanted - set(entries))).decode()
        extra = b", ".join(sorted(set(entries) - wanted)).decode("utf-8", "backslashreplace")
        return f"lacks {missing}" if missing else f"holds more than a block's files: {extra!r}"
    content, meta = (get(entries[n].sha) for n in (layout.CONTENT_FILE, layout.META_FILE))
    if any(e.mode != FILE_MODE for e in entries.values()) or not (
        isinstance(content, Blob) and isinstance(meta, Blob)
    ):
        return "must hold content and meta.json as plain files"
    try:
        parsed = BlockMeta.from_json(meta.as_raw_string())
        _check_meta(parsed)
    except (UsageError, ValueError) as exc:
        return f"has a meta.json that is no block's metadata ({exc})"
    try:
        text = content.as_raw_string().decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"has content that is not UTF-8 ({exc.reason} at byte {exc.start})"
    if parsed.char_limit is not None and len(text) > parsed.char_limit:
        return f"holds {len(text)} characters, over its char_limit of {parsed.char_limit}"
    return None


def name_problem(
    get: Callable[[ObjectID], ShaFile], owner: bytes, component: bytes, folder: Tree
) -> str | None:
    """Why ``<owner>/<component>`` names no block (None: it does): both in canonical form and
    valid names, and a long label's component the hash of the whole label that ``folder`` (its
    block folder, or its record of a conflict) keeps in a ``label`` file."""
    try:
        names.validate(layout.owner_of((owner,)), "owner")
        if not layout.is_long(component):
            names.validate(names.decode(component), "label")
            return None
        entry = next((e for e in folder.items() if e.path == layout.LABEL_FILE), None)
        whole = None if entry is None else get(entry.sha)
        if entry is None or entry.mode != FILE_MODE or not isinstance(whole, Blob):
            return "is a long label's name without its label file"
        layout.check_long_label(component, whole.as_raw_string().decode("utf-8"))
    except UnicodeDecodeError:
        return "has a label file that is not UTF-8"
    except UsageError as exc:
        return f"has a name blocksync cannot use ({exc})"
    return None


def _block_type(value: BlockType | str) -> BlockType:
    try:
        return BlockType(value)
    except ValueError as exc:
        known = ", ".join(t.value for t in BlockType)
        raise UsageError(f"block_type {value!r} is not one of {known}") from exc


def _check_meta(meta: BlockMeta) -> None:
    try:
        parse_json(meta.schema)
    except ValueError as exc:
        raise UsageError(f"schema is not valid JSON: {exc}") from exc
    if meta.char_limit is not None and meta.char_limit < 0:
        raise UsageError(f"char_limit must be positive, not {meta.char_limit}")
    utf8(meta.description, "description")
    utf8(meta.schema, "schema")


def _check_names(owner: str, label: str) -> None:
    # first, so a bad name is reported as such (and never reaches SQLite, which cannot bind
    # lone surrogates, nor a default commit message built from it)
    names.validate(owner, "owner")
    names.validate(label, "label")


class _BlockState:
    """A block's state as a transaction sees it; content is read from git only when needed."""

    def __init__(
        self, meta: BlockMeta, content: str | None = None, load: Callable[[], str] | None = None
    ) -> None:
        self.meta = meta
        self._content = content
        self._load = load

    @property
    def content(self) -> str:
        if self._content is None:
            assert self._load is not None
            self._content = self._load()
        return self._content


class Transaction:
    """Changes staged against one head and committed together, all or nothing.

    Operations check their preconditions at once (so errors surface where they are made) and
    again when replayed on a newer head after a lost compare-and-swap.
    """

    def __init__(
        self,
        store: BlockStore,
        message: str,
        author: str,
        *,
        skip_stale: bool = False,
        made_by: str | None = None,
    ) -> None:
        """``made_by``: who the commit's provenance names, when more precise than ``author``
        (a plugin with its sha256; see :mod:`blocksync.store.provenance`)."""
        self._store = store
        self.message = message
        self.author = author
        check_commit_text(message, author)  # refused before anything is staged
        if made_by is not None:
            provenance.check_value(made_by, "made_by")
        self.made_by = made_by
        self.skip_stale = skip_stale
        self._ops: list[tuple[tuple[str, str], Callable[[], None]]] = []
        self._spent = False  # whether the tree edits went into a commit attempt already
        self._changes: list[BlockChange] = []
        self._begin(store._head())
        self.result: CommitResult | None = None

    def _begin(self, head: bytes | None) -> None:
        self._head = head
        self._store._catch_up(head)
        self._root = TreeEditor(self._store._git, self._store._git.commit_tree(head))
        self._staged: dict[tuple[str, str], _BlockState | None] = {}
        self._beside: dict[tuple[bytes, ...], bytes | None] = {}
        self._heads: dict[tuple[str, str], Head | None] = {}  # the index's rows, read once
        #: with ``skip_stale``: blocks whose changes were dropped because the block moved
        self.stale: set[tuple[str, str]] = set()

    # -- reading through the staged changes -----------------------------------------------

    def _current(self, owner: str, label: str) -> _BlockState | None:
        key = (owner, label)
        if key in self._staged:
            return self._staged[key]
        return self._store._state_in(self._root, owner, label, self._head_row(owner, label))

    def _head_row(self, owner: str, label: str) -> Head | None:
        """The block's row of the index (caught up with this transaction's head)."""
        key = (owner, label)
        if key not in self._heads:
            self._heads[key] = self._store._index.head(owner, label)
        return self._heads[key]

    def preload(self, blocks: Iterable[tuple[str, str]]) -> None:
        """Read the index rows of ``blocks`` (owner, label) about to be changed in one query,
        not one per change (a reconcile's batch of hundreds)."""
        wanted = [key for key in blocks if key not in self._heads]
        if wanted:
            found = self._store._index.heads_of(wanted)
            self._heads.update((key, found.get(key)) for key in wanted)

    def read(self, owner: str, label: str) -> tuple[str, BlockMeta]:
        """The block as this transaction sees it (its own changes included)."""
        current = self._current(owner, label)
        if current is None:
            raise BlockNotFound(owner, label)
        return current.content, current.meta

    def exists(self, owner: str, label: str) -> bool:
        return self._current(owner, label) is not None

    # -- changes --------------------------------------------------------------------------

    def _do(self, key: tuple[str, str], op: Callable[[], None]) -> None:
        self._run(key, op)
        self._ops.append((key, op))

    def _run(self, key: tuple[str, str], op: Callable[[], None]) -> None:
        """Apply ``op``, a change of block ``key`` (again, on a newer head, after a lost race).

        With ``skip_stale``, a change whose block moved since its caller read it (a stale
        expected version, a block created or deleted meanwhile) is dropped instead of failing
        the whole transaction, and so is every later change of that block: the caller learns
        which from :attr:`stale` and decides them again. One busy block then never holds back
        a batch of thousands."""
        if key in self.stale:
            return
        try:
            op()
        except (StaleVersion, BlockExists, BlockNotFound):
            if not self.skip_stale:
                raise
            self.stale.add(key)
            self._staged.pop(key, None)

    def drop(self, blocks: set[tuple[str, str]]) -> None:
        """Unstage every change of ``blocks`` (owner, label); the others stay staged."""
        if not blocks:
            return
        self._ops = [(key, op) for key, op in self._ops if key not in blocks]
        self._begin(self._head)
        for key, op in self._ops:
            self._run(key, op)

    def _check_expected(self, owner: str, label: str, expected: int | None) -> None:
        if expected is None:
            return
        actual = self._head_row(owner, label)
        if actual is None or actual.deleted or actual.version != expected:
            raise StaleVersion(
                owner, label, expected, None if actual is None or actual.deleted else actual.version
            )

    def _stage(self, owner: str, label: str, content: str, meta: BlockMeta) -> None:
        check_content(owner, label, content, meta)
        self._staged[(owner, label)] = _BlockState(meta, content)

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
        meta = BlockMeta(description, _block_type(block_type), schema, char_limit)
        _check_meta(meta)

        def op() -> None:
            if self.exists(owner, label):
                raise BlockExists(owner, label)
            self._stage(owner, label, content, meta)

        self._do((owner, label), op)

    def update(
        self,
        owner: str,
        label: str,
        content: str | None = None,
        *,
        description: str | None = None,
        block_type: BlockType | str | None = None,
        schema: str | None = None,
        char_limit: int | None | Keep = KEEP,
        expected_version: int | None = None,
    ) -> None:
        """Change content and/or metadata; arguments left out keep their current value
        (``char_limit=None`` removes the limit)."""
        names.validate(owner, "owner")
        names.validate(label, "label")

        def op() -> None:
            self._check_expected(owner, label, expected_version)
            current = self._current(owner, label)
            if current is None:
                raise BlockNotFound(owner, label)
            old = current.meta
            meta = BlockMeta(
                old.description if description is None else description,
                old.block_type if block_type is None else _block_type(block_type),
                old.schema if schema is None else schema,
                old.char_limit if isinstance(char_limit, Keep) else char_limit,
            )
            _check_meta(meta)
            self._stage(owner, label, current.content if content is None else content, meta)

        self._do((owner, label), op)

    def delete(self, owner: str, label: str, *, expected_version: int | None = None) -> None:
        names.validate(owner, "owner")
        names.validate(label, "label")

        def op() -> None:
            self._check_expected(owner, label, expected_version)
            self.read(owner, label)  # raises BlockNotFound
            self._staged[(owner, label)] = None

        self._do((owner, label), op)

    def hold(
        self,
        owner: str,
        label: str,
        content: str | None,
        *,
        expected_version: int | None = None,
        description: str = "",
    ) -> None:
        """Make the block hold ``content`` (None: no block) by whichever of create, update or
        delete gets it there; ``description`` is a created block's. ``expected_version`` is the
        version the caller read: a block that moved or went since is a :class:`StaleVersion`
        (never re-created), and an update to the same content makes no version but checks it."""
        present = self.exists(owner, label) or expected_version is not None
        if content is None:
            if present:
                self.delete(owner, label, expected_version=expected_version)
        elif present:
            self.update(owner, label, content, expected_version=expected_version)
        else:
            self.create(owner, label, content, description=description)

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

        self._do((owner, label), op)

    def edit_record(
        self, owner: str, label: str, edit: Callable[[bytes | None], bytes | None]
    ) -> None:
        """Make the block's folder under ``conflicts/`` (a remote's record of its conflict)
        ``edit(its tree now)`` (None: absent) in this commit. ``edit`` writes the objects it
        names, and runs again when the commit is replayed on a newer head (not at all once the
        block's own change was dropped as stale)."""
        names.validate(owner, "owner")
        names.validate(label, "label")
        path = layout.record_path(owner, label)

        def op() -> None:
            now = (
                self._beside[path]
                if path in self._beside
                else self._store._git.lookup(self._root.sha, *path)
            )
            self._beside[path] = edit(now)

        self._do((owner, label), op)

    # -- committing -----------------------------------------------------------------------

    def commit(self) -> CommitResult:
        store = self._store
        _, commit = store._git.commit_with_retry(MAIN, self._draft, take_turns=True)
        changes = [self._with_meta(change) for change in self._changes]
        self.result = CommitResult(None) if commit is None else store._committed(commit, changes)
        # its operations hold this transaction (and all it staged): a reference cycle only a
        # collector pass would free, and nothing replays them any more
        self._ops.clear()
        return self.result

    def _draft(self, head: bytes | None) -> Draft | None:
        if self._spent or head != self._head:
            # another writer committed since (or the last attempt's tree edits are spent):
            # replay every change on the head as it is now
            self._begin(head)
            for key, op in self._ops:
                self._run(key, op)
        self._spent = True
        upgrade.check_writable(self._store._git, self._root.sha, MAIN.decode())
        objects, self._changes = self._store._stage_commit(self._root, self._staged, self._beside)
        if objects is None:
            return None
        return Draft(self._root, objects, self.author, self.message, self.made_by)

    def _with_meta(self, change: BlockChange) -> BlockChange:
        """``change`` carrying its staged metadata: the index records it without a git read."""
        state = self._staged.get((change.owner, change.label))
        if state is None or change.meta_blob is None:
            return change
        self._store._remember_meta(change.meta_blob.encode(), state.meta)
        return replace(change, meta=_fields(state.meta))


class BlockStore:
    """Blocks in a bare git repository, with a :class:`VersionIndex` beside it."""

    def __init__(
        self,
        repo_path: Path,
        index: VersionIndex,
        author: str,
        *,
        durable: bool = False,
        machine: str | None = None,
    ) -> None:
        """``durable``: see :class:`~blocksync.store.gitstore.GitStore`. Writes are ordered objects,
        then the ref, then the index, so a killed process never leaves a half commit.
        ``machine``: what every commit names as the machine it was made on."""
        self._git = GitStore(repo_path, durable=durable)
        self._git.machine = machine
        self.repo_path = repo_path
        self._index = index
        self.author = author
        self.durable = durable
        self._metas: dict[bytes, BlockMeta] = {}
        self._pending: dict[str, CommitInfo] = {}
        self._fill_metas()

    def _fill_metas(self) -> None:
        """Parse into the index the metadata blobs it lacks (an index.db from before it kept
        them: read from git once, here, so listing never reads git)."""
        missing = self._index.missing_metas()
        if missing is not None:
            self._index.add_metas({blob: _fields(self._meta(blob.encode())) for blob in missing})

    @property
    def index_path(self) -> Path:
        """The SQLite file of the version index (index.db), which other indexes share."""
        return Path(self._index.path)

    @property
    def index_db(self) -> IndexDb:
        """The open index.db the version index lives in: other indexes take this handle."""
        return self._index.index_db

    @staticmethod
    def init_repo(repo_path: Path) -> None:
        GitStore.init_bare(repo_path, MAIN)

    def close(self) -> None:
        self._git.close()

    def upgrade(self, fault: upgrade.Fault | None = None) -> builtins.list[str]:
        """Upgrade main and every source's bases (``refs/sync/*``) written in an older store
        format to the current one, one commit per ref (:mod:`blocksync.store.upgrade`); refused with
        :class:`StoreFormatError` before anything is written if one is newer than this code.
        The version index then follows main: the upgrade commit changes no block. Returns the
        refs upgraded. ``fault``: called at each step (tests kill the process there)."""
        bases = upgrade.refs_under(self._git, BASES_PREFIX)
        done = upgrade.upgrade_refs(self._git, [MAIN, *bases], fault)
        if MAIN in done:
            self._catch_up(self._head())
            if fault is not None:
                fault("index-updated")
        return [ref.decode() for ref in done]

    @staticmethod
    def git_path(owner: str, label: str) -> str:
        """The block's folder in the repository, as ``git log -- <path>`` wants it (versions
        from before a store was upgraded from format 1 sit at ``blocks/<owner>/<label>``)."""
        _check_names(owner, label)
        return layout.git_path(owner, label)

    def _head(self) -> bytes | None:
        return self._git.ref(MAIN)

    def _state_in(
        self, root: TreeEditor, owner: str, label: str, head: Head | None
    ) -> _BlockState | None:
        """The block as tree ``root`` holds it (None: absent). Its folder is not read when the
        index's row ``head`` describes it exactly: the folder that row's blobs make is the one
        ``root`` holds (same id), and its parsed metadata is what the metadata blob holds (its
        bytes hash to that blob's id). Anything else (an index behind, ahead or wrong) is read
        from git. ``root`` reads the folders above the block: a commit rewrites them anyway."""
        *where, name = layout.block_path(owner, label)
        entry = root.at(tuple(where)).get(name)
        if entry is None:
            return None
        known = None if head is None else self._known_state(head, name, label, entry[1])
        return self._read_dir(entry[1]) if known is None else known

    def _known_state(
        self, head: Head, component: bytes, label: str, folder: bytes
    ) -> _BlockState | None:
        """The state ``head`` describes if it is the block folder ``folder``; else None."""
        if head.deleted or head.content_blob is None or head.meta_blob is None:
            return None
        meta_sha = head.meta_blob.encode("ascii")
        meta = self._metas.get(meta_sha)
        if meta is None and head.meta is not None:
            try:
                parsed = _meta_of(head.meta)
                if git_blob_id(parsed.to_json()) == head.meta_blob:
                    meta = parsed
            except (ValueError, UnicodeError):
                pass  # not what git holds: read from it below
        if meta is None:
            return None
        whole = git_blob_id(label.encode("utf-8")).encode() if layout.is_long(component) else None
        content_sha = head.content_blob.encode("ascii")
        if layout.block_folder(content_sha, meta_sha, whole).id != folder:
            return None
        return _BlockState(meta, load=lambda: self._text(content_sha))

    def _read_dir(self, dir_sha: bytes) -> _BlockState:
        folder = self._git.tree(dir_sha)
        try:
            content_sha = folder[layout.CONTENT_FILE][1]
            meta = self._meta(folder[layout.META_FILE][1])
        except KeyError as exc:
            raise RepositoryCorrupt(
                str(self.repo_path), f"block folder {dir_sha.decode()} lacks {exc}"
            ) from exc
        return _BlockState(meta, load=lambda: self._text(content_sha))

    def read_blob(self, blob: str) -> str:
        """A block's content by its blob id (hex, as the version index records it)."""
        return self._text(blob.encode("ascii"))

    def _text(self, blob_sha: bytes) -> str:
        try:
            return self._git.blob(blob_sha).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise RepositoryCorrupt(
                str(self.repo_path), f"block content {blob_sha.decode()} is not UTF-8"
            ) from exc

    def _meta(self, blob_sha: bytes) -> BlockMeta:
        # metadata blobs are few and shared by many blocks: parse each once
        meta = self._metas.get(blob_sha)
        if meta is None:
            try:
                meta = BlockMeta.from_json(self._git.blob(blob_sha))
            except (KeyError, ValueError) as exc:
                raise RepositoryCorrupt(
                    str(self.repo_path), f"block metadata {blob_sha.decode()} is malformed ({exc})"
                ) from exc
            self._remember_meta(blob_sha, meta)
        return meta

    def _remember_meta(self, blob_sha: bytes, meta: BlockMeta) -> None:
        if len(self._metas) > TREE_CACHE:
            self._metas.clear()
        self._metas[blob_sha] = meta

    def _stage_commit(
        self,
        root: TreeEditor,
        staged: dict[tuple[str, str], _BlockState | None],
        beside: dict[tuple[bytes, ...], bytes | None],
    ) -> tuple[builtins.list[ShaFile] | None, builtins.list[BlockChange]]:
        """Edit ``root`` to hold ``staged`` (and the folders ``beside`` the blocks): the new
        objects that needs (None: nothing changed) and the blocks changed."""
        objects: list[ShaFile] = []
        changes: list[BlockChange] = []
        for (owner, label), state in staged.items():
            *where, name = layout.block_path(owner, label)
            parent = root.at(tuple(where))
            before = parent.get(name)
            if state is None:
                if before is not None:
                    parent.remove(name)
                    changes.append(BlockChange(owner, label, None, None))
                continue
            content = Blob.from_string(state.content.encode("utf-8"))
            meta = Blob.from_string(state.meta.to_json())
            whole = Blob.from_string(label.encode("utf-8")) if layout.is_long(name) else None
            folder = layout.block_folder(content.id, meta.id, None if whole is None else whole.id)
            if before is not None and before[1] == folder.id:
                continue  # nothing changed: not a version
            objects += [content, meta, folder] + ([] if whole is None else [whole])
            parent.set(name, TREE_MODE, folder.id)
            changes.append(BlockChange(owner, label, content.id.decode(), meta.id.decode()))
        # each put must run: not in the test below, which stops at the first true
        moved = [
            root.put(path, None if sha is None else (TREE_MODE, sha))
            for path, sha in beside.items()
        ]
        if not changes and not any(moved):
            return None, changes
        upgrade.format_entry(root, objects)
        return objects, changes

    def _committed(self, commit: Commit, changes: builtins.list[BlockChange]) -> CommitResult:
        """What the commit of ``changes``, main moved to it, wrote: the index follows it."""
        info = _commit_info(commit, tuple(changes))
        self._pending[info.sha] = info
        self._catch_up(commit.id)
        # by commit, not the newest rows: another writer may already have built on this
        # commit, and the index may have followed it there
        made = self._index.versions_of_commit(info.sha)
        versions = {(c.owner, c.label): made[(c.owner, c.label)] for c in changes}
        return CommitResult(info.sha, versions)

    # -- the version index ----------------------------------------------------------------

    def _catch_up(self, head: bytes | None) -> None:
        self._index.catch_up(
            None if head is None else head.decode(), self._read_commit_info, current_main=self.head
        )
        self._pending.clear()

    def _read_commit_info(self, sha: str) -> CommitInfo:
        """What changed in ``sha`` against its first parent, at block-folder granularity."""
        if sha in self._pending:
            return self._pending[sha]
        commit = self._git.commit(sha.encode())
        parent = commit.parents[0] if commit.parents else None
        changed = self._changed_blocks(self._git.commit_tree(parent), commit.tree)
        return _commit_info(commit, tuple(self._parsed_meta(c) for c in changed))

    def _parsed_meta(self, change: BlockChange) -> BlockChange:
        """``change`` carrying its metadata, parsed from git (cached: blocks share it)."""
        if change.meta_blob is None or change.meta is not None:
            return change
        return replace(change, meta=_fields(self._meta(change.meta_blob.encode())))

    def _changed_blocks(self, old_root: bytes | None, new_root: bytes) -> Iterator[BlockChange]:
        git = self._git
        for key, was, now in upgrade.diff_keys(git, old_root, new_root, layout.BLOCKS):
            folder = {} if now is None else {e.path: e.sha for e in git.tree(now[1]).items()}
            content, meta = folder.get(layout.CONTENT_FILE), folder.get(layout.META_FILE)
            yield BlockChange(
                layout.owner_of(key),
                self.label_of(key[-1], (now or was or (0, None))[1]),
                None if content is None else content.decode(),
                None if meta is None else meta.decode(),
            )

    def label_of(self, component: bytes, folder: bytes | None) -> str:
        """The label a block folder's path component names (a long one: read from the
        folder's ``label`` file and checked against the component's hash)."""

        def whole() -> str:
            assert folder is not None
            return self._git.blob(self._git.tree(folder)[layout.LABEL_FILE][1]).decode("utf-8")

        try:
            return layout.label_of(component, whole)
        except (AssertionError, KeyError, UnicodeDecodeError, InvalidLabel) as exc:
            raise RepositoryCorrupt(
                str(self.repo_path), f"block folder {component.decode()} has no valid label ({exc})"
            ) from exc

    # -- public API -----------------------------------------------------------------------

    @contextmanager
    def transaction(
        self,
        message: str,
        author: str | None = None,
        *,
        skip_stale: bool = False,
        made_by: str | None = None,
    ) -> Iterator[Transaction]:
        """Group changes into one commit, written when the block exits without an error.
        ``skip_stale``: see :meth:`Transaction._run`; ``made_by``: see :class:`Transaction`."""
        tx = Transaction(
            self, message, author or self.author, skip_stale=skip_stale, made_by=made_by
        )
        yield tx
        tx.commit()

    def in_run(self, run_id: str) -> AbstractContextManager[None]:
        """Every commit of this store names run ``run_id`` for the ``with`` block (its
        ``Blocksync-Run`` trailer; an outer run keeps its own id)."""
        return self._git.in_run(run_id)

    def _single(
        self,
        message: str,
        author: str | None,
        act: Callable[[Transaction], None],
        made_by: str | None = None,
    ) -> tuple[CommitResult, Transaction]:
        with self.transaction(message, author, made_by=made_by) as tx:
            act(tx)
        assert tx.result is not None
        return tx.result, tx

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
        made_by: str | None = None,
    ) -> Block:
        _check_names(owner, label)
        result = self._single(
            message or f"create {owner}/{label}",
            author,
            lambda tx: tx.create(
                owner,
                label,
                content,
                description=description,
                block_type=block_type,
                schema=schema,
                char_limit=char_limit,
            ),
            made_by,
        )
        return self._read_result(owner, label, *result)

    def update(
        self,
        owner: str,
        label: str,
        content: str | None = None,
        *,
        description: str | None = None,
        block_type: BlockType | str | None = None,
        schema: str | None = None,
        char_limit: int | None | Keep = KEEP,
        expected_version: int | None = None,
        author: str | None = None,
        message: str | None = None,
        made_by: str | None = None,
    ) -> Block:
        """Write a new version; unchanged content and metadata write nothing. Arguments left
        out keep the block's value (``char_limit=None`` removes its limit)."""
        _check_names(owner, label)
        result = self._single(
            message or f"update {owner}/{label}",
            author,
            lambda tx: tx.update(
                owner,
                label,
                content,
                description=description,
                block_type=block_type,
                schema=schema,
                char_limit=char_limit,
                expected_version=expected_version,
            ),
            made_by,
        )
        return self._read_result(owner, label, *result)

    def delete(
        self,
        owner: str,
        label: str,
        *,
        expected_version: int | None = None,
        author: str | None = None,
        message: str | None = None,
        made_by: str | None = None,
    ) -> Version:
        _check_names(owner, label)
        result = self._single(
            message or f"delete {owner}/{label}",
            author,
            lambda tx: tx.delete(owner, label, expected_version=expected_version),
            made_by,
        )
        return self.version(owner, label, result[0].versions[(owner, label)])

    def rollback(
        self,
        owner: str,
        label: str,
        version: VersionSpec,
        *,
        author: str | None = None,
        message: str | None = None,
    ) -> Block:
        _check_names(owner, label)
        old = self.version(owner, label, version)
        result = self._single(
            message or f"roll back {owner}/{label} to version {old.version}",
            author,
            lambda tx: tx.rollback(owner, label, old.version),
        )
        return self._read_result(owner, label, *result)

    def _read_result(self, owner: str, label: str, result: CommitResult, tx: Transaction) -> Block:
        """The block as the transaction wrote it (or as it is, when nothing changed)."""
        version = result.versions.get((owner, label))
        if version is None or result.commit is None:
            return self.read(owner, label)
        content, meta = tx.read(owner, label)
        return Block(owner, label, content, meta, version, result.commit)

    def read(self, owner: str, label: str, version: VersionSpec | None = None) -> Block:
        """The block now, or as of ``version`` (a number, or a commit id or prefix)."""
        _check_names(owner, label)
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
            self._text(row.content_blob.encode()),
            self._meta(row.meta_blob.encode()),
            row.version,
            row.commit,
        )

    def newest_of(self, owner: str, labels: Iterable[str]) -> dict[str, tuple[int, str]]:
        """Label -> (newest version, content) of each of ``labels`` that is a block of
        ``owner`` now (the others are left out): :meth:`read` of many, the index caught up
        once and asked once (a page of a plugin reconcile reads a thousand)."""
        wanted = list(dict.fromkeys(labels))
        for label in wanted:
            _check_names(owner, label)
        if not wanted:
            return {}
        self._catch_up(self._head())
        found = self._index.latest_contents_of(owner, wanted)
        return {
            label: (version, self._text(blob.encode("ascii")))
            for label, (version, blob) in found.items()
        }

    def exists(self, owner: str, label: str) -> bool:
        _check_names(owner, label)
        self._catch_up(self._head())
        row = self._index.latest(owner, label)
        return row is not None and not row.deleted

    def owners_with(self, label: str) -> builtins.list[str]:
        """The owners that have a block labelled ``label`` now, sorted."""
        names.validate(label, "label")
        self._catch_up(self._head())
        return self._index.owners_with(label)

    def list(self, owner: str | None = None) -> list[BlockSummary]:
        """Every block that exists now (of one owner, or of all), sorted by owner and label."""
        if owner is not None:
            names.validate(owner, "owner")
        self._catch_up(self._head())
        self._fill_metas()
        metas = {key: _meta_of(fields) for key, (_, fields) in self._index.metas().items()}
        out: builtins.list[BlockSummary] = []
        # no collector pass over 100,000 objects that all live on, during or after it
        with collector.paused(promote=True):
            for o, rows in self._index.listing(owner):
                self._list_owner(out, o, rows, metas)
        return out

    def _list_owner(
        self,
        out: builtins.list[BlockSummary],
        o: str,
        rows: builtins.list[tuple[str, int, int | None]],
        metas: dict[int, BlockMeta],
    ) -> None:
        if not rows:
            return
        labels, versions, keys = zip(*rows, strict=True)  # transposed in C: no loop here
        try:
            out += map(_summary, zip(repeat(o), labels, map(metas.__getitem__, keys), versions))
        except KeyError:  # a metadata blob the index lacks (_fill_metas ran: damage)
            raise IndexCorrupt(
                str(self.index_path),
                f"lacks the metadata of blocks of {o}: run `blocksync index rebuild`",
            ) from None

    # builtins.list: inside this class `list` names the method above
    def history(self, owner: str, label: str) -> builtins.list[Version]:
        """Every version of the block, oldest first, deletions included."""
        _check_names(owner, label)
        self._catch_up(self._head())
        rows = self._index.history(owner, label)
        if not rows:
            raise BlockNotFound(owner, label)
        return [_version(r) for r in rows]

    def version(self, owner: str, label: str, spec: VersionSpec) -> Version:
        return _version(self._row(owner, label, spec))

    def _row(self, owner: str, label: str, spec: VersionSpec) -> VersionRow:
        _check_names(owner, label)
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

    @property
    def git(self) -> GitStore:
        """The repository's plumbing, for writers beside transactions (remote pulls and pushes)."""
        return self._git

    def indexed(self, sha: str) -> bool:
        """Whether commit ``sha`` is on the first-parent history the version index follows."""
        return self._index.knows(sha)


def _commit_info(commit: Commit, changes: tuple[BlockChange, ...]) -> CommitInfo:
    author = commit.author.decode("utf-8", "replace")
    name = author.rsplit(" <", 1)[0]
    stamp = datetime.fromtimestamp(commit.author_time, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    message, made = provenance.split(commit.message.decode("utf-8", "replace").rstrip("\n"))
    return CommitInfo(
        commit.id.decode(),
        commit.parents[0].decode() if commit.parents else None,
        name,
        message,
        stamp,
        changes,
        made.made_by,
        made.machine,
        made.run,
    )


def _fields(meta: BlockMeta) -> MetaFields:
    return (meta.description, meta.block_type.value, meta.schema, meta.char_limit)


def _meta_of(fields: MetaFields) -> BlockMeta:
    description, block_type, schema, char_limit = fields
    return BlockMeta(description, BlockType(block_type), schema, char_limit)


def _version(row: VersionRow) -> Version:
    return Version(
        row.owner,
        row.label,
        row.version,
        row.commit,
        row.author,
        row.message,
        row.timestamp,
        row.deleted,
        row.made_by,
        row.machine,
        row.run_id,
    )
