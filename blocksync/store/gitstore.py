"""The git plumbing blocksync writes with: objects, trees, refs moved by compare-and-swap.

A thin layer over dulwich for the two things it does too slowly for a commit per block update
(see :meth:`GitStore.swap_ref` and :meth:`GitStore.write`), plus caches of immutable trees.
Used by the block store (``refs/heads/main``) and by sync bases (``refs/sync/<source>``).
"""

from __future__ import annotations

import binascii
import errno
import fcntl
import functools
import hashlib
import itertools
import json
import os
import random
import re
import struct
import time
import weakref
import zlib
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from dulwich.errors import (
    ApplyDeltaError,
    ChecksumMismatch,
    FileFormatException,
    NotGitRepository,
)
from dulwich.objects import Blob, Commit, ObjectID, ShaFile, Tree, object_header
from dulwich.refs import Ref
from dulwich.repo import Repo

from blocksync import deadlines
from blocksync.errors import ConcurrentUpdate, RepositoryCorrupt, StoreNotFound, UsageError
from blocksync.store import pack
from blocksync.store.provenance import Provenance, check_value

TREE_MODE = 0o040000
FILE_MODE = 0o100644
#: Above this many new objects a commit is written as one pack instead of loose objects.
PACK_THRESHOLD = 64
#: After this many loose objects written by one handle, see whether the store needs packing.
AUTO_CHECK_EVERY = 256
#: Trees kept parsed in memory (immutable by id, so never stale).
TREE_CACHE = 4096
#: zlib level of the objects blocksync writes: the fastest (git's own for loose objects; for
#: packs it uses 6, but any level reads back the same, and `git gc` repacks them anyway).
COMPRESSION = 1
#: below this size a blob is deflated with zlib's smallest state (memLevel 1): setting up the
#: default one costs more than compressing a small object, and saves no bytes on it. Above it
#: the small state's few hash chains make deflate itself slow: 4x on a 3 KB tree (measured).
#: A tree below it is stored, above it Huffman-coded (:func:`deflate`)
SMALL_OBJECT = 1 << 10
#: a tree entry: (mode, hex sha)
Entry = tuple[int, bytes]


def deflate(data: bytes, type_num: int = Blob.type_num) -> bytes:
    """``data``, an object of git type ``type_num``, compressed as git stores it (zlib)."""
    if type_num == Tree.type_num:
        # a tree is names and 20-byte binary ids, in which LZ matching finds next to nothing:
        # Huffman coding alone makes a big tree as small (within 2%) in two thirds of the
        # time, and a small one (a block's folder, a one-entry fan-out folder) shrinks by
        # 3% at most, so it is stored as it is (measured on a reconcile's trees)
        if len(data) < SMALL_OBJECT:
            packer = zlib.compressobj(0, zlib.DEFLATED, 15, 1)  # level 0: stored
        else:
            packer = zlib.compressobj(COMPRESSION, zlib.DEFLATED, 15, 8, zlib.Z_HUFFMAN_ONLY)
        return packer.compress(data) + packer.flush()
    if len(data) >= SMALL_OBJECT:
        return zlib.compress(data, COMPRESSION)
    packer = zlib.compressobj(COMPRESSION, zlib.DEFLATED, 15, 1)
    return packer.compress(data) + packer.flush()


#: Compare-and-swap attempts at a ref before :class:`~blocksync.errors.ConcurrentUpdate`.
MAX_ATTEMPTS = 50
#: Longest wait for another blocksync writer of the same ref before going on by
#: compare-and-swap alone (never forever: a stopped writer must not stop every other one).
WRITER_WAIT = 60.0
#: what dulwich raises for an object file or pack it cannot read: damage, not a bug
UNREADABLE: tuple[type[Exception], ...] = (
    FileFormatException,  # ObjectFormatException, EmptyFileException: a garbled object file
    ChecksumMismatch,  # the content does not hash to its name
    ApplyDeltaError,
    zlib.error,
    EOFError,
    struct.error,
    ValueError,
)


