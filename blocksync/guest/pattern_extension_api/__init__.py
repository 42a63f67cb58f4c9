"""pattern_extension_api: write blocksync plugins in Python (the seed's guest crate).

    from pattern_extension_api import DataBlockExtension, register_extension, host, sync

    class MyFiles(DataBlockExtension):
        ...                                 # every abstract method

    register_extension(MyFiles)

`blocksync plugin build` turns the folder holding that `app.py` into a WebAssembly component with
componentize-py; this package is put on the guest's path for you. It runs inside the component:
it imports the generated `wit_world` bindings, never `blocksync`.
"""

from . import host, sync
from .extensions import DataBlockExtension, DataStreamExtension, ToolExtension
from .host import LogLevel
from .model import (
    Binding,
    BlockRef,
    BlockSchemaSpec,
    ExecutionMeta,
    HostError,
    MergeConflict,
    NeedsResolution,
    NoChange,
    Notification,
    PermissionLevel,
    PermissionRule,
    ReconcileResult,
    Resolved,
    Response,
    SourceStatus,
    SourceStatusValue,
    VersionInfo,
)
from .register import register_extension
from .synced import SyncedSource

__all__ = [
    "Binding",
    "BlockRef",
    "BlockSchemaSpec",
    "DataBlockExtension",
    "DataStreamExtension",
    "ExecutionMeta",
    "HostError",
    "LogLevel",
    "MergeConflict",
    "NeedsResolution",
    "NoChange",
    "Notification",
    "PermissionLevel",
    "PermissionRule",
    "ReconcileResult",
    "Resolved",
    "Response",
    "SourceStatus",
    "SourceStatusValue",
    "SyncedSource",
    "ToolExtension",
    "VersionInfo",
    "host",
    "register_extension",
    "sync",
]
