"""The ``sync`` host functions that keep a data-block plugin's sync bases: ``base``,
``bindings``, ``states``, ``set-base``, ``forget``, ``dry-run`` and ``report-conflict``, backed by
:class:`blocksync.store.bases.SyncBases` of the plugin's table key (``refs/sync/<key>``), exactly as
the native file source keeps its own.

During a reconcile the host drives (a :class:`~blocksync.plugins.batch.SyncBatch` is open on the
plugin's host context) base writes are staged in the batch and read back from it; outside one,
each ``set-base`` / ``forget`` call is its own small commit on the ref (a compare-and-swap, so a
writer racing the plugin never loses an update). Bindings name blocks of the owners the plugin
is attached to only. Plugins that export no ``data-block`` see no bases and cannot record any.

A :class:`PluginBases` is built with the plugin's :class:`~blocksync.plugins.host.hostfuncs.HostContext`
(which holds the batch, and outlives every reload of the plugin's file) and its exports, by
the factory ``runtime.load(..., sync_bases=...)`` calls once that context exists; the linker
gets it as a :class:`~blocksync.plugins.host.hostfuncs.SyncBaseFunctions`.

Values go back to wasmtime-py as ``WitRecord`` instances (records inside an ``option`` or a
``list`` lower from any object with the fields, but a Record is what every case accepts).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from blocksync.index.base_index import BaseEntry, BaseIndex
from blocksync.index.db import IndexDb
from blocksync.index.statcache import StatCache
from blocksync.store.bases import Binding, SyncBases
from blocksync.store.blocks import BlockStore
from blocksync.store.gitstore import GitStore

from ..errors import AccessDenied, UsageError
from .batch import ConflictReport, SyncBatch
from .host.hostfuncs import HostContext, WitRecord, json_items, record

__all__ = ["PluginBases", "binding_record"]


def binding_record(binding: Binding) -> WitRecord:
    """A WIT ``sync.binding`` record (``block`` a ``types.block-ref``)."""
    block = record(
        **{
            "block-id": BlockStore.git_path(binding.owner, binding.label),
            "label": binding.label,
            "agent-id": binding.owner,
        }
    )
    return record(path=binding.path, block=block)


class PluginBases:
    """One plugin's sync bases as host functions, for the plugin whose ``host`` context this
    is. ``enabled``: the plugin exports ``data-block``; if not, every function answers as if
    there were no bases."""

    def __init__(
        self,
        host: HostContext,
        git: GitStore,
        *,
        enabled: bool,
        index_db: IndexDb | None = None,
    ) -> None:
        self.host = host
        self.key = host.spec.key
        self.bases = SyncBases(git, self.key)
        self.owners = frozenset(host.spec.owners)
        self.author = host.author
        self.enabled = enabled
        self._index_db = index_db  # the workspace's: one connection for every table
        self._index: BaseIndex | None = None

    @property
    def batch(self) -> SyncBatch | None:
        """The reconcile batch open on the plugin's host, if any (a pull's has no bases)."""
        batch = self.host.batch
        return batch if isinstance(batch, SyncBatch) else None

    def index(self) -> BaseIndex:
        """The base index in index.db (every bound path with its base's hashes)."""
        if self._index is None:
            if self._index_db is None:
                raise AccessDenied("no block store is attached to this plugin")
            self._index = BaseIndex(self._index_db)
        return self._index

    def close(self) -> None:
        if self._index is not None:
            self._index.close()
            self._index = None

    def _refuse_unless_enabled(self) -> None:
        if not self.enabled:
            raise AccessDenied("sync bases are kept only for data-block sources")

    def base(self, path: str) -> tuple[WitRecord, str] | None:
        if not self.enabled:
            return None
        batch = self.batch
        try:
            found = self.bases.get(path) if batch is None else batch.bases.get(path)
        except UsageError:
            return None  # a path that cannot have a base has none
        if found is None:
            return None
        binding, content = found
        return binding_record(binding), content

    def bindings(self) -> list[WitRecord]:
        if not self.enabled:
            return []
        found = self.bases.bindings()
        if self.batch is not None:
            found = self.batch.bindings(found)
        return [binding_record(b) for b in found]

    def states(self, paths: list[str]) -> str:
        """See ``sync.states`` in the WIT: base hashes from the base index, and whether each
        block's newest content blob is its base's, without reading a base or a block."""
        if not self.enabled:
            return "{}"
        blocks = self.host.services.blocks
        if blocks is None:
            raise AccessDenied("no block store is attached to this plugin")
        index = self.index()
        batch = self.batch
        # the reconcile driving this call read the index already; else read it now
        entries = (
            batch.bound
            if batch is not None and batch.bound is not None
            else index.entries(self.bases)
        )
        staged: dict[str, dict[str, object] | None] = {}
        if batch is not None:  # this call's own base writes come first (None: forgotten)
            for path, binding, content in batch.bases.written(paths or None):
                staged[path] = None
                if binding is not None and content is not None:
                    # the plugin is told to look closer (agent-changed), never left to think
                    # that a path with a staged base has none
                    digest = hashlib.sha256(content.encode("utf-8")).hexdigest()
                    staged[path] = {
                        "owner": binding.owner,
                        "label": binding.label,
                        "base-sha256": digest,
                        "agent-changed": True,
                    }
        wanted = [
            p
            for p in (dict.fromkeys(paths) if paths else entries)
            if p in entries and p not in staged
        ]
        blocks.catch_up_index()
        owners = {entries[p].owner for p in wanted}
        if paths:  # a page: its own blocks only, each found by its key
            latest = {
                owner: index.latest_contents_of(
                    owner, (entries[p].label for p in wanted if entries[p].owner == owner)
                )
                for owner in owners
            }
        else:
            latest = {owner: index.latest_contents(owner) for owner in owners}
        states = {}
        for path in wanted:
            entry = entries[path]
            newest = latest[entry.owner].get(entry.label)
            states[path] = {
                "owner": entry.owner,
                "label": entry.label,
                "base-sha256": entry.base_sha256,
                "agent-changed": newest is None or newest[1] != entry.base_blob,
            }
        states.update((path, state) for path, state in staged.items() if state is not None)
        return json.dumps(states, ensure_ascii=False)

    def latest(self, entries: dict[str, BaseEntry]) -> dict[str, dict[str, tuple[int, str]]]:
        """Owner -> label -> (newest version, its content blob) of every existing block of
        the owners ``entries`` bind (the version index, caught up first)."""
        blocks = self.host.services.blocks
        if blocks is None or not entries:
            return {}
        blocks.catch_up_index()
        index = self.index()
        return {
            owner: index.latest_contents(owner) for owner in {e.owner for e in entries.values()}
        }

    def blockless(
        self,
        entries: dict[str, BaseEntry],
        latest: dict[str, dict[str, tuple[int, str]]] | None = None,
    ) -> list[str]:
        """The bound paths of ``entries`` whose blocks are gone (from the version index, or
        ``latest`` when :meth:`latest` was read already)."""
        if self.host.services.blocks is None:
            return []  # no store: no blocks to tell gone
        if latest is None:
            latest = self.latest(entries)
        return sorted(path for path, e in entries.items() if e.label not in latest.get(e.owner, {}))

    def stat_cache(self) -> StatCache:
        """The plugin's rows of the stat cache (a plugin mirroring its folder; see
        :mod:`blocksync.plugins.mirror`)."""
        if self._index_db is None:
            raise AccessDenied("no block store is attached to this plugin")
        return StatCache(self._index_db, self.key)

    def set_base(self, path: str, block: Any, content: str) -> None:
        self._set_base(path, getattr(block, "agent-id"), block.label, content)

    def set_bases(self, bases: str) -> None:
        """See ``sync.set-bases`` in the WIT."""
        self._refuse_unless_enabled()
        for item in json_items(bases, "set-bases", {"path", "owner", "label", "content"}):
            if item["content"] is None:
                self.forget(item["path"])
            else:
                self._set_base(item["path"], item["owner"], item["label"], item["content"])

    def _set_base(self, path: str, owner: str, label: str, content: str) -> None:
        self._refuse_unless_enabled()
        if owner not in self.owners:
            attached = ", ".join(sorted(self.owners))
            raise AccessDenied(
                f"cannot bind {path!r} to a block of {owner!r}: this plugin is attached only to "
                f"{attached}"
            )
        if self.batch is not None:
            self.batch.bases.set_base(path, owner, label, content)
            return
        with self.bases.update(f"plugin {self.key}: base of {path}", self.author) as tx:
            tx.set_base(path, owner, label, content)

    def forget(self, path: str) -> None:
        self._refuse_unless_enabled()
        if self.batch is not None:
            self.batch.bases.forget(path)
            return
        with self.bases.update(f"plugin {self.key}: forget {path}", self.author) as tx:
            tx.forget(path)

    def dry_run(self) -> bool:
        return self.batch is not None and self.batch.dry_run

    def report_conflict(self, path: str, block: Any, disk: str | None, reason: str) -> None:
        """Kept for the reconcile driving this call; ignored outside one (nobody asks)."""
        if self.batch is not None:
            owner = getattr(block, "agent-id")
            self.batch.conflicts[path] = ConflictReport(owner, block.label, disk, reason)