def damaged(repo: Path, object_id: str, what: str) -> RepositoryCorrupt:
    """The error for object ``object_id`` of ``repo`` that ``what`` (is missing, cannot be
    read): where the damage is listed and how the object is copied back from another copy of
    the repository (``pull`` cannot: it never fetches what the local history already names)."""
    loose = repo / "objects" / object_id[:2] / object_id[2:]
    move = f"move the damaged file {loose} away, then " if loose.exists() else ""
    return RepositoryCorrupt(
        str(repo),
        f"object {object_id} {what}; `git --git-dir {repo} fsck` lists the damage; to repair "
        f"it, {move}copy the object from a remote or backup of this repository: `echo "
        f"{object_id} | git --git-dir OTHER.git pack-objects --stdout | git --git-dir {repo} "
        "unpack-objects`",
        object_id=object_id,
    )


_LOOSE_REF = re.compile(rb"[0-9a-f]{40}\n?")


@functools.lru_cache(maxsize=256)  # every commit checks and writes its author's identity
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
        return f"{author} <{slug}@blocksync.invalid>".encode()
    except UnicodeEncodeError as exc:
        raise UsageError(f"author {author!r} is not valid text") from exc


def utf8(text: str, what: str, error: type[UsageError] = UsageError) -> bytes:
    """``text`` as UTF-8 (what git keeps); ``error`` naming ``what`` when it holds a character
    that has none (a lone surrogate)."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise error(
            f"{what} is not valid text: character {exc.start} ({text[exc.start]!r}) cannot be "
            "encoded as UTF-8"
        ) from exc


def check_commit_text(message: str, author: str) -> None:
    """Refuse a commit message or author git could not keep as given."""
    identity(author)
    utf8(message, "commit message")
    if "\0" in message:
        # git refuses such commits (fsck: nulInCommit) and cuts the message at the NUL
        raise UsageError("a commit message cannot contain NUL characters")


#: one line per key, as ``indent=2`` writes a flat document, in ONE call of the C encoder
_FLAT_JSON = json.JSONEncoder(ensure_ascii=False, sort_keys=True, separators=(",\n  ", ": "))


def json_document(doc: dict[str, Any]) -> bytes:
    """``json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False)`` and a newline, as
    UTF-8: the same bytes (the blob ids of metadata depend on them), without the slow pure-Python
    encoder ``indent`` selects, for a flat document of text, whole numbers and nulls."""
    if not all(v is None or type(v) in (str, int) for v in doc.values()):
        return (json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()
    if not doc:
        return b"{}\n"
    return f"{{\n  {_FLAT_JSON.encode(doc)[1:-1]}\n}}\n".encode()


@dataclass
class Draft:
    """A commit to write (:meth:`GitStore.commit_with_retry`): the edited tree, the new objects
    its edits need beside the trees, who and why."""

    root: TreeEditor
    objects: list[ShaFile]
    author: str
    message: str
    #: who the commit's ``Blocksync-Author`` trailer names (None: ``author``); see
    #: :mod:`blocksync.store.provenance`
    made_by: str | None = None


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
        self._root = str(path)  # str, not Path: joined for every object and ref written
        self.durable = durable
        self.repo.object_store.fsync_object_files = durable
        # close the repository's pack files before interpreter shutdown even when the caller
        # forgot to: dulwich's finalizers complain loudly once modules are torn down
        weakref.finalize(self, self.repo.close)
        self._trees: OrderedDict[bytes, Tree] = OrderedDict()
        self._commit_trees: dict[bytes, bytes] = {}
        self._loose_written = 0
        #: the machine and run every commit of this handle names in its trailers (None: not
        #: said); set by the workspace, and for the length of a run (:meth:`in_run`)
        self.machine: str | None = None
        self.run: str | None = None

    @contextmanager
    def in_run(self, run_id: str) -> Iterator[None]:
        """Commits of this handle name run ``run_id`` for the ``with`` block (an outer run
        keeps its id: a run's own steps are part of it)."""
        if self.run is not None:
            yield
            return
        self.run = run_id
        try:
            yield
        finally:
            self.run = None

    @staticmethod
    def init_bare(path: Path, head: Ref) -> None:
        repo = Repo.init_bare(str(path), mkdir=True)
        repo.refs.set_symbolic_ref(Ref(b"HEAD"), head)
        repo.close()

    def close(self) -> None:
        self.repo.close()

    # -- reading --------------------------------------------------------------------------

    def ref(self, name: Ref) -> bytes | None:
        # a loose ref read directly: dulwich's lookup (symbolic refs, format checks, packed
        # refs: its way for anything else) costs a single-block commit as much as SQLite does
        where = name.decode()
        if where.startswith("refs/") and ".." not in where:
            with suppress(OSError):
                fd = os.open(f"{self._root}/{where}", os.O_RDONLY | os.O_NOFOLLOW)
                try:
                    data = os.read(fd, 64)
                finally:
                    os.close(fd)
                if _LOOSE_REF.fullmatch(data):
                    return data[:40]
        try:
            return self.repo.refs[name]
        except KeyError:
            return None

    def object(self, sha: bytes) -> ShaFile:
        store = self.repo.object_store
        try:
            try:
                obj = store[ObjectID(sha)]
            except KeyError:
                # a packer (blocksync's, git's) may have packed the loose object between our
                # look at the packs and at the loose file: look again, as git does
                with suppress(AttributeError):
                    store._update_pack_cache()
                obj = store[ObjectID(sha)]
        except KeyError as exc:
            raise damaged(self.path, sha.decode(), "is missing") from exc
        except UNREADABLE as exc:
            raise damaged(self.path, sha.decode(), f"cannot be read ({exc})") from exc
        _used_first(store)
        return obj

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
        self,
        root: TreeEditor,
        parent: bytes | None | list[bytes],
        author: str,
        message: str,
        made_by: str | None = None,
    ) -> tuple[Commit, list[ShaFile]]:
        """A commit of ``root``'s edits on ``parent`` (None: none; a list: a merge's parents),
        with every new object it needs. The one place commits are made: its message ends in
        the provenance trailers (``made_by``, default ``author``; this handle's machine and run)."""
        objects: list[ShaFile] = []
        tree = root.write(objects)
        if tree is None:  # everything deleted: git still wants a tree
            empty = Tree()
            objects.append(empty)
            tree = empty.id
        commit = Commit()
        commit.tree = ObjectID(tree)
        parents = [] if parent is None else parent if isinstance(parent, list) else [parent]
        commit.parents = [ObjectID(p) for p in parents]
        commit.author = commit.committer = identity(author)
        commit.author_time = commit.commit_time = int(time.time())
        commit.author_timezone = commit.commit_timezone = 0
        commit.encoding = b"UTF-8"
        who = author if made_by is None else check_value(made_by, "made_by")
        stamp = Provenance(who, self.machine, self.run)
        commit.message = stamp.message(message).encode("utf-8") + b"\n"
        objects.append(commit)
        return commit, objects

    def write(self, objects: list[ShaFile]) -> None:
        if len(objects) > PACK_THRESHOLD:
            self._write_pack(objects)
        else:
            for obj in objects:
                self._write_loose(obj)
            self._loose_written += len(objects)
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

    @contextmanager
    def writer_lock(self, name: Ref) -> Iterator[None]:
        """Be the one blocksync writer of ref ``name`` for the ``with`` block.

        The ref moves by compare-and-swap whatever happens; this lock is about progress. A
        commit of thousands of blocks takes a second to build, a busy agent commits every few
        milliseconds: by compare-and-swap alone the big one loses every race and never lands.
        Writers of one ref take turns instead (``flock``, released by the kernel if the holder
        dies), each reading the head under the lock. After :data:`WRITER_WAIT` seconds a
        writer goes on without the lock (compare-and-swap still refuses a lost update).
        """
        lock = self.path / ("blocksync-" + name.decode().replace("/", "-") + ".lock")
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        try:
            deadline = time.monotonic() + deadlines.left(WRITER_WAIT)
            pause = 0.001
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError as exc:
                    if exc.errno not in (errno.EAGAIN, errno.EACCES):
                        raise
                if time.monotonic() >= deadline:
                    break
                time.sleep(pause)
                pause = min(pause * 2, 0.05)
            yield
        finally:
            os.close(fd)

    def attempts(self, name: Ref) -> Iterator[int]:
        """The attempts at a compare-and-swap of ``name``, numbered from 1, each after the first
        after a short random pause (growing); once :data:`MAX_ATTEMPTS` lost their race,
        :meth:`gave_up` is raised. The loop of :meth:`commit_with_retry`, the one way a commit
        moves a ref (remote pulls, which fetch between tries, keep their own bound).
        """
        for attempt in range(1, MAX_ATTEMPTS + 1):
            if attempt > 1:
                time.sleep(random.uniform(0, min(0.05, 0.001 * 2**attempt)))
            yield attempt
        raise self.gave_up(name, MAX_ATTEMPTS)

    def gave_up(self, name: Ref, attempts: int) -> ConcurrentUpdate:
        """The error of a compare-and-swap of ``name`` that lost ``attempts`` races in a row;
        it names the ref's lock file when one is left behind (a hung or killed writer)."""
        lock = self.path / (name.decode() + ".lock")
        hint = (
            f"{lock} stays locked: another writer hangs, or a killed one left it behind; "
            "remove it if no blocksync process is running"
            if lock.exists()
            else ""
        )
        return ConcurrentUpdate(name.decode(), attempts, hint)

    def commit_with_retry(
        self,
        ref: Ref,
        build: Callable[[bytes | None], Draft | None],
        *,
        take_turns: bool = False,
        ready: Callable[[], None] | None = None,
    ) -> tuple[bytes | None, Commit | None]:
        """Move ``ref`` to a commit of what ``build(head)`` makes of it, by compare-and-swap.

        ``build`` gets the ref's commit (None: no ref yet) and stages its changes on it, or
        returns None when they change nothing; after a lost race it runs again on the ref as
        the winner left it (so it replays every change there, re-checking its preconditions).
        Returns (the commit built on, the new commit; None when nothing changed). After
        :data:`MAX_ATTEMPTS` lost races, :class:`~blocksync.errors.ConcurrentUpdate`.
        ``take_turns``: writers of ``ref`` wait for each other first (:meth:`writer_lock`).
        ``ready``: called once before the ref first moves, to wait for what the new commit
        relies on (its objects are written meanwhile); an error from it moves nothing.
        """
        with self.writer_lock(ref) if take_turns else nullcontext():
            for _ in self.attempts(ref):
                head = self.ref(ref)
                draft = build(head)
                if draft is None:
                    return head, None
                commit, more = self.commit_objects(
                    draft.root, head, draft.author, draft.message, draft.made_by
                )
                self.write(draft.objects + more)
                if ready is not None:
                    ready()
                    ready = None
                if self.swap_ref(ref, head, commit.id):
                    break
            else:
                raise AssertionError("unreachable: attempts() raises when they run out")
        self._maybe_pack()
        return head, commit

    def _maybe_pack(self) -> None:
        """Every :data:`AUTO_CHECK_EVERY` loose objects this handle wrote (a process that
        writes for hours and never closes its workspace), pack them if the store is over its
        limit (:func:`blocksync.store.pack.auto_pack`; a directory listing when it is not)."""
        if self._loose_written < AUTO_CHECK_EVERY:
            return
        self._loose_written = 0
        if pack.after_write(self.path, self.durable) is not None:
            with suppress(AttributeError):
                self.repo.object_store._update_pack_cache()

    def diff_trees(
        self, old: bytes | None, new: bytes | None, depth: int = 1, under: tuple[bytes, ...] = ()
    ) -> Iterator[tuple[tuple[bytes, ...], Entry | None, Entry | None]]:
        """The entries ``depth`` names below trees ``old`` and ``new`` (None: empty) that
        differ, by path (names below them, sorted), each (mode, sha) or None where absent.

        O(what changed): a subtree both hold alike is not read. ``under`` is where the two
        trees sit, for the error about a file where a folder belongs.
        """
        if old == new:
            return
        before = {} if old is None else {e.path: (e.mode, e.sha) for e in self.tree(old).items()}
        after = {} if new is None else {e.path: (e.mode, e.sha) for e in self.tree(new).items()}
        for name in sorted(before.keys() | after.keys()):
            was, now = before.get(name), after.get(name)
            if was == now:
                continue
            path = (*under, name)
            if depth == 1:
                yield path, was, now
            else:
                subtrees = (self.subtree(path, was), self.subtree(path, now))
                yield from self.diff_trees(*subtrees, depth - 1, path)

    def subtree(self, path: tuple[bytes, ...], entry: Entry | None) -> bytes | None:
        """The tree the entry at ``path`` names (None: no entry); RepositoryCorrupt if the
        entry is a file."""
        if entry is None:
            return None
        if entry[0] != TREE_MODE:
            where = b"/".join(path).decode("utf-8", "backslashreplace")
            raise RepositoryCorrupt(str(self.path), f"{where} is a file where a folder belongs")
        return entry[1]

    def _write_pack(self, objects: list[ShaFile]) -> None:
        """Write ``objects`` as one pack (no deltas) with its index, as ``git index-pack``
        would place them: the pack, then the index under the same name, each written to a temp
        file and renamed; a reader sees a pack only once its index is there.

        Each object is compressed and written to the temp file as it comes, so the pack is
        never held in memory (a first sync of 100,000 files writes a pack of ~70 MB): what is
        kept is its index entries. Done here rather than with dulwich's ``add_objects``, which
        writes the pack and then reads every object back to index it, or its
        ``write_pack_objects``, which returns the whole pack as chunks.
        """
        unique = list({obj.id: obj for obj in objects}.values())
        folder = self.path / "objects" / "pack"
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f"tmp_pack_{os.getpid()}_{random.getrandbits(48):012x}"
        try:
            entries, pack_sha = self._stream_pack(tmp, unique)
            base = folder / f"pack-{pack_sha.hex()}"
            pack_path, idx_path = base.with_suffix(".pack"), base.with_suffix(".idx")
            if idx_path.exists() and pack_path.exists():
                tmp.unlink()  # the very same objects were written before (named by checksum)
                return
            os.replace(tmp, pack_path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        entries.sort()
        self._write_file(idx_path, [pack_index(entries, pack_sha)])
        if self.durable:
            fd = os.open(folder, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        with suppress(AttributeError):  # let dulwich see it now, not on its first miss
            self.repo.object_store._update_pack_cache()
        _used_first(self.repo.object_store)  # the newest pack: the likeliest to be read next

    def _stream_pack(
        self, path: Path, objects: list[ShaFile]
    ) -> tuple[list[tuple[bytes, int, int]], bytes]:
        """Write ``objects`` (no two alike) to ``path`` as a pack of whole objects (git's pack
        format, version 2); its index entries (binary id, offset, crc32) and its checksum."""
        digest = hashlib.sha1()
        entries: list[tuple[bytes, int, int]] = []
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
        with os.fdopen(fd, "wb", buffering=1 << 20) as out:
            head = b"PACK" + struct.pack(">LL", 2, len(objects))
            digest.update(head)
            out.write(head)
            offset = len(head)
            unhex = binascii.a2b_hex
            for obj in objects:
                raw = obj.as_raw_string()
                record = _pack_header(obj.type_num, len(raw)) + deflate(raw, obj.type_num)
                entries.append((unhex(obj.id), offset, zlib.crc32(record)))
                digest.update(record)
                out.write(record)
                offset += len(record)
            checksum = digest.digest()
            out.write(checksum)
            out.flush()
            if self.durable:
                os.fsync(out.fileno())
        return entries, checksum

    def _write_file(self, path: Path, chunks: list[bytes]) -> None:
        """Write a read-only file whole: to a unique temp file in its folder, then renamed."""
        tmp = path.with_name(f"tmp_pack_{os.getpid()}_{random.getrandbits(48):012x}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
        try:
            try:
                data = memoryview(chunks[0] if len(chunks) == 1 else b"".join(chunks))
                while data:
                    data = data[os.write(fd, data) :]
                if self.durable:
                    os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def _write_loose(self, obj: ShaFile) -> None:
        """Write one loose object as git does: compressed to a unique temp file, renamed.

        Leaner than dulwich's ``add_object`` (no per-object mkdir, no lock file: two writers
        of one object write the same bytes, so either rename may win), which halves the cost
        of a single-block commit.
        """
        hexsha = obj.id.decode("ascii")
        folder = f"{self._root}/objects/{hexsha[:2]}"
        path = f"{folder}/{hexsha[2:]}"
        try:
            os.utime(path)  # present: refresh it so a concurrent `git gc` keeps it
            return
        except FileNotFoundError:
            pass
        raw = obj.as_raw_string()
        data = deflate(object_header(obj.type_num, len(raw)) + raw, obj.type_num)
        tmp = f"{folder}/tmp_obj_{os.getpid()}_{random.getrandbits(48):012x}"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
        except FileNotFoundError:
            with suppress(FileExistsError):
                os.mkdir(folder)
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
            with suppress(FileNotFoundError):
                os.unlink(tmp)
            raise


def pack_index(entries: list[tuple[bytes, int, int]], pack_sha: bytes) -> bytes:
    """The version 2 index of a pack (git's ``.idx``) of ``entries`` (binary id, offset, crc32;
    sorted by id) whose checksum is ``pack_sha``: the bytes dulwich's ``write_pack_index``
    writes, each table in one call instead of a write per entry."""
    counts = [0] * 256
    for name, _, _ in entries:
        counts[name[0]] += 1
    fanout = list(itertools.accumulate(counts))
    # an offset past 2 GiB is in a table of 8-byte ones, pointed to from the 4-byte one
    large = [offset for _, offset, _ in entries if offset >= 1 << 31]
    at = itertools.count(1 << 31)
    small = [offset if offset < 1 << 31 else next(at) for _, offset, _ in entries]
    n = len(entries)
    body = b"".join(
        [
            b"\377tOc" + struct.pack(">L", 2),
            struct.pack(">256L", *fanout),
            b"".join([name for name, _, _ in entries]),
            struct.pack(f">{n}L", *[crc for _, _, crc in entries]),
            struct.pack(f">{n}L", *small),
            struct.pack(f">{len(large)}Q", *large),
            pack_sha,
        ]
    )
    return body + hashlib.sha1(body).digest()


def _used_first(store: object) -> None:
    """Make the pack dulwich last found an object in (or opened) the first it looks in next.

    dulwich tries its packs in the order it opened them, and loose objects only once every
    pack missed: with the packs of many reconcile runs, each read of an object probed most of
    them. git keeps its packs most recently used first (``find_pack_entry``); this does the
    same with dulwich's own order, so its lookup (its rescans, its handling of a pack removed
    meanwhile) stays as it is. Private attributes of dulwich: when they are not there (another
    version), lookups keep dulwich's order.
    """
    cache = getattr(store, "_pack_cache", None)
    used = getattr(store, "_pack_access_order", None)
    if not isinstance(cache, dict) or not isinstance(used, list) or not used:
        return
    name = used[-1]
    first = next(iter(cache), None)
    if first is None or first == name or name not in cache:
        return
    reordered = {name: cache[name]}
    reordered.update(cache)
    # one new dict, assigned at once: a lookup under way iterates a snapshot of the old one
    store._pack_cache = reordered  # type: ignore[attr-defined]


def _pack_header(type_num: int, size: int) -> bytes:
    """The header of a whole object in a pack: its type and size, 7 bits a byte after the first
    4, low bits first (git's pack format)."""
    out = bytearray()
    byte = (type_num << 4) | (size & 0x0F)
    size >>= 4
    while size:
        out.append(byte | 0x80)
        byte = size & 0x7F
        size >>= 7
    out.append(byte)
    return bytes(out)


class TreeEditor:
    """A lazily loaded, editable view of one git tree; only edited subtrees are rewritten."""

    def __init__(self, git: GitStore, sha: bytes | None) -> None:
        self._git = git
        self.sha = sha
        #: the tree ``sha`` names, once read: a transaction's reads and its commit ask the
        #: same folders again, and at 100,000 blocks the store's cache has long dropped them
        self._tree: Tree | None = None
        self._entries: dict[bytes, tuple[int, bytes]] | None = None
        self._children: dict[bytes, TreeEditor] = {}
        self._dirty = False

    def _read(self) -> Tree | None:
        if self._tree is None and self.sha is not None:
            self._tree = self._git.tree(self.sha)
        return self._tree

    def entries(self) -> dict[bytes, tuple[int, bytes]]:
        if self._entries is None:
            tree = self._read()  # by name, unsorted: sorting is write()'s job
            # copied in one call (an entry at a time was a tenth of a commit's cost)
            self._entries = {} if tree is None else dict(tree._entries)
        return self._entries

    def get(self, name: bytes) -> tuple[int, bytes] | None:
        """The entry ``name`` as :meth:`entries` has it, without listing a tree not edited yet."""
        if self._entries is not None:
            return self._entries.get(name)
        tree = self._read()
        if tree is None:
            return None
        try:
            mode, sha = tree[name]
        except KeyError:
            return None
        return mode, sha

    def lookup(self, path: tuple[bytes, ...]) -> bytes | None:
        """The id ``path`` (names below this tree) names; None if nothing is there."""
        entry = self.at(path[:-1]).get(path[-1])
        return None if entry is None else entry[1]

    def at(self, path: tuple[bytes, ...]) -> TreeEditor:
        """The subtree ``path`` (names below this tree; empty if absent), as :meth:`child`."""
        folder = self
        for name in path:
            folder = folder.child(name)
        return folder

    def child(self, name: bytes) -> TreeEditor:
        """The subtree ``name`` (empty if absent), to read or edit; written back by write()."""
        if name not in self._children:
            entry = self.get(name)
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

    def put(self, path: tuple[bytes, ...], entry: tuple[int, bytes] | None) -> bool:
        """Make ``path`` (names below this tree) hold ``entry`` (mode, sha; None: nothing);
        whether that changed anything."""
        folder = self.at(path[:-1])
        if folder.get(path[-1]) == entry:
            return False
        if entry is None:
            folder.remove(path[-1])
        else:
            folder.set(path[-1], *entry)
        return True

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
                tree = tree_of(entries)
                out.append(tree)
                self.sha = tree.id
            self._tree = None  # of the old id
        return self.sha


def tree_of(entries: dict[bytes, tuple[int, bytes]]) -> Tree:
    """The tree of ``entries`` (name -> (mode, hex sha)), exactly as dulwich serializes it
    (git's order: a folder sorts as if its name ended in "/"), built from its bytes at once
    instead of entry by entry (a folder of ten thousand blocks is rewritten by every commit)."""

    def order(item: tuple[bytes, tuple[int, bytes]]) -> bytes:
        return item[0] + b"/" if item[1][0] & 0o170000 == TREE_MODE else item[0]

    unhex = binascii.a2b_hex
    raw = b"".join(
        [
            b"%04o %s\0%s" % (mode, name, unhex(sha))
            for name, (mode, sha) in sorted(entries.items(), key=order)
        ]
    )
    if _TREE_SLOTS:
        # the tree as parsing ``raw`` would make it, without parsing back what was just
        # written (a third of a commit's tree writing): dulwich's own fields, set as its
        # deserializer sets them (a dulwich without them parses, below)
        tree = Tree()
        tree._entries = cast(dict[bytes, tuple[int, ObjectID]], dict(entries))  # hex ids
        tree._chunked_text = [raw]
        tree._needs_serialization = False
        return tree
    parsed = Tree.from_raw_string(Tree.type_num, raw)
    assert isinstance(parsed, Tree)
    return parsed


#: does dulwich's Tree keep its entries, serialized text and state in these fields?
_TREE_SLOTS = all(
    hasattr(Tree(), field) for field in ("_entries", "_chunked_text", "_needs_serialization")
)
