"""``blocksync watch``: live sync of the data sources, round after round, until stopped.

Three kinds of change start a round:

* **a file changed** in a folder of a file source: the folders are watched with ``watchfiles``
  (inotify, FSEvents, ...; imported in :mod:`.folders` only), and the paths that changed are
  reconciled once the folder has been quiet for ``debounce`` seconds (an editor's save is
  several events). A data-block plugin granted a ``dir`` is watched too: the folder is the
  plugin's to read, so a change in it reconciles the plugin whole;
* **a block changed** on main (an agent wrote it, a pull merged it): main's head is read every
  ``poll`` seconds -- one ref read, nothing else when it did not move -- and the paths bound to
  the blocks that changed (or named by their labels) are reconciled; a plugin, when a block
  bound to it changed, or one of its agent's that no file source has;
* **time passed**, for a data-block plugin with no ``dir`` (the S3 plugin: its outside side
  is a bucket, no file event tells of a change there): it is *polled*, reconciled whole every
  ``plugin_poll`` seconds (60 by default), and said so at the start (``polling``).

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
* **Quiet rounds are not reported, nor logged**: a round that resolved nothing, found no
  conflict and failed no source (the echo of the round before: the files it wrote, the blocks
  it committed; an editor's temporary file; a polled plugin with nothing new) emits nothing and
  leaves no row in the run log, so an idle watch -- for hours -- prints nothing and adds
  nothing to ``index.db`` or to ``refs/blocksync/records``.
* **A round that is reported is a run in the run log** (``blocksync runs``), command
  ``blocksync watch``, recorded once it is done (still under the lock: a round is not known to
  be worth a row before it ends) with the time it started, its report, its exit code (1 a
  source failed, 3 conflicts are open, 0), ``interrupted`` when a signal stopped it between two
  files; a round that raised is recorded failed before the error ends the watch. Its id is the
  round's ``run_id``, and every commit the round made names it (``Blocksync-Run``), as a
  ``reconcile``'s do. The commits of a quiet round, if any (none writes a block), name a run the
  log does not hold.
* **blocksync.toml is followed** (:mod:`.settings`): a change is read once the file is still
  for a look; a configuration a restart would accept, whose new folders exist, is used from the
  next round on -- sources added are reconciled whole, removed ones dropped (their pending
  paths too), changed ones re-watched and reconciled whole -- and said in one
  ``config-reloaded`` event; one that is not (bad TOML, an unknown source type, a folder that
  does not exist, ...) is said once in a ``config-invalid`` event naming what and where, and
  the configuration from before runs on. ``[store]`` settings the store took when it opened
  (``durable``, ``machine``) apply at the next start.
* **Stopping**: ``stop`` (a :class:`threading.Event`) set, or inside
  :func:`blocksync.interrupts.handling` a signal, ends the loop between rounds: :func:`watch`
  returns (the command exits 0). A signal that arrives during a round stops it at its next safe
  point like any run: sources not started are left, as between rounds; a source stopped
  between two files it was writing (the rest left for the next run) raises
  :class:`~blocksync.errors.Interrupted` (130, 143), as ``reconcile`` would.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .. import interrupts
from ..config import CONFIG_FILE
from ..errors import BlocksyncError, ConfigError, NotFound, RunLockHeld, UsageError
from ..index.base_index import BaseIndex
from ..index.db import timestamp
from ..sync.folder.source import FileSource
from ..sync.reconciler import ReconcileReport, SourceReport
from ..sync.run import Run, new_run_id
from ..sync.runrecord import finish_failed, record_reconcile
from ..text import printable
from . import settings
from .events import ConfigChange, Event, Notice, Round
from .folders import Folders, Pending, Watched, merge

if TYPE_CHECKING:
    from ..workspace import Workspace

__all__ = [
    "DEBOUNCE",
    "PLUGIN_POLL",
    "POLL",
    "WATCH_COMMAND",
    "ConfigChange",
    "Event",
    "Notice",
    "Round",
    "watch",
]

WATCH_COMMAND = "blocksync watch"
#: seconds a folder stays quiet after a file event before the round starts
DEBOUNCE = 0.05
#: seconds between looks at main's head, the folders' identities, blocksync.toml, a held lock
POLL = 0.3
#: seconds between two rounds of a plugin with no folder to watch (each lists its outside
#: side: an S3 bucket listed every minute)
PLUGIN_POLL = 60.0
#: the shortest ``plugin_poll``: more often is load on the outside side, not live sync
PLUGIN_POLL_MIN = 1.0
#: more changed paths than this in one source: a run over all of its paths instead
MANY_PATHS = 500


def watch(
    ws: Workspace,
    on_event: Callable[[Event], None],
    *,
    stop: threading.Event | None = None,
    debounce: float = DEBOUNCE,
    poll: float = POLL,
    plugin_poll: float = PLUGIN_POLL,
    allow_mass_delete: bool = False,
) -> int:
    """Reconcile the data sources of ``ws`` as their files and blocks change -- file sources
    and plugins granted a ``dir`` watched, other data-block plugins polled every
    ``plugin_poll`` seconds -- until ``stop`` is set or (inside
    :func:`blocksync.interrupts.handling`) a signal comes, following edits of blocksync.toml;
    each round that did something (a run in the run log) and each notice goes to
    ``on_event``. Returns the number of those rounds.

    No source to watch or poll, or a ``debounce`` / ``poll`` / ``plugin_poll`` out of range:
    :class:`~blocksync.errors.UsageError`."""
    for name, value, least in (
        ("debounce", debounce, 0.001),
        ("poll", poll, 0.01),
        ("plugin_poll", plugin_poll, PLUGIN_POLL_MIN),
    ):
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= least):
            raise UsageError(f"{name} must be a number of seconds of at least {least:g}")
    watched, polled = _sources(ws)
    if not watched and not polled:
        raise UsageError(
            'no source to watch: blocksync.toml has no data source of type = "file" and no '
            "data-block plugin"
        )
    watcher = _Watcher(ws, on_event, stop or threading.Event(), debounce, poll, plugin_poll)
    try:
        return watcher.run(watched, polled, allow_mass_delete)
    finally:
        watcher.close()


def _sources(ws: Workspace) -> tuple[dict[str, Watched], list[str]]:
    """The sources of ``ws`` whose folders are watched, and the plugins polled (no ``dir``)."""
    found = {key: Watched(key, spec.paths, spec) for key, spec in ws.file_sources.items()}
    polled = []
    plugins = ws.plugins
    for key in plugins.block_source_keys():
        if not plugins.reconciles(key):
            continue
        folder = plugins.specs[key].dir
        if folder is not None:
            found[key] = Watched(key, (folder,))
        else:
            polled.append(key)
    return found, polled


@dataclass
class _Waiting:
    """What the next round takes: pending paths by source, and what led to them."""

    paths: dict[str, Pending] = field(default_factory=dict)
    files: int = 0
    blocks: int = 0

    def add(self, key: str, paths: Iterable[str] | None) -> None:
        merge(self.paths, key, paths)


class _Watcher:
    def __init__(
        self,
        ws: Workspace,
        on_event: Callable[[Event], None],
        stop: threading.Event,
        debounce: float,
        poll: float,
        plugin_poll: float,
    ) -> None:
        self.ws = ws
        self.say = on_event
        self.stop = stop
        self.watched: dict[str, Watched] = {}
        self.polled: list[str] = []
        self.plugin_poll = plugin_poll
        self.next_poll = time.monotonic() + plugin_poll
        self.folders = Folders({}, stop, debounce, poll)
        self.config_file = settings.ConfigFile(ws.root / CONFIG_FILE)
        self.rounds = 0
        self.lock_said = False
        self.index = BaseIndex(ws.index_db)  # the workspace's index.db: nothing to close

    def close(self) -> None:
        self.folders.close()

    def stopping(self) -> bool:
        return self.stop.is_set() or interrupts.requested() is not None

    def _take(self, watched: dict[str, Watched], polled: list[str]) -> None:
        self.watched, self.polled = watched, polled
        self.folders.replace(watched)

    def _specs(self) -> dict[str, settings.Spec]:
        """How the sources this watch takes are configured (what a reload compares)."""
        files, plugins = self.ws.file_sources, self.ws.plugins.specs
        taken = [*self.watched, *self.polled]
        return {key: files[key] if key in files else plugins[key] for key in taken}

    def run(self, watched: dict[str, Watched], polled: list[str], allow_mass_delete: bool) -> int:
        self._take(watched, polled)
        waiting = _Waiting({key: None for key in [*watched, *polled]})  # first: all, whole
        head = self.ws.blocks.head()
        roots = [printable(str(root)) for w in watched.values() for root in w.roots]
        shown = f"watching {len(watched)} source(s): {', '.join(roots)}" if roots else "no folder"
        self.say(Notice("watching", shown))
        for key in polled:
            text = (
                f"polling source {printable(key)} every {self.plugin_poll:g} s: a plugin with "
                "no folder to watch (edits of its blocks are followed as they come)"
            )
            self.say(Notice("polling", text, key))
        self._check_folders(waiting)
        while not self.stopping():
            changes = self.folders.changes()
            if self.config_file.changed():
                self._reconfigure(waiting)
            # after the wait: a folder removed meanwhile is missing before any round reads it
            self._check_folders(waiting)
            for key, paths in self.folders.route(changes).items():
                waiting.add(key, paths)
            waiting.files += len(changes)
            now = self.ws.blocks.head()
            if now != head:
                waiting.blocks += self._blocks_moved(head, waiting)
                head = now
            if self.polled and time.monotonic() >= self.next_poll:
                for key in self.polled:
                    waiting.add(key, None)
                self.next_poll = time.monotonic() + self.plugin_poll
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

    def _reconfigure(self, waiting: _Waiting) -> None:
        """blocksync.toml changed: use it from the next round on, or say why not."""
        path = self.config_file.path
        before = self._specs()
        try:
            if not path.is_file():
                raise ConfigError(f"{path} is gone: a store's configuration is that file")
            config, sources = self.ws.read_config()
            if config.tables == self.ws.config.tables:
                return  # saved as it was
            settings.check_new_paths(before, {**sources.files, **sources.plugins})
        except BlocksyncError as exc:  # ConfigError, and whatever else: the watch goes on
            self.say(settings.invalid(path, str(exc)))
            return
        old = self.ws.config
        self.ws.use_config(config)
        try:
            watched, polled = _sources(self.ws)
        except BlocksyncError as exc:  # checked by read_config: not expected, but never fatal
            self.ws.use_config(old)
            self.say(settings.invalid(path, str(exc)))
            return
        self._take(watched, polled)
        after = self._specs()
        change = settings.reloaded(path, before, after, polled)
        for key in change.removed:
            waiting.paths.pop(key, None)
        for key in change.added + change.changed:
            waiting.add(key, None)
        self.say(change)

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
            for key in [*self.watched, *self.polled]:
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
        plugins = [key for key, w in self.watched.items() if w.spec is None] + self.polled
        for key in plugins:
            if _plugin_touched(self.ws, key, by_owner, claimed):
                waiting.add(key, None)
        return len(changed)

    def _source(self, key: str) -> FileSource:
        source = self.ws.reconciler.source(key)
        assert isinstance(source, FileSource)  # the keys of ws.file_sources
        return source

    def _round(
        self, ready: Mapping[str, Pending], waiting: _Waiting, allow_mass_delete: bool
    ) -> Round | None:
        """Reconcile ``ready`` under the run lock, recorded in the run log unless quiet; None:
        another run holds the lock (try later)."""
        run = Run(new_run_id())
        started, clock = timestamp(), time.monotonic()
        entries: list[SourceReport] = []
        try:
            with self.ws.locked(WATCH_COMMAND, run_id=run.id):
                try:
                    for key, paths in ready.items():
                        entries += self._reconcile(key, paths, run, allow_mass_delete)
                except Exception as exc:
                    self.ws.runs.start(run.id, WATCH_COMMAND, exclusive=True, started_at=started)
                    finish_failed(self.ws.runs, run.id, WATCH_COMMAND, exc)
                    raise
                # a source a signal kept from starting is no failure: the watch ends, as
                # between rounds
                entries = [e for e in entries if e.not_reached != "signal"]
                open_now = self.ws.reconciler.conflicts.open_count()
                report = ReconcileReport(run.id, entries, open_now, False)
                done = Round(0, report, started, 0.0, waiting.files, waiting.blocks)
                stop, why = report.interruption(), interrupts.reason()
                stopped = stop is not None and any(
                    reason == why for e in entries for _, reason in e.skipped
                )
                if stopped or not done.quiet:
                    record_reconcile(
                        self.ws.runs, run, WATCH_COMMAND, lambda: report, started_at=started
                    )
        except RunLockHeld as exc:
            if not self.lock_said:
                text = f"another run holds the run lock ({exc.who}): the round waits"
                self.say(Notice("lock-held", printable(text)))
                self.lock_said = True
            return None
        self.lock_said = False
        if stopped and stop is not None:
            raise stop
        done.seconds = time.monotonic() - clock
        return done

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
    from ..plugins.source import PluginSource

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
