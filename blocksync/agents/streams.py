"""Data streams: the seed's lifecycle as a host-side state machine, and pulls with a durable cursor.

A :class:`Stream` wraps the ``data-stream`` bridge of one configured plugin (``source_kind =
"stream"`` or ``"both"``). Its state lives in ``index.db`` (table ``streams``, see
:mod:`blocksync.index.notifications`; kept in git too, as a record of ``refs/blocksync/records``), so
a later process knows it, and so does a rebuilt index::

    stopped --start(owner)--> running --pause--> paused --resume--> running
    running/paused --stop--> stopped

Any other call is :class:`~blocksync.errors.InvalidTransition`, raised before the plugin is
called. A plugin's answer decides a valid call: if ``start``/``stop`` return an error or any call
traps, the state stays. A new process has a fresh plugin instance: before a transition, if the
plugin says ``stopped`` while the host's state is running or paused, the host first restores it
(``start(owner)``, then ``pause``) -- as a restore, not a new start: the plugin's
``sync.restoring()`` is true meanwhile (so it can skip what a start does beyond its own state),
and a notification it emits then that the stream stored already (same text and blocks) is
dropped, so a start that notifies notifies once, however many processes move the stream.

**Pull** (``pull(limit)``): the host passes the stream's stored cursor to ``pull(limit,
cursor)``. The WIT's ``pull`` returns notifications only, so the plugin names its new cursor with
the host function ``sync.set-cursor`` during the pull (a plugin that does not gets the number of
notifications the stream has delivered so far, in decimal: the convention of the echo stream).
After the call returns, its notifications -- those it emitted during the call and those it
returned, block references resolved -- and the new cursor are stored in ONE SQLite transaction,
and as ONE commit of records in git, written before SQLite commits.
Refused, with nothing stored and the cursor unmoved (:class:`~blocksync.errors.PullRefused`,
naming plugin and call):

* a batch over the limit the pull was given (``limit``, capped by the plugin's ``pull_batch``
  limit: ``[limits] pull_batch`` or its table's ``limits``, default 1000);
* a cursor going backwards: one this stream used before (every cursor is kept, table
  ``stream_cursors``), a decimal number not above the current decimal cursor, or notifications
  returned with the cursor left where it was (they would be delivered again).

A pull that fails or traps stores nothing either: the next pull gets the same cursor and retries.
The blocks the plugin writes during a pull are staged and committed as one commit after it,
before its notifications (which name them): a pull that fails writes no block either.
A paused stream is not pulled; a stopped one is (pulling needs no push machinery running).
"""

from __future__ import annotations

import builtins
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

from blocksync.errors import BlocksyncError, InvalidTransition, NotFound, PullRefused, UsageError
from blocksync.index.notifications import NotificationLog, StoredNotification, StreamRow
from blocksync.plugins import PluginSet
from blocksync.plugins.batch import BlockBatch
from blocksync.plugins.bridges import WasmDataStream
from blocksync.shared.wit import BlockRef, SourceStatus
from blocksync.store.blocks import BlockStore
from blocksync.sync.reconciler import Locker
from blocksync.sync.run import Cause, Run

#: how a stream's last error begins when its plugin could not be loaded (cleared once it loads)
_LOAD_REFUSED = "cannot load its plugin: "

STOPPED, RUNNING, PAUSED = (
    SourceStatus.STOPPED.value,
    SourceStatus.RUNNING.value,
    SourceStatus.PAUSED.value,
)

#: action -> (states it is allowed from, the state it leads to)
TRANSITIONS: dict[str, tuple[frozenset[str], str]] = {
    "start": (frozenset({STOPPED}), RUNNING),
    "stop": (frozenset({RUNNING, PAUSED}), STOPPED),
    "pause": (frozenset({RUNNING}), PAUSED),
    "resume": (frozenset({PAUSED}), RUNNING),
}
_STREAM_KINDS = ("stream", "both")


