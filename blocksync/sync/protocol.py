"""What the rest of blocksync sees of a data source, stream or tool: typed values and Protocols.

The results of a reconcile, the values a reconcile or a resolution is asked with
(:class:`ReconcileMode`, :class:`Settlement`), and the host-side Protocols ``SyncSource``,
``DataBlock``, ``DataStream`` and ``Tool`` (the WIT record types they carry are
:mod:`blocksync.shared.wit`). WASM plugins are adapted to these by the bridges in
:mod:`blocksync.plugins`; native sources implement them directly. Nothing here knows wasmtime.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol, runtime_checkable

from blocksync.errors import MassDeletionRefused
from blocksync.shared.wit import (
    BlockRef,
    BlockSchemaSpec,
    Notification,
    PermissionRule,
    SourceStatus,
    VersionInfo,
)


@dataclass(frozen=True)
class Resolved:
    """The path is in sync again; ``resolution`` says how (e.g. ``disk->agent``, ``merged``)."""

    path: str
    resolution: str


@dataclass(frozen=True)
class NeedsResolution:
    """Both sides changed and could not be merged: a conflict with both contents."""

    path: str
    disk: str
    agent: str


@dataclass(frozen=True)
class NoChange:
    path: str


ReconcileResult = Resolved | NeedsResolution | NoChange


@dataclass(frozen=True)
class Skipped:
    """A path reconcile left alone, and why (not UTF-8, not a regular file, ...)."""

    path: str
    reason: str


#: the reason of a path neither side changed (as :func:`blocksync.shared.truth.decide` says it)
UNCHANGED = "neither side changed since the last sync"


@dataclass
class ReconcileOutcome:
    """What one reconcile call did: a result per path it decided, the paths it left alone, and
    the truth table's reason for every decided path (what a conflict row records).

    Most paths of a run over every path are unchanged: a source may list those in
    ``unchanged`` instead of making a :class:`NoChange` (and a reason) for each. ``results``
    makes them when first read (in path order among the others: a source listing paths there
    decides in path order); a caller that only counts them reads ``decided`` and
    ``unchanged`` instead."""

    decided: list[ReconcileResult] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    reasons: dict[str, str] = field(default_factory=dict)
    #: every path needing resolution, with all three sides: what a conflict row records
    conflicts: dict[str, Sides] = field(default_factory=dict)
    #: paths found unchanged on both sides, not (yet) in ``decided``
    unchanged: list[str] = field(default_factory=list)

    @property
    def results(self) -> list[ReconcileResult]:
        """Every result, a NoChange for each path of ``unchanged`` included (moved here)."""
        if self.unchanged:
            merged = self.decided + [NoChange(path) for path in self.unchanged]
            merged.sort(key=lambda result: result.path)
            for path in self.unchanged:
                self.reasons[path] = UNCHANGED
            self.decided, self.unchanged = merged, []
        return self.decided

    @results.setter
    def results(self, value: list[ReconcileResult]) -> None:
        self.decided = value


@dataclass(frozen=True)
class Sides:
    """A path's block and its three contents (None: absent)."""

    owner: str
    label: str
    base: str | None
    disk: str | None
    agent: str | None


class ReconcileMode(NamedTuple):
    """How a source reconciles: ``dry_run`` writes nothing; ``allow_mass_delete`` lets a run
    delete more than the mass-deletion threshold of the source's paths."""

    dry_run: bool = False
    allow_mass_delete: bool = False


#: a real run, with the mass-deletion guard on
WRITE = ReconcileMode()


class Settlement(NamedTuple):
    """What a resolution or an undo makes one path hold: the block ``agent``, the source
    ``disk`` and the base ``base`` (None: absent), refusing a side that moved from ``expected``
    (what the caller checked both sides hold); committed with ``message`` by ``author``.
    ``reason`` is the one the source recorded the conflict with: it may tell the source how the
    conflict was bound (a plugin's seed means), which no other process remembers."""

    path: str
    disk: str | None
    agent: str | None
    base: str | None
    expected: Sides
    message: str
    author: str
    reason: str = ""


#: A full run is refused when more than this share of a source's bound paths went missing ...
MASS_DELETION_SHARE = 0.5
#: ... unless it has only this many bound paths or fewer (deleting one of two files is normal).
MASS_DELETION_MIN = 4


#: why a path is skipped whose block an agent kept changing while a source reconciled it
BLOCK_MOVED = (
    "its block changed while it was reconciled (an agent is editing it): left for the next run"
)

