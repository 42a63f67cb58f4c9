"""Workspace: one store folder opened, everything below wired together; the public entry point.

A store folder holds::

    blocksync.toml   configuration
    repo/            bare git repository: the source of truth for block content, sync bases
                     and records (conflicts, runs, notifications, streams)
    index.db         SQLite: indexes over all of that, re-derivable from git (index rebuild)
    plugins/         .wasm files found by discovery
    cache/           compiled plugin artifacts (safe to delete)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, closing, contextmanager, suppress
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from . import config as config_mod
from .errors import (
    BlocksyncError,
    ConfigError,
    IndexCorrupt,
    NotFound,
    StoreExists,
    StoreNotFound,
    UsageError,
)
from .fs.safefile import create_new
from .index import versions
from .index.db import IndexDb
from .shared import progress
from .store import pack
from .store.blocks import BlockStore, Transaction
from .sync import runlock
from .sync.run import Run

# What only some commands use is imported where it is first used (plugins: wasmtime,
# cryptography; tools: jsonschema; remotes: dulwich's client): opening a workspace to read a
# block pays for none of it.
if TYPE_CHECKING:
    from .agents.streams import Streams
    from .agents.tools import ToolBox
    from .index.conflicts import ConflictIndex
    from .index.notifications import NotificationLog
    from .index.runs import RunLog
    from .plugins import PluginSet
    from .plugins.spec import PluginSpec
    from .store.fsck import FsckReport
    from .store.records import Records
    from .sync.folder.config import FileSourceSpec
    from .sync.protocol import SyncSource
    from .sync.reconciler import Conflicts, Reconciler, ReconcileReport
    from .sync.remotes.source import RemotePull, RemotePush, RemoteSync
    from .sync.remotes.transport import Remote
    from .sync.shellpaths import Folder

DEFAULT_AUTHOR = "human:blocksync"
#: what the library's writers write into the run lock's note as their command
RECONCILE_COMMAND = "blocksync reconcile"
PULL_COMMAND = "blocksync pull"
PUSH_COMMAND = "blocksync push"
GC_COMMAND = "blocksync gc"
CONFLICT_BLOCK_COMMAND = "blocksync conflicts block"
#: seconds an object no ref reaches is kept by :meth:`Workspace.gc` (a writer may not have
#: moved its ref yet)
GC_GRACE = pack.PRUNE_GRACE


class Workspace(AbstractContextManager["Workspace"]):
    """An open store. Use :func:`open` or :func:`init` to get one."""

    def __init__(self, root: Path, *, author: str = DEFAULT_AUTHOR) -> None:
        self.root = Path(root)
        if not self.repo_path.is_dir():
            raise StoreNotFound(str(self.root))
        self.config = config_mod.load(self.root / config_mod.CONFIG_FILE)
        #: index.db, opened once: every table of this workspace takes this handle
        self.index_db = IndexDb.open(self.index_path, create=False)
        try:
            self._index = versions.VersionIndex.open(self.index_db)
            self.blocks = BlockStore(
                self.repo_path,
                self._index,
                author,
                durable=self.config.durable,
                machine=self.config.machine,
            )
        except BaseException:
            self.index_db.close()
            raise
        try:
            self.blocks.upgrade()  # a store of an older format: in place, once
        except BaseException:
            self.blocks.close()
            self.index_db.close()
            raise
        self._records: Records | None = None
        self._notifications: NotificationLog | None = None
        self._plugins: PluginSet | None = None
        self._reconciler: Reconciler | None = None
        self._conflict_index: ConflictIndex | None = None
        self._tools: ToolBox | None = None
        self._streams: Streams | None = None
        #: how deep this workspace holds the run lock (it is re-entrant): the outermost hold
        #: refreshes the conflict blocks as it ends
        self._lock_depth = 0
        self._runs: RunLog | None = None

    # -- layout ---------------------------------------------------------------------------

    @property
    def repo_path(self) -> Path:
        return self.root / "repo"

    @property
    def index_path(self) -> Path:
        return self.root / "index.db"

    @property
    def plugins_path(self) -> Path:
        return self.root / "plugins"

    @property
    def cache_path(self) -> Path:
        return self.root / "cache"

    # -- lifecycle ------------------------------------------------------------------------

    @classmethod
    def init(cls, root: Path, *, author: str = DEFAULT_AUTHOR) -> Workspace:
        """Create a store folder (the folder itself may exist, but not a store in it)."""
        root = Path(root)
        if (root / "repo").exists():
            raise StoreExists(str(root))
        root.mkdir(parents=True, exist_ok=True)
        for folder in ("plugins", "cache"):
            (root / folder).mkdir(exist_ok=True)
        # kept when it exists; never written through a link planted there
        create_new(root / config_mod.CONFIG_FILE, config_mod.TEMPLATE.encode("utf-8"))
        versions.VersionIndex.open(root / "index.db", create=True).close()
        BlockStore.init_repo(root / "repo")  # last: its presence is what marks a store
        return cls(root, author=author)

    @property
    def records(self) -> Records:
        """``refs/blocksync/records``: the conflicts, runs, notifications and stream state of
        index.db, kept in git too (the record tables of this workspace are opened with it)."""
        if self._records is None:
            from .store.records import Records

            self._records = Records(self.repo_path, durable=self.config.durable)
        return self._records

    @property
    def notifications(self) -> NotificationLog:
        """Notifications plugins emitted, stored in index.db (and as records in git)."""
        if self._notifications is None:
            from .agents.streams import block_resolver
            from .index.notifications import NotificationLog

            self._notifications = NotificationLog(
                self.index_db, block_resolver(self.blocks), records=self.records
            )
        return self._notifications

    @property
    def streams(self) -> Streams:
        """The data streams (``source_kind`` stream or both): lifecycle, pulls, cursors."""
        if self._streams is None:
            from .agents.streams import Streams

            self._streams = Streams(
                self.plugins,
                self.notifications,
                self._locker,
            )
        return self._streams

    @property
    def plugins(self) -> PluginSet:
        """The plugins blocksync.toml attaches to agents (its tables are checked on first use)."""
        if self._plugins is None:
            from .plugins import HostServices, PluginSet, parse_specs

            specs = parse_specs(self.config.tables, self.root)
            services = HostServices(self.blocks, self.notifications, self.root / "logs" / "plugins")
            self._plugins = PluginSet(specs, services, self.cache_path, self.plugins_path)
        return self._plugins

    @property
    def file_sources(self) -> dict[str, FileSourceSpec]:
        """The ``type = "file"`` data sources of blocksync.toml, by table key."""
        return file_source_specs(self.config, self.root, self.plugins.specs)

    def read_config(self) -> tuple[config_mod.Config, DataSources]:
        """blocksync.toml as it is on disk now, parsed, with its data sources checked as a
        run would check them (:class:`~blocksync.errors.ConfigError` naming the table and key
        at fault). This workspace keeps the configuration it has until :meth:`use_config`."""
        from .plugins import parse_specs

        config = config_mod.load(self.root / config_mod.CONFIG_FILE)
        plugins = parse_specs(config.tables, self.root)
        return config, DataSources(file_source_specs(config, self.root, plugins), plugins)

    def use_config(self, config: config_mod.Config) -> None:
        """Make ``config`` (from :meth:`read_config`) this workspace's from now on: its data
        sources, plugins and tools are opened anew when next used (the plugins loaded now are
        closed). Call it between runs, not inside one. ``[store]`` settings the block store
        took when the store opened (``durable``, ``machine``) keep their values."""
        if self._reconciler is not None:
            self._reconciler.close()
            self._reconciler = None
        if self._plugins is not None:
            self._plugins.close()
            self._plugins = None
        self._tools = None
        self._streams = None
        self.config = config

    @property
    def reconciler(self) -> Reconciler:
        if self._reconciler is None:
            from .sync.folder.source import FileSource
            from .sync.reconciler import Reconciler

            openers: dict[str, Callable[[], SyncSource]] = {
                key: partial(FileSource, spec, self.blocks)
                for key, spec in self.file_sources.items()
            }
            for key in self.plugins.block_source_keys():  # loaded only when asked about
                openers[key] = partial(self.plugins.source, key)
            self._reconciler = Reconciler(
                openers,
                self.conflict_index,
                self.blocks.author,
                resolve_only=self._remote_source,
                listed=self._listed,
            )
        return self._reconciler

    def _listed(self, key: str) -> bool:
        return key not in self.plugins.specs or self.plugins.reconciles(key)

    def locked(
        self,
        command: str,
        *,
        wait: bool = False,
        timeout: float | None = None,
        run_id: str | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = runlock.wait_interruptibly,
    ) -> AbstractContextManager[runlock.RunLock]:
        """Hold ``store/run.lock`` for a ``with`` block, as ``command`` (and ``run_id``) in its
        note. Held by another run: :class:`~blocksync.errors.RunLockHeld` (exit 75) naming it, at
        once, or with ``wait`` once ``timeout`` seconds (``None``: no limit) passed; ``sleep`` is
        the pause between attempts (a caller that must be able to give up early raises from it:
        nothing was written yet). The thread
        holding it may take it again (:func:`blocksync.sync.runlock.hold`): a writer that holds it
        calls the other writers of this API. As the outermost hold ends, still under the lock,
        the ``blocksync:conflicts`` block of every agent with ``conflict_block = true`` is
        brought up to date (:mod:`blocksync.agents.conflict_block`; no commit if it was)."""
        info: dict[str, object] = {"command": command}
        if run_id is not None:
            info["run_id"] = run_id
        hold = runlock.hold(
            self.root / runlock.LOCK_FILE, wait, timeout, info=info, clock=clock, sleep=sleep
        )
        return self._refreshing(hold)

    @contextmanager
    def _refreshing(
        self, hold: AbstractContextManager[runlock.RunLock]
    ) -> Iterator[runlock.RunLock]:
        """``hold``, and when its outermost hold ends, the agents' conflict blocks brought up
        to date, still under the lock: whatever the run changed in the conflict index (or an
        agent wrote into the block) the block shows before another run may start."""
        with hold as lock:
            self._lock_depth += 1
            try:
                yield lock
            except Exception:
                if self._lock_depth == 1:
                    # the run's own error is the one to report; the next run refreshes anyway
                    with suppress(BlocksyncError, OSError):
                        self._refresh_conflict_blocks()
                raise
            else:
                if self._lock_depth == 1:
                    self._refresh_conflict_blocks()
            finally:
                self._lock_depth -= 1

    def _refresh_conflict_blocks(self, agents: Sequence[str] | None = None) -> list[str]:
        """``agents``' blocks refreshed; None: every agent's with the setting, and the
        listings no agent keeps any more retired (a host-label lookup in the index: no
        commit when there is nothing to do)."""
        from .agents import conflict_block

        kept = self.config.conflict_block_agents if agents is None else agents
        return conflict_block.refresh(self.blocks, self.conflict_index, kept, retire=agents is None)

    def refresh_conflict_blocks(
        self,
        agents: Sequence[str] | None = None,
        *,
        wait: bool = False,
        timeout: float | None = None,
    ) -> list[str]:
        """Bring the ``blocksync:conflicts`` block of ``agents`` (default: every agent with
        ``conflict_block = true``) up to date with the conflict index now (every run holding
        the lock does it when it ends), under the run lock (see :meth:`locked`); the owners
        whose block was written. Without ``agents``, a listing an agent no longer keeps
        (its setting turned off, its table removed) is retired as every run's refresh does
        (:mod:`blocksync.agents.conflict_block`). An agent named that has no ``[agents.<id>]``
        table is :class:`NotFound`, one without the setting a :class:`UsageError`, refused
        before the lock is taken. (As the lock is let go, the other agents' blocks are brought
        up to date too, as at the end of every run.)"""
        from .agents import conflict_block

        if agents is not None:
            conflict_block.check_agents(self.config, agents)
        with self.locked(CONFLICT_BLOCK_COMMAND, wait=wait, timeout=timeout):
            return self._refresh_conflict_blocks(agents)

    def conflict_block(self, agent: str) -> str:
        """The text ``agent``'s ``blocksync:conflicts`` block holds when up to date (written
        or not, whatever its ``conflict_block`` setting says)."""
        from .agents import conflict_block

        return conflict_block.text_for(self.conflict_index, agent)

    def _locker(
        self, command: str, wait: bool, timeout: float | None
    ) -> AbstractContextManager[runlock.RunLock]:
        """:meth:`locked` as the library's writers take it (a ``Locker``)."""
        return self.locked(command, wait=wait, timeout=timeout)

    def reconcile(
        self,
        sources: list[str] | None = None,
        paths: list[str] | None = None,
        dry_run: bool = False,
        run_id: str | None = None,
        progress: Callable[[str, int, int], None] | None = None,
        allow_mass_delete: bool = False,
        *,
        wait: bool = False,
        timeout: float | None = None,
        deadline: float | None = None,
        run: Run | None = None,
        cwd: Path | None = None,
    ) -> ReconcileReport:
        """Reconcile every data source (or those named) with its blocks; see ReconcileReport.
        A source whose run would delete more than the mass-deletion threshold of its paths
        (from disk or agent side) fails, nothing of it written, unless ``allow_mass_delete``
        or ``[store] allow_mass_delete`` confirms it.

        Holds the run lock (see :meth:`locked`; ``wait``) -- a dry run writes nothing and takes
        none; ``timeout`` bounds the wait for it, as for every writer. ``deadline``: seconds from
        the call on (the wait for the lock included) after which no source starts: those not
        started by then are failed entries. ``run`` (a :class:`~blocksync.sync.run.Run`) gives the
        run's id, clock and deadline instead. Unknown sources and paths no source has are
        refused before the lock is taken.

        ``cwd``: ``paths`` are as a shell gives them, relative to ``cwd`` or absolute, each
        placed in the source whose folder holds it (:meth:`place_paths`).

        A run that is not a dry run is recorded in the run log (:attr:`runs`) and its commits
        name it (``Blocksync-Run``) -- unless the caller gives ``run``: then the run is the
        caller's (``blocksync sync``), which records it."""
        from .sync.reconciler import new_run_id
        from .sync.runrecord import record_reconcile

        own_run = run is None
        run = run or Run(run_id or new_run_id(), deadline)
        placed: dict[str, list[str]] | None = None
        if cwd is not None and paths:
            placed, paths = self.place_paths(paths, cwd, sources)
        plan = self.reconciler.plan(sources, paths, placed)
        allow = allow_mass_delete or self.config.allow_mass_delete
        if dry_run:
            return self.reconciler.execute(plan, run, True, progress, allow)
        with (
            self.locked(
                RECONCILE_COMMAND, wait=wait, timeout=timeout, run_id=run.id, clock=run.clock
            ),
            self.blocks.in_run(run.id),
        ):
            work = partial(self.reconciler.execute, plan, run, False, progress, allow)
            if not own_run:
                return work()
            return record_reconcile(self.runs, run, RECONCILE_COMMAND, work)

    def source_folders(self) -> list[Folder]:
        """The folders whose files are paths of a source: each folder source's roots, each
        block-source plugin's granted ``dir``."""
        from .sync.shellpaths import Folder

        folders = [
            Folder(key, root, spec.source_path(i, ""))  # "" or "1:": the prefix of its paths
            for key, spec in self.file_sources.items()
            for i, root in enumerate(spec.paths)
        ]
        for key in self.plugins.block_source_keys():
            folder = self.plugins.specs[key].dir
            if folder is not None:
                folders.append(Folder(key, folder))
        return folders

    def place_paths(
        self, paths: Sequence[str], cwd: Path, sources: Sequence[str] | None = None
    ) -> tuple[dict[str, list[str]], list[str]]:
        """``paths`` as a shell gives them, relative to ``cwd`` or absolute: those in a source's
        folder as ``{source: [its paths]}``, and the relative ones in none, taken as paths of a
        source as reports name them (``shopping.md``, ``alice/plan``), the form ``reconcile``
        always took. A path in no folder that no source of ``sources`` (default: all) has, or
        an absolute one in no folder, is a :class:`UsageError` naming the sources' folders; a
        relative path that is a file in one source's folder from ``cwd`` and a path some
        (other) source has as given is ambiguous, a :class:`UsageError` too."""
        from .sync.shellpaths import describe, place

        folders = self.source_folders()
        keys = list(self.reconciler.plan(sources))
        placed: dict[str, list[str]] = {}
        rest: list[str] = []
        for path in dict.fromkeys(paths):
            where = place(path, cwd, folders)
            as_given = [] if Path(path).is_absolute() else self.reconciler.holders(keys, path)
            if where is not None and where[0] not in keys and as_given:
                where = None  # --source named another: the path is that source's, as given
            if where is None and not as_given:
                try:  # why it is no path of a source as given: said as well
                    self.reconciler.route(keys, [path])
                    why = "nor a path of a source"
                except (UsageError, NotFound) as exc:
                    why = str(exc)
                raise UsageError(f"{path!r} is in no data source: {describe(folders)}; and {why}")
            if where is None:
                rest.append(path)
                continue
            source, own = where
            surely = [] if as_given == [] else self.reconciler.holders(keys, path, surely=True)
            if any((key, path) != where for key in surely):
                raise UsageError(
                    f"{path!r} is ambiguous: from {cwd} it is {own!r} of source {source!r}, "
                    f"and as given a path of {', '.join(surely)}; give it as an absolute path, "
                    f"or name the source with --source"
                )
            placed.setdefault(source, []).append(own)
        return placed, rest

    def _remote_source(self, key: str) -> SyncSource | None:
        # any remote:<name>, configured or not: its open conflicts outlive `remote remove`
        from .sync.remotes.source import RemoteSource
        from .sync.remotes.transport import SOURCE_PREFIX

        if not key.startswith(SOURCE_PREFIX):
            return None
        return RemoteSource(key, self.blocks, self.reconciler.conflicts)

    # -- git remotes ----------------------------------------------------------------------

    @property
    def remotes(self) -> dict[str, Remote]:
        """The ``[remotes.<name>]`` of blocksync.toml, in file order."""
        from .sync.remotes.transport import parse_remotes

        return parse_remotes(self.config.tables, str(self.config.path))

    def remote(self, name: str) -> Remote:
        remotes = self.remotes
        if name not in remotes:
            known = ", ".join(remotes) or "none configured"
            raise NotFound(f"no remote named {name!r} (known: {known})")
        return remotes[name]

    def add_remote(self, name: str, url: str) -> Remote:
        """Append ``[remotes.<name>] url = ...`` to blocksync.toml (the rest kept byte for byte)."""
        from .sync.remotes.transport import add_remote

        remote = add_remote(self.root / config_mod.CONFIG_FILE, name, url)
        self.config = config_mod.load(self.root / config_mod.CONFIG_FILE)
        return remote

    def remove_remote(self, name: str) -> Remote:
        """Remove ``[remotes.<name>]`` from blocksync.toml; its open conflicts stay resolvable."""
        from .sync.remotes.transport import remove_remote

        remote = remove_remote(self.root / config_mod.CONFIG_FILE, name)
        self.config = config_mod.load(self.root / config_mod.CONFIG_FILE)
        return remote

    @property
    def remote_sync(self) -> RemoteSync:
        from .sync.remotes.source import RemoteSync

        return RemoteSync(self.blocks, self.reconciler.conflicts, self.blocks.author)

    def pull(
        self,
        name: str,
        run_id: str | None = None,
        *,
        allow_mass_delete: bool = False,
        wait: bool = False,
        timeout: float | None = None,
    ) -> RemotePull:
        """Fetch remote ``name``'s main and merge it into main (conflicts into the index), under
        the run lock (see :meth:`locked`; ``timeout`` bounds the wait for it). A pull that would
        delete most blocks is refused (MassDeletionRefused) unless ``allow_mass_delete`` or
        ``[store] allow_mass_delete``."""
        from .sync.reconciler import new_run_id

        remote = self.remote(name)
        allow = allow_mass_delete or self.config.allow_mass_delete
        with self.locked(PULL_COMMAND, wait=wait, timeout=timeout, run_id=run_id):
            return self.remote_sync.pull(remote, run_id or new_run_id(), allow_mass_delete=allow)

    def push(
        self,
        name: str,
        run_id: str | None = None,
        *,
        allow_mass_delete: bool = False,
        wait: bool = False,
        timeout: float | None = None,
    ) -> RemotePush:
        """Push main to remote ``name`` by compare-and-swap, merging first when it moved on (that
        merge is a pull: ``allow_mass_delete`` as there), under the run lock like :meth:`pull`."""
        from .sync.reconciler import new_run_id

        remote = self.remote(name)
        allow = allow_mass_delete or self.config.allow_mass_delete
        with self.locked(PUSH_COMMAND, wait=wait, timeout=timeout, run_id=run_id):
            return self.remote_sync.push(remote, run_id or new_run_id(), allow_mass_delete=allow)

    @property
    def conflict_index(self) -> ConflictIndex:
        """The ``conflicts`` table of index.db (opened on first use)."""
        if self._conflict_index is None:
            from .index.conflicts import ConflictIndex

            self._conflict_index = ConflictIndex(self.index_db, records=self.records)
        return self._conflict_index

    def run_log(self) -> RunLog:
        """The ``runs`` table of index.db, its rows kept as records in git too (close it)."""
        from .index.runs import RunLog

        return RunLog(self.index_db, records=self.records)

    @property
    def runs(self) -> RunLog:
        """The run log, to read: ``runs.list(limit)`` (newest first), ``runs.get(id)`` (an id
        or a unique prefix of one). What ``blocksync runs`` shows."""
        if self._runs is None:
            self._runs = self.run_log()
        return self._runs

    @property
    def conflicts(self) -> Conflicts:
        """The conflict index: ``list``, ``get``, ``resolve``, ``undo`` (only the last two open
        the data sources, loading their plugins, and hold the run lock)."""
        from .sync.reconciler import Conflicts

        return Conflicts(
            self.conflict_index,
            lambda: self.reconciler,
            self._locker,
        )

    @property
    def tools(self) -> ToolBox:
        """Every tool an agent can call: the built-in conflict and history tools and the tools
        of the configured plugins; ``list``, ``call``, ``run`` (see :mod:`blocksync.agents.tools`)."""
        if self._tools is None:
            from .agents.agent_tools import builtin_tools
            from .agents.tools import ToolBox

            self._tools = ToolBox(
                self.plugins,
                builtin_tools(self.conflicts, self.blocks, self.config.may_act_for),
                self._locker,
                self.config.may_act_for,
            )
        return self._tools

    def close(self) -> None:
        if self._reconciler is not None:
            self._reconciler.close()
        if self._conflict_index is not None:
            self._conflict_index.disconnect()
        if self._runs is not None:
            self._runs.close()
        if self._plugins is not None:
            self._plugins.close()
        if self._notifications is not None:
            self._notifications.close()
        if self._records is not None:
            self._records.close()
        self.blocks.close()
        self.index_db.close()
        # git's `gc --auto` after a command: one directory listing unless the store is past
        # its loose-object limit (store.pack; `git config gc.auto 0` in repo/ turns it off)
        pack.after_write(self.repo_path, self.config.durable)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- operations across the store ------------------------------------------------------

    def transaction(
        self, message: str, author: str | None = None
    ) -> AbstractContextManager[Transaction]:
        """``with ws.transaction("msg") as tx: tx.update(...)`` writes one commit."""
        return self.blocks.transaction(message, author)

    def fsck(self) -> FsckReport:
        return fsck(self.root)

    def gc(
        self,
        *,
        grace: float = GC_GRACE,
        wait: bool = False,
        timeout: float | None = None,
        engine: pack.Engine | None = None,
    ) -> pack.GcResult:
        """Pack every object a ref reaches into one pack and delete the objects no ref reaches
        that are older than ``grace`` seconds (a younger one may belong to a writer that has not
        moved its ref yet); never a version in history. With ``git`` on PATH it runs git's
        repack/prune/commit-graph (deltas: far smaller, faster ``git log``), else dulwich's
        (``engine`` forces one). Under the run lock (see :meth:`locked`: ``wait``, ``timeout``)."""
        with self.locked(GC_COMMAND, wait=wait, timeout=timeout):
            return pack.collect(
                self.repo_path, grace=grace, durable=self.config.durable, use=engine
            )