def block_resolver(blocks: BlockStore) -> Callable[[BlockRef], tuple[BlockRef, int] | None]:
    """Look a notification's block reference up by owner and label: (the block's real
    reference, its current version), or None when there is no such block."""

    def resolve(ref: BlockRef) -> tuple[BlockRef, int] | None:
        try:
            newest = blocks.history(ref.agent_id, ref.label)[-1]  # one index query
        except BlocksyncError:  # no such block, or a name that cannot be one: missing
            return None
        if newest.deleted:
            return None
        return BlockRef(
            BlockStore.git_path(ref.agent_id, ref.label), ref.label, ref.agent_id
        ), newest.version

    return resolve


@dataclass(frozen=True)
class StreamStatus:
    """A stream as the host knows it (no plugin call)."""

    key: str
    state: str
    owner: str | None
    cursor: str | None
    delivered: int
    pulls: int
    updated_at: str | None
    last_error: str | None

    @classmethod
    def of(cls, row: StreamRow) -> StreamStatus:
        return cls(
            row.key,
            row.state,
            row.owner,
            row.cursor,
            row.delivered,
            row.pulls,
            row.updated_at,
            row.last_error,
        )

    def to_json(self) -> dict[str, Any]:
        return dict(vars(self))


@dataclass(frozen=True)
class StreamPull:
    """One pull: what it stored (emitted ones first) and where the cursor went."""

    stream: str
    previous_cursor: str | None
    cursor: str | None
    notifications: list[StoredNotification]
    returned: int  # how many the plugin returned (the rest of ``notifications`` it emitted)

    def to_json(self) -> dict[str, Any]:
        return {
            "stream": self.stream,
            "previous_cursor": self.previous_cursor,
            "cursor": self.cursor,
            "returned": self.returned,
            "notifications": [n.to_json() for n in self.notifications],
        }


