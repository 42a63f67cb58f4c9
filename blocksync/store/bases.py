"""Sync bases: what both sides of each path of a data source held at their last sync.

Kept in git, not in ``index.db``, so losing the index loses no base. One ref per source,
``refs/sync/<source>`` (the source name encoded by :mod:`blocksync.names`); every change is a
commit on it, so ``git log refs/sync/<source>`` is the history of that source's bases. Each
commit's tree holds (:mod:`blocksync.store.layout`) a folder per path, ``bases/<h[:2]>/<h>/`` (h:
sha256 of the path, hex) of the base text verbatim (``base``) and the binding (``binding.json``:
label, owner, path, sorted keys), and ``blocks/<owner>/<f1>/<f2>/<label>`` (the block's key, fanned
out as in main): the same binding blob, which path the block mirrors; and the ``format`` file.

Paths are free text (slashes, any Unicode), so the tree is keyed by their hash: names stay
safe and fixed-length, every lookup is a fixed number of tree reads, and ``binding.json``
keeps the path itself. ``blocks/`` indexes the other direction, so finding the path of a block
is as cheap as finding the block of a path. A binding is one-to-one in both directions: moving
a path to another block (or a block to another path) takes an explicit ``forget`` first.

The ref moves only by compare-and-swap. A writer that lost the race re-reads the ref and
replays its operations, which re-check the binding rules against what the winner wrote.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterable, Iterator, KeysView, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

from dulwich.objects import Blob, ShaFile, Tree
from dulwich.refs import Ref, check_ref_format

from blocksync import names
from blocksync.errors import (
    AlreadyBound,
    InvalidContent,
    InvalidLabel,
    RepositoryCorrupt,
    UsageError,
)
from blocksync.index.base_index import BaseEntry, git_blob_id

from . import layout, upgrade
from .gitstore import (
    FILE_MODE,
    TREE_MODE,
    Draft,
    GitStore,
    TreeEditor,
    check_commit_text,
    json_document,
    utf8,
)

REF_PREFIX = "refs/sync/"
#: Parsed bindings kept in memory (immutable by blob id, so never stale).
BINDING_CACHE = 1 << 16
_EMPTY_TREE = Tree().id
_HEX40 = re.compile("[0-9a-f]{40}")


@dataclass(frozen=True)
class Binding:
    """A path of a data source and the block (owner, label) that mirrors it."""

    path: str
    owner: str
    label: str

    def to_json(self) -> bytes:
        doc = {"label": self.label, "owner": self.owner, "path": self.path}
        return json_document(doc)


@dataclass(frozen=True)
class BaseChange:
    """A path whose binding or base differs between two commits of a source's ref."""

    path: str
    binding: Binding | None  # None: forgotten
    base_blob: str | None  # git blob id of the new base (a content hash); None if forgotten


def ref_name(source: str) -> Ref:
    """The ref holding ``source``'s bases; refuses a name that cannot be one safely."""
    names.validate(source, "source")
    component = names.encode(source)
    # encode() keeps dots (but a leading one): the few names git refuses still get through
    if ".." in component or component.endswith((".", ".lock")):
        raise InvalidLabel(
            source, "a source name cannot contain '..' or end in '.' or '.lock' (git ref rules)"
        )
    ref = Ref((REF_PREFIX + component).encode("ascii"))
    if not check_ref_format(ref):  # a second opinion: git's own rules as dulwich knows them
        raise InvalidLabel(source, f"{ref.decode()} is not a valid git ref name")
    return ref


def base_path(path: str) -> tuple[bytes, ...]:
    """Where ``path``'s base folder sits in the tree."""
    return layout.base_path(_check_path(path))


def _check_path(path: str) -> bytes:
    if not isinstance(path, str) or not path:
        raise UsageError(f"a source path must be non-empty text, not {path!r}")
    return utf8(path, f"source path {path!r}")


def _check_content(path: str, content: str) -> bytes:
    return utf8(content, f"base of {path!r}", InvalidContent)


