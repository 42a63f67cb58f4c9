"""Packing the store's git repository: what ``git gc --auto`` and ``git gc`` do, for blocksync.

A single block update writes a handful of loose objects; after 20,000 of them ``git log --
<block path>`` reads 120,000 files. Two operations fix that:

* :func:`auto_pack` -- past :data:`AUTO_LIMIT` loose objects (git's own ``gc.auto``, estimated as
  git does by counting ONE fan-out folder, ``objects/17``, and multiplying by 256: a directory
  listing, so checking after every write costs nothing measurable), pack them; past
  :data:`AUTO_PACK_LIMIT` packs (git's ``gc.autoPackLimit``) fold the packs into one. Nothing is
  pruned: it needs no walk of the history and is safe beside any writer.
* :func:`collect` (``blocksync gc``, ``ws.gc()``) -- one pack of every object any ref reaches
  (every ref the store has: ``refs/heads/main``, ``refs/sync/*``, ``refs/blocksync/records``,
  ``refs/remotes/*``, reflogs if a user's git wrote some), and prune what none reaches -- unless
  it is younger than :data:`PRUNE_GRACE` (git's ``gc.pruneExpire``, shortened): a writer that has
  written its objects but not moved its ref yet must find them there. Never a version in history:
  history is what the refs reach.

**Which engine.** The ``git`` CLI when it is on PATH, dulwich otherwise (:func:`engine`). Measured
on a store of 20,000 single updates (flat layout): a dulwich pack (dulwich deltifies in pure
Python, far too slowly for this, so its packs hold whole objects) is 455 MB and leaves ``git log
-- <block>`` as slow as the loose objects (5.6 s), where ``git repack`` deltifies to 17 MB and
``git commit-graph write`` adds the graph git walks history by: 0.75 s. But git may be absent on
a user's machine, and packing must still happen there, so dulwich is the fallback, with the same
guarantees. Not ``git gc`` itself: it also packs refs (blocksync moves loose refs by
compare-and-swap) and expires reflogs; blocksync runs ``repack``, ``prune`` and ``commit-graph``.

**Crash safety** (kill -9 at any moment leaves a store that opens, passes ``git fsck --strict``
and lost no version; the next run converges): a new pack is written whole to a temp file, fsynced
when the store is ``durable``, renamed; its index likewise, after it; only then are the packs and
loose objects it replaces deleted (the pack's index first: a pack without one is invisible
garbage, cleaned up later). An unreachable object that must survive the grace period and sits in
a pack being replaced is first written back as a loose object with the pack's age. git's own
repack and prune keep the same order. Readers that miss an object rescan the packs
(:meth:`blocksync.store.gitstore.GitStore.object`). One packer at a time (:func:`packer_lock`).
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import random
import shutil
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from io import BytesIO
from pathlib import Path
from typing import Any, Literal, Self

from dulwich.config import ConfigFile
from dulwich.object_format import DEFAULT_OBJECT_FORMAT
from dulwich.objects import ObjectID, object_header, parse_tree
from dulwich.pack import UnpackedObject, load_pack_index, write_pack_data, write_pack_index
from dulwich.repo import Repo

from blocksync.errors import BlocksyncError, RepositoryCorrupt

log = logging.getLogger(__name__)

#: git's ``gc.auto``: past about this many loose objects a run packs them.
AUTO_LIMIT = 6700
#: git's ``gc.autoPackLimit``: past this many packs a run folds them into one.
AUTO_PACK_LIMIT = 50
#: Unreachable objects younger than this (seconds) are kept: a concurrent writer may have
#: written them and not moved its ref yet (git's ``gc.pruneExpire`` is two weeks, for humans
#: who reset by hand; a blocksync writer moves its ref within seconds).
PRUNE_GRACE = 30 * 60
#: The folder whose entries estimate the loose objects, as git's ``too_many_loose_objects``.
SAMPLE = "17"
#: The steps of :func:`collect` with dulwich, in order: a fault hook is told each (tests kill
#: the process there).
DULWICH_FAULT_STEPS = (
    "pack-written",
    "index-written",
    "packs-deleting",
    "loose-deleting",
    "pruning",
)
#: The steps of :func:`collect` with git (a kill inside git is git's own crash safety).
GIT_FAULT_STEPS = ("repacked", "graph-written")
Engine = Literal["git", "dulwich"]
Fault = Callable[[str], None]
_GIT_LINK = 0o160000
_TREE = 0o040000
_LINKS = (b"tree ", b"parent ")


@dataclass(frozen=True)
class GcResult:
    """What a packing run did: objects written into packs, unreachable objects deleted,
    unreachable ones kept for the grace period, and the repository's objects before and after."""

    engine: str
    packed: int
    pruned: int
    kept_young: int
    loose_before: int
    loose_after: int
    packs_before: int
    packs_after: int
    bytes_before: int
    bytes_after: int

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def engine(choice: Engine | None = None) -> Engine:
    """``choice``, else ``git`` when it is on PATH, else ``dulwich`` (see the module docstring)."""
    if choice is not None:
        return choice
    return "git" if shutil.which("git") else "dulwich"