class Stream:
    """One configured data stream: lifecycle and pulls (see the module docstring)."""

    def __init__(self, key: str, plugins: PluginSet, log: NotificationLog) -> None:
        self.key = key
        self._plugins = plugins
        self._log = log
        self._bridge: WasmDataStream | None = None

    @property
    def bridge(self) -> WasmDataStream:
        if self._bridge is None:
            try:
                self._bridge = self._plugins.data_stream(self.key)
            except BlocksyncError as exc:
                # kept as the stream's last error: `stream list` loads no plugin, and must
                # not show a stream that cannot load (its source_kind, say) as a fine one
                self._log.set_stream_error(self.key, f"{_LOAD_REFUSED}{exc}")
                raise
            if (self._log.stream(self.key).last_error or "").startswith(_LOAD_REFUSED):
                self._log.set_stream_error(self.key, None)  # it loads now
        return self._bridge

    @property
    def state(self) -> str:
        return self._log.stream(self.key).state

    def status(self) -> StreamStatus:
        """The host's view: state, owner, cursor, counts, last error. Calls no plugin."""
        return StreamStatus.of(self._log.stream(self.key))

    def _check(self, action: str) -> StreamRow:
        row = self._log.stream(self.key)
        allowed, _ = TRANSITIONS[action]
        if row.state not in allowed:
            raise InvalidTransition(
                self.key,
                action,
                row.state,
                f"{action} is allowed only when {' or '.join(sorted(allowed))}",
            )
        return row

    def _restore(self, row: StreamRow) -> None:
        """Bring a fresh plugin instance to the state the host stored (another process set it),
        as a restore: the plugin's ``sync.restoring`` says so, and what it emits again is not
        stored twice (:meth:`NotificationLog.restoring`)."""
        if row.state == STOPPED or self.bridge.status() is not SourceStatus.STOPPED:
            return
        with self._log.restoring(self.key), self._log.during(self.key, "data-stream.start"):
            self.bridge.start(row.owner or self._plugins.specs[self.key].agent)
            if row.state == PAUSED:
                self.bridge.pause()

    def start(self, owner: str | None = None) -> StreamStatus:
        """stopped -> running: the plugin's ``start(owner)`` (owner: the agent it is attached to)."""
        spec = self._plugins.specs[self.key]
        owner = owner or spec.agent
        self._check("start")
        if owner not in spec.owners:
            raise UsageError(
                f"stream {self.key!r} is attached to {spec.agent!r}: it cannot start for {owner!r}"
            )
        with self._log.during(self.key, "data-stream.start"):
            self.bridge.start(owner)
        return StreamStatus.of(self._log.set_stream_state(self.key, RUNNING, owner))

    def _move(self, action: str, call: Callable[[], None]) -> StreamStatus:
        row = self._check(action)
        self._restore(row)
        with self._log.during(self.key, f"data-stream.{action}"):
            call()
        return StreamStatus.of(
            self._log.set_stream_state(self.key, TRANSITIONS[action][1], row.owner)
        )

    def stop(self) -> StreamStatus:
        """running or paused -> stopped."""
        return self._move("stop", lambda: self.bridge.stop())

    def pause(self) -> StreamStatus:
        """running -> paused."""
        return self._move("pause", lambda: self.bridge.pause())

    def resume(self) -> StreamStatus:
        """paused -> running."""
        return self._move("resume", lambda: self.bridge.resume())

    def supports_pull(self) -> bool:
        return self.bridge.supports_pull()

    def pull(self, limit: int | None = None) -> StreamPull:
        """At most ``limit`` (default and cap: the plugin's ``pull_batch`` limit) notifications
        after the stored cursor, stored with the new cursor as one unit (module docstring)."""
        row = self._log.stream(self.key)
        if row.state == PAUSED:
            raise InvalidTransition(self.key, "pull", PAUSED, "resume it first")
        plugin = self.bridge.plugin
        cap = plugin.spec.limits.pull_batch
        if limit is not None and limit < 1:
            raise UsageError(f"a pull limit must be at least 1, not {limit}")
        asked = cap if limit is None else min(limit, cap)
        if not self.bridge.supports_pull():
            raise UsageError(
                f"stream {self.key!r} does not support pull (its supports-pull is false)"
            )
        call = "data-stream.pull"
        blocks = plugin.host.services.blocks
        staged = (
            None
            if blocks is None
            else BlockBatch(
                blocks, f"pull {self.key}", f"plugin:{self.key}", made_by=plugin.host.made_by
            )
        )
        try:
            with (
                self._log.capture(self.key, call) as capture,
                staged.attached(plugin.host) if staged is not None else nullcontext(),
            ):
                batch = self.bridge.pull(asked, row.cursor)
            if len(batch) > asked:
                raise PullRefused(
                    plugin.name,
                    plugin.version,
                    call,
                    "batch-too-large",
                    f"returned {len(batch)} notifications, over the limit of {asked} it was "
                    f"given (pull_batch cap {cap}): nothing of this pull was stored, the cursor "
                    f"stays {row.cursor!r}",
                )
            cursor = capture.cursor
            if cursor is None and batch:
                cursor = str(row.delivered + len(batch))
            if staged is not None:
                staged.commit_blocks()  # the blocks the notifications name, before them
            stored = self._log.record_pull(
                self.key, plugin.version, capture, batch, row.cursor, cursor
            )
        except BlocksyncError as exc:
            self._log.set_stream_error(self.key, str(exc))
            raise
        after = self._log.stream(self.key)
        return StreamPull(self.key, row.cursor, after.cursor, stored, len(batch))

    def pull_all(
        self, limit: int | None = None, keep_going: Callable[[], bool] = lambda: True
    ) -> list[StreamPull]:
        """Pull until a pull returns nothing (or ``keep_going`` says stop between pulls)."""
        results = [self.pull(limit)]
        while results[-1].returned and keep_going():
            results.append(self.pull(limit))
        return results


#: what ``blocksync stream pull`` writes into the run lock's note
PULL_COMMAND = "blocksync stream pull"