@dataclass(frozen=True)
class DataSources:
    """The data sources a configuration declares: its file sources and its plugins, by key."""

    files: dict[str, FileSourceSpec]
    plugins: dict[str, PluginSpec]


def file_source_specs(
    config: config_mod.Config, root: Path, plugins: Mapping[str, PluginSpec]
) -> dict[str, FileSourceSpec]:
    """The ``type = "file"`` data sources of ``config`` (a store at ``root``), by table key;
    a key that ``plugins`` (or another file source) has too is a ConfigError."""
    from .sync.folder.config import parse_file_source

    specs: dict[str, FileSourceSpec] = {}
    for agent, table in config.agents.items():
        sources = table.get("data_sources", {}) if isinstance(table, dict) else {}
        for key, source in sources.items():
            if isinstance(source, dict) and source.get("type") == "file":
                if key in specs or key in plugins:
                    raise ConfigError(f"data source {key!r} is configured twice: keys name sources")
                specs[key] = parse_file_source(agent, key, source, root)
    return specs


def open(path: str | Path, *, author: str = DEFAULT_AUTHOR) -> Workspace:
    """Open the store at ``path``."""
    return Workspace(Path(path), author=author)


def init(path: str | Path, *, author: str = DEFAULT_AUTHOR) -> Workspace:
    """Create a store at ``path`` and open it."""
    return Workspace.init(Path(path), author=author)