def loose_estimate(repo: Path) -> int:
    """The number of loose objects, estimated as git does: one fan-out folder times 256."""
    try:
        return 256 * sum(1 for name in os.listdir(repo / "objects" / SAMPLE) if len(name) == 38)
    except FileNotFoundError:
        return 0


def configured_limit(repo: Path) -> int:
    """``gc.auto`` of the repository's git config (git's own knob, so ``git config gc.auto N``
    sets it for blocksync and git alike; 0 turns automatic packing off), else :data:`AUTO_LIMIT`."""
    try:
        data = (repo / "config").read_bytes()
        if b"[gc" not in data.lower():  # the common case, without parsing the file
            return AUTO_LIMIT
        return int(ConfigFile.from_file(BytesIO(data)).get((b"gc",), b"auto"))
    except (KeyError, ValueError, OSError):
        return AUTO_LIMIT


def needs_pack(repo: Path, limit: int | None = None) -> bool:
    """Whether :func:`auto_pack` has work: over ``limit`` loose objects (None: the configured
    one; 0: never), or too many packs. The loose count is one directory listing; packs are
    only counted past it."""
    if limit is None:
        limit = configured_limit(repo)
    if limit <= 0:
        return False
    # git: more than ceil(limit / 256) objects in the sample folder
    if loose_estimate(repo) > 256 * ((limit + 255) // 256):
        return True
    return len(_packs(repo)) > AUTO_PACK_LIMIT


@contextmanager
def packer_lock(repo: Path, wait: bool) -> Iterator[bool]:
    """Be the one packer of ``repo`` for the ``with`` block (``flock``, dropped by the kernel if
    the holder dies); yields False when another holds it and ``wait`` is False."""
    fd = os.open(repo / "blocksync-gc.lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            yield False
            return
        yield True
    finally:
        os.close(fd)


def auto_pack(
    repo: Path,
    *,
    limit: int | None = None,
    durable: bool = False,
    use: Engine | None = None,
) -> GcResult | None:
    """Pack the loose objects of ``repo`` when there are more than ``limit`` (see
    :func:`needs_pack`); None when there was nothing to do or another packer is at work."""
    if limit is None:
        limit = configured_limit(repo)
    if not needs_pack(repo, limit):
        return None
    with packer_lock(repo, wait=False) as mine:
        if not mine or not needs_pack(repo, limit):
            return None
        chosen = engine(use)
        before = _inventory(repo)
        fold = len(before.packs) > AUTO_PACK_LIMIT
        if chosen == "git":
            if fold:
                _git(repo, durable, "repack", "-A", "-d", "-l", "-q")
            else:
                # the loose objects as they are, no walk of the history (`repack -d` walks it
                # all: quadratic over a store's life); deltas among them
                ids = "".join(f"{sha}\n" for sha in before.loose)
                _git(repo, durable, "pack-objects", "-q", str(repo / "objects/pack/pack"), feed=ids)
                _git(repo, durable, "prune-packed", "-q")
            _git(repo, durable, "commit-graph", "write", "--reachable", "--split")
        else:
            repacker = _Repacker(repo, durable, None)
            try:
                repacker.run(before, fold, keep=None)
            finally:
                repacker.close()
        after = _inventory(repo)
        # objects now in packs that were not before (a fold rewrites every one)
        packed = after.packed if fold else max(0, after.packed - before.packed)
        return _result(chosen, before, after, packed, pruned=0, kept=0)


def after_write(repo: Path, durable: bool = False) -> GcResult | None:
    """:func:`auto_pack` as a writer runs it once its work is done: a failure to pack is
    logged (``blocksync.store.pack``), never raised -- the write it follows succeeded, and the
    objects stay loose and readable until the next run or ``blocksync gc``."""
    try:
        return auto_pack(repo, durable=durable)
    except (BlocksyncError, OSError) as exc:
        log.warning("automatic packing of %s failed: %s", repo, exc)
        return None


def collect(
    repo: Path,
    *,
    grace: float = PRUNE_GRACE,
    durable: bool = False,
    use: Engine | None = None,
    fault: Fault | None = None,
    now: float | None = None,
) -> GcResult:
    """Repack every object a ref reaches into one pack and prune the rest, but for objects
    younger than ``grace`` seconds (see the module docstring). Waits for another packer."""
    with packer_lock(repo, wait=True):
        chosen = engine(use)
        before = _inventory(repo)
        stamp = time.time() if now is None else now
        if chosen == "git":
            expire = f"@{int(stamp - grace)}"
            _git(repo, durable, "repack", "-a", "-d", "-l", "-q", f"--unpack-unreachable={expire}")
            _tell(fault, "repacked")
            # the commit-graph is a cache git trusts: rewritten of the reachable commits
            # before prune, it never names a commit prune deleted
            _git(repo, durable, "commit-graph", "write", "--reachable", "--split=replace")
            _tell(fault, "graph-written")
            _git(repo, durable, "prune", f"--expire={expire}")
            after = _inventory(repo)
            gone = len(before.ids - after.ids)
            return _result(chosen, before, after, after.packed, gone, len(after.loose))
        repacker = _Repacker(repo, durable, fault)
        try:
            reachable = repacker.reachable()
            repacker.check_present(reachable, before)
            pruned, kept = repacker.run(before, True, keep=reachable, cutoff=stamp - grace)
        finally:
            repacker.close()
        after = _inventory(repo)
        return _result(chosen, before, after, after.packed, pruned, kept)


# -- what is there ------------------------------------------------------------------------


@dataclass
class _Inventory:
    loose: dict[str, float]  # hex id -> mtime
    packs: dict[Path, float]  # pack-*.pack with its .idx and no .keep -> mtime
    ids: set[str]
    packed: int
    size: int


def _packs(repo: Path) -> list[Path]:
    folder = repo / "objects" / "pack"
    try:
        names = set(os.listdir(folder))
    except FileNotFoundError:
        return []
    return [
        folder / name
        for name in sorted(names)
        if name.endswith(".pack")
        and name[:-5] + ".idx" in names
        and name[:-5] + ".keep" not in names  # git's way of saying "never repack this one"
    ]


def _pack_ids(pack: Path) -> list[str]:
    index = load_pack_index(str(pack.with_suffix(".idx")), DEFAULT_OBJECT_FORMAT)
    try:
        return [sha.hex() for sha, _offset, _crc in index.iterentries()]
    finally:
        index.close()


def _inventory(repo: Path) -> _Inventory:
    objects = repo / "objects"
    loose: dict[str, float] = {}
    size = 0
    for entry in os.scandir(objects):
        if len(entry.name) != 2 or not entry.is_dir():
            continue
        for item in os.scandir(entry.path):
            stat = item.stat()
            size += stat.st_size
            if len(item.name) == 38:
                loose[entry.name + item.name] = stat.st_mtime
    packs: dict[Path, float] = {}
    ids = set(loose)
    packed = 0
    for pack in _packs(repo):
        packs[pack] = pack.stat().st_mtime
        names = _pack_ids(pack)
        packed += len(names)
        ids.update(names)
    if (objects / "pack").is_dir():
        size += sum(item.stat().st_size for item in (objects / "pack").iterdir() if item.is_file())
    return _Inventory(loose, packs, ids, packed, size)


def _result(
    chosen: str, before: _Inventory, after: _Inventory, packed: int, pruned: int, kept: int
) -> GcResult:
    return GcResult(
        engine=chosen,
        packed=packed,
        pruned=pruned,
        kept_young=kept,
        loose_before=len(before.loose),
        loose_after=len(after.loose),
        packs_before=len(before.packs),
        packs_after=len(after.packs),
        bytes_before=before.size,
        bytes_after=after.size,
    )


def _tell(fault: Fault | None, step: str) -> None:
    if fault is not None:
        fault(step)


# -- git ----------------------------------------------------------------------------------


def _git(repo: Path, durable: bool, *args: str, feed: str | None = None) -> None:
    # gc.auto=0: the repack must not start a gc of its own; core.fsync: a durable store's packs
    # reach the disk before the objects they replace are deleted (git >= 2.36; older gits
    # ignore the key and fsync object files by core.fsyncObjectFiles)
    import subprocess  # only a packing run pays for importing it

    options = ["-c", "gc.auto=0"]
    if durable:
        options += ["-c", "core.fsync=all", "-c", "core.fsyncObjectFiles=true"]
    done = subprocess.run(
        ["git", *options, "--git-dir", str(repo), *args],
        input=feed or "",
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RepositoryCorrupt(
            str(repo), f"`git {' '.join(args)}` failed: {done.stderr.strip() or done.returncode}"
        )


# -- dulwich ------------------------------------------------------------------------------


class _Repacker:
    """One repack with dulwich, in the crash-safe order of the module docstring."""

    def __init__(self, repo: Path, durable: bool, fault: Fault | None) -> None:
        self.path = repo
        self.durable = durable
        self.fault = fault
        self.repo = Repo(str(repo))

    def reachable(self) -> set[str]:
        """Every object a ref (or a reflog entry) reaches; RepositoryCorrupt if one is missing."""
        tips = {sha.decode() for sha in self.repo.get_refs().values()}
        tips |= set(_reflog_ids(self.path / "logs"))
        return _walk(self.repo, tips, self.path)

    def check_present(self, reachable: set[str], before: _Inventory) -> None:
        """RepositoryCorrupt if an object a ref reaches is missing (the walk reads no blob):
        gc deletes nothing from a damaged repository. Objects written since the inventory
        (a concurrent writer's) are looked up one by one."""
        store = self.repo.object_store
        for sha in reachable - before.ids:
            if ObjectID(sha.encode()) not in store:
                raise RepositoryCorrupt(
                    str(self.path),
                    f"object {sha} is missing: gc refuses to prune a damaged repository",
                )

    def close(self) -> None:
        self.repo.close()

    def run(
        self,
        before: _Inventory,
        fold: bool,
        keep: set[str] | None,
        cutoff: float = 0.0,
    ) -> tuple[int, int]:
        """Write the new pack (every loose object, and every packed one when ``fold``; only
        those in ``keep`` when given) and delete what it replaces, pruning unreachable objects
        older than ``cutoff``. Returns (pruned, kept young)."""
        wanted = set(before.loose) | (before.ids - set(before.loose) if fold else set())
        if keep is not None:
            wanted &= keep
        new = self._write(sorted(wanted)) if wanted else None
        old_packs = [p for p in before.packs if p != new] if fold else []
        young = self._keep_young(before, old_packs, keep, cutoff)
        if keep is not None:
            self._drop_commit_graph()
        self._delete_packs(old_packs)
        self._delete_loose(before, wanted, "loose-deleting")
        if keep is None:
            return 0, 0
        pruned = self._prune(before, keep, cutoff)
        # the unreachable packed objects left behind with their packs, but for the young ones
        pruned += len(before.ids - set(before.loose) - keep) - young[1]
        self._clean_temp(cutoff)
        return pruned, young[0] + young[1]

    def _write(self, ids: list[str]) -> Path:
        """One pack of ``ids`` (whole objects), then its index: each to a temp file, fsynced if
        durable, renamed. Returns the pack's path."""
        store = self.repo.object_store
        folder = self.path / "objects" / "pack"
        folder.mkdir(parents=True, exist_ok=True)

        def records() -> Iterator[UnpackedObject]:
            for hexsha in ids:
                try:
                    type_num, raw = store.get_raw(ObjectID(hexsha.encode()))
                except KeyError as exc:
                    raise RepositoryCorrupt(str(self.path), f"object {hexsha} is missing") from exc
                yield UnpackedObject(type_num, decomp_chunks=[raw], sha=bytes.fromhex(hexsha))

        with _TempFile(folder, self.durable) as pack:
            found, checksum = write_pack_data(
                pack.write, records(), self.repo.object_format, num_records=len(ids)
            )
            base = folder / f"pack-{checksum.hex()}"
            pack.place(base.with_suffix(".pack"))
        _tell(self.fault, "pack-written")
        with _TempFile(folder, self.durable) as index:
            entries = sorted((sha, offset, crc) for sha, (offset, crc) in found.items())
            data = BytesIO()
            write_pack_index(data, entries, checksum)
            index.write(data.getbuffer())
            index.place(base.with_suffix(".idx"))
        _sync_folder(folder, self.durable)
        _tell(self.fault, "index-written")
        return base.with_suffix(".pack")

    def _keep_young(
        self, before: _Inventory, old_packs: list[Path], keep: set[str] | None, cutoff: float
    ) -> tuple[int, int]:
        """Write back, loose and with their pack's age, the unreachable objects of the packs
        about to go that are younger than ``cutoff``. Returns (young loose, young packed)."""
        if keep is None:
            return 0, 0
        young_loose = sum(
            1 for sha, mtime in before.loose.items() if sha not in keep and mtime >= cutoff
        )
        written = 0
        store = self.repo.object_store
        for pack in old_packs:
            mtime = before.packs[pack]
            if mtime < cutoff:
                continue
            for hexsha in _pack_ids(pack):
                if hexsha in keep or hexsha in before.loose:
                    continue
                type_num, raw = store.get_raw(ObjectID(hexsha.encode()))
                _write_loose(self.path, hexsha, type_num, raw, mtime, self.durable)
                written += 1
        return young_loose, written

    def _drop_commit_graph(self) -> None:
        """A commit-graph (git's cache of the history, written by git) must not name commits
        a prune deletes: git trusts it, and `git fsck` fails on one that does. Dropped before
        anything is (git rebuilds it; blocksync does not read it)."""
        info = self.path / "objects" / "info"
        # the chain first: without it the split graph's files are not read, so never half-read
        for single in ("commit-graphs/commit-graph-chain", "commit-graph"):
            (info / single).unlink(missing_ok=True)
        shutil.rmtree(info / "commit-graphs", ignore_errors=True)

    def _delete_packs(self, packs: Iterable[Path]) -> None:
        for number, pack in enumerate(packs):
            if number == 1:
                _tell(self.fault, "packs-deleting")
            # the index first: without it the pack is invisible (garbage), never half-read
            for suffix in (".idx", ".bitmap", ".rev", ".pack"):
                pack.with_suffix(suffix).unlink(missing_ok=True)

    def _delete_loose(self, before: _Inventory, ids: Iterable[str], step: str) -> int:
        deleted = 0
        for hexsha in ids:
            if hexsha not in before.loose:
                continue
            if deleted == 1:
                _tell(self.fault, step)
            with _suppress_missing():
                (self.path / "objects" / hexsha[:2] / hexsha[2:]).unlink()
                deleted += 1
        return deleted

    def _prune(self, before: _Inventory, keep: set[str], cutoff: float) -> int:
        """Delete the unreachable loose objects older than ``cutoff`` (their age re-read
        right before: a writer that wrote the same object since has refreshed it)."""
        old: list[str] = []
        for hexsha in before.loose:
            if hexsha in keep:
                continue
            path = self.path / "objects" / hexsha[:2] / hexsha[2:]
            with _suppress_missing():
                if path.stat().st_mtime < cutoff:
                    old.append(hexsha)
        return self._delete_loose(before, old, "pruning")

    def _clean_temp(self, cutoff: float) -> None:
        """Temp files and index-less packs of killed writers, once older than ``cutoff``."""
        objects = self.path / "objects"
        for folder in [objects / "pack", *objects.glob("[0-9a-f][0-9a-f]")]:
            if not folder.is_dir():
                continue
            for item in folder.iterdir():
                orphan = item.suffix == ".pack" and not item.with_suffix(".idx").exists()
                if item.name.startswith(("tmp_pack_", "tmp_obj_")) or orphan:
                    with _suppress_missing():
                        if item.stat().st_mtime < cutoff:
                            item.unlink()


def _walk(repo: Repo, tips: set[str], path: Path) -> set[str]:
    """Every object reachable from ``tips``: commits, trees, blobs (tags followed)."""
    reached: set[str] = set()
    todo = list(tips)
    while todo:
        sha = todo.pop()
        if sha not in reached:
            reached.add(sha)
            below, blobs = _links(repo, sha, path)
            todo.extend(below)
            reached.update(blobs)  # nothing below a blob: not read
    return reached


def _links(repo: Repo, sha: str, path: Path) -> tuple[list[str], list[str]]:
    """The objects object ``sha`` names: (those to read in turn, blobs)."""
    try:
        type_num, raw = repo.object_store.get_raw(ObjectID(sha.encode()))
    except KeyError as exc:
        raise RepositoryCorrupt(str(path), f"object {sha} is missing: gc refuses to run") from exc
    if type_num == 1:  # commit: its tree and parents
        head = raw.split(b"\n\n", 1)[0].split(b"\n")
        return [line.split(b" ", 1)[1].decode() for line in head if line.startswith(_LINKS)], []
    if type_num == 4:  # tag
        return [raw.split(b"\n", 1)[0].split(b" ", 1)[1].decode()], []
    if type_num != 2:
        return [], []
    trees: list[str] = []
    blobs: list[str] = []
    for _name, mode, child in parse_tree(raw, 20):
        if mode != _GIT_LINK:
            (trees if mode == _TREE else blobs).append(child.decode())
    return trees, blobs


def _reflog_ids(logs: Path) -> Iterator[str]:
    """The old and new ids of every reflog entry (blocksync writes none; a user's git may)."""
    if not logs.is_dir():
        return
    for log in logs.rglob("*"):
        if not log.is_file():
            continue
        for line in log.read_bytes().splitlines():
            for field in line.split(b" ", 2)[:2]:
                if len(field) == 40 and field.strip(b"0"):
                    yield field.decode()


def _write_loose(
    repo: Path, hexsha: str, type_num: int, raw: bytes, mtime: float, durable: bool
) -> None:
    """Write one loose object (temp file, renamed) carrying ``mtime``, so it ages as before."""
    folder = repo / "objects" / hexsha[:2]
    folder.mkdir(exist_ok=True)
    target = folder / hexsha[2:]
    if not target.exists():
        with _TempFile(folder, durable) as out:
            out.write(zlib.compress(object_header(type_num, len(raw)) + raw, 1))
            out.place(target)
    os.utime(target, (mtime, mtime))


class _TempFile:
    """A read-only file written whole: a unique temp file in its folder, fsynced if durable,
    then renamed to its name (:meth:`place`); removed if the block fails before."""

    def __init__(self, folder: Path, durable: bool) -> None:
        self.tmp = folder / f"tmp_pack_{os.getpid()}_{random.getrandbits(48):012x}"
        self.durable = durable
        self.fd = os.open(self.tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
        self.placed = False

    def write(self, data: bytes | bytearray | memoryview) -> int:
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view) :]
        return len(data)

    def place(self, path: Path) -> None:
        if self.durable:
            os.fsync(self.fd)
        os.close(self.fd)
        self.fd = -1
        os.replace(self.tmp, path)
        self.placed = True

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.fd >= 0:
            os.close(self.fd)
        if not self.placed:
            self.tmp.unlink(missing_ok=True)


def _sync_folder(folder: Path, durable: bool) -> None:
    if durable:
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextmanager
def _suppress_missing() -> Iterator[None]:
    try:
        yield
    except FileNotFoundError:
        pass  # another packer, or the writer that refreshed it, got there first
