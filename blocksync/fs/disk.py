"""Disk I/O confined to one folder: nothing read, written, renamed or removed ever leaves it.

Every operation is relative to a directory descriptor, and every folder on the way down from
the root is opened from its parent's descriptor with ``O_DIRECTORY | O_NOFOLLOW``: the kernel
resolves one name at a time, never a symbolic link. Descriptors of folders are kept for the
call, and before a write or a delete each level is checked to still be the entry it was opened
as (device and inode): a folder swapped for a link to elsewhere while a run writes (``mv
notes/sub away && ln -s ../outside notes/sub``) fails the operations under it (``ELOOP``), and
the folder moved away gets no more writes. Resolving real paths once and writing by name later
(the race this replaces) let every write after the swap land outside.

Only regular files are ever opened: an entry is ``lstat``-ed first (unless a scan of this call
just listed it as one), then opened ``O_NONBLOCK | O_NOFOLLOW | O_NOCTTY`` and ``fstat``-ed, so
a FIFO, socket or device -- there from the start or swapped in meanwhile -- is a reason to skip
the path, never a hang or a side effect.

Temp files of atomic writes are named ``.blocksync-<pid>-<hex>.tmp``: a listing leaves them
out, and removes those whose writer is gone (a killed run), so none outlive the next run.
Version-control metadata (``.git``, ``.hg``, ``.svn``, ``.jj``, ``.bzr``, in any letter case)
and any folder that is the store itself are never listed, whatever the patterns say: writing
an agent's text into ``.git/config`` would run its commands at the next ``git status``.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import secrets
import stat
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from stat import S_ISREG
from types import TracebackType
from typing import Self

from . import flush
from .safefile import kind_of

__all__ = [
    "NOT_A_FILE",
    "VCS_FOLDERS",
    "FileStat",
    "Folder",
    "Listing",
    "file_stat",
    "is_vcs_path",
    "printable_path",
    "store_overlap",
]

#: Folders of version-control systems: never synced, whatever the patterns say.
VCS_FOLDERS = frozenset({".git", ".hg", ".svn", ".jj", ".bzr"})
TEMP_PREFIX = ".blocksync-"
TEMP_SUFFIX = ".tmp"
#: ``.blocksync-<pid>-<hex>.tmp``, or ``.blocksync-<hex>.tmp`` as older versions named them
_TEMP = re.compile(r"^\.blocksync-(?:(\d+)-)?[0-9a-f]{16}\.tmp$")
#: a temp file whose writer cannot be told (older name, another machine's pid) is stale after
STALE_TEMP_SECONDS = 3600
#: directory descriptors kept open per folder (each reconcile call opens one Folder)
DIR_CACHE = 64
#: folders one :meth:`Folder.stage` call writes temp files into (a descriptor kept for each)
STAGE_FOLDERS = 256
#: temp files (or folders) fsynced together, their descriptors open meanwhile
STAGE_CHUNK = 256
_READ_CHUNK = 1 << 20

_NOFOLLOW = os.O_NOFOLLOW | os.O_CLOEXEC
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | _NOFOLLOW
_READ_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | _NOFOLLOW

#: markers :meth:`Folder.digest` gives what is no regular file: no sha256 hex equals them
SYMLINK = "symlink"
NOT_REGULAR = "not-a-regular-file"
NOT_A_FILE = frozenset({SYMLINK, NOT_REGULAR})


def is_temp_name(name: str) -> bool:
    return name.startswith(TEMP_PREFIX) and name.endswith(TEMP_SUFFIX)


def is_vcs_path(rel: str) -> bool:
    """Does ``rel`` (``/``-separated) lie in a version-control folder (any letter case)?"""
    return any(part.casefold() in VCS_FOLDERS for part in rel.split("/"))


def store_overlap(folder: Path, store_root: Path) -> str | None:
    """Why ``folder`` may not be synced, being the store folder, inside it or around it
    (None: it may). Syncing the store would make its configuration, refs and lock blocks an
    agent can edit, and never converge."""
    store = Path(store_root).resolve()
    folder = Path(folder).resolve()
    if folder == store or folder.is_relative_to(store):
        return f"is the store folder {store} or inside it: blocksync never syncs its own store"
    if store.is_relative_to(folder):
        return (
            f"contains the store folder {store}: blocksync never syncs its own store (sync a "
            "folder beside the store, or keep the store elsewhere)"
        )
    return None


def skip_reason(mode: int) -> str:
    """Why the entry of ``st_mode`` -- no regular file -- is not synced, in a user's words."""
    if stat.S_ISDIR(mode):
        return "a folder, not a file"
    return f"{kind_of(mode) or 'not a regular file'}: only regular files are synced"


