"""A writer run in the run log (:mod:`blocksync.index.runs`): its row opened before it does
anything, completed with what it did, whatever ended it.

``blocksync sync`` (:mod:`blocksync.runner`) and ``ws.reconcile()`` -- not a dry run, which
writes nothing -- record their runs through here, so both rows read the same: the counts of
:func:`summary`, the report as JSON, the exit code; ``interrupted`` with 130/143 when a signal
stopped the run; the error and its exit code when it raised. A standalone ``blocksync pull`` or
``push`` (:func:`blocksync.runner.run_pull`, ``run_push``) is recorded the same way by
:func:`record_remotes`, each remote counted as a source.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, TypeVar

from blocksync import interrupts
from blocksync.errors import BlocksyncError, Interrupted
from blocksync.index.runs import RunLog, Summary

from .reconciler import ReconcileReport, SourceReport
from .run import Run

__all__ = [
    "RemoteResult",
    "finish_failed",
    "record_reconcile",
    "record_remotes",
    "remote_summary",
    "summary",
]


def summary(sources: Sequence[SourceReport], open_conflicts: int) -> Summary:
    """The counts a run's row keeps of what its sources did."""
    return Summary(
        sources=len(sources),
        failed_sources=sum(s.error is not None for s in sources),
        resolved=sum(len(s.resolved) for s in sources),
        needs_resolution=sum(len(s.needs_resolution) for s in sources),
        unchanged=sum(s.unchanged for s in sources),
        skipped=sum(len(s.skipped) for s in sources),
        open_conflicts=open_conflicts,
    )


def finish_failed(log: RunLog, run_id: str, command: str, exc: Exception) -> None:
    """Complete the row of a run that ended in ``exc``: its exit code and message stand in it."""
    code = exc.exit_code if isinstance(exc, BlocksyncError) else 1
    log.finish(
        run_id,
        exit_code=code,
        summary=Summary(),
        report={"run_id": run_id, "command": command, "error": str(exc), "exit_code": code},
    )


def record_reconcile(
    log: RunLog,
    run: Run,
    command: str,
    work: Callable[[], ReconcileReport],
    *,
    started_at: str | None = None,
) -> ReconcileReport:
    """``work()``, a reconcile under ``run``, recorded as a run of ``command`` (the caller holds
    the run lock). A signal that stopped it leaves the row ``interrupted`` with the exit code
    the caller exits with; the report is returned either way. ``started_at`` (default: now):
    when the run started, for a caller that records a run once it is done (``blocksync
    watch``: ``work`` then returns the report it has)."""
    log.start(run.id, command, exclusive=True, started_at=started_at)
    try:
        report = work()
    except Exception as exc:
        finish_failed(log, run.id, command, exc)
        raise
    counts = summary(report.sources, report.open_conflicts)
    doc = {**report.to_json(), "command": command, "seconds": round(run.elapsed(), 3)}
    doc.pop("dry_run", None)  # a recorded run never is one
    stop = report.interruption()
    if stop is not None:
        doc.update(signal=stop.signal, exit_code=stop.exit_code)
        log.interrupt(run.id, exit_code=stop.exit_code, summary=counts, report=doc)
    else:
        log.finish(run.id, exit_code=report.exit_code, summary=counts, report=doc)
    return report


# -- standalone pulls and pushes ---------------------------------------------------------------


class RemoteResult(Protocol):
    """What one remote's pull or push returned (:class:`~.remotes.source.RemotePull`,
    :class:`~.remotes.source.RemotePush`)."""

    remote: str

    def to_json(self) -> dict[str, Any]: ...


_Result = TypeVar("_Result", bound=RemoteResult)


def _pulls_of(doc: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The pulls a remote's entry made: itself (a pull's), or the merges its push needed."""
    return list(doc.get("pulls", [])) if "attempts" in doc else [doc]


def remote_summary(entries: Sequence[Mapping[str, Any]], open_conflicts: int) -> Summary:
    """The counts of a pull or push run (each remote a source, as ``sync`` counts it): the
    blocks its merges brought are resolved, the conflicts they opened need resolution."""
    pulls = [p for e in entries if e.get("error") is None for p in _pulls_of(e)]
    return Summary(
        sources=len(entries),
        failed_sources=sum(e.get("error") is not None for e in entries),
        resolved=sum(len(p.get("merged", [])) for p in pulls),
        needs_resolution=sum(len(p.get("conflicts", [])) for p in pulls),
        open_conflicts=open_conflicts,
    )


def record_remotes(
    log: RunLog,
    run: Run,
    command: str,
    names: Sequence[str],
    one: Callable[[str], _Result],
    *,
    open_conflicts: Callable[[], int],
    exit_code: Callable[[list[_Result]], int],
) -> list[_Result]:
    """``one(name)`` for each remote of ``names`` in turn, a standalone ``blocksync pull`` or
    ``push`` recorded as a run of ``command`` (the caller holds the run lock, and its commits
    name ``run``). The row's report lists per remote what it did (its ``to_json()``) or its
    error; a remote that fails ends the run there -- the row finished with the error and its
    exit code, the remotes after it ``not_reached`` -- and the error is raised; a signal between
    two remotes leaves the row ``interrupted``. ``exit_code`` is what the command exits with when
    every remote went well."""
    log.start(run.id, command, exclusive=True)
    done: list[_Result] = []
    entries: list[dict[str, Any]] = []

    def end(code: int, error: Exception | None = None) -> tuple[dict[str, Any], Summary]:
        """The row's report and counts, the run ending with ``code`` (and ``error``)."""
        doc: dict[str, Any] = {
            "run_id": run.id,
            "command": command,
            "seconds": round(run.elapsed(), 3),
            "remotes": entries,
            "not_reached": list(names[len(entries) :]),
            "open_conflicts": open_conflicts(),
            "exit_code": code,
        }
        if error is not None:
            doc["error"] = str(error)
        return doc, remote_summary(entries, doc["open_conflicts"])

    for name in names:
        try:
            interrupts.check(f"stopped after {len(done)} of {len(names)} remote(s)")
            result = one(name)
        except Interrupted as stop:
            doc, counts = end(stop.exit_code, stop)
            doc["signal"] = stop.signal
            log.interrupt(run.id, exit_code=stop.exit_code, summary=counts, report=doc)
            raise
        except Exception as exc:
            code = exc.exit_code if isinstance(exc, BlocksyncError) else 1
            entries.append({"remote": name, "error": str(exc), "exit_code": code})
            doc, counts = end(code, exc)
            log.finish(run.id, exit_code=code, summary=counts, report=doc)
            raise
        done.append(result)
        entries.append({**result.to_json(), "error": None})
    code = exit_code(done)
    doc, counts = end(code)
    log.finish(run.id, exit_code=code, summary=counts, report=doc)
    return done