class SyncBases:
    """The sync bases of one data source, read from its ref and changed by :meth:`update`."""

    def __init__(self, git: GitStore, source: str) -> None:
        self.ref = ref_name(source)
        self.source = source
        self._git = git
        self._bindings: dict[bytes, Binding] = {}  # binding.json blob -> parsed (immutable)
        self._binding_ids: dict[Binding, bytes] = {}  # the other way: its blob's id
        self._expected: Mapping[str, BaseEntry] = {}

    def expect(self, entries: Mapping[str, BaseEntry]) -> None:
        """What the bases are believed to hold (e.g. the base index's rows): a path whose
        folder in the tree is exactly the one its entry describes (same binding, same base
        blob, checked by the folder's id) is known without reading its folder or binding.
        An entry that does not match (stale, or wrong) is ignored: git is read as usual."""
        self._expected = entries

    # -- reading --------------------------------------------------------------------------

    def head(self) -> bytes | None:
        """The ref's commit, None before the first update."""
        return self._git.ref(self.ref)

    def get(self, path: str) -> tuple[Binding, str] | None:
        """``path``'s binding and base content; None if it has no base."""
        return self._read(self._tree_now(), path)

    def text(self, blob: str) -> str:
        """The base text stored in git blob ``blob`` (an id from :meth:`changes` or an index)."""
        try:
            return self._git.blob(blob.encode("ascii")).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise self._corrupt(f"base blob {blob} is not UTF-8") from exc

    def bindings(self) -> list[Binding]:
        """Every binding of the source, sorted by path (reads every binding: O(paths))."""
        # through blocks/, which holds the very same binding blobs: one object read per path
        # instead of two (the path's folder, then its binding)
        git = self._git
        found = []
        index = git.lookup(git.commit_tree(self.head()), layout.BLOCKS)
        for key, _, entry in git.diff_trees(None, index, layout.KEY_DEPTH):
            assert entry is not None
            binding = self._binding(entry[1])
            if layout.block_key(binding.owner, binding.label) != key:
                raise self._corrupt(f"{binding} is indexed under the wrong block")
            found.append(binding)
        return sorted(found, key=lambda b: b.path)

    def binding_for_block(self, owner: str, label: str) -> Binding | None:
        """The binding of the path that block (owner, label) mirrors, if any."""
        names.validate(owner, "owner")
        names.validate(label, "label")
        return self._block_binding(self._tree_now(), owner, label)

    def changes(self, since: str | None) -> list[BaseChange]:
        """What differs between commit ``since`` (None: nothing) and the ref now, by path.

        Costs O(changed paths), not O(all paths): what an index over the bases needs to
        catch up with commits written since it last looked.
        """
        git = self._git
        if since is not None and not _HEX40.fullmatch(since):
            raise UsageError(f"{since!r} is not a commit id (40 hex digits)")
        old_root = None if since is None else git.commit_tree(since.encode("ascii"))
        new_root = git.commit_tree(self.head())
        old, new = git.lookup(old_root, layout.BASES), git.lookup(new_root, layout.BASES)
        out = []
        for _, old_folder, new_folder in git.diff_trees(old, new, layout.BASE_DEPTH):
            if new_folder is not None:
                binding, blob = self._folder(new_folder[1])
                out.append(BaseChange(binding.path, binding, blob.decode("ascii")))
            elif old_folder is not None:
                binding, _ = self._folder(old_folder[1])
                out.append(BaseChange(binding.path, None, None))
        return sorted(out, key=lambda c: c.path)

    def _tree_now(self) -> TreeEditor:
        """The ref's tree now, to read."""
        return TreeEditor(self._git, self._git.commit_tree(self.head()))

    def _read(self, tree: TreeEditor, path: str) -> tuple[Binding, str] | None:
        found = self._lookup(tree, path)
        if found is None:
            return None
        binding, base_sha = found
        try:
            return binding, self._git.blob(base_sha).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise self._corrupt(f"the base of {path!r} is not UTF-8") from exc

    def _lookup(self, tree: TreeEditor, path: str) -> tuple[Binding, bytes] | None:
        """``path``'s binding and base blob id in ``tree``."""
        folder_sha = tree.lookup(base_path(path))
        if folder_sha is None:
            return None
        entry = self._expected.get(path)
        if entry is not None and _HEX40.fullmatch(entry.base_blob):
            binding = Binding(path, entry.owner, entry.label)
            try:
                binding_id = self.binding_id(binding)
            except UnicodeError:
                binding_id = b""  # not text git could hold: not what the tree holds
            base_id = entry.base_blob.encode("ascii")
            if binding_id and _folder_id(base_id, binding_id) == folder_sha:
                self._bindings.setdefault(binding_id, binding)
                return binding, base_id
        binding, base_sha = self._folder(folder_sha)
        if binding.path != path:
            raise self._corrupt(f"the base filed for {path!r} names {binding.path!r}")
        return binding, base_sha

    def binding_id(self, binding: Binding) -> bytes:
        """The id of ``binding``'s ``binding.json`` blob (hex), computed once."""
        found = self._binding_ids.get(binding)
        if found is None:
            found = git_blob_id(binding.to_json()).encode("ascii")
            if len(self._binding_ids) > BINDING_CACHE:
                self._binding_ids.clear()
            self._binding_ids[binding] = found
        return found

    def _folder(self, folder_sha: bytes) -> tuple[Binding, bytes]:
        folder = self._git.tree(folder_sha)
        try:
            binding_sha, base_sha = folder[layout.BINDING_FILE][1], folder[layout.BASE_FILE][1]
        except KeyError as exc:
            raise self._corrupt(f"folder {folder_sha.decode()} lacks {exc}") from exc
        return self._binding(binding_sha), base_sha

    def _block_binding(self, tree: TreeEditor, owner: str, label: str) -> Binding | None:
        """(owner, label): names validated by the caller."""
        blob = tree.lookup(layout.block_path(owner, label))
        if blob is None:
            return None
        binding = self._binding(blob)
        if (binding.owner, binding.label) != (owner, label):
            raise self._corrupt(f"block {owner}/{label} is indexed with {binding}")
        return binding

    def _binding(self, blob: bytes) -> Binding:
        binding = self._bindings.get(blob)
        if binding is None:
            try:
                doc = json.loads(self._git.blob(blob))
                fields = {k: doc[k] for k in ("path", "owner", "label")}
            except (ValueError, TypeError, KeyError) as exc:
                raise self._corrupt(f"binding {blob.decode()} is malformed ({exc})") from exc
            if not all(isinstance(v, str) for v in fields.values()):
                raise self._corrupt(f"binding {blob.decode()} is malformed (not text)")
            binding = Binding(**fields)
            if len(self._bindings) > BINDING_CACHE:
                self._bindings.clear()
            self._bindings[blob] = binding
        return binding

    def _corrupt(self, detail: str) -> RepositoryCorrupt:
        return RepositoryCorrupt(str(self._git.path), f"{self.ref.decode()}: {detail}")

    # -- writing --------------------------------------------------------------------------

    @contextmanager
    def update(
        self, message: str, author: str, *, ready: Callable[[], None] | None = None
    ) -> Iterator[BasesTransaction]:
        """Stage changes; on a normal exit they become ONE commit (none if nothing changed).

        An exception inside the ``with`` block writes nothing. ``tx.commit_id`` tells what
        was written. ``ready`` is waited for before the ref moves (see
        :meth:`~blocksync.store.gitstore.GitStore.commit_with_retry`).
        """
        tx = BasesTransaction(self, message, author)
        yield tx
        tx.commit(ready)