class Streams:
    """The data streams blocksync.toml configures (``source_kind`` stream or both).

    ``locked(command, wait, timeout)`` holds the store's run lock (the workspace's): what
    :meth:`pull` takes, so that a pull does not run beside a sync pulling the same stream."""

    def __init__(
        self, plugins: PluginSet, log: NotificationLog, locked: Locker | None = None
    ) -> None:
        self._plugins = plugins
        self._log = log
        self._locked = locked
        self._open: dict[str, Stream] = {}

    def pull(
        self,
        key: str,
        limit: int | None = None,
        *,
        wait: bool = False,
        timeout: float | None = None,
    ) -> StreamPull:
        """Pull stream ``key`` once (:meth:`Stream.pull`) under the run lock: held by another
        run, :class:`~blocksync.errors.RunLockHeld` at once, or with ``wait`` once ``timeout``
        seconds (None: no limit) passed."""
        stream = self.get(key)  # an unknown key is refused before the lock is taken
        held = nullcontext() if self._locked is None else self._locked(PULL_COMMAND, wait, timeout)
        with held:
            return stream.pull(limit)

    def keys(self) -> list[str]:
        """Every plugin configured as a stream, in configuration order."""
        return [k for k, s in self._plugins.specs.items() if s.source_kind in _STREAM_KINDS]

    def get(self, key: str) -> Stream:
        if key not in self.keys():
            known = ", ".join(self.keys()) or "none configured"
            raise NotFound(f"no data stream named {key!r} (streams: {known})")
        if key not in self._open:
            self._open[key] = Stream(key, self._plugins, self._log)
        return self._open[key]

    def __getitem__(self, key: str) -> Stream:
        return self.get(key)

    def list(self) -> list[StreamStatus]:
        return [self.get(k).status() for k in self.keys()]

    def pull_keys(self) -> builtins.list[str]:
        """The streams ``blocksync sync`` pulls: configured as a stream, exporting data-stream,
        saying supports-pull. One that fails to load is listed, so that pulling it reports why
        (a stream that cannot even load must not pass for a clean run)."""
        keys: builtins.list[str] = []
        for key in self.keys():
            try:
                plugin = self._plugins.get(key)
                if "data-stream" not in plugin.interfaces:
                    continue
                if not self.get(key).supports_pull():
                    continue
            except BlocksyncError:
                pass
            keys.append(key)
        return keys


@dataclass
class StreamReport:
    """What one cron run did with one stream: how many notifications it pulled, or why not."""

    stream: str
    pulled: int = 0  # notifications the plugin returned (stored)
    emitted: int = 0  # notifications it emitted during its pulls (stored too)
    pulls: int = 0
    cursor: str | None = None
    skipped: str | None = None  # e.g. paused: not an error
    error: str | None = None
    #: not started at all (``error`` says why): the run's deadline passed, or a signal came
    not_reached: Cause | None = None

    def to_json(self) -> dict[str, Any]:
        doc = dict(vars(self))
        del doc["not_reached"]  # its error says so in words
        return doc


def pull_streams(
    streams: Streams,
    keys: builtins.list[str],
    run: Run,
) -> builtins.list[StreamReport]:
    """Pull each stream of ``keys`` until it has nothing new; one report each, whatever fails.

    ``run`` is asked before each stream starts (past its deadline, or signalled: the stream is
    reported not reached, not pulled) and between the pulls of one stream."""
    reports = []
    for key in keys:
        entry = StreamReport(key)
        reports.append(entry)
        if run.leaves_out(entry):
            continue
        try:
            stream = streams.get(key)
            if stream.state == PAUSED:
                entry.skipped = "paused"
                entry.cursor = stream.status().cursor
                continue
            while True:
                result = stream.pull()
                entry.pulls += 1
                entry.pulled += result.returned
                entry.emitted += len(result.notifications) - result.returned
                entry.cursor = result.cursor
                if not result.returned or run.late() is not None:
                    break
        except BlocksyncError as exc:
            entry.error = str(exc)
        except Exception as exc:  # noqa: BLE001 -- a bug must not cost the other streams their run
            entry.error = f"internal error ({type(exc).__name__}): {exc}"
    return reports
