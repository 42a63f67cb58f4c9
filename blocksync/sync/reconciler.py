"""The reconciler: every data-block source reconciled, results applied to the conflict index.

For each source, one ``reconcile`` over its candidate paths (or the paths asked for); then
``resolved`` closes any open conflict on that path, ``needs-resolution`` records one (the same
row when nothing moved, a new one superseding it when a side moved), and ``no-change`` marks an
open conflict as vanished.

This is the one reconcile loop (the library's, the command line's and the cron job's): a
source's failure -- whatever it is, a bug included -- is its entry's error and the next source
goes on; a :class:`~blocksync.sync.run.Run` says before each source whether it may start (its
deadline, a signal: an entry marked ``not_reached`` otherwise), and ``progress`` is told
before each one starts. A source already running is never interrupted (a thread cannot be
killed safely, and a half-applied source is exactly what the write order guards against);
plugin calls have their own time limits, so an overrun is bounded by one source.

Resolving a conflict re-checks both sides first: if disk or agent moved since detection the
resolution is refused as stale. The chosen content becomes a block version whose commit message
names the conflict, then the file is written, then the base advanced (reconcile's own order, so a
killed resolution converges on the next run). Undo restores the three sides of the detection.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from blocksync import interrupts
from blocksync.errors import BlocksyncError, Interrupted, NotFound, StaleResolution, UsageError
from blocksync.index.conflicts import Conflict, ConflictIndex, Resolution, Take, changed_sides
from blocksync.shared.progress import counted
from blocksync.shared.progress import current as current_progress
from blocksync.store.merge import merge3

from .outcome import Settled, Waiting, record_outcome
from .protocol import (
    NeedsResolution,
    NoChange,
    ReconcileMode,
    Resolved,
    Settlement,
    Sides,
    SyncSource,
)
from .run import Cause, Run, new_run_id


@dataclass
class SourceReport:
    source: str
    resolved: list[tuple[str, str]] = field(default_factory=list)  # (path, resolution)
    needs_resolution: list[str] = field(default_factory=list)
    unchanged: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    #: (path, conflict id): still differing as when that conflict was resolved, so not raised
    #: again while the losing side holds what it lost with (see DESIGN.md, "Conflict index")
    held: list[tuple[str, str]] = field(default_factory=list)
    error: str | None = None  # the source failed or was aborted
    #: not started at all (``error`` says why): the run's deadline passed, or a signal came
    not_reached: Cause | None = None
    #: how long the source took (None: not started); for the run log, never for decisions
    seconds: float | None = None
    #: path -> the id of its open conflict, for each of ``needs_resolution`` (none in a dry run)
    conflict_ids: dict[str, str] = field(default_factory=dict)

    def to_json(self, counts_only: bool = False) -> dict[str, Any]:
        """Every list as objects with a ``path`` (``needs_resolution``: ``{"path",
        "conflict"}``, null in a dry run); ``counts_only``: each list's length instead, under
        ``counts`` (a summary: 5,000 paths are 5,000 entries)."""
        doc: dict[str, Any] = {"source": self.source}
        if counts_only:
            doc["counts"] = {
                "resolved": len(self.resolved),
                "needs_resolution": len(self.needs_resolution),
                "unchanged": self.unchanged,
                "skipped": len(self.skipped),
                "held": len(self.held),
            }
        else:
            doc["resolved"] = [{"path": p, "resolution": r} for p, r in self.resolved]
            doc["needs_resolution"] = [
                {"path": p, "conflict": self.conflict_ids.get(p)} for p in self.needs_resolution
            ]
            doc["unchanged"] = self.unchanged
            doc["skipped"] = [{"path": p, "reason": r} for p, r in self.skipped]
            doc["held"] = [{"path": p, "conflict": c} for p, c in self.held]
        doc["seconds"] = self.seconds
        doc["error"] = self.error  # not_reached: its error says so in words
        return doc


@dataclass
class ReconcileReport:
    run_id: str
    sources: list[SourceReport]
    open_conflicts: int
    dry_run: bool

    @property
    def failed(self) -> bool:
        return any(s.error is not None for s in self.sources)

    @property
    def exit_code(self) -> int:
        """1 if a source failed (wins over 3), 3 if conflicts are open, else 0."""
        return 1 if self.failed else 3 if self.open_conflicts else 0

    def to_json(self, counts_only: bool = False) -> dict[str, Any]:
        """The report as JSON (see :meth:`SourceReport.to_json` for ``counts_only``)."""
        return {
            "run_id": self.run_id,
            "sources": [s.to_json(counts_only) for s in self.sources],
            "open_conflicts": self.open_conflicts,
            "dry_run": self.dry_run,
            "exit_code": self.exit_code,
        }

    def interruption(self) -> Interrupted | None:
        """The :class:`Interrupted` a signal made of this run, saying how far it got; None: no
        signal asked it to stop (see :mod:`blocksync.interrupts`)."""
        signum, why = interrupts.requested(), interrupts.reason()
        if signum is None:
            return None
        reached = [s for s in self.sources if s.not_reached != "signal"]
        left = sum(reason == why for s in reached for _, reason in s.skipped)
        detail = f"stopped after {len(reached)} of {len(self.sources)} source(s)"
        if left:
            detail += f", leaving {left} path(s) for the next run"
        return Interrupted(signum, detail)


class Reconciler:
    """Reconciles the data-block sources of a store (file sources, plugins) against its blocks."""

    def __init__(
        self,
        sources: Mapping[str, Callable[[], SyncSource]],
        conflicts: ConflictIndex,
        resolver: str,
        resolve_only: Callable[[str], SyncSource | None] | None = None,
        listed: Callable[[str], bool] | None = None,
    ) -> None:
        """``resolve_only(key)``: a source whose conflicts are resolved and undone here but
        that no run reconciles (a git remote's, ``remote:<name>``); None if ``key`` is none.
        ``listed(key)``: whether a candidate of ``sources`` is a source at all (a plugin must
        be loaded to tell): asked only for the keys a run names, or for all when it names none,
        so a run over a folder source loads no plugin."""
        self._open = sources  # key -> opener: sources are opened only when reconciled
        self._resolve_only = resolve_only
        self._listed = listed or (lambda key: True)
        self.conflicts = conflicts
        self.resolver = resolver
        self._opened: dict[str, SyncSource] = {}

    @property
    def keys(self) -> list[str]:
        """Every source's table key, in the order a run over all of them takes."""
        return [key for key in self._open if self._listed(key)]

    def _known(self, key: str) -> bool:
        return key in self._open and self._listed(key)

    def source(self, key: str, *, resolving: bool = False) -> SyncSource:
        """The source ``key``, opened on first use; ``resolving`` admits the resolve-only ones."""
        if key not in self._opened:
            if self._known(key):
                self._opened[key] = self._open[key]()
            elif resolving and self._resolve_only and (extra := self._resolve_only(key)):
                self._opened[key] = extra
            else:
                known = ", ".join(sorted(self.keys)) or "none configured"
                raise NotFound(f"no data source named {key!r} (known: {known})")
        return self._opened[key]

    def close(self) -> None:
        for source in self._opened.values():
            source.close()
        self._opened.clear()

    # -- reconcile ------------------------------------------------------------------------

    def run(
        self,
        sources: Sequence[str] | None = None,
        paths: Sequence[str] | None = None,
        dry_run: bool = False,
        run_id: str | None = None,
        progress: Callable[[str, int, int], None] | None = None,
        allow_mass_delete: bool = False,
        *,
        run: Run | None = None,
    ) -> ReconcileReport:
        """``progress(source, position, count)`` is told before each source starts;
        ``allow_mass_delete`` confirms deletions over the threshold (see
        :func:`blocksync.sync.protocol.mass_deletion`). ``run`` (default: a new one, ``run_id`` its
        id) says when a source may no longer start: past its deadline, or inside
        :func:`blocksync.interrupts.handling` once a signal came; those not started are
        entries saying so. An unknown source or a path no source has is refused here, before
        any source runs."""
        plan = self.plan(sources, paths)
        return self.execute(
            plan, run or Run(run_id or new_run_id()), dry_run, progress, allow_mass_delete
        )

    def plan(
        self,
        sources: Sequence[str] | None = None,
        paths: Sequence[str] | None = None,
        placed: Mapping[str, Sequence[str]] | None = None,
    ) -> dict[str, list[str] | None]:
        """The sources a run takes, in order, each with its own ``paths`` (None: all of its
        paths); an unknown source (:class:`NotFound`) or a path none of them can have is refused
        (see :meth:`route`). ``placed``: paths already known to be one source's (a file in its
        folder), checked against that source alone; a source outside ``sources`` is refused."""
        keys = self.keys if not sources else list(dict.fromkeys(sources))
        for key in keys:
            if not self._known(key):
                self.source(key)  # raises NotFound naming the sources there are
        if paths is None and not placed:
            return dict.fromkeys(keys)
        routed = self.route(keys, paths or [])
        for key, own in (placed or {}).items():
            if key not in routed:
                raise UsageError(
                    f"{own[0]!r} is a path of source {key!r}, which is not among the sources "
                    f"named ({', '.join(keys)})"
                )
            routed[key] = list(dict.fromkeys(routed[key] + self.route([key], own)[key]))
        return {key: own for key, own in routed.items() if own}

    def holders(self, keys: Sequence[str], path: str, surely: bool = False) -> list[str]:
        """Those of ``keys`` whose source can have ``path`` and may have it (``has_path`` not
        False: a plugin cannot always tell), or, with ``surely``, does have it."""
        found = []
        for key in keys:
            source = self.source(key)
            if source.path_problem(path) is not None:
                continue
            has = source.has_path(path)
            if has is True or (has is None and not surely):
                found.append(key)
        return found

    def execute(
        self,
        plan: Mapping[str, list[str] | None],
        run: Run,
        dry_run: bool = False,
        progress: Callable[[str, int, int], None] | None = None,
        allow_mass_delete: bool = False,
    ) -> ReconcileReport:
        """The loop of :meth:`run` over a :meth:`plan`."""
        reports = []
        for position, (key, wanted) in enumerate(plan.items(), start=1):
            entry = SourceReport(key)
            if not run.leaves_out(entry):
                if progress is not None:
                    progress(key, position, len(plan))
                work = partial(
                    self._reconcile_source, key, wanted, dry_run, run.id, allow_mass_delete
                )
                with current_progress().task(f"reconciling {key} ({position}/{len(plan)})"):
                    started = run.elapsed()
                    entry = _isolated(key, work)
                    entry.seconds = round(run.elapsed() - started, 3)
            reports.append(entry)
        return ReconcileReport(run.id, reports, self.conflicts.open_count(), dry_run)

    def route(self, keys: Sequence[str], paths: Sequence[str]) -> dict[str, list[str]]:
        """Each of ``keys`` with the ``paths`` that are its own, checked before anything runs.

        A path no source can have (``../../etc/passwd``, ``a//b``, an absolute path, a
        version-control file) is a :class:`UsageError` naming why for each source; a path that
        is valid but that no source has (no file, no binding, no block) is :class:`NotFound`.
        """
        routed: dict[str, list[str]] = {key: [] for key in keys}
        for path in dict.fromkeys(paths):
            problems: list[str] = []
            known: list[str] = []
            for key in keys:
                source = self.source(key)
                problem = source.path_problem(path)
                if problem is not None:
                    problems.append(problem)
                    continue
                routed[key].append(path)
                if source.has_path(path) is not False:
                    known.append(key)
            if len(problems) == len(keys):
                raise UsageError(
                    f"{path!r} is no path of the data sources reconciled: " + "; ".join(problems)
                )
            if not known:
                where = ", ".join(key for key in keys if path in routed[key])
                raise NotFound(
                    f"no data source has a path {path!r}: no file, block or sync "
                    f"base of it in {where}"
                )
        return routed

    def _reconcile_source(
        self,
        key: str,
        paths: Sequence[str] | None,
        dry_run: bool,
        run_id: str,
        allow_mass_delete: bool,
    ) -> SourceReport:
        report = SourceReport(key)
        try:
            source = self.source(key)
            outcome = source.reconcile_outcome(paths, ReconcileMode(dry_run, allow_mass_delete))
        except (BlocksyncError, OSError) as exc:
            report.error = str(exc)
            return report
        report.skipped = [(s.path, s.reason) for s in outcome.skipped]
        # only paths with an open row can close one: one query, not one per unchanged path
        open_paths = set() if dry_run else {c.path for c in self.conflicts.list("open", key)}
        # one transaction, and one commit of records in git, for all of the source's conflicts
        recording = (
            nullcontext() if dry_run else self.conflicts.batch(f"reconcile {key} ({run_id})")
        )
        with recording:
            for path in open_paths.intersection(outcome.unchanged):
                vanished = Settled("vanished", None, "reconcile")
                record_outcome(self.conflicts, key, path, vanished, run_id)
            report.unchanged += len(outcome.unchanged)
            for result in counted(outcome.decided, f"recording {key}"):
                if isinstance(result, Resolved):
                    report.resolved.append((result.path, result.resolution))
                    if result.path in open_paths:
                        settled = Settled("resolved", result.resolution, "reconcile")
                        record_outcome(self.conflicts, key, result.path, settled, run_id)
                elif isinstance(result, NeedsResolution):
                    if dry_run:
                        report.needs_resolution.append(result.path)
                        continue
                    waiting = Waiting(outcome.conflicts[result.path], outcome.reasons[result.path])
                    row, _ = record_outcome(self.conflicts, key, result.path, waiting, run_id)
                    if row.status == "open":
                        report.needs_resolution.append(result.path)
                        report.conflict_ids[result.path] = row.id
                    else:  # decided before, and the losing side still holds what it lost with
                        report.held.append((result.path, row.id))
                else:
                    assert isinstance(result, NoChange)
                    report.unchanged += 1
                    if result.path in open_paths:
                        vanished = Settled("vanished", None, "reconcile")
                        record_outcome(self.conflicts, key, result.path, vanished, run_id)
        return report

    # -- conflicts ------------------------------------------------------------------------

    def resolve(
        self,
        conflict_id: str,
        take: Take | None = None,
        content: str | None = None,
        resolver: str | None = None,
    ) -> Conflict:
        """Resolve an open conflict by taking one side, a merge, or ``content`` (manual)."""
        conflict = self.conflicts.require_open(conflict_id)
        source = self.source(conflict.source, resolving=True)
        now = source.sides(conflict.path)
        moved = changed_sides(conflict, now.disk, now.agent)
        if moved:
            raise StaleResolution(conflict.id, moved)
        chosen, resolution = _choose(conflict, take, content)
        who = resolver or self.resolver
        message = f"resolve conflict {conflict.id} ({resolution}) on {conflict.path}"
        version = source.settle(
            Settlement(conflict.path, chosen, chosen, chosen, now, message, who, conflict.reason)
        )
        return self.conflicts.mark_resolved(
            conflict.id, resolution=resolution, resolver=who, result_version=version
        )

    def undo(self, conflict_id: str, resolver: str | None = None) -> Conflict:
        """Put back both sides (and the base) as they were when the conflict was detected."""
        conflict = self.conflicts.require_undoable(conflict_id)
        source = self.source(conflict.source, resolving=True)
        now = source.sides(conflict.path)
        who = resolver or self.resolver
        message = f"undo resolution of conflict {conflict.id} on {conflict.path}"
        c = conflict
        source.settle(Settlement(c.path, c.disk, c.agent, c.base, now, message, who, c.reason))
        return self.conflicts.mark_undone(conflict.id, resolver=who)


#: ``locked(command, wait, timeout)``: the store's run lock held for a ``with`` block
Locker = Callable[[str, bool, "float | None"], AbstractContextManager[object]]

RESOLVE_COMMAND = "blocksync conflicts resolve"
UNDO_COMMAND = "blocksync conflicts undo"


class Conflicts:
    """``ws.conflicts``: the conflict index as agents use it. Listing and reading need only the
    index; ``reconciler`` is asked for (and its sources opened) only to resolve or undo, which
    hold the run lock (``locked``): at once, or with ``wait`` until it is free or ``timeout``
    seconds passed (:class:`~blocksync.errors.RunLockHeld` then). A resolution is one unit:
    once the lock is held, it completes."""

    def __init__(
        self, index: ConflictIndex, reconciler: Callable[[], Reconciler], locked: Locker
    ) -> None:
        self._index = index
        self._reconciler = reconciler
        self._locked = locked

    def list(self, status: str = "open", source: str | None = None) -> list[Conflict]:
        return self._index.list(status, source)

    def get(self, conflict_id: str) -> Conflict:
        return self._index.get(conflict_id)

    def resolve(
        self,
        conflict_id: str,
        take: Take | None = None,
        content: str | None = None,
        resolver: str | None = None,
        *,
        wait: bool = False,
        timeout: float | None = None,
    ) -> Conflict:
        with self._locked(RESOLVE_COMMAND, wait, timeout):
            return self._reconciler().resolve(conflict_id, take, content, resolver)

    def undo(
        self,
        conflict_id: str,
        resolver: str | None = None,
        *,
        wait: bool = False,
        timeout: float | None = None,
    ) -> Conflict:
        with self._locked(UNDO_COMMAND, wait, timeout):
            return self._reconciler().undo(conflict_id, resolver)


def _isolated(key: str, attempt: Callable[[], SourceReport]) -> SourceReport:
    """Source ``key``'s entry; its failure, whatever it is, is the entry's error, never the run's."""
    try:
        return attempt()
    except (BlocksyncError, OSError) as exc:
        return SourceReport(key, error=str(exc))
    except Exception as exc:  # noqa: BLE001 -- a bug must not cost the other sources their run
        return SourceReport(key, error=f"internal error ({type(exc).__name__}): {exc}")


#: how to give a resolution's content, in the library and on the command line
_OWN_CONTENT = "content=... in Python, `blocksync conflicts resolve ID --content-file FILE`"


def _choose(
    conflict: Conflict, take: Take | None, content: str | None
) -> tuple[str | None, Resolution]:
    if content is not None:
        if take not in (None, "merged"):
            raise UsageError("give either take='disk'/'agent' or content, not both")
        return content, "merged" if take == "merged" else "manual"
    if take == "disk":
        return conflict.disk, "disk"
    if take == "agent":
        return conflict.agent, "agent"
    if take == "merged":
        if conflict.base is None or conflict.disk is None or conflict.agent is None:
            raise UsageError(
                f"conflict {conflict.id} has an absent side: give the merged content yourself "
                f"({_OWN_CONTENT})"
            )
        merged = merge3(conflict.base, conflict.disk, conflict.agent)
        if merged.text is None:
            raise UsageError(
                f"conflict {conflict.id}: the sides overlap ({merged.conflicts} region(s)); "
                f"give the merged content yourself ({_OWN_CONTENT})"
            )
        return merged.text, "merged"
    raise UsageError("say what to take: take='disk', 'agent' or 'merged', or give content")


__all__ = ["Conflicts", "ReconcileReport", "Reconciler", "Sides", "SourceReport", "new_run_id"]
