"""A writer run in the run log (:mod:`blocksync.index.runs`): its row opened before it does
anything, completed with what it did, whatever ended it.

``blocksync sync`` (:mod:`blocksync.runner`) and ``ws.reconcile()`` -- not a dry run, which
writes nothing -- record their runs through here, so both rows read the same: the counts of
:func:`summary`, the report as JSON, the exit code; ``interrupted`` with 130/143 when a signal
stopped the run; the error and its exit code when it raised.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from blocksync.errors import BlocksyncError
from blocksync.index.runs import RunLog, Summary

from .reconciler import ReconcileReport, SourceReport
from .run import Run

__all__ = ["finish_failed", "record_reconcile", "summary"]


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
