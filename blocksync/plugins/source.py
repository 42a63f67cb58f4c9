"""A WASM data-block plugin as the reconciler drives it: :class:`PluginSource`, a
:class:`blocksync.sync.protocol.SyncSource` like the native file source.

**Reconcile.** One ``reconcile`` call per run (the WIT's empty list asks the plugin for every
path: only it knows which files are new), inside a :class:`~blocksync.plugins.batch.SyncBatch`,
so the call's block writes become one commit and its base writes another, after the call. Its
answers are checked before anything is committed: a path it was not asked about, a malformed or
repeated path, or a conflict on a path it named no block for is left out of the results and
reported as skipped. A conflict's three sides come from the host (base and block, through the
batch) and from the plugin's ``sync.report-conflict`` (the source's side, absent or text).

**Guard.** Only the plugin knows its paths, so the mass-deletion rule cannot be checked before
the call as for a folder: a run over all paths counts the bound paths the plugin found gone from
its source (deletions carried over, conflicts with an absent source side) and, past the limit,
commits nothing and fails the source for this run.

**Dry run.** ``sync.dry-run`` tells the plugin to write nothing; the host discards the batch
whatever the plugin did to blocks and bases. (The source side is the plugin's to leave alone.)

**Settling a conflict.** The host writes blocks and bases itself, but only the plugin can write
its source. To make the source hold ``X``, the host stages the block as ``X`` and the base as
what the source holds now, and asks the plugin to reconcile that one path: by the truth table
the plugin carries the block to the source (``agent->disk``, or ``delete-source``). A dry run of
the same call first makes sure it will; otherwise nothing is written at all.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager

from blocksync.index.base_index import BaseEntry
from blocksync.shared.paths import source_path_problem
from blocksync.shared.truth import Action
from blocksync.store.blocks import BlockStore
from blocksync.sync.protocol import (
    BLOCK_MOVED,
    WRITE,
    NeedsResolution,
    NoChange,
    ReconcileMode,
    ReconcileOutcome,
    ReconcileResult,
    Resolved,
    Settlement,
    Sides,
    Skipped,
    mass_deletion,
)

from ..errors import BlockNotFound, SourceChanged, UsageError
from .batch import SyncBatch
from .bridges import WasmDataBlock
from .host.runtime import Plugin
from .syncbases import PluginBases

__all__ = ["PluginSource"]

#: resolutions by which a source's side of a bound path went missing
_GONE = (Action.DELETE_AGENT.value, Action.FORGET.value)


class PluginSource:
    """A loaded data-block plugin and its sync bases, reconciled against ``blocks``."""

    def __init__(self, plugin: Plugin, bases: PluginBases, blocks: BlockStore) -> None:
        self.key = plugin.spec.key
        self.plugin = plugin
        self.bases = bases
        self.blocks = blocks
        self.bridge = WasmDataBlock(plugin)
        #: told each of :data:`blocksync.plugins.batch.BATCH_FAULT_STEPS` (tests kill the process there)
        self.fault: Callable[[str], None] | None = None

    def close(self) -> None:
        """Nothing of its own: the plugin set owns the plugin."""

    # -- reconcile ------------------------------------------------------------------------

    def _batch(
        self,
        message: str,
        author: str,
        *,
        dry_run: bool,
        bound: dict[str, BaseEntry] | None = None,
    ) -> AbstractContextManager[SyncBatch]:
        batch = SyncBatch(
            self.blocks, self.bases.bases, message, author, dry_run=dry_run, bound=bound
        )
        return batch.attached(self.plugin.host)

    def reconcile_outcome(
        self, paths: Iterable[str] | None = None, mode: ReconcileMode = WRITE
    ) -> ReconcileOutcome:
        dry_run, allow_mass_delete = mode
        wanted = None if paths is None else list(dict.fromkeys(paths))
        if wanted == []:
            return ReconcileOutcome()  # no paths asked (the WIT's empty list would mean all)
        for path in wanted or ():
            problem = source_path_problem(path)
            if problem is not None:
                raise UsageError(f"source {self.key!r}: path {path!r} {problem}")
        bound = self.bases.index().entries(self.bases.bases)
        author = f"plugin:{self.key}"
        with self._batch(f"reconcile {self.key}", author, dry_run=dry_run, bound=bound) as batch:
            results = self.bridge.reconcile(wanted or [])
            outcome = self._outcome(results, wanted, batch, bound)
        if wanted is None and not allow_mass_delete:
            for side, gone in self._gone(outcome, bound).items():
                refusal = mass_deletion(self.key, len(bound), gone, side=side)
                if refusal is not None:
                    raise refusal
        if not dry_run:
            self._commit(batch)
            if batch.moved:  # an agent wrote these blocks during the call: nothing of them kept
                outcome.results = [r for r in outcome.results if r.path not in batch.moved]
                for path in sorted(batch.moved):
                    outcome.reasons.pop(path, None)
                    outcome.conflicts.pop(path, None)
                    outcome.skipped.append(Skipped(path, BLOCK_MOVED))
        return outcome

    def path_problem(self, path: str) -> str | None:
        problem = source_path_problem(path)
        return None if problem is None else f"source {self.key!r}: path {path!r} {problem}"

    def has_path(self, path: str) -> bool | None:
        if path in self.bases.index().entries(self.bases.bases):
            return True
        return None  # only the plugin knows its outside side

    def _commit(self, batch: SyncBatch) -> dict[tuple[str, str], int]:
        versions = batch.commit(self.fault)
        self.bases.index().record(self.bases.bases, batch.bases)  # no git read-back next run
        return versions

    def _outcome(
        self,
        results: list[ReconcileResult],
        wanted: list[str] | None,
        batch: SyncBatch,
        bound: dict[str, BaseEntry],
    ) -> ReconcileOutcome:
        outcome = ReconcileOutcome()
        asked = None if wanted is None else set(wanted)
        for path, reason in batch.skipped.items():  # what the host saw it cannot sync
            if asked is None or path in asked:
                outcome.skipped.append(Skipped(path, reason))
        for result in results:
            path = result.path
            if path in batch.skipped:
                continue  # reported above: the plugin could not have read it either
            problem = source_path_problem(path)
            if problem is None and asked is not None and path not in asked:
                problem = "was not asked about"
            if problem is None and path in outcome.reasons:
                problem = "was answered twice"
            if problem is not None:
                outcome.skipped.append(
                    Skipped(path, f"the plugin answered for a path that {problem}")
                )
                continue
            if isinstance(result, NeedsResolution):
                sides, reason = self._conflict(result, batch, bound)
                if sides is None:
                    outcome.skipped.append(Skipped(path, reason))
                    continue
                outcome.conflicts[path] = sides
            else:
                reason = result.resolution if isinstance(result, Resolved) else "no change"
            outcome.results.append(result)
            outcome.reasons[path] = reason
        for path in wanted or ():
            if path not in outcome.reasons and all(s.path != path for s in outcome.skipped):
                outcome.skipped.append(Skipped(path, "the plugin gave no result for it"))
        return outcome

    def _conflict(
        self, result: NeedsResolution, batch: SyncBatch, bound: dict[str, BaseEntry]
    ) -> tuple[Sides | None, str]:
        """The three sides of a conflict the plugin returned, or None and why it cannot be one."""
        path = result.path
        report = batch.conflicts.get(path)
        if report is not None:
            owner, label, disk, reason = report.owner, report.label, report.disk, report.reason
        elif path in bound:
            binding = bound[path]
            owner, label, disk = binding.owner, binding.label, result.disk
            reason = "the plugin reported a conflict (it gave no reason: sync.report-conflict)"
        else:
            return None, (
                "the plugin says it needs resolution but named no block for this unbound path "
                "(a plugin reports its conflicts with sync.report-conflict)"
            )
        if owner not in self.plugin.spec.owners:
            return None, f"the plugin named a block of {owner!r}, an agent it is not attached to"
        found = batch.bases.get(path)
        try:
            agent: str | None = batch.blocks.read(owner, label)[0]
        except BlockNotFound:
            agent = None
        return Sides(owner, label, None if found is None else found[1], disk, agent), reason

    def _gone(self, outcome: ReconcileOutcome, bound: dict[str, BaseEntry]) -> dict[str, list[str]]:
        """Bound paths the call found missing, by side: from the source (``disk``), or whose
        blocks are gone (``agent``)."""
        gone: dict[str, list[str]] = {"disk": [], "agent": []}
        for r in outcome.results:
            if isinstance(r, Resolved) and r.path in bound:
                if r.resolution in _GONE:
                    gone["disk"].append(r.path)
                elif r.resolution == Action.DELETE_DISK.value:
                    gone["agent"].append(r.path)
        for path, sides in outcome.conflicts.items():
            if path in bound:
                if sides.disk is None:
                    gone["disk"].append(path)
                elif sides.agent is None:
                    gone["agent"].append(path)
        return gone

    # -- conflicts ------------------------------------------------------------------------

    def sides(self, path: str) -> Sides:
        outcome = self.reconcile_outcome([path], ReconcileMode(dry_run=True))
        if path in outcome.conflicts:
            return outcome.conflicts[path]
        if outcome.skipped:
            raise UsageError(f"source {self.key!r}: {path!r}: {outcome.skipped[0].reason}")
        (result,) = outcome.results
        if not isinstance(result, NoChange):
            raise SourceChanged(
                self.key,
                path,
                f"the plugin would now reconcile it ({_describe(result)}): run reconcile first",
            )
        found = self.bases.bases.get(path)
        if found is None:
            raise UsageError(f"source {self.key!r}: {path!r} is not synced")
        binding, base = found
        try:
            agent: str | None = self.blocks.read(binding.owner, binding.label).content
        except BlockNotFound:
            agent = None
        return Sides(binding.owner, binding.label, base, base, agent)

    def settle(self, settlement: Settlement) -> int | None:
        path, disk, agent, base, expected, message, author = settlement
        owner, label = expected.owner, expected.label
        if disk != expected.disk:
            with self._batch(message, author, dry_run=True) as batch:
                self._push(path, disk, expected, batch)  # would the plugin write its source?
        with self._batch(message, author, dry_run=False) as batch:
            if _read(batch, owner, label) != expected.agent:
                raise SourceChanged(
                    self.key, path, f"block {owner}/{label} changed while it was being settled"
                )
            if disk != expected.disk:
                self._push(path, disk, expected, batch)
            batch.hold(owner, label, agent, f"{path} (plugin source)")
            if base is None:
                batch.bases.forget(path)
            else:
                batch.bases.set_base(path, owner, label, base)
            versions = self._commit(batch)
            if path in batch.moved:
                raise SourceChanged(
                    self.key, path, f"block {owner}/{label} changed while it was being settled"
                )
        if (owner, label) in versions:
            return versions[(owner, label)]
        return None if agent is None else self.blocks.read(owner, label).version

    def _push(self, path: str, disk: str | None, expected: Sides, batch: SyncBatch) -> None:
        """Have the plugin make its source hold ``disk`` (see the module docstring)."""
        batch.hold(expected.owner, expected.label, disk, f"{path} (plugin source)")
        if expected.disk is None:
            batch.bases.forget(path)
        else:
            batch.bases.set_base(path, expected.owner, expected.label, expected.disk)
        results = self.bridge.reconcile([path])
        result = results[0] if len(results) == 1 else None
        want = Action.TO_DISK.value if disk is not None else Action.DELETE_DISK.value
        if not isinstance(result, Resolved) or result.path != path or result.resolution != want:
            raise SourceChanged(
                self.key,
                path,
                f"the plugin would not write its source ({want} expected, it answered "
                f"{_describe(result)}): its permission or the source changed",
            )


def _read(batch: SyncBatch, owner: str, label: str) -> str | None:
    try:
        return batch.read(owner, label)
    except BlockNotFound:
        return None


def _describe(result: ReconcileResult | None) -> str:
    if result is None:
        return "nothing"
    if isinstance(result, Resolved):
        return f"resolved {result.resolution!r}"
    return "needs-resolution" if isinstance(result, NeedsResolution) else "no-change"
