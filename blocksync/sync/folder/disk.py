"""The disk side of a file source: its root folders opened for one call (through
:mod:`blocksync.fs.disk`, so nothing is reached through a path the kernel resolves again), a survey
of what they hold, and the :class:`blocksync.shared.apply.Outside` port over them.
"""

from __future__ import annotations

import errno
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from blocksync.errors import NotFound
from blocksync.fs.disk import FileStat, Folder, Listing, printable_path
from blocksync.shared import progress
from blocksync.shared.apply import Unreadable, Unwritable, sha256, text_of
from blocksync.sync.protocol import Skipped

__all__ = ["Roots", "RootsOutside", "Selection", "Survey", "opened", "read_file", "survey", "why"]


class Selection(Protocol):
    """What a survey needs of a source's configuration (a FileSourceSpec)."""

    @property
    def key(self) -> str: ...
    @property
    def paths(self) -> tuple[Path, ...]: ...
    @property
    def recursive(self) -> bool: ...
    @property
    def selects_all(self) -> bool: ...
    def selects(self, rel: str) -> bool: ...
    def folder_excluded(self, folder: str) -> bool: ...
    def source_path(self, index: int, rel: str) -> str: ...


def why(exc: OSError) -> str:
    """An OS error as the reason a path is left alone."""
    if exc.errno == errno.ELOOP:
        return "a symbolic link is in the way (blocksync never follows one out of the folder)"
    return exc.strerror or str(exc)


class Roots:
    """The roots of a source opened for one call (see :mod:`blocksync.fs.disk`): every read and
    write goes through them, never through a path the kernel resolves again. ``avoid``: the
    (device, inode) of folders never entered (the store)."""

    def __init__(self, key: str, avoid: set[tuple[int, int]]) -> None:
        self._key = key
        self._avoid = avoid
        self._open: dict[Path, Folder] = {}

    def __getitem__(self, root: Path) -> Folder:
        folder = self._open.get(root)
        if folder is None:
            try:
                folder = Folder(root, avoid=self._avoid)
            except OSError as exc:
                raise NotFound(
                    f"root folder {root} of file source {self._key!r} is missing or "
                    f"unreadable ({why(exc)}): refusing to treat its files as deleted"
                ) from exc
            self._open[root] = folder
        return folder

    def sync(self, *, wait: bool = True) -> None:
        """:meth:`~blocksync.fs.disk.Folder.sync` every folder (not ``wait``: started,
        :meth:`synced` waits)."""
        for folder in self._open.values():
            folder.sync(wait=wait)

    def synced(self) -> None:
        """Wait for the fsyncs :meth:`sync` started; the first error, once all are done."""
        errors: list[OSError] = []
        for folder in self._open.values():
            try:
                folder.synced()
            except OSError as exc:
                errors.append(exc)
        if errors:
            raise errors[0]

    def close(self) -> None:
        for folder in self._open.values():
            folder.close()
        self._open.clear()


@contextmanager
def opened(key: str, avoid: set[tuple[int, int]]) -> Iterator[Roots]:
    roots = Roots(key, avoid)
    try:
        yield roots
    finally:
        roots.close()


def read_file(folder: Folder, rel: str) -> tuple[str | None, str | None, str | None]:
    """(text, sha256 of its bytes, None); (None, None, None) if there is no file; or
    (None, None, reason) if it cannot be synced as text: then it is left alone."""
    data, unreadable = folder.read(rel)
    if data is None:
        return None, None, unreadable
    try:
        return text_of(data), sha256(data), None
    except Unreadable as exc:
        return None, None, str(exc)


@dataclass
class Survey:
    """The roots as one listing found them (a run over every path)."""

    listings: dict[int, Listing] = field(default_factory=dict)  # root index -> its listing
    files: set[str] = field(default_factory=set)  # selected regular files, as source paths
    present: set[str] = field(default_factory=set)  # every regular file, selected or not
    skipped: list[Skipped] = field(default_factory=list)  # odd entries (selected) and why
    #: the stat of each selected file as listed, by source path (a survey asked for them),
    #: but of those whose stat was known already (:func:`survey`'s ``known``)
    stats: dict[str, FileStat] = field(default_factory=dict)

    def unknown(self, index: int, rel: str) -> str | None:
        """Why nothing can be said of ``rel`` of root ``index`` (None: it was listed)."""
        return self.listings[index].unknown(rel)


def survey(
    roots: Roots,
    spec: Selection,
    *,
    stats: bool = False,
    known: Mapping[str, FileStat | None] | None = None,
) -> Survey:
    """Every root listed (see :func:`_survey`), shown as a task while it runs."""
    with progress.current().task(f"listing {spec.key}"):
        return _survey(roots, spec, stats=stats, known=known)


