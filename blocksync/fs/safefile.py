"""Files blocksync creates or rewrites itself -- run.lock, blocksync.toml, index.db, key files --
opened without ever following a symbolic link.

A link planted at one of those names (``store/run.lock -> ~/.bashrc``) would otherwise turn the
next run's truncate or write into a write to the link's target. So every such file is opened with
``O_NOFOLLOW`` (and ``O_EXCL`` when it is new), checked to be a regular file once open, and
replaced by renaming a fresh temp file over it, which replaces a name and never writes through
one; anything else at the name is :class:`~blocksync.errors.UnsafeFile`, naming the path and what
is there. Reading a link (a symlinked blocksync.toml in a dotfiles setup) stays allowed: only
writes are refused.
"""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from contextlib import suppress
from pathlib import Path

from blocksync.errors import UnsafeFile

#: what a non-regular file is called in messages, by its st_mode file type
_KINDS = {
    stat.S_IFLNK: "a symbolic link",
    stat.S_IFDIR: "a folder",
    stat.S_IFIFO: "a FIFO",
    stat.S_IFSOCK: "a socket",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
}


def kind_of(mode: int) -> str | None:
    """What a file of ``st_mode`` is, for a message; None for a regular file."""
    if stat.S_ISREG(mode):
        return None
    return _KINDS.get(stat.S_IFMT(mode), "not a regular file")


def check_regular(path: Path) -> None:
    """UnsafeFile unless ``path`` is absent or a regular file (looked at, not followed)."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    kind = kind_of(mode)
    if kind is not None:
        raise UnsafeFile(str(path), kind)


def open_regular(path: Path, flags: int, mode: int = 0o644, *, single_link: bool = False) -> int:
    """``os.open(path, flags | O_NOFOLLOW | O_NONBLOCK)`` that only ever returns a descriptor of
    a regular file (a FIFO is opened without blocking, then refused); ``single_link`` also
    refuses a file with other hard links (one that is truncated in place, like run.lock)."""
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, mode)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.EISDIR, errno.ENXIO):
            check_regular(path)  # names what is there
        raise
    try:
        st = os.fstat(fd)
        kind = kind_of(st.st_mode)
        if kind is None and single_link and st.st_nlink > 1:
            kind = f"a file with {st.st_nlink - 1} other hard link(s)"
        if kind is not None:
            raise UnsafeFile(str(path), kind)
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def create_new(path: Path, data: bytes, mode: int = 0o644) -> bool:
    """Write ``data`` into a new file ``path`` (``O_CREAT | O_EXCL``: never a link's target);
    False, and nothing written, when something is at ``path`` already."""
    try:
        fd = os.open(
            path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode
        )
    except FileExistsError:
        return False
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return True


def write_atomic(
    path: Path, data: bytes | bytearray, mode: int | None = None, *, exclusive: bool = False
) -> None:
    """Replace ``path`` by a file holding ``data``: a temp file in its folder (``O_EXCL``, with
    ``mode`` -- default: the old file's, else 0644 -- from its creation on), fsynced, renamed
    over it, so readers see the old file or the new one. UnsafeFile if ``path`` is a link or
    not a regular file: a rename would replace the link, silently unlinking a file the user
    keeps elsewhere. ``exclusive`` refuses an existing ``path`` (FileExistsError) instead."""
    check_regular(path)
    if mode is None:
        try:
            mode = stat.S_IMODE(os.lstat(path).st_mode)
        except FileNotFoundError:
            mode = 0o644
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        if exclusive:
            os.link(tmp, path)  # fails on anything at path, a dangling link included
        else:
            os.replace(tmp, path)
    finally:
        with suppress(FileNotFoundError):
            os.unlink(tmp)  # the link's temp name, or what a failure left
