"""Plugins written against the seed's functions alone: the host keeps their sync state itself.

The ``sync`` interface (bases, ``report-conflict``) is blocksync's fast path, but the seed's
``data-block`` contract must be enough on its own (issue 15, item 2). A plugin that never
touches ``sync`` still returns a result per path; the host then does by seed means what the
SDK does through ``sync``:

* **Binding.** A path the host holds no base for is bound to a block by the source's label
  namespace (:meth:`~blocksync.plugins.source.PluginSource.label_namespace`: the block
  ``<namespace><path>`` of an attached agent), else by the ``BlockRef`` the plugin's
  ``load(path, owner)`` returns, called in a batch of its own that is discarded: whatever
  ``load`` would write to blocks is held back, so the agent's side is never clobbered by it.
* **Bases.** A path the plugin answered ``resolved`` for without recording a base (both sides
  agree now, it says) gets the block's content as its base; a deletion drops the binding.
* **Conflicts.** ``needs-resolution(path, disk, agent)`` without ``sync.report-conflict`` is
  recorded with the texts it returned, bound as above; an empty source side is a deleted one
  when ``load`` finds no such path (the seed's text cannot say which).
* **Resolutions** reach the source through the seed's ``save(block)`` (the block staged as the
  content wanted, which the plugin reads back through ``memory-read-block``) or
  ``delete(path)``, instead of a ``reconcile`` the plugin would decide by its own state.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from functools import cached_property

from blocksync import names
from blocksync.index.base_index import BaseEntry
from blocksync.shared.truth import Action
from blocksync.shared.wit import BlockRef
from blocksync.store.bases import SyncBases
from blocksync.store.blocks import BlockStore
from blocksync.sync.protocol import ReconcileResult, Resolved

from ..errors import BlockNotFound, PluginCallFailed, PluginError
from .batch import SyncBatch
from .bridges import WasmDataBlock
from .host.runtime import Plugin

__all__ = ["SEED_BOUND", "Seed"]

#: resolutions after which a path has no sides left to bind (the seed's "deleted" included)
_GONE = {a.value for a in (Action.DELETE_AGENT, Action.DELETE_DISK, Action.FORGET)} | {"deleted"}
#: the reason a conflict bound by seed means is recorded with
SEED_BOUND = "the plugin reported a conflict without sync.report-conflict (bound by seed means)"


class Seed:
    """The seed means of one plugin source (see the module docstring)."""

    def __init__(
        self,
        plugin: Plugin,
        bridge: WasmDataBlock,
        blocks: BlockStore,
        bases: SyncBases,
        namespace: Callable[[], str | None],
    ) -> None:
        self.plugin = plugin
        self.bridge = bridge
        self.blocks = blocks
        self.bases = bases
        self._namespace = namespace
        #: paths whose open conflicts were bound by seed means (their resolutions go through
        #: ``save`` / ``delete``)
        self.conflicts: set[str] = set()
        #: whether the host kept a base or a conflict for the plugin by seed means
        self.used = False

    @cached_property
    def namespace(self) -> str | None:
        return self._namespace()

    def binding(self, path: str, batch: SyncBatch) -> tuple[str, str] | None:
        """(owner, label) of the block that mirrors the unbound ``path``: under the label
        namespace, else the one ``load`` names (its writes discarded); None: neither says."""
        owners = sorted(self.plugin.spec.owners)
        label = f"{self.namespace or ''}{path}"
        if self.namespace and not names.is_host_label(label):  # the host's own: never a source's
            for owner in owners:
                if _exists(batch, owner, label):
                    return owner, label
        for owner in owners:
            with self._held_back():
                try:
                    ref: BlockRef = self.bridge.load(path, owner)
                except PluginCallFailed:
                    continue
            if (
                ref.agent_id in self.plugin.spec.owners
                and ref.label
                and not names.is_host_label(ref.label)  # the host's own: never a source's
            ):
                return ref.agent_id, ref.label
        return None

    def present(self, path: str, owner: str) -> bool:
        """Whether the source holds ``path``. The seed's ``needs-resolution`` gives the source's
        side as text, ``""`` for a path it deleted too: ``load`` (its writes held back) tells,
        failing for a path the source does not hold."""
        with self._held_back():
            try:
                self.bridge.load(path, owner)
            except PluginError:
                return False
        return True

    @contextmanager
    def _held_back(self) -> Iterator[SyncBatch]:
        """A dry-run batch on the plugin's host for the ``with`` block, its writes discarded;
        the batch attached before (the call's own, or none) is attached again afterwards."""
        host = self.plugin.host
        before = host.batch
        probe = SyncBatch(
            self.blocks, self.bases, "load (held back)", self.plugin.host.author, dry_run=True
        )
        host.batch = probe
        try:
            yield probe
        finally:
            host.batch = before

    def record_bases(
        self, results: Iterable[ReconcileResult], batch: SyncBatch, bound: Mapping[str, BaseEntry]
    ) -> None:
        """The bases of the paths the plugin resolved without recording one itself."""
        if batch.dry_run:
            return
        written = batch.bases.staged_paths
        for result in results:
            path = result.path
            if not isinstance(result, Resolved) or path in written:
                continue
            if result.resolution in _GONE:
                if path in bound or batch.bases.get(path) is not None:
                    batch.bases.forget(path)
                    self.used = True
                continue
            entry = bound.get(path)
            found = (entry.owner, entry.label) if entry else self.binding(path, batch)
            if found is None:
                continue  # nothing names its block: left unbound, as before
            owner, label = found
            try:
                content = batch.read(owner, label)
            except BlockNotFound:
                continue
            batch.bases.set_base(path, owner, label, content)
            self.used = True

    def push(self, path: str, disk: str | None, owner: str, label: str, batch: SyncBatch) -> None:
        """Make the source hold ``disk`` through ``save`` (the block staged as ``disk``) or
        ``delete`` (None)."""
        if disk is None:
            self.bridge.delete(path)
            return
        batch.hold(owner, label, disk, f"{path} (plugin source)")
        self.bridge.save(BlockRef("", label, owner))


def _exists(batch: SyncBatch, owner: str, label: str) -> bool:
    try:
        batch.read(owner, label)
    except BlockNotFound:
        return False
    return True
