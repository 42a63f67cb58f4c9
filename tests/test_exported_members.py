"""The public surface changes only on purpose: update this list together with __all__."""

import blocksync

EXPECTED = [
    "AccessDenied",
    "AlreadyBound",
    "AlreadyExists",
    "AlreadyResolved",
    "AmbiguousConflictId",
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
    "SourceChanged",
    "ConfigError",
    "Conflict",
    "ConflictNotFound",
    "ConflictNotOpen",
    "Diff",
    "FsckReport",
    "IndexCorrupt",
    "InvalidContent",
    "InvalidLabel",
    "MergeConflict",
    "NotFound",
    "PluginBuildError",
    "PluginCallFailed",
    "PluginError",
    "PluginRefused",
    "PluginTrapped",
    "Problem",
    "ReconcileReport",
    "RepositoryCorrupt",
    "RunLockHeld",
    "SourceReport",
    "StaleResolution",
    "StaleVersion",
    "StoreCorrupt",
    "StoreExists",
    "StoreNotFound",
    "SyncReport",
    "Transaction",
    "TransportError",
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


def test_all_is_pinned() -> None:
    assert sorted(blocksync.__all__) == sorted(EXPECTED)


def test_every_exported_name_exists() -> None:
    for name in blocksync.__all__:
        assert hasattr(blocksync, name), name
