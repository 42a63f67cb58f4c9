"""The cron job (``blocksync sync``): one locked run over every source, recorded in ``runs``.

A run takes ``store/run.lock`` (another run holding it: :class:`~blocksync.errors.RunLockHeld`
at once, or after waiting with ``wait=True``), records a ``running`` row in the run log,
reconciles every data-block source one after the other under one run id, records the outcome in
that row and returns a :class:`SyncReport`. It never stops at the first conflict or the first
failing source: each source's failure lands in its own entry and the next source goes on.

Exit codes (:attr:`SyncReport.exit_code`)::

    0   clean: every source reconciled, no conflict open
    3   completed, with open conflicts (in any source, also ones left from earlier runs)
    1   a source failed, was aborted (mass-deletion guard) or not reached in time, or a data
        stream's pull failed or was not reached; wins over 3
    75  the run lock is held (raised as RunLockHeld: the run did not start, no row is written)
    130 SIGINT, 143 SIGTERM: raised as Interrupted (see "Signals" below)

Decisions:

* **Streams after sources**: once every source ran, each pull-capable data stream (configured
  as a stream, exporting ``data-stream``, saying ``supports-pull``) is pulled until it has
  nothing new (:func:`blocksync.agents.streams.pull_streams`; paused ones are skipped), the deadline
  checked before each stream and between its pulls; each stream's count or error is an entry
  of ``SyncReport.streams`` (and of the run row's report).
* **One reconcile loop**: the sources are reconciled by ``ws.reconcile(run=...)`` -- the
  library's own loop (:class:`blocksync.sync.reconciler.Reconciler`: failure isolation, progress,
  the deadline), called while this run holds the lock (the thread holding it may take it
  again) -- under one :class:`~blocksync.sync.run.Run`, whose id is the id conflicts name as their
  ``detected_run``, and whose deadline the remotes and streams are checked against too.
* **Timeout and deadline**: ``timeout`` bounds the wait for the lock (as for every writer);
  ``deadline`` the whole run from the call on, waiting for the lock included (a cron job that
  waits must not pile up behind a stuck one). The deadline is checked before each remote,
  source and stream starts: those not started by then are reported as failed, with the reason
  (and listed in ``not_reached``); one already running is never interrupted.
* **The run log row** is written under the lock, before any source runs, and completed even when
  the run ends in an error (its exit code and message then stand in the row); only a killed
  process leaves it ``running``, and the next run marks it ``interrupted``. A store whose
  ``blocksync.toml`` cannot be read cannot be opened as a workspace, but :func:`sync_store` still
  records its run (the log lives in index.db, which needs no configuration), so a cron job that
  broke on its configuration is visible in the run log like any other failed run.

**Signals.** Every writer below holds the lock inside :func:`blocksync.interrupts.handling`:
SIGINT or SIGTERM is recorded, and the run stops at its next safe point, like a deadline that
passed -- each remote, source and stream not started yet is an entry "not reached: interrupted
by ...", a folder source leaves the files it had not written yet (its block commit completes
first, and the bases of what it wrote advance), a plugin's call and its commits complete -- and
then raises :class:`~blocksync.errors.Interrupted` (exit 130 or 143) saying how far it got.
``sync`` first records its row as ``interrupted``, with that exit code and the report of what it
did. A signal while waiting for the lock ends the wait (no row is written); ``pull`` and
``push`` stop between remotes; a conflict's resolution or undo is one unit, which completes.
A second signal exits at once (:mod:`blocksync.interrupts`).

The other writers take the same lock themselves, in the library (``ws.reconcile()``,
``ws.conflicts.resolve()``/``undo()``, ``ws.pull()``/``ws.push()``; see
:meth:`blocksync.workspace.Workspace.locked`), so none of them interleaves with a cron run or
with each other. :func:`run_pull` and :func:`run_push` (``blocksync pull`` / ``push``) hold it
across every remote, as one run recorded in the run log like a sync
(:func:`blocksync.sync.runrecord.record_remotes`), whose merge commits name it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from . import interrupts, workspace
from .agents.streams import StreamReport, pull_streams
from .errors import BlocksyncError, ConfigError
from .fs.safefile import check_regular
from .index.db import timestamp
from .index.runs import RunLog, Summary
from .store.records import Records
from .sync import runlock, runrecord
from .sync.reconciler import ReconcileReport, SourceReport
from .sync.remotes.source import RemotePull, RemotePush
from .sync.run import Run, new_run_id
from .workspace import DEFAULT_AUTHOR, PULL_COMMAND, PUSH_COMMAND, Workspace

_Remote = TypeVar("_Remote", RemotePull, RemotePush)

COMMAND = "blocksync sync"

#: called before each source starts: (source, its 1-based position, number of sources)
Progress = Callable[[str, int, int], None]


@dataclass
class SyncReport:
    """What one sync run did. ``reconcile`` holds every source's entry, unreached ones included."""

    run_id: str
    reconcile: ReconcileReport
    started_at: str
    finished_at: str
    seconds: float  # the run's own time, without waiting for the lock
    lock_waited: float  # seconds spent waiting for the run lock
    timeout: float | None  # the most seconds it would wait for the lock
    not_reached: list[str]  # sources the deadline left out (each also has an error entry)
    deadline: float | None = None  # seconds after which no source, remote or stream started
    #: every pull-capable stream's entry, pulled after the sources (unreached ones included)
    streams: list[StreamReport] = field(default_factory=list)

    @property
    def sources(self) -> list[SourceReport]:
        return self.reconcile.sources

    @property
    def open_conflicts(self) -> int:
        return self.reconcile.open_conflicts

    @property
    def failed(self) -> bool:
        return self.reconcile.failed or any(s.error is not None for s in self.streams)

    @property
    def exit_code(self) -> int:
        """0 clean, 3 open conflicts, 1 a source or stream failed (1 wins over 3)."""
        if any(s.error is not None for s in self.streams):
            return 1
        return self.reconcile.exit_code

    def summary(self) -> Summary:
        return runrecord.summary(self.sources, self.open_conflicts)

    def to_json(self, counts_only: bool = False) -> dict[str, Any]:
        """The report as JSON; ``counts_only``: each source's counts, not its paths."""
        doc = self.reconcile.to_json(counts_only)
        doc.pop("dry_run", None)  # sync never dry-runs
        return {
            "run_id": self.run_id,
            "command": COMMAND,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "seconds": round(self.seconds, 3),
            "lock_waited": round(self.lock_waited, 3),
            "timeout": self.timeout,
            "deadline": self.deadline,
            "timed_out": bool(self.not_reached),
            "not_reached": list(self.not_reached),
            "sources": doc["sources"],
            "streams": [s.to_json() for s in self.streams],
            "summary": vars(self.summary()),
            "open_conflicts": self.open_conflicts,
            "exit_code": self.exit_code,
        }


