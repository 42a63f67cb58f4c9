"""The git plumbing blocksync writes with: objects, trees, refs moved by compare-and-swap.

A thin layer over dulwich for the two things it does too slowly for a commit per block update
(see :meth:`GitStore.swap_ref` and :meth:`GitStore.write`), plus caches of immutable trees.
Used by the block store (``refs/heads/main``) and by sync bases (``refs/sync/<source>``).
"""

from __future__ import annotations

import os
import random
import time
import weakref
from collections import OrderedDict
from contextlib import suppress
from pathlib import Path

from dulwich.errors import NotGitRepository
from dulwich.objects import Blob, Commit, ObjectID, ShaFile, Tree
from dulwich.refs import Ref
from dulwich.repo import Repo

from .errors import RepositoryCorrupt, StoreNotFound, UsageError

TREE_MODE = 0o040000
FILE_MODE = 0o100644
#: Above this many new objects a commit is written as one pack instead of loose objects.
PACK_THRESHOLD = 64
#: Trees kept parsed in memory (immutable by id, so never stale).
TREE_CACHE = 4096


def identity(author: str) -> bytes:
    """``author`` as a git identity; refused if git could not give it back unchanged."""
    # git shows a name without its trailing whitespace: history would disagree with `git log`
    if not author or author != author.strip() or any(c in author for c in "<>\n\r\0"):
        raise UsageError(
            f"author {author!r} must be non-empty, without '<', '>', line breaks or "
            "surrounding whitespace"
        )
    slug = "".join(c if c.isalnum() or c in "._-" else "-" for c in author)
    try:
        return f"{author} <{slug}@blocksync.invalid>".encode("utf-8")
    except UnicodeEncodeError as exc:
        raise UsageError(f"author {author!r} is not valid text") from exc


