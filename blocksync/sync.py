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
  nothing new (:func:`blocksync.streams.pull_streams`; paused ones are skipped), the deadline
  checked before each stream and between its pulls; each stream's count or error is an entry
  of ``SyncReport.streams`` (and of the run row's report).
* **One source per reconcile call**, in configuration order, so the timeout can be checked
  between sources and progress reported per source; all calls share the run's id, which is the
  id conflicts name as their ``detected_run``.
* **Timeout** covers the whole run from the call on, waiting for the lock included (a cron job
  that waits must not pile up behind a stuck one). It is checked before each source starts:
  sources not started by then are reported as failed, with the reason. A source already running
  is never interrupted (a thread cannot be killed safely, and a half-applied source is exactly
  what the write order guards against); plugin calls have their own wall-clock limits, so the
  overrun is bounded by one source.
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

The other writers of the command line take the same lock, through :func:`locked`, so none of them
interleaves with a cron run or with each other:

* :func:`run_reconcile` (``blocksync reconcile``): the same per-source run, with the same
  ``wait``/``timeout`` semantics and exit codes, over the sources (and paths) asked for; it writes
  no ``runs`` row. A **dry run takes no lock**: it writes nothing, so it may run beside a sync.
* :func:`resolve_conflict` and :func:`undo_resolution` (``blocksync conflicts resolve``/``undo``):
  one conflict under the lock; ``timeout`` bounds only the wait for it (there are no sources).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from . import interrupts, runlock, workspace
from .conflicts import Conflict
from .errors import BlocksyncError, ConfigError, Interrupted
from .reconcile import ReconcileReport, SourceReport, Take, new_run_id
from .records import Records
from .runs import RunLog, Summary, timestamp
from .streams import StreamReport, pull_streams
from .remotes_source import PullResult, PushResult
from .safefile import check_regular
from .workspace import DEFAULT_AUTHOR, Workspace

_R = TypeVar("_R")

COMMAND = "blocksync sync"
#: what the other writers of the command line write into the lock note as their command
RECONCILE_COMMAND = "blocksync reconcile"
RESOLVE_COMMAND = "blocksync conflicts resolve"
UNDO_COMMAND = "blocksync conflicts undo"

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
    timeout: float | None
    not_reached: list[str]  # sources the timeout left out (each also has an error entry)
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
        sources = self.sources
        return Summary(
            sources=len(sources),
            failed_sources=sum(s.error is not None for s in sources),
            resolved=sum(len(s.resolved) for s in sources),
            needs_resolution=sum(len(s.needs_resolution) for s in sources),
            unchanged=sum(s.unchanged for s in sources),
            skipped=sum(len(s.skipped) for s in sources),
            open_conflicts=self.open_conflicts,
        )

    def to_json(self) -> dict[str, Any]:
        doc = self.reconcile.to_json()
        doc.pop("dry_run", None)  # sync never dry-runs
        return {
            "run_id": self.run_id,
            "command": COMMAND,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "seconds": round(self.seconds, 3),
            "lock_waited": round(self.lock_waited, 3),
            "timeout": self.timeout,
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
    now: Callable[[], float] = time.monotonic,
    progress: Progress | None = None,
    allow_mass_delete: bool = False,
) -> SyncReport:
    """One cron run over the store ``ws`` has open (see the module docstring);
    ``allow_mass_delete`` confirms deletions over the mass-deletion threshold."""
    started = now()
    deadline = None if timeout is None else (started + timeout, timeout)
    run_id = new_run_id()
    with (
        locked(ws, COMMAND, wait=wait, timeout=timeout, run_id=run_id, now=now) as lock,
        ws.run_log() as log,
    ):
        row = log.start(run_id, COMMAND, exclusive=True)
        try:
            remotes = _pull_remotes(ws, run_id, deadline, now, allow_mass_delete)  # pull, reconcile, push
            reconciled, not_reached = _reconcile_sources(
                ws, _source_names(ws, None), run_id, deadline, now, progress,
                allow_mass_delete=allow_mass_delete,
            )
            streams = _pull_streams(ws, deadline, now, not_reached)
            reconciled = _push_remotes(
                ws, run_id, deadline, now, remotes, reconciled, not_reached, allow_mass_delete
            )
            # Later issues add their steps here, each under the same run id and deadline,
            # each failure reported like a source's.
        except Exception as exc:
            _finish_failed(log, run_id, exc)
            raise
        report = SyncReport(
            run_id=run_id,
            reconcile=reconciled,
            started_at=row.started_at,
            finished_at=timestamp(),
            seconds=now() - started - lock.waited,
            lock_waited=lock.waited,
            timeout=timeout,
            not_reached=not_reached,
            streams=streams,
        )
        stop = _interruption(report.reconcile)
        if stop is not None:
            doc = {**report.to_json(), "signal": stop.signal, "exit_code": stop.exit_code}
            log.interrupt(run_id, exit_code=stop.exit_code, summary=report.summary(), report=doc)
            raise stop
        log.finish(
            run_id, exit_code=report.exit_code, summary=report.summary(),
            report=report.to_json(), finished_at=report.finished_at,
        )
        return report


def sync_store(
    path: str | Path,
    *,
    author: str = DEFAULT_AUTHOR,
    wait: bool = False,
    timeout: float | None = None,
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
            ws, wait=wait, timeout=timeout, progress=progress, allow_mass_delete=allow_mass_delete
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
            _finish_failed(log, run_id, exc)
    finally:
        records.close()


def _finish_failed(log: RunLog, run_id: str, exc: Exception) -> None:
    """Complete the row of a run that ended in ``exc``: its exit code and message stand in it."""
    code = exc.exit_code if isinstance(exc, BlocksyncError) else 1
    log.finish(
        run_id, exit_code=code, summary=Summary(),
        report={"run_id": run_id, "command": COMMAND, "error": str(exc), "exit_code": code},
    )


def _interruption(report: ReconcileReport) -> Interrupted | None:
    """The run's :class:`Interrupted`, saying how far it got; None: no signal asked it to stop."""
    signum, why = interrupts.requested(), interrupts.reason()
    if signum is None:
        return None
    reached = [s for s in report.sources if s.error != why]
    left = sum(reason == why for s in reached for _, reason in s.skipped)
    detail = f"stopped after {len(reached)} of {len(report.sources)} source(s)"
    if left:
        detail += f", leaving {left} path(s) for the next run"
    return Interrupted(signum, detail)


def _wait_interruptibly(pause: float) -> None:
    interrupts.check("stopped while waiting for the run lock, before it wrote anything")
    time.sleep(pause)


@contextmanager
def locked(
    ws: Workspace,
    command: str,
    *,
    wait: bool = False,
    timeout: float | None = None,
    run_id: str | None = None,
    now: Callable[[], float] = time.monotonic,
) -> Iterator[runlock.RunLock]:
    """Hold ``store/run.lock`` of ``ws`` for the ``with`` block, as ``command`` (and ``run_id``).

    Held by another run: :class:`~blocksync.errors.RunLockHeld` (exit 75) naming it, at once, or
    with ``wait`` once ``timeout`` seconds (``None``: no limit) have passed without it letting go.
    SIGINT and SIGTERM are handled while it waits and holds (see "Signals" above).
    """
    info: dict[str, object] = {"command": command}
    if run_id is not None:
        info["run_id"] = run_id
    with (
        interrupts.handling(),
        runlock.acquire(
            ws.root / runlock.LOCK_FILE, wait, timeout, info=info, clock=now,
            sleep=_wait_interruptibly,
        ) as lock,
    ):
        yield lock


def run_reconcile(
    ws: Workspace,
    sources: Sequence[str] | None = None,
    paths: Sequence[str] | None = None,
    *,
    dry_run: bool = False,
    wait: bool = False,
    timeout: float | None = None,
    now: Callable[[], float] = time.monotonic,
    progress: Progress | None = None,
    allow_mass_delete: bool = False,
) -> ReconcileReport:
    """``blocksync reconcile``: the sources named (default: all) under the run lock.

    Like :func:`run_sync` -- the lock (``wait``), the ``timeout`` (lock wait included; sources
    not started by then are failed entries), one entry per source whatever fails -- but over
    ``sources`` and ``paths`` only, without a ``runs`` row. ``dry_run`` writes nothing and so
    takes no lock (``wait`` does nothing then). An unknown source name raises
    :class:`~blocksync.errors.NotFound` before anything runs.
    """
    started = now()
    deadline = None if timeout is None else (started + timeout, timeout)
    names = _source_names(ws, sources)
    routed = None
    if paths is not None:  # each path to its sources; one no source has is refused here
        routed = ws.reconciler.route(names, paths)
        names = [name for name in names if routed[name]]
    run_id = new_run_id()
    if dry_run:
        report, _ = _reconcile_sources(
            ws, names, run_id, deadline, now, progress, routed, True, allow_mass_delete
        )
        return report
    with locked(ws, RECONCILE_COMMAND, wait=wait, timeout=timeout, run_id=run_id, now=now):
        report, _ = _reconcile_sources(
            ws, names, run_id, deadline, now, progress, routed, False, allow_mass_delete
        )
        stop = _interruption(report)
        if stop is not None:
            raise stop
        return report


def resolve_conflict(
    ws: Workspace,
    conflict_id: str,
    take: Take | None = None,
    content: str | None = None,
    *,
    resolver: str | None = None,
    wait: bool = False,
    timeout: float | None = None,
    now: Callable[[], float] = time.monotonic,
) -> Conflict:
    """``ws.conflicts.resolve(...)`` under the run lock (``timeout`` bounds the wait for it)."""
    with locked(ws, RESOLVE_COMMAND, wait=wait, timeout=timeout, now=now):
        return ws.conflicts.resolve(conflict_id, take, content, resolver)


def undo_resolution(
    ws: Workspace,
    conflict_id: str,
    *,
    resolver: str | None = None,
    wait: bool = False,
    timeout: float | None = None,
    now: Callable[[], float] = time.monotonic,
) -> Conflict:
    """``ws.conflicts.undo(...)`` under the run lock (``timeout`` bounds the wait for it)."""
    with locked(ws, UNDO_COMMAND, wait=wait, timeout=timeout, now=now):
        return ws.conflicts.undo(conflict_id, resolver)


def _pull_streams(
    ws: Workspace,
    deadline: tuple[float, float] | None,
    now: Callable[[], float],
    not_reached: list[str],
) -> list[StreamReport]:
    """Every pull-capable stream pulled until it has nothing new, each failure its own entry;
    the run's deadline is checked before each stream and between its pulls."""
    try:
        keys = ws.streams.pull_keys()
    except BlocksyncError as exc:  # the configuration itself: one entry says why
        return [StreamReport("(streams)", error=str(exc))]

    reports = pull_streams(
        ws.streams, keys, lambda: _late(deadline, now) is None, lambda: _late(deadline, now)
    )
    not_reached += [r.stream for r in reports if _timed_out(r.error)]
    return reports


def _source_names(ws: Workspace, sources: Sequence[str] | None) -> list[str]:
    # the sources ws.reconcile() runs when given none, in its order: file sources, then plugins
    known = ws.reconciler.keys
    if not sources:
        return known
    names = list(dict.fromkeys(sources))
    for name in names:
        if name not in known:
            ws.reconciler.source(name)  # raises NotFound naming the sources there are
    return names


def _reconcile_sources(
    ws: Workspace,
    names: list[str],
    run_id: str,
    deadline: tuple[float, float] | None,  # (the clock's time, the timeout it came from)
    now: Callable[[], float],
    progress: Progress | None,
    paths: Mapping[str, Sequence[str]] | None = None,  # each source's own paths (routed)
    dry_run: bool = False,
    allow_mass_delete: bool = False,
) -> tuple[ReconcileReport, list[str]]:
    entries: list[SourceReport] = []
    not_reached: list[str] = []
    for position, name in enumerate(names, start=1):
        why = _late(deadline, now)
        if why is not None:
            if _timed_out(why):
                not_reached.append(name)
            entries.append(SourceReport(name, error=why))
            continue
        if progress is not None:
            progress(name, position, len(names))
        own = None if paths is None else paths[name]
        entries.append(_reconcile_one(ws, name, run_id, own, dry_run, allow_mass_delete))
    open_conflicts = ws.reconciler.conflicts.open_count()
    return ReconcileReport(run_id, entries, open_conflicts, dry_run=dry_run), not_reached


def _reconcile_one(
    ws: Workspace,
    name: str,
    run_id: str,
    paths: Sequence[str] | None,
    dry_run: bool,
    allow_mass_delete: bool,
) -> SourceReport:
    """One source's entry; its failure, whatever it is, is the entry's error, never the run's."""
    try:
        report = ws.reconcile(
            sources=[name], paths=list(paths) if paths is not None else None, dry_run=dry_run,
            run_id=run_id, allow_mass_delete=allow_mass_delete,
        )
    except (BlocksyncError, OSError) as exc:
        return SourceReport(name, error=str(exc))
    except Exception as exc:  # noqa: BLE001 -- a bug must not cost the other sources their run
        return SourceReport(name, error=f"internal error ({type(exc).__name__}): {exc}")
    (entry,) = report.sources
    return entry


# -- git remotes ----------------------------------------------------------------------------

PULL_COMMAND = "blocksync pull"
PUSH_COMMAND = "blocksync push"


def _remote_names(ws: Workspace, remote: str | None) -> list[str]:
    if remote is not None:
        ws.remote(remote)  # raises NotFound naming the remotes there are
        return [remote]
    return list(ws.remotes)


def run_pull(
    ws: Workspace, remote: str | None = None, *, wait: bool = False, timeout: float | None = None,
    allow_mass_delete: bool = False,
) -> list[PullResult]:
    """``blocksync pull``: fetch and merge ``remote`` (default: every remote), under the lock.
    A failing remote raises (the ones before it stay pulled)."""
    names = _remote_names(ws, remote)
    with locked(ws, PULL_COMMAND, wait=wait, timeout=timeout):
        run_id = new_run_id()
        return _each_remote(
            names, lambda name: ws.pull(name, run_id, allow_mass_delete=allow_mass_delete)
        )


def run_push(
    ws: Workspace, remote: str | None = None, *, wait: bool = False, timeout: float | None = None,
    allow_mass_delete: bool = False,
) -> list[PushResult]:
    """``blocksync push``: push main to ``remote`` (default: every remote), under the lock;
    a remote that moved on is merged first (compare-and-swap, never a force push)."""
    names = _remote_names(ws, remote)
    with locked(ws, PUSH_COMMAND, wait=wait, timeout=timeout):
        run_id = new_run_id()
        return _each_remote(
            names, lambda name: ws.push(name, run_id, allow_mass_delete=allow_mass_delete)
        )


def _each_remote(names: list[str], one: Callable[[str], _R]) -> list[_R]:
    """``one(name)`` for each remote, one after the other; a signal stops it between two."""
    done: list[_R] = []
    for name in names:
        interrupts.check(f"stopped after {len(done)} of {len(names)} remote(s)")
        done.append(one(name))
    return done


def _remote_failure(exc: Exception) -> str:
    if isinstance(exc, (BlocksyncError, OSError)):
        return str(exc)
    return f"internal error ({type(exc).__name__}): {exc}"


def _late(deadline: tuple[float, float] | None, now: Callable[[], float]) -> str | None:
    """Why a step (a source, remote or stream) is not started: a signal asked the run to stop
    (:func:`blocksync.interrupts.reason`), or its deadline passed; None: start it."""
    why = interrupts.reason()
    if why is None and deadline is not None and now() >= deadline[0]:
        why = f"not reached: the run's {deadline[1]:g} s timeout passed before it started"
    return why


def _timed_out(why: str | None) -> bool:
    """Was a step not reached because of the run's deadline (not a signal)?"""
    return why is not None and why.startswith("not reached") and why != interrupts.reason()


def _merge_entry(entry: SourceReport, pull: PullResult) -> None:
    entry.resolved += [(path, "remote -> local" if how == "remote" else how) for path, how in pull.merged]
    entry.needs_resolution += [path for path, _ in pull.conflicts]


def _pull_remotes(
    ws: Workspace, run_id: str, deadline: tuple[float, float] | None, now: Callable[[], float],
    allow_mass_delete: bool,
) -> dict[str, SourceReport]:
    """Each configured remote's entry (source ``remote:<name>``) after pulling it."""
    try:
        remotes = ws.remotes
    except BlocksyncError as exc:
        return {"?": SourceReport("remote:?", error=str(exc))}
    entries: dict[str, SourceReport] = {}
    for name, remote in remotes.items():
        entry = entries[name] = SourceReport(remote.source)
        entry.error = _late(deadline, now)
        if entry.error is not None:
            continue
        try:
            _merge_entry(entry, ws.pull(name, run_id, allow_mass_delete=allow_mass_delete))
        except Exception as exc:  # noqa: BLE001 -- a remote's failure is its entry's, not the run's
            entry.error = _remote_failure(exc)
    return entries


def _push_remotes(
    ws: Workspace,
    run_id: str,
    deadline: tuple[float, float] | None,
    now: Callable[[], float],
    entries: dict[str, SourceReport],
    reconciled: ReconcileReport,
    not_reached: list[str],
    allow_mass_delete: bool,
) -> ReconcileReport:
    """Push every remote whose pull went well; the report with every remote's entry added."""
    if not entries:
        return reconciled
    for name, entry in entries.items():
        if entry.error is not None:
            if _timed_out(entry.error):
                not_reached.append(entry.source)
            continue
        entry.error = _late(deadline, now)
        if entry.error is not None:
            if _timed_out(entry.error):
                not_reached.append(entry.source)
            continue
        try:
            pushed = ws.push(name, run_id, allow_mass_delete=allow_mass_delete)
            for pull in pushed.pulls:  # the remote moved on meanwhile: merged before pushing
                _merge_entry(entry, pull)
        except Exception as exc:  # noqa: BLE001
            entry.error = _remote_failure(exc)
    return ReconcileReport(
        reconciled.run_id, reconciled.sources + list(entries.values()),
        ws.reconciler.conflicts.open_count(), reconciled.dry_run,
    )