def run_sync(
    ws: Workspace,
    *,
    wait: bool = False,
    timeout: float | None = None,
    deadline: float | None = None,
    now: Callable[[], float] = time.monotonic,
    progress: Progress | None = None,
    allow_mass_delete: bool = False,
) -> SyncReport:
    """One cron run over the store ``ws`` has open (see the module docstring);
    ``allow_mass_delete`` confirms deletions over the mass-deletion threshold."""
    run = Run(timeout=deadline, clock=now)
    with (
        interrupts.handling(),
        ws.locked(COMMAND, wait=wait, timeout=timeout, run_id=run.id, clock=now) as lock,
        ws.blocks.in_run(run.id),  # every commit of the run names it
    ):
        log = ws.runs  # the workspace's handle: attached (and caught up) once
        row = log.start(run.id, COMMAND, exclusive=True)
        try:
            remotes = _pull_remotes(ws, run, allow_mass_delete)  # pull, reconcile, push
            reconciled = ws.reconcile(
                progress=progress, allow_mass_delete=allow_mass_delete, run=run
            )
            streams = _pull_streams(ws, run)
            _push_remotes(ws, run, remotes, allow_mass_delete)
        except Exception as exc:
            runrecord.finish_failed(log, run.id, COMMAND, exc)
            raise
        remote_entries = list(remotes.values())
        not_reached = (
            [  # sources, streams, then remotes: the order the report lists them in
                e.source for e in reconciled.sources if e.not_reached == "timeout"
            ]
            + [s.stream for s in streams if s.not_reached == "timeout"]
            + [e.source for e in remote_entries if e.not_reached == "timeout"]
        )
        if remote_entries:
            reconciled = ReconcileReport(
                run.id,
                reconciled.sources + remote_entries,
                ws.reconciler.conflicts.open_count(),
                reconciled.dry_run,
            )
        report = SyncReport(
            run_id=run.id,
            reconcile=reconciled,
            started_at=row.started_at,
            finished_at=timestamp(),
            seconds=run.elapsed() - lock.waited,
            lock_waited=lock.waited,
            timeout=timeout,
            not_reached=not_reached,
            deadline=deadline,
            streams=streams,
        )
        stop = report.reconcile.interruption()
        if stop is not None:
            doc = {**report.to_json(), "signal": stop.signal, "exit_code": stop.exit_code}
            log.interrupt(run.id, exit_code=stop.exit_code, summary=report.summary(), report=doc)
            raise stop
        log.finish(
            run.id,
            exit_code=report.exit_code,
            summary=report.summary(),
            report=report.to_json(),
            finished_at=report.finished_at,
        )
        return report