#: what each side's deletions look like, for the refusal's message
_DELETED_ON = {
    "disk": "are missing from the source",
    "agent": "had their blocks deleted",
    "remote": "were deleted on the remote",
}


def mass_deletion(
    key: str, bound: int, missing: Sequence[str], *, side: str = "disk"
) -> MassDeletionRefused | None:
    """Why a run over source ``key`` must not go on (None: it may), when ``missing`` of its
    ``bound`` paths would be deleted at once from one ``side`` (``disk``, ``agent`` or
    ``remote``): an unmounted disk, a wrong path, an agent or another machine emptying a folder
    would otherwise delete every file or block on the other side. The caller raises it unless
    the user confirmed (``allow_mass_delete``)."""
    if bound <= MASS_DELETION_MIN or len(missing) <= MASS_DELETION_SHARE * bound:
        return None
    what = _DELETED_ON[side]
    hint = (
        "Check that its folders are mounted; reconcile named paths to apply deletions"
        if side == "disk"
        else "Check what deleted them (block history keeps every version)"
    )
    return MassDeletionRefused(
        key,
        side,
        len(missing),
        bound,
        f"source {key!r}: {len(missing)} of its {bound} synced paths {what} (e.g. "
        f"{missing[0]!r}); refusing to reconcile it in this run. {hint}, or confirm with "
        "--allow-mass-delete (or [store] allow_mass_delete = true).",
    )


@runtime_checkable
class SyncSource(Protocol):
    """A data-block source as the reconciler drives it: the native file source, or a WASM
    data-block plugin through :class:`blocksync.plugins.PluginSource`."""

    key: str  # the table key: the source's name in reports, conflict rows and refs/sync/<key>

    def reconcile_outcome(
        self, paths: Iterable[str] | None = None, mode: ReconcileMode = WRITE
    ) -> ReconcileOutcome:
        """Reconcile ``paths`` (None: every candidate) in ``mode``. A run over every candidate
        raises :class:`~blocksync.errors.MassDeletionRefused` (nothing written)
        when it would delete more than the threshold of the source's paths from any side,
        unless ``mode.allow_mass_delete``; a missing root raises NotFound."""
        ...

    def path_problem(self, path: str) -> str | None:
        """Why ``path`` cannot be a path of this source (None: it can be one)."""
        ...

    def has_path(self, path: str) -> bool | None:
        """Does this source have ``path`` (a file, a binding or a block for it)? None: it cannot
        tell without reconciling (a plugin knows its own outside side)."""
        ...

    def sides(self, path: str) -> Sides:
        """The path's block and its base, disk and agent contents as they are now."""
        ...

    def settle(self, settlement: Settlement) -> int | None:
        """Make the path hold what ``settlement`` says (block, then source, then base); the
        block's new version (None: none)."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class DataBlock(Protocol):
    """A source of blocks kept in sync with an outside store (the seed's ``data-block``)."""

    def source_id(self) -> str: ...
    def name(self) -> str: ...
    def block_schema(self) -> BlockSchemaSpec: ...
    def permission_rules(self) -> list[PermissionRule]: ...
    def load(self, path: str, owner: str) -> BlockRef: ...
    def create(self, path: str, content: str | None, owner: str) -> BlockRef: ...
    def save(self, block: BlockRef) -> None: ...
    def delete(self, path: str) -> None: ...
    def history(self, block: BlockRef) -> list[VersionInfo]: ...
    def rollback(self, block: BlockRef, version: str) -> None: ...
    def diff(self, block: BlockRef, from_: str | None, to: str | None) -> str: ...
    def reconcile(self, paths: list[str]) -> list[ReconcileResult]: ...


@runtime_checkable
class DataStream(Protocol):
    """A source of notifications (the seed's ``data-stream``)."""

    def source_id(self) -> str: ...
    def name(self) -> str: ...
    def block_schemas(self) -> list[BlockSchemaSpec]: ...
    def start(self, owner: str) -> None: ...
    def stop(self) -> None: ...
    def pause(self) -> None: ...
    def resume(self) -> None: ...
    def status(self) -> SourceStatus: ...
    def supports_pull(self) -> bool: ...
    def pull(self, limit: int, cursor: str | None) -> list[Notification]: ...


@runtime_checkable
class Tool(Protocol):
    """A tool an agent can call, with JSON Schemas for its parameters and output."""

    def name(self) -> str: ...
    def description(self) -> str: ...
    def parameters_schema(self) -> str: ...
    def output_schema(self) -> str: ...
    def usage_rule(self) -> str | None: ...
    def execute(self, params_json: str, meta_json: str) -> str: ...
