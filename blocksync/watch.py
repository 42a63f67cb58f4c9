"""``blocksync watch``: live sync of the file sources, round after round, until stopped.

Two kinds of change start a round:

* **a file changed** in a folder of a file source: the folders are watched with ``watchfiles``
  (inotify, FSEvents, ...; imported here only), and the paths that changed are reconciled once
  the folder has been quiet for ``debounce`` seconds (an editor's save is several events). A
  data-block plugin granted a ``dir`` is watched too: the folder is the plugin's to read, so a
  change in it reconciles the plugin whole;
* **a block changed** on main (an agent wrote it, a pull merged it): main's head is read every
  ``poll`` seconds -- one ref read, nothing else when it did not move -- and the paths bound to
  the blocks that changed (or named by their labels) are reconciled; a plugin, when a block
  bound to it changed, or one of its agent's that no file source has.

What a round reconciles is one ``ws.reconcile`` per source with its paths, under the run lock
like ``reconcile`` (:meth:`~blocksync.workspace.Workspace.locked`), taken once for the round.
A path that is no file of the source any more and was never synced (an editor's temporary
file, a folder moved away) or a folder makes that source's round a run over all its paths, which
the source's stat cache keeps cheap. The first round covers every source whole: what changed
while nothing watched.

Decisions:

* **A held lock waits, it does not fail**: the round is left pending and tried again at the
  next look (``poll``), said once as a ``lock-held`` notice. A cron ``sync`` and ``watch`` can run
  on one store.
* **A folder that vanishes** (unmounted, moved, deleted and made again) stops its source's
  rounds -- reconciling would read every file as deleted -- and is said once
  (``folder-missing``); the folders' identities are checked at every look, and when it is back
  (``folder-back``) watching resumes and its source is reconciled whole.
* **Quiet rounds are not reported**: a round that resolved nothing, found no conflict and
  failed no source (the echo of the round before: the files it wrote, the blocks it committed;
  an editor's temporary file) emits nothing, so an idle store prints nothing and a log holds
  only what happened.
* **Stopping**: ``stop`` (a :class:`threading.Event`) set, or inside
  :func:`blocksync.interrupts.handling` a signal, ends the loop between rounds: :func:`watch`
  returns (the command exits 0). A signal that arrives during a round stops it at its next safe
  point like any run: sources not started are left, as between rounds; a source stopped
  between two files it was writing (the rest left for the next run) raises
  :class:`~blocksync.errors.Interrupted` (130, 143), as ``reconcile`` would.
* Changes to ``blocksync.toml`` are not followed: restart the watch.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Generator, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import interrupts
from .errors import BlocksyncError, NotFound, RunLockHeld, UsageError
from .index.base_index import BaseIndex
from .index.db import timestamp
from .sync.folder.source import FileSource
from .sync.reconciler import ReconcileReport, SourceReport
from .sync.run import Run, new_run_id
from .text import printable

if TYPE_CHECKING:
    from .sync.folder.config import FileSourceSpec
    from .workspace import Workspace

__all__ = ["DEBOUNCE", "POLL", "WATCH_COMMAND", "Event", "Notice", "Round", "watch"]

WATCH_COMMAND = "blocksync watch"
#: seconds a folder stays quiet after a file event before the round starts
DEBOUNCE = 0.05
#: seconds between looks at main's head, the folders' identities and a held lock
POLL = 0.3
#: more changed paths than this in one source: a run over all of its paths instead
MANY_PATHS = 500

#: the file events watchfiles yields, batch after batch: (its Change, the path)
_Changes = Generator[set[tuple[Any, str]], None, None]
#: what a source has pending: its paths, or None for all of them
Pending = set[str] | None


@dataclass
class Round:
    """One reconcile of what changed: the report of every source it took."""

    number: int  # among the rounds reported (quiet ones are not)
    report: ReconcileReport
    started_at: str
    seconds: float
    files: int  # file events that led to it
    blocks: int  # blocks changed on main that led to it

    @property
    def quiet(self) -> bool:
        """Did nothing happen: nothing resolved, no new conflict, no source failed? (Paths left
        alone -- not UTF-8, a link -- and conflicts still held are left alone every round: they
        are listed in the rounds that do something, not a reason to report one.)"""
        return not any(
            s.resolved or s.needs_resolution or s.error is not None for s in self.report.sources
        )

    def counts(self) -> dict[str, int]:
        sources = self.report.sources
        return {
            "resolved": sum(len(s.resolved) for s in sources),
            "needs_resolution": sum(len(s.needs_resolution) for s in sources),
            "unchanged": sum(s.unchanged for s in sources),
            "skipped": sum(len(s.skipped) for s in sources),
            "failed_sources": sum(s.error is not None for s in sources),
        }

    def to_json(self) -> dict[str, Any]:
        doc = self.report.to_json()
        return {
            "event": "round",
            "round": self.number,
            "run_id": self.report.run_id,
            "started_at": self.started_at,
            "seconds": round(self.seconds, 3),
            "changed": {"files": self.files, "blocks": self.blocks},
            "sources": doc["sources"],
            "summary": self.counts(),
            "errors": [
                {"source": s.source, "error": s.error}
                for s in self.report.sources
                if s.error is not None
            ],
            "open_conflicts": self.report.open_conflicts,
        }


@dataclass(frozen=True)
class Notice:
    """Something the watch says once: ``watching`` (the folders), ``folder-missing``,
    ``folder-back``, ``lock-held`` (a round waits for the next look), ``watch-failed`` (the
    system refused to watch a folder: polled instead), ``stopped``."""

    event: str
    message: str
    source: str | None = None
    folder: str | None = None

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"event": self.event, "message": self.message}
        if self.source is not None:
            doc["source"] = self.source
        if self.folder is not None:
            doc["folder"] = self.folder
        return doc


Event = Round | Notice


def watch(
    ws: Workspace,
    on_event: Callable[[Event], None],
    *,
    stop: threading.Event | None = None,
    debounce: float = DEBOUNCE,
    poll: float = POLL,
    allow_mass_delete: bool = False,
) -> int:
    """Reconcile the file sources of ``ws`` (and the plugin sources granted a ``dir``) as their
    files and blocks change, until ``stop`` is set or (inside
    :func:`blocksync.interrupts.handling`) a signal comes; each round that did something and
    each notice goes to ``on_event``. Returns the number of those rounds.

    No folder to watch: :class:`~blocksync.errors.UsageError`."""
    watched = _watched(ws)
    if not watched:
        raise UsageError(
            'no folder to watch: blocksync.toml has no data source of type = "file" and no '
            "data-block plugin with a dir"
        )
    watcher = _Watcher(ws, watched, on_event, stop or threading.Event(), debounce, poll)
    try:
        return watcher.run(allow_mass_delete)
    finally:
        watcher.close()


@dataclass(frozen=True)
class _Watched:
    """A source whose folders are watched: a file source (``spec``: a changed file is one of
    its paths) or a data-block plugin granted a ``dir`` (``spec`` None: the folder is the
    plugin's to read, so any change in it reconciles the plugin whole)."""

    key: str
    roots: tuple[Path, ...]
    spec: FileSourceSpec | None = None


def _watched(ws: Workspace) -> dict[str, _Watched]:
    found = {key: _Watched(key, spec.paths, spec) for key, spec in ws.file_sources.items()}
    plugins = ws.plugins
    for key in plugins.block_source_keys():
        folder = plugins.specs[key].dir
        if folder is not None and plugins.reconciles(key):
            found[key] = _Watched(key, (folder,))
    return found


@dataclass
class _Waiting:
    """What the next round takes: pending paths by source, and what led to them."""

    paths: dict[str, Pending] = field(default_factory=dict)
    files: int = 0
    blocks: int = 0

    def add(self, key: str, paths: Iterable[str] | None) -> None:
        _merge(self.paths, key, paths)


class _Watcher:
    def __init__(
        self,
        ws: Workspace,
        watched: Mapping[str, _Watched],
        on_event: Callable[[Event], None],
        stop: threading.Event,
        debounce: float,
        poll: float,
    ) -> None:
        self.ws = ws
        self.watched = watched
        self.say = on_event
        self.stop = stop
        self.folders = _Folders(watched, stop, debounce, poll)
        self.rounds = 0
        self.lock_said = False
        self.index = BaseIndex(ws.index_db)  # the workspace's index.db: nothing to close

    def close(self) -> None:
        self.folders.close()

    def stopping(self) -> bool:
        return self.stop.is_set() or interrupts.requested() is not None

    def run(self, allow_mass_delete: bool) -> int:
        waiting = _Waiting({key: None for key in self.watched})  # first: everything, whole
        head = self.ws.blocks.head()
        shown = ", ".join(printable(str(root)) for w in self.watched.values() for root in w.roots)
        self.say(Notice("watching", f"watching {len(self.watched)} source(s): {shown}"))
        self._check_folders(waiting)
        while not self.stopping():
            changes = self.folders.changes()
            # after the wait: a folder removed meanwhile is missing before any round reads it
            self._check_folders(waiting)
            for key, paths in self.folders.route(changes).items():
                waiting.add(key, paths)
            waiting.files += len(changes)
            now = self.ws.blocks.head()
            if now != head:
                waiting.blocks += self._blocks_moved(head, waiting)
                head = now
            ready = {k: p for k, p in waiting.paths.items() if k not in self.folders.missing}
            if ready and not self.stopping():
                done = self._round(ready, waiting, allow_mass_delete)
                if done is not None:
                    for key in ready:
                        del waiting.paths[key]
                    waiting.files = waiting.blocks = 0
                    if not done.quiet:
                        self.rounds += 1
                        done.number = self.rounds
                        self.say(done)
        self.say(Notice("stopped", f"stopped after {self.rounds} round(s) that changed something"))
        return self.rounds

    def _check_folders(self, waiting: _Waiting) -> None:
        for notice, key in self.folders.check():
            self.say(notice)
            if notice.event == "folder-back":
                waiting.add(key, None)
            elif notice.event == "watch-failed":  # changes may have been missed meanwhile
                for every in self.watched:
                    waiting.add(every, None)

    def _blocks_moved(self, since: str | None, waiting: _Waiting) -> int:
        """Add the paths of the blocks changed on main since commit ``since``; how many."""
        self.ws.blocks.catch_up_index()
        changed = self.index.blocks_changed_since(since)
        if changed is None:  # main is not where it was (rebuilt, rewritten): all of it
            for key in self.watched:
                waiting.add(key, None)
            return 0
        by_owner: dict[str, list[str]] = {}
        for owner, label in changed:
            by_owner.setdefault(owner, []).append(label)
        claimed: set[tuple[str, str]] = set()  # the changed blocks a file source has
        for key, w in self.watched.items():
            if w.spec is not None:
                paths, blocks = _paths_of_blocks(self._source(key), by_owner)
                waiting.add(key, paths)
                claimed |= blocks
        for key, w in self.watched.items():
            if w.spec is None and _plugin_touched(self.ws, key, by_owner, claimed):
                waiting.add(key, None)
        return len(changed)

    def _source(self, key: str) -> FileSource:
        source = self.ws.reconciler.source(key)
        assert isinstance(source, FileSource)  # the keys of ws.file_sources
        return source

    def _round(
        self, ready: Mapping[str, Pending], waiting: _Waiting, allow_mass_delete: bool
    ) -> Round | None:
        """Reconcile ``ready`` under the run lock; None: another run holds it (try later)."""
        run = Run(new_run_id())
        started, clock = timestamp(), time.monotonic()
        entries: list[SourceReport] = []
        try:
            with self.ws.locked(WATCH_COMMAND, run_id=run.id):
                for key, paths in ready.items():
                    entries += self._reconcile(key, paths, run, allow_mass_delete)
        except RunLockHeld as exc:
            if not self.lock_said:
                text = f"another run holds the run lock ({exc.who}): the round waits"
                self.say(Notice("lock-held", printable(text)))
                self.lock_said = True
            return None
        self.lock_said = False
        # a source a signal kept from starting is no failure: the watch ends, as between rounds
        entries = [e for e in entries if e.not_reached != "signal"]
        report = ReconcileReport(run.id, entries, self.ws.reconciler.conflicts.open_count(), False)
        stop, why = report.interruption(), interrupts.reason()
        if stop is not None and any(reason == why for e in entries for _, reason in e.skipped):
            raise stop
        return Round(0, report, started, time.monotonic() - clock, waiting.files, waiting.blocks)

    def _reconcile(
        self, key: str, paths: Pending, run: Run, allow_mass_delete: bool
    ) -> list[SourceReport]:
        """One source's part of a round: its paths, or all of them when they cannot be told."""
        try:
            wanted = None if paths is None else _narrowed(self._source(key), paths)
        except (BlocksyncError, OSError):
            wanted = None
        if wanted == []:
            return []
        try:
            report = self.ws.reconcile([key], wanted, run=run, allow_mass_delete=allow_mass_delete)
        except (UsageError, NotFound):  # a path went away since: the whole source then
            report = self.ws.reconcile([key], None, run=run, allow_mass_delete=allow_mass_delete)
        return report.sources


def _narrowed(source: FileSource, paths: set[str]) -> list[str] | None:
    """The changed ``paths`` a round reconciles; None: the whole source (a folder changed, or a
    path that is nothing now and never was synced -- a temporary file, a folder moved away)."""
    if len(paths) > MANY_PATHS:
        return None
    index = source.base_index()
    index.catch_up(source.bases)
    bound = index.entries_of(source.key, paths)
    wanted = []
    for path in sorted(paths):
        if source.path_problem(path) is not None:
            continue  # a version-control file: never synced
        target = source.target(path)
        if os.path.isdir(target.file):
            return None
        if path in bound:
            wanted.append(path)
        elif not source.selects(target.rel) and os.path.lexists(target.file):
            continue  # excluded by the configuration
        elif source.has_path(path):
            wanted.append(path)
        else:
            return None
    return wanted


def _paths_of_blocks(
    source: FileSource, changed: Mapping[str, list[str]]
) -> tuple[set[str], set[tuple[str, str]]]:
    """The paths of ``source`` bound to the ``changed`` blocks (owner -> labels), or that the
    label scheme gives those of its agent (a new block becomes a new file); and those blocks."""
    index = source.base_index()
    index.catch_up(source.bases)
    paths: set[str] = set()
    blocks: set[tuple[str, str]] = set()
    for owner, labels in changed.items():
        bound = index.paths_of_blocks(source.key, owner, labels)
        paths.update(bound.values())
        blocks.update((owner, label) for label in bound)
        if owner == source.spec.agent:
            for label in labels:
                path = source.path_for_label(label)
                if path is not None:
                    paths.add(path)
                    blocks.add((owner, label))
    return paths, blocks


def _plugin_touched(
    ws: Workspace, key: str, changed: Mapping[str, list[str]], claimed: set[tuple[str, str]]
) -> bool:
    """Does plugin source ``key`` have a changed block: one bound to it, or one of its agent's
    that no watched file source has (it may be new to the plugin)?"""
    from .plugins.source import PluginSource

    agent = ws.plugins.specs[key].agent
    if any((agent, label) not in claimed for label in changed.get(agent, ())):
        return True
    try:
        source = ws.reconciler.source(key)
    except BlocksyncError:
        return True  # reconciling it reports why it cannot be opened
    if not isinstance(source, PluginSource):
        return True
    index = source.bases.index()
    index.catch_up(source.bases.bases)
    return any(index.paths_of_blocks(key, owner, labels) for owner, labels in changed.items())


class _Folders:
    """The root folders of the file sources: which exist (by identity), and one ``watchfiles``
    watcher over those that do, made again whenever that set changes. A watcher the system
    refuses (inotify's watch limit, a folder it may not watch) is said once, and the folders
    are then polled every ``poll`` seconds (watchfiles' polling: it lists them)."""

    def __init__(
        self,
        watched: Mapping[str, _Watched],
        stop: threading.Event,
        debounce: float,
        poll: float,
    ) -> None:
        self.watched = watched
        self.stop = stop
        self.debounce = debounce
        self.poll = poll
        self.missing: set[str] = set()  # sources with a root that is not there
        self._seen: dict[Path, tuple[int, int] | None] = {}
        self._changes: _Changes | None = None
        self._polling = False
        self._said: list[Notice] = []  # a notice of the watcher's own, for the next check

    def close(self) -> None:
        if self._changes is not None:
            self._changes.close()
            self._changes = None

    def check(self) -> list[tuple[Notice, str]]:
        """Look at every root; the notices of those that vanished or came back (with their
        source), and a new watcher when the set of roots changed."""
        notices = [(notice, "") for notice in self._said]
        self._said.clear()
        now = {root: _identity(root) for w in self.watched.values() for root in w.roots}
        for key, w in self.watched.items():
            gone = [root for root in w.roots if now[root] is None]
            if gone and key not in self.missing:
                self.missing.add(key)
                folder = str(gone[0])
                text = f"folder {printable(folder)} of source {key} is missing: waiting for it"
                notices.append((Notice("folder-missing", text, key, folder), key))
            elif not gone and key in self.missing:
                self.missing.discard(key)
                folder = str(w.roots[0])
                text = f"the folders of source {key} are back: watching them again"
                notices.append((Notice("folder-back", text, key, folder), key))
        if now != self._seen:
            self.close()
            self._seen = now
            roots = [root for root, known in now.items() if known is not None]
            if roots:
                self._changes = self._watch(roots)
        return notices

    def _watch(self, roots: list[Path]) -> _Changes:
        import watchfiles

        return watchfiles.watch(
            *roots,
            watch_filter=None,  # what is synced is the source's to say (route)
            debounce=max(int(self.debounce * 1000), 1),
            step=max(min(int(self.debounce * 1000), 50), 1),
            stop_event=self.stop,
            rust_timeout=max(int(self.poll * 1000), 1),
            yield_on_timeout=True,
            raise_interrupt=False,
            force_polling=self._polling or None,  # None: polling only where watching cannot be
            poll_delay_ms=max(int(self.poll * 1000), 1),
        )

    def changes(self) -> set[tuple[Any, str]]:
        """The file events of the next ``poll`` seconds at most (after ``debounce`` of quiet)."""
        if self._changes is None:
            self.stop.wait(self.poll)
            return set()
        try:
            return next(self._changes)
        except StopIteration:  # stop was set
            self._changes = None
        except FileNotFoundError:  # a root went away as the watcher started: made again
            self.close()
            self._seen = {}
        except (OSError, RuntimeError) as exc:
            self.close()  # and no watcher until a root changes, if polling failed too
            if not self._polling:
                self._polling, self._seen = True, {}
                text = f"cannot watch the folders ({exc}): polling them every {self.poll} s"
                self._said.append(Notice("watch-failed", printable(text)))
        return set()

    def route(self, changes: Iterable[tuple[Any, str]]) -> dict[str, Pending]:
        """The source paths of the changed files, by source (None: all of them -- a root itself
        changed, or a plugin's folder)."""
        found: dict[str, Pending] = {}
        for _, raw in changes:
            changed = Path(raw)
            for key, w in self.watched.items():
                for index, root in enumerate(w.roots):
                    if changed == root or (w.spec is None and changed.is_relative_to(root)):
                        _merge(found, key, None)
                    elif w.spec is not None and changed.is_relative_to(root):
                        rel = changed.relative_to(root).as_posix()
                        _merge(found, key, [w.spec.source_path(index, rel)])
        return found


def _merge(pending: dict[str, Pending], key: str, paths: Iterable[str] | None) -> None:
    """Add ``paths`` (None: all of them) to what ``key`` has pending."""
    if paths is None:
        pending[key] = None
        return
    current = pending.get(key, set())
    if current is not None:
        pending[key] = current | set(paths)


def _identity(root: Path) -> tuple[int, int] | None:
    """The device and inode of folder ``root``; None: it is not there (or not a folder)."""
    try:
        st = os.stat(root)
    except OSError:
        return None
    if not os.path.isdir(root):
        return None
    return st.st_dev, st.st_ino