_StagedBinding = tuple[Binding, str] | None


class BasesTransaction:
    """Changes to one source's bases, staged against one commit and written together.

    Each operation checks the binding rules at once (errors surface where they are made) and
    again when replayed on a newer commit after a lost compare-and-swap.
    """

    def __init__(self, bases: SyncBases, message: str, author: str) -> None:
        check_commit_text(message, author)  # refused before anything is staged
        self._bases = bases
        self.message = message
        self.author = author
        self.commit_id: str | None = None
        #: the commit ``commit_id`` was written on top of (None: the ref's first commit)
        self.parent_id: str | None = None
        self._ops: list[tuple[str, Callable[[], None]]] = []  # (path, change)
        self._spent = False  # whether the tree edits went into a commit attempt already
        self._begin(bases.head())

    def _begin(self, head: bytes | None) -> None:
        self._head = head
        self._tree = self._bases._git.commit_tree(head)
        #: ``_tree``, read through one editor: the lookups of the staged paths load the
        #: folders the commit then edits (at 100,000 paths no cache holds them till then)
        self._root = TreeEditor(self._bases._git, self._tree)
        self._staged: dict[str, _StagedBinding] = {}
        self._staged_blocks: dict[tuple[str, str], str | None] = {}  # block -> path
        #: each path's binding and base blob in ``_tree``, looked up once (checks and commit)
        self._found: dict[str, tuple[Binding, bytes] | None] = {}

    # -- reading through the staged changes -----------------------------------------------

    def get(self, path: str) -> tuple[Binding, str] | None:
        """As :meth:`SyncBases.get`, with this transaction's changes applied."""
        if path in self._staged:
            return self._staged[path]
        return self._bases._read(self._root, path)

    def _binding(self, path: str) -> Binding | None:
        if path in self._staged:
            staged = self._staged[path]
            return None if staged is None else staged[0]
        found = self._lookup(path)
        return None if found is None else found[0]

    def _lookup(self, path: str) -> tuple[Binding, bytes] | None:
        if path not in self._found:
            self._found[path] = self._bases._lookup(self._root, path)
        return self._found[path]

    def _block_path(self, owner: str, label: str) -> str | None:
        if (owner, label) in self._staged_blocks:
            return self._staged_blocks[(owner, label)]
        found = self._bases._block_binding(self._root, owner, label)
        return None if found is None else found.path

    # -- changes --------------------------------------------------------------------------

    def _do(self, path: str, op: Callable[[], None]) -> None:
        op()
        self._ops.append((path, op))

    def drop(self, paths: set[str]) -> None:
        """Unstage every change of ``paths`` (e.g. their blocks moved meanwhile: the next run
        decides them again, from the base they still have)."""
        if not paths:
            return
        self._ops = [(path, op) for path, op in self._ops if path not in paths]
        self._begin(self._head)
        for _, op in self._ops:
            op()

    def set_base(self, path: str, owner: str, label: str, content: str) -> None:
        """Record ``content`` as ``path``'s base, bound to block (owner, label).

        Raises :class:`AlreadyBound` if the path is bound to another block or the block to
        another path (unless that binding was forgotten first).
        """
        _check_path(path)
        names.validate(owner, "owner")
        names.validate(label, "label")
        if names.is_host_label(label):
            raise InvalidLabel(
                label,
                f"labels under {names.HOST_LABEL_PREFIX!r} are blocksync's own blocks: "
                "no data source binds one",
            )
        _check_content(path, content)
        binding = Binding(path, owner, label)
        source = self._bases.source

        def op() -> None:
            old = self._binding(path)
            if old is not None and old != binding:
                raise AlreadyBound(source, path, owner, label, path, old.owner, old.label)
            # a path bound to this block already is the block's path (the tree keeps both
            # ways as one): only a new binding looks the block up (a git read per block)
            other = self._block_path(owner, label) if old is None else path
            if other is not None and other != path:
                raise AlreadyBound(source, path, owner, label, other, owner, label)
            self._staged[path] = (binding, content)
            self._staged_blocks[(owner, label)] = path

        self._do(path, op)

    def forget(self, path: str) -> None:
        """Drop ``path``'s binding and base; nothing happens if it has none."""
        _check_path(path)

        def op() -> None:
            old = self._binding(path)
            self._staged[path] = None
            if old is not None:
                self._staged_blocks[(old.owner, old.label)] = None

        self._do(path, op)

    # -- committing -----------------------------------------------------------------------

    def commit(self, ready: Callable[[], None] | None = None) -> str | None:
        """Write the staged changes as one commit; None if they change nothing. ``ready``:
        waited for before the ref moves."""
        bases = self._bases
        head, commit = bases._git.commit_with_retry(bases.ref, self._draft, ready=ready)
        self.commit_id = None if commit is None else commit.id.decode("ascii")
        if commit is not None:
            self.parent_id = None if head is None else head.decode("ascii")
        self._ops.clear()  # they hold this transaction: a cycle, and nothing replays them now
        return self.commit_id

    def _draft(self, head: bytes | None) -> Draft | None:
        """The commit of the staged changes on ``head`` (replayed there if the ref moved since
        they were staged); None if they change nothing."""
        if self._spent or head != self._head:
            self._begin(head)
            for _, op in self._ops:
                op()
        self._spent = True
        if not self._staged:
            return None
        bases, git = self._bases, self._bases._git
        upgrade.check_writable(git, self._tree, bases.ref.decode())
        root = self._root
        objects: list[ShaFile] = []
        had: dict[str, Binding] = {}  # path -> its binding in the tree the changes build on
        # every binding that goes away first: a block may move to a path staged before the one
        # it leaves, and its index entry must end up pointing to the new one
        for path, state in self._staged.items():
            found = self._lookup(path)
            if found is None:
                continue
            was = had[path] = found[0]
            if state is None or state[0] != was:
                root.put(layout.block_path(was.owner, was.label), None)
            if state is None:
                root.put(base_path(path), None)
        for path, state in self._staged.items():
            if state is None:
                continue
            binding, content = state
            kept = had.get(path) == binding  # the path keeps its block
            binding_id = bases.binding_id(binding)
            base_blob = Blob.from_string(content.encode("utf-8"))
            folder = layout.base_folder(base_blob.id, binding_id)
            if root.put(base_path(path), (TREE_MODE, folder.id)):
                # an unchanged binding's blob is in the repository already
                objects += (
                    [base_blob, folder]
                    if kept
                    else [Blob.from_string(binding.to_json()), base_blob, folder]
                )
            if not kept:
                # a kept binding's block entry names its blob already (the tree keeps both
                # ways as one): not looking costs no read of the block's fan-out folders
                root.put(layout.block_path(binding.owner, binding.label), (FILE_MODE, binding_id))
        new_tree = root.write(objects)
        if (new_tree or _EMPTY_TREE) == (self._tree or _EMPTY_TREE):
            return None  # e.g. the same base again, or forgetting what was never there
        upgrade.format_entry(root, objects)  # the ref's first commit says its format
        return Draft(root, objects, self.author, self.message)

    @property
    def staged_paths(self) -> KeysView[str]:
        """The paths this transaction sets or forgets (a view: asking about one is a lookup,
        not a walk over a batch that may hold a whole first sync)."""
        return self._staged.keys()

    def written(
        self, paths: Iterable[str] | None = None
    ) -> list[tuple[str, Binding | None, str | None]]:
        """What the committed transaction set: (path, binding, base text), None if forgotten;
        of ``paths`` only, when given."""
        staged = self._staged
        chosen = staged if paths is None else (p for p in dict.fromkeys(paths) if p in staged)
        return [
            (path, None, None) if (state := staged[path]) is None else (path, *state)
            for path in chosen
        ]


# -- what the base index (blocksync.index.base_index) holds of a base --------------------------------


def _folder_id(base_blob: bytes, binding_blob: bytes) -> bytes:
    """The git tree id of a path's folder holding those two blobs (hex ids), as
    :meth:`BasesTransaction._write` writes it: ``base`` sorts before ``binding.json``."""
    raw = layout.base_folder_raw(base_blob, binding_blob)
    return hashlib.sha1(b"tree %d\0" % len(raw) + raw).hexdigest().encode("ascii")
