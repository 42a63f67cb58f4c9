"""blocksync: versioned memory blocks in git, synced to outside sources through WASM plugins.

Only the exception tree is imported with the package: every other public name is imported on
first use (module ``__getattr__``), so ``import blocksync`` -- and with it every ``blocksync``
command, ``--version`` included -- pays for wasmtime, jsonschema, cryptography and the rest only
when it uses them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .errors import (
    AccessDenied,
    AgentNotAllowed,
    AlreadyBound,
    AlreadyExists,
    AlreadyResolved,
    AmbiguousConflictId,
    AmbiguousRunId,
    BlockExists,
    BlockNotFound,
    BlocksyncError,
    CannotUndo,
    ConcurrencyError,
    ConcurrentUpdate,
    ConfigError,
    ConflictNotFound,
    ConflictNotOpen,
    IndexCorrupt,
    Interrupted,
    InvalidContent,
    InvalidLabel,
    InvalidTransition,
    MalformedRemote,
    MassDeletionRefused,
    MergeConflict,
    NotFound,
    NotificationNotFound,
    PluginBuildError,
    PluginCallFailed,
    PluginError,
    PluginRefused,
    PluginTrapped,
    PullRefused,
    RemoteError,
    RemoteFormatError,
    RemoteRejected,
    RemoteUnreachable,
    RepositoryCorrupt,
    RunLockHeld,
    RunNotFound,
    SourceChanged,
    StaleResolution,
    StaleVersion,
    StoreCorrupt,
    StoreExists,
    StoreFormatError,
    StoreNotFound,
    ToolInputInvalid,
    ToolNotFound,
    ToolOutputInvalid,
    ToolSchemaInvalid,
    TransportError,
    UnrelatedHistories,
    UnsafeFile,
    UsageError,
    VersionNotFound,
)

if TYPE_CHECKING:
    from .agents.streams import Stream, StreamPull, StreamStatus
    from .agents.tools import ToolBox, ToolCall, ToolEntry
    from .index.conflicts import Conflict
    from .index.notifications import StoredNotification
    from .runner import SyncReport, run_sync
    from .store.blocks import (
        KEEP,
        Block,
        BlockMeta,
        BlockStore,
        BlockSummary,
        BlockType,
        CommitResult,
        Diff,
        Transaction,
        Version,
    )
    from .store.fsck import FsckReport, Problem
    from .sync.reconciler import ReconcileReport, SourceReport
    from .sync.remotes.source import RemotePull, RemotePush
    from .workspace import Workspace, fsck, init, open, rebuild_index

#: public name -> the module (relative to this package) it is imported from on first use
_LAZY = {
    "Stream": ".agents.streams",
    "StreamPull": ".agents.streams",
    "StreamStatus": ".agents.streams",
    "ToolBox": ".agents.tools",
    "ToolCall": ".agents.tools",
    "ToolEntry": ".agents.tools",
    "Conflict": ".index.conflicts",
    "StoredNotification": ".index.notifications",
    "SyncReport": ".runner",
    "run_sync": ".runner",
    "KEEP": ".store.blocks",
    "Block": ".store.blocks",
    "BlockMeta": ".store.blocks",
    "BlockStore": ".store.blocks",
    "BlockSummary": ".store.blocks",
    "BlockType": ".store.blocks",
    "CommitResult": ".store.blocks",
    "Diff": ".store.blocks",
    "Transaction": ".store.blocks",
    "Version": ".store.blocks",
    "FsckReport": ".store.fsck",
    "Problem": ".store.fsck",
    "ReconcileReport": ".sync.reconciler",
    "SourceReport": ".sync.reconciler",
    "RemotePull": ".sync.remotes.source",
    "RemotePush": ".sync.remotes.source",
    "Workspace": ".workspace",
    "fsck": ".workspace",
    "init": ".workspace",
    "open": ".workspace",
    "rebuild_index": ".workspace",
}

__version__ = "0.1.0"


__all__ = [
    "KEEP",
    "AccessDenied",
    "AgentNotAllowed",
    "AlreadyBound",
    "AlreadyExists",
    "AlreadyResolved",
    "AmbiguousConflictId",
    "AmbiguousRunId",
    "Block",
    "BlockExists",
    "BlockMeta",
    "BlockNotFound",
    "BlockStore",
    "BlockSummary",
    "BlockType",
    "BlocksyncError",
    "CannotUndo",
    "CommitResult",
    "ConcurrencyError",
    "ConcurrentUpdate",
    "ConfigError",
    "Conflict",
    "ConflictNotFound",
    "ConflictNotOpen",
    "Diff",
    "FsckReport",
    "IndexCorrupt",
    "Interrupted",
    "InvalidContent",
    "InvalidLabel",
    "InvalidTransition",
    "MalformedRemote",
    "MassDeletionRefused",
    "MergeConflict",
    "NotFound",
    "NotificationNotFound",
    "PluginBuildError",
    "PluginCallFailed",
    "PluginError",
    "PluginRefused",
    "PluginTrapped",
    "Problem",
    "PullRefused",
    "ReconcileReport",
    "RemoteError",
    "RemoteFormatError",
    "RemotePull",
    "RemotePush",
    "RemoteRejected",
    "RemoteUnreachable",
    "RepositoryCorrupt",
    "RunLockHeld",
    "RunNotFound",
    "SourceChanged",
    "SourceReport",
    "StaleResolution",
    "StaleVersion",
    "StoreCorrupt",
    "StoreExists",
    "StoreFormatError",
    "StoreNotFound",
    "StoredNotification",
    "Stream",
    "StreamPull",
    "StreamStatus",
    "SyncReport",
    "ToolBox",
    "ToolCall",
    "ToolEntry",
    "ToolInputInvalid",
    "ToolNotFound",
    "ToolOutputInvalid",
    "ToolSchemaInvalid",
    "Transaction",
    "TransportError",
    "UnrelatedHistories",
    "UnsafeFile",
    "UsageError",
    "Version",
    "VersionNotFound",
    "Workspace",
    "fsck",
    "init",
    "open",
    "rebuild_index",
    "run_sync",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value  # once: later lookups find it without coming here
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
