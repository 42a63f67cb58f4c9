"""A WASM data-block plugin as the reconciler drives it: :class:`PluginSource`, a
:class:`blocksync.sync.protocol.SyncSource` like the native file source.

**Reconcile.** A plugin exporting ``paging`` (the SDK's ``SyncedSource`` does) is reconciled
in pages. The host first asks for every path of its source (``paging.list-paths``, page by page:
each a call of its own), unions them with the paths it holds bases for, and calls ``reconcile``
on :data:`PAGE_SIZE` of them at a time, deduplicated and sorted: every call stays far under the
per-call time limit, whatever the source's size. Pages' writes are staged in a
:class:`~blocksync.plugins.batch.SyncBatch` and committed (blocks, then bases) between two
pages once a page's worth of paths is written and at least as many as the run committed
before (``_Pending.due``): a first sync commits batches that double (a commit rewrites the
fan-out folders it touches, so its cost grows with the blocks committed already), while a run
that changes a few paths here and there commits once, as an unpaged run does. A page that
fails, or a process killed, keeps what was committed before it; the next run decides the rest
from their old bases. A plugin without ``paging`` (or whose ``paged`` says
no) gets one ``reconcile`` call per run, as the seed has it: the WIT's empty list asks it for
every path, since only it knows which are new. Answers are checked before anything is
committed: a path it was not asked about, a malformed or repeated path, or a conflict on a path
it named no block for is left out of the results and reported as skipped. A conflict's three
sides come from the host (base and block, through the batch) and from the plugin's
``sync.report-conflict`` (the source's side, absent or text).

**Mirroring.** A paged plugin that declares it mirrors its granted folder one to one
(``paging.mirrors-folder``: the ``files`` plugin) is not asked for its listing: the host lists
the folder itself and finds the paths neither side changed since their base as its own folder
source does (:mod:`blocksync.plugins.mirror`, with the folder source's clean row: a file
listed with the stat it had when last found clean is unchanged without a lookup of its own);
only the other paths go to ``reconcile``, in pages, and a run where nothing changed makes no
``reconcile`` call at all. The paths found unchanged are listed in the outcome's ``unchanged``,
not as a result each. Those paths' blocks, looked up already, are read by their content blob.

**Guard.** Paged, the host knows every path before any page runs, so the mass-deletion rule is
checked first, as for a folder: the bound paths the listing lacks (gone from the source) and
those whose blocks are gone; past the limit nothing at all is reconciled. Each page's answers
are counted too, and a page that would carry the run's deletions past the limit (a plugin whose
reconcile disagrees with its listing) is not committed: deletions committed never exceed what
the guard allows. Unpaged, only the plugin knows its paths: a run over all paths counts the
bound paths its call found gone (deletions carried over, conflicts with an absent source
side) and, past the limit, fails the source for this run, committing nothing -- or, for a
plugin without a dry run (it moved its own state in the call already), everything but the
refused block deletions, whose blocks stay bound. The paths of the label namespace's new blocks
and the bound paths the call did not answer for get a second call, once the first one's writes
are committed (a plugin keeping its own state moved it in the first call, whatever the second
does), its deletions counted with the first's.

**Dry run.** ``sync.dry-run`` tells the plugin to write nothing; the host discards the batch
whatever the plugin did to blocks and bases. (The source side is the plugin's to leave alone.)

**Settling a conflict.** The host writes blocks and bases itself, but only the plugin can write
its source. To make the source hold ``X``, the host stages the block as ``X`` and the base as
what the source holds now, and asks the plugin to reconcile that one path: by the truth table
the plugin carries the block to the source (``agent->disk``, or ``delete-source``). A dry run of
the same call first makes sure it will; otherwise nothing is written at all.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field

from blocksync import names
from blocksync.index.base_index import BaseEntry
from blocksync.shared import collector
from blocksync.shared.paths import source_path_problem
from blocksync.shared.truth import Action
from blocksync.store.blocks import BlockStore
from blocksync.sync.folder.clean import BasesWritten
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

from ..errors import (
    AccessDenied,
    BlockNotFound,
    MassDeletionRefused,
    PluginCallFailed,
    PluginRefused,
    SourceChanged,
    UsageError,
)
from .batch import SyncBatch
from .bridges import WasmDataBlock
from .host.runtime import Plugin
from .mirror import Latest, Mirror
from .seed import SEED_BOUND, Seed
from .spec import namespace_problem
from .syncbases import PluginBases

__all__ = ["PAGE_FAULT_STEPS", "PAGE_SIZE", "PluginSource"]

#: Paths per ``reconcile`` call of a paged plugin. The ``files`` plugin's slowest case, a first
#: sync (each path read, a block created, a base recorded: four host calls and a WASI read),
#: measured ~1 ms a path on a loaded 2-core machine (9-16 s for 10,000 in one call), so a page
#: takes about 1 s: a tenth of the default 10 s limit, leaving room for a slower machine or a
#: slower source. Larger pages would save little: a page of unchanged paths costs the host one
#: ``states`` and one ``file-digests`` call (milliseconds), and pages that write little share
#: their commits.
PAGE_SIZE = 1000
#: where a paged reconcile tells its fault hook it stands, besides each commit's
#: ``BATCH_FAULT_STEPS``: after a commit of pages, before the next page's call
PAGE_FAULT_STEPS = ("page-committed",)
#: a mirrored run with more paths than this to hash reads all the plugin's stat rows at once
_HINTS_BY_PATH = 2000

#: why a dry run does not ask a plugin that does not declare ``paging.honours-dry-run``
_NO_DRY_RUN = (
    "it has no dry run (it does not declare paging.honours-dry-run, as the seed's contract "
    "has it), so it cannot be previewed: reconciling it in a dry run could move its own state "
    "while the host discards its block writes; run without --dry-run"
)
#: the reason of a path reconciled to no change
_NO_CHANGE = "no change"
#: resolutions that leave the source's side of a path as it was read: its stat stays known
_SOURCE_KEPT = (_NO_CHANGE, Action.TO_AGENT.value, Action.IDENTICAL.value)
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
        #: told each of :data:`blocksync.plugins.batch.BATCH_FAULT_STEPS` and, paged, of
        #: :data:`PAGE_FAULT_STEPS` (tests kill the process there)
        self.fault: Callable[[str], None] | None = None
        #: paths per ``reconcile`` call of a paged plugin (tests make it small)
        self.page_size = PAGE_SIZE
        #: the commits of the current run: of main, and of the bases (see :data:`BasesWritten`)
        self._written_blocks: list[str] = []
        self._written_bases: list[BasesWritten] = []
        #: what the host does for a plugin that keeps no state through ``sync`` (seed means)
        self.seed = Seed(plugin, self.bridge, blocks, bases.bases, self.label_namespace)

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
            self.blocks,
            self.bases.bases,
            message,
            author,
            dry_run=dry_run,
            bound=bound,
            # the plugin's own run names it; a resolution names its resolver (the author)
            made_by=self.made_by if author == self.author else None,
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
        if dry_run and not self.bridge.honours_dry_run():
            raise PluginRefused(self.key, self.plugin.version, "reconcile", _NO_DRY_RUN)
        self.label_namespace()  # a bad declaration is refused before any call, not amid one
        self._written_blocks, self._written_bases = [], []
        if wanted is None and self.bridge.paged():
            # as the folder source's run: the collections a first sync's staged pages would
            # trigger walk a heap that only grows (they found nothing to free, and cost a
            # fifth of a 30,000-path first sync); the one due afterwards runs once
            with collector.paused():
                return self._paged(mode)
        bound = self.bases.index().entries(self.bases.bases)
        # a run over all paths is guarded, its calls' deletions counted together
        counted: dict[str, list[str]] | None
        counted = None if wanted is not None or allow_mass_delete else {"disk": [], "agent": []}
        outcome, answered = self._unpaged(wanted, dry_run, bound, counted)
        if wanted is None:  # what the plugin's own listing could not find
            # bound paths it did not answer for too: a plugin keeping its own state may have
            # forgotten them in a run whose deletions were refused (their blocks kept)
            unseen = self.namespace_candidates(bound, answered) | (bound.keys() - answered)
            if unseen:
                # a call of its own, once the first call's writes are committed: a plugin
                # keeping its own state moved it in that call, so a failure of this one must
                # not discard them (the next run would take its edits for the old side)
                _extend(outcome, self._unpaged(sorted(unseen), dry_run, bound, counted)[0])
        return outcome

    def _unpaged(
        self,
        wanted: list[str] | None,
        dry_run: bool,
        bound: dict[str, BaseEntry],
        counted: dict[str, list[str]] | None,
    ) -> tuple[ReconcileOutcome, set[str]]:
        """One ``reconcile`` call on ``wanted`` (None: every path) committed (unless a dry
        run) after the guard over ``counted`` (None: unguarded); its outcome and the paths
        the plugin answered for."""
        with self._batch(
            f"reconcile {self.key}", self.author, dry_run=dry_run, bound=bound
        ) as batch:
            results = self.bridge.reconcile(wanted or [])
            outcome = self._outcome(results, wanted, batch, bound)
        if counted is not None:
            for side, found in self._gone(outcome, bound).items():
                counted[side] += found
            try:
                self._guard(counted, len(bound))
            except MassDeletionRefused:
                if not dry_run and not self.bridge.honours_dry_run():
                    self._commit_all_but_block_deletions(batch, counted["disk"], bound)
                raise
        if not dry_run:
            self._commit_outcome(batch, outcome)
        return outcome, {r.path for r in results}

    def _commit_all_but_block_deletions(
        self, batch: SyncBatch, gone: list[str], bound: dict[str, BaseEntry]
    ) -> None:
        """A refused run of a plugin without a dry run: it moved its own state in the call
        already, so discarding the call's writes would make the next run take the source's
        edits for the old side. Commit all of them but the deletions the refusal is about
        (the blocks of paths gone from the source, and their bases: the blocks stay bound)."""
        batch.blocks.drop({(bound[p].owner, bound[p].label) for p in gone if p in bound})
        batch.bases.drop(set(gone))
        self._commit(batch)

    @property
    def author(self) -> str:
        return f"plugin:{self.key}"

    @property
    def made_by(self) -> str:
        """Who its versions name as their maker: the plugin and the sha256 of its file."""
        return self.plugin.host.made_by

    def _guard(self, gone: dict[str, list[str]], bound: int) -> None:
        """Raise the mass-deletion refusal when ``gone`` (bound paths by side) is too many."""
        for side, missing in gone.items():
            refusal = mass_deletion(self.key, bound, missing, side=side)
            if refusal is not None:
                raise refusal

    def _commit_outcome(self, batch: SyncBatch, outcome: ReconcileOutcome) -> None:
        self._commit(batch)
        if batch.moved:  # an agent wrote these blocks during the call: nothing of them kept
            outcome.results = [r for r in outcome.results if r.path not in batch.moved]
            for path in sorted(batch.moved):
                outcome.reasons.pop(path, None)
                outcome.conflicts.pop(path, None)
                outcome.skipped.append(Skipped(path, BLOCK_MOVED))

    # -- paged ----------------------------------------------------------------------------

    def _paged(self, mode: ReconcileMode) -> ReconcileOutcome:
        """Every path, :attr:`page_size` per ``reconcile`` call, the writes committed once a
        page's worth is staged (see the module docstring); a plugin mirroring its folder gets
        only the paths the host cannot tell unchanged itself."""
        if not self.bridge.mirrors_folder():
            return self._pages(*self._plan(mode), mode)
        blocks = self.plugin.host.services.blocks
        if blocks is None:
            raise AccessDenied("no block store is attached to this plugin")
        with Mirror.opened(self.plugin.host, self.bases, blocks) as mirror:
            outcome, plan = self._plan_mirrored(mode, mirror)
            self._pages(outcome, plan, mode)
            if not mode.dry_run:
                mirror.done(
                    plan.asked,
                    [
                        p
                        for p in plan.asked
                        if outcome.reasons.get(p) not in _SOURCE_KEPT and p not in outcome.conflicts
                    ],
                    plan.considered,
                    plan.found,
                    (self._written_blocks, self._written_bases),
                )
            return outcome

    def _plan(self, mode: ReconcileMode) -> tuple[ReconcileOutcome, _Plan]:
        """Every path the plugin lists or the host holds a base of, after the guard."""
        outcome = ReconcileOutcome()
        bound = self.bases.index().entries(self.bases.bases)
        listed, _ = self._listing(outcome, None, bound)
        odd = {s.path for s in outcome.skipped}  # left as they are: neither reconciled nor gone
        if not mode.allow_mass_delete:
            gone = {
                "disk": [p for p in bound if p not in listed and p not in odd],
                "agent": self.bases.blockless(bound),
            }
            self._guard(gone, len(bound))
        candidates = self.namespace_candidates(bound, listed)
        considered = sorted(listed.union(bound, candidates).difference(odd))
        return outcome, _Plan(bound, len(bound), considered, considered)

    def _plan_mirrored(self, mode: ReconcileMode, mirror: Mirror) -> tuple[ReconcileOutcome, _Plan]:
        """As :meth:`_plan`, for a plugin mirroring its folder: the paths the clean row finds
        unchanged by their stat alone, and the others by their hashes, are no page's (listed
        as unchanged in the outcome); only the rest are looked up in the index."""
        outcome = ReconcileOutcome()
        clean = mirror.load()
        listed, quick = self._listing(outcome, mirror)
        odd = {s.path for s in outcome.skipped}
        considered = listed.union(clean.bound).difference(odd)
        considered |= self.namespace_candidates({}, considered).difference(odd)
        rest = sorted(considered.difference(quick))
        bound = mirror.entries(rest)
        self.bases.bases.expect(bound)  # spares reading the bindings a base write checks
        latest = mirror.latest(bound)
        if not mode.allow_mass_delete:
            gone = {
                "disk": sorted(clean.bound.keys() - listed - odd),
                "agent": sorted(p for p, e in bound.items() if (e.owner, e.label) not in latest),
            }
            self._guard(gone, len(clean.bound))
        mirror.hashing(rest if len(rest) <= _HINTS_BY_PATH else None)
        found = mirror.unchanged(rest, bound, latest)
        outcome.unchanged = [*quick, *found]
        asked = [p for p in rest if p not in found]
        return outcome, _Plan(bound, len(clean.bound), considered, asked, found, latest)

    def _pages(
        self, outcome: ReconcileOutcome, plan: _Plan, mode: ReconcileMode
    ) -> ReconcileOutcome:
        """Reconcile ``plan.asked`` page by page into ``outcome``."""
        dry_run, allow_mass_delete = mode
        counted: dict[str, list[str]] = {"disk": [], "agent": []}
        paths, bound = plan.asked, plan.bound
        pending = _Pending(self, dry_run, plan.latest)
        for start in range(0, len(paths), self.page_size):
            page = paths[start : start + self.page_size]
            page_bound = {p: bound[p] for p in page if p in bound}
            part = pending.reconcile(page, page_bound)
            if not allow_mass_delete:
                for side, found in self._gone(part, page_bound).items():
                    counted[side] += found
                self._guard(counted, plan.bound_count)  # before this page's writes commit
            done = start + len(page)
            if done == len(paths) or pending.due(self.page_size):
                # counting the paths found unchanged before the pages as done
                done, total = done + len(plan.considered) - len(paths), len(plan.considered)
                pending.commit(f"reconcile {self.key} ({done} of {total} paths)", outcome)
        return outcome

    def _listing(
        self,
        outcome: ReconcileOutcome,
        mirror: Mirror | None,
        bound: dict[str, BaseEntry] | None = None,
    ) -> tuple[set[str], set[str]]:
        """Every path the plugin lists (``paging.list-paths``, a call per page), or the files
        of the folder it ``mirror``s, as the host lists them; what the host saw it cannot sync
        meanwhile, and listed paths that are no source paths, go to ``outcome.skipped``. And
        the listed paths the mirror's clean row finds unchanged by their stat (checked as
        source paths when they were found clean)."""
        with self._batch(f"list {self.key}", self.author, dry_run=True, bound=bound) as batch:
            listed = set(mirror.list() if mirror is not None else self._list_pages())
        for path, reason in batch.skipped.items():
            outcome.skipped.append(Skipped(path, reason))
            listed.discard(path)
        quick = set() if mirror is None else mirror.quick(listed)
        for path in sorted(listed.difference(quick)):
            problem = source_path_problem(path)
            if problem is not None:
                outcome.skipped.append(Skipped(path, f"the plugin listed a path that {problem}"))
                listed.discard(path)
        return listed, quick

    # -- the label namespace: blocks an agent creates -------------------------------------

    def label_namespace(self) -> str | None:
        """The label prefix this source owns, a path following it: the plugin's declaration
        (``paging.label-namespace``), else the source table's ``label_namespace``; None: none.
        A declaration no label can start with is refused (the table's is, when read)."""
        declared = self.bridge.label_namespace()
        if declared is None:
            return self.plugin.spec.label_namespace
        problem = namespace_problem(declared)
        if problem is not None:
            raise PluginRefused(
                self.key, self.plugin.version, "paging.label-namespace", f"it declares {problem}"
            )
        return declared

    def namespace_candidates(self, bound: dict[str, BaseEntry], known: Collection[str]) -> set[str]:
        """The paths named by the attached agents' blocks under :meth:`label_namespace` that
        are not ``known`` candidates already and whose blocks no entry of ``bound`` binds
        (blocks an agent created: reconciling their paths carries them to the source, as the
        folder source does with its own label scheme). Labels naming no valid source path are
        left out."""
        namespace = self.label_namespace()
        if not namespace:
            return set()
        self.blocks.catch_up_index()
        index = self.bases.index()
        taken = {(e.owner, e.label) for e in bound.values()}
        found: set[str] = set()
        for owner in sorted(self.plugin.spec.owners):
            for label in index.labels_under(owner, namespace):
                path = label[len(namespace) :]
                if (
                    path not in known  # the common case at scale: every block bound
                    and (owner, label) not in taken
                    and not names.is_host_label(label)  # the host's own: never a source's
                    and source_path_problem(path) is None
                ):
                    found.add(path)
        return found

    def _list_pages(self) -> Iterator[str]:
        """The plugin's paths, ``paging.list-paths`` page by page."""
        cursors: set[str] = set()
        cursor: str | None = None
        while True:
            page, cursor = self.bridge.list_paths(cursor)
            yield from page
            if cursor is None:
                return
            if cursor in cursors:
                raise PluginCallFailed(
                    self.plugin.name,
                    self.plugin.version,
                    "paging.list-paths",
                    f"it gave the cursor {cursor!r} twice: its listing would never end",
                )
            cursors.add(cursor)

    def _step(self, step: str) -> None:
        if self.fault is not None:
            self.fault(step)

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
        result, bases = batch.blocks.result, batch.bases
        if result is not None and result.commit is not None:
            self._written_blocks.append(result.commit)
        if bases.commit_id is not None:
            self._written_bases.append((bases.parent_id, bases.commit_id, bases.written()))
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
            if asked is not None and path in asked:
                problem = None  # checked when it was asked for
            else:
                problem = source_path_problem(path)
                if problem is None and asked is not None:
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
                reason = result.resolution if isinstance(result, Resolved) else _NO_CHANGE
            outcome.results.append(result)
            outcome.reasons[path] = reason
        for path in wanted or ():
            if path not in outcome.reasons and all(s.path != path for s in outcome.skipped):
                outcome.skipped.append(Skipped(path, "the plugin gave no result for it"))
        self.seed.record_bases(outcome.results, batch, bound)
        return outcome

    def _conflict(
        self, result: NeedsResolution, batch: SyncBatch, bound: dict[str, BaseEntry]
    ) -> tuple[Sides | None, str]:
        """The three sides of a conflict the plugin returned, or None and why it cannot be one."""
        path = result.path
        report = batch.conflicts.get(path)
        if report is not None:
            owner, label, disk, reason = report.owner, report.label, report.disk, report.reason
        else:  # a plugin keeping no state through `sync`: bound by seed means
            entry = bound.get(path)
            named = (entry.owner, entry.label) if entry else self.seed.binding(path, batch)
            if named is None:
                return None, (
                    "the plugin says it needs resolution but named no block for this unbound "
                    "path (not with sync.report-conflict, nor by its label namespace or load)"
                )
            (owner, label), reason = named, SEED_BOUND
            disk = result.disk if result.disk or self.seed.present(path, owner) else None
            self.seed.conflicts.add(path)
            self.seed.used = True
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
        # a plugin without a dry run is asked for real: what it does then is committed
        dry = self.bridge.honours_dry_run()
        outcome = self.reconcile_outcome([path], ReconcileMode(dry_run=dry))
        if path in outcome.conflicts:
            return outcome.conflicts[path]
        if outcome.skipped:
            raise UsageError(f"source {self.key!r}: {path!r}: {outcome.skipped[0].reason}")
        (result,) = outcome.results
        if not isinstance(result, NoChange):
            did = "would now reconcile" if dry else "has now reconciled"
            raise SourceChanged(
                self.key,
                path,
                f"the plugin {did} it ({_describe(result)}): the conflict is not what it "
                "was; run reconcile",
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
        path, disk, agent, base, expected, message, author, reason = settlement
        owner, label = expected.owner, expected.label
        # through the seed's save / delete (which have no dry run): a conflict bound by seed
        # means (in this process, or as recorded), or a plugin that cannot check in a dry run
        # that its reconcile would carry the block to its source
        seed = (
            path in self.seed.conflicts or reason == SEED_BOUND or not self.bridge.honours_dry_run()
        )
        if disk != expected.disk and not seed:
            with self._batch(message, author, dry_run=True) as batch:
                self._push(path, disk, expected, batch)  # would the plugin write its source?
        with self._batch(message, author, dry_run=False) as batch:
            if _read(batch, owner, label) != expected.agent:
                raise SourceChanged(
                    self.key, path, f"block {owner}/{label} changed while it was being settled"
                )
            if disk != expected.disk and seed:
                self.seed.push(path, disk, owner, label, batch)
            elif disk != expected.disk:
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


@dataclass
class _Plan:
    """The paths of a paged run: ``bound``, the entries of the bound ones among ``asked``
    (all of them, unmirrored); ``bound_count``: how many paths are bound; ``considered``:
    every path of the run; ``asked``: those the plugin reconciles, in pages; ``found``:
    those the host found unchanged by their hashes."""

    bound: dict[str, BaseEntry]
    bound_count: int
    considered: Collection[str]
    asked: list[str]
    found: set[str] = field(default_factory=set)
    #: the newest version and content blob of blocks the host read already (see SyncBatch)
    latest: Latest = field(default_factory=dict)


class _Pending:
    """The pages of a paged reconcile not committed yet: their writes staged in one batch,
    their outcome kept. Committed when :meth:`due` (a run that changes little commits once,
    as an unpaged one would), and at the end."""

    def __init__(self, source: PluginSource, dry_run: bool, known: Latest) -> None:
        self.source = source
        self.dry_run = dry_run
        self.known = known
        #: paths committed by the run so far
        self.committed = 0
        self._fresh()

    def _fresh(self) -> None:
        self.bound: dict[str, BaseEntry] = {}
        self.batch = SyncBatch(
            self.source.blocks,
            self.source.bases.bases,
            f"reconcile {self.source.key}",
            self.source.author,
            dry_run=self.dry_run,
            bound=self.bound,
            known=self.known,
            made_by=self.source.made_by,
        )
        self.outcome = ReconcileOutcome()

    @property
    def staged(self) -> int:
        """Paths whose bases this batch writes (a path written is a path worth keeping)."""
        return len(self.batch.bases.staged_paths)

    def due(self, page_size: int) -> bool:
        """Whether the staged pages are worth a commit: a page's worth of paths written, and
        at least as many as the run committed before. A commit rewrites every fan-out folder
        its paths touch, and a first sync's page touches nearly all of them: its cost grows
        with what is committed already, not with the page. Doubling the batches keeps the
        commits of a run logarithmic in its paths (a first sync of 100,000 files makes 8,
        not 100) and their whole cost linear; a process killed loses the pages since the
        last commit, fewer than the run committed (the native source, committing once, loses
        all of its run)."""
        return self.staged >= max(page_size, self.committed)

    def reconcile(self, page: list[str], bound: dict[str, BaseEntry]) -> ReconcileOutcome:
        """One ``reconcile`` call on ``page``, its writes staged; its own outcome."""
        self.bound.update(bound)
        with self.batch.attached(self.source.plugin.host):
            results = self.source.bridge.reconcile(page)
        part = self.source._outcome(results, page, self.batch, bound)
        _extend(self.outcome, part)
        return part

    def commit(self, message: str, into: ReconcileOutcome) -> None:
        """Commit the staged writes (nothing in a dry run) and add their outcome to ``into``."""
        if not self.dry_run:
            self.batch.blocks.message = self.batch.bases.message = message
            self.source._commit_outcome(self.batch, self.outcome)
            self.source._step("page-committed")
            self.committed += self.staged
        _extend(into, self.outcome)
        self._fresh()


def _extend(outcome: ReconcileOutcome, more: ReconcileOutcome) -> None:
    outcome.decided += more.results
    outcome.skipped += more.skipped
    outcome.reasons.update(more.reasons)
    outcome.conflicts.update(more.conflicts)


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