@dataclass
class _Staged:
    """A temp file :meth:`Folder.stage` wrote ahead of a write."""

    tmp: str  # its name, in the folder
    data: bytes
    folder: tuple[int, int]  # (st_dev, st_ino) of the folder it is in


#: what a stat cache compares of a file: (size, mtime_ns, ctime_ns, inode)
FileStat = tuple[int, int, int, int]


def file_stat(info: os.stat_result) -> FileStat:
    """The part of a stat result that changes whenever a file's bytes do (see
    :mod:`blocksync.index.statcache` for when it may be trusted)."""
    return (info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_ino)


@dataclass
class Listing:
    """What a scan of a folder found below its root."""

    files: list[str] = field(default_factory=list)  # regular files, "/"-separated
    #: entries that are no regular file, or whose name is not UTF-8, and why
    odd: list[tuple[str, str]] = field(default_factory=list)
    #: folders that could not be listed, and why: what lies below them is unknown, not gone
    unlisted: list[tuple[str, str]] = field(default_factory=list)
    #: the :func:`file_stat` of each regular file as listed (None: a scan not asked for them),
    #: but those a scan was told it knows already (:meth:`Folder.scan`'s ``known``)
    stats: dict[str, FileStat] | None = None

    def unknown(self, rel: str) -> str | None:
        """Why nothing can be said of ``rel`` (it lies in a folder that could not be listed)."""
        for folder, reason in self.unlisted:
            if rel.startswith(folder + "/"):
                return f"its folder {folder!r} cannot be listed ({reason}): left as it is"
        return None


def printable_path(rel: str) -> str:
    """``rel`` as text that can be shown and stored: bytes that are not UTF-8 (lone surrogates
    from the OS) as ``\\xNN`` escapes."""
    return rel.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:  # os gives undecodable bytes as lone surrogates
        return False
    return True


def _writer_gone(name: str, info: os.stat_result) -> bool:
    """Is the temp file ``name`` left by a writer that no longer runs? By its pid when this
    system knows it is gone; else (an older name, a pid alive again, another machine's) by
    its age."""
    match = _TEMP.match(name)
    if match is None:
        return False
    if match.group(1) is not None:
        pid = int(match.group(1))
        if pid == os.getpid():
            return False  # this process is writing it
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except (PermissionError, OverflowError):
            pass
    return time.time() - info.st_mtime > STALE_TEMP_SECONDS


def _same(fd: int, name: str, parent: int) -> bool:
    """Is the folder ``fd`` still the entry ``name`` of ``parent`` (not moved, not swapped)?"""
    try:
        now = os.stat(name, dir_fd=parent, follow_symlinks=False)
    except OSError:
        return False
    then = os.fstat(fd)
    return (now.st_dev, now.st_ino) == (then.st_dev, then.st_ino)


def _open_dir(name: str, parent: int) -> int:
    """Open the folder ``name`` in ``parent``, never through a link (``ELOOP`` then)."""
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=parent)
    except NotADirectoryError:
        # O_NOFOLLOW | O_DIRECTORY says ENOTDIR for a link too: tell the two apart
        if stat.S_ISLNK(os.stat(name, dir_fd=parent, follow_symlinks=False).st_mode):
            raise OSError(errno.ELOOP, "a symbolic link where a folder should be", name) from None
        raise