def _follow(repo_path: Path, index: versions.VersionIndex, head: str | None = None) -> None:
    """Catch ``index`` up with main (or with commit ``head``) of the repository."""
    store = BlockStore(repo_path, index, DEFAULT_AUTHOR)
    try:
        with progress.current().task("indexing the history of main"):
            _catch_up(store, index, head)
    finally:
        store.close()


def _catch_up(store: BlockStore, index: versions.VersionIndex, head: str | None) -> None:
    if head is None:
        store.catch_up_index()
    else:
        index.catch_up(head, store.read_commit_info)


def rebuild_index(path: str | Path) -> None:
    """Recreate ``index.db`` from the repository: the version index from main, and conflicts,
    runs, notifications and stream state from ``refs/blocksync/records`` (git wins: a row
    that differs from its record is put back as git has it).

    A readable file is rebuilt in place (the sync bases' index catches up by itself); a missing
    or damaged one is replaced by a new one built beside it. With no records ref (a store from
    before records) the rows index.db has are kept, and written to git.
    """
    from .store.records import Records

    root = _existing_store(path)
    index_path = root / "index.db"
    records = Records(root / "repo")
    try:
        try:
            index = versions.VersionIndex.open(index_path)
            try:
                index.reset()
                _follow(root / "repo", index)
            finally:
                index.close()
            with closing(IndexDb.open(index_path)) as db:
                records.restore(db)
            return
        except IndexCorrupt:
            pass
        built = root / "index.db.rebuild"
        versions.remove(built)
        index = versions.VersionIndex.open(built, create=True)
        try:
            _follow(root / "repo", index)
        finally:
            index.close()
        with closing(IndexDb.open(built)) as db:
            records.restore(db)
        versions.install(built, index_path)
    finally:
        records.close()