class GitStore:
    """A bare repository opened for blocksync's reads and writes."""

    def __init__(self, path: Path, *, durable: bool = False) -> None:
        """``durable`` fsyncs every object and ref update, so a power cut loses nothing that
        was committed; without it a killed process still loses nothing (objects are written
        before the ref that names them), but the OS may drop the last commits on a power cut."""
        if not path.is_dir():
            raise StoreNotFound(str(path.parent))
        try:
            self.repo = Repo(str(path))
        except NotGitRepository as exc:
            raise RepositoryCorrupt(str(path), "not a git repository") from exc
        self.path = path
        self.durable = durable
        self.repo.object_store.fsync_object_files = durable
        # close the repository's pack files before interpreter shutdown even when the caller
        # forgot to: dulwich's finalizers complain loudly once modules are torn down
        weakref.finalize(self, self.repo.close)
        self._trees: OrderedDict[bytes, Tree] = OrderedDict()
        self._commit_trees: dict[bytes, bytes] = {}

    @staticmethod
    def init_bare(path: Path, head: Ref) -> None:
        repo = Repo.init_bare(str(path), mkdir=True)
        repo.refs.set_symbolic_ref(Ref(b"HEAD"), head)
        repo.close()

    def close(self) -> None:
        self.repo.close()

    # -- reading --------------------------------------------------------------------------

    def ref(self, name: Ref) -> bytes | None:
        try:
            return self.repo.refs[name]
        except KeyError:
            return None

    def object(self, sha: bytes) -> ShaFile:
        try:
            return self.repo.object_store[ObjectID(sha)]
        except KeyError as exc:
            raise RepositoryCorrupt(str(self.path), f"object {sha.decode()} is missing") from exc

    def tree(self, sha: bytes) -> Tree:
        # trees are immutable by id: a small cache saves re-reading the folders that every
        # write walks (and that the previous write has just produced)
        tree = self._trees.get(sha)
        if tree is None:
            obj = self.object(sha)
            if not isinstance(obj, Tree):
                raise RepositoryCorrupt(str(self.path), f"{sha.decode()} is not a tree")
            tree = obj
            self.remember(tree)
        return tree

    def remember(self, tree: Tree) -> None:
        self._trees[tree.id] = tree
        if len(self._trees) > TREE_CACHE:
            self._trees.popitem(last=False)

    def blob(self, sha: bytes) -> bytes:
        obj = self.object(sha)
        if not isinstance(obj, Blob):
            raise RepositoryCorrupt(str(self.path), f"{sha.decode()} is not a blob")
        return obj.as_raw_string()

    def commit(self, sha: bytes) -> Commit:
        obj = self.object(sha)
        if not isinstance(obj, Commit):
            raise RepositoryCorrupt(str(self.path), f"{sha.decode()} is not a commit")
        return obj

    def commit_tree(self, commit: bytes | None) -> bytes | None:
        if commit is None:
            return None
        tree = self._commit_trees.get(commit)
        if tree is None:
            if len(self._commit_trees) > TREE_CACHE:
                self._commit_trees.clear()
            tree = self._commit_trees[commit] = self.commit(commit).tree
        return tree

    def lookup(self, tree_sha: bytes | None, *path: bytes) -> bytes | None:
        sha = tree_sha
        for name in path:
            if sha is None:
                return None
            try:
                sha = self.tree(sha)[name][1]
            except KeyError:
                return None
        return sha

    # -- writing --------------------------------------------------------------------------

    def commit_objects(
        self, root: TreeEditor, parent: bytes | None, author: str, message: str
    ) -> tuple[Commit, list[ShaFile]]:
        """A commit of ``root``'s edits on ``parent``, with every new object it needs."""
        objects: list[ShaFile] = []
        tree = root.write(objects)
        if tree is None:  # everything deleted: git still wants a tree
            empty = Tree()
            objects.append(empty)
            tree = empty.id
        commit = Commit()
        commit.tree = ObjectID(tree)
        commit.parents = [] if parent is None else [ObjectID(parent)]
        commit.author = commit.committer = identity(author)
        commit.author_time = commit.commit_time = int(time.time())
        commit.author_timezone = commit.commit_timezone = 0
        commit.encoding = b"UTF-8"
        commit.message = message.rstrip("\n").encode("utf-8") + b"\n"
        objects.append(commit)
        return commit, objects

    def write(self, objects: list[ShaFile]) -> None:
        if len(objects) > PACK_THRESHOLD:
            self.repo.object_store.add_objects([(obj, None) for obj in objects])
        else:
            for obj in objects:
                self._write_loose(obj)
        for obj in objects:
            if isinstance(obj, Tree):
                self.remember(obj)
            elif isinstance(obj, Commit):
                self._commit_trees[obj.id] = obj.tree

    def swap_ref(self, name: Ref, old: bytes | None, new: bytes) -> bool:
        """Compare-and-swap a loose ref under git's own lock protocol (``<ref>.lock``, O_EXCL).

        Done here rather than with dulwich's ``set_if_equals``, which always fsyncs the ref
        (half the cost of a commit) and writes a reflog entry after re-reading the whole git
        config stack; the commits themselves are the history.
        """
        path = self.path / name.decode()
        lock = path.with_name(path.name + ".lock")
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False  # another writer is mid-swap: a lost race like any other
        try:
            if self.ref(name) != old:
                os.close(fd)
                os.unlink(lock)
                return False
            os.write(fd, new + b"\n")
            if self.durable:
                os.fsync(fd)
            os.close(fd)
            os.replace(lock, path)
        except BaseException:
            with suppress(OSError):
                os.close(fd)
            with suppress(OSError):
                os.unlink(lock)
            raise
        return True

    def _write_loose(self, obj: ShaFile) -> None:
        """Write one loose object as git does: compressed to a unique temp file, renamed.

        Leaner than dulwich's ``add_object`` (no per-object mkdir, no lock file: two writers
        of one object write the same bytes, so either rename may win), which halves the cost
        of a single-block commit.
        """
        hexsha = obj.id.decode("ascii")
        folder = self.path / "objects" / hexsha[:2]
        path = folder / hexsha[2:]
        try:
            os.utime(path)  # present: refresh it so a concurrent `git gc` keeps it
            return
        except FileNotFoundError:
            pass
        data = obj.as_legacy_object()
        tmp = folder / f"tmp_obj_{os.getpid()}_{random.getrandbits(48):012x}"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
        except FileNotFoundError:
            folder.mkdir(exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
        try:
            os.write(fd, data)
            if self.durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise


class TreeEditor:
    """A lazily loaded, editable view of one git tree; only edited subtrees are rewritten."""

    def __init__(self, git: GitStore, sha: bytes | None) -> None:
        self._git = git
        self.sha = sha
        self._entries: dict[bytes, tuple[int, bytes]] | None = None
        self._children: dict[bytes, TreeEditor] = {}
        self._dirty = False

    def entries(self) -> dict[bytes, tuple[int, bytes]]:
        if self._entries is None:
            self._entries = {}
            if self.sha is not None:
                self._entries = {e.path: (e.mode, e.sha) for e in self._git.tree(self.sha).items()}
        return self._entries

    def child(self, name: bytes) -> TreeEditor:
        """The subtree ``name`` (empty if absent), to read or edit; written back by write()."""
        if name not in self._children:
            entry = self.entries().get(name)
            self._children[name] = TreeEditor(self._git, entry[1] if entry else None)
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
                    tree.add(name, mode, ObjectID(sha))
                out.append(tree)
                self.sha = tree.id
        return self.sha