def sync_store(
    path: str | Path,
    *,
    author: str = DEFAULT_AUTHOR,
    wait: bool = False,
    timeout: float | None = None,
    deadline: float | None = None,
    progress: Progress | None = None,
    allow_mass_delete: bool = False,
) -> SyncReport:
    """:func:`run_sync` on the store at ``path`` (``blocksync sync``). When its blocksync.toml
    cannot be read (not TOML, or a ConfigError) the run is still recorded -- a finished row
    with the error and exit code, written under the run lock -- and the error raised."""
    try:
        ws = workspace.open(path, author=author)
    except ConfigError as exc:
        _record_unopened(Path(path), exc, wait, timeout)
        raise
    with ws:
        return run_sync(
            ws,
            wait=wait,
            timeout=timeout,
            deadline=deadline,
            progress=progress,
            allow_mass_delete=allow_mass_delete,
        )


def _record_unopened(root: Path, exc: BlocksyncError, wait: bool, timeout: float | None) -> None:
    index = root / "index.db"
    check_regular(index)
    if not index.exists():  # a store without its index: nowhere to write, nothing to create
        return
    run_id = new_run_id()
    info: dict[str, object] = {"command": COMMAND, "run_id": run_id}
    records = Records(root / "repo")  # the run is kept in git like any other
    try:
        with (
            runlock.acquire(root / runlock.LOCK_FILE, wait, timeout, info=info),
            RunLog(index, records=records) as log,
        ):
            log.start(run_id, COMMAND, exclusive=True)
            runrecord.finish_failed(log, run_id, COMMAND, exc)
    finally:
        records.close()


def _pull_streams(ws: Workspace, run: Run) -> list[StreamReport]:
    """Every pull-capable stream pulled until it has nothing new, each failure its own entry;
    the run's deadline is checked before each stream and between its pulls."""
    try:
        keys = ws.streams.pull_keys()
    except BlocksyncError as exc:  # the configuration itself: one entry says why
        return [StreamReport("(streams)", error=str(exc))]
    return pull_streams(ws.streams, keys, run)


# -- git remotes ----------------------------------------------------------------------------


def _remote_names(ws: Workspace, remote: str | None) -> list[str]:
    if remote is not None:
        ws.remote(remote)  # raises NotFound naming the remotes there are
        return [remote]
    return list(ws.remotes)


def run_pull(
    ws: Workspace,
    remote: str | None = None,
    *,
    wait: bool = False,
    timeout: float | None = None,
    allow_mass_delete: bool = False,
) -> list[RemotePull]:
    """``blocksync pull``: fetch and merge ``remote`` (default: every remote), under the lock
    held across them all, as one run recorded in the run log (its merge commits name it). A
    failing remote raises (the ones before it stay pulled; the run's row holds the error).
    The command's exit code is :func:`pull_exit_code`."""
    names = _remote_names(ws, remote)
    return _recorded(
        ws,
        PULL_COMMAND,
        names,
        lambda name, run_id: ws.pull(name, run_id, allow_mass_delete=allow_mass_delete),
        pull_exit_code,
        wait,
        timeout,
    )


