"""What ``blocksync watch`` says: a :class:`Round` that did something, a :class:`Notice`, a
:class:`ConfigChange` (``blocksync.toml`` edited while it runs); each one JSON line with
``--json`` (``to_json``), one short line without."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..sync.reconciler import ReconcileReport

__all__ = ["ConfigChange", "Event", "Notice", "Round"]


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
    """Something the watch says once: ``watching`` (the folders), ``polling`` (a source with
    no folder, reconciled every ``plugin_poll`` seconds), ``folder-missing``, ``folder-back``,
    ``lock-held`` (a round waits for the next look), ``watch-failed`` (the system refused to
    watch a folder: polled instead), ``stopped``."""

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


@dataclass(frozen=True)
class ConfigChange:
    """``blocksync.toml`` changed: ``config-reloaded`` (the new configuration runs from the
    next round: the sources ``added``, ``removed`` and ``changed``) or ``config-invalid`` (it
    cannot be used, ``error`` says what and where: the configuration from before runs on)."""

    event: str
    message: str
    file: str
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"event": self.event, "message": self.message, "file": self.file}
        if self.error is not None:
            doc["error"] = self.error
        else:
            doc.update(added=list(self.added), removed=list(self.removed))
            doc["changed"] = list(self.changed)
        return doc


Event = Round | Notice | ConfigChange