def _survey(
    roots: Roots, spec: Selection, *, stats: bool, known: Mapping[str, FileStat | None] | None
) -> Survey:
    """Every root listed (never through a link, never into the store or a version-control
    folder): the selected files, what is skipped and why, folders that cannot be listed;
    ``stats``: each selected file's stat too (what the stat cache compares), but of those
    whose stat is the one ``known`` (by source path) holds: unchanged by their stat alone, they
    are left out while listing, where it costs least (a source of one folder, whose source
    paths are its relative ones; with several, every stat is kept)."""
    found = Survey()
    one_root = len(spec.paths) == 1
    for index, root in enumerate(spec.paths):
        listing = found.listings[index] = roots[root].scan(
            recursive=spec.recursive,
            skip=spec.folder_excluded,
            stats=stats,
            known=known if one_root else None,
            ordered=False,
        )
        for folder, reason in listing.unlisted:
            if not folder:
                raise NotFound(
                    f"source {spec.key!r}: folder {root} cannot be listed ({reason}); "
                    "refusing to reconcile it in this run"
                )
            found.skipped.append(
                Skipped(
                    spec.source_path(index, folder + "/"),
                    f"this folder cannot be listed ({reason}): its files are left as they are",
                )
            )
        for rel, reason in listing.odd:
            # a name that is not UTF-8 is reported whatever the patterns: the entry may
            # be a folder, whose files the patterns would select
            shown = printable_path(rel)
            if shown != rel or spec.selects(rel):
                found.skipped.append(Skipped(spec.source_path(index, shown), reason))
        listed = listing.stats
        if spec.selects_all:
            selected = listing.files
        else:
            selected = [rel for rel in listing.files if spec.selects(rel)]
        if one_root:  # source paths are the relative ones: taken as they are
            found.present = set(listing.files)
            whole = len(selected) == len(listing.files)
            found.files = found.present.copy() if whole else set(selected)
            if listed is not None:
                found.stats = listed if whole else {r: listed[r] for r in selected if r in listed}
            continue
        for rel in listing.files:
            found.present.add(spec.source_path(index, rel))
        for rel in selected:
            path = spec.source_path(index, rel)
            found.files.add(path)
            if listed is not None:
                found.stats[path] = listed[rel]
    return found


class RootsOutside:
    """The :class:`blocksync.shared.apply.Outside` port over the opened roots of a source.
    ``locate`` maps a source path to its root and relative path; ``hook`` is called before
    and after each write (the source's fault steps)."""

    def __init__(
        self,
        roots: Roots,
        spec: Selection,
        locate: Callable[[str], tuple[Path, str]],
        hook: Callable[[str], None],
        *,
        wait: bool = True,
    ) -> None:
        self._roots = roots
        self._spec = spec
        self._locate = locate
        self._hook = hook
        self._wait = wait

    def _folder(self, path: str) -> tuple[Folder, str]:
        root, rel = self._locate(path)
        return self._roots[root], rel

    def list_paths(self) -> list[str]:
        return sorted(survey(self._roots, self._spec).files)

    def read(self, path: str) -> bytes | None:
        folder, rel = self._folder(path)
        data, unreadable = folder.read(rel)
        if unreadable is not None:
            raise Unreadable(unreadable)
        return data

    def prepare(self, writes: list[tuple[str, bytes]]) -> None:
        """The temp files of the writes to come, written ahead and flushed together
        (:meth:`blocksync.fs.disk.Folder.stage`); see :func:`blocksync.shared.apply.apply`.
        A port made by :meth:`ahead` returns with their fsyncs under way."""
        batches: dict[Folder, list[tuple[str, bytes]]] = {}
        for path, data in writes:
            try:
                folder, rel = self._folder(path)
            except NotFound:
                continue  # its write meets it
            batches.setdefault(folder, []).append((rel, data))
        for folder, batch in batches.items():
            folder.stage(batch, wait=self._wait)

    def ahead(self) -> RootsOutside:
        """This port, but its ``prepare`` does not wait for the fsyncs of the temp files it
        writes (each write waits for its own): for staging the writes of a call before its
        blocks are committed, so that commit's work hides their wait."""
        return RootsOutside(self._roots, self._spec, self._locate, self._hook, wait=False)

    def write(self, path: str, data: bytes, expected: str | None) -> bool:
        folder, rel = self._folder(path)
        return self._change(lambda: folder.write(rel, data, expected))

    def remove(self, path: str, expected: str) -> bool:
        folder, rel = self._folder(path)
        return self._change(lambda: folder.remove(rel, expected))

    def _change(self, change: Callable[[], bool]) -> bool:
        self._hook("before-file-write")
        try:
            done = change()
        except OSError as exc:
            raise Unwritable(f"cannot write the file: {why(exc)}") from exc
        self._hook("after-file-write")
        return done
