"""The ``sync`` host functions that keep a data-block plugin's sync bases: ``base``,
``bindings``, ``set-base`` and ``forget``, backed by :class:`blocksync.bases.SyncBases` of the
plugin's table key (``refs/sync/<key>``), exactly as the native file source keeps its own.

Each ``set-base`` / ``forget`` call is its own small commit on that ref (a compare-and-swap, so
a writer racing the plugin never loses an update). Bindings name blocks of the owners the plugin
is attached to only. Plugins that export no ``data-block`` see no bases and cannot record any.

Values go back to wasmtime-py as ``Record`` instances (records inside an ``option`` or a
``list`` lower from any object with the fields, but a Record is what every case accepts).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from wasmtime.component import Record

from ..bases import Binding, SyncBases
from ..blocks import BlockStore
from ..errors import AccessDenied, UsageError
from ..gitstore import GitStore
from .hostfuncs import as_result, record

__all__ = ["PluginBases", "binding_record"]


def binding_record(binding: Binding) -> Record:
    """A WIT ``sync.binding`` record (``block`` a ``types.block-ref``)."""
    block = record(**{
        "block-id": BlockStore.git_path(binding.owner, binding.label),
        "label": binding.label,
        "agent-id": binding.owner,
    })
    return record(path=binding.path, block=block)


class PluginBases:
    """One plugin's sync bases as host functions. ``enabled`` is set once the plugin is known
    to export ``data-block``; until then every function answers as if there were no bases."""

    def __init__(
        self, git: GitStore, key: str, owners: frozenset[str] | set[str], author: str
    ) -> None:
        self.bases = SyncBases(git, key)
        self.key = key
        self.owners = frozenset(owners)
        self.author = author
        self.enabled = False

    def _refuse_unless_enabled(self) -> None:
        if not self.enabled:
            raise AccessDenied("sync bases are kept only for data-block sources")

    def base(self, path: str) -> tuple[Record, str] | None:
        if not self.enabled:
            return None
        try:
            found = self.bases.get(path)
        except UsageError:
            return None  # a path that cannot have a base has none
        if found is None:
            return None
        binding, content = found
        return binding_record(binding), content

    def bindings(self) -> list[Record]:
        if not self.enabled:
            return []
        return [binding_record(b) for b in self.bases.bindings()]

    def set_base(self, path: str, block: Any, content: str) -> None:
        self._refuse_unless_enabled()
        owner, label = getattr(block, "agent-id"), block.label
        if owner not in self.owners:
            attached = ", ".join(sorted(self.owners))
            raise AccessDenied(
                f"cannot bind {path!r} to a block of {owner!r}: this plugin is attached only to "
                f"{attached}"
            )
        with self.bases.update(f"plugin {self.key}: base of {path}", self.author) as tx:
            tx.set_base(path, owner, label, content)

    def forget(self, path: str) -> None:
        self._refuse_unless_enabled()
        with self.bases.update(f"plugin {self.key}: forget {path}", self.author) as tx:
            tx.forget(path)

    def functions(self) -> dict[str, Callable[..., Any]]:
        """What ``runtime.load(..., sync_bases=...)`` takes."""
        return {
            "base": self.base,
            "bindings": self.bindings,
            "set-base": as_result(self.set_base, tagged=False),
            "forget": as_result(self.forget, tagged=False),
        }