def pull_exit_code(pulls: list[RemotePull]) -> int:
    """What ``blocksync pull`` exits with: 3 when a merge left conflicts open, else 0."""
    return 3 if any(p.conflicts for p in pulls) else 0


def run_push(
    ws: Workspace,
    remote: str | None = None,
    *,
    wait: bool = False,
    timeout: float | None = None,
    allow_mass_delete: bool = False,
) -> list[RemotePush]:
    """``blocksync push``: push main to ``remote`` (default: every remote), under the lock;
    a remote that moved on is merged first (compare-and-swap, never a force push). Recorded
    in the run log as :func:`run_pull` is; exit code 0 when every remote went well."""
    names = _remote_names(ws, remote)
    return _recorded(
        ws,
        PUSH_COMMAND,
        names,
        lambda name, run_id: ws.push(name, run_id, allow_mass_delete=allow_mass_delete),
        lambda pushes: 0,
        wait,
        timeout,
    )


def _recorded(
    ws: Workspace,
    command: str,
    names: list[str],
    one: Callable[[str, str], _Remote],
    exit_code: Callable[[list[_Remote]], int],
    wait: bool,
    timeout: float | None,
) -> list[_Remote]:
    """``one(name, run_id)`` for each remote in turn, one run of ``command`` under the lock,
    recorded in the run log (:func:`blocksync.sync.runrecord.record_remotes`), every commit
    naming it; a signal stops it between two remotes."""
    run = Run()
    with (
        interrupts.handling(),
        ws.locked(command, wait=wait, timeout=timeout, run_id=run.id, clock=run.clock),
        ws.blocks.in_run(run.id),
    ):
        return runrecord.record_remotes(
            ws.runs,
            run,
            command,
            names,
            lambda name: one(name, run.id),
            open_conflicts=ws.reconciler.conflicts.open_count,
            exit_code=exit_code,
        )


def _remote_failure(exc: Exception) -> str:
    if isinstance(exc, (BlocksyncError, OSError)):
        return str(exc)
    return f"internal error ({type(exc).__name__}): {exc}"


def _merge_entry(entry: SourceReport, pull: RemotePull) -> None:
    entry.resolved += [
        (path, "remote -> local" if how == "remote" else how) for path, how in pull.merged
    ]
    entry.needs_resolution += [path for path, _ in pull.conflicts]
    entry.conflict_ids.update(pull.conflicts)


def _pull_remotes(ws: Workspace, run: Run, allow_mass_delete: bool) -> dict[str, SourceReport]:
    """Each configured remote's entry (source ``remote:<name>``) after pulling it."""
    try:
        remotes = ws.remotes
    except BlocksyncError as exc:
        return {"?": SourceReport("remote:?", error=str(exc))}
    entries: dict[str, SourceReport] = {}
    for name, remote in remotes.items():
        entry = entries[name] = SourceReport(remote.source)
        if run.leaves_out(entry):
            continue
        try:
            _merge_entry(entry, ws.pull(name, run.id, allow_mass_delete=allow_mass_delete))
        except Exception as exc:  # noqa: BLE001 -- a remote's failure is its entry's, not the run's
            entry.error = _remote_failure(exc)
    return entries


def _push_remotes(
    ws: Workspace, run: Run, entries: dict[str, SourceReport], allow_mass_delete: bool
) -> None:
    """Push every remote whose pull went well, into its entry."""
    for name, entry in entries.items():
        if entry.error is not None or run.leaves_out(entry):
            continue
        try:
            pushed = ws.push(name, run.id, allow_mass_delete=allow_mass_delete)
            for pull in pushed.pulls:  # the remote moved on meanwhile: merged before pushing
                _merge_entry(entry, pull)
        except Exception as exc:  # noqa: BLE001
            entry.error = _remote_failure(exc)