class Folder:
    """One root folder, opened for the ``with`` block; every path below it is ``/``-separated
    and relative to it. ``avoid``: ``(st_dev, st_ino)`` of folders never entered (the store)."""

    def __init__(self, root: Path, *, avoid: Iterable[tuple[int, int]] = ()) -> None:
        self.root = Path(root)
        self._avoid = frozenset(avoid)
        self._fd = os.open(self.root, _DIR_FLAGS)  # the root itself: no link either
        self._dirs: OrderedDict[tuple[str, ...], int] = OrderedDict()
        self._written: set[tuple[str, ...]] = set()
        self._staged: dict[str, _Staged] = {}  # rel -> its temp file, written ahead
        #: the folders holding staged temp files, by (st_dev, st_ino): each one's descriptor,
        #: so a temp file no write took is removed even from a folder moved away meanwhile
        self._stage_dirs: dict[tuple[int, int], int] = {}
        #: staged temp files whose fsyncs are under way (:meth:`stage` without ``wait``)
        self._flushing: list[tuple[flush.Flushing, list[tuple[str, _Staged, int]]]] = []
        #: folder fsyncs under way (:meth:`sync` without ``wait``), on descriptors of their own
        self._syncing: list[tuple[flush.Flushing, list[int]]] = []
        #: descriptors of written folders dropped from the cache, kept for sync() to fsync
        self._evicted: list[int] = []

    def close(self) -> None:
        try:
            self.discard()
            for parts in list(self._dirs):
                self._close_dir(parts)
            self._sync_evicted()
        finally:
            try:
                self.synced()  # folder fsyncs started and not waited for (their own fds)
            finally:
                if self._fd >= 0:
                    os.close(self._fd)
                    self._fd = -1

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- folders --------------------------------------------------------------------------

    def _dir(self, parts: tuple[str, ...], create: bool = False, verify: bool = False) -> int:
        """The descriptor of the folder ``parts`` below the root, each step opened without
        following links (``create``: missing folders are made). ``verify``: a descriptor kept
        from earlier is used only if its folder is still where it was opened (each level
        checked by device and inode): a write never lands in a folder moved out of the root
        meanwhile. OSError: ``ENOENT`` (missing), ``ENOTDIR`` (a file on the way), ``ELOOP``
        (a link on the way), ``EACCES``, ..."""
        if not parts:
            return self._fd
        parent = self._dir(parts[:-1], create, verify)
        name = parts[-1]
        fd = self._dirs.get(parts)
        if fd is not None:
            if verify and not _same(fd, name, parent):
                self._forget(parts)
            else:
                self._dirs.move_to_end(parts)
                return fd
        try:
            fd = _open_dir(name, parent)
        except FileNotFoundError:
            if not create:
                raise
            try:
                os.mkdir(name, 0o777, dir_fd=parent)
            except FileExistsError:
                pass  # made meanwhile: opened below like any other (a link still fails)
            fd = _open_dir(name, parent)
        info = os.fstat(fd)
        if (info.st_dev, info.st_ino) in self._avoid:
            os.close(fd)
            raise OSError(errno.EACCES, "it is the store folder", "/".join(parts))
        self._dirs[parts] = fd
        if len(self._dirs) > DIR_CACHE:
            self._close_dir(next(iter(self._dirs)))
        return fd

    def _forget(self, parts: tuple[str, ...]) -> None:
        """Close the kept descriptors of ``parts`` and every folder below it."""
        for kept in [p for p in self._dirs if p[: len(parts)] == parts]:
            self._close_dir(kept)

    def _close_dir(self, parts: tuple[str, ...]) -> None:
        """Close a kept descriptor; a folder written to is fsynced first (it may have moved:
        its descriptor is the only way to what was written)."""
        fd = self._dirs.pop(parts)
        if parts not in self._written:
            os.close(fd)
            return
        # still to fsync: with the other folders, by sync() (a batch: now)
        self._written.discard(parts)
        self._evicted.append(fd)
        if len(self._evicted) >= STAGE_CHUNK:
            self._sync_evicted()

    def _sync_evicted(self) -> None:
        evicted, self._evicted = self._evicted, []
        try:
            flush.fsync_all(evicted)
        finally:
            for fd in evicted:
                os.close(fd)

    def _parent(self, rel: str, create: bool = False, verify: bool = False) -> tuple[int, str]:
        *folders, name = rel.split("/")
        return self._dir(tuple(folders), create, verify), name

    @staticmethod
    def _why_not(exc: OSError, rel: str) -> str | None:
        """The reason a folder of ``rel`` cannot be entered; None when there is no such file."""
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            return None
        if exc.errno == errno.ELOOP:
            return "one of its folders is a symbolic link: only real folders are synced"
        return f"cannot open its folder: {exc.strerror or exc}"

    # -- reading --------------------------------------------------------------------------

    def _open_regular(
        self, parent: int, name: str, listed: bool = False
    ) -> tuple[int | None, os.stat_result | str | None]:
        """A descriptor of the regular file ``name`` and its ``fstat`` (None, None: there is
        none; None, reason: it is something else). ``listed``: a scan just saw a regular file
        there, so the ``lstat`` before the open is spared (the open is non-blocking and the
        ``fstat`` after it decides anyway: what was swapped in meanwhile is still refused)."""
        if not listed:
            try:
                info = os.stat(name, dir_fd=parent, follow_symlinks=False)
            except (FileNotFoundError, NotADirectoryError):
                return None, None
            if not stat.S_ISREG(info.st_mode):
                return None, skip_reason(info.st_mode)
        try:
            fd = os.open(name, _READ_FLAGS, dir_fd=parent)
        except (FileNotFoundError, NotADirectoryError):
            return None, None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                return None, skip_reason(stat.S_IFLNK)  # swapped for a link since the lstat
            return None, f"cannot read it: {exc.strerror or exc}"
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):  # swapped since the lstat
            os.close(fd)
            return None, skip_reason(info.st_mode)
        return fd, info

    def read(self, rel: str, *, listed: bool = False) -> tuple[bytes | None, str | None]:
        """(the file's bytes, None); (None, None) if there is no file; (None, reason) if it
        cannot be synced (not a regular file, a folder on the way is a link, unreadable).
        ``listed``: a scan of this call saw a regular file at ``rel``."""
        data, reason, _ = self.read_stat(rel, listed=listed)
        return data, reason

    def read_stat(
        self, rel: str, *, listed: bool = False
    ) -> tuple[bytes | None, str | None, os.stat_result | None]:
        """As :meth:`read`, with the ``fstat`` of the file taken before its bytes were read
        (so a change made while reading shows as a newer stat, never as an older one)."""
        try:
            parent, name = self._parent(rel)
        except OSError as exc:
            return None, self._why_not(exc, rel), None
        fd, found = self._open_regular(parent, name, listed)
        if fd is None:
            assert not isinstance(found, os.stat_result)
            return None, found, None
        assert isinstance(found, os.stat_result)
        try:
            # sized to the file (a small file's read is not a megabyte's allocation), then on
            # to the end, wherever it is now
            chunks = [os.read(fd, min(found.st_size + 1, _READ_CHUNK))]
            if chunks[0]:
                while chunk := os.read(fd, _READ_CHUNK):
                    chunks.append(chunk)
        except OSError as exc:
            return None, f"cannot read it: {exc.strerror or exc}", None
        finally:
            os.close(fd)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks), None, found

    def _digest_at(self, parent: int, name: str) -> str | None:
        fd, reason = self._open_regular(parent, name)
        if fd is None:
            if reason is None:
                return None
            assert isinstance(reason, str)
            return SYMLINK if reason.startswith("a symbolic link") else NOT_REGULAR
        try:
            digest = hashlib.sha256()
            while chunk := os.read(fd, _READ_CHUNK):
                digest.update(chunk)
            return digest.hexdigest()
        finally:
            os.close(fd)

    def exists(self, rel: str) -> bool:
        """Is there anything at ``rel`` (a file, a link, a FIFO...; a folder on the way that
        cannot be entered counts as something there)?"""
        try:
            parent, name = self._parent(rel)
            os.stat(name, dir_fd=parent, follow_symlinks=False)
        except (FileNotFoundError, NotADirectoryError):
            return False
        except OSError:
            return True
        return True

    def digest(self, rel: str) -> str | None:
        """sha256 hex of the file's bytes; None if there is none. Anything else (a link, a
        folder, a FIFO) gets a marker no content hash equals, so a writer expecting a file
        fails; a folder on the way that cannot be entered raises OSError."""
        try:
            parent, name = self._parent(rel)
        except (FileNotFoundError, NotADirectoryError):
            return None
        return self._digest_at(parent, name)

    # -- writing --------------------------------------------------------------------------

    def write(self, rel: str, data: bytes, expected: str | None) -> bool:
        """Replace ``rel`` with ``data`` if it still holds what ``expected`` says (its sha256
        hex; None: it must not exist); False, writing nothing, if it changed.

        A temp file in the same folder is written and fsynced (or was, by :meth:`stage`), the
        file's hash re-checked, then renamed over it (readers and a killed writer see the old
        content or the new). The check and the rename are not one atomic step: a writer
        slipping in between loses, as with any rename-based editor. An existing file keeps its
        permission bits; a new one gets 0o666 less the umask. Missing folders are made (never
        through a link). The folder is fsynced by :meth:`sync`, once for all files written to
        it.
        """
        parent, name = self._parent(rel, create=True, verify=True)
        tmp = self._take_staged(rel, parent, data)
        if tmp is None:
            tmp, fd = self._temp(parent, name, data)
            try:
                os.fsync(fd)
            except BaseException:
                os.unlink(tmp, dir_fd=parent)
                raise
            finally:
                os.close(fd)
        try:
            if self._digest_at(parent, name) != expected:
                os.unlink(tmp, dir_fd=parent)
                return False
            os.replace(tmp, name, src_dir_fd=parent, dst_dir_fd=parent)
        except BaseException:
            try:
                os.unlink(tmp, dir_fd=parent)
            except OSError:
                pass
            raise
        self._written.add(tuple(rel.split("/")[:-1]))
        return True

    def _temp(self, parent: int, name: str, data: bytes) -> tuple[str, int]:
        """A new temp file in folder ``parent`` holding ``data``, with the permission bits of
        the file ``name`` it is to replace: its name and its descriptor, open (not fsynced)."""
        tmp = f"{TEMP_PREFIX}{os.getpid()}-{secrets.token_hex(8)}{TEMP_SUFFIX}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, 0o666, dir_fd=parent)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            try:
                old = os.stat(name, dir_fd=parent, follow_symlinks=False)
                if stat.S_ISREG(old.st_mode):
                    os.fchmod(fd, stat.S_IMODE(old.st_mode))
            except FileNotFoundError:
                pass
        except BaseException:
            os.close(fd)
            try:
                os.unlink(tmp, dir_fd=parent)
            except OSError:
                pass
            raise
        return tmp, fd

    def stage(self, writes: Iterable[tuple[str, bytes]], *, wait: bool = True) -> None:
        """Write ahead the temp files of the :meth:`write` calls to come, (rel, data) each, and
        fsync them together (:func:`blocksync.fs.flush.fsync_all`: a few journal commits for
        all, not one each), :data:`STAGE_CHUNK` at a time. Not ``wait``: the fsyncs are only
        started; whatever uses a staged file next (its :meth:`write`, :meth:`sync`,
        :meth:`discard`) waits for them first, so the caller may do other work meanwhile.

        Nothing is replaced here: each :meth:`write` of the same rel and data still re-checks
        the file's hash right before renaming its temp file over it. A path that cannot be
        staged (its folder cannot be made, the disk is full; past :data:`STAGE_FOLDERS`
        folders) is left to its write, which meets and reports the problem; temp files no
        write took are removed by :meth:`sync`. A path staged already with the same data is
        left as it is.
        """
        chunk: list[tuple[str, _Staged, int]] = []
        for rel, data in writes:
            known = self._staged.get(rel)
            if known is not None and (known.data is data or known.data == data):
                continue
            try:
                parent, name = self._parent(rel, create=True, verify=True)
                info = os.fstat(parent)
                folder = (info.st_dev, info.st_ino)
                if folder not in self._stage_dirs:
                    if len(self._stage_dirs) >= STAGE_FOLDERS:
                        continue
                    self._stage_dirs[folder] = os.dup(parent)
                tmp, fd = self._temp(parent, name, data)
            except OSError:
                continue
            if known is not None:  # staged with other data: that temp file goes
                self._drop(self._staged.pop(rel))
            staged = self._staged[rel] = _Staged(tmp, data, folder)
            chunk.append((rel, staged, fd))
            if len(chunk) >= STAGE_CHUNK:
                self._flush_staged(chunk, wait)
                chunk = []
        self._flush_staged(chunk, wait)

    def _flush_staged(self, chunk: list[tuple[str, _Staged, int]], wait: bool = True) -> None:
        """fsync (together) and close the temp files of ``chunk`` (not ``wait``: start their
        fsyncs; :meth:`_settle` finishes)."""
        if not chunk:
            return
        self._flushing.append((flush.start([fd for _, _, fd in chunk]), chunk))
        if wait:
            self._settle()

    def _settle(self) -> None:
        """Wait for the fsyncs :meth:`stage` started and close their temp files; an error
        unstages its whole chunk (their writes then write and fsync their own)."""
        pending, self._flushing = self._flushing, []
        for flushing, chunk in pending:
            try:
                flushing.wait()
            except OSError:
                for rel, staged, _ in chunk:
                    if self._staged.get(rel) is staged:
                        del self._staged[rel]
                    self._drop(staged)
            finally:
                for _, _, fd in chunk:
                    os.close(fd)

    def _take_staged(self, rel: str, parent: int, data: bytes) -> str | None:
        """The temp file :meth:`stage` wrote for ``rel``, if it holds ``data`` and sits in
        folder ``parent`` (the one at ``rel`` now: not moved meanwhile); else None (and that
        temp file is removed). Its fsync is done (waited for) before it is handed out."""
        self._settle()
        staged = self._staged.pop(rel, None)
        if staged is None:
            return None
        info = os.fstat(parent)
        if staged.folder == (info.st_dev, info.st_ino) and (
            staged.data is data or staged.data == data
        ):
            return staged.tmp
        self._drop(staged)
        return None

    def _drop(self, staged: _Staged) -> None:
        try:
            os.unlink(staged.tmp, dir_fd=self._stage_dirs[staged.folder])
        except OSError:
            pass  # a later scan removes it

    def discard(self) -> None:
        """Remove the temp files :meth:`stage` wrote that no :meth:`write` took (a write left
        for the next run: a signal came, a file changed meanwhile, its folder moved away)."""
        self._settle()
        staged, self._staged = self._staged, {}
        for item in staged.values():
            self._drop(item)
        folders, self._stage_dirs = self._stage_dirs, {}
        for fd in folders.values():
            os.close(fd)

    def remove(self, rel: str, expected: str) -> bool:
        """Delete ``rel`` if it still holds what ``expected`` says; False if it changed."""
        try:
            parent, name = self._parent(rel, verify=True)
        except (FileNotFoundError, NotADirectoryError):
            return False
        if self._digest_at(parent, name) != expected:
            return False
        os.unlink(name, dir_fd=parent)
        self._written.add(tuple(rel.split("/")[:-1]))
        return True

    def sync(self, *, wait: bool = True) -> None:
        """fsync every folder written to since the last call, once: after all renames into
        it, before anything relies on them being durable (a base advancing); together
        (:func:`blocksync.fs.flush.fsync_all`). Not ``wait``: the fsyncs are started, and
        :meth:`synced` waits for them (so the caller may prepare what relies on them)."""
        self.discard()
        written, self._written = sorted(self._written), set()
        # descriptors of their own: a kept one may be closed (evicted) while they run
        fds: list[int] = []
        try:
            for parts in written:
                fds.append(os.dup(self._fd if not parts else self._dirs[parts]))
        except BaseException:
            for fd in fds:
                os.close(fd)
            raise
        self._syncing.append((flush.start(fds), fds))
        self._sync_evicted()
        if wait:
            self.synced()

    def synced(self) -> None:
        """Wait for the folder fsyncs :meth:`sync` started; the first error, once all are done."""
        pending, self._syncing = self._syncing, []
        errors: list[OSError] = []
        for flushing, fds in pending:
            try:
                flushing.wait()
            except OSError as exc:
                errors.append(exc)
            finally:
                for fd in fds:
                    os.close(fd)
        if errors:
            raise errors[0]

    # -- listing --------------------------------------------------------------------------

    def scan(
        self,
        *,
        recursive: bool = True,
        skip: Callable[[str], bool] | None = None,
        clean_temps: bool = True,
        stats: bool = False,
        known: Mapping[str, FileStat | None] | None = None,
        ordered: bool = True,
    ) -> Listing:
        """Every entry below the root: regular files, odd entries with the reason, folders
        that cannot be listed. ``skip(folder)`` leaves a folder out (exclude patterns);
        version-control folders, the store and temp files are always left out, and temp
        files of writers that are gone are removed (unless not ``clean_temps``). ``stats``:
        each file's :func:`file_stat` too (its ``lstat``, from the folder's descriptor), but
        for the files whose stat is the one ``known`` holds for them: those are unchanged by
        their stat alone, and a caller comparing every stat itself would walk them again.
        ``ordered``: the files sorted (not: in the order found, for a caller making a set)."""
        listing = Listing(stats={} if stats else None)
        same = (known or {}).get
        stack: list[tuple[tuple[str, ...], int]] = [((), os.dup(self._fd))]
        while stack:
            parts, fd = stack.pop()
            prefix = "".join(p + "/" for p in parts)
            try:
                entries = list(os.scandir(fd))
            except OSError as exc:
                listing.unlisted.append((prefix.rstrip("/"), exc.strerror or str(exc)))
                os.close(fd)
                continue
            files, kept = listing.files, listing.stats
            try:
                for entry in entries:
                    name = entry.name
                    if (  # the common case first, without a call: a plain regular file (no
                        # dot file: temp files and version-control entries all start with one)
                        entry.is_file(follow_symlinks=False)
                        and name[0] != "."
                        and (name.isascii() or _utf8(name))
                    ):
                        rel = prefix + name
                        if kept is None:
                            files.append(rel)
                            continue
                        try:
                            info = entry.stat(follow_symlinks=False)
                        except OSError:
                            continue  # gone meanwhile
                        if S_ISREG(info.st_mode):  # not swapped for something else meanwhile
                            found = (
                                info.st_size,
                                info.st_mtime_ns,
                                info.st_ctime_ns,
                                info.st_ino,
                            )
                            if same(rel) != found:
                                kept[rel] = found
                            files.append(rel)
                        continue
                    self._scan_entry(
                        entry, parts, prefix, fd, recursive, skip, clean_temps, listing, stack
                    )
            finally:
                os.close(fd)
        if ordered:
            listing.files.sort()
        return listing

    @staticmethod
    def _stat_into(stats: dict[str, FileStat], entry: os.DirEntry[str], rel: str) -> bool:
        """Keep the listed file's stat; False if it is gone (or no regular file) meanwhile
        (:meth:`scan` does the same inline for plain files: a call per file costs)."""
        try:
            info = entry.stat(follow_symlinks=False)
        except OSError:
            return False
        if not stat.S_ISREG(info.st_mode):
            return False
        stats[rel] = file_stat(info)
        return True

    def _scan_entry(
        self,
        entry: os.DirEntry[str],
        parts: tuple[str, ...],
        prefix: str,
        fd: int,
        recursive: bool,
        skip: Callable[[str], bool] | None,
        clean_temps: bool,
        listing: Listing,
        stack: list[tuple[tuple[str, ...], int]],
    ) -> None:
        name = entry.name
        rel = prefix + name
        if not _utf8(name):
            listing.odd.append((rel, "its name is not UTF-8: it cannot be a label"))
            return
        if entry.is_dir(follow_symlinks=False):
            if name.casefold() in VCS_FOLDERS or not recursive or (skip and skip(rel)):
                return
            try:
                child = _open_dir(name, fd)
            except OSError as exc:
                listing.unlisted.append((rel, exc.strerror or str(exc)))
                return
            info = os.fstat(child)
            if (info.st_dev, info.st_ino) in self._avoid:
                os.close(child)
                return
            stack.append(((*parts, name), child))
        elif entry.is_file(follow_symlinks=False):
            if is_temp_name(name):
                if not clean_temps:
                    return
                try:
                    if _writer_gone(name, entry.stat(follow_symlinks=False)):
                        os.unlink(name, dir_fd=fd)
                except OSError:
                    pass  # gone already, or not ours to remove: left alone
                return
            if name.casefold() in VCS_FOLDERS:
                return  # a `.git` file: a worktree's pointer to its repository
            if listing.stats is None or self._stat_into(listing.stats, entry, rel):
                listing.files.append(rel)
        else:
            try:
                mode = entry.stat(follow_symlinks=False).st_mode
            except OSError:
                return  # gone meanwhile
            if not (stat.S_ISLNK(mode) and name.casefold() in VCS_FOLDERS):
                listing.odd.append((rel, skip_reason(mode)))