def fsck(path: str | Path) -> FsckReport:
    """Check the repository's objects and blocks, the version index against a fresh rebuild,
    and the record tables against ``refs/blocksync/records`` (each row that differs named).

    Works on a store whose index is missing or damaged: that is one of the things it reports.
    """
    from .store.fsck import FsckReport, check_repository

    root = _existing_store(path)
    report = FsckReport()
    with progress.current().task(f"checking {root / 'repo'}"):
        check_repository(root / "repo", report)
    if not report.ok:
        return report
    try:
        index = versions.VersionIndex.open(root / "index.db")
    except IndexCorrupt as exc:
        report.add("index", str(exc))
        return report
    try:
        for problem in index.integrity_problems():
            report.add("index", f"SQLite integrity: {problem}")
        _follow(root / "repo", index)  # a writer killed before indexing is not damage
        head = index.indexed_head()
        actual = index.dump()
    except BlocksyncError as exc:
        report.add("index", str(exc))
        return report
    finally:
        index.close()
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        fresh = versions.VersionIndex.open(Path(tmp) / "index.db", create=True)
        try:
            _follow(root / "repo", fresh, head)  # to the same commit, even if main moved on
            expected = fresh.dump()
        finally:
            fresh.close()
    for table, rows in expected.items():
        if actual.get(table) != rows:
            report.add(
                "index",
                f"table {table} of {root / 'index.db'} does not match the repository: "
                "run `blocksync index rebuild`",
            )
    _check_records(root, report)
    return report


def _check_records(root: Path, report: FsckReport) -> None:
    """Each record table row against its record in git (git is the truth: rebuild)."""
    from .store.records import Records

    records = Records(root / "repo")
    try:
        with closing(IndexDb.open(root / "index.db", create=False)) as db:
            problems = records.check(db)
    except BlocksyncError as exc:
        report.add("records", str(exc))
        return
    finally:
        records.close()
    if problems:
        problems[-1] += " (run `blocksync index rebuild`: git holds the records that count)"
    for problem in problems:
        report.add("records", problem)


def _existing_store(path: str | Path) -> Path:
    root = Path(path)
    if not (root / "repo").is_dir():
        raise StoreNotFound(str(root))
    return root
